"""The share link: token hygiene, the cookie exchange, no PHI before verification, rate limits."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets

import pytest
from django.conf import settings
from django.test import Client

from audit.models import AuditEvent
from config.logging import PHIScrubFilter
from sharing.models import Share, ShareSession
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db


def test_db_holds_only_the_hash_of_token_and_code(make_share):
    created = make_share()
    share = Share.objects.get(pk=created.share.pk)
    assert share.token_hash == hashlib.sha256(created.token.encode()).hexdigest()
    assert len(created.token) >= 43  # 256 bits, URL-safe base64
    assert created.token not in share.access_code_hash
    assert created.access_code not in share.access_code_hash
    assert len(created.access_code) == 10 and set(created.access_code) <= set("34679ACDEFGHJKMNPQRTUVWXY")
    # Nothing in any column of the row holds the token or the code in clear.
    row = json.dumps(list(Share.objects.filter(pk=share.pk).values())[0], default=str)
    assert created.token not in row and created.access_code not in row


def test_link_sets_a_strict_httponly_share_cookie_and_leaves_the_token_url(make_share):
    created = make_share()
    client = Client()
    response = client.get(f"/s/{created.token}")
    assert response.status_code == 200
    cookie = response.cookies[settings.LIGHTBOX_SHARE_COOKIE_NAME]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"
    assert 0 < int(cookie["max-age"]) <= settings.LIGHTBOX_SHARE_SESSION_SECONDS
    # The cookie value is random and only its hash is stored; it is not the link token.
    assert cookie.value != created.token
    assert ShareSession.objects.get().key_hash == hashlib.sha256(cookie.value.encode()).hexdigest()
    # The page moves on to the token-free address and never repeats the token.
    body = response.content.decode()
    assert created.token not in body
    assert 'content="1;url=/share/"' in body and 'data-next="/share/"' in body
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response.headers["Cache-Control"]
    # And the user session cookie is not what carries the share.
    assert settings.SESSION_COOKIE_NAME not in response.cookies


def test_no_phi_before_verification(make_share, study):
    created = make_share(message="Your scan from Tuesday")
    client = Client()
    client.get(f"/s/{created.token}")
    page = client.get("/share/").content.decode()
    for phi in ("DOE", "JANE", "19800214", study.study_instance_uid, study.study_description or "@@", "Tuesday"):
        assert phi not in page
    assert 'id="verify-submit"' in page


def test_verified_recipient_sees_the_viewer_link_and_message(make_share, study):
    created = make_share(message="Please review", phi_display="full")
    page = open_and_verify(Client(), created).content.decode()
    assert f'href="/viewer/{study.study_instance_uid}/"' in page
    assert "Please review" in page
    assert "DOE JANE" in page  # PHI display "full" shows the patient's name after verification


def test_redacted_share_shows_no_demographics_after_verification(make_share):
    page = open_and_verify(Client(), make_share(phi_display="redacted")).content.decode()
    assert "DOE" not in page and "19800214" not in page


def test_token_absent_from_log_output(make_share, caplog):
    """Through the real handler chain: the PHI filter and the JSON formatter see /s/<token> scrubbed."""
    created = make_share()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PHIScrubFilter())
    from pythonjsonlogger.json import JsonFormatter

    handler.setFormatter(JsonFormatter("%(levelname)s %(name)s %(message)s"))
    for name in ("django.request", "django.server", "uvicorn.access", "lightbox"):
        logging.getLogger(name).addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            client = Client()
            client.get(f"/s/{created.token}")
            client.get(f"/s/{created.token}x")  # unknown: logged by Django as a 404 warning
            client.post("/share/verify/", {"code": "WRONGWRONG"})
            # What an access-log line for the link looks like, through the same filter.
            logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /s/%s HTTP/1.1" 200', created.token)
    finally:
        for name in ("django.request", "django.server", "uvicorn.access", "lightbox"):
            logging.getLogger(name).removeHandler(handler)
    output = stream.getvalue()
    assert "/s/[redacted]" in output
    assert created.token not in output
    assert created.token not in caplog.text
    assert created.access_code not in output and created.access_code not in caplog.text
    # Nor does the audit trail keep it.
    assert not [e for e in AuditEvent.objects.all() if created.token in json.dumps(e.details) + e.object_id]


def test_unknown_token_gets_a_plain_404_page():
    response = Client().get(f"/s/{secrets.token_urlsafe(32)}")
    assert response.status_code == 404
    assert b"Link not valid" in response.content


def test_ten_thousand_random_tokens_all_fail_and_trip_the_rate_limit(make_share, settings):
    import time

    import time_machine

    created = make_share()
    client = Client()
    statuses: dict[int, int] = {}
    # The budget is per fixed window: a run that crossed a window boundary (a slow machine takes
    # minutes for this loop) would start a fresh budget midway. Time stands still here.
    with time_machine.travel(time.time(), tick=False):
        for _ in range(10_000):
            response = client.get(f"/s/{secrets.token_urlsafe(32)}")
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert set(statuses) == {404, 429}
        assert statuses[404] == settings.LIGHTBOX_SHARE_IP_FAILURES
        assert statuses[429] == 10_000 - settings.LIGHTBOX_SHARE_IP_FAILURES
        assert ShareSession.objects.count() == 0
        # Once the budget is spent even the real link waits (no oracle for a scanner).
        assert client.get(f"/s/{created.token}").status_code == 429
        # Another address is unaffected.
        assert Client(REMOTE_ADDR="192.0.2.10").get(f"/s/{created.token}").status_code == 200


def test_rate_limit_window_passes(make_share, settings):
    import time_machine

    settings.LIGHTBOX_SHARE_IP_FAILURES = 3
    created = make_share()
    client = Client()
    with time_machine.travel("2030-01-01 10:00:00", tick=False) as traveller:
        # (the share expires 7 days after creation in real time; move it along with us)
        Share.objects.filter(pk=created.share.pk).update(expires_at="2030-01-08T00:00:00Z")
        for _ in range(3):
            assert client.get(f"/s/{secrets.token_urlsafe(32)}").status_code == 404
        assert client.get(f"/s/{created.token}").status_code == 429
        traveller.shift(settings.LIGHTBOX_SHARE_IP_WINDOW_SECONDS + 1)
        assert client.get(f"/s/{created.token}").status_code == 200


def test_log_scrubber_removes_link_tokens_and_download_keys():
    from config.logging import scrub
    from sharing.tokens import new_token

    token, key = new_token(), new_token()
    line = f'GET /s/{token} 200 ; GET /share/download/zip?key={key} 200 ; referer "https://h/s/{token}"'
    cleaned = scrub(line)
    assert token not in cleaned and key not in cleaned
    assert cleaned.count("/s/[redacted]") == 2 and "zip?[redacted]" in cleaned
