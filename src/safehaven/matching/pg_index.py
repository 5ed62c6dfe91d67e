"""The online matcher's candidate index held in PostgreSQL instead of process memory.

Why: the in-memory :class:`~safehaven.matching.index.RegisterIndex` costs ~106 MiB per
million people (plus the releasable columns), so every API worker carries the whole
register.  A deployment whose register is larger than a worker's memory, or that runs many
small workers, can keep the index in PostgreSQL: each worker then holds only the model and a
few pooled connections, and PostgreSQL's buffer cache and the OS page cache hold the hot
pages once for every worker on the host (and on read replicas, since every table is logged).

What is stored (one schema, default ``register_index``, beside or apart from the store):

* ``people (row, record_id, <base columns>)``: per person, the *prepared* comparison
  values: exactly the strings the in-memory index holds as categories (normalised,
  ASCII-replaced), so the scorer sees the same values from either backend;
* ``block_<i> (key, row)``, one per blocking rule in spec order, btree on ``key``
  ``INCLUDE (row)`` (index-only scans): the rule's columns joined into one text key
  (:func:`query_key`: parts escaped, so no two different value tuples share a key);
* ``large_blocks (rule, key, n)``: the size of every block larger than ``size_floor`` rows,
  so a trace can skip blocks over the cap without reading them (smaller blocks are under any
  cap allowed, see :data:`SIZE_FLOOR`);
* ``releasable (row, <releasable columns>)``: read only for a unique match, and only the
  allow-listed columns (``register.RELEASABLE``; a clinical column is refused at build);
* ``meta``: the spec the index was built for (structure and a behavioural fingerprint of
  its normalisation), checked on connect, so an index built for a different model spec is
  refused rather than silently matching differently.

A trace computes the request's blocking keys as the in-memory index does, fetches every
candidate with its comparison values in **one** statement (one arm per rule, ``UNION
ALL``, the block-size cap applied in SQL), and scores them with the same
:class:`~safehaven.matching.scorer.Scorer` code, candidates in ascending row order, so the
result is identical to the in-memory matcher's (``tests/matching/test_pg_index.py``).

The index is built with ``COPY`` into a scratch schema and swapped in with one transaction
(drop old, rename new), so workers never see a half-built index, and a failed build drops
its scratch schema and leaves the previous index serving.  A connected matcher keeps
working across a swap: every statement names its tables, and PostgreSQL re-resolves the
names (and re-plans prepared statements) once the swap commits.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from safehaven.domain.fields import CLINICAL_FIELDS
from safehaven.matching.index import Encoded, _arrow_strings, _encode_values, encode_arrow
from safehaven.matching.scorer import MatchResult, Policy, Scorer, Weights
from safehaven.matching.spec import ModelSpec, Scalar

#: The environment variable that points the API and ``safehaven trace`` at a PostgreSQL
#: candidate index (a ``postgresql://`` URL); unset, they build the index in memory.
URL_ENV = "SAFEHAVEN_REGISTER_INDEX_URL"
#: The schema holding the index; the build uses ``<schema>__build`` until the swap.
DEFAULT_SCHEMA = "register_index"
#: Blocks larger than this are listed in ``large_blocks`` with their size.  Any block not
#: listed is at most this big, hence under every cap ≥ it; 100 keeps the table tiny (a few
#: thousand rows at 10 M people) while any sensible cap (the default is 5,000) works.
SIZE_FLOOR = 100
#: Rows written per COPY chunk: bounds the build's extra memory to a few hundred MB.
CHUNK_ROWS = 1_000_000
#: A trace statement running longer than this is cancelled by the server and the trace
#: fails (nothing is disclosed; the caller may retry).  Traces take milliseconds; this only
#: bounds a stuck or overloaded server, so one slow request cannot hold a worker thread.
STATEMENT_TIMEOUT_MS = 2_000
#: Seconds to wait for a connection (new, or free in the pool) before failing the trace.
CONNECT_TIMEOUT_S = 5
#: Pooled connections per process: a worker runs a few traces at once (one per thread of
#: the API's pool that is matching); more waiting threads queue for a connection.
POOL_MIN, POOL_MAX = 2, 8
#: ``application_name`` of the build's session (find it in ``pg_stat_activity``).
BUILD_APPLICATION_NAME = "safehaven-register-index-build"
_SEP = "\x1f"  # ASCII unit separator between a key's parts (escaped inside parts)
_FORMAT = 2  # bump when the table layout changes; a mismatch asks for a rebuild
#: ``<schema>__build`` must stay within PostgreSQL's 63-byte identifiers (a longer name is
#: silently truncated, and a truncated scratch name could equal the live schema's).
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,55}")
#: Inputs run through the spec's normalisation and derived functions for the fingerprint.
_PROBES: tuple[str, ...] = (
    "", " ", "x", "Zoë  O'Neil-Smith", "  mary-jane  ", "William", "BILL", "Kate", "jo",
    "1990-12-03", "1990-03-12", "2004-05-17T10:00", "1990-13-40", "sw1a1aa", "LS6 2QT",
    "ls62qt", "943 476 5919", "9434765919", "M", "male", "Female", "unknown", "a\x1fb",
    "a\\b",
)


class IndexMismatchError(RuntimeError):
    """The stored index was built for another spec or layout (or is missing): rebuild it."""


class IndexChangedError(RuntimeError):
    """The index was rebuilt between a match and its record lookup: retry the trace."""


def conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (``postgresql+psycopg://`` → ``postgresql://``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return f"postgresql://{rest}"


def check_schema(schema: str) -> str:
    """``schema`` if it is a plain lower-case identifier short enough for its scratch twin."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema {schema!r}: use lower-case letters, digits and _ "
                         "(at most 56 characters, not starting with a digit)")
    return schema


