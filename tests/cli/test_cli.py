"""The command line: decisions as JSON, clean errors naming the field, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safehaven.agreements import bundled_dir
from safehaven.cli import app
from tests.builders import NHS_TRACE, POLICE, STATUS, body

runner = CliRunner()


@pytest.fixture(autouse=True)
def workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAFEHAVEN_DATABASE_URL", raising=False)
    monkeypatch.delenv("SAFEHAVEN_AGREEMENTS", raising=False)
    return tmp_path


def write(tmp_path: Path, value, name="req.json") -> str:
    p = tmp_path / name
    p.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(p)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_decide_prints_decision_json(tmp_path):
    res = invoke("decide", write(tmp_path, POLICE))
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["outcome"] == "needs_review"
    assert out["agreement"]["id"] == "nhs-police-tracing" and len(out["agreement"]["sha256"]) == 64
    assert {r["id"] for r in out["rules"]} >= {"agreement.in_force", "grounds.offence_age"}


def test_decide_firewall_flag(tmp_path):
    path = write(tmp_path, NHS_TRACE)
    on = json.loads(invoke("decide", path, "--firewall", "on").stdout)
    off = json.loads(invoke("decide", path, "--firewall", "off").stdout)
    assert on["outcome"] == "refused" and on["firewall"] == "on"
    assert off["outcome"] == "needs_review" and off["firewall"] == "off"
    bad = invoke("decide", path, "--firewall", "maybe")
    assert bad.exit_code == 2 and "--firewall" in bad.stdout


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("{oops", "malformed JSON"),
        (body(POLICE, made_on="1/9/2017"), "made_on"),
        (body(POLICE, purpose="nosiness"), "purpose"),
        (body(POLICE, subject__family=None), "subject.family"),
        (body(POLICE, grounds__serious_crime="true"), "grounds.serious_crime"),
        (body(POLICE, fields="address"), "fields"),
    ],
)
def test_decide_bad_input_exit_2_names_field(tmp_path, content, field):
    res = invoke("decide", write(tmp_path, content))
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert out["error"] is True and any(field in p for p in out["problems"]), out
    assert "Traceback" not in res.output


def test_missing_file_is_a_clean_error(tmp_path):
    res = invoke("decide", str(tmp_path / "nope.json"))
    assert res.exit_code == 2 and "no such file" in res.stdout


def test_real_entry_point_never_shows_a_traceback(tmp_path):
    exe = shutil.which("safehaven") or str(Path(sys.executable).parent / "safehaven")
    bad = write(tmp_path, body(POLICE, made_on="2017-02-30"))
    proc = subprocess.run([exe, "decide", bad], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "made_on" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    proc = subprocess.run(
        [exe, "submit", bad],
        capture_output=True,
        text=True,
        timeout=60,
        env={"SAFEHAVEN_HOME": str(tmp_path / "h"), "PATH": "/usr/bin"},
    )
    assert proc.returncode == 2
    assert "made_on" in proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_agreements_check_bundled_ok():
    res = invoke("agreements", "check", "--json")
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert len(out["valid"]) >= 4 and out["invalid"] == []


def test_agreements_check_names_file_and_field(tmp_path):
    d = tmp_path / "agreements"
    shutil.copytree(bundled_dir(), d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    broken = d / "dfe-home-office-2016.yaml"
    broken.write_text(broken.read_text().replace("per_month: 1500", "per_month: lots"))
    (d / "dup.yaml").write_text("id: x\nid: y\n")
    res = invoke("agreements", "check", str(d))
    assert res.exit_code == 1
    assert "dfe-home-office-2016.yaml" in res.stdout and "volume_cap.per_month" in res.stdout
    assert "dup.yaml" in res.stdout and "duplicate key" in res.stdout
    assert "nhs-police-tracing" in res.stdout  # the good ones are still reported
    # decide refuses to run on a broken agreements directory, naming the file
    res = invoke("decide", write(tmp_path, POLICE), "--agreements", str(d))
    assert res.exit_code == 2 and "dfe-home-office-2016.yaml" in res.stdout


def test_agreements_show_on_date():
    res = invoke(
        "agreements", "show", "nhs-digital-home-office-2017", "--on", "2018-06-01", "--json"
    )
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["on"]["status"] == "narrowed"
    assert out["on"]["purposes"] == ["deportation-serious-crime", "welfare-protection"]
    human = invoke("agreements", "show", "nhs-digital-home-office-2017", "--on", "2019-01-01")
    assert human.exit_code == 0 and "withdrawn" in human.stdout
    assert invoke("agreements", "show", "nope").exit_code == 2
    bad_date = invoke("agreements", "show", "nhs-police-tracing", "--on", "01/01/2018")
    assert bad_date.exit_code == 2 and "--on" in bad_date.output


def test_firewall_on_off_status():
    status = json.loads(invoke("firewall", "status", "--json").stdout)
    assert status["firewall"] == "on" and status["history"] == []
    assert invoke("firewall", "off", "--reason", "").exit_code == 2
    off = invoke("firewall", "off", "--reason", "test", "--actor", "guardian", "--json")
    assert off.exit_code == 0 and json.loads(off.stdout)["firewall"] == "off"
    on = json.loads(invoke("firewall", "on", "--reason", "restore", "--json").stdout)
    assert on["firewall"] == "on"
    assert [h["value"] for h in on["history"]] == ["off", "on"]
    assert on["history"][0]["actor"] == "guardian"


def test_submit_review_show_round_trip(tmp_path):
    res = invoke(
        "submit",
        write(tmp_path, {**POLICE, "request_id": "k1"}),
        "--json",
        "--received",
        "2017-09-02",
    )
    assert res.exit_code == 0, res.output
    pid = json.loads(res.stdout)["id"]
    again = json.loads(
        invoke(
            "submit",
            write(tmp_path, {**POLICE, "request_id": "k1"}),
            "--json",
            "--received",
            "2017-09-02",
        ).stdout
    )
    assert again["id"] == pid and again["created"] is False
    conflict = invoke(
        "submit", write(tmp_path, {**POLICE, "request_id": "k1", "made_on": "2017-08-01"})
    )
    assert conflict.exit_code == 3 and "request_id" in conflict.output
    bad_verdict = invoke("review", pid, "--reviewer", "a", "--verdict", "yes", "--reason", "r")
    assert bad_verdict.exit_code == 2
    ok = invoke(
        "review", pid, "--reviewer", "alice", "--verdict", "approve", "--reason", "ok", "--json"
    )
    assert ok.exit_code == 0 and json.loads(ok.stdout)["state"] == "approved"
    twice = invoke("review", pid, "--reviewer", "bob", "--verdict", "approve", "--reason", "ok")
    assert twice.exit_code == 3
    shown = json.loads(invoke("requests", "show", pid, "--json").stdout)
    assert shown["state"] == "approved" and shown["reviews"][0]["reviewer"] == "alice"
    assert invoke("requests", "show", "missing").exit_code == 2
    listed = json.loads(invoke("requests", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [pid]


def test_demo_replays_a_small_stream():
    """A tiny replay (2,000 people, 1 % of the seeds' rates); the full run is timed in CI."""
    res = invoke("demo", "--no-serve", "--json", "--people", "2000", "--scale", "0.01")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    received = sum(t["received"] for t in summary["totals"].values())
    assert received == summary["replay"]["requests"] > 0
    listed = json.loads(invoke("requests", "list", "--json", "--limit", "1000").stdout)
    states = {r["state"] for r in listed}
    assert len(listed) == received and "refused" in states and "notified" in states
    # A second run replaces the demo's own store instead of adding to it.
    again = invoke("demo", "--no-serve", "--json", "--people", "2000", "--scale", "0.01")
    assert json.loads(again.stdout)["replay"]["requests"] == received


def test_demo_will_not_overwrite_a_real_store(tmp_path):
    assert invoke("submit", write(tmp_path, POLICE)).exit_code == 0
    res = invoke("demo", "--no-serve", "--people", "2000", "--scale", "0.01")
    assert res.exit_code == 2 and "fresh workspace" in res.stderr


def test_status_check_decide(tmp_path):
    out = json.loads(invoke("decide", write(tmp_path, STATUS)).stdout)
    assert out["outcome"] == "approved" and out["permitted_fields"] == ["entitlement"]


def test_agreements_check_covers_register_profiles_and_cross_checks(tmp_path):
    d = tmp_path / "agreements"
    shutil.copytree(bundled_dir(), d, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    profile = d / "registers" / "dfe.yaml"
    profile.write_text(profile.read_text().replace("  school: {", "  shoe_size: {"))
    nhs = d / "nhs-police-tracing.yaml"
    nhs.write_text(
        nhs.read_text().replace(
            "collected_for: patient-administration", "collected_for: patient-admin"
        )
    )
    res = invoke("agreements", "check", str(d), "--json")
    assert res.exit_code == 1
    problems = {
        e["file"].rsplit("/", 1)[-1]: e["problems"] for e in json.loads(res.stdout)["invalid"]
    }
    assert any("fields.shoe_size" in p for p in problems["dfe.yaml"])
    assert any(
        "compatible_uses.0.collected_for" in p and "patient-admin" in p
        for p in problems["nhs-police-tracing.yaml"]
    )
    # decide reports every bad file, not just the first
    res = invoke("decide", write(tmp_path, POLICE), "--agreements", str(d))
    assert res.exit_code == 2
    assert "dfe.yaml" in res.stdout and "nhs-police-tracing.yaml" in res.stdout


def test_agreement_errors_are_worded_for_agreements(tmp_path):
    d = tmp_path / "agreements"
    d.mkdir()
    src = (bundled_dir() / "nhs-police-tracing.yaml").read_text()
    (d / "a.yaml").write_text(src + "colour: blue\n")
    (d / "b.yaml").write_text(src.replace("date: 2013-04-01", "date: 20130401"))
    out = invoke("agreements", "check", str(d)).stdout
    assert "colour: unknown field (not part of the agreement format)" in out
    assert "status_history.0.date" in out and "request format" not in out


def test_an_agreement_edited_without_a_new_version_is_refused(tmp_path):
    """The first text used under a version is pinned: editing the file and keeping its
    version number stops `submit` (and `serve`) with a message that names it."""
    changed = tmp_path / "agreements"
    shutil.copytree(bundled_dir(), changed)
    first = invoke("submit", write(tmp_path, {**POLICE, "request_id": "p1"}),
                   "--agreements", str(changed))
    assert first.exit_code == 0, first.output
    path = changed / "nhs-police-tracing.yaml"
    text = path.read_text("utf-8")
    path.write_text(text.replace("(serious crime only)", "(serious crime, broadly read)"),
                    "utf-8")
    refused = invoke("submit", write(tmp_path, {**POLICE, "request_id": "p2"}),
                     "--agreements", str(changed))
    assert refused.exit_code == 2
    assert "nhs-police-tracing: version 1.0 was first used on" in refused.output
    assert "give the changed agreement a new version" in refused.output
    path.write_text(text.replace("(serious crime only)", "(serious crime, broadly read)")
                    .replace('version: "1.0"', 'version: "1.1"'), "utf-8")
    renumbered = invoke("submit", write(tmp_path, {**POLICE, "request_id": "p3"}),
                        "--agreements", str(changed), "--json")
    assert renumbered.exit_code == 0, renumbered.output
    assert json.loads(renumbered.stdout)["decision"]["agreement"]["version"] == "1.1"
