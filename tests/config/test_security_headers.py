"""Every response carries the browser security baseline."""

import pytest

from tests.factories import sign_in

pytestmark = pytest.mark.django_db


def _assert_baseline(response):
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "object-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "http" not in csp  # no third-party origins
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "no-store" in response.headers["Cache-Control"]
    assert len(response.headers["X-Request-ID"]) == 32


def test_sign_in_page_sends_the_security_baseline(client):
    response = client.get("/accounts/sign-in/")
    assert response.status_code == 200
    _assert_baseline(response)


def test_healthz_sends_the_security_baseline(client):
    response = client.get("/healthz")
    _assert_baseline(response)


def test_session_cookie_is_httponly_and_samesite(client, owner):
    from tests.factories import PASSWORD

    response = client.post("/accounts/sign-in/", {"username": owner.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies["lightbox-session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


def test_hsts_and_secure_cookies_when_served_over_tls(client, owner, settings):
    from tests.factories import PASSWORD

    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SESSION_COOKIE_SECURE = True
    response = client.post("/accounts/sign-in/", {"username": owner.email, "password": PASSWORD}, secure=True)
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert response.cookies["lightbox-session"]["secure"]


def test_sign_out_clears_site_data(client, owner):
    sign_in(client, owner)
    response = client.post("/accounts/sign-out/")
    assert response.status_code == 302
    assert "storage" in response.headers["Clear-Site-Data"]
