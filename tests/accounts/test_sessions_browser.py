"""The idle warning in real Chromium: the banner shows, "Stay signed in" works, time-out signs out."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings

from accounts.models import UserSession
from tests.browser import launch_chromium
from tests.factories import session_key_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_idle_warning_banner_stay_signed_in_then_idle_sign_out(live_server_url, settings, owner):
    from playwright.sync_api import expect, sync_playwright

    # A short idle window so the warning comes within seconds: shown 10 s before a 12 s timeout.
    settings.LIGHTBOX_SESSION_IDLE_SECONDS = 12
    settings.LIGHTBOX_SESSION_WARNING_SECONDS = 10
    problems: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context()
            # Signed in only now (on a worker thread: Playwright's loop owns this one), so a slow
            # browser start cannot use up the short idle window before the first page load.
            with ThreadPoolExecutor(max_workers=1) as pool:
                key = pool.submit(session_key_for, owner).result()
            context.add_cookies(
                [{"name": django_settings.SESSION_COOKIE_NAME, "value": key, "domain": "127.0.0.1", "path": "/"}]
            )
            page = context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(live_server_url + "/")
            expect(page.locator("header .who")).to_have_text(owner.email)

            banner = page.locator("#session-warning")
            expect(banner).to_be_visible(timeout=20_000)
            expect(banner).to_contain_text("You will be signed out in")
            expect(banner).to_contain_text("because of inactivity")

            page.click("#session-stay")
            # Hidden again only after the server answered the keep-alive with fresh times.
            expect(banner).to_be_hidden(timeout=10_000)

            # No more activity: the banner comes back, then the page is cleared and sign-in shows why.
            expect(banner).to_be_visible(timeout=20_000)
            page.wait_for_url(re.compile(re.escape(live_server_url) + r"/accounts/sign-in/.*"), timeout=30_000)
            expect(page.locator(".messages")).to_contain_text("You were signed out after 12 seconds of inactivity.")
        finally:
            browser.close()
    assert UserSession.objects.get(user=owner).end_reason == "idle"
    assert not [problem for problem in problems if "session" in problem.lower()], problems


def test_sign_out_everywhere_in_one_browser_sends_the_other_to_sign_in_at_once(live_server_url, owner):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            pages = []
            for _ in range(2):
                context = browser.new_context()
                with ThreadPoolExecutor(max_workers=1) as pool:
                    key = pool.submit(session_key_for, owner).result()
                context.add_cookies(
                    [{"name": django_settings.SESSION_COOKIE_NAME, "value": key, "domain": "127.0.0.1", "path": "/"}]
                )
                pages.append(context.new_page())
            workstation, laptop = pages
            workstation.goto(live_server_url + "/")
            expect(workstation.locator("header .who")).to_have_text(owner.email)
            # The workstation's session socket is connected before the other device acts.
            expect(workstation.locator("html")).to_have_attribute("data-session-socket", "open")

            laptop.goto(live_server_url + "/accounts/sessions/")
            expect(laptop.locator("table.sessions tbody tr")).to_have_count(2)
            expect(laptop.locator("table.sessions")).to_contain_text("This session")
            laptop.click("text=Sign out everywhere")
            laptop.wait_for_url(re.compile(re.escape(live_server_url) + r"/accounts/sign-in/.*"))

            # No reload, no timer: the socket event makes the idle page leave on its own.
            workstation.wait_for_url(re.compile(re.escape(live_server_url) + r"/accounts/sign-in/.*"), timeout=15_000)
            expect(workstation.locator(".messages")).to_contain_text("ended from another device")
        finally:
            browser.close()
    assert not UserSession.objects.filter(user=owner, ended_at__isnull=True).exists()
