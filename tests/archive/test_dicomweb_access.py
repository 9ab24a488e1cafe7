"""DICOMweb access rules: another organisation sees nothing and gets 404 everywhere; every
response is no-store; every request is one audit event, and no patient name reaches the audit
trail or the logs."""

from __future__ import annotations

import io
import json
import logging

import pydicom
import pytest
import requests
from asgiref.sync import async_to_sync
from dicomweb_client import DICOMwebClient
from pydicom.data import get_testdata_file

from accounts.tokens import issue_api_token
from archive import synthetic
from archive.services import ingest
from archive.synthetic import SyntheticPatient
from audit.models import AuditEvent
from tests.factories import sign_in

PATIENT = "ZWEISTEIN^HILDEGARD"


@pytest.fixture
def study(org) -> dict[str, str]:
    """One two-instance CT study; returns its UIDs and resource paths."""
    datasets = synthetic.ct_study(patient=SyntheticPatient(PATIENT, "P-77"), slices=2, size=16, seed=7)
    for ds in datasets:
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    ds = datasets[0]
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    instance = f"studies/{study}/series/{series}/instances/{sop}"
    return {
        "study": study,
        "series": series,
        "sop": sop,
        "study_path": f"studies/{study}",
        "series_path": f"studies/{study}/series/{series}",
        "instance_path": instance,
    }


def _resource_paths(s: dict[str, str]) -> list[str]:
    """Every DICOMweb GET resource of the study, one per view."""
    return [
        s["study_path"],
        f"{s['study_path']}/metadata",
        f"{s['study_path']}/series",
        f"{s['study_path']}/instances",
        s["series_path"],
        f"{s['series_path']}/metadata",
        f"{s['series_path']}/instances",
        s["instance_path"],
        f"{s['instance_path']}/metadata",
        f"{s['instance_path']}/frames/1",
        f"{s['instance_path']}/bulkdata/7FE00010",
    ]


def _read(response) -> bytes:
    """The whole body; WADO bodies are async generators, as under ASGI."""
    if not response.streaming:
        return response.content

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)()


def test_owner_reads_every_resource_and_every_response_is_no_store(client, owner, study):
    sign_in(client, owner)  # a browser session works as well as a token
    for path in [*_resource_paths(study), "studies", "series", "instances"]:
        response = client.get(f"/dicomweb/{path}")
        assert response.status_code == 200, path
        assert response["Cache-Control"] == "no-store", path
        assert _read(response), path


def test_errors_are_no_store_too(client, owner, study):
    sign_in(client, owner)
    for path in (f"{study['instance_path']}/frames/0", "studies/1.2.3", "studies?limit=x"):
        response = client.get(f"/dicomweb/{path}")
        assert response.status_code in (400, 404)
        assert response["Cache-Control"] == "no-store"


def test_outsider_gets_404_on_every_resource(client, outsider, study):
    sign_in(client, outsider)
    for path in _resource_paths(study):
        response = client.get(f"/dicomweb/{path}")
        assert response.status_code == 404, path
        # The same answer as for a UID that does not exist anywhere.
        unknown = client.get(f"/dicomweb/{path.replace(study['study'], '1.2.3.4.5')}")
        assert unknown.status_code == 404
        assert response.content == unknown.content


def test_outsider_finds_nothing(client, outsider, study):
    sign_in(client, outsider)
    for path in ("studies", "series", "instances"):
        response = client.get(f"/dicomweb/{path}", {"PatientName": "*"})
        assert response.status_code == 200 and response.json() == []


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_outsider_with_a_token_gets_404_from_a_dicomweb_client(live_server_url, outsider, study):
    _, token = issue_api_token(user=outsider)
    client = DICOMwebClient(url=live_server_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})
    assert client.search_for_studies() == []
    assert client.search_for_series() == []
    assert client.search_for_instances() == []
    attempts = [
        lambda: client.retrieve_study(study["study"]),
        lambda: client.retrieve_study_metadata(study["study"]),
        lambda: client.search_for_series(study["study"]),
        lambda: client.retrieve_series(study["study"], study["series"]),
        lambda: client.retrieve_series_metadata(study["study"], study["series"]),
        lambda: client.search_for_instances(study["study"], study["series"]),
        lambda: client.retrieve_instance(study["study"], study["series"], study["sop"]),
        lambda: client.retrieve_instance_metadata(study["study"], study["series"], study["sop"]),
        lambda: client.retrieve_instance_frames(study["study"], study["series"], study["sop"], [1]),
        lambda: client.retrieve_bulkdata(f"{live_server_url}/dicomweb/{study['instance_path']}/bulkdata/7FE00010"),
    ]
    for attempt in attempts:
        with pytest.raises(requests.HTTPError) as caught:
            attempt()
        assert caught.value.response.status_code == 404


