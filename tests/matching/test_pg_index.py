"""The PostgreSQL-resident candidate index answers exactly as the in-memory one does.

Every test runs against a real server (marker ``postgres``): the shared synthetic register
(8,000 people) plus people who make matching hard (twins, duplicates, blocks over the cap,
missing values), indexed once in PostgreSQL and once in memory from the same Arrow table,
then queried hundreds of times.  "Identical" means the same candidate rows, status,
record id and row, and scores and weights within 1e-9.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.domain.fields import CLINICAL_FIELDS
from safehaven.matching.index import RegisterIndex, prepare_values
from safehaven.matching.model import save_model
from safehaven.matching.online import (
    RELEASABLE_COLUMNS,
    PgRegisterMatcher,
    RegisterMatcher,
    subject_values,
)
from safehaven.matching.person import PERSON_SPEC
from safehaven.matching.pg_index import (
    IndexChangedError,
    IndexMismatchError,
    PgCandidateIndex,
    PgMatcher,
    _lock_id,
    build_index,
    check_schema,
    conninfo,
    index_size,
    query_key,
)
from safehaven.matching.register import RELEASABLE, import_register
from safehaven.matching.scorer import Matcher, MatchResult, Policy, Scorer, Weights
from safehaven.matching.spec import Comparison, Level, ModelSpec
from safehaven.matching.synth import synth_requests, write_register

pytestmark = pytest.mark.postgres

SECRET = "SECRET-CLINICAL"
Q_BLOCK, Z_BLOCK = 260, 120  # (birthdate, family initial) blocks: over and under cap 200
runner = CliRunner()


def _frame(register: pd.DataFrame) -> pd.DataFrame:
    """The shared register plus the people that make linkage hard, clinical columns set."""
    rng = np.random.default_rng(8)
    template = {c: None for c in register.columns}
    postcodes = register["postcode"].to_numpy(dtype=object)
    extra: list[dict[str, Any]] = []

    def add(**values: Any) -> None:
        k = len(extra)
        extra.append({**template, "address_line1": f"{k + 1} Test Row", "gender": "female",
                      "record_id": f"X{k:05d}", "nhs_number": f"9{k:09d}", **values})

    twin = {"family": "Okonkwo-Barnes", "given": "Tobias", "gender": "male",
            "birthdate": "2004-05-17", "postcode": "LS6 2QT"}
    add(**twin)
    add(**twin)  # identical twins, distinct NHS numbers
    dup = {"family": "Featherstonehaugh", "given": "Imogen", "birthdate": "1961-11-30",
           "postcode": "EX4 4QJ", "nhs_number": "9876543210"}
    add(**dup)
    add(**dup)  # the same person registered twice (same NHS number)
    q_names = ["Quayle", "Quinn", "Quigley", "Quentin", "Quarmby", "Quested", "Quick"]
    for i in range(Q_BLOCK):
        add(family=q_names[i % len(q_names)], given=["Anna", "Ben", "Cara", "Dev"][i % 4],
            birthdate="1975-06-15", postcode=str(postcodes[int(rng.integers(len(postcodes)))]))
    for i in range(Z_BLOCK):
        add(family=["Zhang", "Zielinski", "Zaman"][i % 3], given=f"Zed{'abcdefghij'[i % 10]}",
            birthdate="1982-02-02", postcode=str(postcodes[int(rng.integers(len(postcodes)))]))
    add(family="Ødegård", given="Zoë", birthdate="1990-07-01", postcode="N1 9GU",
        previous_postcode="E8 3RL")
    add(family="Nullgiven", given=None, gender=None, birthdate="1970-01-01",
        postcode="SW1A 1AA")
    frame = pd.concat([register, pd.DataFrame(extra)], ignore_index=True)
    for col in CLINICAL_FIELDS:
        frame[col] = SECRET
    return frame


def _queries(frame: pd.DataFrame, register: pd.DataFrame) -> list[dict[str, object]]:
    """Exact, noisy, absent, ambiguous, over-cap, partial and malformed queries."""
    base = [c for c in PERSON_SPEC.base if c != "nhs_number"]

    def raw(i: int, cols: list[str]) -> dict[str, object]:
        row = frame.iloc[i]
        return {c: (None if pd.isna(row[c]) else row[c]) for c in cols}

    out: list[dict[str, object]] = []
    out += [raw(i, base) for i in range(0, len(register), 53)]  # exact, no NHS number
    out += [raw(i, ["nhs_number"]) for i in range(7, len(register), 397)]
    out += [subject_values(r["subject"]) for r, _, _ in synth_requests(register, 200, seed=3)]
    extras = range(len(register), len(frame))
    out += [raw(i, base) for i in extras if i % 9 == 0 or i < len(register) + 4]
    rng = np.random.default_rng(5)
    for i in rng.choice(len(frame), 40, replace=False):
        q = raw(int(i), [*base, "nhs_number"])
        for c in rng.choice(list(q), int(rng.integers(1, 4)), replace=False):
            q[str(c)] = None
        out.append(q)
    out += [
        {},
        {"postcode": frame.iloc[3]["postcode"]},
        {"birthdate": "1975-06-15", "family": "Quinn"},
        {"birthdate": "1975-06-15", "family": "Quinn", "given": "Ben"},
        {"family": "Zhang", "birthdate": "1982-02-02", "given": "Zeda"},
        {"family": "Smith", "birthdate": "1990\x1f01-01", "postcode": "AB\x001 2CD"},
        {"family": "Odegard", "given": "Zoë", "birthdate": "1990-07-01", "postcode": "É1 9GU"},
        {"family": "back\\slash", "birthdate": "1970-01-01", "postcode": "SW1A 1AA"},
    ]
    return out


@pytest.fixture(scope="module")
def frame(register: pd.DataFrame) -> pd.DataFrame:
    return _frame(register)


@pytest.fixture(scope="module")
def table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


@pytest.fixture(scope="module")
def weights(model: dict[str, Any]) -> Weights:
    return Weights.from_settings(PERSON_SPEC, model)


@pytest.fixture(scope="module")
def memory_index(table: pa.Table) -> RegisterIndex:
    # Built from Arrow exactly as RegisterMatcher.load builds it.
    return RegisterIndex.from_arrow(PERSON_SPEC, table, "record_id")


@pytest.fixture(scope="module")
def pg_url(pg_module_url: str, table: pa.Table) -> str:
    # The whole frame, clinical columns included: the build must pick only the releasable.
    build_index(pg_module_url, table, PERSON_SPEC, releasable=RELEASABLE_COLUMNS,
                schema="parity")
    return pg_module_url


@pytest.fixture(scope="module")
def pg_index(pg_url: str, weights: Weights) -> Iterator[PgCandidateIndex]:
    index = PgCandidateIndex(pg_url, PERSON_SPEC, _columns(weights), "parity")
    yield index
    index.close()


@pytest.fixture(scope="module")
def queries(frame: pd.DataFrame, register: pd.DataFrame) -> list[dict[str, object]]:
    return _queries(frame, register)


def _columns(weights: Weights) -> tuple[str, ...]:
    return Scorer(PERSON_SPEC, weights).source_columns


def assert_same(a: MatchResult, b: MatchResult) -> None:
    assert (a.status, a.record_id, a.row) == (b.status, b.record_id, b.row)
    assert abs(a.score - b.score) <= 1e-9
    assert [(c.row, c.record_id) for c in a.candidates] == \
        [(c.row, c.record_id) for c in b.candidates]
    for x, y in zip(a.candidates, b.candidates, strict=True):
        assert abs(x.weight - y.weight) <= 1e-9 and abs(x.score - y.score) <= 1e-9


# -- parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [5000, 200, 100])
def test_pg_matcher_is_identical_to_the_in_memory_matcher(
    cap: int, queries: list[dict[str, object]], memory_index: RegisterIndex,
    pg_index: PgCandidateIndex, weights: Weights,
) -> None:
    policy = Policy(block_cap=cap)
    memory, pg = Matcher(memory_index, weights, policy), PgMatcher(pg_index, weights, policy)
    statuses: dict[str, int] = {}
    for q in queries:
        prepared = prepare_values(PERSON_SPEC, q)
        expected_rows = memory_index.candidates(prepared, cap=cap)
        got = pg_index.candidates(prepared, cap=cap)
        assert got.rows.tolist() == expected_rows.tolist(), q
        assert got.record_ids == [memory_index.record_id(int(r)) for r in expected_rows]
        a, b = memory.match(q), pg.match(q)
        assert_same(a, b)
        statuses[a.status] = statuses.get(a.status, 0) + 1
    assert len(queries) >= 400
    # The queries really cover every outcome, not only the easy one.
    assert statuses["matched"] >= 200 and statuses["ambiguous"] >= 3
    assert statuses["no_match"] >= 30


def test_the_block_cap_changes_candidates_the_same_way(
    memory_index: RegisterIndex, pg_index: PgCandidateIndex
) -> None:
    prepared = prepare_values(PERSON_SPEC, {"birthdate": "1975-06-15", "family": "Quinn"})
    for cap, q_block_used in ((5000, True), (Q_BLOCK, True), (Q_BLOCK - 1, False)):
        rows = pg_index.candidates(prepared, cap=cap).rows
        assert rows.tolist() == memory_index.candidates(prepared, cap=cap).tolist()
        assert (len(rows) >= Q_BLOCK) is q_block_used
    z = prepare_values(PERSON_SPEC, {"birthdate": "1982-02-02", "family": "Zhang"})
    assert len(pg_index.candidates(z, cap=Z_BLOCK).rows) >= Z_BLOCK  # listed, under cap
    assert len(pg_index.candidates(z, cap=Z_BLOCK - 1).rows) < Z_BLOCK


def test_a_cap_below_the_size_floor_is_refused(pg_index: PgCandidateIndex,
                                               weights: Weights) -> None:
    with pytest.raises(ValueError, match="size floor"):
        PgMatcher(pg_index, weights, Policy(block_cap=pg_index.size_floor - 1))


AB_SPEC = ModelSpec(
    name="ab", base=("a", "b"), derived={},
    comparisons=tuple(Comparison(c, (Level("null", (c,)), Level("exact", (c,)), Level("else")))
                      for c in ("a", "b")),
    blocking=(("a", "b"),),
)


def test_keys_with_separators_backslashes_and_nul_stay_distinct(pg_module_url: str) -> None:
    rows = [("x\x1fy", "z"), ("x", "y\x1fz"), ("p\x1f", "q"), ("p\\u", "q"), ("Zoë", "q"),
            ("Zo?", "q"), (None, "z"), ("", ""), ("tab\there", "new\nline"), ('"quo"', ",")]
    table = pa.table({"record_id": [f"R{i}" for i in range(len(rows))],
                      "a": [r[0] for r in rows], "b": [r[1] for r in rows]})
    build_index(pg_module_url, table, AB_SPEC, schema="ab")
    weights = Weights(-5.0, ((0.0, 6.0, -2.0), (0.0, 6.0, -2.0)))
    memory = Matcher(RegisterIndex.from_arrow(AB_SPEC, table, "record_id"), weights)
    pg = PgMatcher.connect(pg_module_url, AB_SPEC, weights, schema="ab")
    try:
        for q in [*({"a": a, "b": b} for a, b in rows), {"a": "x\x00", "b": "z"},
                  {"a": "x\x1fy\x1fz"}, {"a": "p\\", "b": "uq"}]:
            prepared = prepare_values(AB_SPEC, q)
            assert (pg.index.candidates(prepared, cap=5000).rows.tolist()
                    == memory.index.candidates(prepared, cap=5000).tolist()), q
            assert_same(memory.match(q), pg.match(q))
        # The colliding pairs each find only themselves; "" and NULL are not confused.
        assert pg.match({"a": "x", "b": "y\x1fz"}).record_id == "R1"
        assert pg.match({"a": "p\\u", "b": "q"}).record_id == "R3"
        assert pg.match({"a": "", "b": ""}).record_id == "R7"
        # Both backends compare keys in ASCII ("Zoë" and "Zo?" share a block).
        zoe = prepare_values(AB_SPEC, {"a": "Zoë", "b": "q"})
        assert pg.index.candidates(zoe, cap=5000).rows.tolist() == [4, 5]
    finally:
        pg.close()
    assert query_key(["a", None]) is None
    assert query_key(["x\x1fy", "z"]) != query_key(["x", "y\x1fz"])


# -- what can leave ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, model: dict[str, Any]) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.json"
    save_model(model, path)
    return path


@pytest.fixture
def online_pair(pg_url: str, model_file: Path, table: pa.Table, memory_index: RegisterIndex,
                weights: Weights) -> Iterator[tuple[RegisterMatcher, PgRegisterMatcher]]:
    memory = RegisterMatcher(Matcher(memory_index, weights),
                             table.select(list(RELEASABLE_COLUMNS)), 0.0)
    pg = PgRegisterMatcher.load(pg_url, model_file, schema="parity")
    yield memory, pg
    pg.close()


def test_record_releases_only_permitted_allow_listed_fields(
    online_pair: tuple[RegisterMatcher, PgRegisterMatcher], queries: list[dict[str, object]],
    pg_url: str,
) -> None:
    memory, pg = online_pair
    matched = ambiguous = 0
    for q in queries:
        subject = {"nhs_number": q.get("nhs_number"), "family": q.get("family"),
                   "given": q.get("given"), "gender": q.get("gender"),
                   "birthdate": q.get("birthdate"), "address-postalcode": q.get("postcode")}
        a, b = memory.match(subject), pg.match(subject)
        assert_same(a, b)
        for permitted in (tuple(RELEASABLE), ("address-postalcode",), ("diagnosis", "address")):
            got = pg.record(b, permitted)
            assert got == memory.record(a, permitted)
            assert set(got) <= set(permitted) & set(RELEASABLE)
            assert SECRET not in json.dumps(got)
        if b.status == "matched":
            matched += 1
            assert pg.record(b, ("address-postalcode",)) != {}
        else:
            ambiguous += b.status == "ambiguous"
            assert pg.record(b, tuple(RELEASABLE)) == {}
    assert matched >= 100 and ambiguous >= 1
    # No clinical column, and no clinical value, was ever loaded into PostgreSQL.
    with psycopg.connect(conninfo(pg_url)) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'parity'")}
        assert not columns & CLINICAL_FIELDS
        for tname in ("people", "releasable"):
            hits = conn.execute(psycopg.sql.SQL(
                "SELECT count(*) FROM parity.{} t WHERE t::text LIKE %s").format(
                psycopg.sql.Identifier(tname)), (f"%{SECRET}%",)).fetchone()
            assert hits == (0,)


def test_a_clinical_releasable_column_is_refused(pg_module_url: str, table: pa.Table) -> None:
    with pytest.raises(ValueError, match="clinical"):
        build_index(pg_module_url, table.slice(0, 10), PERSON_SPEC,
                    releasable=[*RELEASABLE_COLUMNS, "diagnosis"], schema="never")
    assert index_size(pg_module_url, "never") == {}


# -- the index's life: spec checks, swaps, failed builds ---------------------------------


@pytest.mark.parametrize("variant", ["name", "blocking", "normalisation", "missing"])
def test_an_index_built_for_another_spec_is_refused(
    variant: str, pg_module_url: str, table: pa.Table, weights: Weights
) -> None:
    spec = {"name": replace(PERSON_SPEC, name="person-v2"),
            "blocking": replace(PERSON_SPEC, blocking=PERSON_SPEC.blocking[:-1]),
            "normalisation": replace(PERSON_SPEC, normalise={
                **PERSON_SPEC.normalise, "postcode": lambda v: v.upper() if v else None}),
            "missing": None}[variant]
    schema = f"other_{variant}"
    if spec is not None:
        build_index(pg_module_url, table.slice(0, 300), spec, schema=schema)
        PgCandidateIndex(pg_module_url, spec, _columns(weights), schema).close()  # its own
    with pytest.raises(IndexMismatchError):
        PgCandidateIndex(pg_module_url, PERSON_SPEC, _columns(weights), schema)


def test_an_index_without_the_releasable_columns_is_refused(
    pg_module_url: str, table: pa.Table, model_file: Path
) -> None:
    build_index(pg_module_url, table.slice(0, 300), PERSON_SPEC, schema="no_release")
    with pytest.raises(IndexMismatchError, match="releasable"):
        PgRegisterMatcher.load(pg_module_url, model_file, schema="no_release")


def test_schema_names_are_checked_before_use(pg_module_url: str, table: pa.Table) -> None:
    for bad in ("Register", "a-b", "x; DROP SCHEMA parity", "1st", "s" * 57):
        with pytest.raises(ValueError, match="schema"):
            check_schema(bad)
        with pytest.raises(ValueError, match="schema"):
            build_index(pg_module_url, table.slice(0, 5), PERSON_SPEC, schema=bad)
    assert check_schema("s" * 56) == "s" * 56


def _subject(frame: pd.DataFrame, i: int) -> dict[str, object]:
    row = frame.iloc[i]
    return {"family": row["family"], "given": row["given"], "birthdate": row["birthdate"],
            "address-postalcode": row["postcode"]}


def test_a_rebuild_is_seen_by_a_connected_matcher_and_a_stale_row_releases_nothing(
    pg_module_url: str, frame: pd.DataFrame, model_file: Path
) -> None:
    part = frame.iloc[:2000].reset_index(drop=True)
    build_index(pg_module_url, pa.Table.from_pandas(part, preserve_index=False), PERSON_SPEC,
                releasable=RELEASABLE_COLUMNS, schema="swap")
    pg = PgRegisterMatcher.load(pg_module_url, model_file, schema="swap")
    try:
        results = [pg.match(_subject(part, i)) for i in range(10)]  # prepared by now
        before = results[4]
        assert before.status == "matched" and before.row == 4
        # Rebuild with the rows reversed: row 4 is now somebody else.
        flipped = part.iloc[::-1].reset_index(drop=True)
        build_index(pg_module_url, pa.Table.from_pandas(flipped, preserve_index=False),
                    PERSON_SPEC, releasable=RELEASABLE_COLUMNS, schema="swap")
        with pytest.raises(IndexChangedError):
            pg.record(before, ("address-postalcode",))
        after = pg.match(_subject(part, 4))
        assert after.status == "matched" and after.record_id == before.record_id
        assert after.row == len(part) - 1 - 4
        assert pg.record(after, ("address-postalcode",)) == {
            "address-postalcode": part.iloc[4]["postcode"]}
    finally:
        pg.close()


class RebuildAfterMatch:
    """The real PostgreSQL matcher, with a real rebuild landing between a match and its
    record lookup (the race a rebuild can cause), once."""

    def __init__(self, pg: PgRegisterMatcher, url: str, table: pa.Table) -> None:
        self.pg, self.url, self.table, self.rebuilt = pg, url, table, False

    def match(self, subject: Any) -> MatchResult:
        return self.pg.match(subject)

    def record(self, result: MatchResult, permitted: Any) -> dict[str, Any]:
        if not self.rebuilt:
            self.rebuilt = True
            build_index(self.url, self.table, PERSON_SPEC, releasable=RELEASABLE_COLUMNS,
                        schema="race")
        return self.pg.record(result, permitted)


def test_the_service_rematches_when_a_rebuild_lands_between_match_and_record(
    pg_module_url: str, frame: pd.DataFrame, model_file: Path
) -> None:
    from safehaven.domain.request import Subject
    from safehaven.service.register_matcher import WorkspaceRegister

    part = frame.iloc[:1000].reset_index(drop=True)
    build_index(pg_module_url, pa.Table.from_pandas(part, preserve_index=False), PERSON_SPEC,
                releasable=RELEASABLE_COLUMNS, schema="race")
    flipped = pa.Table.from_pandas(part.iloc[::-1].reset_index(drop=True),
                                   preserve_index=False)
    pg = PgRegisterMatcher.load(pg_module_url, model_file, schema="race")
    try:
        racing = RebuildAfterMatch(pg, pg_module_url, flipped)
        values = {**_subject(part, 4), "birthdate": date.fromisoformat(part.iloc[4]["birthdate"])}
        found = WorkspaceRegister(racing).match(Subject.model_validate(values))
        assert racing.rebuilt
        assert found.status == "matched" and found.record_id == part.iloc[4]["record_id"]
        assert found.record["address-postalcode"] == part.iloc[4]["postcode"]
        assert found.record["nhs_number"] == part.iloc[4]["nhs_number"]
    finally:
        pg.close()


def test_a_failed_build_leaves_the_previous_index_serving(
    pg_module_url: str, frame: pd.DataFrame, model_file: Path
) -> None:
    part = frame.iloc[:500].reset_index(drop=True)
    good = pa.Table.from_pandas(part, preserve_index=False)
    build_index(pg_module_url, good, PERSON_SPEC, releasable=RELEASABLE_COLUMNS,
                schema="keep")
    pg = PgRegisterMatcher.load(pg_module_url, model_file, schema="keep")
    try:
        expected = pg.match(_subject(part, 3))
        assert expected.status == "matched"
        broken = part.copy()
        broken.loc[250, "record_id"] = None  # NOT NULL: the COPY fails half way
        bigger = pd.concat([broken, frame.iloc[500:900]], ignore_index=True)
        with pytest.raises(psycopg.errors.NotNullViolation):
            build_index(pg_module_url, pa.Table.from_pandas(bigger, preserve_index=False),
                        PERSON_SPEC, releasable=RELEASABLE_COLUMNS, schema="keep",
                        chunk_rows=200)
        # A second build while one holds the lock is refused, and changes nothing either.
        with psycopg.connect(conninfo(pg_module_url), autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (_lock_id("keep"),))
            with pytest.raises(RuntimeError, match="another build"):
                build_index(pg_module_url, good.slice(0, 50), PERSON_SPEC,
                            releasable=RELEASABLE_COLUMNS, schema="keep")
        assert_same(pg.match(_subject(part, 3)), expected)
        fresh = PgRegisterMatcher.load(pg_module_url, model_file, schema="keep")
        assert fresh.matcher.index.people == 500
        fresh.close()
        assert index_size(pg_module_url, "keep__build") == {}  # scratch schema dropped
    finally:
        pg.close()


# -- connections: threads, reconnects, timeouts -----------------------------------------


def test_concurrent_traces_from_many_threads_share_a_small_pool(
    pg_url: str, weights: Weights, memory_index: RegisterIndex,
    queries: list[dict[str, object]],
) -> None:
    memory = Matcher(memory_index, weights)
    pg = PgMatcher.connect(pg_url, PERSON_SPEC, weights, schema="parity", pool_min=1,
                           pool_max=3)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(pool.map(pg.match, queries[:240]))
        for q, b in zip(queries[:240], got, strict=True):
            assert_same(memory.match(q), b)
        assert pg.index.pool.get_stats()["pool_max"] == 3
    finally:
        pg.close()


def test_a_trace_survives_the_server_dropping_its_connections(
    pg_url: str, weights: Weights, queries: list[dict[str, object]]
) -> None:
    name = "safehaven-test-reconnect"
    pg = PgMatcher.connect(pg_url, PERSON_SPEC, weights, schema="parity", pool_min=2,
                           application_name=name)
    try:
        expected = [pg.match(q) for q in queries[:5]]
        with psycopg.connect(conninfo(pg_url), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
                "pg_stat_activity WHERE application_name = %s", (name,)).fetchone()
        assert killed is not None and killed[0] >= 1
        time.sleep(0.2)
        for q, e in zip(queries[:5], expected, strict=True):
            assert_same(pg.match(q), e)
    finally:
        pg.close()


def test_a_stuck_statement_times_out_instead_of_hanging(
    pg_url: str, weights: Weights, queries: list[dict[str, object]]
) -> None:
    pg = PgMatcher.connect(pg_url, PERSON_SPEC, weights, schema="parity",
                           statement_timeout_ms=300)
    try:
        pg.match(queries[0])
        with psycopg.connect(conninfo(pg_url)) as locker:
            locker.execute("LOCK TABLE parity.people IN ACCESS EXCLUSIVE MODE")
            start = time.perf_counter()
            with pytest.raises(psycopg.errors.QueryCanceled):
                pg.match(queries[0])
            assert time.perf_counter() - start < 3.0
            locker.rollback()
        pg.match(queries[0])  # and the pool is fine afterwards
    finally:
        pg.close()


# -- the CLI and the trace command -------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frame: pd.DataFrame,
              model: dict[str, Any]) -> Path:
    import shutil

    from safehaven.agreements import bundled_dir

    home = tmp_path / "home"
    monkeypatch.setenv("SAFEHAVEN_HOME", str(home))
    for var in ("SAFEHAVEN_DATABASE_URL", "SAFEHAVEN_AGREEMENTS",
                "SAFEHAVEN_REGISTER_INDEX_URL", "SAFEHAVEN_REGISTER_INDEX_SCHEMA"):
        monkeypatch.delenv(var, raising=False)
    src = tmp_path / "reg.parquet"
    # Import validates: keep the generated people (valid), with the twins at the end.
    reg = pd.concat([frame.iloc[:3000], frame.iloc[8000:8002]], ignore_index=True)
    reg["nhs_number"] = frame.iloc[:3002]["nhs_number"].to_numpy()
    write_register(reg, src)
    import_register(src, home / "register" / "register.parquet")
    save_model(model, home / "register" / "model.json")
    agreements = tmp_path / "agreements"
    shutil.copytree(bundled_dir(), agreements, ignore=shutil.ignore_patterns("*.py",
                                                                              "__pycache__"))
    police = agreements / "nhs-police-tracing.yaml"
    police.write_text(police.read_text().replace("review: one", "review: none"))
    return tmp_path


def test_register_index_cli_builds_in_postgres_and_reports_memory(
    workspace: Path, pg_module_url: str
) -> None:
    res = runner.invoke(app, ["register", "index", "--backend", "postgres", "--database-url",
                              pg_module_url, "--schema", "cli_ix", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["people"] == 3002 and out["schema"] == "cli_ix" and out["size_mib"] > 0
    sizes = index_size(pg_module_url, "cli_ix")
    assert {"people", "releasable", "meta", "large_blocks", "block_0"} <= set(sizes)
    res = runner.invoke(app, ["register", "index", "--backend", "memory", "--json"])
    assert res.exit_code == 0, res.output
    mem = json.loads(res.stdout)
    assert mem["backend"] == "memory" and mem["people"] == 3002 and mem["index_mib"] > 0
    res = runner.invoke(app, ["register", "index", "--backend", "postgres", "--database-url",
                              pg_module_url, "--schema", "Bad-Name", "--json"])
    assert res.exit_code != 0 and "schema" in res.output


def test_trace_discloses_the_same_with_the_postgres_index(
    workspace: Path, pg_module_url: str, frame: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from safehaven.matching.synth import request_envelope

    res = runner.invoke(app, ["register", "index", "--database-url", pg_module_url,
                              "--schema", "cli_trace"])
    assert res.exit_code == 0, res.output
    outputs: dict[str, list[dict[str, Any]]] = {}
    for backend in ("memory", "postgres"):
        if backend == "postgres":
            monkeypatch.setenv("SAFEHAVEN_REGISTER_INDEX_URL", pg_module_url)
            monkeypatch.setenv("SAFEHAVEN_REGISTER_INDEX_SCHEMA", "cli_trace")
        outputs[backend] = []
        for i in (5, 17, 3000, 2999, 123):  # 3000 is one of two twins: ambiguous
            req = request_envelope(f"t-{i}", _subject(frame, i if i < 3000 else 8000))
            req["fields"] = ["address", "address-postalcode", "gp_practice"]
            path = workspace / f"req-{i}.json"
            path.write_text(json.dumps(req))
            res = runner.invoke(app, ["trace", str(path), "--json", "--agreements",
                                      str(workspace / "agreements"), "--received",
                                      "2024-06-10"])
            assert res.exit_code == 0, res.output
            outputs[backend].append(json.loads(res.stdout))
    assert outputs["postgres"] == outputs["memory"]
    statuses = [o["status"] for o in outputs["postgres"]]
    assert statuses.count("matched") >= 3 and "ambiguous" in statuses
    assert all(o["released"] == {} for o in outputs["postgres"] if o["status"] != "matched")
    # An unreachable index fails the trace cleanly rather than matching in memory.
    monkeypatch.setenv("SAFEHAVEN_REGISTER_INDEX_URL",
                       "postgresql://postgres@127.0.0.1:1/nowhere")
    res = runner.invoke(app, ["trace", str(workspace / "req-5.json"), "--json",
                              "--agreements", str(workspace / "agreements"), "--received",
                              "2024-06-10"])
    assert res.exit_code != 0 and "register index" in res.output
