"""Session lifetime policy: idle timeout, absolute lifetime, and sessions ended elsewhere.

Every browser session of a signed-in user has a `UserSession` record (created on the
`user_logged_in` signal, keyed by the SHA-256 of the session key). A session stays usable while
1. its record exists and is not ended (sign out everywhere, "End" on the sessions page, SCIM
   deactivation all end records; the session store itself may still hold the session),
2. the record is younger than SESSION_COOKIE_AGE (absolute lifetime; the session store's own
   expiry slides on every save, so it cannot be relied on), and
3. the last *activity* is at most LIGHTBOX_SESSION_IDLE_SECONDS ago. Requests carrying
   `X-Lightbox-Background: 1` (status polls) are not activity.

`session_check` answers "is this session still valid?" for the middleware, the websocket guard
and the lean DICOMweb chain; `end_session` / `end_all_sessions` are the write side.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.dispatch import receiver
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import resolve_url
from django.utils import timezone

from accounts.models import UserSession
from audit.services import client_ip, record

logger = logging.getLogger("lightbox.sessions")

# Session keys (server-side session data, never sent to the browser).
SESSION_LAST_ACTIVITY = "lightbox.session.last_activity"  # epoch seconds of the last user activity
SESSION_RECORD = "lightbox.session.record"  # the UserSession id, to follow a cycled session key

BACKGROUND_HEADER = "X-Lightbox-Background"
# The record's last_seen_at is written at most this often (the session's own activity stamp is exact).
LAST_SEEN_WRITE_INTERVAL = timedelta(seconds=60)

# Reasons a session is no longer valid (also UserSession.end_reason values).
IDLE = "idle"
ABSOLUTE = "absolute_lifetime"
ENDED = "ended_elsewhere"
UNKNOWN = "unknown_session"


def hash_session_key(session_key: str) -> str:
    """SHA-256 hex of a session key: the only form in which we store it."""
    return hashlib.sha256(session_key.encode()).hexdigest()


def user_group(user_id: int) -> str:
    # The same group viewer.consumers.user_group names (accounts must not import viewer).
    return f"user.{user_id}"


def duration_text(seconds: int) -> str:
    """'15 minutes', '12 hours', '1 minute', '45 seconds'."""
    if seconds >= 3600 and seconds % 3600 == 0:
        count, unit = seconds // 3600, "hour"
    elif seconds >= 120 or (seconds >= 60 and seconds % 60 == 0):
        count, unit = round(seconds / 60), "minute"
    else:
        count, unit = seconds, "second"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def signed_out_message(reason: str) -> str:
    if reason == IDLE:
        return f"You were signed out after {duration_text(settings.LIGHTBOX_SESSION_IDLE_SECONDS)} of inactivity."
    if reason == ABSOLUTE:
        return (
            f"You were signed out because your session reached its {duration_text(settings.SESSION_COOKIE_AGE)} "
            "limit. Please sign in again."
        )
    if reason == ENDED:
        return "You were signed out: this session was ended from another device or by an administrator."
    return "Your session is no longer valid. Please sign in again."


# --- Reading -----------------------------------------------------------------------------------


def find_record(session, user) -> UserSession | None:
    """The UserSession of `session` (by key hash, or by the id it carries after a key change)."""
    key = getattr(session, "session_key", None)
    if not key or user is None or not getattr(user, "is_authenticated", False):
        return None
    found = UserSession.objects.filter(key_hash=hash_session_key(key)).first()
    if found is None:
        record_id = session.get(SESSION_RECORD)
        if isinstance(record_id, int):
            found = UserSession.objects.filter(pk=record_id).first()
    # SECURITY: a record of another user never validates this session.
    return found if found is not None and found.user_id == user.pk else None


def _last_activity(session, found: UserSession) -> float:
    stamp = session.get(SESSION_LAST_ACTIVITY)
    if isinstance(stamp, (int, float)):
        return float(stamp)
    return found.last_seen_at.timestamp()


def check_session(session, user, *, found: UserSession | None = None) -> str | None:
    """The reason `session` of `user` may no longer be used, or None while it is valid.

    Read-only: safe on the lean API chain and in the websocket guard (wrap in
    database_sync_to_async there).
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    found = found or find_record(session, user)
    if found is None:
        return UNKNOWN
    if found.ended_at is not None:
        return ENDED
    now = timezone.now()
    # SECURITY: the absolute lifetime counts from sign-in, whatever the cookie or store says.
    if (now - found.created_at).total_seconds() > settings.SESSION_COOKIE_AGE:
        return ABSOLUTE
    if now.timestamp() - _last_activity(session, found) > settings.LIGHTBOX_SESSION_IDLE_SECONDS:
        return IDLE
    return None


