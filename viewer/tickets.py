"""One-time viewer socket tickets: single use, 30 s, bound to a session and a study.

The page POSTs for a ticket and sends it as the first websocket message (never in a URL). Only a
hash of the ticket is stored (Django's cache: Redis in production; the per-process locmem cache in
the single-process embedded mode), next to a hash of the session key it was issued to.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from django.core.cache import cache

TICKET_SECONDS = 30
_PREFIX = "lightbox:viewer-ticket:"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Ticket:
    study_uid: str
    principal_kind: str


def issue(*, session_key: str, study_uid: str, principal_kind: str = "user") -> str:
    """Return a new ticket for `study_uid`, usable once within TICKET_SECONDS by the same session."""
    token = secrets.token_urlsafe(32)
    record = {
        "session": _digest(session_key),
        "study": study_uid,
        "kind": principal_kind,
        "expires": time.time() + TICKET_SECONDS,
    }
    cache.set(_PREFIX + _digest(token), record, timeout=TICKET_SECONDS)
    return token


def redeem(token: str, *, session_key: str | None) -> Ticket | None:
    """Consume `token`; the Ticket when it is valid for this session, else None (used, expired, foreign)."""
    if not isinstance(token, str) or not token or len(token) > 200 or not session_key:
        return None
    key = _PREFIX + _digest(token)
    record = cache.get(key)
    # SECURITY: single use — only the caller whose delete removed the entry may use it, so two
    # sockets racing with one ticket cannot both pass.
    if record is None or not cache.delete(key):
        return None
    if time.time() >= record["expires"]:
        return None
    if not secrets.compare_digest(record["session"], _digest(session_key)):
        return None
    return Ticket(study_uid=record["study"], principal_kind=record["kind"])
