"""The offline check of proof documents, without a database: what a verifier runs."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safehaven.ledger import keys, log, merkle
from safehaven.ledger.heads import TreeHead, head_message
from safehaven.ledger.proofs import check_document

KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()


def leaves(tag: str, n: int) -> list[bytes]:
    return [log.encode_leaf({"tag": tag, "i": i}, i) for i in range(n)]


def head(data: list[bytes], ts: int = 1) -> TreeHead:
    root = merkle.root(data)
    return TreeHead(len(data), root, ts, keys.key_id(PUB),
                    KEY.sign(head_message(len(data), root, ts)))


def consistency(data: list[bytes], old: int, new_head: TreeHead) -> dict[str, Any]:
    return {"type": "consistency", "old_size": old, "new_size": len(data),
            "proof": [h.hex() for h in merkle.consistency_proof(data, old)],
            "old_head": None, "new_head": new_head.to_json()}


def test_honest_extension_passes_against_the_head_you_held() -> None:
    log_ = leaves("a", 11)
    old, new = head(log_[:4]), head(log_, ts=2)
    assert check_document(consistency(log_, 4, new), [old], PUB) == []


def test_rewritten_history_cannot_be_proved_consistent() -> None:
    honest, rewritten = leaves("a", 11), [*leaves("a", 2), *leaves("b", 9)[2:]]
    old = head(honest[:4])  # what oversight saved last month
    new = head(rewritten, ts=2)  # validly signed by the same key, after a rewrite
    problems = check_document(consistency(rewritten, 4, new), [old], PUB)
    assert any("does not extend" in p for p in problems)


def test_two_signed_heads_of_one_size_are_a_fork() -> None:
    a, b = leaves("a", 5), leaves("b", 5)
    doc = {"type": "inclusion", "index": 1, "size": 5, "entry": b[1].decode(),
           "proof": [h.hex() for h in merkle.inclusion_proof(b, 1)],
           "head": head(b).to_json()}
    assert any("forked" in p for p in check_document(doc, [head(a)], PUB))
    assert check_document(doc, [head(b)], PUB) == []


def test_malformed_documents_are_named() -> None:
    assert check_document([], [], PUB) == ["proof: expected a JSON object"]
    assert check_document({"type": "other"}, [], PUB) == [
        "type: expected 'inclusion' or 'consistency'"]
    assert "index" in check_document({"type": "inclusion", "index": -1, "size": 2}, [], PUB)[0]
    bad = check_document({"type": "consistency", "old_size": 1, "new_size": 2,
                          "proof": ["zz"]}, [], PUB)
    assert bad == ["proof: not hex"]
