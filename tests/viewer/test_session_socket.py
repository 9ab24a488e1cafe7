"""The websocket stack: a round trip through the real ASGI application, and its guards."""

from __future__ import annotations

import json
import os

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from config.asgi import application
from tests.factories import sign_in
from viewer.consumers import user_group

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(cookie: str | None, origin: str = "http://127.0.0.1:8000"):
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return headers


def _session_cookie(user) -> str:
    client = Client()
    sign_in(client, user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def _connect(cookie, origin="http://127.0.0.1:8000"):
    communicator = WebsocketCommunicator(application, "/ws/session/", headers=_headers(cookie, origin))
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def test_signed_in_socket_round_trips_through_the_channel_layer(owner):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(_session_cookie)(owner)
    communicator, connected, _ = await _connect(cookie)
    assert connected
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    assert json.loads(await communicator.receive_from(timeout=5)) == {"type": "pong"}
    await get_channel_layer().group_send(user_group(owner.pk), {"type": "session.event", "event": "idle_warning", "reason": "2 minutes left"})
    assert json.loads(await communicator.receive_from(timeout=5)) == {"type": "session", "event": "idle_warning", "reason": "2 minutes left"}
    await communicator.disconnect()


async def test_layer_in_use_matches_the_environment():
    expected = "RedisChannelLayer" if os.environ.get("REDIS_URL") else "InMemoryChannelLayer"
    assert type(get_channel_layer()).__name__ == expected


async def test_anonymous_socket_is_refused():
    communicator, connected, code = await _connect(None)
    assert not connected and code == 4401


async def test_wrong_origin_is_refused(owner):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(_session_cookie)(owner)
    communicator, connected, _ = await _connect(cookie, origin="https://evil.example.com")
    assert not connected


async def test_malformed_message_gets_an_error_frame(owner):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(_session_cookie)(owner)
    communicator, connected, _ = await _connect(cookie)
    assert connected
    await communicator.send_to(text_data="{not json")
    reply = json.loads(await communicator.receive_from(timeout=5))
    assert reply["type"] == "error" and reply["code"] == "bad_message"
    await communicator.disconnect()
