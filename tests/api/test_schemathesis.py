"""Property-based run of the whole OpenAPI document (schemathesis), bounded to stay fast.

Each operation gets a handful of generated cases, sent as an agency, a reviewer and an
oversight reader with valid credentials (so generated input reaches validation and the
service instead of stopping at 401); the
checks are: no 5xx, every status code documented, every response matching its schema.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from safehaven.agreements import load_dir
from safehaven.api.app import create_app
from safehaven.service import accounts
from safehaven.store.db import make_engine, session_factory, transaction, upgrade
from tests.api.conftest import make_config

pytestmark = pytest.mark.slow


def _app_and_credentials() -> tuple[object, dict[str, dict[str, dict[str, str]]]]:
    """Built at import: schemathesis needs the schema when the test is collected."""
    path = Path(tempfile.mkdtemp(prefix="safehaven-schemathesis-")) / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    agreements = load_dir()
    with transaction(session_factory(engine)) as s:
        now = datetime.now(UTC)
        token, _ = accounts.create_agency_token(
            s, agreements, "metropolitan-police", scope=None, label="fuzz", at=now)
        creds: dict[str, dict[str, dict[str, str]]] = {
            "agency": {"headers": {"Authorization": f"Bearer {token}"}, "cookies": {}}}
        for role in ("reviewer", "oversight"):
            account = accounts.create_account(s, f"fuzz-{role}", role, "x" * 16, at=now)
            web = accounts.start_session(s, role=role, account=account, at=now)
            creds[role] = {"headers": {"X-CSRF-Token": web.csrf_token},
                           "cookies": {"safehaven_session": web.token}}
    return create_app(make_config(engine, agreements)), creds


APP, CREDENTIALS = _app_and_credentials()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.mark.parametrize("role", sorted(CREDENTIALS))
@schema.parametrize()
@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, role: str) -> None:
    case.call_and_validate(
        headers=CREDENTIALS[role]["headers"], cookies=CREDENTIALS[role]["cookies"],
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance],
    )