def _escape(part: str) -> str:
    # Backslash first, so the escapes added next cannot be confused with data.  NUL is
    # escaped because PostgreSQL text cannot hold it (a request may carry one).
    return part.replace("\\", "\\\\").replace(_SEP, "\\u").replace("\x00", "\\0")


def _ascii(value: str) -> str:
    # The in-memory index stores categories as ASCII bytes with "replace"; so do we.
    return value.encode("ascii", "replace").decode("ascii")


def query_key(parts: Sequence[Scalar]) -> str | None:
    """The text key of one blocking rule for prepared request values (None: no key).

    A rule with any null column generates no candidates, exactly as a missing code does
    in the in-memory index.  Parts are ASCII-replaced as the in-memory categories are, then
    escaped and joined, so the key is injective in the (replaced) parts.
    """
    if any(p is None for p in parts):
        return None
    return _SEP.join(_escape(_ascii(p)) for p in parts if p is not None)


def _arrow_key(parts: Sequence[pa.Array]) -> pa.Array:
    """The same key as :func:`query_key`, vectorised over register rows (null if any is)."""
    escaped = []
    for p in parts:
        for old, new in (("\\", "\\\\"), (_SEP, "\\u"), ("\x00", "\\0")):
            p = pc.replace_substring(p, old, new)
        escaped.append(p)
    if len(escaped) == 1:
        return escaped[0]
    return pc.binary_join_element_wise(*escaped, _SEP, null_handling="emit_null")


def _table_names(spec: ModelSpec) -> list[str]:
    return [f"block_{i}" for i in range(len(spec.blocking))]


def spec_fingerprint(spec: ModelSpec) -> str:
    """A digest of what the spec *does* to values, not only of its column names.

    The stored values and keys were produced by the spec's normalisation and derived
    functions; if those change (a new rule for names, postcodes, dates), an index built
    with the old code would silently match differently.  Running every function over a
    fixed set of awkward inputs catches such a change without trying to hash code.
    """
    out: dict[str, list[Scalar]] = {}
    for col in spec.base:
        fn = spec.normalise.get(col)
        out[col] = [fn(p) if fn is not None else p for p in _PROBES]
    for name, d in spec.derived.items():
        out[name] = [d.fn(v) for v in out[d.source]]
    doc = json.dumps([spec.name, list(spec.base), [list(k) for k in spec.blocking], out],
                     sort_keys=True)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:32]


