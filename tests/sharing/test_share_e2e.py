"""The whole share journey in a real Chromium: staff creates a share in the admin, a phone opens the
link, a wrong code is refused, the right code opens the watermarked viewer, staff revokes, the
phone's viewer says "access revoked" within a second, and a reload shows the revoked page."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from django.conf import settings

from accounts.models import Role
from tests import factories
from tests.browser import running_chromium
from tests.sharing.helpers import store_study

pytestmark = [pytest.mark.e2e, pytest.mark.live, pytest.mark.django_db(transaction=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "has_touch": True, "is_mobile": True, "device_scale_factor": 2}
VIEWPORT = '.viewport[data-viewport="0"]'


@pytest.fixture
def browser():
    with running_chromium() as chromium:
        yield chromium


def _signed_in_context(browser, base_url, user, **options):
    context = browser.new_context(**options)
    context.add_cookies([{
        "name": settings.SESSION_COOKIE_NAME, "value": factories.session_key_for(user),
        "domain": "127.0.0.1", "path": "/",
    }])
    return context


def _wait_drawn(page):
    page.wait_for_function(
        f"() => {{ const e = document.querySelector('{VIEWPORT}'); return e && Number(e.dataset.drawn || 0) >= 1"
        " && e.dataset.tier === 'final'; }",
        timeout=30_000,
    )


def _canvas(page) -> np.ndarray:
    import base64

    data = page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector + ' canvas');
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let binary = '';
            for (let i = 0; i < pixels.length; i += 32768) binary += String.fromCharCode.apply(null, pixels.subarray(i, i + 32768));
            return {width: canvas.width, height: canvas.height, data: btoa(binary)};
        }""",
        VIEWPORT,
    )
    return np.frombuffer(base64.b64decode(data["data"]), dtype=np.uint8).reshape(data["height"], data["width"], 4)


def test_admin_share_phone_verify_watermark_revoke(browser, live_server_url, org, owner, tmp_path):
    from django.contrib.auth.models import Permission

    study = store_study(org, with_us=False)
    manager = factories.make_user(email="manager@example.org", organization=org, role=Role.STAFF, is_staff=True)
    manager.user_permissions.set(Permission.objects.filter(content_type__app_label="sharing"))

    # 1. Staff creates the share in the admin; the link and code are shown once.
    staff = _signed_in_context(browser, live_server_url, manager)
    admin = staff.new_page()
    admin.goto(f"{live_server_url}/admin/sharing/share/add/")
    admin.select_option("select[name=study]", str(study.pk))
    admin.fill("input[name=recipient_name]", "Dr Phone")
    admin.fill("input[name=recipient_email]", "phone@example.net")
    admin.select_option("select[name=verification]", "access_code")
    admin.click("#create-share")
    link = admin.input_value("#share-link")
    code = admin.input_value("#share-code")
    token = link.rsplit("/s/", 1)[1]
    assert link.startswith(f"{live_server_url}/s/") and len(code) == 11

    # 2. A fresh phone-sized context opens the link; the token leaves the address bar.
    phone_context = browser.new_context(**PHONE)
    phone = phone_context.new_page()
    phone.goto(link)
    phone.wait_for_url(f"{live_server_url}/share/")
    assert token not in phone.url
    assert "DOE" not in phone.content()  # no PHI before verification
    cookie = next(c for c in phone_context.cookies() if c["name"] == settings.LIGHTBOX_SHARE_COOKIE_NAME)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["value"] != token

    # 3. A wrong code shows an error; the right one opens the share.
    phone.fill("input[name=code]", "WRONG-CODE1")
    phone.click("#verify-submit")
    assert "not right" in phone.text_content("#verify-error")
    phone.fill("input[name=code]", code)
    phone.click("#verify-submit")
    phone.wait_for_selector("#open-viewer")
    phone.click("#open-viewer")
    phone.wait_for_url(re.compile(rf".*/viewer/{re.escape(study.study_instance_uid)}/$"))
    _wait_drawn(phone)
    shared = _canvas(phone)
    phone.screenshot(path=str(tmp_path / "share-phone.png"))

    # 4. The same view without a watermark (a clinician of an organisation that does not
    #    watermark internal users) differs exactly by the burned-in text.
    clinician = _signed_in_context(browser, live_server_url, owner, **PHONE)
    plain_page = clinician.new_page()
    plain_page.goto(f"{live_server_url}/viewer/{study.study_instance_uid}/")
    _wait_drawn(plain_page)
    plain = _canvas(plain_page)
    assert shared.shape == plain.shape
    differs = np.any(shared[..., :3] != plain[..., :3], axis=-1)
    assert 0.005 < differs.mean() < 0.6, differs.mean()  # a watermark, not a different image
    assert np.corrcoef(shared[..., 0].ravel(), plain[..., 0].ravel())[0, 1] > 0.8

    # 5. Staff revokes in the admin; the phone's viewer closes within a second.
    admin.goto(f"{live_server_url}/admin/sharing/share/")
    admin.check("input[name=_selected_action]")
    admin.select_option("select[name=action]", "revoke")
    admin.click("button[name=index]")
    admin.wait_for_selector("text=Revoked 1 share(s).")
    revoked_at = time.monotonic()
    phone.wait_for_selector("#viewer-closed:not([hidden])", timeout=1000)
    assert time.monotonic() - revoked_at < 1.0
    assert "revoked" in phone.text_content("#viewer-closed").lower()

    # 6. Reloading shows the revoked page, never the study.
    phone.reload()
    phone.wait_for_load_state()
    assert "Access revoked" in phone.content()
    assert phone.locator('#share-state[data-reason="revoked"]').count() == 1
    assert phone.locator("canvas").count() == 0

    for context in (staff, phone_context, clinician):
        context.close()
