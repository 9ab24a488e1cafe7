"""Session lifetime: idle timeout, absolute lifetime, ended elsewhere, sign out everywhere, the sessions page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.conf import settings
from django.test import Client

from accounts.models import UserSession
from accounts.sessions import hash_session_key
from audit.models import AuditEvent
from tests.factories import sign_in

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
BACKGROUND = {"HTTP_X_LIGHTBOX_BACKGROUND": "1"}


def _key(client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _assert_sent_to_sign_in(response):
    assert response.status_code == 302, response.status_code
    assert response["Location"].startswith("/accounts/sign-in/")


def test_sign_in_records_the_new_session_key_hashed(client, owner):
    response = client.post(
        "/accounts/sign-in/",
        {"username": owner.email, "password": "correct horse battery staple"},
        REMOTE_ADDR="10.9.8.7",
        HTTP_USER_AGENT=FIREFOX_WINDOWS,
    )
    assert response.status_code == 302
    found = UserSession.objects.get(user=owner)
    # The hash of the key after login() cycled it: the one the browser now holds.
    assert found.key_hash == hash_session_key(_key(client))
    assert _key(client) not in found.key_hash
    assert (found.ip_address, found.user_agent, found.ended_at) == ("10.9.8.7", FIREFOX_WINDOWS, None)


def test_fourteen_idle_minutes_keep_the_session_sixteen_sign_it_out(client, owner):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(timedelta(minutes=14))
        assert client.get("/").status_code == 200
        clock.shift(timedelta(minutes=14))  # 14 minutes after that request: still fine
        assert client.get("/").status_code == 200
        clock.shift(timedelta(minutes=16))
        response = client.get("/")
        _assert_sent_to_sign_in(response)
        assert response["Location"] == "/accounts/sign-in/?next=/"
        page = client.get(response["Location"])
    assert b"You were signed out after 15 minutes of inactivity." in page.content
    assert client.get("/").status_code == 302  # really signed out, not just redirected once
    found = UserSession.objects.get(user=owner)
    assert found.end_reason == "idle" and found.ended_at is not None
    event = AuditEvent.objects.get(action="auth.session_ended")
    assert event.actor_label == owner.email and event.details["reason"] == "idle"


def test_background_polls_do_not_extend_the_idle_window(client, owner):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        for _ in range(3):
            clock.shift(timedelta(minutes=5))
            status = client.get("/accounts/sessions/status", **BACKGROUND)
            assert status.status_code == 200
        # Ten minutes idle, polled all along: the poll reports the idle clock still running.
        assert status.json()["idle_remaining"] == 0
        clock.shift(timedelta(minutes=1, seconds=1))
        poll = client.get("/accounts/sessions/status", **BACKGROUND)
    assert poll.status_code == 401
    assert poll.json()["reason"] == "idle" and poll.json()["login_url"] == "/accounts/sign-in/"


def test_status_counts_down_and_keepalive_restarts_the_idle_clock(client, owner):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(timedelta(minutes=10))
        before = client.get("/accounts/sessions/status", **BACKGROUND).json()
        kept = client.post("/accounts/sessions/keepalive", HTTP_ACCEPT="application/json").json()
        clock.shift(timedelta(minutes=14))
        still = client.get("/accounts/sessions/status", **BACKGROUND)
    assert before["idle_remaining"] == 5 * 60 and before["warning_seconds"] == 120
    assert kept["idle_remaining"] == 15 * 60
    assert kept["absolute_remaining"] == 12 * 3600 - 10 * 60
    assert still.status_code == 200 and still.json()["idle_remaining"] == 60


def test_absolute_lifetime_ends_even_a_busy_session(client, owner):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        elapsed = timedelta()
        while elapsed + timedelta(minutes=10) <= timedelta(hours=12):
            clock.shift(timedelta(minutes=10))
            elapsed += timedelta(minutes=10)
            assert client.get("/accounts/sessions/").status_code == 200, elapsed
        clock.shift(timedelta(minutes=1))
        response = client.get("/accounts/sessions/")
        _assert_sent_to_sign_in(response)
        page = client.get(response["Location"])
    assert b"reached its 12 hours limit" in page.content
    assert UserSession.objects.get(user=owner).end_reason == "absolute_lifetime"


def test_idle_api_style_request_gets_json_401_not_a_redirect(client, owner):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client, owner)
        clock.shift(timedelta(minutes=16))
        response = client.get("/accounts/sessions/", HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["message"] == "You were signed out after 15 minutes of inactivity."


def test_session_ended_from_another_client_is_signed_out(owner):
    laptop, phone = Client(HTTP_USER_AGENT=CHROME_MAC), Client(HTTP_USER_AGENT=FIREFOX_WINDOWS)
    sign_in(laptop, owner)
    sign_in(phone, owner)
    assert phone.get("/").status_code == 200
    phone_record = UserSession.objects.get(key_hash=hash_session_key(_key(phone)))

    response = laptop.post(f"/accounts/sessions/{phone_record.pk}/end")
    assert response.status_code == 302 and response["Location"] == "/accounts/sessions/"

    refused = phone.get("/")
    _assert_sent_to_sign_in(refused)
    assert b"ended from another device" in phone.get(refused["Location"]).content
    assert laptop.get("/").status_code == 200
    event = AuditEvent.objects.get(action="auth.session_ended")
    assert event.object_id == str(phone_record.pk) and event.details["reason"] == "ended_by_user"


def test_sign_out_everywhere_signs_out_every_client_including_this_one(owner, colleague):
    clients = [Client(), Client(), Client()]
    for each in clients:
        sign_in(each, owner)
    bystander = sign_in(Client(), colleague)

    response = clients[0].post("/accounts/sessions/end-all")
    assert response.status_code == 302 and response["Location"] == "/accounts/sign-in/"
    assert response["Clear-Site-Data"] == '"cache", "cookies", "storage"'
    for each in clients:
        _assert_sent_to_sign_in(each.get("/"))
    assert bystander.get("/").status_code == 200
    assert not UserSession.objects.filter(user=owner, ended_at__isnull=True).exists()
    event = AuditEvent.objects.get(action="auth.session_ended", object_type="user")
    assert event.details == {"reason": "signed_out_everywhere", "scope": "all", "sessions": 3}


def test_sessions_page_lists_device_ip_and_marks_this_session(owner):
    laptop, phone = Client(HTTP_USER_AGENT=CHROME_MAC), Client(HTTP_USER_AGENT=FIREFOX_WINDOWS)
    sign_in(laptop, owner)
    sign_in(phone, owner)
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=2), tick=False):
        # Requests refresh the record (at most once a minute) with the device and address seen.
        phone.get("/", REMOTE_ADDR="203.0.113.9")
        page = laptop.get("/accounts/sessions/", REMOTE_ADDR="198.51.100.4")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Chrome 131 on macOS" in html and "198.51.100.4" in html
    assert "Firefox 128 on Windows" in html and "203.0.113.9" in html
    assert html.count("This session") == 1
    assert html.index("This session") > html.index("Chrome 131 on macOS")


def test_ended_and_idle_sessions_are_not_listed(owner):
    with time_machine.travel(START, tick=False) as clock:
        sign_in(Client(), owner)
        idle = UserSession.objects.get(user=owner)
        clock.shift(timedelta(minutes=20))
        ended = sign_in(Client(), owner)
        ended_record = UserSession.objects.get(user=owner, pk__gt=idle.pk)
        ended.post("/accounts/sign-out/")
        current = sign_in(Client(), owner)
        current_record = UserSession.objects.get(user=owner, ended_at__isnull=True, pk__gt=ended_record.pk)
        html = current.get("/accounts/sessions/").content.decode()
    assert f"/accounts/sessions/{current_record.pk}/end" in html
    assert f"/accounts/sessions/{idle.pk}/end" not in html
    assert f"/accounts/sessions/{ended_record.pk}/end" not in html


def test_cannot_end_someone_elses_session(client, owner, colleague):
    theirs = sign_in(Client(), colleague)
    their_record = UserSession.objects.get(user=colleague)
    sign_in(client, owner)
    assert client.post(f"/accounts/sessions/{their_record.pk}/end").status_code == 404
    assert client.post("/accounts/sessions/999999/end").status_code == 404
    assert theirs.get("/").status_code == 200


def test_ending_this_session_from_the_list_signs_out(client, owner):
    sign_in(client, owner)
    mine = UserSession.objects.get(user=owner)
    response = client.post(f"/accounts/sessions/{mine.pk}/end")
    assert response.status_code == 302 and response["Location"] == "/accounts/sign-in/"
    assert "cookies" in response["Clear-Site-Data"]
    _assert_sent_to_sign_in(client.get("/"))


def test_session_pages_refuse_get_for_actions_and_anonymous_users(client, owner):
    assert client.get("/accounts/sessions/")["Location"].startswith("/accounts/sign-in/")
    assert client.post("/accounts/sessions/keepalive", HTTP_ACCEPT="application/json").status_code == 401
    sign_in(client, owner)
    assert client.get("/accounts/sessions/end-all").status_code == 405


def test_signing_out_ends_the_record(client, owner):
    sign_in(client, owner)
    client.post("/accounts/sign-out/")
    assert UserSession.objects.get(user=owner).end_reason == "signed_out"


def test_pages_carry_the_idle_warning_data_and_module(client, owner):
    with time_machine.travel(START, tick=False):
        sign_in(client, owner)
        html = client.get("/").content.decode()
    assert 'id="lightbox-session" type="application/json"' in html
    assert 'type="module" src="/static/accounts/session_idle.js"' in html
    assert '"warning_seconds": 120' in html and '"idle_remaining": 900' in html
    # Not for anonymous visitors.
    assert "lightbox-session" not in Client().get("/accounts/sign-in/").content.decode()


def test_a_cycled_session_key_keeps_its_record(client, owner):
    sign_in(client, owner)
    first = UserSession.objects.get(user=owner)
    session = client.session
    session.cycle_key()  # e.g. a later step of sign-in rotating the key against fixation
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    assert client.get("/").status_code == 200
    found = UserSession.objects.get(user=owner)
    assert found.pk == first.pk and found.key_hash == hash_session_key(session.session_key)


def test_a_session_without_a_record_is_recorded_on_its_next_request(client, owner):
    sign_in(client, owner)
    UserSession.objects.all().delete()
    assert client.get("/").status_code == 200
    assert UserSession.objects.get(user=owner).key_hash == hash_session_key(_key(client))


def test_sessions_page_queries_do_not_grow_with_the_number_of_sessions(client, owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    sign_in(client, owner)
    client.get("/accounts/sessions/")  # first request of a session writes its record once

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/accounts/sessions/").status_code == 200
        return len(queries)

    few = count()
    for _ in range(5):
        sign_in(Client(), owner)
    assert count() == few


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        (CHROME_MAC, "Chrome 131 on macOS"),
        (FIREFOX_WINDOWS, "Firefox 128 on Windows"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
            "Edge 120 on Windows",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.1 Mobile/15E148 Safari/604.1",
            "Safari 17 on iPhone",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome 131 on Android",
        ),
        ("curl/8.5.0", "Other client"),
        ("", "Unknown device"),
    ],
)
def test_device_summary_names_browser_and_system(user_agent, device):
    from accounts.session_views import describe_user_agent

    assert describe_user_agent(user_agent) == device


def test_absurd_session_ids_are_404_not_500(client, owner):
    sign_in(client, owner)
    assert client.post("/accounts/sessions/99999999999999999999999999/end").status_code == 404
