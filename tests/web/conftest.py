"""Fixtures for the page tests: the desk world (``tests/web/desk.py``) on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from safehaven.domain.decision import AgreementSet
from tests.web import desk as world


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    world.cheap_password_hashing(monkeypatch)


@pytest.fixture
def agreements(agreements: AgreementSet) -> AgreementSet:
    """The bundled agreements plus the test statistics agreements (aggregate releases)."""
    return world.statistics_agreements(agreements)


@pytest.fixture
def desk(engine: Engine, agreements: AgreementSet) -> Iterator[world.Desk]:
    yield from world.make_desk(engine, agreements)
