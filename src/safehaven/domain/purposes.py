"""The catalogue of purposes a request may be made for.

A purpose id is a contract between the requester, the agreement and the firewall: the
firewall reasons about a purpose's *category* (is this immigration enforcement?), so a new
purpose must be catalogued here with its category before any agreement may permit it.
The ``dpv`` column maps each purpose to the closest W3C Data Privacy Vocabulary term.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PurposeCategory(StrEnum):
    IMMIGRATION_ENFORCEMENT = "immigration-enforcement"
    LAW_ENFORCEMENT = "law-enforcement"
    SAFEGUARDING = "safeguarding"
    ELIGIBILITY = "eligibility"
    STATISTICS = "statistics"


@dataclass(frozen=True, slots=True)
class Purpose:
    id: str
    category: PurposeCategory
    dpv: str
    description: str


PURPOSES: dict[str, Purpose] = {
    p.id: p
    for p in (
        Purpose(
            "immigration-offence-trace",
            PurposeCategory.IMMIGRATION_ENFORCEMENT,
            "dpv:EnforceSecurity",
            "Locate a person suspected of an offence under ss.24/24A Immigration Act 1971 "
            "whom the requester has lost contact with.",
        ),
        Purpose(
            "deportation-serious-crime",
            PurposeCategory.IMMIGRATION_ENFORCEMENT,
            "dpv:EnforceSecurity",
            "Locate a person being considered for deportation because of a serious crime.",
        ),
        Purpose(
            "welfare-protection",
            PurposeCategory.SAFEGUARDING,
            "dpv:PublicBenefit",
            "Locate a person where the information is necessary to protect someone's welfare.",
        ),
        Purpose(
            "police-serious-crime",
            PurposeCategory.LAW_ENFORCEMENT,
            "dpv:EnforceSecurity",
            "Trace a person in connection with a serious crime (serious harm, or an offence "
            "such as rape, murder or manslaughter).",
        ),
        Purpose(
            "aggregate-statistics",
            PurposeCategory.STATISTICS,
            "dpv:PublicBenefit",
            "Counts for planning or research, released only above a minimum cell size.",
        ),
        Purpose(
            "enforcement-targeting",
            PurposeCategory.IMMIGRATION_ENFORCEMENT,
            "dpv:EnforceSecurity",
            "Counts or maps used to direct immigration enforcement at places or groups "
            "(the GLA rough-sleeper map, seed 004 ¶6).",
        ),
        Purpose(
            "status-check",
            PurposeCategory.ELIGIBILITY,
            "dpv:IdentityVerification",
            "Answer whether a person applying for a service is entitled to it; never an address.",
        ),
    )
}


def purpose(purpose_id: str) -> Purpose | None:
    return PURPOSES.get(purpose_id)
