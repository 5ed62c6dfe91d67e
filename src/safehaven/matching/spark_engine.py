"""Batch linkage and model training on Apache Spark, through Splink's Spark backend.

DuckDB (``batch.py``, ``model.py``) is the default and is enough for a county-sized
register on one machine; a national register (≈ 70 M people) and a nightly file of
requests outgrow one process, and Spark is the engine an NHS data platform already runs.
This module swaps the *engine* and nothing else: the same :class:`ModelSpec`, the same
trained settings JSON, the same blocking keys and the same "best two per request" rule
(:data:`batch.BEST_TWO_SQL`, :func:`batch.outcomes`), so the two engines give the same
answer for the same data — ``tests/matching/test_spark_parity.py`` checks it on FEBRL4.

Two things differ between the dialects and are handled here rather than by transpiling
the stored DuckDB SQL:

* identifiers: the spec's SQL quotes columns with ``"``, which Spark SQL reads as string
  literals, so every condition is regenerated from the spec with back-ticks;
* the "current or previous postcode" level uses DuckDB's ``list_has_any``; Spark's
  equivalent is ``arrays_overlap(array(..), array(..))``.  Both are true exactly when the
  two lists share a non-null element (Spark answers NULL, not true, when they only share
  a NULL, and a NULL condition does not select a level), so the chosen level is the same.

The trained m/u values are kept untouched: only ``sql_condition`` strings change, matched
to the spec level by position (the settings JSON and the spec are checked to agree).
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from safehaven.matching.scorer import Policy, prob_to_weight
from safehaven.matching.spec import Level, ModelSpec
from safehaven.matching.spec import blocking_sql as spec_blocking_sql

LOG = logging.getLogger(__name__)

#: Spark settings for a single machine: the default 200 shuffle partitions would turn a
#: 10,000-row link into 200 tiny tasks per stage; the web UI is of no use in a batch job.
LOCAL_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "4g",
    # Arrow makes pandas -> Spark and back column-wise instead of a Python object per cell.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


_LINKERS = itertools.count(1)


class SparkUnavailable(RuntimeError):
    """pyspark is not installed or no Java runtime can start the JVM."""


def _ident(col: str) -> str:
    return f"`{col}`"


def level_sql(level: Level) -> str:
    """One comparison level as Spark SQL (see the module docstring for the differences)."""
    c = level.columns
    if level.kind == "null":
        return " OR ".join(f"{_ident(col + '_l')} IS NULL OR {_ident(col + '_r')} IS NULL"
                           for col in c)
    if level.kind == "exact":
        return f"{_ident(c[0] + '_l')} = {_ident(c[0] + '_r')}"
    if level.kind == "lev":
        return f"levenshtein({_ident(c[0] + '_l')}, {_ident(c[0] + '_r')}) <= {level.k}"
    if level.kind == "swap":
        a, b = c
        return (f"({_ident(a + '_l')} = {_ident(b + '_r')} OR "
                f"{_ident(b + '_l')} = {_ident(a + '_r')})")
    if level.kind == "overlap":
        left = ", ".join(_ident(col + "_l") for col in c)
        right = ", ".join(_ident(col + "_r") for col in c)
        return f"arrays_overlap(array({left}), array({right}))"
    return "ELSE"


def blocking_sql(key: Sequence[str]) -> str:
    return " AND ".join(f"l.{_ident(col)} = r.{_ident(col)}" for col in key)


def spark_settings(spec: ModelSpec, settings: dict[str, Any]) -> dict[str, Any]:
    """The same settings (and trained m/u) with every SQL condition in Spark's dialect."""
    out = copy.deepcopy(settings)
    by_name = {c["output_column_name"]: c for c in out["comparisons"]}
    for comp in spec.comparisons:
        if comp.name not in by_name:
            raise ValueError(f"model has no comparison {comp.name!r} (spec {spec.name!r})")
        levels = by_name[comp.name]["comparison_levels"]
        if len(levels) != len(comp.levels):
            raise ValueError(f"model comparison {comp.name!r} does not match the spec")
        for trained, level in zip(levels, comp.levels, strict=True):
            trained["sql_condition"] = level_sql(level)
            trained.pop("sql_dialect", None)
    out.pop("sql_dialect", None)
    # As in model.new_linker: the spec decides candidate generation, never the stored JSON.
    out["blocking_rules_to_generate_predictions"] = [blocking_sql(k) for k in spec.blocking]
    return out


