"""Writing to the audit trail: one function, `record`, used by every part of Lightbox."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.chain import compute_hash
from audit.models import ActorType, AuditEvent, ChainHead, Outcome
from config.request_context import current_request_id

logger = logging.getLogger("lightbox.audit")


def audit_key() -> bytes:
    """Return the HMAC key of the audit chain."""
    return settings.AUDIT_HMAC_KEY.encode()


def client_ip(request) -> str | None:
    """Return the client's address; X-Forwarded-For only when a trusted proxy is configured."""
    if request is None:
        return None
    raw = request.META.get("REMOTE_ADDR", "")
    if getattr(settings, "TRUSTED_PROXY", False):
        # SECURITY: the proxy appends the address it saw; the last entry is the one we trust.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            raw = forwarded.split(",")[-1].strip()
    return _normalise_ip(raw)


def _normalise_ip(raw: str | None) -> str | None:
    try:
        return ipaddress.ip_address((raw or "").strip()).compressed
    except ValueError:
        return None


def _actor_fields(actor: Any, actor_type: str | None) -> tuple[str, str, str]:
    if actor is None:
        return actor_type or ActorType.ANONYMOUS, "", ""
    if getattr(actor, "is_authenticated", False) and hasattr(actor, "email"):
        return actor_type or ActorType.USER, str(actor.pk), actor.email
    return actor_type or ActorType.SYSTEM, str(getattr(actor, "pk", "") or ""), str(actor)[:254]


def record(
    *,
    action: str,
    actor: Any = None,
    actor_type: str | None = None,
    request=None,
    organization: Any = None,
    object_type: str = "",
    object_id: Any = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEvent:
    """Append one event to the chain and return it.

    The append runs in its own transaction (a savepoint when nested) with the chain head row
    locked, so concurrent writers, in threads or other processes, queue instead of forking the
    chain. PRIVACY: `details` must not carry PHI; callers pass UIDs and counts only.
    """
    kind, actor_id, actor_label = _actor_fields(actor, actor_type)
    if request is not None:
        source_ip = source_ip or client_ip(request)
        user_agent = user_agent or request.META.get("HTTP_USER_AGENT", "")
    fields = {
        "actor_type": kind,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "organization_id": getattr(organization, "pk", organization),
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id if object_id is not None else ""),
        "outcome": str(outcome),
        "source_ip": _normalise_ip(source_ip),
        "user_agent": (user_agent or "")[:256],
        "request_id": getattr(request, "request_id", None) or current_request_id(),
        "details": details or {},
    }
    with transaction.atomic():
        head, _ = ChainHead.objects.select_for_update().get_or_create(pk=1)
        fields["sequence"] = head.sequence + 1
        fields["created_at"] = timezone.now()
        fields["prev_hash"] = head.hash
        fields["hash"] = compute_hash(audit_key(), head.hash, fields)
        event = AuditEvent.objects.create(**fields)
        ChainHead.objects.filter(pk=1).update(sequence=event.sequence, hash=event.hash)
    return event
