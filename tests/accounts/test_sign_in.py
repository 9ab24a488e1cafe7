"""Sign-in, sign-out and failed sign-in are audited, with no password stored."""

import pytest

from audit.models import AuditEvent
from tests.factories import PASSWORD, sign_in

pytestmark = pytest.mark.django_db


def test_sign_in_and_out_are_audited(client, owner):
    response = client.post("/accounts/sign-in/", {"username": owner.email.upper(), "password": PASSWORD}, REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT="pytest-browser")
    assert response.status_code == 302
    client.post("/accounts/sign-out/")
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", "actor_label", "source_ip", "user_agent"))
    assert actions == [
        ("auth.login", owner.email, "10.1.2.3", "pytest-browser"),
        ("auth.logout", owner.email, "127.0.0.1", ""),
    ]


def test_failed_sign_in_is_audited_without_the_password(client, owner):
    response = client.post("/accounts/sign-in/", {"username": owner.email, "password": "wrong-password-123"})
    assert response.status_code == 200
    assert b"do not match" in response.content
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.outcome == "failure" and event.details == {"attempted_email": owner.email}
    assert "wrong-password" not in str(event.details)


def test_anonymous_home_redirects_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/sign-in/")


def test_signed_in_home_lists_roles(client, owner):
    sign_in(client, owner)
    response = client.get("/")
    assert b"Clinician at St Elsewhere" in response.content
