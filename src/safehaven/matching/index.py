"""Compact in-memory index of a register for online candidate lookup.

Memory is the constraint at ten million people: a Python object per person would need tens
of gigabytes.  Every prepared column is therefore dictionary-encoded (sorted byte-string
categories plus an ``int32`` code per row), derived columns are stored once per *category*
rather than per row, and each blocking key is a sorted ``int64`` array of mixed-radix
combined codes beside the row numbers that carry it.  A lookup is a binary search per key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from safehaven.matching.spec import ModelSpec, Scalar

Codes = npt.NDArray[np.int32]


@dataclass
class Encoded:
    """A dictionary-encoded column: ``cats[codes[i]]`` is row i's value; -1 is null."""

    cats: npt.NDArray[np.bytes_]
    codes: Codes

    def code_of(self, value: Scalar) -> int:
        if value is None or len(self.cats) == 0:
            return -1
        b = value.encode("ascii", "replace")
        pos = int(np.searchsorted(self.cats, b))
        if pos < len(self.cats) and self.cats[pos] == b:
            return pos
        return -1

    def value_of_code(self, code: int) -> Scalar:
        return None if code < 0 else self.cats[code].decode("ascii")


def _encode_values(values: Sequence[Scalar]) -> tuple[npt.NDArray[np.bytes_], Codes]:
    """Sorted byte categories and, for each input value, its code (-1 for None)."""
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    codes = np.full(len(values), -1, dtype=np.int32)
    if not present.any():
        return np.array([], dtype="S1"), codes
    raw = np.array([v.encode("ascii", "replace") for v in values if v is not None],
                   dtype=np.bytes_)
    cats, inverse = np.unique(raw, return_inverse=True)
    codes[present] = inverse.astype(np.int32)
    return cats, codes


def encode_column(raw: pd.Series, fn: object | None = None) -> Encoded:
    """Normalise a column value by distinct value (cheap: few distinct names and dates)."""
    codes0, uniques = pd.factorize(raw, use_na_sentinel=True)
    uniq = [None if (u is None or (isinstance(u, float) and np.isnan(u))) else str(u)
            for u in uniques]
    if fn is not None:
        uniq = [fn(u) for u in uniq]  # type: ignore[operator]
    cats, remap = _encode_values(uniq)
    codes0 = np.asarray(codes0, dtype=np.int64)
    out = np.full(len(codes0), -1, dtype=np.int32)
    ok = codes0 >= 0
    out[ok] = remap[codes0[ok]]
    return Encoded(cats, out)


def encode_arrow(column: pa.ChunkedArray | pa.Array, fn: object | None = None) -> Encoded:
    """As :func:`encode_column`, straight from Arrow (no Python object per row)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    arr = pc.cast(arr, pa.string())
    dict_arr = pc.dictionary_encode(arr)
    uniq: list[Scalar] = dict_arr.dictionary.to_pylist()
    if fn is not None:
        uniq = [fn(u) for u in uniq]  # type: ignore[operator]
    cats, remap = _encode_values(uniq)
    idx = dict_arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.full(len(idx), -1, dtype=np.int32)
    ok = idx >= 0
    out[ok] = remap[idx[ok]]
    return Encoded(cats, out)


@dataclass
class DerivedTable:
    """A derived column held per source category: ``codes[source_code]`` is its code."""

    source: str
    column: Encoded  # cats = derived categories; codes indexed by source category


@dataclass
class BlockIndex:
    columns: tuple[str, ...]
    radix: tuple[int, ...]
    keys: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int32]


class RegisterIndex:
    """Prepared, encoded register columns and one sorted index per blocking key."""

    def __init__(self, spec: ModelSpec,
                 record_ids: Sequence[str] | npt.NDArray[np.object_] | pa.Array,
                 base: Mapping[str, Encoded]) -> None:
        self.spec = spec
        self.record_ids = record_ids
        self.base = dict(base)
        self.size = len(record_ids)
        self.derived: dict[str, DerivedTable] = {}
        for name, d in spec.derived.items():
            src = self.base[d.source]
            values = [d.fn(c.decode("ascii")) for c in src.cats]
            cats, codes = _encode_values(values)
            self.derived[name] = DerivedTable(d.source, Encoded(cats, codes))
        self.blocks = [self._build_block(key) for key in spec.blocking]

    @classmethod
    def from_frame(cls, spec: ModelSpec, df: pd.DataFrame, id_column: str) -> RegisterIndex:
        base = {col: encode_column(df[col], spec.normalise.get(col)) for col in spec.base}
        ids = df[id_column].astype(str).to_numpy(dtype=object)
        return cls(spec, ids, base)

    @classmethod
    def from_arrow(cls, spec: ModelSpec, table: pa.Table, id_column: str) -> RegisterIndex:
        base = {col: encode_arrow(table.column(col), spec.normalise.get(col))
                for col in spec.base}
        return cls(spec, pc.cast(table.column(id_column).combine_chunks(), pa.string()), base)

    def record_id(self, row: int) -> str:
        value = self.record_ids[row]
        return str(value.as_py() if isinstance(value, pa.Scalar) else value)

    # -- per-row codes -------------------------------------------------------------------
    def row_codes(self, column: str, rows: npt.NDArray[np.int32] | None = None) -> Codes:
        if column in self.base:
            codes = self.base[column].codes
            return codes if rows is None else codes[rows]
        d = self.derived[column]
        src = self.base[d.source].codes if rows is None else self.base[d.source].codes[rows]
        out = np.full(len(src), -1, dtype=np.int32)
        ok = src >= 0
        out[ok] = d.column.codes[src[ok]]
        return out

    def cardinality(self, column: str) -> int:
        enc = self.base[column] if column in self.base else self.derived[column].column
        return len(enc.cats)

    def _build_block(self, key: Sequence[str]) -> BlockIndex:
        radix = tuple(max(1, self.cardinality(c)) for c in key)
        combined = np.zeros(self.size, dtype=np.int64)
        valid = np.ones(self.size, dtype=bool)
        for col, r in zip(key, radix, strict=True):
            codes = self.row_codes(col)
            valid &= codes >= 0
            combined = combined * r + np.maximum(codes, 0)
        rows = np.flatnonzero(valid).astype(np.int32)
        keys = combined[rows]
        order = np.argsort(keys, kind="stable")
        return BlockIndex(tuple(key), radix, keys[order], rows[order])

    # -- request side --------------------------------------------------------------------
    def code_for(self, column: str, value: Scalar) -> int:
        """The register code of a prepared request value (-1 if the register never has it)."""
        if column in self.base:
            return self.base[column].code_of(value)
        return self.derived[column].column.code_of(value)

    def value(self, column: str, row: int) -> Scalar:
        if column in self.base:
            enc = self.base[column]
            return enc.value_of_code(int(enc.codes[row]))
        d = self.derived[column]
        src = int(self.base[d.source].codes[row])
        if src < 0:
            return None
        return d.column.value_of_code(int(d.column.codes[src]))

    def candidates(self, prepared: Mapping[str, Scalar], *, cap: int) -> npt.NDArray[np.int32]:
        """Rows sharing every column of at least one blocking key with the request.

        A key whose block exceeds ``cap`` rows is skipped: such a key (a very common name
        and year) carries too little information to be worth scoring exhaustively, and the
        other keys still find the person.
        """
        found: list[npt.NDArray[np.int32]] = []
        for block in self.blocks:
            combined = 0
            for col, r in zip(block.columns, block.radix, strict=True):
                code = self.code_for(col, prepared.get(col))
                if code < 0:
                    break
                combined = combined * r + code
            else:
                lo = int(np.searchsorted(block.keys, combined, side="left"))
                hi = int(np.searchsorted(block.keys, combined, side="right"))
                if 0 < hi - lo <= cap:
                    found.append(block.rows[lo:hi])
        if not found:
            return np.empty(0, dtype=np.int32)
        return np.unique(np.concatenate(found))

    def nbytes(self) -> int:
        total = 0
        for enc in self.base.values():
            total += enc.cats.nbytes + enc.codes.nbytes
        for block in self.blocks:
            total += block.keys.nbytes + block.rows.nbytes
        return total


def prepare_values(spec: ModelSpec, raw: Mapping[str, object]) -> dict[str, Scalar]:
    """Normalise one record's base values and compute its derived columns."""
    out: dict[str, Scalar] = {}
    for col in spec.base:
        value = raw.get(col)
        missing = value is None or (isinstance(value, float) and np.isnan(value))
        text = None if missing else str(value)
        fn = spec.normalise.get(col)
        out[col] = fn(text) if fn is not None else text
    for name, d in spec.derived.items():
        out[name] = d.fn(out[d.source])
    return out


