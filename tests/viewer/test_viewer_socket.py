"""The viewer websocket (/ws/viewer/) through the real ASGI stack and a real render pool.

Each guard gets a refused-connection test; malformed messages get error frames, never pixels.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct

import numpy as np
import pytest
import time_machine
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from PIL import Image

from archive import synthetic
from archive.services import ingest
from audit.models import AuditEvent
from config.asgi import application
from tests.factories import session_key_for, sign_in
from tests.viewer.fake_share import FakeSharePrincipal
from viewer.principal import user_group

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "http://127.0.0.1:8000"


def _store(datasets, organization):
    for ds in datasets:
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=organization, source="test").ok
    return datasets


@pytest.fixture
def ct(org):
    """Three 512 x 512 slices of the synthetic CT phantom (0.78125 mm pixels, the 100 mm rod)."""
    return _store(synthetic.ct_study(slices=3, size=512), org)


@pytest.fixture
def other_ct(other_org):
    return _store(synthetic.ct_study(slices=2, size=64, seed=7), other_org)


@pytest.fixture
def us(org):
    return _store([synthetic.us_multiframe(frames=4, rows=48, columns=64)], org)[0]


def _signed_in(user) -> Client:
    client = Client()
    sign_in(client, user)
    return client


def _ticket(client: Client, study_uid: str):
    return client.post("/viewer/ticket/", data=json.dumps({"study": study_uid}), content_type="application/json")


def _cookie(client: Client) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _headers(cookie: str | None, origin: str = ORIGIN):
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", origin.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return headers


async def _connect(cookie, origin=ORIGIN):
    communicator = WebsocketCommunicator(application, "/ws/viewer/", headers=_headers(cookie, origin))
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def _session_with_ticket(user, study_uid):
    client = await sync_to_async(_signed_in)(user)
    response = await sync_to_async(_ticket)(client, study_uid)
    assert response.status_code == 200, response.content
    return client, response.json()["ticket"]


async def _open_socket(user, study_uid):
    """A socket past hello: (communicator, client)."""
    client, ticket = await _session_with_ticket(user, study_uid)
    communicator, connected, _ = await _connect(_cookie(client))
    assert connected
    await communicator.send_json_to({"type": "hello", "ticket": ticket})
    assert await communicator.receive_json_from(timeout=10) == {"type": "ready", "study": study_uid}
    return communicator, client


async def _expect_closing(communicator, reason="bad_ticket"):
    message = json.loads(await communicator.receive_from(timeout=10))
    assert message["type"] == "closing" and message["reason"] == reason
    closed = await communicator.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4403}


def _split(binary: bytes):
    (length,) = struct.unpack(">I", binary[:4])
    header = json.loads(binary[4 : 4 + length])
    return header, binary[4 + length :]


async def _receive(communicator, timeout=20):
    """Next message: ("binary", header, image bytes) or ("text", message)."""
    output = await communicator.receive_output(timeout=timeout)
    if output.get("bytes") is not None:
        header, image = _split(output["bytes"])
        return ("binary", header, image)
    return ("text", json.loads(output["text"]))


def _frame(seq, instance, *, viewport=0, **extra):
    return {"type": "frame", "viewport": viewport, "seq": seq, "instance": instance, "frame": 0,
            "width": 512, "height": 512, **extra}


# -- guards ----------------------------------------------------------------------------------


async def test_anonymous_session_is_refused_before_the_consumer():
    communicator, connected, code = await _connect(None)
    assert not connected and code == 4401


async def test_password_only_session_is_refused(owner):
    key = await sync_to_async(session_key_for)(owner, verified=False)
    communicator, connected, code = await _connect(f"{settings.SESSION_COOKIE_NAME}={key}")
    assert not connected and code == 4401


async def test_wrong_origin_is_refused(owner, ct):
    client, _ = await _session_with_ticket(owner, ct[0].StudyInstanceUID)
    communicator, connected, _ = await _connect(_cookie(client), origin="https://evil.example")
    assert not connected


async def test_socket_without_a_ticket_is_closed_after_the_deadline(owner, monkeypatch):
    monkeypatch.setattr("viewer.stream.HELLO_SECONDS", 0.2)
    key = await sync_to_async(session_key_for)(owner)
    communicator, connected, _ = await _connect(f"{settings.SESSION_COOKIE_NAME}={key}")
    assert connected
    await _expect_closing(communicator)


async def test_first_message_other_than_hello_closes_the_socket(owner, ct):
    client, _ = await _session_with_ticket(owner, ct[0].StudyInstanceUID)
    communicator, connected, _ = await _connect(_cookie(client))
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID))
    await _expect_closing(communicator)


async def test_made_up_ticket_is_refused_and_audited(owner, ct):
    client, _ = await _session_with_ticket(owner, ct[0].StudyInstanceUID)
    communicator, _, _ = await _connect(_cookie(client))
    await communicator.send_json_to({"type": "hello", "ticket": "not-a-ticket"})
    await _expect_closing(communicator)
    assert await sync_to_async(AuditEvent.objects.filter(action="viewer.ticket", outcome="denied").count)() == 1


async def test_reused_ticket_is_refused(owner, ct):
    client, ticket = await _session_with_ticket(owner, ct[0].StudyInstanceUID)
    first, _, _ = await _connect(_cookie(client))
    await first.send_json_to({"type": "hello", "ticket": ticket})
    assert (await first.receive_json_from(timeout=10))["type"] == "ready"
    second, _, _ = await _connect(_cookie(client))
    await second.send_json_to({"type": "hello", "ticket": ticket})
    await _expect_closing(second)
    await first.disconnect()


async def test_expired_ticket_is_refused(owner, ct):
    with time_machine.travel("2026-01-01 12:00:00", tick=True) as traveller:
        client, ticket = await _session_with_ticket(owner, ct[0].StudyInstanceUID)
        traveller.shift(31)
        communicator, connected, _ = await _connect(_cookie(client))
        assert connected
        await communicator.send_json_to({"type": "hello", "ticket": ticket})
        await _expect_closing(communicator)


async def test_ticket_of_another_session_is_refused(owner, ct):
    _, ticket = await _session_with_ticket(owner, ct[0].StudyInstanceUID)
    other_session = await sync_to_async(_signed_in)(owner)  # same user, another browser
    communicator, _, _ = await _connect(_cookie(other_session))
    await communicator.send_json_to({"type": "hello", "ticket": ticket})
    await _expect_closing(communicator)


async def test_ticket_for_a_study_of_another_organisation_is_not_issued(owner, other_ct):
    client = await sync_to_async(_signed_in)(owner)
    response = await sync_to_async(_ticket)(client, other_ct[0].StudyInstanceUID)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


async def test_ticket_binds_the_socket_to_its_study(owner, org, ct):
    second_study = await sync_to_async(_store)(synthetic.ct_study(slices=1, size=64, seed=3), org)
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    # A study the user may see, but not the one the ticket was issued for: no pixels.
    await communicator.send_json_to(_frame(5, second_study[0].SOPInstanceUID))
    kind, message = await _receive(communicator)
    assert kind == "text" and message["code"] == "not_found" and message["seq"] == 5
    await communicator.disconnect()


async def test_frame_for_another_organisations_uid_is_not_found(owner, ct, other_ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to(_frame(1, other_ct[0].SOPInstanceUID))
    kind, message = await _receive(communicator)
    assert kind == "text" and message == {"type": "error", "code": "not_found", "seq": 1, "viewport": 0,
                                          "message": "no such image in this study"}
    await communicator.send_json_to({"type": "open", "viewport": 0, "series": other_ct[0].SeriesInstanceUID})
    kind, message = await _receive(communicator)
    assert kind == "text" and message["code"] == "not_found"
    await communicator.disconnect()


@pytest.mark.parametrize(
    "payload",
    [
        "this is not json",
        "[1, 2]",
        json.dumps({"type": "teleport"}),
        json.dumps({"type": "ping", "extra": 1}),
        json.dumps({"type": "frame", "viewport": "0", "seq": 1, "instance": "1.2", "width": 64, "height": 64}),
        json.dumps({"type": "frame", "viewport": 0, "seq": 1, "instance": "1.2", "width": 5000, "height": 64}),
        json.dumps({"type": "frame", "viewport": 9, "seq": 1, "instance": "1.2", "width": 64, "height": 64}),
        json.dumps({"type": "frame", "viewport": 0, "seq": 1, "instance": "1.2", "width": 64, "height": 64,
                    "rotation": 45}),
        json.dumps({"type": "frame", "viewport": 0, "seq": 1, "instance": "'; DROP", "width": 64, "height": 64}),
        json.dumps({"type": "measure", "seq": 1, "instance": "1.2", "shape": "line", "points": [[1, 2]]}),
    ],
    ids=["not-json", "not-object", "unknown-type", "unknown-field", "wrong-type", "oversized-width",
         "bad-viewport", "bad-rotation", "bad-uid", "too-few-points"],
)
async def test_malformed_messages_get_error_frames_never_pixels(owner, ct, payload):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_to(text_data=payload)
    kind, message = await _receive(communicator)
    assert kind == "text" and message["type"] == "error" and message["code"] == "bad_message"
    assert message["message"]
    # The socket stays usable, and nothing else (no pixels) was sent for the bad message.
    await communicator.send_json_to({"type": "ping"})
    assert await _receive(communicator) == ("text", {"type": "pong"})
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_binary_message_is_refused(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_to(bytes_data=b"\x00\x01")
    kind, message = await _receive(communicator)
    assert kind == "text" and message["code"] == "bad_message"
    await communicator.disconnect()


# -- frames ----------------------------------------------------------------------------------


async def test_open_lists_the_series_and_a_frame_is_a_decodable_jpeg_matching_its_header(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to({"type": "open", "viewport": 0, "series": ct[0].SeriesInstanceUID})
    kind, series = await _receive(communicator)
    assert kind == "text" and series["type"] == "series"
    assert [i["uid"] for i in series["instances"]] == [ds.SOPInstanceUID for ds in ct]
    assert series["instances"][0]["rows"] == 512 and series["instances"][0]["frames"] == 1
    assert "DEMO, CT" in series["overlay"]["tl"]

    await communicator.send_json_to(_frame(7, ct[1].SOPInstanceUID, width=256, height=256,
                                           window={"center": 40, "width": 400}))
    kind, header, data = await _receive(communicator)
    assert kind == "binary"
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG" and image.size == (header["width"], header["height"]) == (256, 256)
    assert np.asarray(image).std() > 5
    assert header["seq"] == 7 and header["instance"] == ct[1].SOPInstanceUID and header["frame"] == 0
    assert header["encoding"] == "jpeg" and header["tier"] == "interactive" and header["viewport"] == 0
    assert header["window"] == {"center": 40, "width": 400}
    overlay = header["overlay"]
    assert "W: 400 L: 40" in overlay["bl"] and "Zoom: 0.50x" in overlay["bl"]
    assert "Im: 2 (2/3)" in overlay["tr"] and any(line.startswith("Thk:") for line in overlay["br"])
    assert overlay["tl"][0] == "DEMO, CT"
    await communicator.disconnect()


async def test_final_tier_is_lossless_png_and_default_window_is_reported(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, tier="final", width=128, height=128))
    kind, header, data = await _receive(communicator)
    assert kind == "binary" and header["encoding"] == "png" and header["tier"] == "final"
    assert Image.open(io.BytesIO(data)).format == "PNG"
    assert header["window"] is not None and header["window"]["width"] > 0
    await communicator.disconnect()


async def test_region_rotation_and_zoom_follow_the_request(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, region=[0, 0, 256, 128], width=512,
                                           height=512, rotation=90))
    kind, header, data = await _receive(communicator)
    assert kind == "binary"
    # 256 x 128 source pixels rotated a quarter turn fit 512 x 512 as 256 wide x 512 high: zoom 2.
    assert (header["width"], header["height"]) == (256, 512)
    assert "Zoom: 2.00x" in header["overlay"]["bl"]
    await communicator.disconnect()


async def test_newest_frame_request_wins_per_viewport(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    for seq in range(10):
        await communicator.send_json_to(_frame(seq, ct[seq % 3].SOPInstanceUID, tier="final",
                                               window={"center": 40 + seq, "width": 400}))
    received = []
    while True:
        kind, *rest = await _receive(communicator)
        assert kind == "binary"
        received.append(rest[0]["seq"])
        if rest[0]["seq"] == 9:
            break
    assert received == sorted(received) and len(received) <= 4, received
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()
    event = await sync_to_async(AuditEvent.objects.get)(action="viewer.session")
    assert event.details["final"] == len(received) and event.details["dropped"] == 10 - len(received)


async def test_cancel_drops_the_pending_request(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    for seq in range(3):
        await communicator.send_json_to(_frame(seq, ct[0].SOPInstanceUID, tier="final",
                                               window={"center": seq, "width": 300}))
    await communicator.send_json_to({"type": "cancel", "viewport": 0})
    received = []
    while not await communicator.receive_nothing(timeout=1.0):
        kind, header, _ = await _receive(communicator)
        received.append(header["seq"])
    assert 2 not in received and len(received) <= 2
    await communicator.disconnect()


async def test_viewports_are_independent(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, viewport=0, width=64, height=64))
    await communicator.send_json_to(_frame(2, ct[1].SOPInstanceUID, viewport=1, width=64, height=64))
    seen = set()
    for _ in range(2):
        kind, header, _ = await _receive(communicator)
        seen.add((header["viewport"], header["seq"]))
    assert seen == {(0, 1), (1, 2)}
    await communicator.disconnect()


async def test_multiframe_frames_and_out_of_range_frame(owner, us):
    communicator, _ = await _open_socket(owner, us.StudyInstanceUID)
    await communicator.send_json_to({"type": "open", "viewport": 0, "series": us.SeriesInstanceUID})
    kind, series = await _receive(communicator)
    assert series["fps"] == 30 and series["instances"][0]["frames"] == 4 and series["modality"] == "US"
    await communicator.send_json_to(_frame(1, us.SOPInstanceUID, frame=3, width=64, height=48))
    kind, header, _ = await _receive(communicator)
    assert kind == "binary" and header["frame"] == 3 and "Fr: 4/4" in header["overlay"]["tr"][-1]
    await communicator.send_json_to(_frame(2, us.SOPInstanceUID, frame=4, width=64, height=48))
    kind, message = await _receive(communicator)
    assert kind == "text" and message["code"] == "bad_message" and message["seq"] == 2
    await communicator.disconnect()


# -- measurements ----------------------------------------------------------------------------


async def test_length_of_the_phantom_rod_reads_100_mm(owner, ct):
    (x0, row), (x1, _) = synthetic.calibration_rod_endpoints(size=512, pixel_spacing=synthetic.ct_pixel_spacing(512))
    assert (x0, row, x1) == (192, 467, 320)
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to({"type": "measure", "seq": 3, "instance": ct[1].SOPInstanceUID, "frame": 0,
                                     "shape": "line", "points": [[x0, row], [x1, row]]})
    kind, reply = await _receive(communicator)
    assert kind == "text" and reply["type"] == "measurement" and reply["seq"] == 3
    assert abs(reply["length_mm"] - synthetic.ROD_LENGTH_MM) <= synthetic.ct_pixel_spacing(512)
    assert reply["spacing_source"] == "PixelSpacing" and reply["pixel_spacing"] == [0.78125, 0.78125]
    await communicator.disconnect()


async def test_roi_statistics_are_in_hounsfield_units(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    # Inside the rod (3000 HU, 3 rows thick at row 467): mean 3000 within the noise.
    await communicator.send_json_to({"type": "measure", "seq": 4, "instance": ct[0].SOPInstanceUID,
                                     "shape": "rect", "points": [[200, 466], [300, 469]]})
    kind, reply = await _receive(communicator)
    assert kind == "text" and reply["units"] == "HU" and reply["pixels"] == 300
    assert abs(reply["mean"] - synthetic.ROD_HU) < 5 and reply["sd"] < 25
    assert reply["area_mm2"] == pytest.approx(300 * 0.78125**2, abs=0.01)
    # An ellipse in the air outside the body: about -1000 HU.
    await communicator.send_json_to({"type": "measure", "seq": 5, "instance": ct[0].SOPInstanceUID,
                                     "shape": "ellipse", "points": [[5, 5], [45, 25]]})
    kind, reply = await _receive(communicator)
    assert abs(reply["mean"] + 1000) < 10 and reply["min"] >= -1024
    await communicator.send_json_to({"type": "measure", "seq": 6, "instance": ct[0].SOPInstanceUID,
                                     "shape": "angle", "points": [[10, 0], [0, 0], [0, 10]]})
    kind, reply = await _receive(communicator)
    assert reply["angle_deg"] == pytest.approx(90.0)
    await communicator.disconnect()


# -- closing ---------------------------------------------------------------------------------


async def test_revoke_message_closes_the_socket_with_a_reason(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await get_channel_layer().group_send(user_group(owner.pk), {"type": "viewer.revoke", "reason": "access removed"})
    message = json.loads(await communicator.receive_from(timeout=10))
    assert message["type"] == "closing" and message["reason"] == "revoked"
    assert await communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4403}


async def test_sign_out_event_for_this_session_closes_it(owner, ct):
    from accounts.sessions import hash_session_key

    communicator, client = await _open_socket(owner, ct[0].StudyInstanceUID)
    other = hash_session_key("some-other-session")
    await get_channel_layer().group_send(user_group(owner.pk), {"type": "session.event", "event": "signed_out",
                                                                "reason": "x", "close": True, "session": other})
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=10) == {"type": "pong"}
    mine = hash_session_key(client.cookies[settings.SESSION_COOKIE_NAME].value)
    await get_channel_layer().group_send(user_group(owner.pk), {"type": "session.event", "event": "signed_out",
                                                                "reason": "x", "close": True, "session": mine})
    await _expect_closing(communicator, "signed_out")


async def test_signed_out_session_gets_no_more_frames(owner, ct, monkeypatch):
    monkeypatch.setattr("viewer.principal.RECHECK_SECONDS", 0.0)
    communicator, client = await _open_socket(owner, ct[0].StudyInstanceUID)
    await sync_to_async(client.logout)()  # deletes the session, as signing out does
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, width=64, height=64))
    await _expect_closing(communicator, "signed_out")


async def test_disconnect_audits_one_session_event_with_counts(owner, ct):
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    for seq in range(3):
        await communicator.send_json_to(_frame(seq, ct[seq].SOPInstanceUID, width=64, height=64))
        await _receive(communicator)
    await communicator.disconnect()
    await asyncio.sleep(0.1)
    events = await sync_to_async(list)(AuditEvent.objects.filter(action="viewer.session"))
    assert len(events) == 1
    assert events[0].details["interactive"] == 3 and events[0].object_id == ct[0].StudyInstanceUID


# -- PHI, redaction and watermark ------------------------------------------------------------


def _demographics_in(text: str) -> bool:
    patient = synthetic.ct_study.__kwdefaults__["patient"]
    return any(value in text for value in ("DEMO, CT", patient.patient_id, patient.birth_date, "1958-03-14"))


class _NoPhiPrincipal:
    """A user principal that may not see PHI and has a burned-in band to black out (as a redacted share)."""

    def __new__(cls, base):
        from viewer.principal import UserPrincipal

        class NoPhi(UserPrincipal):
            def may_see_phi(self, study):
                return False

            def redactions_for(self, instance):
                return ((0, 0, instance.columns, 40),)

        principal = NoPhi(base.user, session_key=base._session_key)
        return principal


async def test_without_phi_the_overlay_has_no_demographics_and_redactions_are_burned_in(owner, ct, monkeypatch):
    import viewer.stream

    real = viewer.stream.principal_for_scope

    async def no_phi(scope):
        return _NoPhiPrincipal(await real(scope))

    monkeypatch.setattr(viewer.stream, "principal_for_scope", no_phi)
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to({"type": "open", "viewport": 0, "series": ct[0].SeriesInstanceUID})
    kind, series = await _receive(communicator)
    assert series["overlay"]["tl"] == [] and not _demographics_in(json.dumps(series))
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, tier="final", invert=True,
                                           window={"center": 40, "width": 400}))
    kind, header, data = await _receive(communicator)
    assert header["overlay"]["tl"] == [] and not _demographics_in(json.dumps(header))
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert (pixels[:40] == 0).all()  # the band is black although inverted air is white
    assert pixels[40:60].mean() > 200
    await communicator.disconnect()


async def test_organisation_watermark_is_burned_into_every_frame(owner, org, ct):
    from accounts.models import Organization

    async def final_frame():
        communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
        await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, tier="final", width=256, height=256,
                                               window={"center": 40, "width": 400}))
        kind, header, data = await _receive(communicator)
        await communicator.disconnect()
        return np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(int)

    plain = await final_frame()
    await sync_to_async(Organization.objects.filter(pk=org.pk).update)(watermark_internal_users=True)
    marked = await final_frame()
    assert plain.shape == marked.shape and (np.abs(plain - marked) > 0).mean() > 0.01


async def test_neighbours_are_prefetched_into_the_worker_caches(owner, org):
    from viewer.rendering import get_pool

    stack = await sync_to_async(_store)(synthetic.ct_study(slices=5, size=64, seed=11), org)
    pool = get_pool()

    def decoded_entries():
        return sum(stats["entries"] for stats in pool.cache_stats())

    communicator, _ = await _open_socket(owner, stack[0].StudyInstanceUID)
    await communicator.send_json_to({"type": "open", "viewport": 0, "series": stack[0].SeriesInstanceUID})
    await _receive(communicator)
    before = await asyncio.to_thread(decoded_entries)
    await communicator.send_json_to(_frame(1, stack[2].SOPInstanceUID, width=64, height=64))
    kind, header, _ = await _receive(communicator)
    assert kind == "binary"
    # The shown slice (2 cache entries alone) and its four neighbours (±2) end up decoded, unasked.
    for _ in range(100):
        if await asyncio.to_thread(decoded_entries) - before >= 6:
            break
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(decoded_entries) - before >= 6
    await communicator.disconnect()


async def test_session_ended_elsewhere_stops_frames_even_without_a_channel_message(owner, ct, monkeypatch):
    from django.utils import timezone

    from accounts.models import UserSession

    monkeypatch.setattr("viewer.principal.RECHECK_SECONDS", 0.0)
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, width=64, height=64))
    assert (await _receive(communicator))[0] == "binary"
    ended = await sync_to_async(UserSession.objects.filter(user=owner).update)(ended_at=timezone.now())
    assert ended >= 1
    await communicator.send_json_to(_frame(2, ct[0].SOPInstanceUID, width=64, height=64))
    await _expect_closing(communicator, "signed_out")


async def test_removed_membership_revokes_the_open_socket(owner, ct, monkeypatch):
    from accounts.models import Membership

    monkeypatch.setattr("viewer.principal.RECHECK_SECONDS", 0.0)
    communicator, _ = await _open_socket(owner, ct[0].StudyInstanceUID)
    await sync_to_async(Membership.objects.filter(user=owner).delete)()
    await communicator.send_json_to(_frame(1, ct[0].SOPInstanceUID, width=64, height=64))
    await _expect_closing(communicator, "revoked")


# -- a share recipient (stand-in resolver; sharing/ tests its own principal) -------------------

_SHARE_COOKIE = "test-share"


def share_principal_for_request(request):
    study_uid = request.COOKIES.get(_SHARE_COOKIE)
    return FakeSharePrincipal(share_id=77, study_instance_uid=study_uid) if study_uid else None


def share_principal_for_scope(scope):
    study_uid = (scope.get("cookies") or {}).get(_SHARE_COOKIE)
    return FakeSharePrincipal(share_id=77, study_instance_uid=study_uid) if study_uid else None


async def test_share_recipient_without_an_account_streams_watermarked_frames_without_phi(settings, us):
    settings.LIGHTBOX_SHARE_PRINCIPAL_RESOLVER = "tests.viewer.test_viewer_socket"
    settings.LIGHTBOX_SHARE_COOKIE_NAME = _SHARE_COOKIE

    def ticket_for_recipient():
        client = Client()
        client.cookies[_SHARE_COOKIE] = us.StudyInstanceUID
        response = _ticket(client, us.StudyInstanceUID)
        assert response.status_code == 200, response.content
        return client, response.json()["ticket"]

    client, ticket = await sync_to_async(ticket_for_recipient)()
    cookie = f"{_cookie(client)}; {_SHARE_COOKIE}={us.StudyInstanceUID}"
    communicator, connected, _ = await _connect(cookie)
    assert connected
    await communicator.send_json_to({"type": "hello", "ticket": ticket})
    assert (await communicator.receive_json_from(timeout=10))["type"] == "ready"
    await communicator.send_json_to(_frame(1, us.SOPInstanceUID, width=64, height=48, tier="final", invert=True))
    kind, header, data = await _receive(communicator)
    assert kind == "binary" and header["overlay"]["tl"] == []
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert (pixels[:8] == 0).all()
    await communicator.disconnect()
    event = await sync_to_async(AuditEvent.objects.get)(action="viewer.session")
    assert not event.actor_id and event.details["share_id"] == 77 and event.details["final"] == 1


async def test_share_cookie_does_not_open_other_sockets_or_studies(settings, us, ct):
    settings.LIGHTBOX_SHARE_PRINCIPAL_RESOLVER = "tests.viewer.test_viewer_socket"
    settings.LIGHTBOX_SHARE_COOKIE_NAME = _SHARE_COOKIE

    def ticket_for_other_study():
        client = Client()
        client.cookies[_SHARE_COOKIE] = us.StudyInstanceUID
        return _ticket(client, ct[0].StudyInstanceUID)

    assert (await sync_to_async(ticket_for_other_study)()).status_code == 404
    session_socket = WebsocketCommunicator(application, "/ws/session/",
                                           headers=_headers(f"{_SHARE_COOKIE}={us.StudyInstanceUID}"))
    connected, code = await session_socket.connect(timeout=10)
    assert not connected and code == 4401