def _meta(spec: ModelSpec, size_floor: int, people: int, releasable: Sequence[str],
          register_sha256: str | None = None) -> dict[str, Any]:
    return {"format": _FORMAT, "spec": spec.name, "base": list(spec.base),
            "blocking": [list(k) for k in spec.blocking],
            "fingerprint": spec_fingerprint(spec), "size_floor": size_floor,
            "people": people, "releasable": list(releasable),
            "register_sha256": register_sha256,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds")}


@dataclass
class BuildReport:
    """What a build did and how long each step took (the benchmark records it)."""

    people: int
    schema: str
    seconds: float
    steps: dict[str, float] = field(default_factory=dict)
    large_blocks: int = 0


def _copy_csv(cur: psycopg.Cursor[Any], table: sql.Composable, columns: Sequence[str],
              data: pa.Table) -> None:
    # Arrow writes the CSV in C (every string quoted, null as an unquoted empty field, so
    # COPY keeps "" and NULL apart); one COPY per chunk and table.
    buf = io.BytesIO()
    pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False))
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    with cur.copy(stmt) as copy:
        copy.write(buf.getbuffer())


def _lock_id(schema: str) -> int:
    """A stable signed 64-bit advisory-lock id for builds of ``schema``."""
    digest = hashlib.sha256(f"safehaven.register_index:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def build_index(url: str, table: pa.Table, spec: ModelSpec, *, id_column: str = "record_id",
                releasable: Sequence[str] = (), schema: str = DEFAULT_SCHEMA,
                size_floor: int = SIZE_FLOOR, chunk_rows: int = CHUNK_ROWS,
                progress: Callable[[str], None] | None = None,
                register_sha256: str | None = None) -> BuildReport:
    """Load ``table`` (the register, as Arrow) into a fresh index and swap it in.

    Row numbers are positions in ``table``, as in the in-memory index, so both backends
    name the same candidate by the same row and break ties the same way.  Two builds of
    one schema cannot interleave (an advisory lock; the second fails at once), and any
    failure drops the scratch schema and leaves the serving index as it was.
    """
    check_schema(schema)
    clinical = sorted(set(releasable) & CLINICAL_FIELDS)
    if clinical:
        raise ValueError(f"releasable: clinical columns can never be released: {clinical}")
    say = progress or (lambda _msg: None)
    start = time.perf_counter()
    steps: dict[str, float] = {}
    n = table.num_rows
    build = f"{schema}__build"
    s = sql.Identifier(build)

    def step(name: str, since: float) -> float:
        now = time.perf_counter()
        steps[name] = round(now - since, 2)
        say(f"{name}: {steps[name]:.1f}s")
        return now

    # Encode once (int32 codes + sorted categories per column, derived per category), then
    # materialise strings chunk by chunk: the whole register as Python strings would not fit.
    t = time.perf_counter()
    base: dict[str, Encoded] = {c: encode_arrow(table.column(c), spec.normalise.get(c))
                                for c in spec.base}
    derived: dict[str, Encoded] = {}
    for name, d in spec.derived.items():
        src = base[d.source]
        cats, per_cat = _encode_values([d.fn(c.decode("ascii")) for c in src.cats])
        codes = np.full(n, -1, dtype=np.int32)
        ok = src.codes >= 0
        codes[ok] = per_cat[src.codes[ok]]
        derived[name] = Encoded(cats, codes)
    columns = {**base, **derived}
    ids = pc.cast(table.column(id_column).combine_chunks(), pa.string())
    t = step("encode", t)

    with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                         application_name=BUILD_APPLICATION_NAME) as conn:
        cur = conn.cursor()
        locked = cur.execute("SELECT pg_try_advisory_lock(%s)", (_lock_id(schema),)).fetchone()
        if not locked or not locked[0]:
            raise RuntimeError(f"another build of register index {schema!r} is running")
        # Per session only: room for the btree sorts and the block-size aggregation.
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SET work_mem = '256MB'")
        try:
            _load(cur, s, spec, table, columns, ids, releasable, chunk_rows, say)
            t = step("copy", t)
            t = _index(cur, s, spec, releasable, step, t)
            cur.execute(sql.SQL("CREATE TABLE {}.large_blocks (rule int2 NOT NULL, key text "
                                "NOT NULL, n int4 NOT NULL, PRIMARY KEY (rule, key))").format(s))
            for i, tname in enumerate(_table_names(spec)):
                cur.execute(sql.SQL("INSERT INTO {}.large_blocks SELECT {}, key, count(*) "
                                    "FROM {}.{} GROUP BY key HAVING count(*) > {}").format(
                    s, sql.Literal(i), s, sql.Identifier(tname), sql.Literal(size_floor)))
            found = cur.execute(sql.SQL("SELECT count(*) FROM {}.large_blocks").format(s)
                                ).fetchone()
            large = int(found[0]) if found else 0
            cur.execute(sql.SQL("INSERT INTO {}.meta VALUES ('index', %s)").format(s),
                        (json.dumps(_meta(spec, size_floor, n, releasable,
                                          register_sha256)),))
            t = step("block_sizes", t)
            # Statistics for the planner, and the visibility map that lets the block
            # lookups be index-only scans.
            for tname in ["people", *(["releasable"] if releasable else []),
                          *_table_names(spec), "large_blocks", "meta"]:
                cur.execute(sql.SQL("VACUUM (ANALYZE) {}.{}").format(s, sql.Identifier(tname)))
            t = step("vacuum", t)
            with conn.transaction():
                # Waits for running traces (milliseconds), not for ever.
                cur.execute("SET LOCAL lock_timeout = '60s'")
                cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)))
                cur.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    s, sql.Identifier(schema)))
            step("swap", t)
        except BaseException:
            _drop_quietly(conn, s)
            raise
    return BuildReport(n, schema, round(time.perf_counter() - start, 2), steps, large)


