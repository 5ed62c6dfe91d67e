"""No clinical field can leave: not through the allow-list, the matcher, trace or link."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from safehaven.agreements import bundled_dir
from safehaven.cli import app
from safehaven.domain.fields import CLINICAL_FIELDS, FIELDS
from safehaven.matching.model import save_model
from safehaven.matching.online import RegisterMatcher
from safehaven.matching.register import CLINICAL, RELEASABLE, import_register, released_fields
from safehaven.matching.synth import request_envelope, write_register

runner = CliRunner()
SECRET = {"diagnosis": "SECRET-DIAGNOSIS", "medication": "SECRET-MEDICATION",
          "hiv_status": "SECRET-HIV", "clinical_notes": "SECRET-NOTES",
          "pregnancy": "SECRET-PREGNANCY", "appointments": "SECRET-APPOINTMENTS"}


def test_allow_list_has_no_clinical_field() -> None:
    assert set(CLINICAL) == CLINICAL_FIELDS
    assert not set(RELEASABLE) & CLINICAL_FIELDS
    assert not {c for cols in RELEASABLE.values() for c in cols} & CLINICAL_FIELDS


def test_released_fields_never_carries_clinical_values() -> None:
    row = {"family": "Smith", "postcode": "SE1 7PB", "address_line1": "1 High St", **SECRET}
    out = released_fields(row, list(FIELDS))  # even if every field were permitted
    assert not set(out) & CLINICAL_FIELDS
    assert "SECRET" not in json.dumps(out)
    assert out["address-postalcode"] == "SE1 7PB"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, register: pd.DataFrame,
              model: dict[str, Any]) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SAFEHAVEN_HOME", str(home))
    monkeypatch.delenv("SAFEHAVEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("SAFEHAVEN_AGREEMENTS", raising=False)
    reg = register.head(3000).copy()
    for col, value in SECRET.items():
        reg[col] = value
    src = tmp_path / "reg.parquet"
    write_register(reg, src)
    import_register(src, home / "register" / "register.parquet")
    save_model(model, home / "register" / "model.json")
    # An agreement identical to the bundled police one but with no review step, so that
    # trace releases fields straight away.
    agreements = tmp_path / "agreements"
    shutil.copytree(bundled_dir(), agreements, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    police = agreements / "nhs-police-tracing.yaml"
    police.write_text(police.read_text().replace("review: one", "review: none"))
    return tmp_path


def _request(register: pd.DataFrame, fields: list[str]) -> dict[str, Any]:
    p = register.iloc[5]
    subject = {"family": p["family"], "given": p["given"], "birthdate": p["birthdate"],
               "address-postalcode": p["postcode"]}
    req = request_envelope("trace-1", subject)
    req["fields"] = fields
    return req


def test_matcher_record_has_only_permitted_fields(workspace: Path,
                                                  register: pd.DataFrame) -> None:
    m = RegisterMatcher.load()
    assert not set(m.releasable.column_names) & CLINICAL_FIELDS  # clinical columns never loaded
    p = register.iloc[5]
    result = m.match({"family": p["family"], "given": p["given"], "birthdate": p["birthdate"],
                      "address-postalcode": p["postcode"]})
    assert result.status == "matched"
    assert m.record(result, ["address-postalcode"]) == {"address-postalcode": p["postcode"]}
    everything = m.record(result, list(FIELDS))
    assert "SECRET" not in json.dumps(everything)


def test_trace_prints_only_permitted_fields(workspace: Path, register: pd.DataFrame) -> None:
    req = workspace / "req.json"
    req.write_text(json.dumps(_request(register, ["address", "address-postalcode"])))
    res = runner.invoke(app, ["trace", str(req), "--json", "--agreements",
                              str(workspace / "agreements"), "--received", "2024-06-10"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outcome"] == "approved" and out["status"] == "matched"
    assert set(out["released"]) == {"address", "address-postalcode"}
    assert out["released"]["address-postalcode"] == register.iloc[5]["postcode"]
    assert "SECRET" not in res.stdout and "birthdate" not in out["released"]


def test_trace_refuses_clinical_fields_without_matching(workspace: Path,
                                                        register: pd.DataFrame) -> None:
    req = workspace / "req.json"
    req.write_text(json.dumps(_request(register, ["address", "diagnosis"])))
    res = runner.invoke(app, ["trace", str(req), "--json", "--agreements",
                              str(workspace / "agreements"), "--received", "2024-06-10"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["outcome"] == "refused" and "status" not in out
    assert "SECRET" not in res.stdout


def test_link_output_has_only_the_four_columns(workspace: Path, register: pd.DataFrame) -> None:
    reqs = workspace / "reqs.jsonl"
    lines = []
    for i in range(20):
        r = _request(register.iloc[i * 10:], ["address"])
        r["request_id"] = f"B{i}"
        lines.append(json.dumps(r))
    reqs.write_text("\n".join(lines) + "\n")
    out = workspace / "out.csv"
    res = runner.invoke(app, ["link", "--requests", str(reqs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.splitlines()[0] == "request_id,status,score,record_id"
    assert "SECRET" not in text
    got = pd.read_csv(out)
    assert (got["status"] == "matched").sum() >= 18


def test_register_import_cli_reports_rows(workspace: Path, register: pd.DataFrame) -> None:
    bad = register.head(20).copy()
    bad.loc[3, "birthdate"] = "1999-13-01"
    src = workspace / "bad.csv"
    write_register(bad, src)
    res = runner.invoke(app, ["register", "import", str(src)])
    assert res.exit_code == 1
    assert "row 4, column birthdate" in res.output.replace("\n", " ")
