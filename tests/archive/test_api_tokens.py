"""DICOMweb API tokens: a valid read token reads; no, malformed, expired or revoked tokens get
401; a read token cannot write."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import requests
import time_machine
from dicomweb_client import DICOMwebClient
from django.conf import settings
from django.utils import timezone

from accounts.tokens import issue_api_token
from archive import synthetic
from archive.services import ingest
from audit.models import AuditEvent
from tests.factories import sign_in


@pytest.fixture
def study_uid(org) -> str:
    ds = synthetic.ct_study(slices=1, size=16, seed=5)[0]
    assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    return ds.StudyInstanceUID


def _bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_read_token_can_search_and_retrieve(client, owner, study_uid):
    _, token = issue_api_token(user=owner)
    search = client.get("/dicomweb/studies", **_bearer(token))
    assert search.status_code == 200 and len(search.json()) == 1
    metadata = client.get(f"/dicomweb/studies/{study_uid}/metadata", **_bearer(token))
    assert metadata.status_code == 200


def test_no_token_gets_401_with_a_bearer_challenge(client, study_uid):
    for path in ("studies", f"studies/{study_uid}", f"studies/{study_uid}/metadata", "instances"):
        response = client.get(f"/dicomweb/{path}")
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer lbx_not-a-real-token", "lbx_abc"])
def test_malformed_or_unknown_token_gets_401(client, study_uid, header):
    assert client.get("/dicomweb/studies", HTTP_AUTHORIZATION=header).status_code == 401


def test_expired_token_gets_401(client, owner, study_uid):
    _, token = issue_api_token(user=owner, days=1)
    assert client.get("/dicomweb/studies", **_bearer(token)).status_code == 200
    with time_machine.travel(timezone.now() + dt.timedelta(days=1, minutes=1)):
        assert client.get("/dicomweb/studies", **_bearer(token)).status_code == 401
        assert client.get(f"/dicomweb/studies/{study_uid}", **_bearer(token)).status_code == 401


def test_revoked_token_gets_401(client, owner, study_uid):
    record, token = issue_api_token(user=owner)
    record.revoked_at = timezone.now()
    record.save(update_fields=["revoked_at"])
    assert client.get("/dicomweb/studies", **_bearer(token)).status_code == 401
    assert AuditEvent.objects.filter(action="dicomweb.auth_failed", outcome="denied").exists()


def test_token_of_a_disabled_user_gets_401(client, owner, study_uid):
    _, token = issue_api_token(user=owner)
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    assert client.get("/dicomweb/studies", **_bearer(token)).status_code == 401


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_with_expired_or_revoked_token_gets_401(live_server_url, owner, study_uid):
    expired, expired_token = issue_api_token(user=owner)
    revoked, revoked_token = issue_api_token(user=owner)
    _, good_token = issue_api_token(user=owner)
    type(expired).objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    type(revoked).objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())

    def client(token):
        return DICOMwebClient(url=live_server_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})

    assert len(client(good_token).search_for_studies()) == 1
    assert len(client(good_token).retrieve_study(study_uid)) == 1
    # Read scope reads, and only reads.
    with pytest.raises(requests.HTTPError) as caught:
        client(good_token).store_instances([synthetic.ct_study(slices=1, size=16, seed=6)[0]])
    assert caught.value.response.status_code == 403
    for token in (expired_token, revoked_token):
        for attempt in (lambda c: c.search_for_studies(), lambda c: c.retrieve_study(study_uid)):
            with pytest.raises(requests.HTTPError) as caught:
                attempt(client(token))
            assert caught.value.response.status_code == 401


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_a_browser_session_reads_from_the_live_server(live_server_url, client, owner, study_uid):
    sign_in(client, owner)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
    response = requests.get(f"{live_server_url}/dicomweb/studies", cookies=cookies, timeout=10)
    assert response.status_code == 200 and len(response.json()) == 1
    assert requests.get(f"{live_server_url}/dicomweb/studies", timeout=10).status_code == 401
