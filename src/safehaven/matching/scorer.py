"""The online matcher: candidates from the index, Fellegi–Sunter scores, a unique-match rule.

Scores reproduce Splink's arithmetic exactly (same clamping of m and u, same prior term,
same numerically stable logistic), from the m/u table in the trained settings JSON, so
a score printed here can be checked against Splink for the same pair.

Only a *unique, confident* match is ``matched``: when a second candidate is within
``margin_bits`` of the best (identical twins, two people of the same name and birthday in
one postcode) the answer is ``ambiguous`` and discloses nothing, as with PDS's rule that
a search returning more than one person returns none.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from safehaven.matching.index import RegisterIndex, prepare_values
from safehaven.matching.spec import Comparison, ModelSpec, Scalar

Status = Literal["matched", "ambiguous", "no_match"]

#: Splink clamps m and u from below before taking logs (comparison_level.M_U_CLAMP_MIN).
_CLAMP = 1e-300
#: Splink's stand-in probability for a level never seen in training.
_NOT_OBSERVED = 1e-6
_NOT_OBSERVED_TEXT = "level not observed in training dataset"


def _prob(value: Any) -> float | None:
    if value is None:
        return None
    if value == _NOT_OBSERVED_TEXT:
        return _NOT_OBSERVED
    return float(value)


def prob_to_weight(p: float) -> float:
    return math.log2(p / (1 - p))


def weight_to_prob(w: float) -> float:
    """Splink's stable logistic in base 2."""
    if w >= 0:
        return float(1.0 / (1.0 + 2.0 ** (-w)))
    return float(2.0**w / (1.0 + 2.0**w))


@dataclass(frozen=True)
class Weights:
    """Per comparison, the match weight of each level in spec order; and the prior term."""

    prior: float
    levels: tuple[tuple[float, ...], ...]

    @classmethod
    def from_settings(cls, spec: ModelSpec, settings: Mapping[str, Any]) -> Weights:
        by_name = {c["output_column_name"]: c for c in settings["comparisons"]}
        levels: list[tuple[float, ...]] = []
        for comp in spec.comparisons:
            trained = by_name[comp.name]["comparison_levels"]
            if len(trained) != len(comp.levels):
                raise ValueError(f"model comparison {comp.name!r} does not match the spec")
            ws: list[float] = []
            for level in trained:
                if level.get("is_null_level"):
                    ws.append(0.0)
                    continue
                m, u = _prob(level.get("m_probability")), _prob(level.get("u_probability"))
                if m is None or u is None:
                    raise ValueError(f"model comparison {comp.name!r} is not trained")
                ws.append(math.log2(max(m, _CLAMP) / max(u, _CLAMP)))
            levels.append(tuple(ws))
        prior = prob_to_weight(float(settings["probability_two_random_records_match"]))
        return cls(prior, tuple(levels))


def level_index(comp: Comparison, left: Mapping[str, Scalar], right: Mapping[str, Scalar]) -> int:
    for i, level in enumerate(comp.levels):
        cols = level.columns
        if level.holds([left.get(c) for c in cols], [right.get(c) for c in cols]):
            return i
    return len(comp.levels) - 1


def pair_weight(spec: ModelSpec, weights: Weights, left: Mapping[str, Scalar],
                right: Mapping[str, Scalar]) -> float:
    """Match weight of one prepared pair (used by tests and the batch cross-check)."""
    total = weights.prior
    for comp, ws in zip(spec.comparisons, weights.levels, strict=True):
        total += ws[level_index(comp, left, right)]
    return total


@dataclass(frozen=True)
class Candidate:
    row: int
    record_id: str
    weight: float
    score: float


@dataclass(frozen=True)
class MatchResult:
    status: Status
    score: float
    record_id: str | None
    row: int | None
    candidates: tuple[Candidate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "score": round(self.score, 6),
                "record_id": self.record_id}


@dataclass(frozen=True)
class Policy:
    """The operating point; see docs/matching.md for why these numbers."""

    threshold: float = 0.97
    margin_bits: float = 6.0
    block_cap: int = 5000


