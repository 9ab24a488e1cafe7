"""Enforced second factor: TOTP enrolment, verification, backup codes, replay, throttling, the gate."""

from __future__ import annotations

import re
import time
from binascii import unhexlify

import pytest
import time_machine
from django.conf import settings
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.backup_codes import issue_backup_codes, remaining_codes
from accounts.mfa import SESSION_METHOD
from accounts.models import BackupCode, BackupCodeDevice, Role
from audit.models import AuditEvent
from tests import factories
from tests.browser import code_at
from tests.factories import PASSWORD, sign_in

pytestmark = pytest.mark.django_db

START = 1_800_000_000  # a multiple of 30: the clock fixture stands 10 s into a TOTP time step


# RFC 6238 Appendix B's SHA-1 test key: with the frozen clock every code below is deterministic.
RFC_KEY = b"12345678901234567890".hex()


def make_totp_device(user, *, name="Phone", key: str = RFC_KEY) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True, key=key)


def device_code(device: TOTPDevice, *, offset_steps: int = 0) -> str:
    totp = TOTP(unhexlify(device.key), device.step, device.t0, device.digits, device.drift)
    return f"{totp.token() if not offset_steps else _token_at(totp, offset_steps):06d}"


def _token_at(totp: TOTP, offset_steps: int) -> int:
    totp.drift += offset_steps
    return totp.token()


def password_sign_in(client, user, *, next_path: str | None = None, **extra):
    url = "/accounts/sign-in/" + (f"?next={next_path}" if next_path else "")
    response = client.post(url, {"username": user.email, "password": PASSWORD}, **extra)
    assert response.status_code == 302, response.content[:500]
    return response


def verify(client, code, **data):
    return client.post("/accounts/verify/", {"code": code, **data}, REMOTE_ADDR="10.9.8.7", HTTP_USER_AGENT="otp-test")


def actions() -> list[str]:
    return list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))


@pytest.fixture
def clock():
    with time_machine.travel(START + 10, tick=False) as traveller:
        yield traveller


# --- enrolment ----------------------------------------------------------------------------------


