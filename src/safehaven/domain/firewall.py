"""The firewall: rules that sit above every agreement.

An agreement records what two parties signed; the firewall records what the controller
will never do whatever is signed (the seeds' "firewall" between public services and
immigration enforcement).  It is on in a fresh install; switching it off is a recorded,
deliberate act of the controller, and every decision states whether it was on.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safehaven.domain.agreement import RegisterKind
from safehaven.domain.purposes import Purpose, PurposeCategory


class FirewallRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]
    description: Annotated[str, Field(min_length=1)]
    #: ``None`` means every kind of register.
    registers: Annotated[list[RegisterKind], Field(min_length=1)] | None = None
    purpose_categories: Annotated[list[PurposeCategory], Field(min_length=1)] | None = None
    purposes: Annotated[list[str], Field(min_length=1)] | None = None
    rationale: str = ""

    @model_validator(mode="after")
    def _targets_something(self) -> FirewallRule:
        if self.purpose_categories is None and self.purposes is None:
            raise ValueError("a firewall rule must name purpose_categories or purposes")
        return self

    def blocks(self, register: RegisterKind, purpose: Purpose) -> bool:
        if self.registers is not None and register not in self.registers:
            return False
        if self.purposes is not None and purpose.id in self.purposes:
            return True
        return self.purpose_categories is not None and purpose.category in self.purpose_categories


class FirewallPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: Annotated[list[FirewallRule], Field(min_length=1)]


DEFAULT_POLICY = FirewallPolicy(
    rules=[
        FirewallRule(
            id="no-health-education-immigration",
            description=(
                "No disclosure from a health or education register for an immigration-"
                "enforcement purpose."
            ),
            registers=[RegisterKind.HEALTH, RegisterKind.EDUCATION],
            purpose_categories=[PurposeCategory.IMMIGRATION_ENFORCEMENT],
            rationale=(
                "Fear of tracing deters people from healthcare and keeps children from school "
                "(seed 004 ¶9-12, ¶42-43); the Health Committee twice asked for the NHS "
                "sharing to stop (seed 001)."
            ),
        ),
        FirewallRule(
            id="no-enforcement-targeting",
            description=(
                "No release, from any register, for targeting immigration enforcement at "
                "places or groups."
            ),
            purposes=["enforcement-targeting"],
            rationale=(
                "Outreach data collected to help rough sleepers was turned into a map for "
                "enforcement against them (seed 004 ¶6, the GLA case)."
            ),
        ),
    ]
)
