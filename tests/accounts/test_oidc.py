"""OpenID Connect single sign-on against a real provider.

The provider is django-oauth-toolkit in its own Django project (tests/oidc_provider/), served by
uvicorn in a subprocess on a loopback port; Lightbox runs in the live ASGI server. Every request
below is real HTTP: the user's side is a `requests.Session` following the redirect chain (and
one Chromium run), the server-to-server side is mozilla-django-oidc talking to the provider.
"""

from __future__ import annotations

import datetime as dt
import re
from importlib import import_module
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
import time_machine

from accounts.mfa import SESSION_METHOD, SESSION_VERIFIED_AT
from accounts.models import ExternalIdentity, Membership, Role, User
from accounts.oidc import forget_discovery
from audit.models import AuditEvent
from tests.factories import PASSWORD, make_user
from tests.oidc_provider.harness import start_provider

pytestmark = pytest.mark.live

IDP_PASSWORD = "idp password 0123456789"
ORG_CLAIM_VALUE = "St Elsewhere Radiology"
MFA_ACR = "urn:example:loa:mfa"


def _user(sub: str, email: str, **claims) -> dict:
    entry_claims = {"sub": sub, "email": email, "email_verified": True, "name": email.split("@")[0].title()}
    entry_claims.update(claims)
    return {"password": IDP_PASSWORD, "claims": entry_claims}


PROVIDER_USERS = {
    # MFA at the provider (amr), a radiologist of the hospital.
    "alice": _user("sub-alice", "alice@example.org", amr=["pwd", "mfa"], groups=["radiologists"], org=ORG_CLAIM_VALUE),
    # Password only at the provider; radiologist and auditor.
    "bob": _user(
        "sub-bob", "bob@example.org", amr=["pwd"], groups=["radiologists", "auditors", "cafeteria"], org=ORG_CLAIM_VALUE
    ),
    # MFA asserted by an acr value only.
    "carol": _user("sub-carol", "carol@example.org", acr=MFA_ACR, groups=["radiologists"], org=ORG_CLAIM_VALUE),
    # Someone whose ID token is altered after signing, to claim to be Alice.
    "mallory": {
        **_user("sub-mallory", "mallory@example.org", amr=["mfa"], groups=["radiologists"], org=ORG_CLAIM_VALUE),
        "tamper_after_signing": {"sub": "sub-alice", "email": "alice@example.org"},
    },
    # A validly signed ID token that carries the nonce of some other sign-in (a replay).
    "replay": {
        **_user("sub-replay", "replay@example.org", amr=["mfa"], org=ORG_CLAIM_VALUE),
        "sign_override": {"nonce": "nonce-of-another-sign-in"},
    },
    # A validly signed ID token issued to another client.
    "elsewhere": {
        **_user("sub-elsewhere", "elsewhere@example.org", amr=["mfa"], org=ORG_CLAIM_VALUE),
        "sign_override": {"aud": "another-client"},
    },
    # The userinfo endpoint describes someone else than the ID token.
    "shifty": {
        **_user("sub-shifty", "shifty@example.org", amr=["mfa"], org=ORG_CLAIM_VALUE),
        "userinfo_override": {"sub": "sub-alice"},
    },
    "garbled": _user("sub-garbled", "not an e-mail address", amr=["mfa"], org=ORG_CLAIM_VALUE),
    # MFA asserted, but the user authenticated at the provider long ago (an old provider session).
    "dave": {
        **_user("sub-dave", "dave@example.org", amr=["mfa"], groups=["radiologists"], org=ORG_CLAIM_VALUE),
        "sign_override": {"auth_time": 1_000_000_000},
    },
}


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    running = start_provider(tmp_path_factory.mktemp("oidc-provider"), PROVIDER_USERS)
    yield running
    running.stop()


