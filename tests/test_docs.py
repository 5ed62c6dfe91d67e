"""The reference docs stay true to the code.

Every rule id the engine can emit must be documented (a reviewer reading a refusal must be
able to look its id up), and the worked examples in docs/requests.md must still produce the
outcomes they show.  The checks read the docs as text, so they fail as soon as either side
changes.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safehaven.cli import app
from safehaven.domain.decision import RuleId
from safehaven.domain.fields import FIELDS
from safehaven.domain.firewall import DEFAULT_POLICY
from safehaven.domain.lifecycle import TERMINAL, TRANSITIONS, State
from safehaven.domain.purposes import PURPOSES


def example_files() -> list[Path]:
    """The bundled example requests (package data, one per turning point of the seeds)."""
    return sorted(Path(str(resources.files("safehaven") / "examples")).glob("*.json"))


DOCS = Path(__file__).resolve().parents[1] / "docs"
EXAMPLES = {p.name: p for p in example_files()}


def _text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _every_rule_id() -> list[str]:
    return [r.value for r in RuleId] + [f"{RuleId.FIREWALL}.{r.id}" for r in DEFAULT_POLICY.rules]


def _table_ids(text: str) -> set[str]:
    """Ids in the first column of markdown tables: ``| `id` | ...``."""
    return set(re.findall(r"^\| `([a-z_.-]+)` \|", text, re.M))


@pytest.mark.parametrize("doc", ["requests.md", "architecture.md"])
def test_every_rule_id_is_in_the_rule_table(doc: str) -> None:
    documented = _table_ids(_text(doc))
    missing = [r for r in _every_rule_id() if r not in documented]
    assert missing == [], f"docs/{doc} does not document rule(s) {missing}"


def test_requests_doc_lists_every_purpose_and_field() -> None:
    text = _text("requests.md")
    assert set(PURPOSES) <= _table_ids(text)
    for field in FIELDS:
        assert f"`{field}`" in text, field


DECIDE = re.compile(
    r"^\$ safehaven decide (?P<file>\S+\.json)(?P<args>[^\n]*)\n"
    r"\"outcome\": \"(?P<outcome>\w+)\", \"refused_by\": (?P<refused>\[[^\]]*\])",
    re.M,
)


def _worked_examples() -> list[tuple[str, list[str], str, list[str]]]:
    found = []
    for m in DECIDE.finditer(_text("requests.md")):
        found.append((m["file"], m["args"].split(), m["outcome"], json.loads(m["refused"])))
    return found


def test_requests_doc_has_worked_examples() -> None:
    assert len(_worked_examples()) >= 7


@pytest.mark.parametrize(("file", "args", "outcome", "refused"), _worked_examples(),
                         ids=lambda v: v if isinstance(v, str) and v.endswith(".json") else "")
def test_worked_example_output_is_current(
    file: str, args: list[str], outcome: str, refused: list[str]
) -> None:
    result = CliRunner().invoke(app, ["decide", str(EXAMPLES[file]), *args])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert (decision["outcome"], decision["refused_by"]) == (outcome, refused)


def test_architecture_doc_lists_every_transition() -> None:
    rows = set(re.findall(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \|", _text("architecture.md"), re.M))
    expected = {(s.value, e.value, t.value) for (s, e), t in TRANSITIONS.items()}
    assert rows == expected
    for state in TERMINAL:
        assert f"`{state.value}`" in _text("architecture.md")
    assert {s.value for s in State} <= {r[0] for r in rows} | {r[2] for r in rows}
