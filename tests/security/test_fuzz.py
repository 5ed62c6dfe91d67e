"""Property-based fuzzing of every parser that takes outside input, within a CI budget.

The agreement loader (YAML), the bulk CSV/NDJSON intake (through the real app), the
register import (CSV, helper of ``safehaven register import``) and the report filters
(CLI and HTML).  The property each time: a clean, named refusal or a result; never an
unhandled exception, never a 5xx.  Coverage-guided fuzzing of the same YAML/CSV parsers is
in ``fuzz/`` (atheris), run by hand; crashes found there get a regression test here.
"""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from safehaven.agreements import AgreementFileError, bundled_dir, parse_agreement
from safehaven.cli import app as cli_app
from safehaven.domain.statistics import Period
from safehaven.service.reports import ReportQuery, build_report, report_csv
from safehaven.store.db import make_engine, session_factory, transaction, upgrade
from safehaven.web.report_html import render_report_html
from tests.faults.harness import POLICE
from tests.security.test_hostile import HOSTILE

BUDGET = settings(max_examples=150, deadline=None,
                  suppress_health_check=list(HealthCheck))
AGREEMENT = (bundled_dir() / "nhs-police-tracing.yaml").read_text("utf-8")
hostile = st.sampled_from(HOSTILE) | st.text(max_size=60)

# --- agreement loader ------------------------------------------------------------------


def _mutate(text: str, op: str, at: float, insert: str) -> str:
    lines = text.splitlines()
    i = int(at * len(lines)) % max(len(lines), 1)
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[i])
    elif op == "insert":
        lines.insert(i, insert)
    elif op == "replace-value" and ":" in lines[i]:
        lines[i] = lines[i].split(":", 1)[0] + ": " + json.dumps(insert)
    elif op == "truncate":
        return text[: int(at * len(text))]
    return "\n".join(lines)


@BUDGET
@given(op=st.sampled_from(["delete", "duplicate", "insert", "replace-value", "truncate"]),
       at=st.floats(0, 1), insert=hostile)
def test_agreement_loader_refuses_by_name(op: str, at: float, insert: str) -> None:
    try:
        parse_agreement(_mutate(AGREEMENT, op, at, insert), Path("fuzz.yaml"))
    except AgreementFileError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)


@pytest.mark.parametrize("doc", [
    "!!python/object/apply:os.system ['echo pwned']",
    "id: !!python/name:os.system ''",
    "a: &a [1]\nb: *c",
    "\x00\x01\x02",
    "id: x\nid: y",
    "[1, 2",
    "? ?\n",  # atheris crash-1e3bd4d7: a mapping as a key was an unhandled TypeError
    "? [a]\n: b\n",
])
def test_agreement_loader_never_constructs_objects(doc: str) -> None:
    with pytest.raises(AgreementFileError):
        parse_agreement(doc, Path("evil.yaml"))


def test_agreement_alias_bomb_is_cheap() -> None:
    """Billion laughs: 9^9 leaves by alias.  Refused quickly, not expanded."""
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    for field in ("id", "legal_bases", "purposes", "parties", "fields", "status_history"):
        start = time.monotonic()
        with pytest.raises(AgreementFileError):
            parse_agreement("\n".join([*lines, f"{field}: *a8"]), Path("bomb.yaml"))
        assert time.monotonic() - start < 2.0, field


# --- bulk intake through the app -------------------------------------------------------


@pytest.fixture(scope="module")
def bulk_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from datetime import UTC, datetime

    from safehaven.agreements import load_dir
    from safehaven.api.app import create_app
    from safehaven.service import accounts
    from tests.api.conftest import make_config

    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('bulk')}/s.db")
    upgrade(engine)
    agreements = load_dir()
    with transaction(session_factory(engine)) as s:
        token, _ = accounts.create_agency_token(
            s, agreements, "metropolitan-police", scope=None, label="f", at=datetime.now(UTC))
    with pytest.MonkeyPatch.context() as mp:  # fuzzing is not an agency: no rate limit
        mp.setenv("SAFEHAVEN_AGENCY_RATE", "1e9")
        mp.setenv("SAFEHAVEN_AGENCY_BURST", "1e9")
        app = create_app(make_config(engine, agreements))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c
    engine.dispose()


