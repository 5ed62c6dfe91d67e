"""Agreements and data for the aggregate API tests.

The only bundled agreement that permits aggregates is the GLA map, which the firewall
refuses; two test-only variants let the released path run with the firewall on: police
forces asking the GLA for counts for statistics, without review and with four-eyes.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd
import yaml

from safehaven.domain.agreement import Agreement
from safehaven.domain.decision import AgreementSet
from tests.builders import bundled_yaml

STATS = "gla-police-statistics-test"
STATS_TWO = "gla-police-statistics-four-eyes-test"

GLA_MAP: dict[str, Any] = {
    "format": "safehaven.aggregate/v1",
    "requester": "home-office",
    "agreement": "gla-home-office-outreach-map",
    "purpose": "enforcement-targeting",
    "made_on": "2017-03-01",
    "dimensions": ["area", "nationality_group"],
}

#: Agency A's request for counts, without ``requester`` (the token says who asks).
STATS_REQUEST: dict[str, Any] = {
    "format": "safehaven.aggregate/v1",
    "request_id": "agg-1",
    "agreement": STATS,
    "purpose": "aggregate-statistics",
    "made_on": "2017-03-01",
    "dimensions": ["area", "nationality_group"],
}


def _variant(agreement_id: str, review: str) -> Agreement:
    data = yaml.safe_load(bundled_yaml("gla-home-office-outreach-map"))
    data["id"] = agreement_id
    data["title"] = f"Test: police counts from GLA outreach records (review {review})"
    data["parties"]["requesters"] = [
        {"id": "metropolitan-police", "name": "Metropolitan Police Service"},
        {"id": "west-midlands-police", "name": "West Midlands Police"},
    ]
    data["purposes"] = [{
        "id": "aggregate-statistics", "legal_bases": ["dpa-1998-s29"],
        "aggregates": {"dimensions": ["area", "nationality_group", "gender"], "min_cell": 10},
        "review": review,
    }]
    data["compatible_uses"] = [
        {"collected_for": "homelessness-support", "purposes": ["aggregate-statistics"]}]
    data["status_history"] = [{"date": "2016-05-01", "status": "in_force", "note": "test",
                               "source": "test"}]
    return Agreement.model_validate(data)


def with_statistics_agreements(agreements: AgreementSet) -> AgreementSet:
    return AgreementSet.of(
        [*agreements.agreements.values(), _variant(STATS, "none"), _variant(STATS_TWO, "two")],
        agreements.profiles.values(),
    )


def outreach(n: int = 600, seed: int = 1) -> pd.DataFrame:
    """Synthetic outreach records: skewed areas so that some cells are small; exact
    coordinates that must never leave."""
    rnd = random.Random(seed)
    areas = ["E1 6AN", "N1 9GU", "SE1 7PB", "W2 1HB", "NW1 2DB", "SW9 8EH", "E17 4PP"]
    weights = [40, 25, 15, 8, 6, 4, 2]
    nat = ["GB", "PL", "RO", "refused", "", "ER"]
    return pd.DataFrame({
        "postcode": rnd.choices(areas, weights, k=n),
        "nationality": rnd.choices(nat, [50, 15, 10, 8, 5, 12], k=n),
        "latitude": [51.5 + rnd.random() / 10 for _ in range(n)],
        "longitude": [-0.1 + rnd.random() / 10 for _ in range(n)],
    })


def published_values(table: dict[str, Any]) -> list[Any]:
    values = [v for row in table["rows"] for v in [*row["cells"].values(), row["total"]]]
    return [*values, *table["column_totals"].values(), table["total"]]
