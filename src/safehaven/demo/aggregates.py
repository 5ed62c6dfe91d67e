"""Aggregate releases in the demo: controllers' synthetic records and a few requests for counts.

Without a controller's records ``POST /v1/aggregates`` can only answer "dataset
unavailable", so the demo writes each controller's file where the service reads it
(``$SAFEHAVEN_HOME/datasets/<controller>.parquet``) and then replays the requests for
counts listed in ``parameters.yaml`` through the same service functions the API calls
(:func:`safehaven.service.aggregates.submit_aggregate` and
:func:`~safehaven.service.aggregates.review_aggregate`, which enforces four-eyes).  The
reviewer desk, the oversight page and the transparency report then have releases to show:
refused by the firewall, released with suppression, released after two reviewers, refused
by a reviewer, and one still waiting.

The records are synthetic and hold no name or identifier: only the columns a breakdown
reads (postcode, gender, date of birth, nationality answer, date first seen) and, for the
outreach records, the point where a person was seen, which no release may include.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from safehaven.demo.parameters import DatasetSpec, Parameters
from safehaven.domain.collection import REFUSED
from safehaven.domain.decision import AgreementSet
from safehaven.domain.request import parse_aggregate_request
from safehaven.ledger import heads, keys
from safehaven.service import aggregates as svc

#: Written beside the files the demo made, one file name a line: a later demo may replace
#: those, and only those (a controller's real records are never overwritten).
MARKER = "SYNTHETIC-DEMO-DATA.txt"
BRITISH = "GB"
NOT_OBTAINED = ""
#: The letters Royal Mail uses in the inward half of a postcode.
_LETTERS = np.array(list("ABDEFGHJLNPQRSTUWXYZ"), dtype=object)


class DatasetConflictError(RuntimeError):
    """A controller's file is in the workspace and the demo did not write it."""


def _rng(seed: int, controller: str) -> np.random.Generator:
    """One stream per controller, so adding a dataset does not change the others."""
    salt = int.from_bytes(hashlib.sha256(controller.encode()).digest()[:4], "big")
    return np.random.default_rng([seed, salt])


def _weighted(rng: np.random.Generator, weights: dict[str, float], n: int) -> Any:
    keys_ = np.array(list(weights), dtype=object)
    p = np.array(list(weights.values()), dtype=float)
    return keys_[rng.choice(len(keys_), n, p=p / p.sum())]


def _dates(rng: np.random.Generator, first: date, last: date, n: int) -> Any:
    start = np.datetime64(first.isoformat(), "D")
    span = (last - first).days + 1
    return np.datetime_as_string(start + rng.integers(0, span, n)).astype(object)


def synth_dataset(spec: DatasetSpec, seed: int) -> pd.DataFrame:
    """A controller's records as the aggregate service reads them; deterministic."""
    rng = _rng(seed, spec.controller)
    n = spec.records
    district = _weighted(rng, spec.areas, n)
    inward = (pd.Series(rng.integers(0, 10, n)).astype(str)
              + pd.Series(_LETTERS[rng.integers(0, len(_LETTERS), n)])
              + pd.Series(_LETTERS[rng.integers(0, len(_LETTERS), n)]))
    postcode = pd.Series(district).str.cat(inward, sep=" ")

    shares = spec.nationality
    draw = rng.random(n)
    other = np.array(shares.non_uk_values, dtype=object)[
        rng.integers(0, len(shares.non_uk_values), n)]
    cut = np.cumsum([shares.refused, shares.not_obtained, shares.non_uk])
    nationality = np.where(draw < cut[0], REFUSED, np.where(
        draw < cut[1], NOT_OBTAINED, np.where(draw < cut[2], other, BRITISH))).astype(object)

    lo, hi = spec.age_years
    on = np.datetime64(spec.ages_on.isoformat(), "D")
    age_days = rng.integers(int(lo * 365.25), int((hi + 1) * 365.25) - 1, n)
    birthdate = np.datetime_as_string(on - age_days.astype("timedelta64[D]")).astype(object)

    data: dict[str, Any] = {
        "postcode": postcode.to_numpy(dtype=object),
        "gender": _weighted(rng, spec.gender, n),
        "birthdate": birthdate,
        "nationality": nationality,
    }
    if spec.first_seen is not None:
        data["registered_on"] = _dates(rng, spec.first_seen[0], spec.first_seen[1], n)
    if spec.point_locations:
        data["latitude"] = np.round(51.48 + rng.random(n) * 0.06, 5)
        data["longitude"] = np.round(-0.20 + rng.random(n) * 0.15, 5)
    return pd.DataFrame(data)


