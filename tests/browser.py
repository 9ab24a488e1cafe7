"""Helpers for tests that drive a real Chromium (Playwright, sync API) or sign in over HTTP.

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page()
        sign_in_browser(page, live_server_url, email, PASSWORD, totp_secret)

`totp_code(secret)` acts like an authenticator app (RFC 6238, SHA-1, 6 digits, 30 s steps) and
never hands out the same time step twice in one test process, so two sign-ins in quick
succession are not refused as a replay: the second one uses the next step, which django-otp
accepts within its tolerance of one step.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from base64 import b32decode

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STEP_SECONDS = 30

_last_step: dict[str, int] = {}


def launch_chromium(playwright):
    """Debian's Chromium with the flags the CI containers need (never `playwright install`)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


@contextlib.contextmanager
def running_chromium():
    """Chromium for a pytest fixture that also lets the test thread use the ORM.

    Playwright's sync API keeps an asyncio loop on this thread, and Django then refuses ORM calls
    from it (fixtures, factories, the database flush after each test). Those calls are plain
    synchronous test code, so allow them while the browser lives.
    """
    from playwright.sync_api import sync_playwright

    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = launch_chromium(playwright)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def secret_bytes(secret: str) -> bytes:
    """The key behind a base32 secret as printed by `manage.py demo` or shown on the enrolment page."""
    cleaned = re.sub(r"\s", "", secret).upper()
    return b32decode(cleaned + "=" * (-len(cleaned) % 8))


def code_at(secret: str, step: int) -> str:
    """The 6-digit TOTP code of `secret` for time step `step` (RFC 6238 with RFC 4226 truncation)."""
    from django_otp.oath import hotp

    return f"{hotp(secret_bytes(secret), step, 6):06d}"


def totp_code(secret: str) -> str:
    """A code an authenticator would show now, never a time step this process already used.

    Uses the current step, else the next one (inside django-otp's +-1 step tolerance); when both
    were used, waits for the clock to reach a new step. Also avoids the last second of a step so
    the server sees the same step the code was made for.
    """
    while True:
        now = time.time()
        step = int(now // STEP_SECONDS)
        if now - step * STEP_SECONDS > STEP_SECONDS - 1.5:
            time.sleep(STEP_SECONDS - (now - step * STEP_SECONDS) + 0.1)
            continue
        candidate = max(step, _last_step.get(secret, -1) + 1)
        if candidate <= step + 1:
            _last_step[secret] = candidate
            return code_at(secret, candidate)
        time.sleep((step + 1) * STEP_SECONDS - now + 0.1)


def sign_in_browser(page, base_url: str, email: str, password: str, totp_secret: str, *, next_path: str = "/"):
    """Sign in through the real pages: e-mail and password, then a TOTP code; wait for `next_path`."""
    page.goto(f"{base_url}/accounts/sign-in/?next={next_path}")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit].primary")
    page.wait_for_url(re.compile(r".*/accounts/verify/.*"))
    page.fill("input[name=code]", totp_code(totp_secret))
    page.click("form[action$='/accounts/verify/'] button[type=submit]")
    page.wait_for_url(f"{base_url}{next_path}")
    return page
