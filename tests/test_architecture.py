"""The domain stays pure: no adapter may be imported from ``safehaven.domain``.

The decision engine must replay identically years later from the ledger and run in any
adapter (CLI, API, batch), so it may not reach for a web framework, an ORM, the linkage
engine or the CLI toolkit — nor for safehaven's own adapter packages, which depend on the
domain and never the other way round.  Checked statically with ``ast`` so that an import
hidden in a function body, or under ``TYPE_CHECKING``, is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[1] / "src" / "safehaven" / "domain"

FORBIDDEN_THIRD_PARTY = frozenset({
    "fastapi", "sqlalchemy", "splink", "duckdb", "alembic", "typer", "rich", "httpx",
})
FORBIDDEN_OWN = (
    "safehaven.store", "safehaven.service", "safehaven.cli", "safehaven.matching",
    "safehaven.ledger",
)


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``; relative imports are
    resolved against ``module`` (the importing module's dotted name)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from safehaven import store`` imports the package ``safehaven.store``.
            found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
    return found


def violations(source: str, module: str) -> list[str]:
    """One message per offending import statement (the first forbidden name it brings in)."""
    bad: dict[int, str] = {}
    for line, name in imported_modules(source, module):
        top = name.split(".")[0]
        if line not in bad and (top in FORBIDDEN_THIRD_PARTY or any(
            name == own or name.startswith(own + ".") for own in FORBIDDEN_OWN
        )):
            bad[line] = f"line {line}: imports {name}"
    return [bad[line] for line in sorted(bad)]


DOMAIN_FILES = sorted(DOMAIN.glob("*.py"))


def test_domain_files_found() -> None:
    names = {p.name for p in DOMAIN_FILES}
    assert {"decision.py", "agreement.py", "request.py", "lifecycle.py"} <= names


@pytest.mark.parametrize("path", DOMAIN_FILES, ids=lambda p: p.name)
def test_domain_module_imports_no_adapter(path: Path) -> None:
    module = f"safehaven.domain.{path.stem}" if path.stem != "__init__" else "safehaven.domain"
    assert violations(path.read_text(encoding="utf-8"), module) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import sqlalchemy", ["line 1: imports sqlalchemy"]),
        ("import sqlalchemy.orm as orm", ["line 1: imports sqlalchemy.orm"]),
        ("from fastapi import FastAPI", ["line 1: imports fastapi"]),
        ("def f():\n    import duckdb", ["line 2: imports duckdb"]),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rich import console",
         ["line 3: imports rich"]),
        ("from safehaven.store.models import RequestRow",
         ["line 1: imports safehaven.store.models"]),
        ("from safehaven import ledger", ["line 1: imports safehaven.ledger"]),
        ("from ..service import requests", ["line 1: imports safehaven.service"]),
        ("import os\nimport httpx\nfrom safehaven.cli.common import out",
         ["line 2: imports httpx", "line 3: imports safehaven.cli.common"]),
        ("from . import fields\nimport pydantic\nfrom safehaven.domain.agreement import Agreement",
         []),
        ("import richtext", []),
    ],
)
def test_checker_catches_forbidden_imports(source: str, expected: list[str]) -> None:
    """The checker itself must be able to fail, or a green run would prove nothing."""
    assert violations(source, "safehaven.domain.example") == expected
