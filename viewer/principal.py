"""Who is looking: the viewer principal (a signed-in user, or a share recipient from `sharing/`).

The viewer page, the thumbnail route and the viewer websocket never ask "which user?"; they ask
for a principal and go through its `studies()` / `instances()` for every lookup. See
docs/viewer-protocol.md section 1 for the interface.

Share recipients come from a resolver module named by `settings.LIGHTBOX_SHARE_PRINCIPAL_RESOLVER`
(a dotted module path, e.g. "sharing.principal"), which must define
`share_principal_for_request(request)` and `share_principal_for_scope(scope)` (both sync, may use
the ORM, return a principal or None). `viewer/` never imports `sharing/` directly.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from importlib import import_module
from typing import Any, Protocol, runtime_checkable

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db.models import QuerySet
from django.utils.module_loading import import_string

from accounts import sessions as session_policy
from accounts.mfa import session_is_verified
from accounts.policy import Action, can
from archive import access
from archive.models import Instance, Study
from config.recheck_cache import ACCESS_RECHECK_SECONDS

# How often a live socket re-reads the session and the user's access from the database. Between
# reads `is_current()` compares the clock with the session's expiry only (it runs before every frame).
RECHECK_SECONDS = ACCESS_RECHECK_SECONDS


@runtime_checkable
class ViewerPrincipal(Protocol):
    kind: str
    audit_actor: Any
    audit_details: dict
    group_names: list[str]

    def studies(self) -> QuerySet[Study]: ...

    def instances(self) -> QuerySet[Instance]: ...

    def may_see_phi(self, study) -> bool: ...

    def watermark_text(self) -> str | None: ...

    def redactions_for(self, instance) -> tuple: ...

    def can_download(self) -> bool: ...

    def can_list_studies(self) -> bool: ...

    def is_current(self) -> str | None: ...


def user_group(user_id: int) -> str:
    """The channel-layer group that reaches every socket of one user (sign-out everywhere, expiry)."""
    return f"user.{user_id}"


class UserPrincipal:
    """A signed-in, second-factor-verified user; every answer comes from `archive.access` / `accounts.policy`.

    `session_key` (optional) ties `is_current()` to the session the page or socket was opened
    with: a session that was deleted (signed out) or has expired makes the principal stale.
    """

    kind = "user"

    def __init__(self, user, *, session_key: str | None = None, session_expiry: float | None = None):
        self.user = user
        self.audit_actor = user
        self.audit_details: dict = {}
        self.group_names = [user_group(user.pk)]
        self._session_key = session_key
        self._session_expiry = session_expiry
        self._checked_at = time.monotonic()
        self._study: Study | None = None

    def bind(self, study: Study) -> None:
        """Scope watermark and access re-checks to the study a socket was opened for."""
        self._study = study

    def studies(self):
        return access.studies_for(self.user)

    def instances(self):
        return access.instances_for(self.user)

    def may_see_phi(self, study) -> bool:
        # Whoever may open a study as a user (clinician, staff, the patient themself) sees its demographics.
        return bool(can(self.user, Action.STUDY_VIEW, study))

    def watermark_text(self) -> str | None:
        memberships = [m for m in self.user.memberships.select_related("organization")]
        if self._study is not None:
            memberships = [m for m in memberships if m.organization_id == self._study.organization_id]
        if not any(m.organization.watermark_internal_users for m in memberships):
            return None
        return f"{self.user.email} {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"

    def redactions_for(self, instance) -> tuple:
        return ()

    def can_download(self) -> bool:
        return bool(can(self.user, Action.STUDY_EXPORT, self._study))

    def can_list_studies(self) -> bool:
        return True

    def is_current(self) -> str | None:
        """None while the session and access hold; else "signed_out", "expired" or "revoked".

        Cheap between database re-reads (every RECHECK_SECONDS); may touch the ORM (call it
        through `database_sync_to_async` from a consumer).
        """
        if self._session_expiry is not None and time.time() >= self._session_expiry:
            return "expired"
        if time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return None
        self._checked_at = time.monotonic()
        self.user.refresh_from_db(fields=["is_active"])
        if not self.user.is_active:
            return "revoked"
        if self._session_key is not None:
            reason = _session_reason(self._session_key, self.user)
            if reason is not None:
                return reason
        self.user._lightbox_memberships = None  # re-read roles: a removed membership revokes access
        if self._study is not None and not self.studies().filter(pk=self._study.pk).exists():
            return "revoked"
        return None

    async def ais_current(self) -> str | None:
        """`is_current()` for the event loop: the clock check inline, the database re-read in a thread."""
        if self._session_expiry is not None and time.time() >= self._session_expiry:
            return "expired"
        if time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return None
        return await database_sync_to_async(self.is_current)()


def _session_reason(session_key: str, user) -> str | None:
    """Why a user's session can no longer be used ("signed_out", "expired"), or None."""
    store = _session_store(session_key)
    if not store.exists(session_key) or not session_is_verified(store, user):
        return "signed_out"
    reason = session_policy.check_session(store, user)
    if reason == session_policy.ENDED:
        return "signed_out"
    if reason == session_policy.ABSOLUTE:
        return "expired"
    # An idle session is logged off by the session policy itself, which pushes a closing
    # "session.event" to the user's sockets; a socket streaming frames is not idle here.
    # A session without a record (UNKNOWN) is refused by the guard at its next handshake.
    return None


def _session_store(session_key: str) -> SessionBase:
    engine = import_module(settings.SESSION_ENGINE)
    return engine.SessionStore(session_key)


def _resolver(suffix: str):
    path = getattr(settings, "LIGHTBOX_SHARE_PRINCIPAL_RESOLVER", None)
    if not path:
        return None
    return import_string(f"{path}.share_principal_for_{suffix}")


def _expiry_timestamp(session) -> float | None:
    try:
        return session.get_expiry_date().timestamp()
    except (AttributeError, TypeError, ValueError):
        return None


def principal_for_request(request) -> ViewerPrincipal | None:
    """The principal of an HTTP request: a verified user, else the share resolver's answer, else None."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if user is not None and session is not None and session_is_verified(session, user):
        return UserPrincipal(user, session_key=session.session_key, session_expiry=_expiry_timestamp(session))
    resolver = _resolver("request")
    return resolver(request) if resolver is not None else None


def _principal_for_scope_sync(scope) -> ViewerPrincipal | None:
    user = scope.get("user")
    session = scope.get("session")
    if user is not None and session is not None and session_is_verified(session, user):
        return UserPrincipal(user, session_key=session.session_key, session_expiry=_expiry_timestamp(session))
    resolver = _resolver("scope")
    return resolver(scope) if resolver is not None else None


async def principal_for_scope(scope) -> ViewerPrincipal | None:
    """The principal of a websocket scope (async-safe)."""
    return await database_sync_to_async(_principal_for_scope_sync)(scope)
