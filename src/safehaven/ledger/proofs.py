"""Proof documents: what the log hands out, and the offline check a verifier runs on them.

A proof document is self-contained JSON.  Its hashes prove nothing on their own; they are
checked against tree heads whose signatures verify under the controller's public key, so
the check needs no database and no trust in whoever delivered the document.  Heads may be
embedded in the document (they are signed, so that is safe) or supplied by the verifier,
typically the head it saved last time: that is how it learns the log has not been rewritten
since.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from safehaven.ledger import heads, log, merkle
from safehaven.ledger.heads import TreeHead


def _head_json(head: TreeHead | None) -> dict[str, Any] | None:
    return None if head is None else head.to_json()


def inclusion_document(session: Session, index: int, tree_size: int) -> dict[str, Any]:
    data, stored = log.entry(session, index)
    return {
        "type": "inclusion",
        "index": index,
        "size": tree_size,
        "entry": data.decode("utf-8"),
        "leaf_hash": stored.hex(),
        "proof": [h.hex() for h in log.inclusion_proof(session, index, tree_size)],
        "head": _head_json(heads.head_at(session, tree_size)),
    }


def consistency_document(session: Session, old_size: int, new_size: int) -> dict[str, Any]:
    return {
        "type": "consistency",
        "old_size": old_size,
        "new_size": new_size,
        "proof": [h.hex() for h in log.consistency_proof(session, old_size, new_size)],
        "old_head": _head_json(heads.head_at(session, old_size)),
        "new_head": _head_json(heads.head_at(session, new_size)),
    }


def _hashes(value: Any, label: str) -> list[bytes]:
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise ValueError(f"{label}: expected a list of hex strings")
    try:
        return [bytes.fromhex(h) for h in value]
    except ValueError:
        raise ValueError(f"{label}: not hex") from None


def _int(doc: dict[str, Any], key: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key}: expected a non-negative integer")
    return value


def check_document(
    doc: Any, held: list[TreeHead], public_key: Ed25519PublicKey
) -> list[str]:
    """Problems with a proof document (empty list: it proves what it says).

    ``held`` are heads the verifier obtained independently; each must be one the proof is
    about, so a valid proof about some other head is not mistaken for one about yours.
    """
    if not isinstance(doc, dict):
        return ["proof: expected a JSON object"]
    problems: list[str] = []
    trusted: dict[int, TreeHead] = {}
    embedded = [doc.get(k) for k in ("head", "old_head", "new_head") if doc.get(k) is not None]
    candidates: list[tuple[str, TreeHead]] = [("your head", h) for h in held]
    for value in embedded:
        try:
            candidates.append(("embedded head", TreeHead.from_json(value)))
        except ValueError as exc:
            problems.append(f"embedded {exc}")
    for origin, head in candidates:
        if not heads.verify_head(head, public_key):
            problems.append(f"{origin} at size {head.size}: signature does not verify")
        elif head.size in trusted and trusted[head.size].root != head.root:
            problems.append(f"two validly signed heads at size {head.size} with different "
                            "roots: the log has forked")
        else:
            trusted[head.size] = head
    try:
        kind = doc.get("type")
        if kind == "inclusion":
            index, size = _int(doc, "index"), _int(doc, "size")
            about = {size}
            proof = _hashes(doc.get("proof"), "proof")
            entry = doc.get("entry")
            if isinstance(entry, str):
                data = entry.encode("utf-8")
                leaf = merkle.leaf_hash(data)
                if not data.endswith(log.seq_suffix(index)):
                    problems.append(f"entry does not carry sequence number {index}")
            else:
                leaf = _hashes([doc.get("leaf_hash")], "leaf_hash")[0]
            signed = trusted.get(size)
            if signed is None:
                problems.append(f"no validly signed head at size {size} to check against")
            elif not merkle.verify_inclusion(leaf, index, size, proof, signed.root):
                problems.append(f"inclusion proof for entry {index} in size {size} fails")
        elif kind == "consistency":
            old, new = _int(doc, "old_size"), _int(doc, "new_size")
            about = {old, new}
            proof = _hashes(doc.get("proof"), "proof")
            if old not in trusted or new not in trusted:
                missing = sorted({old, new} - trusted.keys())
                problems.append(f"no validly signed head at size(s) {missing} to check against")
            elif not merkle.verify_consistency(old, new, trusted[old].root, trusted[new].root,
                                               proof):
                problems.append(f"consistency proof from size {old} to {new} fails: "
                                "the later head does not extend the earlier one")
        else:
            return [*problems, "type: expected 'inclusion' or 'consistency'"]
    except ValueError as exc:
        return [*problems, str(exc)]
    for head in held:
        if head.size not in about:
            problems.append(f"the proof is not about your head (size {head.size})")
    return problems