def session_check(request) -> str | None:
    """The reason this request's session is no longer valid, or None (also None when anonymous)."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    return check_session(session, getattr(request, "user", None))


def seconds_left(session, found: UserSession) -> dict[str, int]:
    """Seconds until the idle timeout and until the absolute lifetime end (never negative)."""
    now = timezone.now()
    idle_left = settings.LIGHTBOX_SESSION_IDLE_SECONDS - (now.timestamp() - _last_activity(session, found))
    absolute_left = settings.SESSION_COOKIE_AGE - (now - found.created_at).total_seconds()
    return {"idle_remaining": max(0, round(idle_left)), "absolute_remaining": max(0, round(absolute_left))}


def is_background(request) -> bool:
    return request.headers.get(BACKGROUND_HEADER) == "1"


# --- Writing -----------------------------------------------------------------------------------


def _notify(user_id: int, payload: dict) -> None:
    """Tell the user's open sockets (viewer.consumers.SessionEventsConsumer) about an ended session."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(user_group(user_id), {"type": "session.event", **payload})
    except Exception:
        # A channel-layer outage must not undo or block the sign-out: the middleware and the
        # websocket guard refuse the ended session on its next request or handshake anyway.
        logger.warning("could not notify open sockets of an ended session", exc_info=True)


def _notify_after_commit(user_id: int, payload: dict) -> None:
    # After commit, so a socket that reconnects on the message already sees the record ended.
    transaction.on_commit(lambda: _notify(user_id, payload))


def end_session(found: UserSession, reason: str, *, actor=None, request=None) -> bool:
    """Mark one session ended, close its sockets, audit it; False when it had already ended."""
    with transaction.atomic():
        changed = UserSession.objects.filter(pk=found.pk, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason=reason[:40]
        )
        if changed:
            record(
                action="auth.session_ended",
                actor=actor,
                request=request,
                object_type="session",
                object_id=found.pk,
                details={"reason": reason, "user_id": found.user_id},
            )
            _notify_after_commit(
                found.user_id, {"event": "signed_out", "reason": reason, "close": True, "session": found.key_hash}
            )
    found.refresh_from_db(fields=["ended_at", "end_reason"])
    return bool(changed)


def end_all_sessions(user, *, reason: str, except_session_key: str | None = None, actor=None, request=None) -> int:
    """End every active session of `user` (but `except_session_key`); return how many ended.

    Open websockets of those sessions are closed at once through the channel layer. The sessions
    stay in the session store; SessionPolicyMiddleware refuses them on their next request.
    """
    spare = hash_session_key(except_session_key) if except_session_key else None
    with transaction.atomic():
        active = UserSession.objects.filter(user=user, ended_at__isnull=True)
        if spare:
            active = active.exclude(key_hash=spare)
        count = active.update(ended_at=timezone.now(), end_reason=reason[:40])
        record(
            action="auth.session_ended",
            actor=actor,
            request=request,
            object_type="user",
            object_id=user.pk,
            details={"reason": reason, "scope": "all" if spare is None else "all_but_current", "sessions": count},
        )
        _notify_after_commit(user.pk, {"event": "signed_out", "reason": reason, "close": True, "except_session": spare})
    return count


def _touch(request, found: UserSession, *, activity: bool) -> None:
    """Record activity on the session and refresh the record (last seen at most once a minute)."""
    session = request.session
    now = timezone.now()
    if activity:
        session[SESSION_LAST_ACTIVITY] = now.timestamp()
    if session.get(SESSION_RECORD) != found.pk:
        session[SESSION_RECORD] = found.pk
    updates: dict = {}
    key_hash = hash_session_key(session.session_key)
    if found.key_hash != key_hash:
        # The session key was cycled (e.g. after a second-factor check): follow it.
        updates["key_hash"] = key_hash
    if activity and now - found.last_seen_at >= LAST_SEEN_WRITE_INTERVAL:
        updates.update(
            last_seen_at=now,
            ip_address=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        )
    if updates:
        UserSession.objects.filter(pk=found.pk, ended_at__isnull=True).update(**updates)
        for name, value in updates.items():
            setattr(found, name, value)