def _drop_quietly(conn: psycopg.Connection[Any], s: sql.Identifier) -> None:
    """Drop a failed build's scratch schema, still holding the build lock so no other build
    can have started on it.  Only from an idle connection (after an error the server has
    finished the statement); if the build was interrupted mid-statement the schema is
    left, and the next build drops it first."""
    try:
        if not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    except psycopg.Error:
        pass


def _load(cur: psycopg.Cursor[Any], s: sql.Identifier, spec: ModelSpec, table: pa.Table,
          columns: Mapping[str, Encoded], ids: pa.Array, releasable: Sequence[str],
          chunk_rows: int, say: Callable[[str], None]) -> None:
    """Create the scratch schema's tables and COPY the register into them, chunk by chunk."""
    n = table.num_rows
    cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(s))
    cur.execute(sql.SQL("CREATE TABLE {}.meta (key text PRIMARY KEY, value jsonb NOT NULL)"
                        ).format(s))
    people_cols = ["row", "record_id", *spec.base]
    cur.execute(sql.SQL("CREATE TABLE {}.people (row int4 NOT NULL, record_id text NOT NULL"
                        ", {})").format(s, sql.SQL(", ").join(
                            sql.SQL("{} text").format(sql.Identifier(c)) for c in spec.base)))
    if releasable:
        cur.execute(sql.SQL("CREATE TABLE {}.releasable (row int4 NOT NULL, {})").format(
            s, sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c))
                                  for c in releasable)))
    for tname in _table_names(spec):
        cur.execute(sql.SQL("CREATE TABLE {}.{} (key text NOT NULL, row int4 NOT NULL)"
                            ).format(s, sql.Identifier(tname)))
    for lo in range(0, n, chunk_rows):
        hi = min(n, lo + chunk_rows)
        rows = pa.array(np.arange(lo, hi, dtype=np.int32))
        strings = {c: _arrow_strings(e.cats, e.codes[lo:hi]) for c, e in columns.items()}
        _copy_csv(cur, sql.SQL("{}.people").format(s), people_cols, pa.table(
            [rows, ids.slice(lo, hi - lo), *(strings[c] for c in spec.base)],
            names=people_cols))
        if releasable:
            part = table.slice(lo, hi - lo)
            _copy_csv(cur, sql.SQL("{}.releasable").format(s), ["row", *releasable],
                      pa.table([rows, *(pc.cast(part.column(c), pa.string())
                                        for c in releasable)], names=["row", *releasable]))
        for tname, key_cols in zip(_table_names(spec), spec.blocking, strict=True):
            keys = _arrow_key([strings[c] for c in key_cols])
            valid = pc.is_valid(keys)
            _copy_csv(cur, sql.SQL("{}.{}").format(s, sql.Identifier(tname)), ["key", "row"],
                      pa.table([keys.filter(valid), rows.filter(valid)], names=["key", "row"]))
        say(f"copied {hi:,} / {n:,}")


