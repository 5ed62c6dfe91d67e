"""Oversight (ICO, National Data Guardian, committees): read-only ledger and statistics.

Proofs are the ledger module's self-contained documents: an overseer checks them offline
against signed heads and the controller's public key, trusting neither this API nor us.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from safehaven.api import auth
from safehaven.api.context import ApiConfig, config
from safehaven.api.errors import ApiError, errors
from safehaven.ledger import heads, log, proofs
from safehaven.ledger.keys import load_or_create_signing_key, public_pem
from safehaven.service import reports
from safehaven.store.db import transaction

#: Before the earliest bundled agreement (HSCIC, April 2013): "all time" by default.
STATISTICS_FROM = date(2013, 1, 1)

router = APIRouter(prefix="/v1/oversight", tags=["oversight"])
Cfg = Annotated[ApiConfig, Depends(config)]


def _head(session: Session, cfg: ApiConfig) -> dict[str, Any]:
    """The newest signed head, signing one first if the log has grown since."""
    key = (cfg.ledger_key or load_or_create_signing_key)()
    head = heads.sign_head(session, key)
    return {**head.to_json(), "public_key_pem": public_pem(key.public_key()).decode()}


@router.get("/ledger/head", response_model=dict[str, Any], responses=errors(),
            summary="The current signed tree head and the public key it verifies under")
def ledger_head(cfg: Cfg, creds: auth.Creds) -> dict[str, Any]:
    with transaction(cfg.factory) as session:
        auth.person(session, cfg, creds, auth.OVERSIGHT)
        return _head(session, cfg)


@router.get("/ledger/proofs/inclusion", response_model=dict[str, Any], responses=errors(),
            summary="Proof that entry `index` is in the tree of size `size`")
def inclusion(
    cfg: Cfg, creds: auth.Creds,
    index: Annotated[int, Query(ge=0, le=2**62)],
    size: Annotated[int, Query(ge=1, le=2**62)],
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, auth.OVERSIGHT)
        current = log.size(session)
        if size > current or index >= size:
            raise ApiError(422, "invalid input", [
                f"size: must be at most the log size ({current})" if size > current
                else "index: must be less than size"])
        return proofs.inclusion_document(session, index, size)


@router.get("/ledger/proofs/consistency", response_model=dict[str, Any], responses=errors(),
            summary="Proof that the tree of size `first` is a prefix of the tree of size `second`")
def consistency(
    cfg: Cfg, creds: auth.Creds,
    first: Annotated[int, Query(ge=1, le=2**62)],
    second: Annotated[int, Query(ge=1, le=2**62)],
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, auth.OVERSIGHT)
        current = log.size(session)
        if second > current or first > second:
            raise ApiError(422, "invalid input", [
                f"second: must be at most the log size ({current})" if second > current
                else "first: must not exceed second"])
        return proofs.consistency_document(session, first, second)


@router.get("/statistics", response_model=dict[str, Any], responses=errors(),
            summary="Transparency statistics: requests, refusals by rule, disclosures, "
            "new information, notices")
def statistics(
    cfg: Cfg, creds: auth.Creds,
    start: Annotated[date | None, Query(alias="from")] = None,
    end: Annotated[date | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    with transaction(cfg.reader) as session:
        auth.person(session, cfg, creds, auth.OVERSIGHT)
        lo = start or STATISTICS_FROM
        hi = end or cfg.clock().date()
        if lo > hi:
            raise ApiError(422, "invalid input", ["from: must not be after 'to'"])
        return reports.build_report(session, reports.ReportQuery(agreement=None, start=lo, end=hi))
