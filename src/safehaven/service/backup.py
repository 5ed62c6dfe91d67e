"""Backup and restore of an SQLite workspace, checked by re-verifying the ledger.

Why the SQLite *online backup API* and not a file copy: the server keeps writing while a
backup runs, and in WAL mode the committed state is spread over ``safehaven.db`` and
``safehaven.db-wal``.  Copying the two files is not atomic; ``sqlite3.Connection.backup``
copies the pages of one read transaction, so the snapshot is exactly the database as of
one commit, whatever else is happening.

What goes into a backup directory:

* ``safehaven.db``: the snapshot (integrity-checked after it is taken);
* ``ledger-ed25519.pub``: the ledger's public key, so the restored log can be verified
  anywhere;
* ``manifest.json``: sha256 of the snapshot, ledger size and root, key id, time taken.

The ledger's **private** signing key is *not* included unless asked for
(``include_key=True``): a backup travels further and lives longer than the server's disk,
and whoever holds the private key can sign false tree heads.  Keep the key in its own
secret store; see ``docs/threat-model.md`` ("backups").

PostgreSQL is backed up with ``pg_dump`` (see ``docs/reliability.md``); this module refuses
a PostgreSQL URL with that pointer rather than pretending.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from safehaven.ledger import keys
from safehaven.ledger.verify import Report, verify_log

DB_FILE = "safehaven.db"
MANIFEST = "manifest.json"
PG_DUMP_HINT = (
    "PostgreSQL: use pg_dump --format=custom (see docs/reliability.md, 'Backup and restore')"
)


class BackupError(Exception):
    """A backup or restore could not be made safely; nothing was overwritten."""


@dataclass(frozen=True)
class BackupResult:
    directory: Path
    sha256: str
    ledger_size: int
    ledger_root: str
    key_id: str | None
    included_private_key: bool


@dataclass(frozen=True)
class RestoreResult:
    database: Path
    ledger: Report


def sqlite_path(url: str) -> Path:
    """The file behind an SQLite URL; anything else is refused with the pg_dump pointer."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise BackupError(PG_DUMP_HINT)
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("database: an in-memory SQLite database cannot be backed up")
    return Path(parsed.database)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _integrity(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()
    if rows != [("ok",)]:
        raise BackupError(f"{path}: integrity check failed: {rows[:5]}")


def _verify(db: Path, public_key: Ed25519PublicKey | None) -> Report:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return verify_log(conn, public_key)
    finally:
        engine.dispose()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(
    database_url: str,
    destination: Path,
    *,
    key_path: Path | None = None,
    include_key: bool = False,
) -> BackupResult:
    """Snapshot the database into ``destination`` (a new or empty directory)."""
    source = sqlite_path(database_url)
    if not source.exists():
        raise BackupError(f"database: {source}: no such file")
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination}: not empty; choose a new directory")
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / DB_FILE
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        # pages=-1 (the default): all pages in one step, i.e. one read transaction, so the
        # copy is one committed state even while the server writes.
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
    finally:
        dst.close()
        src.close()
    _integrity(target)

    key_file = key_path or keys.key_path()
    pub_file = key_file.with_name(keys.PUBLIC_KEY_FILE)
    public_key = None
    if pub_file.exists():
        shutil.copyfile(pub_file, destination / keys.PUBLIC_KEY_FILE)
        public_key = keys.load_public_key(pub_file.read_bytes())
    if include_key:
        if not key_file.exists():
            raise BackupError(f"--include-key: {key_file}: no such file")
        fd = os.open(destination / keys.KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_file.read_bytes())
            f.flush()
            os.fsync(f.fileno())

    report = _verify(target, public_key)
    if not report.ok:
        raise BackupError("ledger: the snapshot does not verify: " + "; ".join(report.problems))
    digest = _sha256(target)
    manifest: dict[str, Any] = {
        "format": "safehaven.backup/v1",
        "taken_at": datetime.now(UTC).isoformat(),
        "database": DB_FILE,
        "sha256": digest,
        "ledger": {"size": report.size, "root": report.root.hex(), "heads": report.heads},
        "key_id": keys.key_id(public_key) if public_key else None,
        "includes_private_key": include_key,
    }
    (destination / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
    with target.open("rb") as f:
        os.fsync(f.fileno())
    _fsync_dir(destination)
    return BackupResult(destination, digest, report.size, report.root.hex(),
                        manifest["key_id"], include_key)


def read_manifest(directory: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{directory / MANIFEST}: cannot read ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "safehaven.backup/v1":
        raise BackupError(f"{directory / MANIFEST}: not a safehaven backup manifest")
    return manifest


def restore(
    directory: Path,
    database_url: str,
    *,
    key_path: Path | None = None,
    force: bool = False,
) -> RestoreResult:
    """Check a backup (hash, integrity, ledger), then install it as the workspace database.

    Everything is checked on a temporary copy beside the target first, and the target is
    replaced with one ``rename``: a failed restore leaves the old database untouched.
    """
    manifest = read_manifest(directory)
    snapshot = directory / str(manifest.get("database", DB_FILE))
    if not snapshot.is_file():
        raise BackupError(f"{snapshot}: no such file")
    if _sha256(snapshot) != manifest.get("sha256"):
        raise BackupError(f"{snapshot}: sha256 differs from the manifest; the backup was "
                          "altered or damaged")
    target = sqlite_path(database_url)
    if target.exists() and not force:
        raise BackupError(f"{target}: exists; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(target.name + ".restoring")
    shutil.copyfile(snapshot, staging)
    try:
        _integrity(staging)
        pub_file = directory / keys.PUBLIC_KEY_FILE
        public_key = keys.load_public_key(pub_file.read_bytes()) if pub_file.exists() else None
        report = _verify(staging, public_key)
        if not report.ok:
            raise BackupError("ledger: the backup does not verify: "
                              + "; ".join(report.problems))
        expected = manifest.get("ledger", {})
        if (report.size, report.root.hex()) != (expected.get("size"), expected.get("root")):
            raise BackupError("ledger: size/root differ from the manifest")
        with staging.open("rb") as f:
            os.fsync(f.fileno())
        for suffix in ("-wal", "-shm"):  # a stale WAL must not be replayed over the restore
            stale = target.with_name(target.name + suffix)
            if stale.exists():
                stale.unlink()
        os.replace(staging, target)
        _fsync_dir(target.parent)
    finally:
        if staging.exists():
            staging.unlink()
    key_file = key_path or keys.key_path()
    for name, dest in ((keys.PUBLIC_KEY_FILE, key_file.with_name(keys.PUBLIC_KEY_FILE)),
                       (keys.KEY_FILE, key_file)):
        src = directory / name
        if src.exists() and (force or not dest.exists()):
            dest.parent.mkdir(parents=True, exist_ok=True)
            if name == keys.KEY_FILE:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(src.read_bytes())
            else:
                shutil.copyfile(src, dest)
    return RestoreResult(target, report)
