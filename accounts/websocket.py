"""The websocket guard that sits between Channels' auth middleware and the URL router."""

from __future__ import annotations

from channels.db import database_sync_to_async

from accounts.mfa import session_is_verified
from config.client_ip import client_ip_of_scope, client_ip_var


class RequireSignedInUser:
    """Refuse the handshake unless the session belongs to an active user who passed a second factor.

    # SECURITY: refusing before the router means no consumer ever runs for an anonymous or
    # password-only socket. Close code 4401 tells the page to send the user to sign in.
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        # The policy's network rules read the client address from here, as on HTTP requests.
        client_ip_var.set(client_ip_of_scope(scope))
        if scope["type"] == "websocket" and not await self._allowed(scope):
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 4401})
            return
        return await self.inner(scope, receive, send)

    @staticmethod
    async def _allowed(scope) -> bool:
        user = scope.get("user")
        session = scope.get("session")
        if user is None or session is None or not user.is_authenticated or not user.is_active:
            return await _share_socket_allowed(scope)
        return await database_sync_to_async(_session_usable)(session, user)


# Share recipients (issue #7) have no user session: Channels' auth middleware gives them an
# anonymous user. Their verified share cookie admits them to these paths only.
SHARE_SOCKET_PATHS = frozenset({"/ws/viewer/"})


async def _share_socket_allowed(scope) -> bool:
    from django.conf import settings
    from django.utils.module_loading import import_string

    # SECURITY: only the viewer socket, only with a share cookie that resolves to a live, verified
    # share session (sharing.principal, found by setting so accounts/ does not import sharing/).
    # The consumer then asks that principal for every lookup; every other socket stays refused.
    resolver_path = getattr(settings, "LIGHTBOX_SHARE_PRINCIPAL_RESOLVER", None)
    cookie_name = getattr(settings, "LIGHTBOX_SHARE_COOKIE_NAME", None)
    if scope.get("path") not in SHARE_SOCKET_PATHS or not resolver_path or not cookie_name:
        return False
    if not (scope.get("cookies") or {}).get(cookie_name):
        return False
    resolver = import_string(f"{resolver_path}.share_principal_for_scope")
    return await database_sync_to_async(resolver)(scope) is not None


def _session_usable(session, user) -> bool:
    from accounts.sessions import check_session

    # SECURITY: an idle, expired or ended-elsewhere session opens no socket (issue #6).
    return session_is_verified(session, user) and check_session(session, user) is None
