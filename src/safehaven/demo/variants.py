"""Policies for ``safehaven demo --what-if``: the same stream under other terms.

* ``firewall``: the bundled agreements, with the firewall switched on;
* ``original``: the NHS MoU as signed, never narrowed or withdrawn;
* ``narrowed``: the May 2018 terms (serious-crime deportation and welfare only, two
  reviewers) from the start, for the 2016 practice and the MoU alike.

A variant is a new agreement *version* (its hash differs), so every decision made under it
names terms that never existed in the bundled files and cannot be mistaken for them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any, Literal

from safehaven.domain.agreement import Agreement
from safehaven.domain.decision import AgreementSet

WhatIf = Literal["firewall", "narrowed", "original"]
WHAT_IFS: tuple[WhatIf, ...] = ("firewall", "narrowed", "original")
MOU = "nhs-digital-home-office-2017"
PRACTICE = "hscic-home-office-2016-practice"
NARROWED_PURPOSES = ["deportation-serious-crime", "welfare-protection"]


def _rebuild(agreement: Agreement, **changes: Any) -> Agreement:
    data = agreement.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.update(changes)
    return Agreement.model_validate(data)


def original(agreements: AgreementSet) -> AgreementSet:
    mou = agreements.agreements[MOU]
    history = [c.model_dump(mode="json", exclude_none=True) for c in mou.status_history
               if c.date < date(2018, 5, 9)]
    variant = _rebuild(mou, version="3.0.1", status_history=history)
    return replace(agreements, agreements={**agreements.agreements, MOU: variant})


def narrowed(agreements: AgreementSet) -> AgreementSet:
    mou = agreements.agreements[MOU]
    practice = agreements.agreements[PRACTICE]
    narrowed_terms = [p.model_dump(mode="json", exclude_none=True) for p in mou.purposes
                      if p.id in NARROWED_PURPOSES]
    mou_history = [
        {"date": "2016-09-27", "status": "draft", "note": "MoU signed; not yet in operation."},
        {"date": "2017-01-01", "status": "narrowed", "purposes": NARROWED_PURPOSES,
         "note": "What-if: the May 2018 terms from the first day."},
    ]
    history = [c.model_dump(mode="json", exclude_none=True) for c in mou.status_history]
    mou_history += [c for c in history if c["date"] >= "2018-11-02"]
    practice_purposes = [p.model_dump(mode="json", exclude_none=True) for p in practice.purposes]
    bases = {b.id for b in practice.legal_bases}
    extra_bases = [b.model_dump(mode="json", exclude_none=True) for b in mou.legal_bases
                   if b.id not in bases]
    practice_history = [
        {"date": "2016-01-01", "status": "narrowed", "purposes": NARROWED_PURPOSES,
         "note": "What-if: the May 2018 terms from the first day."},
        {"date": "2017-01-01", "status": "withdrawn",
         "note": "Superseded by the MoU (agreement nhs-digital-home-office-2017)."},
    ]
    return replace(agreements, agreements={
        **agreements.agreements,
        MOU: _rebuild(mou, version="3.1", status_history=mou_history),
        PRACTICE: _rebuild(
            practice, version="1.1",
            legal_bases=[b.model_dump(mode="json", exclude_none=True)
                         for b in practice.legal_bases] + extra_bases,
            purposes=practice_purposes + narrowed_terms,
            # The MoU's own claim of compatible use, carried over with its purposes.
            compatible_uses=[u.model_dump(mode="json", exclude_none=True)
                             for u in mou.compatible_uses],
            status_history=practice_history,
        ),
    })


def variant(name: WhatIf, agreements: AgreementSet) -> tuple[AgreementSet, bool]:
    """The agreements and the firewall setting (on?) for a what-if."""
    if name == "firewall":
        return agreements, True
    if name == "original":
        return original(agreements), False
    return narrowed(agreements), False
