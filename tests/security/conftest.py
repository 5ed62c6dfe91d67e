"""A real app over a real store (SQLite and PostgreSQL) for the security suites: one agency
token, one reviewer logged in, and a handle on what was logged."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from safehaven.api.app import create_app
from safehaven.api.context import ApiConfig
from safehaven.domain.decision import AgreementSet
from safehaven.service import accounts
from safehaven.store.db import session_factory, transaction
from tests.api.conftest import make_config

PASSWORD = "correct horse battery staple"


@dataclass
class SecWorld:
    cfg: ApiConfig
    app: Any
    token: str
    agency: TestClient
    reviewer: TestClient
    csrf: str


@pytest.fixture
def sec(engine: Engine, agreements: AgreementSet) -> Iterator[SecWorld]:
    cfg = make_config(engine, agreements)
    app = create_app(cfg)
    now = datetime.now(UTC)
    with transaction(session_factory(engine)) as s:
        token, _ = accounts.create_agency_token(
            s, agreements, "metropolitan-police", scope=None, label="sec", at=now)
        accounts.create_account(s, "rita", "reviewer", PASSWORD, at=now)
    agency = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    reviewer = TestClient(app)
    r = reviewer.post("/v1/session", json={"username": "rita", "password": PASSWORD})
    assert r.status_code == 200, r.text
    yield SecWorld(cfg, app, token, agency, reviewer, r.json()["csrf_token"])
    agency.close()
    reviewer.close()
