"""``api.server``: accepted connections have Nagle off even on a listener bound the way
``uvicorn --workers`` binds it (protocol number 0, which asyncio leaves alone)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from safehaven.api.server import (
    HTTP_PROTOCOL,
    NoDelayH11Protocol,
    NoDelayHttpToolsProtocol,
    set_nodelay,
)
from safehaven.cli import app


def _nodelay_of_accepted(apply: bool, loop: str = "asyncio") -> int:
    """Accept one connection on a protocol-0 listener; report TCP_NODELAY on it."""
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
            if apply:
                assert set_nodelay(transport)
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def run() -> None:
        listener = socket.socket(family=socket.AF_INET)  # as uvicorn's Config.bind_socket
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        assert listener.proto == 0
        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(200):
            if seen:
                break
            await asyncio.sleep(0.005)
        writer.close()
        server.close()
        await server.wait_closed()

    if loop == "uvloop":
        import uvloop

        uvloop.run(run())
    else:
        asyncio.run(run())
    assert len(seen) == 1
    return seen[0]


def test_asyncio_leaves_nagle_on_for_a_protocol_zero_listener() -> None:
    # The problem this module fixes: if asyncio ever sets the option itself, this fails
    # and the workaround can go.
    assert _nodelay_of_accepted(apply=False) == 0


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_set_nodelay_turns_nagle_off(loop: str) -> None:
    # uvicorn serves on uvloop when it is installed (it is a dependency): its transports
    # hand out a pseudo-socket, which must take the option too.
    assert _nodelay_of_accepted(apply=True, loop=loop) != 0


def test_unix_sockets_are_left_alone() -> None:
    a, b = socket.socketpair()
    try:
        class Transport(asyncio.BaseTransport):
            def get_extra_info(self, name: str, default: object = None) -> object:
                return a if name == "socket" else default

        assert set_nodelay(Transport()) is False
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_runs_uvicorn_with_the_nodelay_protocol(
    workers: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--database-url",
                                      f"sqlite:///{tmp_path / 's.db'}", "--workers", workers])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert calls[0]["http"] is HTTP_PROTOCOL


def test_both_protocols_turn_nagle_off() -> None:
    # httptools is a dependency, so it is the one served; h11 stays a working fallback.
    assert HTTP_PROTOCOL is NoDelayHttpToolsProtocol
    for cls in (NoDelayH11Protocol, NoDelayHttpToolsProtocol):
        assert cls.connection_made is not cls.__mro__[1].connection_made
