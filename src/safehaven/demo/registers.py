"""The demo's registers: a synthetic health register, its pupils, and immigration status.

One synthetic population stands in for three controllers' registers so the demo needs one
Splink training run: the health register is the whole population (written to the
workspace and trained exactly as ``safehaven register synth/import/train`` would), the
education register is its school-age people, and the status register is the same people
with an entitlement answer.  Each is reached through the service's ``Matcher`` seam, so the
replay runs the same :func:`safehaven.service.tracing.complete` the API runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from safehaven.demo.parameters import Parameters
from safehaven.domain.request import Subject
from safehaven.matching.model import save_model, train, training_sample
from safehaven.matching.online import RegisterMatcher
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
from safehaven.matching.register import RELEASABLE, model_path, register_path
from safehaven.matching.synth import synth_register, write_register
from safehaven.service.tracing import Found

ALL_FIELDS = tuple(RELEASABLE)


class RegisterAdapter:
    """A :class:`RegisterMatcher` answering the service's ``Matcher`` protocol.

    ``extra`` adds columns that are not in the person register (the status register's
    entitlement answer), computed from the record id so every replay agrees.
    """

    def __init__(self, matcher: RegisterMatcher, *, not_entitled_share: float | None = None,
                 ) -> None:
        self.matcher = matcher
        self.not_entitled_share = not_entitled_share

    def match(self, subject: Subject) -> Found:
        result = self.matcher.match(subject)
        if result.status != "matched" or result.record_id is None:
            return Found(result.status, round(result.score, 6))
        record: dict[str, str] = {
            k: str(v) for k, v in self.matcher.record(result, ALL_FIELDS).items()
        }
        if self.not_entitled_share is not None:
            record["entitlement"] = entitlement(result.record_id, self.not_entitled_share)
        return Found("matched", round(result.score, 6), result.record_id, record)


def entitlement(record_id: str, not_entitled_share: float) -> str:
    """A stable, synthetic immigration status for a record (the demo has no real one)."""
    bucket = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:4], "big") / 2**32
    return "not_entitled" if bucket < not_entitled_share else "entitled"


@dataclass
class DemoRegisters:
    """The population as frames (for drawing the stream) and matchers (for the pipeline)."""

    health: pd.DataFrame
    education: pd.DataFrame
    outsiders: pd.DataFrame
    matchers: dict[str, RegisterAdapter]
    train_seconds: float


def education_subset(df: pd.DataFrame, params: Parameters) -> pd.DataFrame:
    lo = params.registers.education_born_from.isoformat()
    hi = params.registers.education_born_to.isoformat()
    keep = (df["birthdate"] >= lo) & (df["birthdate"] <= hi)
    return df[keep].reset_index(drop=True)


def build_registers(params: Parameters, *, people: int, steps: Iterable[str] | None = None,
                    on_step: Any = None) -> DemoRegisters:
    """Synthesise, write, train and index the registers (``on_step(name)`` for progress)."""
    import time

    def step(name: str) -> None:
        if on_step is not None:
            on_step(name)

    seed = params.seed
    step("synthesising the register")
    health = synth_register(people, seed=seed)
    write_register(health, register_path())
    # People asked about who are not on the register: a separate population, same shapes.
    outsiders = synth_register(people, seed=seed + 7919)
    outsiders = outsiders[~outsiders["nhs_number"].isin(set(health["nhs_number"]))]
    step("training the matching model (Splink)")
    start = time.perf_counter()
    cols = ["record_id", *PERSON_SPEC.base]
    model = train(PERSON_SPEC, health[cols],
                  training_sample(health[cols], params.registers.training_sample, seed),
                  em_blocking=EM_BLOCKING, seed=seed, u_pairs=params.registers.u_pairs)
    save_model(model, model_path())
    train_seconds = time.perf_counter() - start
    step("indexing the registers")
    education = education_subset(health, params)
    education_file = register_path().with_name("education.parquet")
    write_register(education, education_file)
    health_matcher = RegisterMatcher.load(register_path(), model_path())
    matchers = {
        "health": RegisterAdapter(health_matcher),
        "education": RegisterAdapter(RegisterMatcher.load(education_file, model_path())),
        "immigration-status": RegisterAdapter(
            health_matcher, not_entitled_share=params.registers.not_entitled_share),
    }
    return DemoRegisters(health, education, outsiders.reset_index(drop=True), matchers,
                         train_seconds)


def register_files() -> list[Path]:
    return [register_path(), model_path()]
