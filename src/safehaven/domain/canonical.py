"""Canonical JSON and content hashes.

A decision names the sha256 of the agreement it applied, so the hash must depend only on
the agreement's meaning: not on YAML key order, comments, quoting or whitespace.  We hash
the JSON form of the validated model with sorted keys and no insignificant whitespace
(the RFC 8785 shape for the value types agreements use: strings, integers, booleans,
lists, objects and ISO dates).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    return sha256_hex(canonical_json(value))
