"""``safehaven backup`` / ``safehaven restore``: consistent SQLite snapshots, verified.

Both commands check the ledger of what they write: a backup that does not verify is not a
backup.  See :mod:`safehaven.service.backup` for what is (and is not) in one.
"""

from __future__ import annotations

from pathlib import Path

import typer

from safehaven.cli.common import DatabaseOpt, JsonOpt, fail, out, print_json
from safehaven.service.backup import BackupError
from safehaven.service.backup import backup as do_backup
from safehaven.service.backup import restore as do_restore
from safehaven.store.db import resolve_url


def backup_command(
    destination: Path = typer.Argument(..., help="A new (or empty) directory for the backup."),
    include_key: bool = typer.Option(
        False, "--include-key",
        help="Also copy the ledger's PRIVATE signing key (0600). Off by default: keep the "
        "key in its own secret store (docs/threat-model.md)."),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Snapshot the SQLite database while the server runs; verify the copy's ledger."""
    try:
        result = do_backup(resolve_url(database_url), destination, include_key=include_key)
    except BackupError as exc:
        fail(str(exc), as_json=as_json)
    doc = {"directory": str(result.directory), "sha256": result.sha256,
           "ledger_size": result.ledger_size, "ledger_root": result.ledger_root,
           "key_id": result.key_id, "includes_private_key": result.included_private_key}
    if as_json:
        print_json(doc)
        return
    out.print(f"backup: {result.directory} ({result.ledger_size} ledger entries verified, "
              f"root {result.ledger_root})", soft_wrap=True)


def restore_command(
    directory: Path = typer.Argument(..., help="A directory made by `safehaven backup`."),
    force: bool = typer.Option(False, "--force", help="Replace an existing database "
                               "(stop the server first)."),
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check a backup (hash, integrity, ledger) and install it as the workspace database."""
    try:
        result = do_restore(directory, resolve_url(database_url), force=force)
    except BackupError as exc:
        fail(str(exc), as_json=as_json)
    report = result.ledger
    if as_json:
        print_json({"database": str(result.database), "ledger_ok": report.ok,
                    "ledger_size": report.size, "ledger_root": report.root.hex(),
                    "heads": report.heads})
        return
    out.print(f"restored {result.database}: ledger ok, {report.size} entries, "
              f"{report.heads} signed head(s) verified", soft_wrap=True)