@pytest.fixture
def sso(settings, provider, live_server_url, org):
    """Lightbox (live server) configured for single sign-on with the test provider."""
    forget_discovery()
    settings.LIGHTBOX_OIDC_ISSUER = provider.issuer
    settings.OIDC_RP_CLIENT_ID = provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = provider.client_secret
    settings.OIDC_RP_SCOPES = "openid email profile groups"
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, "accounts.oidc.LightboxOIDCBackend"]
    settings.LIGHTBOX_OIDC_LABEL = "Test IdP"
    settings.LIGHTBOX_OIDC_ORG_CLAIM = "org"
    settings.LIGHTBOX_OIDC_ORG_MAP = {ORG_CLAIM_VALUE: org.slug}
    settings.LIGHTBOX_OIDC_ROLE_CLAIM = "groups"
    settings.LIGHTBOX_OIDC_ROLE_MAP = {"radiologists": Role.CLINICIAN, "auditors": Role.AUDITOR}
    settings.LIGHTBOX_OIDC_CREATE_USERS = True
    settings.LIGHTBOX_OIDC_LINK_BY_EMAIL = False
    settings.LIGHTBOX_OIDC_MFA_ACR_VALUES = [MFA_ACR]
    yield live_server_url
    forget_discovery()


# --- driving the browser side -----------------------------------------------------------------
def _follow(browser: requests.Session, response: requests.Response, *, stop_at: str | None = None):
    """Follow redirects one by one; return the final response, or the URL that starts with `stop_at`."""
    while response.is_redirect:
        location = urljoin(response.url, response.headers["Location"])
        if stop_at and location.startswith(stop_at):
            return location
        response = browser.get(location, allow_redirects=False, timeout=30)
    return response


def _sign_in_at_provider(browser: requests.Session, login_page: requests.Response, username: str):
    assert login_page.status_code == 200, login_page.text[:500]
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
    next_url = re.search(r'name="next" value="([^"]*)"', login_page.text).group(1).replace("&amp;", "&")
    return browser.post(
        login_page.url,
        data={"csrfmiddlewaretoken": csrf, "username": username, "password": IDP_PASSWORD, "next": next_url},
        allow_redirects=False,
        timeout=30,
    )


def start_sign_in(base_url: str, username: str, *, browser: requests.Session | None = None):
    """Click "Sign in with …", sign in at the provider; return (browser, callback URL not yet visited)."""
    browser = browser or requests.Session()
    first = browser.get(f"{base_url}/oidc/authenticate/", allow_redirects=False, timeout=30)
    login_page = _follow(browser, first)
    after_login = _sign_in_at_provider(browser, login_page, username)
    callback = _follow(browser, after_login, stop_at=f"{base_url}/oidc/callback/")
    assert isinstance(callback, str), (
        f"the provider did not redirect back: {callback.status_code} {callback.text[:300]}"
    )
    return browser, callback


def sso_sign_in(base_url: str, username: str):
    """The whole flow; return (browser, final response)."""
    browser, callback = start_sign_in(base_url, username)
    return browser, _follow(browser, browser.get(callback, allow_redirects=False, timeout=30))


def _session(browser: requests.Session):
    from django.conf import settings

    key = browser.cookies.get(settings.SESSION_COOKIE_NAME)
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=key) if key else None


def _signed_in_user_id(browser: requests.Session):
    session = _session(browser)
    return None if session is None else session.get("_auth_user_id")


def _failures(reason: str):
    return AuditEvent.objects.filter(action="auth.login_failed", details__reason=reason, details__method="oidc")


