"""The catalogue of fields a requester may ask for, and the category each belongs to.

Categories exist so that a rule can be written once for a whole class of data: "never
clinical" must hold even for a field an agreement author forgot to list as forbidden.
"""

from __future__ import annotations

from enum import StrEnum


class FieldCategory(StrEnum):
    IDENTITY = "identity"
    CONTACT = "contact"
    ADMINISTRATIVE = "administrative"
    STATUS = "status"
    SENSITIVE = "sensitive"
    CLINICAL = "clinical"


#: Every field a request may name.  Names follow NHS PDS FHIR search naming where one exists.
FIELDS: dict[str, FieldCategory] = {
    "nhs_number": FieldCategory.IDENTITY,
    "family": FieldCategory.IDENTITY,
    "given": FieldCategory.IDENTITY,
    "gender": FieldCategory.IDENTITY,
    "birthdate": FieldCategory.IDENTITY,
    "address": FieldCategory.CONTACT,
    "address-postalcode": FieldCategory.CONTACT,
    "telecom": FieldCategory.CONTACT,
    "gp_practice": FieldCategory.ADMINISTRATIVE,
    "registration_date": FieldCategory.ADMINISTRATIVE,
    "school": FieldCategory.ADMINISTRATIVE,
    "entitlement": FieldCategory.STATUS,
    "nationality": FieldCategory.SENSITIVE,
    "country_of_birth": FieldCategory.SENSITIVE,
    "ethnicity": FieldCategory.SENSITIVE,
    "diagnosis": FieldCategory.CLINICAL,
    "medication": FieldCategory.CLINICAL,
    "appointments": FieldCategory.CLINICAL,
    "pregnancy": FieldCategory.CLINICAL,
    "hiv_status": FieldCategory.CLINICAL,
    "clinical_notes": FieldCategory.CLINICAL,
}

CLINICAL_FIELDS: frozenset[str] = frozenset(
    name for name, cat in FIELDS.items() if cat is FieldCategory.CLINICAL
)


def category_of(field: str) -> FieldCategory | None:
    return FIELDS.get(field)