CSV_HEADER = "request_id,agreement,purpose,made_on,fields,subject.family,subject.birthdate"
cells = st.one_of(hostile, st.sampled_from(['"', '""', '"a,b"', "\r", "\n", ";", ",,,"]))


@BUDGET
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=9), max_size=4),
       header=st.sampled_from([CSV_HEADER, CSV_HEADER + ",nope", "", "\ufeff" + CSV_HEADER]))
def test_bulk_csv_never_5xx(bulk_client: Any, rows: list[list[str]], header: str) -> None:
    text = header + "\n" + "\n".join(",".join(r) for r in rows)
    r = bulk_client.post("/v1/requests/bulk", content=text.encode("utf-8", "surrogatepass"),
                         headers={"Content-Type": "text/csv"})
    assert r.status_code in (200, 413, 422), r.text
    if r.status_code == 200:
        lines = [json.loads(x) for x in r.text.splitlines()]
        assert "summary" in lines[-1]
        assert all(x["status"] < 500 for x in lines[:-1])


@BUDGET
@given(lines=st.lists(st.one_of(
    st.builds(lambda k, v: json.dumps({**POLICE, k: v}),
              st.sampled_from(["subject", "grounds", "fields", "made_on", "request_id"]),
              st.one_of(hostile, st.integers(), st.none(), st.lists(hostile, max_size=3))),
    hostile, st.binary(max_size=40).map(lambda b: b.decode("latin-1"))), max_size=5))
def test_bulk_ndjson_never_5xx(bulk_client: Any, lines: list[str]) -> None:
    body = "\n".join(lines).encode("utf-8", "surrogatepass")
    r = bulk_client.post("/v1/requests/bulk", content=body,
                         headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code in (200, 413, 422), r.text
    if r.status_code == 200:
        assert all(json.loads(x).get("status", 200) < 500 for x in r.text.splitlines())


# --- register import -------------------------------------------------------------------

REGISTER_HEADER = "record_id,nhs_number,family,birthdate,address_line1,postcode"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.lists(cells, min_size=0, max_size=8), min_size=0, max_size=4),
       header=st.sampled_from([REGISTER_HEADER, REGISTER_HEADER + ",diagnosis", "x,y",
                               REGISTER_HEADER.replace("family", "family,family")]))
def test_register_import_refuses_cleanly_and_keeps_the_old_register(
    tmp_path_factory: pytest.TempPathFactory, rows: list[list[str]], header: str
) -> None:
    from safehaven.matching.register import RegisterImportError, import_register

    d = tmp_path_factory.mktemp("reg")
    src = d / "in.csv"
    src.write_text(header + "\n" + "\n".join(",".join(r) for r in rows), "utf-8",
                   errors="surrogatepass")
    dest = d / "register.parquet"
    dest.write_bytes(b"previous register")
    try:
        import_register(src, dest)
    except (RegisterImportError, ValueError, OSError):
        assert dest.read_bytes() == b"previous register"  # all or nothing
    assert not list(d.glob(".*.tmp"))


# --- report filters --------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('rep')}/s.db")
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


@BUDGET
@given(agreement=st.none() | hostile, period=st.sampled_from(list(Period)),
       start=st.dates(date(1, 1, 1), date(9999, 12, 31)),
       end=st.dates(date(1, 1, 1), date(9999, 12, 31)))
def test_report_filters_never_crash_and_html_is_escaped(
    report_store: Any, agreement: str | None, period: Period, start: date, end: date
) -> None:
    with transaction(report_store) as s:
        report = build_report(s, ReportQuery(agreement=agreement, start=start, end=end,
                                             period=period))
    page = render_report_html(report)
    report_csv(report)
    if agreement and "<" in agreement:
        assert agreement not in page


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=st.lists(st.sampled_from(["--agreement", "--from", "--to", "--period",
                                      "--format"]) | hostile, max_size=6))
def test_report_cli_fails_cleanly(tmp_path_factory: pytest.TempPathFactory,
                                  args: list[str]) -> None:
    home = tmp_path_factory.mktemp("cli")
    res = CliRunner().invoke(cli_app, ["report", *args],
                             env={"SAFEHAVEN_HOME": str(home), "SAFEHAVEN_DATABASE_URL": ""})
    assert res.exit_code in (0, 2), (args, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit)
