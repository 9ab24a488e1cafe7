"""The viewer page, its ticket endpoint and the principal-checked series thumbnail."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from accounts.models import Organization
from archive import synthetic
from archive.services import ingest
from audit.models import AuditEvent
from tests.factories import sign_in
from tests.viewer.fake_share import FakeSharePrincipal
from viewer import tickets

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ct(org):
    datasets = synthetic.ct_study(slices=3, size=64)
    for ds in datasets:
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    return datasets


def _client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    sign_in(client, user)
    return client


def _page_data(response) -> dict:
    match = re.search(rb'<script id="viewer-data" type="application/json">(.*?)</script>', response.content, re.S)
    assert match, "page data missing"
    return json.loads(match.group(1))


def test_viewer_page_renders_the_skeleton_and_page_data(owner, ct):
    study_uid = ct[0].StudyInstanceUID
    response = _client(owner).get(f"/viewer/{study_uid}/")
    assert response.status_code == 200
    assert "no-store" in response.headers["Cache-Control"]
    html = response.content.decode()
    assert '<script type="module" src="/static/viewer/main.js"></script>' in html
    # No inline script other than the JSON data block, no inline styles or handlers.
    scripts = re.findall(r"<script([^>]*)>", html)
    assert all('src="' in attrs or 'type="application/json"' in attrs for attrs in scripts)
    assert "style=" not in html and not re.search(r"\son[a-z]+=", html)
    for element_id in ("viewer-app", "series-strip", "viewer-toolbar", "viewport-grid", "viewer-status",
                       "viewer-closed", "viewer-help"):
        assert f'id="{element_id}"' in html
    assert html.count('class="viewport"') == 4 and html.count("<canvas") == 4
    data = _page_data(response)
    assert data["study"] == study_uid and data["principal"] == "user"
    assert data["ticket_url"] == "/viewer/ticket/" and data["socket_url"] == "/ws/viewer/"
    (series,) = data["series"]
    assert series["uid"] == ct[0].SeriesInstanceUID and series["instances"] == 3 and series["frames"] == 3
    assert series["modality"] == "CT" and series["number"] == 1
    assert series["thumbnail"] == f"/viewer/thumb/{study_uid}/{ct[0].SeriesInstanceUID}/"
    assert data["presets"][3] == {"key": "4", "name": "lung", "center": -600.0, "width": 1500.0}
    assert data["overlay"] == {"phi": True, "watermark": False}
    assert data["csrf_token"]


def test_viewer_page_is_audited_once_per_load(owner, ct):
    client = _client(owner)
    client.get(f"/viewer/{ct[0].StudyInstanceUID}/")
    client.get(f"/viewer/{ct[0].StudyInstanceUID}/")
    events = AuditEvent.objects.filter(action="viewer.opened")
    assert events.count() == 2
    assert {e.object_id for e in events} == {ct[0].StudyInstanceUID}


def test_outsider_and_unknown_study_get_404(outsider, owner, ct):
    assert _client(outsider).get(f"/viewer/{ct[0].StudyInstanceUID}/").status_code == 404
    assert _client(owner).get("/viewer/1.2.3.4.5/").status_code == 404
    assert not AuditEvent.objects.filter(action="viewer.opened").exists()


def test_share_this_study_link_for_those_who_may_share(owner, org, ct):
    page = _client(owner).get(f"/viewer/{ct[0].StudyInstanceUID}/").content.decode()
    assert f'href="/share/new/{ct[0].StudyInstanceUID}/"' in page


def test_auditor_cannot_open_the_viewer(auditor, ct):
    assert _client(auditor).get(f"/viewer/{ct[0].StudyInstanceUID}/").status_code == 404


def test_anonymous_visitor_is_sent_to_sign_in(client, ct):
    response = client.get(f"/viewer/{ct[0].StudyInstanceUID}/")
    assert response.status_code == 302 and "/accounts/" in response["Location"]


def test_watermark_policy_shows_in_the_page_data(owner, org, ct):
    Organization.objects.filter(pk=org.pk).update(watermark_internal_users=True)
    data = _page_data(_client(owner).get(f"/viewer/{ct[0].StudyInstanceUID}/"))
    assert data["overlay"]["watermark"] is True


def test_ticket_needs_csrf_and_a_visible_study(owner, outsider, ct):
    client = _client(owner, enforce_csrf_checks=True)
    page = client.get(f"/viewer/{ct[0].StudyInstanceUID}/")
    token = _page_data(page)["csrf_token"]
    body = json.dumps({"study": ct[0].StudyInstanceUID})
    assert client.post("/viewer/ticket/", body, content_type="application/json").status_code == 403
    response = client.post("/viewer/ticket/", body, content_type="application/json", headers={"X-CSRFToken": token})
    assert response.status_code == 200 and "no-store" in response.headers["Cache-Control"]
    ticket = response.json()["ticket"]
    assert response.json()["expires_in"] == 30 and len(ticket) >= 40
    # Stored only hashed: the ticket itself is in no cache key.
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert tickets.redeem(ticket, session_key=session_key).study_uid == ct[0].StudyInstanceUID
    assert tickets.redeem(ticket, session_key=session_key) is None  # single use
    outsider_client = _client(outsider)
    assert outsider_client.post("/viewer/ticket/", body, content_type="application/json").status_code == 404


@pytest.mark.parametrize("body", ["", "not json", json.dumps({"study": 5}), json.dumps({"study": "1.2", "x": 1}),
                                  json.dumps({"study": "../etc"})])
def test_malformed_ticket_requests_are_400(owner, body):
    response = _client(owner).post("/viewer/ticket/", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "bad_request"


def test_ticket_endpoint_refuses_get(owner):
    assert _client(owner).get("/viewer/ticket/").status_code == 405


def test_series_thumbnail_is_a_small_jpeg_for_users_who_may_see_it(owner, outsider, ct):
    url = f"/viewer/thumb/{ct[0].StudyInstanceUID}/{ct[0].SeriesInstanceUID}/"
    response = _client(owner).get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert "no-store" in response.headers["Cache-Control"]
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and max(image.size) == 128
    assert _client(outsider).get(url).status_code == 404
    assert _client(owner).get(f"/viewer/thumb/{ct[0].StudyInstanceUID}/1.2.3/").status_code == 404


# -- the share resolver hook (a stand-in for sharing/, which has its own tests) ----------------


def share_principal_for_request(request):
    study_pk = request.headers.get("X-Test-Share")
    return FakeSharePrincipal(share_id=1, pk=int(study_pk)) if study_pk else None


def share_principal_for_scope(scope):
    return None


def test_share_resolver_opens_the_page_without_sign_in_and_hides_phi(settings, ct):
    from archive.models import Study

    settings.LIGHTBOX_SHARE_PRINCIPAL_RESOLVER = "tests.viewer.test_viewer_page"
    study = Study.objects.get(study_instance_uid=ct[0].StudyInstanceUID)
    client = Client()
    response = client.get(f"/viewer/{study.study_instance_uid}/", headers={"X-Test-Share": str(study.pk)})
    assert response.status_code == 200
    data = _page_data(response)
    assert data["principal"] == "share" and data["list_url"] is None
    assert data["overlay"] == {"phi": False, "watermark": True}
    assert b"Back to the study list" not in response.content
    assert b"/share/new/" not in response.content  # a recipient cannot re-share
    event = AuditEvent.objects.get(action="viewer.opened")
    assert not event.actor_id and event.details["share_id"] == 1
    thumb = client.get(data["series"][0]["thumbnail"], headers={"X-Test-Share": str(study.pk)})
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    # Without the share, the same anonymous browser is sent to sign in / gets nothing.
    assert client.get(f"/viewer/{study.study_instance_uid}/").status_code == 302
    assert client.get(data["series"][0]["thumbnail"]).status_code == 404
