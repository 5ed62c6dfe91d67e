"""``safehaven ledger``: publish signed heads, prove entries, and let anyone verify.

``head``, ``verify`` and the ``prove-*`` commands run where the database is.  ``check-proof``
runs anywhere: it needs only a proof document, a head and the public key, so oversight can
check the controller without access to the controller's systems.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from safehaven.cli.common import (
    EXIT_PROBLEMS,
    DatabaseOpt,
    JsonOpt,
    fail,
    out,
    print_json,
    read_input,
)
from safehaven.ledger import heads, keys, log, proofs
from safehaven.ledger.verify import verify_log
from safehaven.store.db import open_store, session_factory, transaction

app = typer.Typer(help="The tamper-evident ledger: heads, proofs, verification.",
                  no_args_is_help=True)

PublicKeyOpt = typer.Option(
    None, "--public-key", help="The ledger's public key, PEM (default: the workspace's)."
)


def _public_key(path: Path | None, *, required: bool, as_json: bool) -> Ed25519PublicKey | None:
    if path is None:
        path = keys.key_path().with_name(keys.PUBLIC_KEY_FILE)
        if not path.exists():
            if required:
                fail("--public-key: no key given and none in the workspace", as_json=as_json)
            return None
    try:
        return keys.load_public_key(read_input(str(path), label="--public-key", as_json=as_json))
    except (ValueError, keys.LedgerKeyError) as exc:
        fail(f"--public-key: {path}: {exc}", as_json=as_json)


def _load_json(path: str, label: str, as_json: bool) -> object:
    try:
        return json.loads(read_input(path, label=label, as_json=as_json))
    except json.JSONDecodeError as exc:
        fail(f"{label}: {path}: not JSON ({exc.msg} at line {exc.lineno})", as_json=as_json)


@app.command("head")
def head(database_url: str = DatabaseOpt, as_json: bool = JsonOpt) -> None:
    """Sign a tree head for the log as it is now (or show the latest, if nothing changed)."""
    try:
        key = keys.load_or_create_signing_key()
    except keys.LedgerKeyError as exc:
        fail(str(exc), as_json=as_json)
    factory = session_factory(open_store(database_url))
    try:
        with transaction(factory) as session:
            tree_head = heads.sign_head(session, key)
    except log.LedgerError as exc:
        fail(str(exc), as_json=as_json, code=EXIT_PROBLEMS)
    doc = tree_head.to_json()
    if as_json:
        print_json(doc)
        return
    for name in ("size", "root", "time", "key_id", "signature"):
        out.print(f"{name:10} {doc[name]}", soft_wrap=True)


@app.command("verify")
def verify(
    public_key: Path | None = PublicKeyOpt,
    database_url: str = DatabaseOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Recompute the whole log from its entries; check every head's signature and root."""
    pub = _public_key(public_key, required=False, as_json=as_json)
    engine = open_store(database_url)
    with engine.connect() as conn:
        report = verify_log(conn, pub)
    engine.dispose()
    if as_json:
        print_json({
            "ok": report.ok,
            "size": report.size,
            "root": report.root.hex(),
            "heads": report.heads,
            "first_bad_entry": report.first_bad_entry,
            "problems": report.problems,
        })
    elif report.ok:
        out.print(f"ok: {report.size} entries, {report.heads} signed head(s) verified; "
                  f"root {report.root.hex()}", soft_wrap=True)
    else:
        if report.first_bad_entry is not None:
            out.print(f"FAILED: first bad entry is {report.first_bad_entry}")
        else:
            out.print("FAILED")
        for p in report.problems:
            out.print(f"  {p}", soft_wrap=True)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)


@app.command("prove-inclusion")
def prove_inclusion(
    index: int = typer.Argument(..., help="Entry index (0-based)."),
    size: int | None = typer.Option(None, "--size", help="Tree size (default: latest head)."),
    database_url: str = DatabaseOpt,
) -> None:
    """Print a proof document that entry INDEX is in the log (JSON, for check-proof)."""
    factory = session_factory(open_store(database_url))
    try:
        with transaction(factory) as session:
            if size is None:
                latest = heads.latest_head(session)
                if latest is None or index >= latest.size:
                    fail(f"entry {index} is not covered by a signed head yet: "
                         "run `safehaven ledger head` (or give --size)")
                size = latest.size
            print_json(proofs.inclusion_document(session, index, size))
    except (log.LedgerError, ValueError) as exc:
        fail(str(exc))


@app.command("prove-consistency")
def prove_consistency(
    old_size: int = typer.Argument(..., help="Size of the earlier tree."),
    new_size: int = typer.Argument(..., help="Size of the later tree."),
    database_url: str = DatabaseOpt,
) -> None:
    """Print a proof document that the tree of OLD_SIZE is a prefix of NEW_SIZE."""
    factory = session_factory(open_store(database_url))
    try:
        with transaction(factory) as session:
            print_json(proofs.consistency_document(session, old_size, new_size))
    except (log.LedgerError, ValueError) as exc:
        fail(str(exc))


@app.command("check-proof")
def check_proof(
    proof: str = typer.Argument(..., help="Proof document (JSON file, or - for stdin)."),
    head: list[str] = typer.Option(
        [], "--head", help="A head you hold (JSON), e.g. the one you saved last time."
    ),
    public_key: Path | None = PublicKeyOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Check a proof offline, against signed heads only: no database needed."""
    pub = _public_key(public_key, required=True, as_json=as_json)
    assert pub is not None
    held = []
    for path in head:
        try:
            held.append(heads.TreeHead.from_json(_load_json(path, "--head", as_json)))
        except ValueError as exc:
            fail(f"--head: {path}: {exc}", as_json=as_json)
    doc = _load_json(proof, "proof", as_json)
    problems = proofs.check_document(doc, held, pub)
    if problems:
        fail(problems, as_json=as_json, code=EXIT_PROBLEMS)
    if as_json:
        print_json({"ok": True})
    else:
        out.print("ok: the proof verifies against the signed head(s)")


@app.command("public-key")
def public_key_cmd() -> None:
    """Print the ledger's public key (PEM): publish it with the heads."""
    try:
        key = keys.load_or_create_signing_key()
    except keys.LedgerKeyError as exc:
        fail(str(exc))
    out.print(keys.public_pem(key.public_key()).decode("ascii"), end="")
