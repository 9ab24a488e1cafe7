"""Signing in, in real Chromium: password, forced TOTP enrolment, TOTP, backup codes, throttling."""

from __future__ import annotations

import re
import time

import pytest

from audit.models import AuditEvent
from tests.browser import code_at, launch_chromium, sign_in_browser, totp_code
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _sign_out(page, base_url):
    page.click("form[action='/accounts/sign-out/'] button")
    page.wait_for_url(re.compile(re.escape(base_url) + r"/accounts/sign-in/.*"))


def _password(page, base_url, email):
    page.goto(base_url + "/accounts/sign-in/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(re.escape(base_url) + r"/accounts/verify/.*"))


def _submit_code(page, code):
    page.fill("input[name=code]", code)
    page.click("form[action='/accounts/verify/'] button[type=submit]")
    page.wait_for_load_state()


def _never_valid(secret: str) -> str:
    """A 6-digit code outside the accepted window (now-1 .. now+2 steps) of `secret`."""
    step = int(time.time() // 30)
    accepted = {code_at(secret, step + offset) for offset in range(-2, 4)}
    return next(c for c in (code_at(secret, step - 40 - i) for i in range(10)) if c not in accepted)


def test_password_then_forced_enrolment_then_totp_and_backup_codes_and_throttling(live_server_url, owner):
    from playwright.sync_api import expect, sync_playwright

    base = live_server_url
    problems: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            # 1. Password sign-in of a user without an authenticator lands on enrolment, nowhere else.
            page.goto(base + "/accounts/sign-in/")
            page.fill("input[name=username]", owner.email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit].primary")
            page.wait_for_url(re.compile(re.escape(base) + r"/accounts/enrol/.*"))
            page.goto(base + "/")
            page.wait_for_url(re.compile(re.escape(base) + r"/accounts/enrol/.*"))
            expect(page.locator(".qr svg")).to_be_visible()
            secret = page.locator("#totp-secret").inner_text().strip()
            assert re.fullmatch(r"[A-Z2-7]{32}", secret)

            # 2. The first code confirms the device; the backup codes are shown once.
            page.fill("input[name=code]", totp_code(secret))
            page.click("form[action='/accounts/enrol/'] button[type=submit]")
            expect(page.locator("#backup-codes")).to_be_visible()
            codes = [c.strip() for c in page.locator("#backup-codes code").all_inner_texts()]
            assert len(codes) == 10
            page.click("#backup-codes-saved")
            page.wait_for_url(base + "/")
            expect(page.locator(".who")).to_have_text(owner.email)

            # 3. Sign out; sign in again with password and a TOTP code (not a replay of the first).
            _sign_out(page, base)
            sign_in_browser(page, base, owner.email, PASSWORD, secret)
            expect(page.locator(".who")).to_have_text(owner.email)

            # 4. A backup code signs in once.
            _sign_out(page, base)
            _password(page, base, owner.email)
            _submit_code(page, codes[0])
            page.wait_for_url(base + "/")
            _sign_out(page, base)
            _password(page, base, owner.email)
            _submit_code(page, codes[0])
            expect(page.locator("#otp-error")).to_contain_text("not valid")
            assert "/accounts/verify/" in page.url

            # 5. Wrong authenticator codes are throttled, and the page says how long to wait.
            for _ in range(8):
                _submit_code(page, _never_valid(secret))
                if page.locator("#otp-throttled").count():
                    break
            expect(page.locator("#otp-throttled")).to_contain_text(re.compile(r"Too many wrong codes — wait \d+ seconds?"))
            page.goto(base + "/")
            assert "/accounts/verify/" in page.url, "still nothing but the verification page"
        finally:
            browser.close()

    csp = [m for m in problems if "Content Security Policy" in m or "Refused to" in m]
    assert csp == [], csp
    recorded = set(AuditEvent.objects.filter(actor_label=owner.email).values_list("action", flat=True))
    assert {
        "auth.device_added",
        "auth.otp_success",
        "auth.backup_codes_regenerated",
        "auth.backup_code_used",
        "auth.otp_failure",
        "auth.otp_throttled",
    } <= recorded
