"""Demo users come with a confirmed TOTP device whose secret `manage.py demo` prints."""

from __future__ import annotations

import re
from io import StringIO
from urllib.parse import parse_qs, urlparse

import pytest
import time_machine
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser import code_at

pytestmark = pytest.mark.django_db

LINE = re.compile(r"^\s*(\w+)\s+(\S+@lightbox\.test)\s+(\S+)\s+([A-Z2-7]{32})\s+(otpauth://\S+)$", re.M)


def test_demo_prints_each_users_password_totp_secret_and_uri(settings):
    out = StringIO()
    call_command("demo", "--no-studies", stdout=out)
    rows = LINE.findall(out.getvalue())
    assert [r[0] for r in rows] == ["clinician", "patient", "staff", "auditor", "admin"]
    for _role, email, _password, secret, uri in rows:
        device = TOTPDevice.objects.get(user__email=email)
        assert device.confirmed
        query = parse_qs(urlparse(uri).query)
        assert query["secret"] == [secret] and query["issuer"] == ["Lightbox"] and email.replace("@", "%40") in uri
    path = settings.DATA_DIR / "secrets" / "demo-credentials.txt"
    assert path.stat().st_mode & 0o777 == 0o600

    again = StringIO()
    call_command("demo", "--no-studies", stdout=again)
    assert TOTPDevice.objects.count() == 5, "a second run neither adds devices nor changes secrets"
    assert LINE.findall(again.getvalue()) == rows


def test_a_demo_user_signs_in_with_the_printed_secret(client):
    out = StringIO()
    call_command("demo", "--no-studies", stdout=out)
    _, email, password, secret, _ = next(r for r in LINE.findall(out.getvalue()) if r[0] == "clinician")
    with time_machine.travel(1_800_000_010, tick=False):
        assert client.post("/accounts/sign-in/", {"username": email, "password": password}).status_code == 302
        assert client.get("/")["Location"].startswith("/accounts/verify/")
        response = client.post("/accounts/verify/", {"code": code_at(secret, 1_800_000_010 // 30), "next": "/"})
        assert response.status_code == 302 and response["Location"] == "/"
        assert client.get("/").status_code == 200
