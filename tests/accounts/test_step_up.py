"""Step-up: sensitive actions need a second-factor verification from the last few minutes."""

from __future__ import annotations

import json
from binascii import unhexlify

import pytest
import time_machine
from django.http import HttpResponse
from django.test import RequestFactory
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.backup_codes import issue_backup_codes
from accounts.stepup import require_fresh_step_up, require_step_up, step_up_required
from audit.models import AuditEvent
from tests.factories import sign_in

pytestmark = pytest.mark.django_db

START = 1_800_000_000
KEY = b"12345678901234567890".hex()
NEW_CODES = "/accounts/security/backup-codes/new"


def _code(device: TOTPDevice) -> str:
    return f"{TOTP(unhexlify(device.key), device.step, device.t0, device.digits, device.drift).token():06d}"


@pytest.fixture
def device(owner):
    return TOTPDevice.objects.create(user=owner, name="Phone", confirmed=True, key=KEY)


def test_an_action_without_a_fresh_otp_is_refused_and_redirected_to_verification_then_allowed(
    client, owner, device, settings
):
    old_codes = issue_backup_codes(owner)
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        assert client.get(NEW_CODES).status_code == 200, "fresh right after sign-in"

        clock.shift(settings.LIGHTBOX_STEP_UP_SECONDS + 1)
        refused = client.get(NEW_CODES)
        assert refused.status_code == 302
        assert refused["Location"] == "/accounts/verify/?next=%2Faccounts%2Fsecurity%2Fbackup-codes%2Fnew&step_up=1"
        posted = client.post(NEW_CODES)
        assert posted.status_code == 403 and json.loads(posted.content)["verify"].startswith("/accounts/verify/")
        assert AuditEvent.objects.filter(action="auth.step_up", outcome="denied").count() == 2

        page = client.get(refused["Location"])
        assert page.status_code == 200 and b"Confirm it is you" in page.content, "asks although the session is verified"
        verified = client.post("/accounts/verify/", {"code": _code(device), "next": NEW_CODES, "step_up": "1"})
        assert verified.status_code == 302 and verified["Location"] == NEW_CODES

        assert client.get(NEW_CODES).status_code == 200
        done = client.post(NEW_CODES)
        assert done.status_code == 200 and b"no longer work" in done.content
    assert AuditEvent.objects.filter(action="auth.step_up", outcome="success").count() == 1
    assert AuditEvent.objects.filter(action="auth.backup_codes_regenerated").count() == 1
    assert not any(code.encode() in done.content for code in old_codes)


def test_step_up_with_a_wrong_code_stays_refused(client, owner, device, settings):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(settings.LIGHTBOX_STEP_UP_SECONDS + 1)
        wrong = f"{(int(_code(device)) + 1) % 1_000_000:06d}"
        response = client.post("/accounts/verify/", {"code": wrong, "next": NEW_CODES, "step_up": "1"})
        assert response.status_code == 400
        assert client.get(NEW_CODES).status_code == 302


def test_removing_an_authenticator_needs_step_up(client, owner, device, settings):
    spare = TOTPDevice.objects.create(user=owner, name="Tablet", confirmed=True, key=KEY)
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(settings.LIGHTBOX_STEP_UP_SECONDS + 1)
        url = f"/accounts/security/remove-device/?device={spare.persistent_id}"
        assert client.get(url)["Location"].startswith("/accounts/verify/?next=")
        assert client.post("/accounts/security/remove-device/", {"device": spare.persistent_id}).status_code == 403
    assert TOTPDevice.objects.filter(pk=spare.pk).exists()


def test_adding_another_authenticator_needs_step_up(client, owner, device, settings):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(settings.LIGHTBOX_STEP_UP_SECONDS + 1)
        assert client.get("/accounts/enrol/")["Location"].endswith("step_up=1")


def test_json_clients_get_403_with_the_verification_url(client, owner, settings):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(settings.LIGHTBOX_STEP_UP_SECONDS + 1)
        response = client.get(NEW_CODES, HTTP_ACCEPT="application/json")
    assert response.status_code == 403 and "step-up required" in json.loads(response.content)["error"]


def test_the_window_is_configurable(client, owner, settings):
    settings.LIGHTBOX_STEP_UP_SECONDS = 60
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(59)
        assert client.get(NEW_CODES).status_code == 200
        clock.shift(2)
        assert client.get(NEW_CODES).status_code == 302


def test_consumer_check_reads_the_session_only(owner, settings):
    with time_machine.travel(START, tick=False) as clock:
        session = {"lightbox.second_factor.method": "totp", "lightbox.second_factor.at": START}
        assert require_fresh_step_up(session) and require_step_up(session)
        clock.shift(settings.LIGHTBOX_STEP_UP_SECONDS + 1)
        assert not require_fresh_step_up(session)
    assert not require_fresh_step_up({})


@pytest.mark.django_db(transaction=True)
async def test_decorator_guards_async_views(owner, settings):
    from asgiref.sync import sync_to_async
    from django.contrib.sessions.backends.db import SessionStore

    @step_up_required
    async def export(request):
        return HttpResponse("exported")

    def make_request(at):
        request = RequestFactory().get("/export")
        request.user = owner
        request.session = SessionStore()
        request.session["lightbox.second_factor.method"] = "totp"
        request.session["lightbox.second_factor.at"] = at
        return request

    with time_machine.travel(START, tick=False):
        fresh = await export(make_request(START - 10))
        stale = await export(make_request(START - settings.LIGHTBOX_STEP_UP_SECONDS - 1))
    assert fresh.content == b"exported"
    assert stale.status_code == 302 and "step_up=1" in stale["Location"]
    assert await sync_to_async(AuditEvent.objects.filter(action="auth.step_up", outcome="denied").count)() == 1