# --- sign-in ------------------------------------------------------------------------------------
def test_first_sign_in_creates_linked_user_with_mapped_role_and_provider_mfa_reaches_home(sso, org, provider):
    browser, final = sso_sign_in(sso, "alice")

    assert final.status_code == 200
    assert final.url == f"{sso}/"
    user = User.objects.get(email="alice@example.org")
    assert not user.has_usable_password()
    assert user.full_name == "Alice"
    assert ExternalIdentity.objects.filter(user=user, issuer=provider.issuer, subject="sub-alice").exists()
    assert set(Membership.objects.filter(user=user).values_list("organization", "role")) == {(org.pk, Role.CLINICIAN)}
    assert _signed_in_user_id(browser) == str(user.pk)
    session = _session(browser)
    assert session[SESSION_METHOD] == "oidc:mfa"
    assert session[SESSION_VERIFIED_AT] is not None
    assert AuditEvent.objects.filter(action="auth.login", actor_id=str(user.pk)).exists()
    accepted = AuditEvent.objects.get(action="auth.sso_mfa_accepted", actor_id=str(user.pk))
    assert accepted.details == {"method": "oidc:mfa", "issuer": provider.issuer}
    # The session really works for the rest of the site.
    again = browser.get(f"{sso}/", allow_redirects=False, timeout=30)
    assert again.status_code == 200


def test_second_sign_in_finds_the_same_user_by_issuer_and_subject(sso):
    sso_sign_in(sso, "alice")
    User.objects.filter(email="alice@example.org").update(email="alice.renamed@example.org")

    browser, final = sso_sign_in(sso, "alice")

    assert final.status_code == 200
    assert User.objects.filter(email__startswith="alice").count() == 1
    assert _signed_in_user_id(browser) == str(User.objects.get(email="alice.renamed@example.org").pk)


def test_acr_value_in_the_configured_set_counts_as_mfa(sso):
    browser, final = sso_sign_in(sso, "carol")

    assert final.status_code == 200
    assert final.url == f"{sso}/"
    assert _session(browser)[SESSION_METHOD] == f"oidc:{MFA_ACR}"


def test_provider_mfa_counts_from_when_the_user_authenticated_at_the_provider(sso):
    from accounts.mfa import step_up_is_fresh

    browser, final = sso_sign_in(sso, "dave")

    # Signed in and past the second-factor gate ...
    assert final.status_code == 200
    session = _session(browser)
    assert session[SESSION_METHOD] == "oidc:mfa"
    # ... but an MFA from 2001 is no fresh verification for step-up actions.
    assert session[SESSION_VERIFIED_AT] == 1_000_000_000
    assert not step_up_is_fresh(session)


def test_fresh_provider_mfa_is_fresh_for_step_up(sso):
    from accounts.mfa import step_up_is_fresh

    browser, _ = sso_sign_in(sso, "alice")

    assert step_up_is_fresh(_session(browser))


def test_without_an_mfa_claim_the_user_must_complete_local_otp(sso, org):
    browser, final = sso_sign_in(sso, "bob")

    user = User.objects.get(email="bob@example.org")
    assert _signed_in_user_id(browser) == str(user.pk)
    assert SESSION_METHOD not in _session(browser)
    # No authenticator yet, so the second-factor gate sends Bob to enrolment, keeping where he was going.
    assert final.status_code == 200
    assert urlsplit(final.url).path == "/accounts/enrol/"
    assert parse_qs(urlsplit(final.url).query)["next"] == ["/"]
    home = browser.get(f"{sso}/", allow_redirects=False, timeout=30)
    assert home.status_code == 302
    assert urlsplit(home.headers["Location"]).path == "/accounts/enrol/"
    assert not AuditEvent.objects.filter(action="auth.sso_mfa_accepted").exists()


def test_without_an_mfa_claim_a_user_with_a_device_is_sent_to_verification(sso):
    from django_otp.plugins.otp_totp.models import TOTPDevice

    sso_sign_in(sso, "bob")
    TOTPDevice.objects.create(user=User.objects.get(email="bob@example.org"), name="phone", confirmed=True)

    browser, final = sso_sign_in(sso, "bob")

    assert final.status_code == 200
    assert urlsplit(final.url).path == "/accounts/verify/"
    assert SESSION_METHOD not in _session(browser)


def test_acr_outside_the_configured_set_does_not_count_as_mfa(sso, settings):
    settings.LIGHTBOX_OIDC_MFA_ACR_VALUES = ["urn:example:loa:something-else"]

    browser, final = sso_sign_in(sso, "carol")

    assert urlsplit(final.url).path == "/accounts/enrol/"
    assert SESSION_METHOD not in _session(browser)


