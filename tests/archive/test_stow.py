"""STOW-RS against a live ASGI server: dicomweb-client for the happy paths, raw HTTP for the rest.

The server runs `StreamStowBodies` around the project's ASGI application, the composition
config/asgi.py uses, so request bodies go straight from the socket into the encrypted store.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import socket
import threading
import time
from urllib.parse import urlsplit

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from accounts.models import Role
from accounts.tokens import issue_api_token
from archive import synthetic
from archive.dicomweb import stow
from archive.models import Instance, Study
from archive.storage import get_store
from audit.models import AuditEvent
from tests import factories
from tests.conftest import free_port
from tests.factories import sign_in

from .faults import fail_blob_writes

pytestmark = pytest.mark.live

BOUNDARY = "lightbox-test-boundary"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
PATIENT = synthetic.SyntheticPatient(name="STOW^TESTPERSON", patient_id="STOW-0001")


class _Server:
    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, lifespan="off", log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the STOW test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server_url(transactional_db, settings):
    from config.asgi import application

    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    with _Server(stow.StreamStowBodies(application)) as server:
        yield server.url


@pytest.fixture
def staff(org):
    return factories.make_user(email="staff@example.org", organization=org, role=Role.STAFF, is_staff=True)


@pytest.fixture
def token(staff):
    return issue_api_token(user=staff, write=True)[1]


def client_for(url: str, token: str) -> DICOMwebClient:
    return DICOMwebClient(url=url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})


def study(slices: int = 3, **kwargs):
    return synthetic.ct_study(slices=slices, size=32, patient=kwargs.pop("patient", PATIENT), **kwargs)


def as_bytes(ds) -> bytes:
    return synthetic.to_bytes(ds)


def multipart(*parts: bytes, content_type: str = "application/dicom", close: bool = True) -> bytes:
    body = b"".join(f"--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n".encode() + part + b"\r\n" for part in parts)
    return body + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def post(
    url: str,
    token: str | None,
    body: bytes,
    *,
    content_type: str = STOW_TYPE,
    path: str = "/dicomweb/studies",
    **headers,
) -> requests.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(url + path, data=body, headers={"Content-Type": content_type, **headers}, timeout=30)


def snapshot() -> dict[str, str]:
    """SHA-256 of every stored object's plaintext, by SOP Instance UID."""
    store = get_store()
    out = {}
    for instance in Instance.objects.all():
        with store.open(instance.blob_id) as reader:
            out[instance.sop_instance_uid] = hashlib.sha256(reader.read()).hexdigest()
    return out


def healthy(url: str) -> bool:
    return requests.get(url + "/healthz", timeout=10).status_code == 200


# -- the happy path, with a real DICOMweb client ---------------------------------------------


def test_dicomweb_client_stores_a_study(server_url, token, org):
    datasets = study(slices=3)
    response = client_for(server_url, token).store_instances(datasets)

    referenced = response.ReferencedSOPSequence
    assert [item.ReferencedSOPInstanceUID for item in referenced] == [ds.SOPInstanceUID for ds in datasets]
    study_uid = datasets[0].StudyInstanceUID
    # dicomweb-client sends `Host` without the port, and RetrieveURLs are built from it.
    assert urlsplit(response.RetrieveURL).path == f"/dicomweb/studies/{study_uid}"
    assert urlsplit(referenced[0].RetrieveURL).path == (
        f"/dicomweb/studies/{study_uid}/series/{datasets[0].SeriesInstanceUID}/instances/{datasets[0].SOPInstanceUID}"
    )
    assert "FailedSOPSequence" not in response
    assert Study.objects.get().number_of_instances == 3
    for ds in datasets:
        sent = io.BytesIO()
        pydicom.dcmwrite(sent, ds)  # what dicomweb-client puts in each part
        instance = Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID)
        assert instance.sha256_received == hashlib.sha256(sent.getvalue()).hexdigest()
        assert (instance.organization_id, instance.source) == (org.pk, "stow")
    event = AuditEvent.objects.get(action="dicomweb.stow")
    assert event.details["stored"] == 3 and event.object_id == study_uid and event.actor_type == "api_token"
    assert "STOW" not in str(event.details) and "TESTPERSON" not in str(event.details)


def test_resending_reports_success_with_a_warning_and_stores_nothing_new(server_url, token):
    body = multipart(*map(as_bytes, study(slices=2)))
    assert post(server_url, token, body).status_code == 200
    before = snapshot()
    response = post(server_url, token, body)
    assert response.status_code == 200
    assert "already stored" in response.headers["Warning"]
    assert len(response.json()["00081199"]["Value"]) == 2
    assert snapshot() == before and Instance.objects.count() == 2


