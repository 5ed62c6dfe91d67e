"""Authorisation matrix: every endpoint × every role → the expected status.

Adding an endpoint without adding its row here fails ``test_every_route_is_in_the_matrix``.
Statuses: 401 = not authenticated, 403 = authenticated but not allowed, 404 = another
agency's request (indistinguishable from a missing one), 2xx/4xx otherwise as listed.
"""

from __future__ import annotations

from typing import Any

import pytest

from safehaven.domain.decision import AgreementSet
from tests.api.aggregate_support import (
    STATS_REQUEST,
    STATS_TWO,
    outreach,
    with_statistics_agreements,
)
from tests.api.conftest import APPLICANT_NHS, POLICE_NHS, World
from tests.builders import POLICE, STATUS, body

ROLES = ("anonymous", "agency_a", "agency_b", "reviewer", "oversight", "subject")
A_ONLY = {"anonymous": 401, "agency_a": 200, "agency_b": 404,
          "reviewer": 403, "oversight": 403, "subject": 403}
AGENCY = {"anonymous": 401, "agency_a": 200, "agency_b": 200,
          "reviewer": 403, "oversight": 403, "subject": 403}
REVIEWER = {"anonymous": 401, "agency_a": 403, "agency_b": 403,
            "reviewer": 200, "oversight": 403, "subject": 403}
OVERSIGHT = {"anonymous": 401, "agency_a": 403, "agency_b": 403,
             "reviewer": 403, "oversight": 200, "subject": 403}
SUBJECT = {"anonymous": 401, "agency_a": 403, "agency_b": 403,
           "reviewer": 403, "oversight": 403, "subject": 200}
PEOPLE = {"anonymous": 401, "agency_a": 403, "agency_b": 403,
          "reviewer": 200, "oversight": 200, "subject": 200}
ANYONE = dict.fromkeys(ROLES, 200)

# (method, path template, body, expected per role).  {rid} is agency A's request, {aid}
# agency A's released aggregate, {qid} agency A's aggregate waiting for two reviewers.
MATRIX: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/v1/health", None, ANYONE),
    ("POST", "/v1/requests", body(POLICE, requester=None),
     {**AGENCY, "agency_a": 201, "agency_b": 201}),
    ("POST", "/v1/status-checks", body(STATUS, requester=None),
     {**AGENCY, "agency_a": 403, "agency_b": 403}),
    ("POST", "/v1/requests/bulk", None, AGENCY),
    ("GET", "/v1/requests", None, AGENCY),
    ("GET", "/v1/requests/{rid}", None, A_ONLY),
    ("GET", "/v1/review/queue", None, REVIEWER),
    ("GET", "/v1/review/requests/{rid}", None, REVIEWER),
    ("POST", "/v1/review/requests/{rid}/verdict", {"verdict": "refuse", "reason": "matrix"},
     REVIEWER),
    ("GET", "/v1/review/exemptions/overdue", None, REVIEWER),
    # {rid} was refused by the row above: nothing to lift (409) once past authorisation.
    ("POST", "/v1/review/exemptions/{rid}", {"action": "lift", "reason": "matrix"},
     {**REVIEWER, "reviewer": 409}),
    ("POST", "/v1/aggregates", {**STATS_REQUEST, "request_id": None},
     {**AGENCY, "agency_a": 201, "agency_b": 201}),
    ("GET", "/v1/aggregates", None, AGENCY),
    ("GET", "/v1/aggregates/{aid}", None, A_ONLY),
    ("GET", "/v1/review/aggregates", None, REVIEWER),
    ("GET", "/v1/review/aggregates/{qid}", None, REVIEWER),
    ("POST", "/v1/review/aggregates/{qid}/verdict", {"verdict": "refuse", "reason": "matrix"},
     REVIEWER),
    ("GET", "/v1/oversight/aggregates", None, OVERSIGHT),
    ("GET", "/v1/oversight/aggregates/{qid}", None, OVERSIGHT),
    ("POST", "/v1/session", {"username": "nobody", "password": "x"}, dict.fromkeys(ROLES, 401)),
    ("GET", "/v1/session", None, PEOPLE),
    ("DELETE", "/v1/session", None, {**PEOPLE, "reviewer": 204, "oversight": 204,
                                     "subject": 204}),
    ("POST", "/v1/subject/code", {"nhs_number": APPLICANT_NHS, "birthdate": "1992-07-30"},
     dict.fromkeys(ROLES, 202)),
    ("POST", "/v1/subject/session",
     {"nhs_number": APPLICANT_NHS, "birthdate": "1992-07-30", "code": "000000"},
     dict.fromkeys(ROLES, 401)),
    ("GET", "/v1/subject/requests", None, SUBJECT),
    ("GET", "/v1/oversight/ledger/head", None, OVERSIGHT),
    ("GET", "/v1/oversight/ledger/proofs/inclusion?index=0&size=1", None, OVERSIGHT),
    ("GET", "/v1/oversight/ledger/proofs/consistency?first=1&second=2", None, OVERSIGHT),
    ("GET", "/v1/oversight/statistics", None, OVERSIGHT),
]


