"""A share session sees its scope and nothing else: principal, viewer HTTP endpoints, DICOMweb."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import Client, RequestFactory

from archive import synthetic
from archive.models import Instance, Series
from sharing import services
from sharing.models import Share
from sharing.principal import SharePrincipal, burned_in_regions, share_principal_for_request, share_principal_for_scope
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db


def _principal(client) -> SharePrincipal:
    request = RequestFactory().get("/share/")
    request.COOKIES[settings.LIGHTBOX_SHARE_COOKIE_NAME] = client.cookies[settings.LIGHTBOX_SHARE_COOKIE_NAME].value
    principal = share_principal_for_request(request)
    assert principal is not None
    return principal


def test_unverified_or_missing_cookie_gives_no_principal(make_share):
    created = make_share()
    client = Client()
    client.get(f"/s/{created.token}")
    request = RequestFactory().get("/")
    assert share_principal_for_request(request) is None
    request.COOKIES[settings.LIGHTBOX_SHARE_COOKIE_NAME] = client.cookies[settings.LIGHTBOX_SHARE_COOKIE_NAME].value
    assert share_principal_for_request(request) is None  # opened but not verified
    request.COOKIES[settings.LIGHTBOX_SHARE_COOKIE_NAME] = "forged"
    assert share_principal_for_request(request) is None


def test_principal_is_limited_to_the_study_and_chosen_series(make_share, study, other_study):
    mr_series = Series.objects.filter(study=study, modality="MR").order_by("series_number").first()
    created = make_share(series=[mr_series])
    client = Client()
    open_and_verify(client, created)
    principal = _principal(client)
    assert list(principal.studies()) == [study]
    assert set(principal.instances()) == set(Instance.objects.filter(series=mr_series))
    assert not principal.instances().filter(series__study=other_study).exists()
    assert principal.can_list_studies() is False
    assert principal.can_download() is False
    assert principal.group_names == [f"share.{created.share.pk}"]
    assert principal.audit_details["share_id"] == created.share.pk
    assert principal.audit_actor is None and principal.kind == "share"


def test_whole_study_share_covers_every_series(make_share, study):
    client = Client()
    open_and_verify(client, make_share())
    assert set(_principal(client).instances()) == set(Instance.objects.filter(series__study=study))


def test_watermark_names_recipient_share_and_time(make_share):
    client = Client()
    with time_machine.travel(datetime(2030, 5, 6, 7, 8, tzinfo=UTC), tick=False):
        created = make_share(recipient_name="", recipient_email="dr.who@example.net")
        open_and_verify(client, created)
        text = _principal(client).watermark_text()
    assert text == f"dr.who@example.net · share {created.share.pk} · 2030-05-06 07:08 UTC"


def test_phi_and_redactions_follow_the_share(make_share, study):
    us = Instance.objects.get(series__study=study, series__modality="US")
    mr = Instance.objects.filter(series__study=study, series__modality="MR").first()
    redacted, full = Client(), Client()
    open_and_verify(redacted, make_share(phi_display="redacted"))
    open_and_verify(full, make_share(phi_display="full"))
    r, f = _principal(redacted), _principal(full)
    assert r.may_see_phi(study) is False and f.may_see_phi(study) is True
    assert f.redactions_for(us) == ()
    assert r.redactions_for(mr) == ()  # MR carries no burned-in annotation
    (x, y, w, h), = r.redactions_for(us)
    # The synthetic ultrasound burns its fake demographics into a top band; the mask covers it.
    x0, y0, x1, y1 = synthetic.us_burned_in_region(rows=us.rows, columns=us.columns)
    assert (x, y) == (0, 0) and w == us.columns and x1 <= w and y1 <= y + h < us.rows


def test_burned_in_rule_reads_the_header_flag(study):
    mr = Instance.objects.filter(series__study=study, series__modality="MR").first()
    mr.metadata["00280301"] = {"vr": "CS", "Value": ["YES"]}
    assert burned_in_regions(mr) == ((0, 0, mr.columns, max(16, round(mr.rows * 0.12))),)
    us = Instance.objects.get(series__study=study, series__modality="US")
    us.metadata["00280301"] = {"vr": "CS", "Value": ["NO"]}
    assert burned_in_regions(us) == ()


def test_is_current_follows_revocation_expiry_and_opens(make_share, owner):
    with time_machine.travel(datetime(2030, 1, 1, 12, tzinfo=UTC), tick=False) as traveller:
        a, b = Client(), Client()
        revoked = make_share()
        open_and_verify(a, revoked)
        principal = _principal(a)
        assert principal.is_current() is None
        services.revoke_share(share=revoked.share, by=owner)
        assert principal.is_current() == "revoked"

        expiring = make_share(expires_at=datetime(2030, 1, 1, 12, 30, tzinfo=UTC))
        open_and_verify(b, expiring)
        principal = _principal(b)
        traveller.shift(timedelta(minutes=29))
        assert principal.is_current() is None
        traveller.shift(timedelta(minutes=2))
        assert principal.is_current() == "expired"


def test_scope_resolver_reads_the_cookie_from_the_socket_scope(make_share):
    client = Client()
    open_and_verify(client, make_share())
    value = client.cookies[settings.LIGHTBOX_SHARE_COOKIE_NAME].value
    assert share_principal_for_scope({"cookies": {settings.LIGHTBOX_SHARE_COOKIE_NAME: value}}) is not None
    assert share_principal_for_scope({"cookies": {}}) is None


# --- over HTTP: everything outside the scope is unreachable ----------------------------------


def test_share_session_gets_404_for_another_study_on_viewer_endpoints(make_share, study, other_study):
    client = Client()
    open_and_verify(client, make_share())
    other_series = Series.objects.filter(study=other_study).first()
    assert client.get(f"/viewer/{other_study.study_instance_uid}/").status_code == 404
    assert client.get(f"/viewer/thumb/{other_study.study_instance_uid}/{other_series.series_instance_uid}/").status_code == 404
    response = client.post(
        "/viewer/ticket/", json.dumps({"study": other_study.study_instance_uid}), content_type="application/json"
    )
    assert response.status_code == 404
    # An unknown UID looks the same as a forbidden one.
    assert client.get("/viewer/1.2.3.4.5/").status_code == 404


def test_share_session_opens_the_viewer_for_its_own_study(make_share, study):
    client = Client()
    open_and_verify(client, make_share())
    response = client.get(f"/viewer/{study.study_instance_uid}/")
    assert response.status_code == 200
    response = client.post(
        "/viewer/ticket/", json.dumps({"study": study.study_instance_uid}), content_type="application/json"
    )
    assert response.status_code == 200 and "ticket" in response.json()


def test_chosen_series_share_hides_the_other_series(make_share, study):
    series = list(Series.objects.filter(study=study).order_by("series_number"))
    client = Client()
    open_and_verify(client, make_share(series=[series[0]]))
    hidden = series[1]
    url = f"/viewer/thumb/{study.study_instance_uid}/{hidden.series_instance_uid}/"
    assert client.get(url).status_code == 404


def test_share_session_has_no_study_list_and_no_dicomweb(make_share, study):
    client = Client()
    open_and_verify(client, make_share())
    # The study list belongs to signed-in users; a share cookie is not a user session.
    home = client.get("/")
    assert home.status_code == 302 and "/accounts/" in home["Location"]
    assert study.patient.patient_name not in home.content.decode()
    for url in (
        "/dicomweb/studies",
        f"/dicomweb/studies/{study.study_instance_uid}/series",
        f"/dicomweb/studies/{study.study_instance_uid}",
        f"/dicomweb/studies/{study.study_instance_uid}/rendered",
        f"/dicomweb/studies/{study.study_instance_uid}/metadata",
    ):
        response = client.get(url)
        assert response.status_code == 401, url
    assert client.get(f"/share/new/{study.study_instance_uid}/").status_code == 302  # sign-in page


def test_share_cookie_after_revocation_reaches_nothing(make_share, study, owner):
    client = Client()
    created = make_share()
    open_and_verify(client, created)
    services.revoke_share(share=created.share, by=owner)
    revoked_page = client.get("/share/")
    assert revoked_page.status_code == 410 and b"Access revoked" in revoked_page.content
    viewer = client.get(f"/viewer/{study.study_instance_uid}/")
    # Sent to the share page (which says "revoked"), never the viewer.
    assert viewer.status_code == 302 and viewer["Location"] == "/share/"
    assert client.get(viewer["Location"]).status_code == 410
    assert Share.objects.get(pk=created.share.pk).state == Share.State.REVOKED
