"""``--engine`` on ``safehaven link`` and ``safehaven register train``: a bad engine name is
a usage error (exit 2, the option named), checked before any work or JVM start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safehaven.cli import app

runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("SAFEHAVEN_HOME", str(tmp_path / "home"))
    from safehaven.matching.synth import synth_register, write_register, write_requests

    reg = synth_register(200, seed=1)
    paths = {"register": tmp_path / "r.parquet", "requests": tmp_path / "q.jsonl",
             "truth": tmp_path / "t.csv", "model": tmp_path / "m.json"}
    write_register(reg, paths["register"])
    write_requests(reg, 5, paths["requests"], paths["truth"], seed=1)
    paths["model"].write_text("{}")
    return paths


def test_link_rejects_an_unknown_engine(files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, [
        "link", "--register", str(files["register"]), "--requests", str(files["requests"]),
        "--model", str(files["model"]), "--out", str(tmp_path / "o.csv"),
        "--engine", "sqlite", "--json"])
    assert result.exit_code == 2, result.output
    problems = json.loads(result.stdout)["problems"]
    assert any("--engine" in p and "duckdb, spark" in p for p in problems)
    assert not (tmp_path / "o.csv").exists()


def test_register_train_rejects_an_unknown_engine(files: dict[str, Path]) -> None:
    assert runner.invoke(app, ["register", "import", str(files["register"])]).exit_code == 0
    result = runner.invoke(app, ["register", "train", "--engine", "hadoop", "--json"])
    assert result.exit_code == 2, result.output
    assert "--engine" in result.stdout
