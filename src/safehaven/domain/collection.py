"""Purpose of collection: why each field of a register was collected in the first place.

The DfE collected pupils' nationality and country of birth "for education" while an
agreement planned to use them for enforcement (seed 004 ¶33-37); about 200,000 families
answered "refused".  Purpose limitation cannot be checked unless the register says, field by
field, what it was collected for and whether the person could refuse, so a controller
declares that here (a *register profile*) and agreements declare which later uses they hold
compatible with which collection purposes.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from safehaven.domain.agreement import RegisterKind
from safehaven.domain.fields import FIELDS

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,79}$")]

#: What a register stores when a person declined to answer: kept as such, never guessed.
REFUSED = "refused"
NOT_OBTAINED = "not_obtained"


class FieldCollection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    collected_for: Annotated[list[Slug], Field(min_length=1)]
    refusable: bool = False
    note: str = ""


class RegisterProfile(BaseModel):
    """The controller's statement of why each field in its register was collected."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    controller: Slug
    register_kind: RegisterKind = Field(alias="register")
    title: Annotated[str, Field(min_length=1)]
    collection_purposes: dict[Slug, Annotated[str, Field(min_length=1)]]
    fields: dict[str, FieldCollection]
    source: str = ""

    @model_validator(mode="after")
    def _coherent(self) -> RegisterProfile:
        errors = []
        for name, spec in self.fields.items():
            if name not in FIELDS:
                errors.append(f"fields.{name}: unknown field")
            for p in spec.collected_for:
                if p not in self.collection_purposes:
                    errors.append(f"fields.{name}.collected_for: undeclared purpose {p!r}")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def collected_for(self, field: str) -> tuple[str, ...] | None:
        spec = self.fields.get(field)
        return None if spec is None else tuple(spec.collected_for)