def session_conf(master: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    from splink.backends.spark import similarity_jar_location

    conf = dict(LOCAL_CONF) if master.startswith("local") else {
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
    }
    # Splink registers its similarity UDFs from this jar (ships inside the wheel: no
    # download).  None of our levels uses them, but registration warns loudly without it.
    conf["spark.jars"] = similarity_jar_location()
    conf.update(extra or {})
    return conf


@contextmanager
def spark_session(master: str = "local[2]", *, app_name: str = "safehaven",
                  conf: dict[str, str] | None = None) -> Iterator[Any]:
    """A Spark session for one batch job; stopped afterwards unless it already existed.

    Starting a JVM takes seconds, so callers run a whole job (train, link) in one session.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SparkUnavailable(
            "pyspark is not installed: pip install 'safehaven[spark]'") from exc
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in session_conf(master, conf).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: no java, or a broken one
        raise SparkUnavailable(f"cannot start Spark ({master}): {exc}") from exc
    checkpoints = tempfile.mkdtemp(prefix="safehaven-spark-")
    session.sparkContext.setCheckpointDir(checkpoints)
    try:
        yield session
    finally:
        session.stop()
        _remove_tree(checkpoints)


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def new_linker(spec: ModelSpec, frames: list[tuple[str, pd.DataFrame]],
               settings: dict[str, Any], spark: Any, *,
               break_lineage: str = "persist") -> Any:
    """A Splink linker over prepared frames on Spark (cf. :func:`model.new_linker`).

    ``persist`` keeps intermediate tables in executor memory (spilling to disk), which suits
    one machine; on a cluster ``parquet`` writes them to the checkpoint directory instead.
    """
    from splink import Linker
    from splink.backends.spark import SparkAPI

    db_api = SparkAPI(  # type: ignore[no-untyped-call]
        spark_session=spark, break_lineage_method=break_lineage,
        num_partitions_on_repartition=int(spark.conf.get("spark.sql.shuffle.partitions", "4")))
    # Splink registers inputs as session-wide views: a fresh suffix per linker lets one
    # session run several jobs (train, then link) without name clashes.
    suffix = next(_LINKERS)
    tables = [_register(db_api, spark, df, name, f"{name}_{suffix}") for name, df in frames]
    return Linker(tables, spark_settings(spec, settings), log_level=logging.WARNING)


def _register(db_api: Any, spark: Any, df: Any, name: str, table: str) -> Any:
    """Hand Splink a Spark frame with every column typed as a string.

    Prepared columns are strings or NULL (``df`` is pandas or Arrow); letting Spark infer
    types would make an all-NULL column (no previous postcodes in a sample) ``void``.
    """
    from pyspark.sql.types import StringType, StructField, StructType

    frame = df.to_pandas() if hasattr(df, "to_pandas") and not isinstance(
        df, pd.DataFrame) else df
    schema = StructType([StructField(c, StringType(), True) for c in frame.columns])
    clean = frame.astype(object).where(frame.notna(), None)
    sdf = spark.createDataFrame(clean, schema=schema)
    return db_api.register(sdf, dataset_display_name=name, table_name=table)


def link(spec: ModelSpec, model: dict[str, Any], register: Any,
         requests: pd.DataFrame, *, spark: Any, policy: Policy | None = None,
         register_id: str = "record_id") -> pd.DataFrame:
    """As :func:`batch.link`, with Splink's predictions and the best-two query on Spark."""
    from safehaven.matching.batch import outcomes

    policy = policy or Policy()
    best, req = best_two(spec, model, register, requests, spark=spark, policy=policy,
                         register_id=register_id)
    return outcomes(req, best, policy)


def best_two(spec: ModelSpec, model: dict[str, Any], register: Any,
             requests: pd.DataFrame, *, spark: Any, policy: Policy,
             register_id: str = "record_id") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Unrounded best and runner-up per request (and the prepared requests), on Spark."""
    from safehaven.matching.batch import BEST_TWO_SQL
    from safehaven.matching.model import splink_frame, splink_table

    reg = splink_table(spec, register, register_id)  # pandas or Arrow register
    req = splink_frame(spec, requests, "unique_id")
    settings = copy.deepcopy(model)
    settings["link_type"] = "link_only"
    linker = new_linker(spec, [("register", reg), ("requests", req)], settings, spark)
    # The same floor as batch.link: pairs this far below the threshold cannot change an
    # outcome, so Spark drops them before anything reaches the driver.
    floor = prob_to_weight(policy.threshold) - policy.margin_bits - 1
    pairs = linker.inference.predict(threshold_match_weight=floor)
    # Splink's generated table name, never user input.
    best = spark.sql(BEST_TWO_SQL.format(table=pairs.physical_name)).toPandas()
    # Splink persists its intermediate tables; in a long-lived session (train, then link,
    # then link again) they would fill the driver heap of a local[N] session.
    spark.catalog.clearCache()
    return best, req


def train(spec: ModelSpec, register: Any, training: pd.DataFrame, *, spark: Any,
          em_blocking: tuple[tuple[str, ...], ...], prior: float | None = None,
          u_pairs: float = 2e6, seed: int = 42, register_id: str = "record_id",
          training_id: str = "unique_id", max_iterations: int | None = None) -> dict[str, Any]:
    """As :func:`model.train` on Spark; the saved JSON keeps the DuckDB SQL conditions.

    The model file is engine-neutral: conditions are stored in the spec's (DuckDB) form so
    that a model trained on Spark serves the online matcher and the DuckDB linker as-is.
    u is learnt from a random sample, and Spark's sampler is not DuckDB's, so a model
    trained here differs from a DuckDB-trained one by sampling noise in u (and what EM
    makes of it), not by method; ``bench_scale.py`` reports the difference.
    """
    from splink import block_on

    from safehaven.matching.model import complete_model, splink_frame, splink_table

    reg = splink_table(spec, register, register_id)
    req = splink_frame(spec, training, training_id)
    base_settings = spec.splink_settings(prior=prior or 1.0 / max(len(reg), 1))
    if max_iterations is not None:  # Spark runs one job per EM iteration
        base_settings["max_iterations"] = max_iterations
    linker = new_linker(spec, [("register", reg), ("requests", req)], base_settings, spark)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=seed)
    for key in em_blocking:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*key), fix_probability_two_random_records_match=True)
    model: dict[str, Any] = linker.misc.save_model_to_json()
    complete_model(model, u_pairs)
    # Back to the spec's own (DuckDB) SQL, so the file is the same shape as model.train's.
    for comp in spec.comparisons:
        stored = next(c for c in model["comparisons"] if c["output_column_name"] == comp.name)
        for trained, level in zip(stored["comparison_levels"], comp.levels, strict=True):
            trained["sql_condition"] = level.sql()
    model["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": spec_blocking_sql(k), "sql_dialect": "duckdb"}
        for k in spec.blocking]
    model["sql_dialect"] = "duckdb"
    model["probability_two_random_records_match"] = base_settings[
        "probability_two_random_records_match"]
    return model


def java_available() -> bool:
    """Whether a ``java`` executable can be found (JAVA_HOME or PATH)."""
    import shutil

    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return True
    return shutil.which("java") is not None