# --- roles and organisations ------------------------------------------------------------------
def test_group_claims_map_to_roles_and_unmapped_groups_are_ignored(sso, org):
    sso_sign_in(sso, "bob")

    user = User.objects.get(email="bob@example.org")
    assert set(user.memberships.values_list("organization", "role")) == {
        (org.pk, Role.CLINICIAN),
        (org.pk, Role.AUDITOR),
    }


def test_memberships_are_resynced_on_each_sign_in_and_local_roles_are_kept(sso, settings, org, other_org):
    sso_sign_in(sso, "bob")
    user = User.objects.get(email="bob@example.org")
    # An administrator grants a role the provider does not manage.
    Membership.objects.create(user=user, organization=org, role=Role.STAFF)
    # The provider's organisation now maps to another hospital.
    settings.LIGHTBOX_OIDC_ORG_MAP = {ORG_CLAIM_VALUE: other_org.slug}

    sso_sign_in(sso, "bob")

    assert set(user.memberships.values_list("organization", "role")) == {
        (org.pk, Role.STAFF),
        (other_org.pk, Role.CLINICIAN),
        (other_org.pk, Role.AUDITOR),
    }
    synced = AuditEvent.objects.filter(action="auth.sso_roles_synced", actor_id=str(user.pk)).order_by("sequence")
    assert synced.last().details == {
        "added": [f"{other_org.slug}:auditor", f"{other_org.slug}:clinician"],
        "removed": [f"{org.slug}:auditor", f"{org.slug}:clinician"],
    }


# --- accounts -----------------------------------------------------------------------------------
def test_an_existing_local_account_is_never_taken_over_by_email_alone(sso):
    local = make_user(email="alice@example.org")

    browser, final = sso_sign_in(sso, "alice")

    assert final.status_code == 403
    assert "not linked" in final.text
    assert _signed_in_user_id(browser) is None
    assert not ExternalIdentity.objects.exists()
    assert local.memberships.count() == 0
    assert _failures("email_in_use").count() == 1


def test_linking_by_verified_email_when_configured(sso, settings, org):
    settings.LIGHTBOX_OIDC_LINK_BY_EMAIL = True
    local = make_user(email="alice@example.org")

    browser, final = sso_sign_in(sso, "alice")

    assert final.status_code == 200
    assert _signed_in_user_id(browser) == str(local.pk)
    assert ExternalIdentity.objects.get(subject="sub-alice").user == local
    # The local password still works too; SSO did not change it.
    local.refresh_from_db()
    assert local.check_password(PASSWORD)


def test_unknown_user_is_refused_when_account_creation_is_off(sso, settings):
    settings.LIGHTBOX_OIDC_CREATE_USERS = False

    browser, final = sso_sign_in(sso, "alice")

    assert final.status_code == 403
    assert "no Lightbox account" in final.text
    assert _signed_in_user_id(browser) is None
    assert not User.objects.filter(email="alice@example.org").exists()
    assert _failures("no_account").count() == 1


def test_deactivated_user_is_refused(sso):
    sso_sign_in(sso, "alice")
    User.objects.filter(email="alice@example.org").update(is_active=False)

    browser, final = sso_sign_in(sso, "alice")

    assert final.status_code == 403
    assert _signed_in_user_id(browser) is None
    assert _failures("inactive_account").count() == 1


