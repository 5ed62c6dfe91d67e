"""The tracing flow against a real (small) register and a Splink-trained model."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safehaven.matching.index import RegisterIndex
from safehaven.matching.model import save_model, train, training_sample
from safehaven.matching.online import RELEASABLE_COLUMNS, PgRegisterMatcher, RegisterMatcher
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
from safehaven.matching.pg_index import build_index
from safehaven.matching.register import register_digest
from safehaven.matching.scorer import Matcher, Weights
from safehaven.matching.synth import synth_register
from safehaven.service.register_matcher import WorkspaceRegister
from tests.api.conftest import World
from tests.builders import POLICE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def register() -> pd.DataFrame:
    return synth_register(3_000, seed=5)


@pytest.fixture(scope="module")
def model(register: pd.DataFrame) -> dict[str, Any]:
    return train(PERSON_SPEC, register, training_sample(register, 2_000, seed=5),
                 em_blocking=EM_BLOCKING, seed=5)


@pytest.fixture(scope="module")
def online(register: pd.DataFrame, model: dict[str, Any]) -> RegisterMatcher:
    index = RegisterIndex.from_frame(PERSON_SPEC, register, "record_id")
    releasable = pa.Table.from_pandas(register[list(RELEASABLE_COLUMNS)], preserve_index=False)
    return RegisterMatcher(Matcher(index, Weights.from_settings(PERSON_SPEC, model)),
                           releasable, 0.0)


def test_approved_request_is_matched_minimised_and_notified(
    world_factory: Callable[..., World], register: pd.DataFrame, online: RegisterMatcher
) -> None:
    world = world_factory()
    world.cfg.matcher = WorkspaceRegister(online)
    person = register.iloc[7]
    subject: dict[str, Any] = {"family": person["family"], "given": person["given"],
                               "birthdate": person["birthdate"],
                               "address-postalcode": person["postcode"]}
    rid = world.clients["agency_a"].post(
        "/v1/requests", json={**POLICE, "subject": subject, "fields": ["address-postalcode"]}
    ).json()["id"]
    r = world.post("reviewer", f"/v1/review/requests/{rid}/verdict",
                   json={"verdict": "approve", "reason": "serious"})
    assert r.json()["state"] == "notified", r.text
    seen = world.clients["agency_a"].get(f"/v1/requests/{rid}").json()
    assert seen["disclosure"]["fields"] == {"address-postalcode": person["postcode"]}
    assert world.outbox("disclosure_notice")[-1].recipient == person["record_id"]
    # The request is linked to the matched person's NHS number for the portal.
    from tests.api.conftest import subject_login

    portal = world.client()
    subject_login(world, portal, str(person["nhs_number"]), str(person["birthdate"]))
    assert [m["id"] for m in portal.get("/v1/subject/requests").json()["requests"]] == [rid]


def _disclose(world: World, person: pd.Series, request_id: str) -> dict[str, Any]:
    subject: dict[str, Any] = {"family": person["family"], "given": person["given"],
                               "birthdate": person["birthdate"],
                               "address-postalcode": person["postcode"]}
    body = {**POLICE, "request_id": request_id, "subject": subject,
            "fields": ["address", "address-postalcode"]}
    rid = world.clients["agency_a"].post("/v1/requests", json=body).json()["id"]
    r = world.post("reviewer", f"/v1/review/requests/{rid}/verdict",
                   json={"verdict": "approve", "reason": "serious"})
    seen = world.clients["agency_a"].get(f"/v1/requests/{rid}").json()
    disclosure = seen.get("disclosure")
    return {"state": r.json()["state"], "match": seen.get("match"),
            "fields": disclosure["fields"] if disclosure else None}


@pytest.mark.postgres
def test_the_postgres_index_discloses_what_the_in_memory_one_does(
    world_factory: Callable[..., World], register: pd.DataFrame, model: dict[str, Any],
    online: RegisterMatcher, pg_module_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twins = pd.concat([register, register.iloc[[11]].assign(
        record_id="TWIN", nhs_number="9999999999")], ignore_index=True)
    build_index(pg_module_url, pa.Table.from_pandas(twins, preserve_index=False), PERSON_SPEC,
                releasable=RELEASABLE_COLUMNS, schema="api_index")
    memory = RegisterMatcher(
        Matcher(RegisterIndex.from_frame(PERSON_SPEC, twins, "record_id"), online.matcher.weights),
        pa.Table.from_pandas(twins[list(RELEASABLE_COLUMNS)], preserve_index=False), 0.0)
    model_path = tmp_path / "model.json"
    save_model(model, model_path)
    monkeypatch.setenv("SAFEHAVEN_REGISTER_INDEX_URL", pg_module_url)
    monkeypatch.setenv("SAFEHAVEN_REGISTER_INDEX_SCHEMA", "api_index")
    on_pg = WorkspaceRegister.load(model=model_path)  # the switch the server uses
    assert isinstance(on_pg.online, PgRegisterMatcher)
    world = world_factory()
    seen: dict[str, list[dict[str, Any]]] = {}
    try:
        for backend, matcher in (("memory", WorkspaceRegister(memory)), ("postgres", on_pg)):
            world.cfg.matcher = matcher
            seen[backend] = [_disclose(world, register.iloc[i], f"{backend}-{i}")
                             for i in (7, 11, 42, 1234)]
    finally:
        on_pg.online.close()
    assert seen["postgres"] == seen["memory"]
    states = [s["state"] for s in seen["postgres"]]
    assert states.count("notified") == 3  # person 11 has a twin: ambiguous, nothing leaves
    assert seen["postgres"][1]["fields"] is None
    assert seen["postgres"][0]["fields"]["address-postalcode"] == register.iloc[7]["postcode"]
    recipients = [n.recipient for n in world.outbox("disclosure_notice")]
    assert recipients[3:] == recipients[:3] == [register.iloc[i]["record_id"]
                                               for i in (7, 42, 1234)]


def _write_register(frame: pd.DataFrame, path: Path) -> None:
    """Replace the register file as ``register import`` does (a new file renamed over)."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    os.replace(tmp, path)


