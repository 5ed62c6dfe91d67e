"""A linkage model described once, compiled twice: to Splink SQL and to Python predicates.

The online matcher must give exactly Splink's score for a pair, so every comparison level
is written here as a small value (``Level``) that knows both its SQL condition (for Splink,
batch linkage and training) and its Python predicate (for the 10 ms hot path).  Writing
the two side by side in one place is what keeps them from drifting; the parity test
checks that they have not.

Derived columns (initials, nickname-normalised forenames, swapped day/month) are computed
by one scalar function per column, applied to the *distinct* values of a column, and
the results are fed to Splink as ordinary columns.  Splink and the online matcher
therefore compare the very same strings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jellyfish

LevelKind = Literal["null", "exact", "lev", "swap", "overlap", "else"]
Scalar = str | None


@dataclass(frozen=True, slots=True)
class Level:
    """One comparison level; ``columns`` are prepared (possibly derived) column names."""

    kind: LevelKind
    columns: tuple[str, ...] = ()
    k: int = 0
    label: str = ""

    def sql(self) -> str:
        c = self.columns
        if self.kind == "null":
            return " OR ".join(f'"{col}_l" IS NULL OR "{col}_r" IS NULL' for col in c)
        if self.kind == "exact":
            return f'"{c[0]}_l" = "{c[0]}_r"'
        if self.kind == "lev":
            return f'levenshtein("{c[0]}_l", "{c[0]}_r") <= {self.k}'
        if self.kind == "swap":
            a, b = c
            return f'("{a}_l" = "{b}_r" OR "{b}_l" = "{a}_r")'
        if self.kind == "overlap":
            left = ", ".join(f'"{col}_l"' for col in c)
            right = ", ".join(f'"{col}_r"' for col in c)
            return f"list_has_any([{left}], [{right}])"
        return "ELSE"

    def holds(self, left: Sequence[Scalar], right: Sequence[Scalar]) -> bool:
        """The level's condition for one pair; values are given in ``columns`` order.

        Mirrors SQL three-valued logic: a comparison with NULL is not true.
        """
        kind = self.kind
        if kind == "null":
            return any(v is None for v in left) or any(v is None for v in right)
        if kind == "exact":
            a, b = left[0], right[0]
            return a is not None and b is not None and a == b
        if kind == "lev":
            a, b = left[0], right[0]
            if a is None or b is None:
                return False
            return a == b or jellyfish.levenshtein_distance(a, b) <= self.k
        if kind == "swap":
            (a_l, b_l), (a_r, b_r) = left, right
            return (a_l is not None and a_l == b_r) or (b_l is not None and b_l == a_r)
        if kind == "overlap":
            ls = {v for v in left if v is not None}
            return any(v is not None and v in ls for v in right)
        return True


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    levels: tuple[Level, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for level in self.levels:
            for col in level.columns:
                seen.setdefault(col)
        return tuple(seen)

    def splink(self) -> dict[str, Any]:
        """Splink comparison dict; the first level has the highest comparison vector value."""
        levels: list[dict[str, Any]] = []
        for level in self.levels:
            entry: dict[str, Any] = {
                "sql_condition": level.sql(),
                "label_for_charts": level.label or f"{level.kind} {','.join(level.columns)}",
            }
            if level.kind == "null":
                entry["is_null_level"] = True
            levels.append(entry)
        return {"output_column_name": self.name, "comparison_levels": levels}


@dataclass(frozen=True, slots=True)
class Derived:
    """A prepared column computed from one base column, value by value."""

    source: str
    fn: Callable[[Scalar], Scalar]


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a linkage model except its trained parameters.

    ``base`` columns come from the data (after ``normalise``); ``derived`` columns are
    computed from one base column each.  ``blocking`` lists candidate-generation keys as
    tuples of prepared column names: a pair is a candidate when all columns of any key
    are equal and not null.  ``release`` is irrelevant here: the spec never sees fields
    that are not used for matching.
    """

    name: str
    base: tuple[str, ...]
    derived: dict[str, Derived]
    comparisons: tuple[Comparison, ...]
    blocking: tuple[tuple[str, ...], ...]
    normalise: dict[str, Callable[[Scalar], Scalar]] = field(default_factory=dict)

    @property
    def prepared_columns(self) -> tuple[str, ...]:
        return (*self.base, *self.derived)

    def splink_settings(self, *, prior: float) -> dict[str, Any]:
        return {
            "link_type": "link_only",
            "unique_id_column_name": "unique_id",
            "probability_two_random_records_match": prior,
            "comparisons": [c.splink() for c in self.comparisons],
            "blocking_rules_to_generate_predictions": [
                blocking_sql(key) for key in self.blocking
            ],
            "retain_matching_columns": False,
            "retain_intermediate_calculation_columns": False,
            "additional_columns_to_retain": [],
        }


def blocking_sql(key: Sequence[str]) -> str:
    return " AND ".join(f'l."{col}" = r."{col}"' for col in key)
