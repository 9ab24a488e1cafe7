"""Websocket consumers."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer

from viewer.stream import ViewerConsumer  # the viewer socket (/ws/viewer/) lives in viewer/stream.py

__all__ = ["SessionEventsConsumer", "ViewerConsumer", "user_group"]


def user_group(user_id: int) -> str:
    """Return the channel-layer group that reaches every socket of one user."""
    return f"user.{user_id}"


class SessionEventsConsumer(AsyncWebsocketConsumer):
    """Pushes session events (signed out elsewhere, idle warning, access revoked) to a page.

    The client may only send `{"type": "ping"}`; anything else gets an error frame.
    """

    async def connect(self):
        from accounts.sessions import hash_session_key

        session_key = getattr(self.scope.get("session"), "session_key", None)
        # Which browser session this socket serves, so an event for one session closes only its sockets.
        self.session_hash = hash_session_key(session_key) if session_key else None
        self.group = user_group(self.scope["user"].pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "")
        except ValueError:
            message = None
        if message != {"type": "ping"}:
            await self.send(json.dumps({"type": "error", "code": "bad_message", "message": "Unsupported message."}))
            return
        await self.send(json.dumps({"type": "pong"}))

    async def session_event(self, event):
        """Forward a group message `{"type": "session.event", "event": ..., "reason": ...}`.

        Optional keys (never forwarded): `session`, the key hash of the one session concerned, and
        `except_session`, a session the event spares (sign out everywhere else).
        """
        if event.get("session") and event["session"] != self.session_hash:
            return
        if event.get("except_session") and event["except_session"] == self.session_hash:
            return
        await self.send(json.dumps({"type": "session", "event": event["event"], "reason": event.get("reason", "")}))
        if event.get("close"):
            await self.close(code=4403)