# --- token and protocol checks ----------------------------------------------------------------
def test_tampered_id_token_is_refused(sso):
    sso_sign_in(sso, "alice")  # Alice exists, so a forged "I am Alice" token would have a target.

    browser, final = sso_sign_in(sso, "mallory")

    assert final.status_code == 400
    assert _signed_in_user_id(browser) is None
    assert _failures("bad_signature").count() == 1
    assert not User.objects.filter(email="mallory@example.org").exists()


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ("alg-none", "unexpected_algorithm"),
        ("hs256-with-public-key", "unexpected_algorithm"),
        ("own-key", "bad_signature"),
    ],
)
def test_forged_id_tokens_are_refused_against_the_providers_real_jwks(sso, provider, forgery, reason):
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from accounts.oidc import LightboxOIDCBackend, OIDCLoginRefused

    jwk = requests.get(f"{provider.issuer}/.well-known/jwks.json", timeout=10).json()["keys"][0]
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": provider.client_id,
        "sub": "sub-alice",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-0123456789",
        "amr": ["mfa"],
    }
    headers = {"kid": jwk["kid"]}
    if forgery == "alg-none":
        token = jwt.encode(claims, None, algorithm="none", headers=headers)
    elif forgery == "hs256-with-public-key":
        token = jwt.encode(claims, jwk["n"], algorithm="HS256", headers=headers)
    else:
        attacker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims, attacker_key, algorithm="RS256", headers=headers)

    with pytest.raises(OIDCLoginRefused) as refused:
        LightboxOIDCBackend().verify_token(token, nonce="n-0123456789")

    assert refused.value.reason == reason


def test_expired_id_token_is_refused(sso):
    browser, callback = start_sign_in(sso, "alice")

    # The provider issues 5-minute ID tokens; Lightbox's clock reads 8 minutes later.
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=8), tick=True):
        final = _follow(browser, browser.get(callback, allow_redirects=False, timeout=30))

    assert final.status_code == 400
    assert "took too long" in final.text
    assert _signed_in_user_id(browser) is None
    assert _failures("id_token_expired").count() == 1


def test_id_token_with_another_sign_ins_nonce_is_refused(sso):
    browser, final = sso_sign_in(sso, "replay")

    assert final.status_code == 400
    assert _signed_in_user_id(browser) is None
    assert _failures("nonce_mismatch").count() == 1


def test_id_token_issued_to_another_client_is_refused(sso):
    browser, final = sso_sign_in(sso, "elsewhere")

    assert final.status_code == 400
    assert _signed_in_user_id(browser) is None
    assert _failures("wrong_audience").count() == 1


def test_userinfo_about_another_subject_is_refused(sso):
    sso_sign_in(sso, "alice")

    browser, final = sso_sign_in(sso, "shifty")

    assert final.status_code == 400
    assert _signed_in_user_id(browser) is None
    assert _failures("userinfo_subject_mismatch").count() == 1


def test_invalid_email_claim_is_refused_with_a_message(sso):
    browser, final = sso_sign_in(sso, "garbled")

    assert final.status_code == 403
    assert "invalid e-mail address" in final.text
    assert not ExternalIdentity.objects.filter(subject="sub-garbled").exists()
    assert _failures("invalid_email").count() == 1


def test_callback_in_a_browser_that_did_not_start_the_sign_in_is_refused(sso):
    _, callback = start_sign_in(sso, "alice")
    victim = requests.Session()

    final = _follow(victim, victim.get(callback, allow_redirects=False, timeout=30))

    assert final.status_code == 400
    assert _signed_in_user_id(victim) is None
    assert _failures("state_mismatch").count() == 1


def test_altered_state_is_refused(sso):
    browser, callback = start_sign_in(sso, "alice")
    altered = re.sub(r"state=[^&]+", "state=not-the-state-we-sent", callback)

    final = _follow(browser, browser.get(altered, allow_redirects=False, timeout=30))

    assert final.status_code == 400
    assert _signed_in_user_id(browser) is None
    assert _failures("state_mismatch").count() == 1


def test_callback_cannot_be_replayed(sso):
    browser, callback = start_sign_in(sso, "alice")
    assert _follow(browser, browser.get(callback, allow_redirects=False, timeout=30)).status_code == 200

    # The same browser (same session) presents the same callback URL again.
    final = browser.get(callback, allow_redirects=False, timeout=30)

    assert final.status_code == 400
    assert _failures("state_mismatch").count() == 1


