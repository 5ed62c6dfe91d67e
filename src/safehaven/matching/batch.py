"""Batch linkage of a whole request file against the register with Splink on DuckDB.

For thousands of requests at once a set-based engine beats a loop of online lookups:
Splink blocks and scores every candidate pair in DuckDB, and the same unique-match rule
as the online matcher (threshold, then a margin over the runner-up) is applied per
request in SQL.  The model is the same trained settings JSON, so a request gets the same
score in batch as online (candidate sets can differ only where the online matcher skips
an oversized block).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from safehaven.domain.request import RequestFormatError, TracingRequest, parse_request
from safehaven.matching.model import new_linker, splink_frame, splink_table, subjects_to_frame
from safehaven.matching.scorer import Policy, prob_to_weight
from safehaven.matching.spec import ModelSpec

BEST_TWO_SQL = """
    with p as (
      select case when source_dataset_l = 'requests' then unique_id_l else unique_id_r end
               as request_id,
             case when source_dataset_l = 'requests' then unique_id_r else unique_id_l end
               as record_id,
             match_weight, match_probability
      from {table}
    ), ranked as (
      select *, row_number() over (partition by request_id
                                   order by match_weight desc, record_id) as rk
      from p
    )
    select b.request_id, b.record_id, b.match_probability as score,
           b.match_weight as w1, s.match_weight as w2
    from ranked b left join ranked s on s.request_id = b.request_id and s.rk = 2
    where b.rk = 1
    """


class RequestFileError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems[:5]))


def read_requests(path: Path) -> list[TracingRequest]:
    """Strictly parse a JSON-lines request file; every bad line is reported by number."""
    requests: list[TracingRequest] = []
    problems: list[str] = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                requests.append(parse_request(line))
            except RequestFormatError as exc:
                problems.extend(f"line {n}: {p}" for p in exc.problems)
    if problems:
        raise RequestFileError(problems)
    missing = [i for i, r in enumerate(requests, start=1) if r.request_id is None]
    if missing:
        raise RequestFileError([f"request {i}: request_id is required in a batch file"
                                for i in missing[:20]])
    return requests


def requests_frame(requests: Iterable[TracingRequest]) -> pd.DataFrame:
    reqs = list(requests)
    subjects = [r.subject.model_dump(mode="json", by_alias=True) for r in reqs]
    return subjects_to_frame(subjects, [str(r.request_id) for r in reqs])


def link(spec: ModelSpec, model: dict[str, Any], register: pd.DataFrame | pa.Table,
         requests: pd.DataFrame, *, policy: Policy | None = None,
         register_id: str = "record_id", engine: str = "duckdb",
         spark: Any = None) -> pd.DataFrame:
    """``request_id,status,score,record_id`` for every request (in input order).

    ``engine="spark"`` runs the same link on Spark (``spark_engine``) in the given session.
    """
    policy = policy or Policy()
    if engine == "spark":
        from safehaven.matching import spark_engine

        return spark_engine.link(spec, model, register, requests, spark=spark,
                                 policy=policy, register_id=register_id)
    if engine != "duckdb":
        raise ValueError(f"unknown engine {engine!r} (duckdb or spark)")
    reg = splink_table(spec, register, register_id)  # Arrow: compact at 10 M rows
    req = splink_frame(spec, requests, "unique_id")
    settings = copy.deepcopy(model)
    settings["link_type"] = "link_only"
    linker = new_linker(spec, [("register", reg), ("requests", req)], settings)
    # Pairs far below the match threshold cannot change the outcome (neither as the best
    # nor as a runner-up within the margin), so DuckDB drops them before they reach pandas.
    floor = prob_to_weight(policy.threshold) - policy.margin_bits - 1
    pairs = linker.inference.predict(threshold_match_weight=floor)
    table = pairs.physical_name
    con = linker._db_api.duckdb_con
    # The table name is Splink's own generated identifier, never user input.
    sql = BEST_TWO_SQL.format(table=table)
    best = con.execute(sql).df()
    return outcomes(req, best, policy)


def outcomes(req: Any, best: pd.DataFrame, policy: Policy) -> pd.DataFrame:
    """The unique-match rule over the best two candidates per request, whatever the engine.

    ``req`` is the prepared request table (pandas or Arrow) and gives the output order.
    """
    ids = req.column("unique_id").to_pandas() if hasattr(req, "column") else req["unique_id"]
    out = pd.DataFrame({"request_id": ids.astype(str).to_numpy()}).merge(
        best, on="request_id", how="left")
    status = []
    for score, w1, w2 in zip(out["score"], out["w1"], out["w2"], strict=True):
        if score is None or (isinstance(score, float) and math.isnan(score)) \
                or score < policy.threshold:
            status.append("no_match")
        elif w2 is not None and not math.isnan(w2) and w2 > w1 - policy.margin_bits:
            status.append("ambiguous")
        else:
            status.append("matched")
    out["status"] = status
    out["score"] = out["score"].fillna(0.0).round(6)
    out.loc[out["status"] != "matched", "record_id"] = None
    return out[["request_id", "status", "score", "record_id"]]


def load_model_file(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
