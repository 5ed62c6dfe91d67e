"""docs/agreements.md stays true: its example loads and its quoted hashes are current.

The hashes matter beyond the docs: every stored decision quotes an agreement's sha256, so a
change that silently alters the hash of an unchanged file (a new model default, a
serialisation change) must be noticed here, not discovered when old decisions no longer
verify.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safehaven.agreements import AgreementFileError, load_dir, parse_agreement

DOC = Path(__file__).resolve().parents[2] / "docs" / "agreements.md"


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_annotated_example_is_a_valid_agreement() -> None:
    match = re.search(r"## Annotated example.*?```yaml\n(.*?)```", _doc(), re.S)
    assert match, "docs/agreements.md has no annotated YAML example"
    agreement = parse_agreement(match.group(1), Path("example.yaml"))
    assert agreement.id == "example-police-tracing"
    assert agreement.permitted_fields("police-serious-crime") == {"address", "address-postalcode"}


def test_annotated_example_would_fail_with_an_unknown_key() -> None:
    match = re.search(r"## Annotated example.*?```yaml\n(.*?)```", _doc(), re.S)
    assert match
    with pytest.raises(AgreementFileError, match="unknown field"):
        parse_agreement(match.group(1) + "surprise: 1\n", Path("example.yaml"))


def test_documented_hashes_match_the_bundled_agreements() -> None:
    doc = _doc()
    for agreement in load_dir().agreements.values():
        section = re.search(rf"### `{re.escape(agreement.id)}` v(\S+) .*?sha256 `([0-9a-f]{{64}})`",
                            doc, re.S)
        assert section, f"docs/agreements.md does not describe {agreement.id}"
        assert section.group(1) == agreement.version, agreement.id
        assert section.group(2) == agreement.sha256, (
            f"{agreement.id}: the sha256 changed; if intended, update docs/agreements.md"
        )
