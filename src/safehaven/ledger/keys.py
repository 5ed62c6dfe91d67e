"""The ledger's Ed25519 signing key, kept in the workspace.

The key is created on first use, readable by its owner only (0600), and written atomically
(temporary file, then ``link``) so two processes starting at once end up with the same key
instead of one signing with a key the other overwrote.  A key others can read is refused:
whoever can read it can forge tree heads.

The public key is written beside it (``.pub``) because that, not the private key, is what a
verifier needs; the key id (sha256 of the raw public key) names it in every head.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from safehaven.store.db import workspace_home

KEY_FILE = "ledger-ed25519.key"
PUBLIC_KEY_FILE = "ledger-ed25519.pub"
KEY_ENV = "SAFEHAVEN_LEDGER_KEY"


class LedgerKeyError(Exception):
    """The signing key exists but cannot be used safely."""


def key_path() -> Path:
    """``SAFEHAVEN_LEDGER_KEY`` if set (e.g. a mounted secret), else the workspace file."""
    explicit = os.environ.get(KEY_ENV)
    return Path(explicit).expanduser() if explicit else workspace_home() / KEY_FILE


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise LedgerKeyError("not an Ed25519 public key")
    return key


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".ledger-key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(tmp, path)  # atomic: the key file is complete or absent, never partial
    finally:
        os.unlink(tmp)


def load_or_create_signing_key(path: Path | None = None) -> Ed25519PrivateKey:
    path = path or key_path()
    if not path.exists():
        _create(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise LedgerKeyError(f"{path}: permissions {mode:o} let others read the ledger key; "
                        "chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerKeyError(f"{path}: not an Ed25519 private key")
    pub = path.with_name(path.name.removesuffix(".key") + ".pub")
    if not pub.exists():
        pub.write_bytes(public_pem(key.public_key()))
    return key