def test_bad_frame_requests_are_refused(client, owner, study, org):
    sign_in(client, owner)
    frames = f"/dicomweb/{study['instance_path']}/frames"
    for bad in ("0", "2", "1,x", "-1", "1,,2"):
        assert client.get(f"{frames}/{bad}").status_code == 400, bad
    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm"))  # an RT Plan: no pixel data
    plan.file_meta.MediaStorageSOPInstanceUID = plan.SOPInstanceUID
    result = ingest(stream=io.BytesIO(synthetic.to_bytes(plan)), organization=org, source="test")
    assert result.ok
    no_pixels = f"/dicomweb/studies/{result.study_instance_uid}/series/{result.series_instance_uid}/instances/{result.sop_instance_uid}"
    assert client.get(f"{no_pixels}/frames/1").status_code == 400
    assert client.get(f"{no_pixels}/bulkdata/7FE00010").status_code == 404
    assert client.get(f"/dicomweb/{study['instance_path']}/bulkdata/00100010").status_code == 404
    assert client.get(f"/dicomweb/{study['instance_path']}/bulkdata/nonsense").status_code == 404


def test_unsupported_transfer_syntax_gets_406(client, owner, study):
    sign_in(client, owner)
    jpeg = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert client.get(f"/dicomweb/{study['instance_path']}", HTTP_ACCEPT=jpeg).status_code == 406
    assert client.get(f"/dicomweb/{study['study_path']}", HTTP_ACCEPT="application/zip").status_code == 406
    jls = 'multipart/related; type="image/jls"'
    assert client.get(f"/dicomweb/{study['instance_path']}/frames/1", HTTP_ACCEPT=jls).status_code == 406
    xml = 'multipart/related; type="application/dicom+xml"'
    assert client.get(f"/dicomweb/{study['study_path']}/metadata", HTTP_ACCEPT=xml).status_code == 406


def test_each_request_is_one_audit_event_with_keys_and_counts(client, owner, study):
    sign_in(client, owner)
    before = AuditEvent.objects.count()
    client.get("/dicomweb/studies", {"PatientName": PATIENT, "includefield": "InstitutionName"})
    _read(client.get(f"/dicomweb/{study['study_path']}"))
    _read(client.get(f"/dicomweb/{study['instance_path']}/frames/1"))
    client.get("/dicomweb/studies/1.2.3.4/series")
    client.get("/dicomweb/studies", {"limit": "x"})
    events = list(AuditEvent.objects.order_by("sequence")[before:])
    assert [(e.action, e.outcome) for e in events] == [
        ("dicomweb.search", "success"),
        ("dicomweb.retrieve", "success"),
        ("dicomweb.retrieve", "success"),
        ("dicomweb.search", "denied"),
        ("dicomweb.search", "failure"),
    ]
    search, retrieve, frames = events[:3]
    assert search.details["keys"] == ["PatientName"]
    assert search.details["includefield"] == ["InstitutionName"]
    assert search.details["results"] == 1
    assert search.actor_id == str(owner.pk)
    assert retrieve.object_id == study["study"] and retrieve.details["instances"] == 2
    assert retrieve.details["series"] == [study["series"]]
    assert frames.object_id == study["sop"] and frames.details["frames"] == [1]
    for event in events:
        assert PATIENT.split("^")[0] not in json.dumps(event.details)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_no_patient_name_in_audit_trail_or_logs(live_server_url, owner, study):
    _, token = issue_api_token(user=owner)
    handlers = {
        h
        for name in ("", "django.request", "uvicorn.access", "uvicorn.error")
        for h in logging.getLogger(name).handlers
        if isinstance(h, logging.StreamHandler)
    }
    captured = io.StringIO()
    previous = {h: h.setStream(captured) for h in handlers}
    access_log = logging.getLogger("uvicorn.access")
    level = access_log.level
    access_log.setLevel(logging.INFO)  # the access log line is where a query string would show
    try:
        headers = {"Authorization": f"Bearer {token}"}
        for params in (
            {"PatientName": PATIENT},
            {"PatientName": "zweist", "fuzzymatching": "true"},
            {"PatientName": PATIENT, "limit": "bad"},
        ):
            requests.get(f"{live_server_url}/dicomweb/studies", params=params, headers=headers, timeout=10)
        requests.get(f"{live_server_url}/dicomweb/{study['study_path']}/metadata", headers=headers, timeout=10)
        requests.get(f"{live_server_url}/dicomweb/instances", params={"PatientName": PATIENT}, timeout=10)
    finally:
        access_log.setLevel(level)
        for handler, stream in previous.items():
            handler.setStream(stream)
    output = captured.getvalue()
    assert "/dicomweb/studies" in output  # the requests were logged...
    assert "ZWEISTEIN" not in output.upper() and "zweist" not in output  # ...without the name
    details = json.dumps([e.details for e in AuditEvent.objects.all()])
    assert "ZWEISTEIN" not in details.upper()
    assert AuditEvent.objects.filter(action="dicomweb.search").count() == 3


def test_a_name_in_the_path_is_not_audited(client, owner, study):
    sign_in(client, owner)
    for path in (f"studies/{PATIENT}/metadata", f"studies/{PATIENT}/series", f"{study['study_path']}/series/{PATIENT}"):
        assert client.get(f"/dicomweb/{path}").status_code == 404
    events = AuditEvent.objects.filter(outcome="denied")
    assert events.count() == 3
    assert all(e.object_id == "" and "ZWEISTEIN" not in json.dumps(e.details) for e in events)


def test_resources_other_than_stow_answer_only_get(client, owner, study):
    sign_in(client, owner)
    for path in _resource_paths(study)[1:]:  # the first, /studies/{study}, also takes STOW's POST
        assert client.post(f"/dicomweb/{path}").status_code == 405, path
        assert client.delete(f"/dicomweb/{path}").status_code == 405, path
