"""The synthetic register is realistic enough to be hard, and the same for the same seed."""

from __future__ import annotations

import pandas as pd

from safehaven.domain.nhs_number import is_valid_nhs_number
from safehaven.domain.request import parse_request_obj
from safehaven.matching.synth import synth_register, synth_requests


def test_deterministic_per_seed() -> None:
    a = synth_register(3_000, seed=9)
    b = synth_register(3_000, seed=9)
    c = synth_register(3_000, seed=10)
    pd.testing.assert_frame_equal(a, b)
    assert not a["family"].equals(c["family"])
    ra = [r for r, _, _ in synth_requests(a, 200, seed=9)]
    rb = [r for r, _, _ in synth_requests(b, 200, seed=9)]
    assert ra == rb


def test_population_shape() -> None:
    df = synth_register(20_000, seed=1)
    assert df["nhs_number"].is_unique and df["record_id"].is_unique
    assert all(is_valid_nhs_number(v) for v in df["nhs_number"])
    # Common surnames are common; there is also a long tail of rare ones.
    counts = df["family"].value_counts()
    assert counts.iloc[0] > 100 and (counts == 1).sum() > 500
    # Households share postcodes; some people moved; some share a birthday and a surname.
    assert df["postcode"].nunique() < len(df) / 3
    assert 0.1 < df["previous_postcode"].notna().mean() < 0.2
    twins = df.duplicated(["family", "birthdate", "postcode"], keep=False)
    assert twins.sum() >= 10


def test_requests_parse_and_carry_ground_truth() -> None:
    df = synth_register(5_000, seed=2)
    items = list(synth_requests(df, 1_000, seed=2))
    ids = set(df["record_id"])
    absent = sum(1 for _, truth, _ in items if truth is None)
    assert absent == 200
    assert all(truth in ids for _, truth, _ in items if truth is not None)
    kinds = {e for _, _, errs in items for e in errs}
    assert {"family_typo", "given_nickname", "given_missing", "dob_swapped",
            "old_postcode"} <= kinds
    for request, _, _ in items:
        parse_request_obj(request)  # strict parser: no extra keys, valid dates and postcodes
