"""The websocket guard that sits between Channels' auth middleware and the URL router."""

from __future__ import annotations


class RequireSignedInUser:
    """Refuse the handshake unless the session belongs to an active, signed-in user.

    # SECURITY: refusing before the router means no consumer ever runs for an anonymous socket.
    Issue #6 tightens this to "signed in and second factor verified".
    """

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if scope["type"] == "websocket" and not (user is not None and user.is_authenticated and user.is_active):
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 4401})
            return
        return await self.inner(scope, receive, send)
