"""/dicomweb/ takes the lean async middleware chain; its responses keep the security baseline."""

import pytest
import requests

from accounts.tokens import issue_api_token

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


def _assert_api_baseline(response):
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    assert len(response.headers["X-Request-ID"]) == 32


def test_refused_api_request_carries_the_baseline(live_server_url):
    response = requests.get(f"{live_server_url}/dicomweb/studies", timeout=30)
    assert response.status_code == 401
    _assert_api_baseline(response)


def test_successful_api_request_carries_the_baseline(live_server_url, owner):
    _, token = issue_api_token(user=owner)
    response = requests.get(f"{live_server_url}/dicomweb/studies", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200
    _assert_api_baseline(response)


def test_pages_still_take_the_full_chain(live_server_url):
    response = requests.get(f"{live_server_url}/accounts/sign-in/", timeout=30)
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "csrftoken" in response.cookies
