"""API tokens: issued once in clear, stored as SHA-256, looked up by hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.utils import timezone

from accounts.models import ApiToken
from config.recheck_cache import MISSING, RecheckCache

# token hash -> usable ApiToken (with its user) or None; see config.recheck_cache
_recent = RecheckCache()

TOKEN_PREFIX = "lbx_"  # noqa: S105  (a public marker, not a secret)


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def issue_api_token(*, user, write: bool = False, days: int = 30, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for `user`; return the record and the clear token (shown only once)."""
    # SECURITY: 256 bits from the OS CSPRNG; the clear value is never stored or logged.
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken.objects.create(
        user=user,
        name=name,
        token_hash=hash_token(token),
        prefix=token[:12],
        scope=ApiToken.Scope.READ_WRITE if write else ApiToken.Scope.READ,
        expires_at=timezone.now() + timedelta(days=days),
    )
    from audit.services import record as audit

    audit(action="api_token.issued", actor=user, object_type="api_token", object_id=record.pk,
          details={"scope": record.scope, "days": days})
    return record, token


def recent_token(token: str) -> ApiToken | None:
    """Return the token record if it was found usable moments ago (no database work), else None.

    Expiry is checked on every call; revocation and deactivation reach this process's memory
    at once (signals) and every other process within ``ACCESS_RECHECK_SECONDS``.
    """
    found = _recent.get(hash_token(token))
    if found is MISSING or found is None or found.expires_at <= timezone.now():
        return None
    return found


def authenticate_token(token: str) -> ApiToken | None:
    """Return the usable token record for a clear token, or None (unknown, expired, revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    found = recent_token(token)
    if found is not None:
        return found
    token_hash = hash_token(token)
    found = ApiToken.objects.usable().select_related("user").filter(token_hash=token_hash).first()
    if found is not None:
        _recent.put(token_hash, found)
    if found is not None:
        now = timezone.now()
        # Touch at most once a minute, so a busy client does not write on every request.
        if found.last_used_at is None or now - found.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=found.pk).update(last_used_at=now)
    return found
