"""Ended sessions and open websockets: sockets close at once, and ended/idle sessions open none."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from accounts.models import UserSession
from accounts.sessions import end_all_sessions, end_session, hash_session_key
from config.asgi import application
from tests.factories import session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


async def _open(session_key: str):
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"origin", b"http://127.0.0.1:8000"),
        (b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_key}".encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/session/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def _assert_open(communicator):
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    assert json.loads(await communicator.receive_from(timeout=5)) == {"type": "pong"}


async def test_sign_out_everywhere_closes_every_open_socket_at_once(owner):
    keys = [await sync_to_async(session_key_for)(owner) for _ in range(2)]
    sockets = []
    for key in keys:
        communicator, connected, _ = await _open(key)
        assert connected
        sockets.append(communicator)

    ended = await sync_to_async(end_all_sessions)(owner, reason="signed_out_everywhere")

    assert ended == 2
    for communicator in sockets:
        message = json.loads(await communicator.receive_from(timeout=5))
        assert message == {"type": "session", "event": "signed_out", "reason": "signed_out_everywhere"}
        closed = await communicator.receive_output(timeout=5)
        assert closed == {"type": "websocket.close", "code": 4403}


async def test_ending_one_session_closes_only_its_sockets(owner):
    ending_key = await sync_to_async(session_key_for)(owner)
    staying_key = await sync_to_async(session_key_for)(owner)
    ending, _, _ = await _open(ending_key)
    staying, _, _ = await _open(staying_key)

    record = await UserSession.objects.aget(key_hash=hash_session_key(ending_key))
    await sync_to_async(end_session)(record, "ended_by_user")

    assert json.loads(await ending.receive_from(timeout=5))["event"] == "signed_out"
    assert (await ending.receive_output(timeout=5))["code"] == 4403
    assert await staying.receive_nothing(timeout=0.2)
    await _assert_open(staying)
    await staying.disconnect()


async def test_sign_out_everywhere_else_spares_the_current_session(owner):
    current_key = await sync_to_async(session_key_for)(owner)
    other_key = await sync_to_async(session_key_for)(owner)
    current, _, _ = await _open(current_key)
    other, _, _ = await _open(other_key)

    ended = await sync_to_async(end_all_sessions)(owner, reason="signed_out_elsewhere", except_session_key=current_key)

    assert ended == 1
    assert (await other.receive_output(timeout=5))["type"] == "websocket.send"
    assert await current.receive_nothing(timeout=0.2)
    await _assert_open(current)
    await current.disconnect()


async def test_ended_session_cannot_open_a_socket(owner):
    key = await sync_to_async(session_key_for)(owner)
    await sync_to_async(end_all_sessions)(owner, reason="signed_out_everywhere")
    _, connected, code = await _open(key)
    assert not connected and code == 4401


async def test_idle_session_cannot_open_a_socket(owner):
    start = datetime.now(UTC)
    with time_machine.travel(start, tick=False):
        key = await sync_to_async(session_key_for)(owner)
    with time_machine.travel(start + timedelta(minutes=14)):
        communicator, connected, _ = await _open(key)
        assert connected
        await communicator.disconnect()
    with time_machine.travel(start + timedelta(minutes=16)):
        _, connected, code = await _open(key)
    assert not connected and code == 4401
