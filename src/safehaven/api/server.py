"""The HTTP/1.1 protocol the API is served with: uvicorn's, plus ``TCP_NODELAY``.

Why the option: asyncio turns Nagle's algorithm off only for sockets whose protocol number
is ``IPPROTO_TCP``.  A single uvicorn process opens its listener through asyncio and gets
that; ``--workers N`` binds the listener itself with ``socket.socket(AF_INET)``, protocol
0, and every accepted connection inherits it, so Nagle stays on.  A response is written as
two segments (head, then body); the second waits for the client's delayed ACK of the first,
about 40 ms on Linux.  Measured here: ``GET /v1/health`` on a keep-alive connection took
44 ms with two workers and under 1 ms with one.  Setting the option on every accepted TCP
connection makes the two modes behave the same, and so does any reverse proxy that keeps
its upstream connections alive.

Why httptools when it is installed (it is a dependency): uvicorn's pure-Python h11 parser
costs a noticeable share of each request's CPU; httptools (llhttp, in C) is uvicorn's own
production choice.  h11 remains the fallback.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a declared dependency
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def set_nodelay(transport: asyncio.BaseTransport) -> bool:
    """Turn Nagle off on a TCP transport; returns whether it applied (not for Unix sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with Nagle off on every connection (see module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


if HttpToolsProtocol is not None:

    class NoDelayHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with Nagle off on every connection."""

        def connection_made(  # type: ignore[override]
            self, transport: asyncio.Transport
        ) -> None:
            set_nodelay(transport)
            super().connection_made(transport)

    HTTP_PROTOCOL: type[asyncio.Protocol] = NoDelayHttpToolsProtocol
else:  # pragma: no cover
    HTTP_PROTOCOL = NoDelayH11Protocol