def _index(cur: psycopg.Cursor[Any], s: sql.Identifier, spec: ModelSpec,
           releasable: Sequence[str], step: Callable[[str, float], float], t: float) -> float:
    """Primary keys and the covering block indexes, built once after the load (faster than
    maintaining them row by row during COPY)."""
    cur.execute(sql.SQL("ALTER TABLE {}.people ADD PRIMARY KEY (row)").format(s))
    if releasable:
        cur.execute(sql.SQL("ALTER TABLE {}.releasable ADD PRIMARY KEY (row)").format(s))
    t = step("people_keys", t)
    for tname in _table_names(spec):
        cur.execute(sql.SQL("CREATE INDEX {} ON {}.{} (key) INCLUDE (row)").format(
            sql.Identifier(f"{tname}_key"), s, sql.Identifier(tname)))
    return step("block_indexes", t)


def index_size(url: str, schema: str = DEFAULT_SCHEMA) -> dict[str, int]:
    """Bytes on disk per table of the index, heap + indexes + TOAST (for sizing)."""
    with psycopg.connect(conninfo(url), autocommit=True,
                         connect_timeout=CONNECT_TIMEOUT_S) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
            (check_schema(schema),)).fetchall()
    return {str(name): int(size) for name, size in rows}


def drop_index(url: str, schema: str = DEFAULT_SCHEMA) -> None:
    with psycopg.connect(conninfo(url), autocommit=True,
                         connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(check_schema(schema))))


@dataclass(frozen=True)
class Candidates:
    """One trace's candidates in ascending row order, encoded per base column."""

    rows: npt.NDArray[np.int32]
    record_ids: list[str]
    codes: dict[str, npt.NDArray[np.int32]]
    cats: dict[str, npt.NDArray[np.bytes_]]


