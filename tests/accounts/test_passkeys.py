"""Passkeys (WebAuthn) as a second factor: who may register one, verification, audit, bad input.

A small software authenticator (EC P-256, "none" attestation, W3C WebAuthn L3 §6.1 authenticator
data, §6.5.4 attestation object) talks to the real django-otp-webauthn endpoints through the
Django test client; the browser flow with Chromium's virtual authenticator is in tests/e2e.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import time

import cbor2
import pytest
import time_machine
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from accounts.mfa import SESSION_METHOD, SESSION_VERIFIED_AT
from audit.models import AuditEvent
from tests.factories import make_user, sign_in

pytestmark = pytest.mark.django_db

RP_ID = "lightbox.test"
ORIGIN = "https://lightbox.test"
JSON = "application/json"

REGISTER_BEGIN = "/webauthn/registration/begin/"
REGISTER_COMPLETE = "/webauthn/registration/complete/"
AUTH_BEGIN = "/webauthn/authentication/begin/"
AUTH_COMPLETE = "/webauthn/authentication/complete/"


@pytest.fixture(autouse=True)
def _relying_party(settings):
    settings.OTP_WEBAUTHN_RP_ID = RP_ID
    settings.OTP_WEBAUTHN_ALLOWED_ORIGINS = [ORIGIN]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftAuthenticator:
    """One discoverable P-256 credential, like a platform authenticator with user verification."""

    FLAGS_UP_UV = 0x01 | 0x04
    FLAG_AT = 0x40

    def __init__(self, *, rp_id: str = RP_ID, origin: str = ORIGIN):
        self.rp_id = rp_id
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}
        ).encode()

    def _cose_public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def create(self, options: dict) -> dict:
        """navigator.credentials.create() for the server's creation options (JSON form)."""
        assert options["rp"]["id"] == self.rp_id
        client_data = self._client_data("webauthn.create", options["challenge"])
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self.FLAGS_UP_UV | self.FLAG_AT])
            + struct.pack(">I", self.sign_count)
            + bytes(16)  # AAGUID: zero, as privacy-preserving authenticators send
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_public_key()
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {"credProps": {"rk": True}},
            "authenticatorAttachment": "platform",
        }

    def get(self, options: dict) -> dict:
        """navigator.credentials.get() for the server's request options (JSON form)."""
        assert options["rpId"] == self.rp_id
        self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = (
            hashlib.sha256(self.rp_id.encode()).digest()
            + bytes([self.FLAGS_UP_UV])
            + struct.pack(">I", self.sign_count)
        )
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }


def post_json(client, url, payload=None, **extra):
    body = "" if payload is None else json.dumps(payload)
    return client.post(url, body, content_type=JSON, HTTP_ACCEPT=JSON, **extra)


def register(client, authenticator: SoftAuthenticator):
    begin = post_json(client, REGISTER_BEGIN)
    assert begin.status_code == 200, begin.content
    return post_json(client, REGISTER_COMPLETE, authenticator.create(begin.json()))


def authenticate(client, authenticator: SoftAuthenticator, *, next_url: str | None = None, tamper=None):
    begin = post_json(client, AUTH_BEGIN)
    assert begin.status_code == 200, begin.content
    assertion = authenticator.get(begin.json())
    if tamper:
        tamper(assertion)
    url = AUTH_COMPLETE + (f"?next={next_url}" if next_url else "")
    return post_json(client, url, assertion)