def test_study_url_stores_only_that_study(server_url, token):
    datasets = study(slices=2)
    uid = datasets[0].StudyInstanceUID
    response = client_for(server_url, token).store_instances(datasets, study_instance_uid=uid)
    assert len(response.ReferencedSOPSequence) == 2
    other = post(server_url, token, multipart(as_bytes(study(slices=1, seed=7)[0])), path=f"/dicomweb/studies/{uid}")
    assert other.status_code == 409
    assert other.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert Instance.objects.count() == 2


def test_a_partly_bad_request_stores_the_good_parts_and_answers_202(server_url, token):
    good, conflicting = study(slices=2)
    post(server_url, token, multipart(as_bytes(conflicting)))
    before = snapshot()
    conflicting.SeriesDescription = "CHANGED"
    body = multipart(as_bytes(good), b"this is not DICOM", as_bytes(conflicting))
    response = post(server_url, token, body)
    assert response.status_code == 202
    data = response.json()
    assert [item["00081155"]["Value"][0] for item in data["00081199"]["Value"]] == [good.SOPInstanceUID]
    assert [item["00081197"]["Value"][0] for item in data["00081198"]["Value"]] == [0xC000, 0x0111]
    assert data["00081198"]["Value"][1]["00081155"]["Value"] == [conflicting.SOPInstanceUID]
    after = snapshot()
    assert after[conflicting.SOPInstanceUID] == before[conflicting.SOPInstanceUID]
    assert set(after) == {good.SOPInstanceUID, conflicting.SOPInstanceUID}