def test_new_user_is_enrolled_with_totp_then_sees_backup_codes_then_home(client, owner, clock):
    response = password_sign_in(client, owner)
    home = client.get(response["Location"])
    assert home.status_code == 302 and home["Location"] == "/accounts/enrol/?next=%2F"

    page = client.get(home["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', html).group(1)
    uri = re.search(r'id="totp-uri">(otpauth://[^<]+)<', html).group(1)
    assert "secret=" + secret in uri.replace("&amp;", "&") and "issuer=Lightbox" in uri
    assert "<svg" in html and 'class="segno"' in html
    assert not TOTPDevice.objects.filter(user=owner).exists(), "nothing is saved before the first code verifies"

    done = client.post("/accounts/enrol/", {"code": code_at(secret, (START + 10) // 30), "next": "/"})
    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", done.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert b"shown only now" in done.content
    device = TOTPDevice.objects.get(user=owner)
    assert device.confirmed and device.last_t == (START + 10) // 30
    assert remaining_codes(owner) == 10
    assert not BackupCode.objects.filter(code_hash__in=codes).exists(), "codes are stored hashed"

    assert client.get("/").status_code == 200
    assert client.session[SESSION_METHOD] == "totp"
    assert {"auth.device_added", "auth.otp_success", "auth.backup_codes_regenerated"} <= set(actions())


def test_enrolment_page_sends_no_style_attributes_and_a_strict_csp(client, owner):
    password_sign_in(client, owner)
    page = client.get("/accounts/enrol/")
    assert b"style=" not in page.content and b"<script>" not in page.content
    assert "style-src 'self'" in page["Content-Security-Policy"]
    assert page["Cache-Control"].startswith("no-store") or "no-store" in page["Cache-Control"]


def test_wrong_first_code_saves_no_device_and_keeps_the_gate_shut(client, owner, clock):
    password_sign_in(client, owner)
    secret = re.search(rb'id="totp-secret">([A-Z2-7]+)<', client.get("/accounts/enrol/").content).group(1).decode()
    step = (START + 10) // 30
    accepted = {code_at(secret, step + offset) for offset in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222", "333333") if c not in accepted)
    response = client.post("/accounts/enrol/", {"code": wrong})
    assert response.status_code == 400 and b"does not match" in response.content
    assert not TOTPDevice.objects.filter(user=owner).exists()
    assert client.get("/")["Location"].startswith("/accounts/enrol/")
    assert AuditEvent.objects.filter(action="auth.otp_failure", outcome="failure").exists()


def test_enrolment_rejects_a_malformed_code_with_a_message(client, owner):
    password_sign_in(client, owner)
    response = client.post("/accounts/enrol/", {"code": "12ab"})
    assert response.status_code == 400 and b"6 digits" in response.content


def test_the_secret_survives_a_reload_until_it_is_confirmed(client, owner):
    password_sign_in(client, owner)
    first = re.search(rb'id="totp-secret">([A-Z2-7]+)<', client.get("/accounts/enrol/").content).group(1)
    again = re.search(rb'id="totp-secret">([A-Z2-7]+)<', client.get("/accounts/enrol/").content).group(1)
    assert first == again


def test_password_only_session_cannot_add_an_authenticator_to_an_account_that_has_one(client, owner):
    make_totp_device(owner)
    password_sign_in(client, owner)
    response = client.get("/accounts/enrol/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/verify/")
    assert client.post("/accounts/enrol/", {"code": "123456"}).status_code == 302
    assert TOTPDevice.objects.filter(user=owner).count() == 1


# --- verification -------------------------------------------------------------------------------


def test_totp_code_verifies_rotates_the_session_and_reaches_next(client, owner, clock):
    device = make_totp_device(owner)
    password_sign_in(client, owner, next_path="/accounts/security/")
    gate = client.get("/accounts/security/")
    assert gate["Location"] == "/accounts/verify/?next=%2Faccounts%2Fsecurity%2F"
    before = client.session.session_key
    response = verify(client, device_code(device), next="/accounts/security/")
    assert response.status_code == 302 and response["Location"] == "/accounts/security/"
    assert client.session.session_key != before
    assert client.get("/accounts/security/").status_code == 200
    event = AuditEvent.objects.get(action="auth.otp_success")
    assert (event.source_ip, event.user_agent, event.actor_label) == ("10.9.8.7", "otp-test", owner.email)
    assert event.details["method"] == "totp"


def test_wrong_code_is_refused_and_audited(client, owner, clock):
    device = make_totp_device(owner)
    password_sign_in(client, owner)
    wrong = f"{(int(device_code(device)) + 1) % 1_000_000:06d}"
    response = verify(client, wrong)
    assert response.status_code == 400 and b"not valid" in response.content
    assert client.get("/")["Location"].startswith("/accounts/verify/")
    event = AuditEvent.objects.get(action="auth.otp_failure")
    assert event.outcome == "failure" and event.source_ip == "10.9.8.7" and wrong not in str(event.details)


def test_a_code_cannot_be_replayed(client, owner, clock):
    device = make_totp_device(owner)
    code = device_code(device)
    password_sign_in(client, owner)
    assert verify(client, code).status_code == 302
    client.post("/accounts/sign-out/")

    clock.shift(5)  # same 30 s step: the code is still "current", but it was used
    password_sign_in(client, owner)
    replay = verify(client, code)
    assert replay.status_code == 400 and b"already used" in replay.content
    assert client.get("/")["Location"].startswith("/accounts/verify/")
    clock.shift(3)  # past the 1 s throttle of that failure
    assert verify(client, device_code(device, offset_steps=1)).status_code == 302, "the next step's code works"


def test_backup_code_works_once(client, owner, clock):
    make_totp_device(owner)
    codes = issue_backup_codes(owner)
    password_sign_in(client, owner)
    response = verify(client, codes[3].upper())  # typed in capitals: still accepted
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.session[SESSION_METHOD] == "backup_code"
    assert remaining_codes(owner) == 9
    event = AuditEvent.objects.get(action="auth.backup_code_used")
    assert event.details == {"remaining": 9} and codes[3] not in str(event.details)
    client.post("/accounts/sign-out/")

    clock.shift(60)
    password_sign_in(client, owner)
    again = verify(client, codes[3])
    assert again.status_code == 400
    assert client.get("/")["Location"].startswith("/accounts/verify/")


def test_wrong_codes_are_throttled_with_a_clear_message(client, owner, clock):
    device = make_totp_device(owner)
    password_sign_in(client, owner)
    right = device_code(device)
    wrong = f"{(int(right) + 7) % 1_000_000:06d}"
    assert verify(client, wrong).status_code == 400
    throttled = verify(client, right)  # even the right code waits out the back-off
    assert throttled.status_code == 429
    assert "Too many wrong codes — wait 1 second" in throttled.content.decode()
    assert AuditEvent.objects.filter(action="auth.otp_throttled", outcome="denied").exists()

    clock.shift(2)
    assert verify(client, wrong).status_code == 400
    third = verify(client, wrong)
    assert "wait 2 seconds" in third.content.decode()
    clock.shift(3)
    assert verify(client, right).status_code == 302
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


def test_backup_codes_are_throttled_too(client, owner, clock):
    make_totp_device(owner)
    codes = issue_backup_codes(owner)
    password_sign_in(client, owner)
    assert verify(client, "aaaaa-aaaaa").status_code == 400
    response = verify(client, codes[0])
    assert response.status_code == 429 and b"Too many wrong codes" in response.content
    assert remaining_codes(owner) == 10, "a throttled attempt uses up nothing"


def test_next_must_stay_on_this_site(client, owner, clock):
    device = make_totp_device(owner)
    password_sign_in(client, owner)
    response = verify(client, device_code(device), next="https://evil.example/phish")
    assert response.status_code == 302 and response["Location"] == "/"


def test_empty_code_is_a_clear_400(client, owner):
    make_totp_device(owner)
    password_sign_in(client, owner)
    response = verify(client, "   ")
    assert response.status_code == 400 and b"Enter the code" in response.content


def test_verified_user_visiting_verify_is_sent_on(client, owner):
    make_totp_device(owner)
    sign_in(client, owner)
    response = client.get("/accounts/verify/?next=/accounts/security/")
    assert response.status_code == 302 and response["Location"] == "/accounts/security/"


def test_user_without_device_on_verify_goes_to_enrolment(client, owner):
    password_sign_in(client, owner)
    response = client.get("/accounts/verify/?next=/")
    assert response.status_code == 302 and response["Location"] == "/accounts/enrol/?next=%2F"


def test_anonymous_verify_and_enrol_go_to_sign_in(client):
    for url in ("/accounts/verify/", "/accounts/enrol/", "/accounts/security/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")


# --- the gate -----------------------------------------------------------------------------------


def test_unverified_session_reaches_nothing_but_the_verify_page(client, org):
    staff = factories.make_user(organization=org, role=Role.STAFF, is_staff=True)
    make_totp_device(staff)
    password_sign_in(client, staff)
    for url in ("/", "/admin/", "/admin/accounts/user/", "/accounts/security/", "/accounts/passkeys/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/verify/"), url
    assert client.post("/accounts/security/backup-codes/new").status_code == 403
    api = client.get("/dicomweb/studies", HTTP_ACCEPT="application/dicom+json")
    assert api.status_code in (401, 403)
    assert client.get("/accounts/verify/").status_code == 200
    assert client.post("/accounts/sign-out/").status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_unverified_websocket_is_refused_with_4401(owner):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from config.asgi import application
    from tests.factories import session_cookie_header

    await sync_to_async(make_totp_device)(owner)
    cookie = await sync_to_async(session_cookie_header)(owner, verified=False)
    headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000"), (b"cookie", cookie.encode())]
    communicator = WebsocketCommunicator(application, "/ws/session/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    assert not connected and code == 4401


# --- devices ------------------------------------------------------------------------------------


def test_security_page_lists_own_devices_only(client, owner, colleague):
    make_totp_device(owner, name="Work phone")
    make_totp_device(colleague, name="Someone else's phone")
    issue_backup_codes(owner)
    sign_in(client, owner)
    page = client.get("/accounts/security/")
    assert b"Work phone" in page.content and b"Someone else" not in page.content
    assert b"10 unused backup codes left" in page.content


def test_the_last_authenticator_cannot_be_removed(client, owner):
    device = make_totp_device(owner)
    sign_in(client, owner)
    response = client.post("/accounts/security/remove-device/", {"device": device.persistent_id})
    assert response.status_code == 400 and b"only authenticator" in response.content
    assert TOTPDevice.objects.filter(pk=device.pk).exists()


def test_removing_a_second_authenticator_works_and_is_audited(client, owner):
    make_totp_device(owner, name="Phone")
    spare = make_totp_device(owner, name="Tablet")
    sign_in(client, owner)
    confirm = client.get(f"/accounts/security/remove-device/?device={spare.persistent_id}")
    assert confirm.status_code == 200 and b"Tablet" in confirm.content
    response = client.post("/accounts/security/remove-device/", {"device": spare.persistent_id})
    assert response.status_code == 302 and response["Location"] == "/accounts/security/"
    assert not TOTPDevice.objects.filter(pk=spare.pk).exists()
    event = AuditEvent.objects.get(action="auth.device_removed")
    assert event.object_id == spare.persistent_id and event.actor_label == owner.email


def test_another_users_device_cannot_be_removed(client, owner, colleague):
    make_totp_device(owner)
    make_totp_device(owner)
    theirs = make_totp_device(colleague)
    make_totp_device(colleague)
    sign_in(client, owner)
    for device_id in (theirs.persistent_id, "auth.user/1", "nonsense", "otp_totp.totpdevice/abc"):
        response = client.post("/accounts/security/remove-device/", {"device": device_id})
        assert response.status_code == 404, device_id
    assert TOTPDevice.objects.filter(pk=theirs.pk).exists()


def test_backup_codes_cannot_be_removed_as_a_device(client, owner):
    make_totp_device(owner)
    make_totp_device(owner)
    issue_backup_codes(owner)
    sign_in(client, owner)
    backup = BackupCodeDevice.objects.get(user=owner)
    assert client.post("/accounts/security/remove-device/", {"device": backup.persistent_id}).status_code == 404


def test_verified_user_adds_a_second_authenticator_without_new_backup_codes(client, owner, clock):
    make_totp_device(owner)
    codes = issue_backup_codes(owner)
    sign_in(client, owner)
    page = client.get("/accounts/enrol/")
    assert page.status_code == 200 and b"Add an authenticator app" in page.content
    secret = re.search(rb'id="totp-secret">([A-Z2-7]+)<', page.content).group(1).decode()
    response = client.post("/accounts/enrol/", {"code": code_at(secret, (START + 10) // 30), "name": "Tablet"})
    assert response.status_code == 302 and response["Location"] == "/accounts/security/"
    assert TOTPDevice.objects.filter(user=owner, name="Tablet", confirmed=True).exists()
    assert BackupCode.objects.filter(device__user=owner).count() == len(codes) and remaining_codes(owner) == 10


# --- admin --------------------------------------------------------------------------------------


def test_admin_uses_the_otp_admin_site_with_the_admin_namespace():
    from django.contrib import admin
    from django_otp.admin import OTPAdminSite

    from accounts.admin_site import LightboxAdminSite

    assert isinstance(admin.site._wrapped if hasattr(admin.site, "_wrapped") else admin.site, LightboxAdminSite)
    assert isinstance(admin.site, OTPAdminSite) and admin.site.name == "admin"
    assert settings.OTP_ADMIN_HIDE_SENSITIVE_DATA is True


def test_anonymous_admin_goes_to_our_sign_in(client):
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/sign-in/?next=")


def test_verified_staff_reaches_admin_and_non_staff_is_told_no(client, org, owner):
    staff = factories.make_user(organization=org, role=Role.STAFF, is_staff=True)
    sign_in(client, staff)
    assert client.get("/admin/").status_code == 200
    client.post("/accounts/sign-out/")
    sign_in(client, owner)
    response = client.get("/admin/", follow=True)
    assert response.status_code == 403 and b"Not authorised" in response.content


def test_admin_login_form_is_not_offered_to_an_unverified_staff_session(client, org):
    staff = factories.make_user(organization=org, role=Role.STAFF, is_staff=True)
    make_totp_device(staff)
    client.force_login(staff)
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/verify/")


def test_admin_hides_totp_keys(client, org):
    superuser = factories.make_user(organization=org, role=Role.ADMIN, is_staff=True)
    superuser.is_superuser = True
    superuser.save()
    device = make_totp_device(superuser)
    sign_in(client, superuser)
    page = client.get(f"/admin/otp_totp/totpdevice/{device.pk}/change/")
    assert page.status_code == 200 and device.key.encode() not in page.content


def test_code_helper_agrees_with_django_otp(owner):
    # Guards the helpers the other tests (and the browser tests) compute codes with.
    device = make_totp_device(owner)
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode()
    with time_machine.travel(START + 10, tick=False):
        assert code_at(secret, int(time.time()) // 30) == device_code(device)


def test_rfc_6238_known_answer(owner):
    # RFC 6238 Appendix B, SHA-1, T = 59 s: 94287082 (8 digits), so 287082 with 6 digits.
    assert code_at("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59 // 30) == "287082"