def test_authorization_code_injected_into_another_sign_in_is_refused_by_pkce(sso):
    # The attacker completes a sign-in and keeps the code; the victim starts a sign-in, and the
    # attacker's code arrives at the victim's callback with the victim's own state.
    _, attacker_callback = start_sign_in(sso, "mallory")
    attacker_code = parse_qs(urlsplit(attacker_callback).query)["code"][0]
    victim, victim_callback = start_sign_in(sso, "alice")
    victim_state = parse_qs(urlsplit(victim_callback).query)["state"][0]

    final = victim.get(
        f"{sso}/oidc/callback/",
        params={"code": attacker_code, "state": victim_state},
        allow_redirects=False,
        timeout=30,
    )

    assert final.status_code == 400
    assert _signed_in_user_id(victim) is None
    assert _failures("token_exchange_refused").count() == 1


def test_sign_in_request_uses_pkce_s256_nonce_and_state(sso, provider):
    browser = requests.Session()

    response = browser.get(f"{sso}/oidc/authenticate/?next=/accounts/security/", allow_redirects=False, timeout=30)

    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{provider.issuer}/authorize/"
    query = parse_qs(location.query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [provider.client_id]
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert len(query["nonce"][0]) >= 32
    assert len(query["state"][0]) >= 32
    assert query["redirect_uri"] == [f"{sso}/oidc/callback/"]


def test_sign_in_returns_to_the_requested_page(sso):
    browser = requests.Session()
    first = browser.get(f"{sso}/oidc/authenticate/?next=/accounts/security/", allow_redirects=False, timeout=30)
    login_page = _follow(browser, first)
    callback = _follow(browser, _sign_in_at_provider(browser, login_page, "alice"), stop_at=f"{sso}/oidc/callback/")

    response = browser.get(callback, allow_redirects=False, timeout=30)

    assert response.status_code == 302
    assert response.headers["Location"] == "/accounts/security/"


def test_sign_in_never_returns_to_another_site(sso):
    browser = requests.Session()
    first = browser.get(f"{sso}/oidc/authenticate/?next=https://evil.example/", allow_redirects=False, timeout=30)
    login_page = _follow(browser, first)
    callback = _follow(browser, _sign_in_at_provider(browser, login_page, "alice"), stop_at=f"{sso}/oidc/callback/")

    response = browser.get(callback, allow_redirects=False, timeout=30)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_provider_error_is_refused_with_a_message(sso):
    browser = requests.Session()
    start = browser.get(f"{sso}/oidc/authenticate/", allow_redirects=False, timeout=30)
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]

    final = browser.get(
        f"{sso}/oidc/callback/", params={"error": "access_denied", "state": state}, allow_redirects=False, timeout=30
    )

    assert final.status_code == 403
    assert "did not sign you in" in final.text
    assert _failures("provider_error").count() == 1


# --- configuration ------------------------------------------------------------------------------
def test_sign_in_page_offers_the_provider_when_configured(sso):
    page = requests.get(f"{sso}/accounts/sign-in/?next=/accounts/security/", timeout=30)

    assert page.status_code == 200
    assert "Sign in with Test IdP" in page.text
    assert 'href="/oidc/authenticate/?next=/accounts/security/"' in page.text


def test_discovery_document_for_another_issuer_is_refused(settings, provider):
    from accounts.oidc import OIDCLoginRefused, discover

    forget_discovery()
    # The provider's document names its real issuer, not this look-alike address.
    lookalike = provider.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(OIDCLoginRefused) as refused:
        discover(lookalike)
    assert refused.value.reason == "discovery_issuer_mismatch"
    forget_discovery()


# --- a real browser -----------------------------------------------------------------------------
@pytest.mark.e2e
def test_browser_signs_in_with_the_provider_button_and_reaches_the_study_list(sso):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{sso}/accounts/sign-in/")
            page.click("#sso-sign-in")
            page.fill("#id_username", "alice")
            page.fill("#id_password", IDP_PASSWORD)
            page.click("#idp-sign-in")
            page.wait_for_url(f"{sso}/")
            assert "alice@example.org" in page.content()
        finally:
            browser.close()
