"""``--engine`` and ``--spark-master``: which engine runs Splink for batch link and training.

DuckDB (in process) is the default; Spark is for a national register and a nightly batch
(see ``docs/deploy.md``).  Kept apart from the commands so that each command gains the
choice with two options and one ``with`` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from safehaven.cli.common import fail

ENGINES = ("duckdb", "spark")

EngineOpt: str = typer.Option(
    "duckdb", "--engine", help="Splink engine: duckdb (in process) or spark.")
SparkMasterOpt: str = typer.Option(
    "local[2]", "--spark-master",
    help="Spark master URL with --engine spark (local[N], spark://host:7077, yarn).")


@contextmanager
def batch_engine(engine: str, spark_master: str, *, as_json: bool) -> Iterator[Any]:
    """The Spark session for ``--engine spark`` (stopped afterwards), or None for DuckDB."""
    if engine not in ENGINES:
        fail(f"--engine: {engine!r} is not one of {', '.join(ENGINES)}", as_json=as_json)
    if engine == "duckdb":
        yield None
        return
    from safehaven.matching.spark_engine import SparkUnavailable, spark_session

    try:
        session_cm = spark_session(spark_master)
        spark = session_cm.__enter__()
    except SparkUnavailable as exc:
        fail(f"--engine spark: {exc}", as_json=as_json)
    try:
        spark.sparkContext.setLogLevel("ERROR")
        yield spark
    finally:
        session_cm.__exit__(None, None, None)
