"""The controller's register: schema, validation, atomic import, and what may leave it.

A register row that is wrong is worse than a missing one: an invalid NHS number or an
impossible birth date can make a stranger the best match.  Import therefore validates
every row, reports every problem by row and column, and writes nothing unless the whole
file is clean (a temporary file renamed into place, so a crash mid-import leaves the
previous register intact).

Clinical columns may be held in the register file, but :data:`RELEASABLE` is the only
route from a register row to anything a requester sees; it is an explicit allow-list, and
a test proves no clinical column can pass through it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from safehaven.domain.fields import CLINICAL_FIELDS
from safehaven.domain.request import POSTCODE_PATTERN
from safehaven.store.db import workspace_home

REQUIRED = ("record_id", "nhs_number", "family", "birthdate", "address_line1", "postcode")
OPTIONAL = ("given", "gender", "address_line2", "address_line3", "previous_postcode",
            "gp_practice", "registered_on", "deregistered_on")
CLINICAL = tuple(sorted(CLINICAL_FIELDS))
COLUMNS = REQUIRED + OPTIONAL
DATE_COLUMNS = ("birthdate", "registered_on", "deregistered_on")
GENDERS = frozenset({"male", "female", "other", "unknown"})

#: Request field name -> register columns it is made of.  The ONLY way out of a register.
RELEASABLE: Mapping[str, tuple[str, ...]] = {
    "nhs_number": ("nhs_number",),
    "family": ("family",),
    "given": ("given",),
    "gender": ("gender",),
    "birthdate": ("birthdate",),
    "address": ("address_line1", "address_line2", "address_line3"),
    "address-postalcode": ("postcode",),
    "gp_practice": ("gp_practice",),
    "registration_date": ("registered_on",),
}
assert not (set(RELEASABLE) & CLINICAL_FIELDS)
assert not ({c for cols in RELEASABLE.values() for c in cols} & CLINICAL_FIELDS)

REGISTER_SCHEMA = pa.schema([pa.field(c, pa.string(), nullable=c not in REQUIRED)
                             for c in COLUMNS + CLINICAL])

_POSTCODE = re.compile(POSTCODE_PATTERN)
_GP = r"^[A-Z][0-9]{5}$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
MAX_REPORTED = 100


def register_dir() -> Path:
    return workspace_home() / "register"


def register_path() -> Path:
    return register_dir() / "register.parquet"


def model_path() -> Path:
    return register_dir() / "model.json"


_DIGESTS: dict[tuple[str, int, int], str] = {}


def register_digest(path: Path | None = None) -> str:
    """sha256 of the register file: which register an index or a running matcher holds.

    Why: the online matcher is a copy of the register (in a worker's memory, or in
    PostgreSQL), and a copy that was not rebuilt after ``register import`` still answers,
    with last month's addresses.  Comparing digests is how the service notices (health
    check, ``docs/operations.md``).  Cached by the file's identity, size and
    modification time, so asking again costs a ``stat``; ``import_register`` replaces the
    file (a new inode), so a new import is always hashed afresh.
    """
    path = path or register_path()
    st = path.stat()
    key = (str(path), st.st_ino, st.st_mtime_ns ^ st.st_size)
    found = _DIGESTS.get(key)
    if found is None:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        found = _DIGESTS[key] = h.hexdigest()
    return found


@dataclass
class ImportReport:
    rows: int = 0
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    problem_count: int = 0

    def add(self, row: int, column: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append((row, column, message))

    def lines(self) -> list[str]:
        out = [f"row {r}, column {c}: {m}" for r, c, m in self.problems]
        if self.problem_count > len(self.problems):
            out.append(f"... and {self.problem_count - len(self.problems)} more problems")
        return out


class RegisterImportError(ValueError):
    def __init__(self, report: ImportReport) -> None:
        self.report = report
        super().__init__(f"{report.problem_count} problem(s) in the register file")


def nhs_numbers_valid(values: pd.Series) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Vectorised :func:`safehaven.domain.nhs_number.is_valid_nhs_number` (tested equal)."""
    s = values.fillna("").astype(str)
    shape_ok = s.str.fullmatch(r"[0-9]{10}").to_numpy(dtype=bool)
    ok = np.zeros(len(s), dtype=bool)
    if not shape_ok.any():
        return ok
    digits = np.frombuffer("".join(s[shape_ok]).encode("ascii"), dtype=np.uint8)
    digits = (digits - ord("0")).reshape(-1, 10).astype(np.int64)
    total = digits[:, :9] @ np.arange(10, 1, -1, dtype=np.int64)
    check = 11 - total % 11
    check = np.where(check == 11, 0, check)
    ok[shape_ok] = (check != 10) & (check == digits[:, 9])
    return ok


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype(str).str.strip() == "")


def _valid_dates(s: pd.Series) -> np.ndarray[Any, np.dtype[np.bool_]]:
    shape = s.fillna("").astype(str).str.fullmatch(_DATE)
    parsed = pd.to_datetime(s.where(shape), format="%Y-%m-%d", errors="coerce")
    result: np.ndarray[Any, np.dtype[np.bool_]] = (shape & parsed.notna()).to_numpy(dtype=bool)
    return result


