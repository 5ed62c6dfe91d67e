"""One version number, one text (``service.agreement_versions``), on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from safehaven.domain.agreement import Agreement
from safehaven.domain.decision import AgreementSet
from safehaven.service.agreement_versions import AgreementVersionError, pin
from safehaven.store.db import transaction
from safehaven.store.models import AgreementVersionRow, LedgerEntryRow

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _edited(agreement: Agreement, **changes: str) -> Agreement:
    """The same agreement with some fields changed, hashed afresh (not a model copy, which
    would carry the cached hash of the original)."""
    data = agreement.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return Agreement.model_validate({**data, **changes})


def _with(agreements: AgreementSet, replacement: Agreement) -> AgreementSet:
    return AgreementSet({**agreements.agreements, replacement.id: replacement},
                        agreements.extra_agencies, agreements.profiles)


def test_first_use_is_recorded_once_and_on_the_ledger(
    factory: sessionmaker[Session], agreements: AgreementSet,
) -> None:
    with transaction(factory) as s:
        recorded = pin(s, agreements, at=AT)
    assert len(recorded) == len(agreements.agreements)
    with transaction(factory) as s:
        assert pin(s, agreements, at=AT) == []  # nothing new the second time
        entries = [json.loads(e)["event"] for e in s.scalars(select(LedgerEntryRow.event))]
    firsts = [e for e in entries if e["type"] == "agreement.version_first_used"]
    assert sorted(f"{e['agreement']}@{e['version']}" for e in firsts) == sorted(recorded)
    police = agreements.get("nhs-police-tracing")
    assert police is not None
    assert {"agreement": police.id, "version": police.version,
            "sha256": police.sha256}.items() <= next(
        e for e in firsts if e["agreement"] == police.id).items()


def test_changed_text_under_the_same_version_is_refused_and_nothing_written(
    factory: sessionmaker[Session], agreements: AgreementSet,
) -> None:
    with transaction(factory) as s:
        pin(s, agreements, at=AT)
    police = agreements.get("nhs-police-tracing")
    assert police is not None
    widened = _edited(police, title=police.title + " (and more)")
    assert widened.version == police.version and widened.sha256 != police.sha256
    with pytest.raises(AgreementVersionError) as caught, transaction(factory) as s:
        pin(s, _with(agreements, widened), at=AT)
    [problem] = caught.value.problems
    assert problem.startswith(f"nhs-police-tracing: version {police.version} was first used "
                              "on 2026-12-01")
    renumbered = _edited(police, title=police.title + " (and more)", version="9.0")
    with transaction(factory) as s:
        assert pin(s, _with(agreements, renumbered), at=AT) == ["nhs-police-tracing@9.0"]
        pinned = s.get(AgreementVersionRow, ("nhs-police-tracing", police.version))
        assert pinned is not None and pinned.sha256 == police.sha256  # unchanged
