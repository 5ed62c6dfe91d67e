"""One version number, one text: pin each agreement version to its content.

Decisions cite the agreement they applied by id, version and sha256.  If an agreement file
is edited and its version left alone, "version 1.2" comes to mean two sets of rules, and an
agency, a reviewer or the public reading "refused under version 1.2" cannot tell which.
The first content used under a version is recorded (``store.models.AgreementVersionRow``,
with a ledger entry, so oversight sees when each version came into force); a later load
with different content under the same version is refused with a message that names it.
Callers: ``safehaven serve`` before it starts workers, and the CLI commands that store
decisions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from safehaven.domain.decision import AgreementSet
from safehaven.ledger import log as ledger_log
from safehaven.service.clock import as_utc
from safehaven.store.models import AgreementVersionRow


class AgreementVersionError(ValueError):
    """Agreement texts changed without a new version; ``problems`` names each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def pin(session: Session, agreements: AgreementSet, *, at: datetime) -> list[str]:
    """Record each loaded agreement version not seen before; refuse changed texts.

    Returns the ``id@version`` of the versions recorded now.  Raises
    :class:`AgreementVersionError` (writing nothing) if any loaded agreement's content
    differs from what its version was first used with.
    """
    ledger_log.lock(session)  # ledger first, as every writer (``ledger.log.lock``)
    known = {(r.agreement_id, r.version): r for r in session.execute(
        select(AgreementVersionRow)).scalars()}
    problems: list[str] = []
    new: list[AgreementVersionRow] = []
    for agreement in sorted(agreements.agreements.values(), key=lambda a: a.id):
        row = known.get((agreement.id, agreement.version))
        if row is None:
            new.append(AgreementVersionRow(agreement_id=agreement.id, version=agreement.version,
                                           sha256=agreement.sha256, first_used_at=at))
        elif row.sha256 != agreement.sha256:
            problems.append(
                f"{agreement.id}: version {agreement.version} was first used on "
                f"{as_utc(row.first_used_at).date().isoformat()} with different content "
                f"(sha256 {row.sha256[:12]}…, now {agreement.sha256[:12]}…): give the "
                "changed agreement a new version")
    if problems:
        raise AgreementVersionError(problems)
    for row in new:
        session.add(row)
        ledger_log.append(session, {
            "type": "agreement.version_first_used", "agreement": row.agreement_id,
            "version": row.version, "sha256": row.sha256, "at": as_utc(at).isoformat()})
    return [f"{r.agreement_id}@{r.version}" for r in new]