@pytest.fixture
def agreements(agreements: AgreementSet) -> AgreementSet:
    """The bundled agreements plus test-only ones under which police may ask for counts."""
    return with_statistics_agreements(agreements)


def test_every_route_is_in_the_matrix(world: World) -> None:
    paths = world.client().get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    listed = {(m, p.split("?")[0].replace("{rid}", "{request_id}")
               .replace("{aid}", "{release_id}").replace("{qid}", "{release_id}"))
              for m, p, _, _ in MATRIX}
    assert routes == listed


def _payload(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if v is not None}
    return payload


@pytest.mark.parametrize("role", ROLES)
def test_matrix(world: World, role: str) -> None:
    rid = world.clients["agency_a"].post("/v1/requests", json=POLICE_NHS).json()["id"]
    world.cfg.datasets = {"gla": outreach()}
    aid = world.clients["agency_a"].post("/v1/aggregates", json=STATS_REQUEST).json()["id"]
    qid = world.clients["agency_a"].post(
        "/v1/aggregates", json={**STATS_REQUEST, "request_id": "q", "agreement": STATS_TWO}
    ).json()["id"]
    client = world.clients[role]
    got: dict[str, int] = {}
    want: dict[str, int] = {}
    for method, template, payload, expected in MATRIX:
        path = template.replace("{rid}", rid).replace("{aid}", aid).replace("{qid}", qid)
        headers = {"X-CSRF-Token": world.csrf[role]} if role in world.csrf else {}
        if path == "/v1/requests/bulk":
            headers["Content-Type"] = "application/x-ndjson"
            r = client.post(path, content='{"request_id": "m"}\n', headers=headers)
        elif method == "DELETE":
            continue  # run last: it ends the session the other rows need
        else:
            r = client.request(method, path, json=_payload(payload), headers=headers)
        got[f"{method} {template}"] = r.status_code
        want[f"{method} {template}"] = expected[role]
    r = client.delete("/v1/session", headers=headers)
    got["DELETE /v1/session"] = r.status_code
    want["DELETE /v1/session"] = next(e for m, p, _, e in MATRIX
                                      if (m, p) == ("DELETE", "/v1/session"))[role]
    assert got == want


def test_agency_never_sees_other_agency_request_or_unpermitted_field(world: World) -> None:
    rid = world.clients["agency_a"].post(
        "/v1/requests", json={**POLICE_NHS, "fields": ["address"]}).json()["id"]
    world.post("reviewer", f"/v1/review/requests/{rid}/verdict",
               json={"verdict": "approve", "reason": "ok"})
    b = world.clients["agency_b"]
    assert b.get(f"/v1/requests/{rid}").status_code == 404
    assert rid not in b.get("/v1/requests").text
    a_view = world.clients["agency_a"].get(f"/v1/requests/{rid}").json()
    assert a_view["disclosure"]["fields"] == {"address": "1 Test Street, Leeds"}
    # The register holds the postcode, GP practice and phone too: none of it leaves.
    for secret in ("LS1 4AP", "B86001", "07700900001", "R-SUSPECT"):
        assert secret not in world.clients["agency_a"].get(f"/v1/requests/{rid}").text
        assert secret not in world.clients["agency_a"].get("/v1/requests").text
