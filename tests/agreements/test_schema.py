"""The committed JSON Schemas are the models' schemas, and the bundled files satisfy them.

A schema in ``docs/`` that drifts from the model would tell agreement authors and
requesting agencies the wrong rules, so any difference fails here with the command that
regenerates it.
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from safehaven.agreements import agreement_files, bundled_dir
from safehaven.agreements.schema import (
    AGREEMENT_SCHEMA_FILE,
    REQUEST_SCHEMA_FILE,
    agreement_schema,
    generated_files,
    render,
    request_schema,
)
from safehaven.cli import app


def example_files() -> list[Path]:
    """The bundled example requests (package data, one per turning point of the seeds)."""
    return sorted(Path(str(resources.files("safehaven") / "examples")).glob("*.json"))


DOCS = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = "regenerate with: python -m safehaven.agreements.schema docs"


def _as_json(value: Any) -> Any:
    """YAML gives ``date`` objects; JSON Schema sees the ISO strings an author writes."""
    return json.loads(json.dumps(value, default=date.isoformat))


def _committed(name: str) -> dict[str, Any]:
    path = DOCS / name
    assert path.is_file(), f"{path} is missing; {REGENERATE}"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", [AGREEMENT_SCHEMA_FILE, REQUEST_SCHEMA_FILE])
def test_committed_schema_is_current(name: str) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    assert text == generated_files()[name], f"docs/{name} is stale; {REGENERATE}"


@pytest.mark.parametrize("schema", [agreement_schema(), request_schema()])
def test_schemas_are_valid_json_schema(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)


def test_cli_prints_the_committed_agreement_schema() -> None:
    result = CliRunner().invoke(app, ["agreements", "schema"])
    assert result.exit_code == 0, result.output
    assert result.stdout == render(_committed(AGREEMENT_SCHEMA_FILE))


def test_schema_uses_file_names_not_python_names() -> None:
    props = _committed(AGREEMENT_SCHEMA_FILE)["properties"]
    assert "register" in props
    assert "register_kind" not in props
    subject = _committed(REQUEST_SCHEMA_FILE)["$defs"]["Subject"]["properties"]
    assert "address-postalcode" in subject


BUNDLED = sorted(agreement_files(bundled_dir()))


def test_bundled_agreements_are_found() -> None:
    """Guards the parametrised test below against passing vacuously on an empty list."""
    assert len(BUNDLED) >= 4


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_agreement_validates_against_schema(path: Path) -> None:
    data = _as_json(yaml.safe_load(path.read_text(encoding="utf-8")))
    jsonschema.validate(data, _committed(AGREEMENT_SCHEMA_FILE),
                        cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.stem)
def test_example_request_validates_against_schema(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(data, _committed(REQUEST_SCHEMA_FILE),
                        cls=jsonschema.Draft202012Validator)


def test_schema_rejects_what_the_model_rejects() -> None:
    """The schema is not vacuous: an unknown key and a missing required key both fail it."""
    schema = _committed(AGREEMENT_SCHEMA_FILE)
    good = _as_json(yaml.safe_load(BUNDLED[0].read_text(encoding="utf-8")))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "unexpected": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in good.items() if k != "status_history"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "register": "prison"}, schema)