class PgCandidateIndex:
    """Reads candidates from an index built by :func:`build_index`.

    Thread-safe: the API calls the matcher from a thread pool, and a psycopg connection
    runs one statement at a time, so statements borrow a connection from a
    ``psycopg_pool`` pool (not one per thread: the API's worker threads come and go, and a
    fresh backend per new thread would cost a connection set-up on the trace path).
    Connections are autocommit (no transaction is left open to hold back a swap or
    vacuum), read-only, and carry a statement timeout.  A statement that fails because its
    connection died (a server restart, a failover) is retried once after the pool has
    tested its idle connections; a timeout is not retried.
    """

    def __init__(self, url: str, spec: ModelSpec, columns: Sequence[str],
                 schema: str = DEFAULT_SCHEMA, *,
                 statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
                 pool_min: int = POOL_MIN, pool_max: int = POOL_MAX,
                 application_name: str = "safehaven-register-index") -> None:
        self.url = conninfo(url)
        self.spec = spec
        self.schema = check_schema(schema)
        self.columns = tuple(columns)
        self.statement_timeout_ms = statement_timeout_ms
        # Read the metadata on a plain connection first: a wrong URL, password or database
        # fails here with libpq's own message rather than as a pool timeout.
        with psycopg.connect(self.url, autocommit=True,
                             connect_timeout=CONNECT_TIMEOUT_S) as conn:
            meta = self._read_meta(conn)
        expected = _meta(spec, SIZE_FLOOR, 0, ())
        for key in ("format", "spec", "base", "blocking", "fingerprint"):
            if meta.get(key) != expected[key]:
                raise IndexMismatchError(
                    f"PostgreSQL register index {schema!r} was built for another {key} "
                    f"({meta.get(key)!r}, this code has {expected[key]!r}); rebuild it "
                    "with `safehaven register index --backend postgres`")
        self.size_floor = int(meta["size_floor"])
        self.people = int(meta["people"])
        self.built_at = str(meta.get("built_at", ""))
        self.releasable = tuple(str(c) for c in meta.get("releasable", []))
        s = sql.Identifier(schema)
        arms = [sql.SQL(
            "SELECT b.row FROM {s}.{t} b WHERE b.key = {k} AND NOT EXISTS "
            "(SELECT 1 FROM {s}.large_blocks l WHERE l.rule = {i} AND l.key = {k} "
            "AND l.n > {cap})").format(s=s, t=sql.Identifier(t), k=sql.Placeholder(f"k{i}"),
                                        i=sql.Literal(i), cap=sql.Placeholder("cap"))
            for i, t in enumerate(_table_names(spec))]
        self._candidates_sql = sql.SQL(
            "SELECT p.row, p.record_id, {cols} FROM {s}.people p WHERE p.row IN ({arms}) "
            "ORDER BY p.row").format(
            cols=sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c))
                                    for c in self.columns),
            s=s, arms=sql.SQL(" UNION ALL ").join(arms))
        # The record is read by row *and* record id: if the index was rebuilt since the
        # match, the row may now be someone else, and this finds nothing instead.
        self._record_sql = sql.SQL(
            "SELECT {cols} FROM {s}.releasable r JOIN {s}.people p ON p.row = r.row "
            "WHERE r.row = %s AND p.record_id = %s").format(
            cols=sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c))
                                    for c in self.releasable or ("row",)), s=s)
        self._exists_sql = sql.SQL("SELECT 1 FROM {s}.people WHERE row = %s AND record_id = %s"
                                   ).format(s=s)
        self._register_sql = sql.SQL(
            "SELECT value->>'register_sha256' FROM {s}.meta WHERE key = 'index'").format(s=s)
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.url, min_size=pool_min, max_size=pool_max, open=True,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S,
                    "application_name": application_name},
            configure=self._configure, timeout=CONNECT_TIMEOUT_S,
            name=f"register-index-{schema}")

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT set_config('statement_timeout', %s, false), "
                     "set_config('default_transaction_read_only', 'on', false)",
                     (f"{self.statement_timeout_ms}ms",))

    def _read_meta(self, conn: psycopg.Connection[Any]) -> dict[str, Any]:
        try:
            rows = conn.execute(sql.SQL("SELECT value FROM {}.meta WHERE key = 'index'").format(
                sql.Identifier(self.schema))).fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise IndexMismatchError(
                f"no PostgreSQL register index in schema {self.schema!r}: build it with "
                "`safehaven register index --backend postgres`") from exc
        if not rows:
            raise IndexMismatchError(f"register index {self.schema!r} has no metadata")
        return dict(rows[0][0])

    def _execute(self, query: sql.Composed, params: Any) -> list[tuple[Any, ...]]:
        """Run one read; on a dead connection, let the pool replace its dead ones, retry once."""
        for attempt in (0, 1):
            try:
                with self.pool.connection() as conn:
                    return conn.execute(query, params).fetchall()
            except psycopg.OperationalError as exc:
                if attempt or isinstance(exc, (psycopg.errors.QueryCanceled, PoolTimeout,
                                               PoolClosed)):
                    raise
                self.pool.check()
        raise AssertionError("unreachable")

    def keys(self, prepared: Mapping[str, Scalar]) -> list[str | None]:
        return [query_key([prepared.get(c) for c in key]) for key in self.spec.blocking]

    def check_cap(self, cap: int) -> None:
        if cap < self.size_floor:
            raise ValueError(f"block cap {cap} is below the index's size floor "
                             f"{self.size_floor}: rebuild with a smaller floor")

    def candidates(self, prepared: Mapping[str, Scalar], *, cap: int) -> Candidates:
        """Every row sharing a blocking key with the request, blocks over ``cap`` skipped."""
        self.check_cap(cap)
        params: dict[str, Any] = {"cap": cap}
        keys = self.keys(prepared)
        for i, key in enumerate(keys):
            params[f"k{i}"] = key
        if all(k is None for k in keys):
            fetched: list[tuple[Any, ...]] = []
        else:
            fetched = self._execute(self._candidates_sql, params)
        rows = np.fromiter((r[0] for r in fetched), dtype=np.int32, count=len(fetched))
        codes: dict[str, npt.NDArray[np.int32]] = {}
        cats: dict[str, npt.NDArray[np.bytes_]] = {}
        for j, col in enumerate(self.columns, start=2):
            cats[col], codes[col] = _encode_values([r[j] for r in fetched])
        return Candidates(rows, [str(r[1]) for r in fetched], codes, cats)

    def releasable_row(self, row: int, record_id: str) -> dict[str, Any]:
        """The releasable columns of ``row``, which must still be ``record_id``.

        Raises :class:`IndexChangedError` if it is not (the index was swapped since the
        match), so a stale row number can never release another person's record.
        """
        if not self.releasable:
            if not self._execute(self._exists_sql, (row, record_id)):
                raise IndexChangedError("register index changed since the match; retry")
            return {}
        found = self._execute(self._record_sql, (row, record_id))
        if not found:
            raise IndexChangedError("register index changed since the match; retry")
        return dict(zip(self.releasable, found[0], strict=True))

    def register_sha256(self) -> str | None:
        """The digest of the register file the index *now* in place was built from
        (``register index`` records it; a swap since start is seen), if recorded."""
        found = self._execute(self._register_sql, ())
        return str(found[0][0]) if found and found[0][0] else None

    def close(self) -> None:
        self.pool.close()


