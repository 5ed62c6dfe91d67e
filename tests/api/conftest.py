"""The real app over a real store (SQLite and PostgreSQL), driven with httpx (TestClient).

Each role gets its own client, so cookies never leak between roles: agency A
(metropolitan-police), agency B (west-midlands-police), a status-check agency (dvla), two
reviewers, an oversight reader and a data subject who has logged in with a code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from safehaven.api.app import create_app
from safehaven.api.context import ApiConfig
from safehaven.domain.decision import AgreementSet
from safehaven.service import accounts
from safehaven.service.tracing import InMemoryRegister
from safehaven.store.accounts import OutboxRow
from safehaven.store.db import session_factory, transaction
from tests.builders import POLICE

PASSWORD = "correct horse battery staple"
SUSPECT_NHS = "9434765919"
APPLICANT_NHS = "4010232137"
OTHER_NHS = "1234567881"

REGISTER = [
    {"record_id": "R-SUSPECT", "nhs_number": SUSPECT_NHS, "family": "Testsuspect",
     "given": "Jo", "birthdate": "1975-02-14", "address": "1 Test Street, Leeds",
     "address-postalcode": "LS1 4AP", "gp_practice": "B86001", "telecom": "07700900001"},
    {"record_id": "R-APPLICANT", "nhs_number": APPLICANT_NHS, "family": "Testapplicant",
     "birthdate": "1992-07-30", "address": "2 Test Road, York",
     "address-postalcode": "YO1 7HH", "entitlement": "not_entitled"},
    {"record_id": "R-TWIN-1", "nhs_number": OTHER_NHS, "family": "Testtwin",
     "birthdate": "2001-01-01", "address": "3 A Lane"},
    {"record_id": "R-TWIN-2", "nhs_number": "9990001111", "family": "Testtwin",
     "birthdate": "2001-01-01", "address": "4 B Lane"},
]

#: A police request the register can answer (and whose subject named an NHS number).
POLICE_NHS: dict[str, Any] = {**POLICE, "subject": {**POLICE["subject"], "nhs_number": SUSPECT_NHS}}


@dataclass
class World:
    cfg: ApiConfig
    app: Any
    tokens: dict[str, str]
    clients: dict[str, TestClient]
    csrf: dict[str, str]

    def client(self, address: str = "testclient") -> TestClient:
        """A fresh client (no cookies), connecting from ``address``."""
        return TestClient(self.app, client=(address, 50000))

    def outbox(self, kind: str) -> list[OutboxRow]:
        with transaction(self.cfg.factory) as s:
            return list(s.execute(select(OutboxRow).where(OutboxRow.kind == kind)
                                  .order_by(OutboxRow.id)).scalars())

    def post(self, role: str, path: str, json: Any = None, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}))
        if role in self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf[role])
        return self.clients[role].post(path, json=json, headers=headers, **kw)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make_config(engine: Engine, agreements: AgreementSet, **kw: Any) -> ApiConfig:
    key = Ed25519PrivateKey.generate()
    return ApiConfig(engine=engine, agreements=agreements, matcher=InMemoryRegister(REGISTER),
                     ledger_key=lambda: key, **kw)


def login(client: TestClient, username: str) -> str:
    r = client.post("/v1/session", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf_token"])


def subject_login(world: World, client: TestClient, nhs: str, birthdate: str) -> str:
    r = client.post("/v1/subject/code", json={"nhs_number": nhs, "birthdate": birthdate})
    assert r.status_code == 202, r.text
    code = world.outbox("access_code")[-1].body.split("code is ")[1][:6]
    r = client.post("/v1/subject/session",
                    json={"nhs_number": nhs, "birthdate": birthdate, "code": code})
    assert r.status_code == 200, r.text
    return str(r.json()["csrf_token"])


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 at production cost is ~0.3 s a hash here; the tests need its behaviour, not
    its cost (the parameters travel inside each hash, so verification is unchanged)."""
    monkeypatch.setattr(accounts, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def world_factory(
    engine: Engine, agreements: AgreementSet
) -> Iterator[Callable[..., World]]:
    made: list[TestClient] = []

    def build(**kw: Any) -> World:
        cfg = make_config(engine, agreements, **kw)
        app = create_app(cfg)
        now = datetime.now(UTC)
        tokens: dict[str, str] = {}
        with transaction(session_factory(engine)) as s:
            for role, agency in (("agency_a", "metropolitan-police"),
                                 ("agency_b", "west-midlands-police"), ("dvla", "dvla")):
                tokens[role], _ = accounts.create_agency_token(
                    s, agreements, agency, scope=None, label=role, at=now)
            for name, role in (("alice", "reviewer"), ("bob", "reviewer"),
                               ("olive", "oversight")):
                accounts.create_account(s, name, role, PASSWORD, at=now)
        clients: dict[str, TestClient] = {"anonymous": TestClient(app)}
        for role in ("agency_a", "agency_b", "dvla"):
            clients[role] = TestClient(app, headers=bearer(tokens[role]))
        csrf: dict[str, str] = {}
        for role, name in (("reviewer", "alice"), ("reviewer_2", "bob"),
                           ("oversight", "olive")):
            clients[role] = TestClient(app)
            csrf[role] = login(clients[role], name)
        world = World(cfg, app, tokens, clients, csrf)
        clients["subject"] = TestClient(app)
        csrf["subject"] = subject_login(world, clients["subject"], SUSPECT_NHS, "1975-02-14")
        made.extend(clients.values())
        return world

    yield build
    for c in made:
        c.close()


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:
    return world_factory()