def prepare_frame(spec: ModelSpec, df: pd.DataFrame | pa.Table, id_column: str
                  ) -> pd.DataFrame:
    """The prepared table Splink sees: the same normalised and derived strings as the index."""
    if isinstance(df, pa.Table):
        return prepare_arrow(spec, df, id_column).to_pandas()
    result: dict[str, Iterable[object]] = {"unique_id": df[id_column].astype(str).to_numpy()}
    encoded: dict[str, Encoded] = {}
    for col in spec.base:
        enc = encode_column(df[col], spec.normalise.get(col))
        encoded[col] = enc
        result[col] = _decode(enc.cats, enc.codes)
    for name, d in spec.derived.items():
        src = encoded[d.source]
        values = [d.fn(c.decode("ascii")) for c in src.cats]
        cats, codes = _encode_values(values)
        row = np.full(len(src.codes), -1, dtype=np.int32)
        ok = src.codes >= 0
        row[ok] = codes[src.codes[ok]]
        result[name] = _decode(cats, row)
    return pd.DataFrame(result)


def _decode(cats: npt.NDArray[np.bytes_], codes: Codes) -> pd.Series:
    strings = np.array([c.decode("ascii") for c in cats] + [None], dtype=object)
    return pd.Series(strings[np.where(codes >= 0, codes, len(cats))], dtype=object)


def _arrow_strings(cats: npt.NDArray[np.bytes_], codes: Codes) -> pa.Array:
    dictionary = pa.array([c.decode("ascii") for c in cats], type=pa.string())
    indices = pa.array(np.maximum(codes, 0), mask=codes < 0, type=pa.int32())
    return pc.cast(pa.DictionaryArray.from_arrays(indices, dictionary), pa.string())


def prepare_arrow(spec: ModelSpec, table: pa.Table | pd.DataFrame, id_column: str) -> pa.Table:
    """As :func:`prepare_frame`, as an Arrow table: compact enough for ten million rows."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    columns: dict[str, pa.Array] = {
        "unique_id": pc.cast(table.column(id_column).combine_chunks(), pa.string())}
    encoded: dict[str, Encoded] = {}
    for col in spec.base:
        enc = encode_arrow(table.column(col), spec.normalise.get(col))
        encoded[col] = enc
        columns[col] = _arrow_strings(enc.cats, enc.codes)
    for name, d in spec.derived.items():
        src = encoded[d.source]
        cats, codes = _encode_values([d.fn(c.decode("ascii")) for c in src.cats])
        row = np.full(len(src.codes), -1, dtype=np.int32)
        ok = src.codes >= 0
        row[ok] = codes[src.codes[ok]]
        columns[name] = _arrow_strings(cats, row)
    return pa.table(columns)
