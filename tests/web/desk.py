"""The aggregate desk's test world: the real app over a real store, people who log in
through the form, and an agency with a token (shared by the page tests of ``tests/web``;
the fixtures are in ``conftest.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from safehaven.api.app import create_app
from safehaven.api.context import ApiConfig
from safehaven.domain.decision import AgreementSet
from safehaven.service import accounts
from safehaven.service.tracing import InMemoryRegister
from safehaven.store.aggregates import AggregateReviewRow
from safehaven.store.db import transaction
from safehaven.store.models import LedgerEntryRow
from tests.api.aggregate_support import outreach, with_statistics_agreements

PASSWORD = "correct horse battery staple"
HOSTILE = '<script>alert("x")</script>'
HOSTILE_IMG = "<img src=x onerror=alert(1)>"
SUBJECT_NHS = "9434765919"
SUBJECT_BIRTHDATE = "1975-02-14"


def dataset() -> pd.DataFrame:
    """Outreach records with a gender column whose labels include markup, as a
    controller's badly kept file might: labels reach the page from the data."""
    data = outreach(600, seed=3)
    genders = ["female", "male", HOSTILE, HOSTILE_IMG]
    data["gender"] = [genders[i % 7 % 4] for i in range(len(data))]
    return data


def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at production cost is ~0.3 s a hash; these tests need its behaviour only."""
    monkeypatch.setattr(accounts, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@dataclass
class Desk:
    cfg: ApiConfig
    app: Any
    agency: TestClient   # metropolitan-police, bearer token
    clients: list[TestClient]

    def browser(self) -> TestClient:
        client = TestClient(self.app)
        self.clients.append(client)
        return client

    def login(self, username: str) -> TestClient:
        client = self.browser()
        r = client.post("/review/login", data={"username": username, "password": PASSWORD},
                        follow_redirects=False)
        assert r.status_code == 303, r.text
        return client

    def release(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.agency.post("/v1/aggregates", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def ledger(self) -> list[dict[str, Any]]:
        with transaction(self.cfg.factory) as s:
            rows = s.execute(select(LedgerEntryRow.event).order_by(LedgerEntryRow.idx))
            return [json.loads(e)["event"] for e in rows.scalars()]

    def reviews(self) -> int:
        with transaction(self.cfg.factory) as s:
            return int(s.execute(select(func.count()).select_from(AggregateReviewRow))
                       .scalar_one())

    def state(self, release_id: str) -> str:
        r = self.agency.get(f"/v1/aggregates/{release_id}")
        return str(r.json()["state"])


def statistics_agreements(agreements: AgreementSet) -> AgreementSet:
    return with_statistics_agreements(agreements)


def make_desk(engine: Engine, agreements: AgreementSet) -> Iterator[Desk]:
    cfg = ApiConfig(engine=engine, agreements=agreements, datasets={"gla": dataset()},
                    matcher=InMemoryRegister([]))
    app = create_app(cfg)
    now = datetime.now(UTC)
    with transaction(cfg.factory) as s:
        token, _ = accounts.create_agency_token(s, agreements, "metropolitan-police",
                                                scope=None, label="pages", at=now)
        for name, role in (("alice", "reviewer"), ("bob", "reviewer"),
                           ("olive", "oversight")):
            accounts.create_account(s, name, role, PASSWORD, at=now)
    agency = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    made = Desk(cfg, app, agency, [agency])
    yield made
    for client in made.clients:
        client.close()
