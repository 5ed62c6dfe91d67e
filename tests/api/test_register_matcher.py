"""The tracing flow against a real (small) register and a Splink-trained model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from safehaven.matching.index import RegisterIndex
from safehaven.matching.model import train, training_sample
from safehaven.matching.online import RELEASABLE_COLUMNS, RegisterMatcher
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
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
def online(register: pd.DataFrame) -> RegisterMatcher:
    model = train(PERSON_SPEC, register, training_sample(register, 2_000, seed=5),
                  em_blocking=EM_BLOCKING, seed=5)
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