def _ours(directory: Path) -> set[str]:
    marker = directory / MARKER
    if not marker.is_file():
        return set()
    return {line.strip() for line in marker.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")}


def write_datasets(params: Parameters, directory: Path) -> dict[str, Path]:
    """Write every controller's synthetic records as ``<controller>.parquet``.

    A file the demo did not write (a ``.parquet`` or ``.csv`` for the same controller) is
    never replaced or shadowed: :class:`DatasetConflictError` names it and nothing is
    written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ours = _ours(directory)
    for spec in params.datasets:
        for suffix in (".parquet", ".csv"):
            path = directory / f"{spec.controller}{suffix}"
            if path.exists() and path.name not in ours:
                raise DatasetConflictError(
                    f"{path} holds records the demo did not write; run the demo in a fresh "
                    "workspace (SAFEHAVEN_HOME)")
    written: dict[str, Path] = {}
    for spec in params.datasets:
        path = directory / f"{spec.controller}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        synth_dataset(spec, params.seed).to_parquet(tmp, index=False)
        tmp.replace(path)
        written[spec.controller] = path
    names = sorted(ours | {p.name for p in written.values()})
    (directory / MARKER).write_text(
        "# Synthetic records written by `safehaven demo`; no real person is in them.\n"
        + "".join(f"{name}\n" for name in names), encoding="utf-8")
    return written


@dataclass(frozen=True)
class CaseOutcome:
    """What became of one replayed request for counts (for the printed summary)."""

    case: str
    label: str
    release: str
    agreement: str
    state: str
    refused_by: list[str]
    reviewers: list[str]
    suppressed_cells: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case, "label": self.label, "release": self.release,
                "agreement": self.agreement, "state": self.state,
                "refused_by": self.refused_by, "reviewers": self.reviewers,
                "suppressed_cells": self.suppressed_cells}


def replay_aggregates(factory: sessionmaker[Session], params: Parameters,
                      agreements: AgreementSet, datasets: svc.Datasets) -> list[CaseOutcome]:
    """Submit and review every case in ``params.aggregates`` in one transaction, then sign
    a tree head so the ledger's signed head covers them.

    The firewall is read from the store as the live service reads it (the demo has switched
    it back on by now); each case is received at 10:00 UTC on its ``made_on`` day and each
    review ``after_days`` later.
    """
    outcomes = []
    with factory() as session, session.begin():
        for case in params.aggregates:
            request = parse_aggregate_request(json.dumps(case.request))
            received = datetime.combine(request.made_on, time(10), UTC)
            row = svc.submit_aggregate(session, request, agreements, datasets,
                                       received_at=received).row
            for i, review in enumerate(case.reviews):
                row = svc.review_aggregate(
                    session, row.public_id, reviewer=review.reviewer, verdict=review.verdict,
                    reason=review.reason,
                    at=received + timedelta(days=review.after_days, minutes=i))
            table = row.protected_table
            outcomes.append(CaseOutcome(
                case=case.id, label=case.label, release=row.public_id,
                agreement=row.agreement_id, state=row.state,
                refused_by=list(row.decision["refused_by"]),
                reviewers=[r.reviewer for r in row.reviews],
                suppressed_cells=int(table["suppressed_cells"]) if table else None))
        heads.sign_head(session, keys.load_or_create_signing_key())
    return outcomes


__all__ = ["MARKER", "CaseOutcome", "DatasetConflictError", "replay_aggregates",
           "synth_dataset", "write_datasets"]
