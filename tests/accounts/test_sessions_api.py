"""The lean DICOMweb chain (no session middleware) refuses browser sessions that have ended."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from django.conf import settings

from accounts.sessions import end_all_sessions
from tests.factories import session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


def _get(url: str, session_key: str) -> int:
    request = urllib.request.Request(
        url, headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_key}", "Accept": "application/dicom+json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback test server)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_dicomweb_refuses_a_browser_session_ended_elsewhere(live_server_url, owner):
    key = session_key_for(owner)
    assert _get(f"{live_server_url}/dicomweb/studies", key) in (200, 204)
    end_all_sessions(owner, reason="signed_out_everywhere")
    assert _get(f"{live_server_url}/dicomweb/studies", key) == 401
