"""A small synthetic register and a model trained on it, shared by the matching tests.

Kept small (8,000 people) so the whole matching suite runs in well under a minute; the
large-scale figures live in ``benchmarks/``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from safehaven.matching.index import RegisterIndex
from safehaven.matching.model import train, training_sample
from safehaven.matching.person import EM_BLOCKING, PERSON_SPEC
from safehaven.matching.scorer import Matcher, Weights
from safehaven.matching.synth import synth_register

PEOPLE = 8_000


@pytest.fixture(scope="session")
def register() -> pd.DataFrame:
    return synth_register(PEOPLE, seed=11)


@pytest.fixture(scope="session")
def model(register: pd.DataFrame) -> dict[str, Any]:
    return train(PERSON_SPEC, register, training_sample(register, 4_000, seed=11),
                 em_blocking=EM_BLOCKING, seed=11)


@pytest.fixture(scope="session")
def matcher(register: pd.DataFrame, model: dict[str, Any]) -> Matcher:
    index = RegisterIndex.from_frame(PERSON_SPEC, register, "record_id")
    return Matcher(index, Weights.from_settings(PERSON_SPEC, model))
