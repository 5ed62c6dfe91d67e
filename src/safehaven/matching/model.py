"""Training the Fellegi–Sunter model with Splink (DuckDB), and persisting it as JSON.

A register holds each person once, so it contains no true matches to learn m (how often
fields agree *for the same person*) from.  u (how often they agree by chance) is learnt
from the register by random sampling; m is learnt by expectation maximisation on a link
between the register and a request-like sample (records drawn from the register and
perturbed with the request error model of :mod:`safehaven.matching.synth`, or a real
file of past requests when one is given).  EM sees no labels either way.

The prior (probability that a request and a random register record are the same person)
is set to 1 / register size: one request names at most one person, and assuming that
person is present is the conservative side, because it makes the prior *smaller* for
nobody and larger only by the absent share.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from safehaven.matching.index import prepare_arrow, prepare_frame
from safehaven.matching.spec import ModelSpec, blocking_sql

LOG = logging.getLogger(__name__)


def splink_frame(spec: ModelSpec, df: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """What Splink is given: unique_id plus the prepared (normalised + derived) columns."""
    return prepare_frame(spec, df, id_column)


def splink_table(spec: ModelSpec, table: pd.DataFrame | pa.Table, id_column: str) -> pa.Table:
    """As :func:`splink_frame`, as Arrow: what a ten-million-row register needs."""
    return prepare_arrow(spec, table, id_column)


def subjects_to_frame(subjects: list[dict[str, Any]], ids: list[str]) -> pd.DataFrame:
    """Request subjects (PDS names) as a frame with the register's base column names."""
    return pd.DataFrame({
        "unique_id": ids,
        "nhs_number": [s.get("nhs_number") for s in subjects],
        "family": [s.get("family") for s in subjects],
        "given": [s.get("given") for s in subjects],
        "gender": [s.get("gender") for s in subjects],
        "birthdate": [None if s.get("birthdate") is None else str(s["birthdate"])
                      for s in subjects],
        "postcode": [s.get("address-postalcode") for s in subjects],
        "previous_postcode": [None] * len(subjects),
    })


def new_linker(spec: ModelSpec, frames: list[tuple[str, pd.DataFrame | pa.Table]],
               settings: dict[str, Any]) -> Any:
    """A Splink linker over prepared frames on a fresh in-memory DuckDB."""
    from splink import Linker
    from splink.backends.duckdb import DuckDBAPI

    db_api = DuckDBAPI()
    tables = [db_api.register(df, dataset_display_name=name) for name, df in frames]
    # The spec, not the stored JSON, decides candidate generation, so the batch linker
    # and the online index always block the same way.
    settings = {**settings, "blocking_rules_to_generate_predictions": [
        blocking_sql(key) for key in spec.blocking]}
    return Linker(tables, settings, log_level=logging.WARNING)


def train(spec: ModelSpec, register: pd.DataFrame | pa.Table, training: pd.DataFrame, *,
          em_blocking: tuple[tuple[str, ...], ...], prior: float | None = None,
          u_pairs: float = 2e6, seed: int = 42, register_id: str = "record_id",
          training_id: str = "unique_id") -> dict[str, Any]:
    """Train m/u and return the Splink settings dict (with the trained parameters)."""
    from splink import block_on

    reg = splink_table(spec, register, register_id)
    req = splink_frame(spec, training, training_id)
    settings = spec.splink_settings(prior=prior or 1.0 / max(len(reg), 1))
    linker = new_linker(spec, [("register", reg), ("requests", req)], settings)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=seed)
    for key in em_blocking:
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on(*key), fix_probability_two_random_records_match=True)
    model: dict[str, Any] = linker.misc.save_model_to_json()
    complete_model(model, u_pairs)
    model["probability_two_random_records_match"] = settings[
        "probability_two_random_records_match"]
    return model


def complete_model(model: dict[str, Any], u_pairs: float) -> None:
    """Give every non-null level an m and a u, so every pair gets a finite score."""
    for comp in model["comparisons"]:
        for level in comp["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            if level.get("u_probability") is None:
                # Never seen among u_pairs random pairs (e.g. two people sharing an NHS
                # number): the best estimate the sample allows is "rarer than 1 in u_pairs".
                level["u_probability"] = 1.0 / u_pairs
            if level.get("m_probability") is None:
                # A level EM never saw gets a neutral weight (m = u): absent evidence
                # should neither help nor hurt a pair.
                LOG.warning("comparison %s level %r not observed in training; neutral",
                            comp["output_column_name"], level.get("label_for_charts"))
                level["m_probability"] = level["u_probability"]


def training_sample(register: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """Request-like perturbed copies of register records (no labels are kept)."""
    from safehaven.matching.synth import corrupt, name_tables

    rng = np.random.default_rng([seed, 2])
    names = name_tables()
    rows = rng.choice(len(register), min(size, len(register)), replace=False)
    cols = ["nhs_number", "family", "given", "gender", "birthdate", "postcode",
            "previous_postcode"]
    sample = register.iloc[rows][cols]
    pool = sample["postcode"].to_numpy(dtype=object)
    subjects = []
    for rec in sample.itertuples(index=False):
        person = {c: (None if pd.isna(v) else v) for c, v in zip(cols, rec, strict=True)}
        subjects.append(corrupt(rng, person, names, pool)[0])
    return subjects_to_frame(subjects, [f"T{i}" for i in range(len(subjects))])


def save_model(model: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(model, indent=2))
    tmp.replace(path)


def load_model(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
