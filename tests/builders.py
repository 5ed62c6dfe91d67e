"""Synthetic request and agreement builders for tests (no real people)."""

from __future__ import annotations

import copy
from typing import Any

from safehaven.agreements import bundled_dir
from safehaven.domain.request import TracingRequest, parse_request_obj

NHS_TRACE: dict[str, Any] = {
    "requester": "home-office",
    "agreement": "nhs-digital-home-office-2017",
    "purpose": "immigration-offence-trace",
    "made_on": "2017-06-01",
    "subject": {
        "family": "Testperson",
        "given": "Alex",
        "birthdate": "1990-01-31",
        "address-postalcode": "LS1 4AP",
    },
    "grounds": {
        "offence": "s.24(1)(b) overstaying",
        "lost_contact": True,
        "other_attempts": ["reporting centre"],
    },
    "fields": ["address", "address-postalcode"],
}

NHS_DEPORT: dict[str, Any] = {
    **NHS_TRACE,
    "purpose": "deportation-serious-crime",
    "grounds": {
        "offence": "GBH",
        "serious_crime": True,
        "deportation_considered": True,
        "other_attempts": ["probation"],
    },
}

DFE_TRACE: dict[str, Any] = {
    "requester": "home-office",
    "agreement": "dfe-home-office-2016",
    "purpose": "immigration-offence-trace",
    "made_on": "2016-11-03",
    "subject": {"family": "Testchild", "given": "Sam", "birthdate": "2009-05-19"},
    "grounds": {"offence": "s.24 (parent)", "lost_contact": True, "believed_in_uk": True},
    "fields": ["address", "school"],
}

POLICE: dict[str, Any] = {
    "requester": "metropolitan-police",
    "agreement": "nhs-police-tracing",
    "purpose": "police-serious-crime",
    "made_on": "2017-09-01",
    "subject": {"family": "Testsuspect", "given": "Jo", "birthdate": "1975-02-14"},
    "grounds": {"offence": "Rape", "offence_date": "2016-02-20", "serious_crime": True},
    "fields": ["address", "address-postalcode"],
}

STATUS: dict[str, Any] = {
    "requester": "dvla",
    "agreement": "home-office-status-checks",
    "purpose": "status-check",
    "made_on": "2018-09-12",
    "subject": {"family": "Testapplicant", "birthdate": "1992-07-30"},
    "grounds": {"application_reference": "D1-000123"},
    "fields": ["entitlement"],
}


def body(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted-path changes (``subject.given=None`` deletes)."""
    out = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = out
        for p in parents:
            target = target.setdefault(p, {})
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return out


def req(base: dict[str, Any], **changes: Any) -> TracingRequest:
    return parse_request_obj(body(base, **changes))


def bundled_yaml(name: str) -> str:
    return (bundled_dir() / f"{name}.yaml").read_text(encoding="utf-8")
