"""Websocket consumers."""

from __future__ import annotations

import json

from channels.generic.websocket import AsyncWebsocketConsumer


def user_group(user_id: int) -> str:
    """Return the channel-layer group that reaches every socket of one user."""
    return f"user.{user_id}"


class SessionEventsConsumer(AsyncWebsocketConsumer):
    """Pushes session events (signed out elsewhere, idle warning, access revoked) to a page.

    The client may only send `{"type": "ping"}`; anything else gets an error frame.
    """

    async def connect(self):
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
        """Forward a group message `{"type": "session.event", "event": ..., "reason": ...}`."""
        await self.send(json.dumps({"type": "session", "event": event["event"], "reason": event.get("reason", "")}))
        if event.get("close"):
            await self.close(code=4403)