def validate_chunk(df: pd.DataFrame, first_row: int, report: ImportReport,
                   seen_ids: set[str], seen_nhs: set[str]) -> None:
    """Add every problem in ``df`` to ``report``; rows are numbered from 1 (header excluded)."""
    rownum = np.arange(first_row, first_row + len(df))

    def flag(mask: np.ndarray[Any, np.dtype[np.bool_]] | pd.Series, column: str,
             message: str | Callable[[int], str]) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            report.add(int(rownum[i]), column,
                       message(int(i)) if callable(message) else message)

    for col in REQUIRED:
        flag(_blank(df[col]), col, "required value is missing")
    present = {c: ~_blank(df[c]) for c in df.columns}
    flag(present["nhs_number"] & ~nhs_numbers_valid(df["nhs_number"]), "nhs_number",
         "not a valid NHS number (10 digits with a modulus-11 check digit)")
    for col in DATE_COLUMNS:
        flag(present[col] & ~_valid_dates(df[col]), col, "not a valid date (YYYY-MM-DD)")
    for col in ("postcode", "previous_postcode"):
        ok = df[col].fillna("").astype(str).map(lambda v: bool(_POSTCODE.match(v)))
        flag(present[col] & ~ok.to_numpy(dtype=bool), col, "not a UK postcode")
    flag(present["gender"] & ~df["gender"].isin(GENDERS), "gender",
         f"must be one of {sorted(GENDERS)}")
    flag(present["gp_practice"] & ~df["gp_practice"].fillna("").str.fullmatch(_GP),
         "gp_practice", "not a GP practice code (a letter and five digits)")
    for col, seen in (("record_id", seen_ids), ("nhs_number", seen_nhs)):
        values = df[col].to_numpy(dtype=object)
        dup_in_chunk = pd.Series(values).duplicated().to_numpy()
        dup_before = np.fromiter((v in seen for v in values), dtype=bool, count=len(values))
        flag((dup_in_chunk | dup_before) & present[col].to_numpy(), col,
             "duplicate value (must be unique in the register)")
        seen.update(v for v in values if isinstance(v, str))


def _chunks(path: Path, chunk_rows: int) -> Iterator[tuple[pa.Table, int]]:
    """Yield (chunk, total rows if known) as all-string tables."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        pf = pq.ParquetFile(path)
        total = pf.metadata.num_rows
        for batch in pf.iter_batches(batch_size=chunk_rows):
            yield pa.Table.from_batches([batch]), total
        return
    if suffix != ".csv":
        raise ValueError(f"{path}: expected a .csv or .parquet file")
    with path.open("rb") as fh:
        header = fh.readline().decode("utf-8-sig").strip().split(",")
    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                   strings_can_be_null=True)
    reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=64 << 20),
                            convert_options=convert)
    for batch in reader:
        yield pa.Table.from_batches([batch]), -1


def import_register(source: Path, dest: Path | None = None, *, chunk_rows: int = 500_000,
                    progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Validate ``source`` and atomically replace the workspace register with it.

    Raises :class:`RegisterImportError` (and leaves any existing register untouched) if
    a single row is wrong.
    """
    dest = dest or register_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    report = ImportReport()
    seen_ids: set[str] = set()
    seen_nhs: set[str] = set()
    writer: pq.ParquetWriter | None = None
    try:
        for table, total in _chunks(source, chunk_rows):
            unknown = [c for c in table.column_names if c not in REGISTER_SCHEMA.names]
            missing = [c for c in REQUIRED if c not in table.column_names]
            # A column named twice would make ``df[col]`` a frame, not a column, and which
            # of the two is meant cannot be guessed.
            twice = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
            if unknown or missing or twice:
                for c in unknown:
                    report.add(0, c, "unknown column (not part of the register schema)")
                for c in missing:
                    report.add(0, c, "required column is missing")
                for c in twice:
                    report.add(0, c, "column appears more than once in the header")
                raise RegisterImportError(report)
            df = table.cast(pa.schema([pa.field(c, pa.string()) for c in table.column_names])
                            ).to_pandas()
            for c in REGISTER_SCHEMA.names:
                if c not in df.columns:
                    df[c] = None
            df = df[list(REGISTER_SCHEMA.names)]
            df = df.where(~_blank_frame(df), None)
            validate_chunk(df, report.rows + 1, report, seen_ids, seen_nhs)
            report.rows += len(df)
            if report.problem_count == 0:
                out = pa.Table.from_pandas(df, schema=REGISTER_SCHEMA, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, REGISTER_SCHEMA, compression="zstd")
                writer.write_table(out)
            if progress is not None:
                progress(report.rows, total)
        if report.rows == 0:
            report.add(0, "(file)", "the register file has no rows")
        if report.problem_count:
            raise RegisterImportError(report)
        assert writer is not None
        writer.close()
        writer = None
        os.replace(tmp, dest)
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            tmp.unlink()
    return report


def _blank_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df.isna() | df.apply(lambda s: s.astype(str).str.strip() == "")


def read_register(path: Path | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    return register_table(path, columns).to_pandas()


def register_table(path: Path | None = None, columns: list[str] | None = None) -> pa.Table:
    """The register as Arrow: a few bytes per value, where pandas needs a Python object."""
    return pq.read_table(path or register_path(), columns=columns)


def released_fields(row: Mapping[str, Any], permitted: list[str] | tuple[str, ...]
                    ) -> dict[str, Any]:
    """The permitted fields of a register row, through the allow-list and nothing else."""
    out: dict[str, Any] = {}
    for name in permitted:
        cols = RELEASABLE.get(name)
        if cols is None:
            continue
        values = [row.get(c) for c in cols]
        present = [str(v) for v in values if v is not None and str(v).strip()]
        if not present:
            continue
        out[name] = ", ".join(present) if len(cols) > 1 else present[0]
    return out
