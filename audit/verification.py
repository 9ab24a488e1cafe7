"""Verify the stored chain and the checkpoints written outside the database."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from audit.chain import CHAINED_FIELDS, ChainReport, verify_events
from audit.models import AuditEvent
from audit.services import audit_key

_FIELDS = (*CHAINED_FIELDS, "prev_hash", "hash")


def checkpoint_path() -> Path:
    """Return the file that holds signed checkpoints of the chain head."""
    return Path(settings.DATA_DIR) / "audit" / "checkpoints.jsonl"


def _iter_events(batch: int = 2000):
    last = 0
    while True:
        rows = list(AuditEvent.objects.filter(sequence__gt=last).order_by("sequence").values(*_FIELDS)[:batch])
        if not rows:
            return
        yield from rows
        last = rows[-1]["sequence"]


def verify_chain() -> ChainReport:
    """Walk every stored event in order and report the first broken link."""
    return verify_events(audit_key(), _iter_events())


def _sign_checkpoint(body: dict) -> str:
    message = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(audit_key(), b"checkpoint:" + message, hashlib.sha256).hexdigest()


def write_checkpoint() -> dict:
    """Append a signed record of the current chain head to the checkpoint file."""
    head = AuditEvent.objects.order_by("-sequence").values("sequence", "hash").first() or {
        "sequence": 0,
        "hash": "0" * 64,
    }
    body = {"sequence": head["sequence"], "hash": head["hash"], "time": timezone.now().isoformat()}
    entry = {**body, "hmac": _sign_checkpoint(body)}
    path = checkpoint_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
    path.chmod(0o600)
    return entry


@dataclass(frozen=True)
class CheckpointReport:
    ok: bool
    reason: str
    sequence: int | None = None


def verify_latest_checkpoint() -> CheckpointReport:
    """Check that the newest checkpoint is authentic and still matches the stored chain."""
    path = checkpoint_path()
    if not path.exists():
        return CheckpointReport(True, "no checkpoint written yet")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return CheckpointReport(True, "no checkpoint written yet")
    try:
        entry = json.loads(lines[-1])
        body = {key: entry[key] for key in ("sequence", "hash", "time")}
        signature = entry["hmac"]
    except (ValueError, KeyError, TypeError):
        return CheckpointReport(False, "the latest checkpoint is unreadable")
    if not hmac.compare_digest(_sign_checkpoint(body), str(signature)):
        return CheckpointReport(False, "the latest checkpoint's signature is invalid", body.get("sequence"))
    if body["sequence"] == 0:
        return CheckpointReport(True, "checkpoint of an empty chain", 0)
    stored = AuditEvent.objects.filter(sequence=body["sequence"]).values_list("hash", flat=True).first()
    if stored is None:
        return CheckpointReport(False, f"event #{body['sequence']} named by the latest checkpoint is missing", body["sequence"])
    if stored != body["hash"]:
        return CheckpointReport(False, f"event #{body['sequence']} differs from the latest checkpoint", body["sequence"])
    return CheckpointReport(True, f"checkpoint at event #{body['sequence']} matches", body["sequence"])
