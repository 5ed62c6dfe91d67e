"""A lean HTTP/1.1 keep-alive client for loopback benchmarks (asyncio streams, stdlib only).

Why not httpx: on this 2-core machine the load generator shares the CPU with the server it
measures.  httpx costs about a millisecond of client CPU per request, so at 500 requests/s
the *client* would take half a core and the figure would measure the client.  This client
does only what the benchmarks need (fixed headers, ``Content-Length`` or chunked bodies,
one request in flight per connection) in a few tens of microseconds, and every benchmark
reports the client's CPU time next to the server's so the reader can check.

Only for talking to our own server on 127.0.0.1; not a general HTTP client (no TLS, no
redirects, no proxies, no pipelining).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Connection:
    """One keep-alive connection; reopens itself if the server closed it."""

    host: str
    port: int
    headers: dict[str, str] = field(default_factory=dict)
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = self._reader = None

    async def request(self, method: str, path: str, *, body: bytes | None = None,
                      json_body: Any = None, content_type: str | None = None,
                      headers: dict[str, str] | None = None) -> Response:
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            content_type = content_type or "application/json"
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in {**self.headers, **(headers or {})}.items()]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            if self._writer is None:
                await self._open()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(head + body if body else head)
                return await self._read_response()
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _read_response(self) -> Response:
        assert self._reader is not None
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            # Several Set-Cookie headers: keep them all, newline-separated.
            headers[key] = f"{headers[key]}\n{value.strip()}" if key in headers \
                else value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")
                    break
                chunks.append(await self._reader.readexactly(size + 2))
            body = b"".join(c[:-2] for c in chunks)
        else:
            body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, body)


def session_cookie(response: Response, name: str) -> str | None:
    """The value of cookie ``name`` set by ``response`` (for logged-in roles)."""
    for line in response.headers.get("set-cookie", "").split("\n"):
        key, _, rest = line.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    return None