def _start_record(request, user) -> UserSession:
    """Create the record of this request's (new) session."""
    session = request.session
    if not session.session_key:
        session.save()
    found, _ = UserSession.objects.get_or_create(
        key_hash=hash_session_key(session.session_key),
        defaults={
            "user": user,
            "ip_address": client_ip(request),
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300],
        },
    )
    session[SESSION_RECORD] = found.pk
    session[SESSION_LAST_ACTIVITY] = timezone.now().timestamp()
    return found


def wants_json(request) -> bool:
    accept = request.headers.get("Accept", "")
    return (
        is_background(request)
        or accept.startswith("application/json")
        or request.headers.get("X-Requested-With") == "XMLHttpRequest"
        or request.content_type == "application/json"
    )


def _refuse(request, reason: str, found: UserSession | None):
    """Sign the request's session out for `reason`; a redirect to sign-in or a JSON 401."""
    user = request.user
    if reason != ENDED:
        # Ended elsewhere was audited where it was ended; the other reasons are decided here.
        if found is not None:
            end_session(found, reason, actor=user, request=request)
        else:
            record(
                action="auth.session_ended",
                actor=user,
                request=request,
                object_type="session",
                details={"reason": reason, "user_id": user.pk},
            )
    logout(request)
    message = signed_out_message(reason)
    login_url = resolve_url(settings.LOGIN_URL)
    if wants_json(request):
        response = JsonResponse(
            {"error": "signed out", "reason": reason, "message": message, "login_url": login_url}, status=401
        )
    else:
        if request.method == "GET" and request.path != login_url:
            response = redirect_to_login(request.get_full_path(), login_url)
        else:
            response = HttpResponseRedirect(login_url)
    # PRIVACY: drop what the browser cached of this session. Not "cookies": the sign-in page
    # message below travels in one (the session cookie itself was just emptied server-side).
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    # This middleware runs outside MessageMiddleware, so it stores the message itself.
    storage = messages.storage.default_storage(request)
    storage.add(messages.WARNING, message)
    storage.update(response)
    return response


class SessionPolicyMiddleware:
    """End sessions that are idle, too old, or ended elsewhere; record activity on the others.

    Sits after AuthenticationMiddleware/OTPMiddleware and before the second-factor gate, so a
    half-signed-in session times out too.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        found = find_record(request.session, user)
        if found is None:
            # Sessions are recorded at sign-in (user_logged_in); one without a record predates
            # this policy or lost its record. Start counting from now rather than lock it out.
            logger.warning("signed-in session without a session record; recording it now")
            found = _start_record(request, user)
            if found.user_id != user.pk:  # SECURITY: never adopt another user's record
                return _refuse(request, UNKNOWN, None)
        # SECURITY: checked on every request, before any view runs.
        reason = check_session(request.session, user, found=found)
        if reason is not None:
            return _refuse(request, reason, found)
        _touch(request, found, activity=not is_background(request))
        return self.get_response(request)


# --- Signals -----------------------------------------------------------------------------------


@receiver(user_logged_in, dispatch_uid="lightbox.sessions.start")
def _on_signed_in(sender, request, user, **kwargs):
    if request is None or getattr(request, "session", None) is None:
        return
    previous = request.session.get(SESSION_RECORD)
    found = _start_record(request, user)
    if isinstance(previous, int) and previous != found.pk:
        # Signing in again on one browser: the old record belongs to a key that no longer exists.
        UserSession.objects.filter(pk=previous, user=user, ended_at__isnull=True).update(
            ended_at=timezone.now(), end_reason="signed_in_again"
        )


@receiver(user_logged_out, dispatch_uid="lightbox.sessions.end")
def _on_signed_out(sender, request, user, **kwargs):
    # Sign-out itself is audited as auth.logout (accounts.signals); here the record ends, and
    # other tabs of this same session get told over their sockets.
    if request is None or user is None or getattr(request, "session", None) is None:
        return
    found = find_record(request.session, user)
    if found is None:
        return
    changed = UserSession.objects.filter(pk=found.pk, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason="signed_out"
    )
    if changed:
        _notify_after_commit(
            found.user_id, {"event": "signed_out", "reason": "signed_out", "close": True, "session": found.key_hash}
        )
