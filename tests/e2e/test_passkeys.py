"""A passkey as the second factor, in real Chromium with a CDP virtual authenticator.

WebAuthn needs a secure context and a domain as relying-party id, so the browser talks to
http://localhost:<port> (localhost is a secure context) rather than 127.0.0.1.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from audit.models import AuditEvent
from tests.browser import launch_chromium
from tests.factories import PASSWORD, session_key_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


@pytest.fixture
def base_url(live_server_url, settings):
    port = urlsplit(live_server_url).port
    url = f"http://localhost:{port}"
    settings.OTP_WEBAUTHN_RP_ID = "localhost"
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [url]
    return url


def _virtual_authenticator(context, page):
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    authenticator_id = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})["authenticatorId"]
    return cdp, authenticator_id


def _collect_passkey_errors(page, sink: list):
    """Uncaught script errors, CSP violations, and failed requests of the passkey machinery."""
    ours = ("/webauthn/", "/accounts/passkeys/", "/accounts/verify/", "django_otp_webauthn/", "accounts/passkey")
    page.on("pageerror", lambda error: sink.append(str(error)))
    page.on(
        "console",
        lambda message: sink.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.on(
        "response",
        lambda response: sink.append(f"{response.status} {response.url}")
        if response.status >= 400 and any(part in response.url for part in ours)
        else None,
    )


# The sign-in form cannot be posted from Chromium while the site sends Referrer-Policy:
# no-referrer: the Fetch standard then sends `Origin: null` with every form POST, and Django's
# CSRF check refuses it (403, "Origin checking failed - null does not match"). Reported to the
# lead; until the policy becomes e.g. "same-origin", the second browser starts from the session
# a password sign-in creates (signed in, no second factor) instead of posting the form.
PASSWORD_FORM_WORKS = settings.SECURE_REFERRER_POLICY != "no-referrer"


def _password_sign_in(context, page, base_url, email, password_session_key):
    if PASSWORD_FORM_WORKS:
        page.goto(f"{base_url}/accounts/sign-in/")
        page.fill("input[name=username]", email)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit].primary")
    else:
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": password_session_key, "domain": "localhost", "path": "/"}]
        )
        page.goto(f"{base_url}/")


def test_register_a_passkey_then_sign_in_with_it(base_url, owner):
    from django_otp_webauthn.models import WebAuthnCredential
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    # ORM work before Playwright's event loop starts.
    session_key = session_key_for(owner)
    password_session_key = session_key_for(owner, verified=False) if not PASSWORD_FORM_WORKS else ""
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            # 1. A verified session (as after TOTP sign-in) adds a passkey on the passkeys page.
            first = browser.new_context()
            first.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": session_key, "domain": "localhost", "path": "/"}]
            )
            page = first.new_page()
            _collect_passkey_errors(page, errors)
            cdp, authenticator_id = _virtual_authenticator(first, page)
            page.goto(f"{base_url}/accounts/passkeys/")
            assert page.locator(".passkey-item").count() == 0
            page.click("#passkey-register-button")
            page.wait_for_selector(".passkey-item")  # the script reloads the page once it is saved
            assert page.locator(".passkey-item").count() == 1
            credentials = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
            assert len(credentials) == 1 and credentials[0]["rpId"] == "localhost"
            first.close()

            # 2. A new browser (same authenticator, as a phone would carry it) signs in with the password...
            second = browser.new_context()
            page = second.new_page()
            _collect_passkey_errors(page, errors)
            cdp, authenticator_id = _virtual_authenticator(second, page)
            cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": credentials[0]})
            _password_sign_in(second, page, base_url, owner.email, password_session_key)
            # ...is held at the second-factor page...
            page.wait_for_url(re.compile(r".*/accounts/verify/.*"))
            assert page.goto(f"{base_url}/").url.startswith(f"{base_url}/accounts/verify/")
            # ...and gets through with the passkey.
            page.click("#passkey-verification-button")
            page.wait_for_url(f"{base_url}/")
            assert "St Elsewhere" in page.content()
        finally:
            browser.close()

    assert errors == []
    device = WebAuthnCredential.objects.get(user=owner)
    assert device.last_used_at is not None
    assert AuditEvent.objects.filter(
        action="auth.otp_success", object_id=device.persistent_id, details__method="passkey"
    ).exists()


def test_first_enrolment_with_a_passkey(base_url, owner):
    """A password-only user with no authenticator is taken to enrolment and may use a passkey there."""
    from django_otp_webauthn.models import WebAuthnCredential
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    password_session_key = session_key_for(owner, verified=False)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": password_session_key, "domain": "localhost", "path": "/"}]
            )
            page = context.new_page()
            _collect_passkey_errors(page, errors)
            _virtual_authenticator(context, page)
            page.goto(f"{base_url}/")
            assert page.url.startswith(f"{base_url}/accounts/enrol/")
            page.click("#passkey-register-button")
            # Saved, the session passed its second factor with it, and backup codes come next.
            page.wait_for_url(f"{base_url}/accounts/security/backup-codes/new")
            assert page.goto(f"{base_url}/").url == f"{base_url}/"
        finally:
            browser.close()

    assert errors == []
    assert WebAuthnCredential.objects.filter(user=owner).count() == 1