def test_a_full_disk_answers_503_with_each_instance_failed_and_nothing_stored_changes(server_url, token, monkeypatch):
    import errno
    import os

    from archive.blobstore.backends import NAME_RE

    kept = study(slices=1, seed=3)[0]
    assert post(server_url, token, multipart(as_bytes(kept))).status_code == 200
    before = snapshot()
    real_fsync = os.fsync

    def full_disk(fd):
        if NAME_RE.fullmatch(os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    datasets = study(slices=2)
    response = post(server_url, token, multipart(*map(as_bytes, datasets)))
    monkeypatch.undo()
    assert response.status_code == 503 and response.headers["Retry-After"] == "60"
    assert response.headers["Content-Type"] == "application/dicom+json"
    failed = response.json()["00081198"]["Value"]
    assert [item["00081155"]["Value"][0] for item in failed] == [ds.SOPInstanceUID for ds in datasets]
    assert {item["00081197"]["Value"][0] for item in failed} == {0xA700}  # Out of Resources
    assert snapshot() == before
    assert sum(1 for _ in get_store().iter_blob_ids()) == 1  # the failed request's blobs are gone
    event = AuditEvent.objects.filter(action="dicomweb.stow").latest("pk")
    assert event.details["not_stored"] == 2 and event.outcome == "failure"
    # Space again: the same request stores
    assert healthy(server_url)
    assert post(server_url, token, multipart(*map(as_bytes, datasets))).status_code == 200


def test_a_write_error_on_one_instance_answers_202_with_that_one_failed(server_url, token, monkeypatch):
    import errno

    datasets = study(slices=3)
    fail_blob_writes(monkeypatch, first=3, error=errno.EIO)  # the second instance's first write
    response = post(server_url, token, multipart(*map(as_bytes, datasets)))
    monkeypatch.undo()
    assert response.status_code == 202
    data = response.json()
    assert [item["00081155"]["Value"][0] for item in data["00081199"]["Value"]] == [
        datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID]
    (failed,) = data["00081198"]["Value"]
    assert failed["00081155"]["Value"] == [datasets[1].SOPInstanceUID]
    assert failed["00081197"]["Value"] == [0x0110]  # Processing failure
    assert set(snapshot()) == {datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID}


def test_a_write_error_while_streaming_a_large_instance_reads_past_it_to_the_next(server_url, token, monkeypatch):
    import errno

    from archive import services

    monkeypatch.setattr(services, "SMALL_OBJECT_BYTES", 1024)  # every object takes the streaming path
    datasets = study(slices=3)
    fail_blob_writes(monkeypatch, first=6, error=errno.ENOSPC)  # the second instance's streamed chunk
    response = post(server_url, token, multipart(*map(as_bytes, datasets)))
    monkeypatch.undo()
    assert response.status_code == 202
    data = response.json()
    # The failed part's unread rest was skipped, so the third part was found and stored whole
    assert [item["00081155"]["Value"][0] for item in data["00081199"]["Value"]] == [
        datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID]
    assert [item["00081197"]["Value"] for item in data["00081198"]["Value"]] == [[0xA700]]
    assert set(snapshot()) == {datasets[0].SOPInstanceUID, datasets[2].SOPInstanceUID}


def test_nothing_storable_answers_409(server_url, token):
    response = post(server_url, token, multipart(b"junk", b"more junk"))
    assert response.status_code == 409
    assert len(response.json()["00081198"]["Value"]) == 2


# -- malformed requests: a clear 4xx, the server stays up, stored bytes stay the same -------

MALFORMED = {
    "not multipart": ("application/dicom", lambda: as_bytes(study(slices=1, seed=3)[0]), 415),
    "metadata parts": (
        f'multipart/related; type="application/dicom+json"; boundary={BOUNDARY}',
        lambda: multipart(b"{}"),
        415,
    ),
    "no boundary": ('multipart/related; type="application/dicom"', lambda: multipart(b"x"), 400),
    "bad boundary": ('multipart/related; type="application/dicom"; boundary="' + "x" * 80 + '"', lambda: b"", 400),
    "no parts": (STOW_TYPE, lambda: f"--{BOUNDARY}--\r\n".encode(), 400),
    "empty body": (STOW_TYPE, lambda: b"", 400),
    "no delimiter": (STOW_TYPE, lambda: b"just some bytes " * 100, 400),
    "no closing delimiter": (STOW_TYPE, lambda: multipart(b"abc", close=False)[:-2], 400),
    "headers never end": (
        STOW_TYPE,
        lambda: f"--{BOUNDARY}\r\nContent-Type: application/dicom".encode() + b"x" * 40000,
        400,
    ),
    "truncated object": (STOW_TYPE, lambda: multipart(as_bytes(study(slices=1, seed=5)[0]), close=False)[:-500], 400),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_get_a_clear_error(server_url, token, case):
    post(server_url, token, multipart(*map(as_bytes, study(slices=2))))
    before = snapshot()
    content_type, make_body, status = MALFORMED[case]
    response = post(server_url, token, make_body(), content_type=content_type)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert "Traceback" not in response.text
    assert healthy(server_url)
    assert snapshot() == before


def test_a_malformed_tail_keeps_the_whole_parts_before_it(server_url, token):
    first, second = study(slices=2)
    body = multipart(as_bytes(first), close=False) + f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body += as_bytes(second)[:300]
    response = post(server_url, token, body)
    assert response.status_code == 400
    assert "malformed" in response.headers["Warning"]
    assert [i["00081155"]["Value"][0] for i in response.json()["00081199"]["Value"]] == [first.SOPInstanceUID]
    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [first.SOPInstanceUID]
    assert sorted(get_store().iter_blob_ids()) == [Instance.objects.get().blob_id]


def test_a_client_that_disconnects_mid_body_leaves_no_partial_object(server_url, token):
    first, second = study(slices=2)
    body = multipart(as_bytes(first), as_bytes(second))
    cut = len(body) - 1000
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {STOW_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", int(server_url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(head + body[:cut])
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while not AuditEvent.objects.filter(action="dicomweb.stow").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert AuditEvent.objects.get(action="dicomweb.stow").outcome == "error"
    assert second.SOPInstanceUID not in set(Instance.objects.values_list("sop_instance_uid", flat=True))
    assert sorted(get_store().iter_blob_ids()) == sorted(Instance.objects.values_list("blob_id", flat=True))
    assert healthy(server_url)


# -- who may store ---------------------------------------------------------------------------


def test_anonymous_callers_get_401(server_url):
    assert post(server_url, None, multipart(b"x")).status_code == 401
    assert post(server_url, "lbx_not-a-token", multipart(b"x")).status_code == 401


def test_a_read_only_token_gets_403(server_url, staff):
    _, read_token = issue_api_token(user=staff, write=False)
    assert post(server_url, read_token, multipart(as_bytes(study(slices=1)[0]))).status_code == 403
    assert Instance.objects.count() == 0


def test_a_user_without_the_import_right_gets_403(server_url, owner):
    _, clinician_token = issue_api_token(user=owner, write=True)
    response = post(server_url, clinician_token, multipart(as_bytes(study(slices=1)[0])))
    assert response.status_code == 403
    assert Instance.objects.count() == 0
    assert AuditEvent.objects.get(action="dicomweb.stow").outcome == "denied"


def test_a_user_of_several_organisations_names_one(server_url, staff, token, other_org):
    factories.make_user  # noqa: B018
    from accounts.models import Membership

    Membership.objects.create(user=staff, organization=other_org, role=Role.STAFF)
    body = multipart(as_bytes(study(slices=1)[0]))
    assert post(server_url, token, body).status_code == 400
    assert post(server_url, token, body, path=f"/dicomweb/studies?organization={other_org.slug}").status_code == 200
    assert Instance.objects.get().organization_id == other_org.pk
    assert post(server_url, token, body, path="/dicomweb/studies?organization=nowhere").status_code == 403


def _session_cookie(user) -> dict[str, str]:
    from django.test import Client

    client = Client()
    sign_in(client, user)
    return {"lightbox-session": client.cookies["lightbox-session"].value}


def test_a_browser_session_needs_the_csrf_token(server_url, staff):
    cookies = _session_cookie(staff)
    body = multipart(as_bytes(study(slices=1)[0]))
    refused = requests.post(
        server_url + "/dicomweb/studies", data=body, cookies=cookies, headers={"Content-Type": STOW_TYPE}, timeout=30
    )
    assert refused.status_code == 403 and Instance.objects.count() == 0
    csrf = "a" * 32
    accepted = requests.post(
        server_url + "/dicomweb/studies",
        data=body,
        cookies={**cookies, "csrftoken": csrf},
        headers={"Content-Type": STOW_TYPE, "X-CSRFToken": csrf},
        timeout=30,
    )
    assert accepted.status_code == 200 and Instance.objects.count() == 1


# -- no plaintext on disk --------------------------------------------------------------------


@pytest.fixture
def spooled(monkeypatch):
    """Count request-body bytes Django writes to its (disk-backed) spool file."""
    import django.core.handlers.asgi as django_asgi

    written = []
    real = django_asgi.tempfile.SpooledTemporaryFile

    class Counting(real):
        def write(self, data):
            written.append(len(data))
            return super().write(data)

    monkeypatch.setattr(django_asgi.tempfile, "SpooledTemporaryFile", Counting)
    return written


def test_stow_bodies_are_never_spooled_by_django(server_url, token, spooled):
    datasets = study(slices=4)
    response = post(server_url, token, multipart(*map(as_bytes, datasets)))
    assert response.status_code == 200
    assert sum(spooled) == 0


async def test_the_project_asgi_application_streams_stow_bodies(spooled, settings):
    """config/asgi.py must wrap Django's HTTP app in StreamStowBodies (see stow.py)."""
    from config.asgi import application

    settings.ALLOWED_HOSTS = ["testserver"]
    body = multipart(b"x" * 100_000)
    messages = [
        {"type": "http.request", "body": body[i : i + 8192], "more_body": i + 8192 < len(body)}
        for i in range(0, len(body), 8192)
    ]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected until the response is sent

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/dicomweb/studies",
        "raw_path": b"/dicomweb/studies",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-type", STOW_TYPE.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await application(scope, receive, send)
    assert sent[0]["status"] == 401  # no credentials; what matters is that nothing was spooled
    assert sum(spooled) == 0, "config/asgi.py does not route STOW-RS bodies through StreamStowBodies"


def test_a_refused_large_body_still_gets_its_answer(server_url, staff):
    _, read_token = issue_api_token(user=staff, write=False)
    body = multipart(b"\0" * 20_000_000)
    assert post(server_url, None, body).status_code == 401
    assert post(server_url, read_token, body).status_code == 403
    assert post(server_url, read_token, body, content_type="application/dicom").status_code == 403
    assert healthy(server_url)


def test_without_the_streaming_middleware_the_view_reads_the_request(transactional_db, client, staff, token):
    """WSGI, or an ASGI stack without StreamStowBodies: same answers (Django buffered the body)."""
    datasets = study(slices=2)
    response = client.post("/dicomweb/studies", data=multipart(*map(as_bytes, datasets)), content_type=STOW_TYPE,
                           HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    assert Instance.objects.count() == 2


@pytest.mark.django_db
def test_an_ingest_thread_keeps_a_working_connection_and_replaces_a_failed_one(monkeypatch):
    """STOW threads keep their database connection between requests, unless it has failed."""
    from django.db import connection

    connection.ensure_connection()
    kept = connection.connection
    stow._drop_broken_connection()
    assert connection.connection is kept  # healthy: kept for the next request

    connection.errors_occurred = True  # an error that left the connection working
    stow._drop_broken_connection()
    assert connection.connection is kept and not connection.errors_occurred

    connection.errors_occurred = True
    monkeypatch.setattr(connection, "is_usable", lambda: False)  # e.g. the server went away
    closed = []
    monkeypatch.setattr(connection, "close", lambda: closed.append(True))
    stow._drop_broken_connection()
    assert closed == [True]
    connection.errors_occurred = False
