"""Ledger fixtures: a signing key in a temporary workspace."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safehaven.ledger.keys import load_or_create_signing_key


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SAFEHAVEN_HOME", str(home))
    monkeypatch.delenv("SAFEHAVEN_LEDGER_KEY", raising=False)
    return home


@pytest.fixture
def signing_key(workspace: Path) -> Ed25519PrivateKey:
    return load_or_create_signing_key()
