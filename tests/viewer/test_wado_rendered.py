"""WADO-RS rendered and thumbnail resources, driven by dicomweb-client against a live server."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.data import get_testdata_file

from accounts.models import Role
from accounts.tokens import issue_api_token
from archive import synthetic
from archive.services import ingest
from tests import factories

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def loaded(org):
    """A small CT series, a 3-frame ultrasound and a bundled MR, stored in `org`."""
    ct = synthetic.ct_study(slices=3, size=64)
    us = synthetic.us_multiframe(frames=3, rows=48, columns=64)
    for ds in [*ct, us]:
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    with open(get_testdata_file("MR_small.dcm"), "rb") as handle:
        assert ingest(stream=handle, organization=org, source="test").ok
    return {"ct": ct, "us": us}


def _client(base_url, user):
    _, token = issue_api_token(user=user)
    return DICOMwebClient(url=base_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"}), token


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_instance_rendered_returns_the_requested_viewport(live_server_url, owner, loaded):
    client, _ = _client(live_server_url, owner)
    ds = loaded["ct"][1]
    data = client.retrieve_instance_rendered(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, media_types=("image/jpeg",),
        params={"viewport": "32,32", "window": "40,400"},
    )
    image = _image(data)
    assert image.format == "JPEG" and image.size == (32, 32)
    assert np.asarray(image).std() > 5  # a real picture, not a flat field


def test_png_rendering_is_lossless_and_window_changes_pixels(live_server_url, owner, loaded):
    _, token = _client(live_server_url, owner)
    ds = loaded["ct"][0]
    url = (f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/rendered")
    headers = {"Authorization": f"Bearer {token}", "Accept": "image/png"}
    soft = requests.get(url, params={"window": "40,400"}, headers=headers, timeout=30)
    lung = requests.get(url, params={"window": "-600,1500"}, headers=headers, timeout=30)
    assert soft.status_code == lung.status_code == 200
    assert soft.headers["Content-Type"] == "image/png"
    assert "no-store" in soft.headers["Cache-Control"]
    assert not np.array_equal(np.asarray(_image(soft.content)), np.asarray(_image(lung.content)))


def test_series_thumbnail_and_study_thumbnail(live_server_url, owner, loaded):
    # dicomweb-client has no thumbnail call (PS3.18 10.7 is newer than it), so plain HTTP.
    _, token = _client(live_server_url, owner)
    ds = loaded["ct"][0]
    headers = {"Authorization": f"Bearer {token}", "Accept": "image/jpeg"}
    series_url = f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/thumbnail"
    thumb = requests.get(series_url, headers=headers, timeout=30)
    assert thumb.status_code == 200 and max(_image(thumb.content).size) == 128
    small = requests.get(series_url, params={"viewport": "40,40"}, headers=headers, timeout=30)
    assert max(_image(small.content).size) == 40
    study = requests.get(f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/thumbnail", headers=headers, timeout=30)
    assert study.status_code == 200 and _image(study.content).format == "JPEG"


def test_series_rendered_through_dicomweb_client(live_server_url, owner, loaded):
    client, _ = _client(live_server_url, owner)
    ds = loaded["ct"][0]
    # dicomweb-client hands back the multipart body as it came; split it into its parts.
    body = client.retrieve_series_rendered(ds.StudyInstanceUID, ds.SeriesInstanceUID, media_types=("image/jpeg",))
    boundary = body.split(b"\r\n", 1)[0]
    parts = [part for part in body.split(boundary)[1:] if part.strip(b"-\r\n")]
    images = [part.split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n") for part in parts]
    assert len(images) == 3 and all(_image(image).size == (64, 64) for image in images)


def test_multiframe_frames_render_differently(live_server_url, owner, loaded):
    client, _ = _client(live_server_url, owner)
    us = loaded["us"]
    frames = client.retrieve_instance_frames_rendered(
        us.StudyInstanceUID, us.SeriesInstanceUID, us.SOPInstanceUID, frame_numbers=[1], media_types=("image/png",)
    )
    third = client.retrieve_instance_frames_rendered(
        us.StudyInstanceUID, us.SeriesInstanceUID, us.SOPInstanceUID, frame_numbers=[3], media_types=("image/png",)
    )
    first_pixels, third_pixels = np.asarray(_image(frames)), np.asarray(_image(third))
    assert first_pixels.shape == (48, 64, 3)
    assert not np.array_equal(first_pixels, third_pixels)


def test_series_rendered_is_multipart_of_every_image(live_server_url, owner, loaded):
    _, token = _client(live_server_url, owner)
    ds = loaded["ct"][0]
    response = requests.get(f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/rendered",
                            headers={"Authorization": f"Bearer {token}", "Accept": "image/jpeg"}, timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith('multipart/related; type="image/jpeg"')
    assert response.content.count(b"Content-Type: image/jpeg") == 3


def test_other_organisation_gets_404_on_rendered_paths(live_server_url, outsider, loaded):
    _, token = _client(live_server_url, outsider)
    ds = loaded["ct"][0]
    base = f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}"
    paths = [
        "/rendered", "/thumbnail", f"/series/{ds.SeriesInstanceUID}/rendered", f"/series/{ds.SeriesInstanceUID}/thumbnail",
        f"/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered",
        f"/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/thumbnail",
        f"/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1/rendered",
    ]
    for path in paths:
        response = requests.get(base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert response.status_code == 404, path


def test_rendered_requires_authentication(live_server_url, loaded):
    ds = loaded["ct"][0]
    response = requests.get(f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/thumbnail", timeout=30)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "params, accept, status",
    [
        ({"window": "40"}, "image/jpeg", 400),
        ({"viewport": "0,10"}, "image/jpeg", 400),
        ({"viewport": "10,10,0,0,999,999"}, "image/jpeg", 400),
        ({"quality": "500"}, "image/jpeg", 400),
        ({"bogus": "1"}, "image/jpeg", 400),
        ({}, "image/gif", 406),
    ],
)
def test_bad_rendered_queries_get_a_clear_4xx(live_server_url, owner, loaded, params, accept, status):
    _, token = _client(live_server_url, owner)
    ds = loaded["ct"][0]
    url = (f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/rendered")
    response = requests.get(url, params=params, headers={"Authorization": f"Bearer {token}", "Accept": accept}, timeout=30)
    assert response.status_code == status
    assert response.json()["error"]


def test_a_frame_that_cannot_be_decoded_gets_422_and_the_server_keeps_serving(live_server_url, org, owner, loaded):
    ds = synthetic.compress(synthetic.ct_study(slices=1, size=64, seed=9)[0], transfer_syntax="1.2.840.10008.1.2.4.90")
    raw = bytearray(synthetic.to_bytes(ds))
    codestream = raw.rfind(b"\xff\x4f\xff\x51")  # JPEG 2000 SOC + SIZ
    raw[codestream + 60: codestream + 400] = bytes(340)  # wreck the coding parameters and data
    assert ingest(stream=io.BytesIO(bytes(raw)), organization=org, source="test").ok
    _, token = _client(live_server_url, owner)
    url = (f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/rendered")
    response = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 422 and response.json()["code"]
    good = loaded["ct"][0]
    again = requests.get(f"{live_server_url}/dicomweb/studies/{good.StudyInstanceUID}/thumbnail",
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert again.status_code == 200


def test_staff_of_same_org_may_render_but_auditor_may_not(live_server_url, org, loaded):
    staff = factories.make_user(organization=org, role=Role.STAFF)
    auditor = factories.make_user(organization=org, role=Role.AUDITOR)
    ds = loaded["ct"][0]
    for user, expected in ((staff, 200), (auditor, 404)):
        _, token = _client(live_server_url, user)
        response = requests.get(f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/thumbnail",
                                headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert response.status_code == expected


# -- remembered access decisions (config/recheck_cache.py) ----------------------------------


def _rendered_status(base_url, token, ds) -> int:
    url = (f"{base_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{ds.SOPInstanceUID}/rendered")
    return requests.get(url, headers={"Authorization": f"Bearer {token}", "Accept": "image/jpeg"}, timeout=30).status_code


@pytest.mark.parametrize("change", ["revoke token", "disable user", "remove membership"])
def test_a_remembered_decision_is_forgotten_as_soon_as_access_changes(live_server_url, owner, loaded, change):
    # The first frame puts the token and the instance lookup in the decision caches; each later
    # frame within 2 s is served from them, so a change must clear them in this process at once.
    from django.utils import timezone

    from accounts.models import ApiToken

    token_record, token = issue_api_token(user=owner)
    ds = loaded["ct"][0]
    assert _rendered_status(live_server_url, token, ds) == 200
    assert _rendered_status(live_server_url, token, ds) == 200  # served from the caches
    if change == "revoke token":
        token_record.revoked_at = timezone.now()
        token_record.save(update_fields=["revoked_at"])
        expected = 401
    elif change == "disable user":
        owner.is_active = False
        owner.save(update_fields=["is_active"])
        expected = 401
    else:
        owner.memberships.get().delete()
        expected = 404
    assert _rendered_status(live_server_url, token, ds) == expected
    assert ApiToken.objects.filter(pk=token_record.pk).exists()


def test_a_token_that_expires_while_remembered_is_refused(live_server_url, owner, loaded):
    import datetime as dt

    import time_machine
    from django.utils import timezone

    _, token = issue_api_token(user=owner, days=1)
    ds = loaded["ct"][0]
    assert _rendered_status(live_server_url, token, ds) == 200
    with time_machine.travel(timezone.now() + dt.timedelta(days=1, seconds=1)):
        assert _rendered_status(live_server_url, token, ds) == 401


def test_access_granted_right_after_a_refusal_works_at_once(live_server_url, org, other_org, loaded):
    # A caller refused a moment ago who is then given access is served on the very next request
    # (refusals are not remembered, and a membership change clears what is).
    from accounts.models import Membership

    outsider = factories.make_user(email="outsider@example.org", organization=other_org, role=Role.CLINICIAN)
    _, token = issue_api_token(user=outsider)
    ds = loaded["ct"][0]
    assert _rendered_status(live_server_url, token, ds) == 404
    Membership.objects.create(user=outsider, organization=org, role=Role.CLINICIAN)
    assert _rendered_status(live_server_url, token, ds) == 200


def test_a_jpeg2000_mammogram_fit_to_a_small_viewport_looks_like_its_uncompressed_twin(live_server_url, org, owner):
    # The JPEG 2000 view decodes only the wavelet level it needs (docs/render-pipeline.md);
    # the client sees the same picture as from the uncompressed original, to within a grey level.
    from pydicom.uid import JPEG2000Lossless, generate_uid

    original = synthetic.mammo_image(rows=1280, columns=1024)
    twin = synthetic.compress(original, transfer_syntax=JPEG2000Lossless)
    twin.SOPInstanceUID = twin.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for ds in (original, twin):
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    _, token = _client(live_server_url, owner)
    headers = {"Authorization": f"Bearer {token}", "Accept": "image/png"}
    pictures = []
    for ds in (original, twin):
        url = (f"{live_server_url}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
               f"/instances/{ds.SOPInstanceUID}/rendered")
        response = requests.get(url, params={"viewport": "256,256"}, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        pictures.append(np.asarray(_image(response.content)).astype(np.int16))
    assert pictures[0].shape == pictures[1].shape == (256, 205)
    assert pictures[0].std() > 20  # a breast on a background, not a flat field
    assert np.abs(pictures[0] - pictures[1]).mean() < 1.0
    # ...but not bit-identical: a whole-image decode would have been, so the level was used
    assert not np.array_equal(pictures[0], pictures[1])