class PgMatcher(Scorer):
    """The PostgreSQL backend: candidates from :class:`PgCandidateIndex`, scored here."""

    def __init__(self, index: PgCandidateIndex, weights: Weights, policy: Policy | None = None):
        super().__init__(index.spec, weights, policy)
        self.index = index
        index.check_cap(self.policy.block_cap)  # refuse at start, not on the first trace

    @classmethod
    def connect(cls, url: str, spec: ModelSpec, weights: Weights, policy: Policy | None = None,
                schema: str = DEFAULT_SCHEMA, **options: Any) -> PgMatcher:
        """``options`` go to :class:`PgCandidateIndex` (timeout, pool sizes)."""
        scorer = Scorer(spec, weights, policy)
        index = PgCandidateIndex(url, spec, scorer.source_columns, schema, **options)
        try:
            return cls(index, weights, policy)
        except BaseException:
            index.close()  # its pool's threads and connections would outlive the error
            raise

    def match_prepared(self, prepared: Mapping[str, Scalar]) -> MatchResult:
        found = self.index.candidates(prepared, cap=self.policy.block_cap)
        weights = self.score_encoded(prepared, len(found.rows), found.codes, found.cats)
        return self.outcome(found.rows, weights, found.record_ids.__getitem__)

    def close(self) -> None:
        self.index.close()
