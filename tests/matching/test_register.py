"""Register import: bad rows are reported by row and column, and nothing is half-imported."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from safehaven.domain.nhs_number import is_valid_nhs_number
from safehaven.matching.register import (
    RegisterImportError,
    import_register,
    nhs_numbers_valid,
)
from safehaven.matching.synth import synth_register, write_register


@pytest.fixture
def small() -> pd.DataFrame:
    return synth_register(300, seed=3)


def test_clean_csv_and_parquet_import(tmp_path: Path, small: pd.DataFrame) -> None:
    for name in ("r.csv", "r.parquet"):
        src = tmp_path / name
        write_register(small, src)
        dest = tmp_path / f"out-{name}.parquet"
        report = import_register(src, dest, chunk_rows=100)
        assert report.rows == 300 and report.problem_count == 0
        back = pq.read_table(dest).to_pandas()
        assert list(back["record_id"]) == list(small["record_id"])
        assert list(back["nhs_number"]) == list(small["nhs_number"])


def test_bad_rows_are_reported_and_nothing_is_written(tmp_path: Path,
                                                      small: pd.DataFrame) -> None:
    dest = tmp_path / "register.parquet"
    good = tmp_path / "good.csv"
    write_register(small.iloc[:50], good)
    import_register(good, dest)
    before = dest.read_bytes()

    bad = small.copy()
    nhs = bad.loc[10, "nhs_number"]
    bad.loc[10, "nhs_number"] = nhs[:9] + str((int(nhs[9]) + 1) % 10)  # wrong check digit
    bad.loc[250, "birthdate"] = "1985-02-30"
    bad.loc[251, "birthdate"] = "17/05/1985"
    bad.loc[120, "postcode"] = "NOT A POSTCODE"
    bad.loc[121, "record_id"] = bad.loc[120, "record_id"]
    src = tmp_path / "bad.csv"
    write_register(bad, src)
    with pytest.raises(RegisterImportError) as info:
        import_register(src, dest, chunk_rows=100)
    problems = {(r, c) for r, c, _ in info.value.report.problems}
    assert problems == {(11, "nhs_number"), (251, "birthdate"), (252, "birthdate"),
                        (121, "postcode"), (122, "record_id")}
    assert dest.read_bytes() == before  # the previous register is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "good.csv",
                                                          "register.parquet"]


def test_unknown_or_missing_columns_are_rejected(tmp_path: Path, small: pd.DataFrame) -> None:
    src = tmp_path / "r.csv"
    small.assign(shoe_size=42).to_csv(src, index=False)
    with pytest.raises(RegisterImportError) as info:
        import_register(src, tmp_path / "out.parquet")
    assert ("shoe_size" in {c for _, c, _ in info.value.report.problems})
    small.drop(columns=["birthdate"]).to_csv(src, index=False)
    with pytest.raises(RegisterImportError):
        import_register(src, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_a_column_named_twice_is_rejected(tmp_path: Path, small: pd.DataFrame) -> None:
    """Found by the fuzz test: ``family,family`` in the header crashed the validator."""
    src = tmp_path / "r.csv"
    pd.concat([small, small[["family"]]], axis=1).to_csv(src, index=False)
    assert src.read_text().splitlines()[0].count("family") == 2
    with pytest.raises(RegisterImportError) as info:
        import_register(src, tmp_path / "out.parquet")
    assert (0, "family", "column appears more than once in the header") in \
        info.value.report.problems
    assert not (tmp_path / "out.parquet").exists()


def test_vectorised_nhs_check_equals_the_domain_rule() -> None:
    rnd = random.Random(7)
    values = [str(rnd.randrange(10**9, 10**10)) for _ in range(20_000)]
    values += ["", "123", "12345678901", "abcdefghij", "4010232137", "943 476 5919"]
    got = nhs_numbers_valid(pd.Series(values))
    assert list(got) == [is_valid_nhs_number(v) for v in values]
    assert got.sum() > 1_000  # the sample contains valid numbers, not only invalid ones
