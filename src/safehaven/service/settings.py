"""Controller settings kept in the workspace database, with every change on record."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from safehaven.domain.canonical import content_hash
from safehaven.ledger import log as ledger_log
from safehaven.service.clock import as_utc, utcnow
from safehaven.store.models import PolicyChangeRow, SettingRow

FIREWALL_KEY = "firewall"


_CACHE = "safehaven.firewall_enabled"
#: The setting this process saw last (on until read): a guess for work done before a
#: transaction starts, which the transaction then checks (``requests.prepare``).
_last_seen = [True]


def firewall_guess() -> bool:
    """The firewall setting as this process last read it, without a query.  Only a guess:
    use it for work that the transaction re-checks against :func:`firewall_enabled`."""
    return _last_seen[0]


def firewall_enabled(session: Session) -> bool:
    """On unless the controller has switched it off: a fresh install is protected.

    Read once per session (a unit of work): a batch of submits in one transaction must be
    decided under one firewall setting, and the read is not repeated per request.
    """
    cached = session.info.get(_CACHE)
    if cached is None:
        # One column through Core: every submit's unit of work asks this first.
        value = session.connection().execute(_FIREWALL_VALUE).scalar_one_or_none()
        cached = session.info[_CACHE] = value is None or value == "on"
        _last_seen[0] = bool(cached)
    return bool(cached)


_FIREWALL_VALUE = select(SettingRow.value).where(SettingRow.key == FIREWALL_KEY)


def set_firewall(session: Session, enabled: bool, *, actor: str, reason: str) -> None:
    if not reason.strip():
        raise ValueError("reason: a reason is required to change the firewall")
    value = "on" if enabled else "off"
    session.info[_CACHE] = enabled
    now = utcnow()
    row = session.get(SettingRow, FIREWALL_KEY)
    if row is None:
        session.add(SettingRow(key=FIREWALL_KEY, value=value, updated_at=now))
    else:
        row.value = value
        row.updated_at = now
    session.add(PolicyChangeRow(setting=FIREWALL_KEY, value=value, actor=actor, reason=reason,
                                at=now))
    # The reason is free text (it may name a case), so the ledger commits to its hash only.
    ledger_log.append(session, {
        "type": "policy.change",
        "setting": FIREWALL_KEY,
        "value": value,
        "actor": actor,
        # The same hash rule as reviews and exemptions: canonical JSON of the stripped text.
        "reason_sha256": content_hash(reason.strip()),
        "at": as_utc(now).isoformat(),
    })


def firewall_history(session: Session) -> list[PolicyChangeRow]:
    return list(
        session.query(PolicyChangeRow)
        .filter(PolicyChangeRow.setting == FIREWALL_KEY)
        .order_by(PolicyChangeRow.id)
    )
