"""The viewer websocket under a share: the guard admits a verified share cookie to /ws/viewer/ only,
other UIDs are not found, and revocation closes the socket at once."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from archive.models import Series
from config.asgi import application
from sharing import services
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = "http://127.0.0.1:8000"


def _headers(cookie: str):
    return [(b"host", b"127.0.0.1:8000"), (b"origin", ORIGIN.encode()), (b"cookie", cookie.encode())]


def _recipient(make_share, study, *, verify: bool = True, **share_kwargs):
    """A verified recipient browser: (share, cookie header, viewer ticket for the shared study)."""
    created = make_share(**share_kwargs)
    client = Client()
    if verify:
        open_and_verify(client, created)
    else:
        client.get(f"/s/{created.token}")
    ticket = None
    if verify:
        response = client.post(
            "/viewer/ticket/", json.dumps({"study": study.study_instance_uid}), content_type="application/json"
        )
        assert response.status_code == 200
        ticket = response.json()["ticket"]
    cookies = "; ".join(f"{name}={morsel.value}" for name, morsel in client.cookies.items())
    return created.share, cookies, ticket


async def _connect(path: str, cookie: str):
    communicator = WebsocketCommunicator(application, path, headers=_headers(cookie))
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def test_share_cookie_opens_only_the_viewer_socket(make_share, study):
    share, cookie, ticket = await sync_to_async(_recipient)(make_share, study)
    communicator, connected, code = await _connect("/ws/session/", cookie)
    assert not connected and code == 4401
    communicator, connected, _ = await _connect("/ws/viewer/", cookie)
    assert connected
    await communicator.send_to(text_data=json.dumps({"type": "hello", "ticket": ticket}))
    ready = json.loads(await communicator.receive_from(timeout=5))
    assert ready == {"type": "ready", "study": study.study_instance_uid}
    await communicator.disconnect()


async def test_unverified_or_forged_share_cookie_is_refused(make_share, study):
    _, cookie, _ = await sync_to_async(_recipient)(make_share, study, verify=False)
    communicator, connected, code = await _connect("/ws/viewer/", cookie)
    assert not connected and code == 4401
    communicator, connected, code = await _connect("/ws/viewer/", f"{settings.LIGHTBOX_SHARE_COOKIE_NAME}=forged")
    assert not connected and code == 4401


async def test_revoked_share_cookie_is_refused(make_share, study, owner):
    share, cookie, _ = await sync_to_async(_recipient)(make_share, study)
    await sync_to_async(services.revoke_share)(share=share, by=owner)
    communicator, connected, code = await _connect("/ws/viewer/", cookie)
    assert not connected and code == 4401


async def test_other_study_series_is_not_found_over_the_socket(make_share, study, other_study):
    share, cookie, ticket = await sync_to_async(_recipient)(make_share, study)
    other_series = await Series.objects.filter(study=other_study).afirst()
    communicator, connected, _ = await _connect("/ws/viewer/", cookie)
    assert connected
    await communicator.send_to(text_data=json.dumps({"type": "hello", "ticket": ticket}))
    await communicator.receive_from(timeout=5)  # ready
    await communicator.send_to(
        text_data=json.dumps({"type": "open", "viewport": 0, "series": other_series.series_instance_uid})
    )
    reply = json.loads(await communicator.receive_from(timeout=5))
    assert reply["type"] == "error" and reply["code"] == "not_found"
    await communicator.disconnect()


async def test_revocation_closes_the_open_socket_within_a_second(make_share, study, owner):
    share, cookie, ticket = await sync_to_async(_recipient)(make_share, study)
    communicator, connected, _ = await _connect("/ws/viewer/", cookie)
    assert connected
    await communicator.send_to(text_data=json.dumps({"type": "hello", "ticket": ticket}))
    assert json.loads(await communicator.receive_from(timeout=5))["type"] == "ready"
    await sync_to_async(services.revoke_share)(share=share, by=owner, reason="wrong recipient")
    # timeout=1: the "closing" frame and the close itself must arrive within a second.
    closing = json.loads(await communicator.receive_from(timeout=1))
    assert closing["type"] == "closing" and closing["reason"] == "revoked"
    closed = await communicator.receive_output(timeout=1)
    assert closed["type"] == "websocket.close" and closed["code"] == 4403


async def test_viewing_session_is_audited_with_the_share_id(make_share, study):
    from audit.models import AuditEvent

    share, cookie, ticket = await sync_to_async(_recipient)(make_share, study)
    communicator, connected, _ = await _connect("/ws/viewer/", cookie)
    await communicator.send_to(text_data=json.dumps({"type": "hello", "ticket": ticket}))
    await communicator.receive_from(timeout=5)
    await communicator.disconnect()
    event = await AuditEvent.objects.filter(action="viewer.session").alast()
    assert event is not None and event.details["share_id"] == share.pk
