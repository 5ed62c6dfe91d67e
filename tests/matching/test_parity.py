"""The online scorer gives exactly Splink's match probability for the same pair."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from safehaven.matching.index import prepare_values
from safehaven.matching.model import new_linker, splink_frame, subjects_to_frame
from safehaven.matching.person import PERSON_SPEC
from safehaven.matching.scorer import Matcher, weight_to_prob
from safehaven.matching.synth import synth_requests


def _requests(register: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    reqs = list(synth_requests(register, n, seed=seed))
    return subjects_to_frame([r["subject"] for r, _, _ in reqs],
                             [str(r["request_id"]) for r, _, _ in reqs])


def test_scores_equal_splink_predict_between(register: pd.DataFrame, model: dict[str, Any],
                                             matcher: Matcher) -> None:
    requests = _requests(register, 600, seed=21)
    reg = splink_frame(PERSON_SPEC, register, "record_id")
    req = splink_frame(PERSON_SPEC, requests, "unique_id")
    linker = new_linker(PERSON_SPEC, [("register", reg), ("requests", req)], model)
    db = linker._db_api
    left = db.register(req, dataset_display_name="left_requests")
    right = db.register(reg, dataset_display_name="right_register")
    pairs = linker.inference.predict_between(left, right).as_pandas_dataframe()
    # Include weak pairs too (different postcode, different name ...), not just matches.
    assert len(pairs) >= 1_000
    assert (pairs["match_probability"] < 0.5).sum() >= 100
    row_of = {rid: i for i, rid in enumerate(register["record_id"].astype(str))}
    by_request = {rid: rec for rid, rec in zip(requests["unique_id"],
                                               requests.to_dict("records"), strict=True)}
    worst = 0.0
    for req_id, group in pairs.groupby("unique_id_l"):
        prepared = prepare_values(PERSON_SPEC, by_request[str(req_id)])
        rows = np.array([row_of[str(r)] for r in group["unique_id_r"]], dtype=np.int32)
        ours = [weight_to_prob(w) for w in matcher.score_rows(prepared, rows)]
        worst = max(worst, float(np.max(np.abs(np.array(ours) - group["match_probability"]))))
    assert worst < 1e-6


def test_every_level_is_exercised_and_agrees_with_splink(register: pd.DataFrame,
                                                          model: dict[str, Any],
                                                          matcher: Matcher) -> None:
    """Score hand-made pairs hitting each comparison level through Splink's score_pairs."""
    base = register.iloc[0].to_dict()
    dob = "1980-03-07"
    person = {**base, "family": "Smith", "given": "William", "birthdate": dob,
              "postcode": "SE1 7PB", "previous_postcode": "N1 9GU", "gender": "male"}
    variants = [
        {"family": "Smith", "given": "William"},
        {"family": "Smyth", "given": "Bill"},
        {"family": "Smithe", "given": "Wiliam"},
        {"family": "Smythe", "given": "Walter"},
        {"family": "Jones", "given": None, "gender": "female"},
        {"given": "Zachary"},
        {"birthdate": "1980-07-03"},
        {"birthdate": "1980-03-08"},
        {"birthdate": "1980-11-30"},
        {"birthdate": "1991-11-30"},
        {"postcode": "N1 9GU"},
        {"postcode": "SE1 7QQ"},
        {"postcode": "M1 1AA"},
        {"postcode": None, "nhs_number": base["nhs_number"]},
        {"nhs_number": "9434765919"},
    ]
    left_rows = [{**person, **v} for v in variants]
    left = subjects_to_frame([{"family": r["family"], "given": r["given"],
                               "gender": r["gender"], "birthdate": r["birthdate"],
                               "address-postalcode": r["postcode"],
                               "nhs_number": r.get("nhs_number")} for r in left_rows],
                             [f"L{i}" for i in range(len(left_rows))])
    right = pd.DataFrame([{**person, "record_id": "X1"}])
    lf = splink_frame(PERSON_SPEC, left, "unique_id")
    rf = splink_frame(PERSON_SPEC, right, "record_id")
    linker = new_linker(PERSON_SPEC, [("register", rf), ("requests", lf)], model)
    scored = linker.inference.score_pairs(lf.to_dict("records"),
                                          rf.to_dict("records")).as_pandas_dataframe()
    from safehaven.matching.index import RegisterIndex
    from safehaven.matching.scorer import Matcher

    single = Matcher(RegisterIndex.from_frame(PERSON_SPEC, right, "record_id"),
                     matcher.weights)
    levels_seen: set[tuple[str, int]] = set()
    for rec, (_, srow) in zip(lf.to_dict("records"), scored.iterrows(), strict=True):
        prepared = prepare_values(PERSON_SPEC, rec)
        ours = weight_to_prob(float(single.score_rows(prepared,
                                                      np.array([0], dtype=np.int32))[0]))
        assert abs(ours - srow["match_probability"]) < 1e-6
        for comp in PERSON_SPEC.comparisons:
            levels_seen.add((comp.name, int(srow[f"gamma_{comp.name}"])))
    # Every non-null level of every comparison (and the null level) was hit at least once.
    for comp in PERSON_SPEC.comparisons:
        n_levels = len(comp.levels) - 1
        assert {lv for name, lv in levels_seen if name == comp.name} >= set(range(n_levels))


def test_arrow_and_pandas_indexes_are_identical(register: pd.DataFrame) -> None:
    import pyarrow as pa

    from safehaven.matching.index import RegisterIndex

    a = RegisterIndex.from_frame(PERSON_SPEC, register, "record_id")
    b = RegisterIndex.from_arrow(PERSON_SPEC, pa.Table.from_pandas(register), "record_id")
    for col in PERSON_SPEC.base:
        assert list(a.base[col].cats) == list(b.base[col].cats)
        assert np.array_equal(a.base[col].codes, b.base[col].codes)
    for x, y in zip(a.blocks, b.blocks, strict=True):
        assert np.array_equal(x.keys, y.keys) and np.array_equal(x.rows, y.rows)
    assert a.record_id(17) == b.record_id(17) == register["record_id"].iloc[17]


def test_arrow_and_pandas_prepared_tables_are_identical(register: pd.DataFrame) -> None:
    from safehaven.matching.model import splink_table

    frame = splink_frame(PERSON_SPEC, register, "record_id")
    table = splink_table(PERSON_SPEC, register, "record_id").to_pandas()
    pd.testing.assert_frame_equal(frame.astype(object).where(frame.notna(), None),
                                  table.astype(object).where(table.notna(), None))


def test_missing_values_from_pandas_are_null_not_text() -> None:
    prepared = prepare_values(PERSON_SPEC, {"family": float("nan"), "given": None,
                                            "postcode": "se17pb"})
    assert prepared["family"] is None and prepared["family_initial"] is None
    assert prepared["given"] is None and prepared["postcode"] == "SE1 7PB"
