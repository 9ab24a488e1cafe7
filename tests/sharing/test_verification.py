"""Recipient verification: codes, date of birth, e-mailed codes, accounts; locks, expiry, opens, revocation."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from audit.models import AuditEvent
from sharing import services
from sharing.models import Share, ShareAccess
from tests.factories import sign_in
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db
T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)


def _actions(share) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="share", object_id=str(share.pk)).order_by("sequence").values_list(
            "action", flat=True
        )
    )


def test_wrong_code_shows_an_error_then_right_code_opens(make_share):
    created = make_share()
    client = Client()
    client.get(f"/s/{created.token}")
    wrong = client.post("/share/verify/", {"code": "AAAAAAAAAA"})
    assert wrong.status_code == 400
    assert b'id="verify-error"' in wrong.content and b"not right" in wrong.content
    # Codes are forgiving about case, spaces and the dash the creator sees.
    code = created.access_code
    typed = f"{code[:5].lower()}-{code[5:]} "
    assert client.post("/share/verify/", {"code": typed}).status_code == 302
    landing = client.get("/share/")
    assert landing.status_code == 200 and b'id="open-viewer"' in landing.content
    share = Share.objects.get(pk=created.share.pk)
    assert share.open_count == 1 and share.failed_attempts == 0
    assert [a.event for a in ShareAccess.objects.filter(share=share).order_by("at", "pk")] == [
        "opened", "verification_failed", "verified"
    ]
    assert _actions(share) == ["share.created", "share.opened", "share.verification_failed", "share.verified"]


def test_empty_code_is_a_clear_400_and_not_counted(make_share):
    created = make_share()
    client = Client()
    client.get(f"/s/{created.token}")
    response = client.post("/share/verify/", {"code": ""})
    assert response.status_code == 400 and b"Enter the code" in response.content
    assert Share.objects.get(pk=created.share.pk).failed_attempts == 0


def test_five_failures_lock_for_fifteen_minutes_then_unlock(make_share, mailoutbox, owner):
    with time_machine.travel(T0, tick=False) as traveller:
        created = make_share()
        mailoutbox.clear()
        client = Client()
        client.get(f"/s/{created.token}")
        for attempt in range(1, 5):
            response = client.post("/share/verify/", {"code": "WRONGCODE1"})
            assert response.status_code == 400, attempt
        fifth = client.post("/share/verify/", {"code": "WRONGCODE1"})
        assert fifth.status_code == 423 and b"Temporarily locked" in fifth.content
        share = Share.objects.get(pk=created.share.pk)
        assert share.state == Share.State.LOCKED and share.state_reason == "5 failed verifications"
        assert share.locked_until == T0 + timedelta(minutes=15)
        # The creator is told, without PHI and without the code.
        assert [m.to for m in mailoutbox] == [[owner.email]]
        assert "locked" in mailoutbox[0].subject and "DOE" not in mailoutbox[0].body
        # While locked even the right code from a new session is refused.
        fresh = Client()
        assert fresh.get(f"/s/{created.token}").status_code == 423
        traveller.shift(timedelta(minutes=14, seconds=59))
        assert Client().get(f"/s/{created.token}").status_code == 423
        traveller.shift(timedelta(seconds=2))
        page = open_and_verify(Client(), created)
        assert page.status_code == 200
        share.refresh_from_db()
        assert share.state == Share.State.ACTIVE and share.failed_attempts == 0
    actions = _actions(share)
    assert actions.count("share.verification_failed") == 5
    assert "share.locked" in actions and "share.unlocked" in actions and actions[-1] == "share.verified"


def test_expired_link_shows_the_expired_page_and_expiry_applies_to_live_sessions(make_share):
    with time_machine.travel(T0, tick=False) as traveller:
        created = make_share(expires_at=T0 + timedelta(days=2))
        client = Client()
        open_and_verify(client, created)
        traveller.shift(timedelta(days=2, seconds=1))
        # Enforced on every request, not only at link opening.
        page = client.get("/share/")
        assert page.status_code == 410 and b"Link expired" in page.content
        response = Client().get(f"/s/{created.token}")
        assert response.status_code == 410 and b"Link expired" in response.content


def test_max_opens_reached(make_share):
    created = make_share(max_opens=2)
    open_and_verify(Client(), created)
    open_and_verify(Client(), created)
    response = Client().get(f"/s/{created.token}")
    assert response.status_code == 410 and b"Link used up" in response.content
    assert Share.objects.get(pk=created.share.pk).open_count == 2


def test_revoked_link_and_live_session_fail(make_share, owner):
    created = make_share()
    client = Client()
    open_and_verify(client, created)
    assert services.revoke_share(share=created.share, by=owner, reason="sent to the wrong person")
    page = client.get("/share/")
    assert page.status_code == 410 and b"Access revoked" in page.content
    response = Client().get(f"/s/{created.token}")
    assert response.status_code == 410 and b"Access revoked" in response.content
    share = Share.objects.get(pk=created.share.pk)
    assert share.state_changed_by == owner and share.state_reason == "sent to the wrong person"
    assert "share.revoked" in _actions(share)


def test_date_of_birth_verification(make_share):
    created = make_share(verification="date_of_birth")
    assert created.access_code is None
    client = Client()
    client.get(f"/s/{created.token}")
    assert client.post("/share/verify/", {"birth_date": "1980-02-15"}).status_code == 400
    assert client.post("/share/verify/", {"birth_date": "not a date"}).status_code == 400
    assert client.post("/share/verify/", {"birth_date": "1980-02-14"}).status_code == 302


def test_emailed_one_time_code(make_share, mailoutbox):
    created = make_share(verification="email_code", notify_creator_on_open=False)
    link_mail = mailoutbox[-1]
    assert link_mail.to == ["recipient@example.net"]
    assert created.token in link_mail.body
    assert "DOE" not in link_mail.body and "JANE" not in link_mail.body
    client = Client()
    client.get(f"/s/{created.token}")
    assert client.post("/share/code/").status_code == 200
    code_mail = mailoutbox[-1]
    assert created.token not in code_mail.body  # the code and the link never travel together
    code = re.search(r"code is: (\w+)", code_mail.body).group(1)
    assert client.post("/share/verify/", {"code": code}).status_code == 302
    # One-time: a second browser cannot reuse it.
    other = Client()
    other.get(f"/s/{created.token}")
    assert other.post("/share/verify/", {"code": code}).status_code == 400


def test_access_code_never_in_the_link_email(make_share, mailoutbox):
    created = make_share()
    assert created.token in mailoutbox[-1].body
    assert created.access_code not in mailoutbox[-1].body
    assert all(created.access_code not in m.body for m in mailoutbox)


def test_account_verification_needs_the_recipients_signed_in_account(make_share, colleague, outsider):
    created = make_share(verification="account", recipient_email=colleague.email)
    stranger = Client()
    sign_in(stranger, outsider)
    stranger.get(f"/s/{created.token}")
    assert stranger.post("/share/verify/").status_code == 400
    client = Client()
    sign_in(client, colleague)
    client.get(f"/s/{created.token}")
    assert client.post("/share/verify/").status_code == 302


def test_creator_is_told_when_the_share_is_opened(make_share, mailoutbox, owner):
    created = make_share()
    mailoutbox.clear()
    open_and_verify(Client(), created)
    assert [m.to for m in mailoutbox] == [[owner.email]]
    assert "opened" in mailoutbox[0].subject
    assert created.access_code not in mailoutbox[0].body and "DOE" not in mailoutbox[0].body
