"""Password lockout (django-axes): 5 failures per account or per address lock sign-in for 15 minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from audit.models import AuditEvent
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
MESSAGE = b"Too many failed sign-ins. Try again in 15 minutes or contact your administrator."


def _sign_in(client, email: str, password: str, ip: str):
    return client.post("/accounts/sign-in/", {"username": email, "password": password}, REMOTE_ADDR=ip)


def test_five_wrong_passwords_lock_the_account_from_every_address(owner):
    with time_machine.travel(START, tick=False) as clock:
        attacker = Client()
        for attempt in range(4):
            response = _sign_in(attacker, owner.email, f"wrong-password-{attempt}", "203.0.113.7")
            assert response.status_code == 200 and b"do not match" in response.content
        # Case does not make it another account.
        fifth = _sign_in(attacker, owner.email.upper(), "wrong-password-5", "203.0.113.7")
        assert fifth.status_code == 429 and MESSAGE in fifth.content

        # The owner, from their own address, with the right password: still locked out.
        clock.shift(timedelta(minutes=1))
        owner_client = Client()
        refused = _sign_in(owner_client, owner.email, PASSWORD, "198.51.100.20")
        assert refused.status_code == 429 and MESSAGE in refused.content
        assert owner_client.get("/").status_code == 302  # not signed in

        clock.shift(timedelta(minutes=15))
        allowed = _sign_in(owner_client, owner.email, PASSWORD, "198.51.100.20")
    assert allowed.status_code == 302 and not allowed["Location"].startswith("/accounts/sign-in/")

    locks = AuditEvent.objects.filter(action="auth.lockout").order_by("sequence")
    assert [event.details["event"] for event in locks] == ["locked", "refused_while_locked"]
    first = locks[0]
    assert first.outcome == "denied" and first.source_ip == "203.0.113.7"
    assert first.details["attempted_email"] == owner.email and first.details["failure_limit"] == 5
    assert "wrong-password" not in str(first.details)


def test_five_failures_from_one_address_lock_that_address_for_every_account(owner, colleague):
    with time_machine.travel(START, tick=False) as clock:
        sprayer = Client()
        for n in range(5):
            response = _sign_in(sprayer, f"nobody{n}@example.org", "Password123!", "192.0.2.50")
        assert response.status_code == 429

        # Even a correct password for a real account is refused from that address...
        same_address = _sign_in(Client(), colleague.email, PASSWORD, "192.0.2.50")
        assert same_address.status_code == 429 and MESSAGE in same_address.content
        # ...while the account itself is not locked elsewhere.
        elsewhere = _sign_in(Client(), colleague.email, PASSWORD, "198.51.100.30")
        assert elsewhere.status_code == 302

        clock.shift(timedelta(minutes=16))
        later = _sign_in(Client(), colleague.email, PASSWORD, "192.0.2.50")
    assert later.status_code == 302


def test_four_failures_do_not_lock(owner):
    client = Client()
    for attempt in range(4):
        assert _sign_in(client, owner.email, f"nope-{attempt}", "203.0.113.8").status_code == 200
    assert _sign_in(client, owner.email, PASSWORD, "203.0.113.8").status_code == 302
    assert not AuditEvent.objects.filter(action="auth.lockout").exists()


def test_forwarded_address_is_ignored_without_a_trusted_proxy(settings, owner):
    settings.TRUSTED_PROXY = False
    for n in range(5):
        # A client rotating X-Forwarded-For does not escape the per-address count.
        response = Client().post(
            "/accounts/sign-in/",
            {"username": f"spray{n}@example.org", "password": "x"},
            REMOTE_ADDR="192.0.2.60",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{n}",
        )
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(settings, owner):
    settings.TRUSTED_PROXY = True
    for n in range(5):
        Client().post(
            "/accounts/sign-in/",
            {"username": f"spray{n}@example.org", "password": "x"},
            REMOTE_ADDR="10.0.0.1",
            HTTP_X_FORWARDED_FOR="198.51.100.1, 192.0.2.70",
        )
    # Another client behind the same proxy is not locked out by the first one's failures.
    other = Client().post(
        "/accounts/sign-in/",
        {"username": owner.email, "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="192.0.2.71",
    )
    assert other.status_code == 302
    event = AuditEvent.objects.get(action="auth.lockout")
    assert event.source_ip == "192.0.2.70"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_browser_sees_the_lockout_message_on_the_sign_in_page(live_server_url, owner):
    from playwright.sync_api import expect, sync_playwright

    from tests.browser import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            for attempt in range(5):
                page.goto(live_server_url + "/accounts/sign-in/")
                page.fill("input[name=username]", owner.email)
                page.fill("input[name=password]", f"not-the-password-{attempt}")
                page.click("button[type=submit].primary")
                page.wait_for_load_state()
            expect(page.locator(".messages")).to_contain_text(MESSAGE.decode())
            # The right password now is refused too, with the same message and no sign-in.
            page.fill("input[name=username]", owner.email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit].primary")
            page.wait_for_load_state()
            expect(page.locator(".messages")).to_contain_text(MESSAGE.decode())
            expect(page.locator("header .who")).to_have_count(0)
        finally:
            browser.close()
