"""Reading request bodies ourselves: size limits, content types, strict request parsing.

FastAPI's own body parsing would run pydantic in *python* mode, where the strict request
model rejects ``"2017-06-01"`` as a date; the domain's :func:`parse_request` validates the
JSON text itself, strictly, and names every bad field.  So request bodies are read here
(with a byte limit enforced while reading, not after) and their schema is put into the
OpenAPI document by hand (see :mod:`safehaven.api.openapi`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from safehaven.api.errors import ApiError, unprocessable
from safehaven.domain.request import RequestFormatError, TracingRequest, parse_request_obj


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_type(request: Request, allowed: tuple[str, ...]) -> str:
    kind = media_type(request)
    if kind not in allowed:
        raise ApiError(
            415,
            "unsupported content type",
            [f"Content-Type: expected {' or '.join(allowed)}, got {kind or 'nothing'!r}"],
        )
    return kind


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body too large", [f"(body): larger than {limit} bytes"])
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "body too large", [f"(body): larger than {limit} bytes"])
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    require_type(request, ("application/json",))
    raw = await read_limited(request, limit)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise unprocessable(
            [f"(body): malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
        ) from None
    except UnicodeDecodeError:
        raise unprocessable(["(body): not valid UTF-8"]) from None
    if not isinstance(value, dict):
        raise unprocessable(["(body): must be a JSON object"])
    return value


def tracing_request(obj: dict[str, Any], agency: str) -> TracingRequest:
    """Parse a request for ``agency``; ``requester`` may be left out and defaults to it."""
    if "requester" not in obj:
        obj = {**obj, "requester": agency}
    try:
        return parse_request_obj(obj)
    except RequestFormatError as exc:
        raise unprocessable(exc.problems) from None