def session_key(client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def user_with_passkey(client_factory, **kwargs):
    """A user who registered a passkey from a verified session; returns (user, authenticator)."""
    user = make_user(**kwargs)
    authenticator = SoftAuthenticator()
    client = sign_in(client_factory(), user)
    assert register(client, authenticator).status_code == 200
    return user, authenticator


@pytest.fixture
def new_client():
    from django.test import Client

    return Client


def actions(*names):
    return list(
        AuditEvent.objects.filter(action__in=names).order_by("sequence").values_list("action", "outcome", "details")
    )


# --- Registration: who may add a passkey -------------------------------------------------------


def test_first_enrolment_registers_a_passkey_and_verifies_the_session(client, owner):
    client.force_login(owner)  # password only, no authenticator yet
    key_before = session_key(client)
    response = register(client, SoftAuthenticator())
    assert response.status_code == 200
    device = WebAuthnCredential.objects.get(user=owner)
    assert response.json() == {"id": device.pk}
    assert device.confirmed and device.name.startswith("Passkey added ")
    assert client.session[SESSION_METHOD] == "passkey"
    assert session_key(client) != key_before, "the session key is cycled when the session gains a factor"
    assert actions("auth.device_added", "auth.otp_success") == [
        ("auth.device_added", "success", {"kind": "passkey"}),
        ("auth.otp_success", "success", {"method": "passkey", "enrolment": True}),
    ]
    assert client.get("/").status_code == 200


def test_password_only_session_of_a_user_with_totp_cannot_register_a_passkey(client, owner):
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    client.force_login(owner)  # a stolen password: no second factor in this session
    begin = post_json(client, REGISTER_BEGIN)
    assert begin.status_code == 403
    assert begin.json()["code"] == "user_not_verified"
    # Nor by skipping "begin" and posting a credential made for a challenge of its own.
    session = client.session
    session["otp_webauthn_register_state"] = {"challenge": b64url(b"x" * 32), "require_user_verification": False}
    session.save()
    complete = post_json(client, REGISTER_COMPLETE, SoftAuthenticator().create({"rp": {"id": RP_ID}, "challenge": b64url(b"x" * 32)}))
    assert complete.status_code == 403
    assert not WebAuthnCredential.objects.exists()
    assert SESSION_METHOD not in client.session


def test_password_only_session_of_a_user_with_a_passkey_cannot_register_another(client, new_client):
    user, _ = user_with_passkey(new_client)
    client.force_login(user)
    assert post_json(client, REGISTER_BEGIN).status_code == 403
    assert WebAuthnCredential.objects.filter(user=user).count() == 1


def test_verified_session_adds_a_second_passkey_without_changing_its_method(client, owner):
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    sign_in(client, owner, method="totp")
    response = register(client, SoftAuthenticator())
    assert response.status_code == 200
    assert client.session[SESSION_METHOD] == "totp"
    assert [a for a, _, _ in actions("auth.device_added", "auth.otp_success")] == ["auth.device_added"]


def test_verified_but_stale_session_must_step_up_before_adding_a_passkey(client, owner):
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    with time_machine.travel(time.time() - settings.LIGHTBOX_STEP_UP_SECONDS - 60, tick=False):
        sign_in(client, owner)
    response = post_json(client, REGISTER_BEGIN)
    assert response.status_code == 403 and response.json()["code"] == "step_up_required"


def test_anonymous_cannot_register(client):
    assert post_json(client, REGISTER_BEGIN).status_code == 403
    assert post_json(client, REGISTER_COMPLETE, {}).status_code == 403


def test_registration_endpoints_need_the_csrf_token(owner):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert post_json(client, REGISTER_BEGIN).status_code == 403
    assert not WebAuthnCredential.objects.exists()


# --- Authentication as the second factor -----------------------------------------------------


def test_passkey_verifies_a_password_session_and_cycles_its_key(client, new_client):
    user, authenticator = user_with_passkey(new_client)
    client.force_login(user)
    assert client.get("/").status_code == 302, "the middleware holds an unverified session back"
    key_before = session_key(client)
    response = authenticate(client, authenticator, next_url="/accounts/passkeys/")
    assert response.status_code == 200, response.content
    device = WebAuthnCredential.objects.get(user=user)
    assert response.json() == {"id": device.pk, "redirect_url": "/accounts/passkeys/"}
    assert client.session[SESSION_METHOD] == "passkey" and client.session[SESSION_VERIFIED_AT]
    assert session_key(client) != key_before
    assert client.get("/").status_code == 200
    device.refresh_from_db()
    assert device.sign_count == 1 and device.last_used_at is not None
    success = AuditEvent.objects.filter(action="auth.otp_success").order_by("sequence").last()
    assert success.details == {"method": "passkey", "step_up": False}
    assert (success.object_type, success.object_id) == ("otp_device", device.persistent_id)
    assert success.actor_id == str(user.pk)


def test_passkey_in_a_verified_session_counts_as_step_up(client, new_client):
    user, authenticator = user_with_passkey(new_client)
    with time_machine.travel(time.time() - settings.LIGHTBOX_STEP_UP_SECONDS - 60, tick=False):
        sign_in(client, user)
    response = authenticate(client, authenticator)
    assert response.status_code == 200
    assert time.time() - client.session[SESSION_VERIFIED_AT] < 60
    assert actions("auth.otp_success")[-1][2] == {"method": "passkey", "step_up": True}
    assert actions("auth.step_up") == [("auth.step_up", "success", {"method": "passkey"})]


def test_offsite_next_is_not_followed(client, new_client):
    user, authenticator = user_with_passkey(new_client)
    client.force_login(user)
    response = authenticate(client, authenticator, next_url="https://evil.example/")
    assert response.status_code == 200 and response.json()["redirect_url"] == "/"


def test_bad_signature_is_refused_and_audited(client, new_client):
    user, authenticator = user_with_passkey(new_client)
    client.force_login(user)

    def flip_signature(assertion):
        signature = bytearray(unb64url(assertion["response"]["signature"]))
        signature[-1] ^= 0x01
        assertion["response"]["signature"] = b64url(bytes(signature))

    response = authenticate(client, authenticator, tamper=flip_signature)
    assert response.status_code == 422
    assert SESSION_METHOD not in client.session
    assert client.get("/").status_code == 302
    assert actions("auth.otp_failure") == [("auth.otp_failure", "failure", {"method": "passkey", "step_up": False})]


def test_assertion_cannot_be_replayed(client, new_client):
    user, authenticator = user_with_passkey(new_client)
    client.force_login(user)
    begin = post_json(client, AUTH_BEGIN).json()
    assertion = authenticator.get(begin)
    assert post_json(client, AUTH_COMPLETE, assertion).status_code == 200
    replay = post_json(client, AUTH_COMPLETE, assertion)
    assert replay.status_code == 400 and replay.json()["code"] == "invalid_state"


def test_assertion_made_on_another_origin_is_refused(client, new_client):
    user, authenticator = user_with_passkey(new_client)
    client.force_login(user)
    authenticator.origin = "https://lightbox.test.evil.example"  # a phishing page relaying the ceremony
    response = authenticate(client, authenticator)
    assert response.status_code == 422
    assert SESSION_METHOD not in client.session


def test_someone_elses_passkey_does_not_verify_my_session(client, new_client, owner):
    _, other_authenticator = user_with_passkey(new_client)
    # owner has a passkey too, so that authentication can begin for them
    mine = SoftAuthenticator()
    owner_client = sign_in(new_client(), owner)
    assert register(owner_client, mine).status_code == 200
    client.force_login(owner)
    response = authenticate(client, other_authenticator)
    assert response.status_code == 403 and response.json()["code"] == "credential_user_mismatch"
    assert SESSION_METHOD not in client.session


def test_no_passwordless_sign_in(client, new_client):
    _, authenticator = user_with_passkey(new_client)
    begin = post_json(client, AUTH_BEGIN)
    assert begin.status_code == 403 and begin.json()["code"] == "passwordless_login_disabled"
    forged = authenticator.get({"rpId": RP_ID, "challenge": b64url(b"c" * 32)})
    assert post_json(client, AUTH_COMPLETE, forged).status_code == 403
    assert "_auth_user_id" not in client.session


def test_begin_without_a_passkey_says_so(client, owner):
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    client.force_login(owner)
    response = post_json(client, AUTH_BEGIN)
    assert response.status_code == 400 and response.json()["code"] == "no_passkeys"


@pytest.mark.parametrize(
    "body, content_type",
    [
        ("not json", JSON),
        ("[1, 2]", JSON),
        ('"a string"', JSON),
        ("{}", JSON),
        ('{"id": "!!", "rawId": "!!", "type": "public-key", "response": {}}', JSON),
        ('{"id": "AA", "rawId": "AA", "type": "public-key", "response": {"clientDataJSON": "%%", '
         '"authenticatorData": "AA", "signature": "AA", "attestationObject": "AA"}}', JSON),
        ("id=AA&rawId=AA", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_get_a_4xx_never_a_500(client, new_client, body, content_type):
    user, _ = user_with_passkey(new_client)
    sign_in(client, user)
    for begin, complete in ((AUTH_BEGIN, AUTH_COMPLETE), (REGISTER_BEGIN, REGISTER_COMPLETE)):
        assert post_json(client, begin).status_code == 200
        response = client.post(complete, body, content_type=content_type, HTTP_ACCEPT=JSON)
        assert 400 <= response.status_code < 500, (complete, response.status_code, response.content)
        assert "detail" in response.json()


def test_valid_attestation_with_junk_extension_results_is_a_422_not_a_500(client, owner):
    # The package reads clientExtensionResults.credProps.rk unguarded: a TypeError without our net.
    sign_in(client, owner)
    payload = SoftAuthenticator().create(post_json(client, REGISTER_BEGIN).json())
    payload["clientExtensionResults"] = {"credProps": 1}
    response = post_json(client, REGISTER_COMPLETE, payload)
    assert response.status_code == 422 and response.json()["code"] == "unprocessable_request"
    assert not WebAuthnCredential.objects.exists()


# --- The passkeys page ----------------------------------------------------------------------


def _passkey_of(user):
    return WebAuthnCredential.objects.get(user=user)


def test_passkeys_page_lists_only_my_passkeys_and_offers_to_add(client, new_client, owner):
    other, _ = user_with_passkey(new_client)
    sign_in(client, owner)
    assert register(client, SoftAuthenticator()).status_code == 200
    response = client.get("/accounts/passkeys/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-passkey-id="{_passkey_of(owner).pk}"' in html
    assert f'data-passkey-id="{_passkey_of(other).pk}"' not in html
    assert 'id="passkey-registration-placeholder"' in html and 'id="otp_webauthn_config"' in html


def test_passkeys_page_has_no_inline_script(client, owner):
    import re

    sign_in(client, owner)
    html = client.get("/accounts/passkeys/").content.decode()
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag or 'type="application/json"' in tag, tag
    assert " style=" not in html and " onclick=" not in html


def test_passkeys_page_asks_a_stale_session_to_verify_before_adding(client, owner):
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    with time_machine.travel(time.time() - settings.LIGHTBOX_STEP_UP_SECONDS - 60, tick=False):
        sign_in(client, owner)
    html = client.get("/accounts/passkeys/").content.decode()
    assert "passkey-registration-placeholder" not in html
    assert "/accounts/verify/?next=%2Faccounts%2Fpasskeys%2F&amp;step_up=1" in html


def test_removing_a_passkey_needs_a_fresh_verification(client, owner):
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    sign_in(client, owner)
    assert register(client, SoftAuthenticator()).status_code == 200
    passkey = _passkey_of(owner)
    url = f"/accounts/passkeys/{passkey.pk}/remove/"
    with time_machine.travel(time.time() + settings.LIGHTBOX_STEP_UP_SECONDS + 60, tick=False):
        stale_get = client.get(url)
        assert stale_get.status_code == 302 and stale_get["Location"].startswith("/accounts/verify/?")
        assert "step_up=1" in stale_get["Location"]
        assert client.post(url).status_code == 403
    assert WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    assert client.get(url).status_code == 200
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == "/accounts/passkeys/"
    assert not WebAuthnCredential.objects.filter(pk=passkey.pk).exists()
    assert actions("auth.device_removed") == [("auth.device_removed", "success", {"kind": "passkey"})]


def test_my_only_authenticator_cannot_be_removed(client, owner):
    client.force_login(owner)
    assert register(client, SoftAuthenticator()).status_code == 200  # first enrolment
    passkey = _passkey_of(owner)
    url = f"/accounts/passkeys/{passkey.pk}/remove/"
    assert "only authenticator" in client.get(url).content.decode()
    response = client.post(url, follow=True)
    assert "before removing your last one" in response.content.decode()
    assert WebAuthnCredential.objects.filter(pk=passkey.pk).exists()


def test_someone_elses_passkey_is_a_404(client, new_client, owner):
    other, _ = user_with_passkey(new_client)
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    sign_in(client, owner)
    url = f"/accounts/passkeys/{_passkey_of(other).pk}/remove/"
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert WebAuthnCredential.objects.filter(user=other).exists()


def test_verify_page_offers_the_passkey_only_to_users_who_have_one(client, new_client, owner):
    user, _ = user_with_passkey(new_client)
    client.force_login(user)
    html = client.get("/accounts/verify/").content.decode()
    assert 'id="passkey-verification-placeholder"' in html and "otp_webauthn_auth.js" in html
    TOTPDevice.objects.create(user=owner, name="phone", confirmed=True)
    other = new_client()
    other.force_login(owner)
    assert "passkey-verification-placeholder" not in other.get("/accounts/verify/").content.decode()


def test_enrolment_page_offers_a_passkey_and_then_backup_codes(client, owner):
    client.force_login(owner)
    page = client.get("/accounts/enrol/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="passkey-registration-placeholder"' in html
    assert '<script id="lightbox-passkey-success-url" type="application/json">"/accounts/security/backup-codes/new"</script>' in html
    assert register(client, SoftAuthenticator()).status_code == 200
    assert client.get("/accounts/security/backup-codes/new").status_code == 200
