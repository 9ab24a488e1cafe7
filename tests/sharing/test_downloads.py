"""Downloads: the streamed ZIP, its manifest, single-use 5-minute links, and view-only shares."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from datetime import UTC, datetime, timedelta

import pydicom
import pytest
import requests
import time_machine
from django.test import Client

from archive.models import Instance
from audit.models import AuditEvent
from sharing.errors import ShareRefused
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db


def _body(response) -> bytes:
    """Collect the async streaming body (the view streams through an async generator, as under ASGI)."""
    from asgiref.sync import async_to_sync

    async def collect():
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def _download_url(client) -> str:
    response = client.post("/share/download/")
    assert response.status_code == 303
    location = response["Location"]
    assert location.startswith("/share/download/zip?key=")
    return location


def _check_zip(data: bytes, study) -> zipfile.ZipFile:
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    assert names[-1] == "MANIFEST.sha256"
    manifest = archive.read("MANIFEST.sha256").decode().splitlines()
    listed = dict(reversed(line.split("  ", 1)) for line in manifest)
    dicom_names = [n for n in names if n.endswith(".dcm")]
    assert sorted(listed) == sorted(dicom_names)
    stored = {i.sha256_stored: i for i in Instance.objects.filter(series__study=study)}
    assert len(dicom_names) == len(stored)
    for name in dicom_names:
        content = archive.read(name)
        digest = hashlib.sha256(content).hexdigest()
        assert digest == listed[name]
        instance = stored.pop(digest)  # every file is one stored instance, byte for byte
        assert pydicom.dcmread(io.BytesIO(content)).SOPInstanceUID == instance.sop_instance_uid
    assert not stored
    return archive


def test_zip_matches_stored_hashes_and_manifest_and_is_audited(make_share, study):
    created = make_share(download="original")
    client = Client()
    page = open_and_verify(client, created)
    assert b'id="download"' in page.content
    response = client.get(_download_url(client))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert "no-store" in response["Cache-Control"]
    data = _body(response)
    archive = _check_zip(data, study)
    event = AuditEvent.objects.filter(action="share.downloaded").get()
    assert event.outcome == "success" and event.details["share_id"] == created.share.pk
    assert event.details["size"] == len(data)
    assert event.details["manifest_sha256"] == hashlib.sha256(archive.read("MANIFEST.sha256")).hexdigest()


def test_download_link_is_single_use(make_share):
    client = Client()
    open_and_verify(client, make_share(download="original"))
    url = _download_url(client)
    assert client.get(url).status_code == 200
    assert client.get(url).status_code == 404


def test_download_link_expires_after_five_minutes(make_share):
    with time_machine.travel(datetime(2030, 2, 2, 10, tzinfo=UTC), tick=False) as traveller:
        client = Client()
        open_and_verify(client, make_share(download="original"))
        url = _download_url(client)
        traveller.shift(timedelta(minutes=5, seconds=1))
        assert client.get(url).status_code == 404
        fresh = _download_url(client)
        traveller.shift(timedelta(minutes=4, seconds=59))
        assert client.get(fresh).status_code == 200


def test_download_link_is_bound_to_its_share_session(make_share):
    created = make_share(download="original")
    mine, theirs = Client(), Client()
    open_and_verify(mine, created)
    open_and_verify(theirs, created)
    url = _download_url(mine)
    assert theirs.get(url).status_code == 404
    assert Client().get(url).status_code == 404  # no share cookie at all


def test_view_only_share_has_no_download_path(make_share):
    client = Client()
    page = open_and_verify(client, make_share(download="none"))
    assert b'id="download"' not in page.content
    assert client.post("/share/download/").status_code == 404
    assert client.get("/share/download/zip").status_code == 404
    assert client.get("/share/download/zip?key=anything").status_code == 404
    assert not AuditEvent.objects.filter(action="share.downloaded").exists()


def test_unverified_session_cannot_download(make_share):
    created = make_share(download="original")
    client = Client()
    client.get(f"/s/{created.token}")
    assert client.post("/share/download/").status_code == 404


def test_original_download_right_needs_step_up(make_share):
    with pytest.raises(ShareRefused) as refused:
        make_share(download="original", step_up_fresh=False)
    assert refused.value.step_up


@pytest.mark.live
def test_zip_streams_through_the_live_server(live_server_url, org, owner):
    """The real ASGI server streams the ZIP (async body); the bytes check out against the archive."""
    from sharing import services
    from tests.sharing.helpers import store_study

    study = store_study(org, seed=3)
    created = services.create_share(
        creator=owner, study=study, recipient_name="Live", step_up_fresh=True, download="original"
    )
    with requests.Session() as http:
        page = http.get(f"{live_server_url}/s/{created.token}", timeout=10)
        assert page.status_code == 200 and created.token not in page.text
        verify_page = http.get(f"{live_server_url}/share/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', verify_page.text).group(1)
        headers = {"Referer": f"{live_server_url}/share/", "Origin": live_server_url}
        response = http.post(
            f"{live_server_url}/share/verify/", data={"code": created.access_code, "csrfmiddlewaretoken": token},
            headers=headers, timeout=10, allow_redirects=False,
        )
        assert response.status_code == 302, response.text[:300]
        landing = http.get(f"{live_server_url}/share/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', landing.text).group(1)
        response = http.post(
            f"{live_server_url}/share/download/", data={"csrfmiddlewaretoken": token}, headers=headers,
            timeout=10, allow_redirects=False,
        )
        assert response.status_code == 303
        with http.get(f"{live_server_url}{response.headers['Location']}", stream=True, timeout=30) as download:
            assert download.status_code == 200
            assert "Content-Length" not in download.headers  # streamed, not buffered
            data = b"".join(download.iter_content(64 * 1024))
    _check_zip(data, study)


def test_zip_is_built_in_constant_memory(org, owner, settings, monkeypatch):
    """Streaming a 5 MB scope keeps well under 1.5 MB of Python allocations alive at any time."""
    import tracemalloc

    from archive import synthetic
    from archive.models import Study
    from archive.services import ingest
    from sharing import downloads

    settings.LIGHTBOX_BLOB_CHUNK_BYTES = 64 * 1024
    monkeypatch.setattr(downloads, "CHUNK", 64 * 1024)
    datasets = synthetic.mr_study(series=1, slices=40, size=256, seed=11)
    for ds in datasets:
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    study = Study.objects.get(study_instance_uid=datasets[0].StudyInstanceUID)
    instances = list(Instance.objects.filter(series__study=study).select_related("series"))
    total = sum(i.size for i in instances)
    assert total > 5_000_000
    archive, tally = downloads.zip_stream(instances)
    tracemalloc.start()
    try:
        streamed = 0
        for chunk in archive:
            streamed += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed > total and len(tally.digests) == 40
    print(f"zip of {total} bytes streamed with a peak of {peak} bytes allocated")
    assert peak < 1_500_000, peak