def test_health_says_when_the_loaded_register_was_replaced(
    world_factory: Callable[..., World], register: pd.DataFrame, model: dict[str, Any],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from safehaven.api import app as app_module

    monkeypatch.setattr(app_module, "HEALTH_RECHECK_S", 0.0)  # no reuse of the last answer
    reg, model_path = tmp_path / "register.parquet", tmp_path / "model.json"
    _write_register(register, reg)
    save_model(model, model_path)
    loaded = WorkspaceRegister.load(register=reg, model=model_path)
    assert loaded.freshness() == "current"
    world = world_factory()
    world.cfg.matcher = loaded
    health = world.client().get("/v1/health").json()
    assert (health["status"], health["register_freshness"]) == ("ok", "current")
    moved = register.assign(postcode=register["postcode"].iloc[::-1].to_numpy())
    _write_register(moved, reg)  # a new import: this process still holds the old one
    assert loaded.freshness() == "stale"
    health = world.client().get("/v1/health")
    assert health.status_code == 200  # still serving: a readiness probe must not fail
    assert (health.json()["status"], health.json()["register_freshness"]) == ("degraded",
                                                                               "stale")
    reg.unlink()  # no file on this host: nothing to compare with
    assert loaded.freshness() == "unknown"


@pytest.mark.postgres
def test_a_postgres_index_not_rebuilt_after_an_import_is_stale(
    register: pd.DataFrame, model: dict[str, Any], pg_module_url: str, tmp_path: Path,
) -> None:
    reg, model_path = tmp_path / "register.parquet", tmp_path / "model.json"
    _write_register(register, reg)
    save_model(model, model_path)

    def build() -> None:
        build_index(pg_module_url, pq.read_table(reg), PERSON_SPEC,
                    releasable=RELEASABLE_COLUMNS, schema="fresh_index",
                    register_sha256=register_digest(reg))

    build()
    served = WorkspaceRegister(PgRegisterMatcher.load(pg_module_url, model_path,
                                                      schema="fresh_index"), reg)
    try:
        assert served.freshness() == "current"
        _write_register(register.iloc[::-1], reg)
        assert served.freshness() == "stale"
        build()  # the rebuild swaps in under the running matcher, which sees it at once
        assert served.freshness() == "current"
    finally:
        served.online.close()
