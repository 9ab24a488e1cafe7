"""Hash-chain maths for audit events, free of the ORM so it is easy to test and reason about.

hash_n = HMAC-SHA256(audit key, prev_hash || canonical JSON of event n). The key is separate
from SECRET_KEY; without it nobody can rewrite a row and recompute a valid chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64

# The fields that the hash covers, in a fixed order; adding one is a format change.
CHAINED_FIELDS = (
    "sequence",
    "created_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "organization_id",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
)


def _canonical_value(value: Any) -> Any:
    # Databases hand datetimes back in their own zone and precision; hash one fixed spelling.
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    """Serialise the chained fields deterministically (sorted keys, no whitespace, UTF-8)."""
    payload = {name: _canonical_value(fields[name]) for name in CHAINED_FIELDS}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def compute_hash(key: bytes, prev_hash: str, fields: Mapping[str, Any]) -> str:
    """Return the hex HMAC-SHA256 that links an event to its predecessor."""
    return hmac.new(key, prev_hash.encode("ascii") + canonical_json(fields), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The result of walking the chain: how far it is intact, and where it first breaks."""

    checked: int
    ok: bool
    broken_at: int | None = None
    reason: str = ""
    head_sequence: int = 0
    head_hash: str = GENESIS_HASH


def verify_events(key: bytes, events: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Walk events in sequence order; report the first gap, bad link or bad hash."""
    prev_hash = GENESIS_HASH
    expected_sequence = 1
    checked = 0
    for event in events:
        sequence = event["sequence"]
        if sequence != expected_sequence:
            return ChainReport(checked, False, expected_sequence, f"event #{expected_sequence} is missing", expected_sequence - 1, prev_hash)
        if event["prev_hash"] != prev_hash:
            return ChainReport(checked, False, sequence, f"event #{sequence} does not link to its predecessor", sequence - 1, prev_hash)
        if not hmac.compare_digest(compute_hash(key, prev_hash, event), event["hash"]):
            return ChainReport(checked, False, sequence, f"event #{sequence} was altered (hash mismatch)", sequence - 1, prev_hash)
        prev_hash = event["hash"]
        expected_sequence += 1
        checked += 1
    return ChainReport(checked, True, head_sequence=expected_sequence - 1, head_hash=prev_hash)