class Scorer:
    """Scoring and the unique-match rule, whatever holds the candidate index.

    The in-memory :class:`Matcher` and the PostgreSQL-resident matcher
    (:mod:`safehaven.matching.pg_index`) differ only in how they find candidates and
    fetch their values; both score here, so the two backends cannot drift apart.
    Candidates arrive dictionary-encoded per base column (``codes[src][j]`` indexes
    ``cats[src]``, -1 is null), the same shape the in-memory index stores.
    """

    def __init__(self, spec: ModelSpec, weights: Weights, policy: Policy | None = None):
        self.spec = spec
        self.weights = weights
        self.policy = policy or Policy()
        # Per comparison: the base source columns its levels read, and for each level the
        # columns it needs (with where each comes from).
        self._comp_sources: list[tuple[str, ...]] = []
        self._comp_columns: list[tuple[str, ...]] = []
        for comp in spec.comparisons:
            sources: dict[str, None] = {}
            for col in comp.columns:
                src = col if col in spec.base else spec.derived[col].source
                sources.setdefault(src)
            self._comp_sources.append(tuple(sources))
            self._comp_columns.append(comp.columns)
        #: The base columns any comparison reads: what a backend must fetch per candidate.
        self.source_columns: tuple[str, ...] = tuple(
            dict.fromkeys(s for srcs in self._comp_sources for s in srcs))

    def _right_values(self, ci: int, codes: Sequence[int],
                      cats: Mapping[str, npt.NDArray[np.bytes_]]) -> dict[str, Scalar]:
        base_vals: dict[str, Scalar] = {}
        for src, code in zip(self._comp_sources[ci], codes, strict=True):
            base_vals[src] = None if code < 0 else cats[src][code].decode("ascii")
        vals: dict[str, Scalar] = {}
        for col in self._comp_columns[ci]:
            if col in base_vals:
                vals[col] = base_vals[col]
            else:
                d = self.spec.derived[col]
                vals[col] = d.fn(base_vals[d.source])
        return vals

    def score_encoded(self, prepared: Mapping[str, Scalar], n: int,
                      codes: Mapping[str, npt.NDArray[np.int32]],
                      cats: Mapping[str, npt.NDArray[np.bytes_]]) -> npt.NDArray[np.float64]:
        """Match weights of the request against ``n`` encoded candidates.

        Candidates share values heavily (a household shares a postcode, a block shares a
        birth date), so each comparison is evaluated once per distinct register value
        and the weight reused: a tight loop over a few dozen ints, no per-row objects.
        """
        total = [self.weights.prior] * n
        if n == 0:
            return np.asarray(total, dtype=np.float64)
        for ci, comp in enumerate(self.spec.comparisons):
            ws = self.weights.levels[ci]
            sources = self._comp_sources[ci]
            code_lists = [codes[src].tolist() for src in sources]
            keys: list[Any] = (code_lists[0] if len(code_lists) == 1
                               else list(zip(*code_lists, strict=True)))
            memo: dict[Any, float] = {}
            for j, key in enumerate(keys):
                w = memo.get(key)
                if w is None:
                    key_codes = (key,) if len(code_lists) == 1 else key
                    right = self._right_values(ci, key_codes, cats)
                    w = ws[level_index(comp, prepared, right)]
                    memo[key] = w
                total[j] += w
        return np.asarray(total, dtype=np.float64)

    def outcome(self, rows: npt.NDArray[np.int32], weights: npt.NDArray[np.float64],
                record_id_at: Callable[[int], str]) -> MatchResult:
        """The unique-match rule over scored candidates given in ascending row order.

        Ties between equal weights go to the lower register row (stable sort), which is
        why every backend must hand its candidates over sorted by row.  ``record_id_at``
        gives the record id of the candidate at a position; only the best five are asked.
        """
        order = np.argsort(-weights, kind="stable")[:5]
        cands = tuple(
            Candidate(int(rows[i]), record_id_at(int(i)), float(weights[i]),
                      weight_to_prob(float(weights[i])))
            for i in order
        )
        if not cands:
            return MatchResult("no_match", 0.0, None, None, ())
        best = cands[0]
        if best.score < self.policy.threshold:
            return MatchResult("no_match", best.score, None, None, cands)
        if len(cands) > 1 and cands[1].weight > best.weight - self.policy.margin_bits:
            return MatchResult("ambiguous", best.score, None, None, cands)
        return MatchResult("matched", best.score, best.record_id, best.row, cands)

    def match_prepared(self, prepared: Mapping[str, Scalar]) -> MatchResult:
        raise NotImplementedError  # each backend finds its own candidates

    def match(self, raw: Mapping[str, object]) -> MatchResult:
        return self.match_prepared(prepare_values(self.spec, raw))


class Matcher(Scorer):
    """The in-memory backend: candidates from a :class:`RegisterIndex` in this process."""

    def __init__(self, index: RegisterIndex, weights: Weights, policy: Policy | None = None):
        super().__init__(index.spec, weights, policy)
        self.index = index
        self._codes = {name: enc.codes for name, enc in index.base.items()}
        self._cats = {name: enc.cats for name, enc in index.base.items()}

    def score_rows(self, prepared: Mapping[str, Scalar],
                   rows: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
        """Match weights of the request against the given register rows."""
        codes = {src: self._codes[src][rows] for src in self.source_columns}
        return self.score_encoded(prepared, len(rows), codes, self._cats)

    def match_prepared(self, prepared: Mapping[str, Scalar]) -> MatchResult:
        rows = self.index.candidates(prepared, cap=self.policy.block_cap)
        weights = self.score_rows(prepared, rows)
        return self.outcome(rows, weights, lambda i: self.index.record_id(int(rows[i])))
