"""JSON responses encoded by pydantic-core (Rust) rather than the standard library.

Why: the hottest routes (submit, poll, list) answer with a request's decision, seventeen
rules with their reasons, and ``json.dumps`` was a visible share of their CPU.  The bodies
are built by our own code from stored rows, so they are not re-validated through the
route's ``response_model`` either; the model still documents the route in OpenAPI, and
the API and schemathesis tests check every response against it.  The bytes are the same
shape Starlette's ``JSONResponse`` writes: UTF-8, no ASCII escaping, no spaces.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)
