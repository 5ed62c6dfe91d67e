"""One error shape for every 4xx/5xx: ``{"error": ..., "problems": ["field: message", ...]}``.

The same shape the CLI prints with ``--json``, so a client handles a bad CSV row, a bad JSON
body and a bad query parameter the same way.  Every problem starts with the field it is
about.  Nothing from the request body is ever logged: bodies carry personal data.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("safehaven.api")


class ErrorBody(BaseModel):
    error: str
    problems: list[str] = []


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        problems: list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.problems = problems or []
        self.headers = headers
        super().__init__(error)

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in the writer process, answered by a worker (``api/writer_process.py``).
        return (type(self), (self.status, self.error, self.problems, self.headers))


def unauthorized(message: str = "authentication required") -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str) -> ApiError:
    return ApiError(403, message)


def not_found(what: str = "request") -> ApiError:
    return ApiError(404, f"{what} not found")


def unprocessable(problems: list[str]) -> ApiError:
    return ApiError(422, "invalid input", problems)


def _loc(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts) or "(request)"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.error, "problems": exc.problems}, exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for item in exc.errors():
            msg = str(item.get("msg", "invalid"))
            if item.get("type") == "missing":
                msg = "required field is missing"
            elif item.get("type") == "extra_forbidden":
                msg = "unknown field"
            elif item.get("type") == "json_invalid":
                msg = "malformed JSON"
            problems.append(f"{_loc(tuple(item.get('loc', ())))}: {msg}")
        return JSONResponse({"error": "invalid input", "problems": problems}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail), "problems": []},
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Method, path and exception type only: never the body, never the message (which
        # may quote personal data).
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return JSONResponse({"error": "internal error", "problems": []}, 500)


COMMON_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Malformed request"),
        (401, "No or invalid credentials"),
        (403, "Authenticated, but not allowed"),
        (404, "Not found (or not yours)"),
        (422, "Invalid input; each problem names its field"),
        (429, "Too many requests (rate limit, or too many codes waiting)"),
        (503, "The store cannot take the write now; nothing was stored, retry"),
    )
}


def errors(*codes: int) -> dict[int | str, dict[str, object]]:
    out = dict(COMMON_ERRORS)
    for code in codes:
        out[code] = {"model": ErrorBody, "description": {
            409: "Conflict", 413: "Too large", 415: "Wrong content type",
            429: "Too many attempts",
        }.get(code, "Error")}
    return out
