"""Creating and managing shares: the "Share this study" page, patients, policy, the Django admin."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.test import Client

from accounts.mfa import SESSION_VERIFIED_AT
from accounts.models import Role
from archive.models import PatientLink
from audit.models import AuditEvent
from sharing.models import Share
from sharing.tokens import token_hash
from tests.factories import make_user, sign_in
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db


def _form(**overrides):
    data = {
        "recipient_name": "Dr Second Opinion",
        "recipient_email": "second@example.net",
        "recipient_kind": "clinician",
        "verification": "access_code",
        "expires_in_days": "7",
        "download": "none",
        "phi_display": "full",
        "message": "For your opinion",
        "notify_creator_on_open": "on",
        "send_email": "on",
    }
    data.update(overrides)
    return data


def _secrets(page: str) -> tuple[str | None, str | None]:
    link = re.search(r'id="share-link" readonly value="([^"]+)"', page)
    code = re.search(r'id="share-code" readonly value="([^"]+)"', page)
    return link.group(1) if link else None, code.group(1) if code else None


def test_clinician_shares_from_the_viewer_page_and_sees_link_and_code_once(owner, study, mailoutbox):
    client = sign_in(Client(), owner)
    url = f"/share/new/{study.study_instance_uid}/"
    assert client.get(url).status_code == 200
    response = client.post(url, _form())
    assert response.status_code == 200
    link, code = _secrets(response.content.decode())
    token = link.rsplit("/s/", 1)[1]
    share = Share.objects.get()
    assert share.token_hash == token_hash(token) and share.created_by == owner and share.study == study
    assert code and len(code.replace("-", "")) == 10
    assert AuditEvent.objects.filter(action="share.created", object_id=str(share.pk)).exists()
    assert mailoutbox[-1].to == ["second@example.net"] and code not in mailoutbox[-1].body
    # The code works for the recipient (typed as shown, with the dash).
    recipient = Client()
    recipient.get(f"/s/{token}")
    assert recipient.post("/share/verify/", {"code": code}).status_code == 302


def test_outsider_and_auditor_get_404(outsider, auditor, study):
    for user in (outsider, auditor):
        client = sign_in(Client(), user)
        assert client.get(f"/share/new/{study.study_instance_uid}/").status_code == 404
        assert client.post(f"/share/new/{study.study_instance_uid}/", _form()).status_code == 404
    assert not Share.objects.exists()


def test_expiry_beyond_the_organisation_maximum_is_refused(owner, study, org):
    org.max_share_days = 10
    org.save()
    client = sign_in(Client(), owner)
    response = client.post(f"/share/new/{study.study_instance_uid}/", _form(expires_in_days="11"))
    assert response.status_code == 400 and b"at most 10 days" in response.content
    assert not Share.objects.exists()


def test_original_download_needs_fresh_step_up(owner, study):
    client = sign_in(Client(), owner)
    session = client.session
    session[SESSION_VERIFIED_AT] = time.time() - 3600
    session.save()
    url = f"/share/new/{study.study_instance_uid}/"
    response = client.post(url, _form(download="original"))
    assert response.status_code == 400 and b"fresh code" in response.content
    assert b"/accounts/verify/?" in response.content
    assert not Share.objects.exists()
    sign_in(client, owner)  # a fresh verification
    assert client.post(url, _form(download="original")).status_code == 200
    assert Share.objects.get().download == "original"


def test_patient_shares_their_own_study_but_not_others(org, study, other_study):
    patient = make_user(email="patient@example.org", organization=org, role=Role.PATIENT)
    PatientLink.objects.create(user=patient, patient=study.patient, method="staff")
    client = sign_in(Client(), patient)
    response = client.post(f"/share/new/{study.study_instance_uid}/", _form(recipient_kind="clinician"))
    assert response.status_code == 200
    assert Share.objects.get().created_by == patient
    assert client.get(f"/share/new/{other_study.study_instance_uid}/").status_code == 404


def test_anonymous_is_sent_to_sign_in(study):
    response = Client().get(f"/share/new/{study.study_instance_uid}/")
    assert response.status_code == 302 and "/accounts/" in response["Location"]


# --- the admin ------------------------------------------------------------------------------


@pytest.fixture
def manager(org):
    """Staff share manager with the admin permissions of the sharing app."""
    from django.contrib.auth.models import Permission

    user = make_user(email="manager@example.org", organization=org, role=Role.STAFF, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="sharing"))
    return user


def test_admin_creates_a_share_and_shows_secrets_once(manager, study):
    client = sign_in(Client(), manager)
    assert client.get("/admin/sharing/share/add/").status_code == 200
    response = client.post("/admin/sharing/share/add/", _form(study=str(study.pk)))
    assert response.status_code == 200, response.content[:500]
    link, code = _secrets(response.content.decode())
    share = Share.objects.get()
    assert share.token_hash == token_hash(link.rsplit("/s/", 1)[1])
    # The change page never shows them again.
    page = client.get(f"/admin/sharing/share/{share.pk}/change/").content.decode()
    assert link.rsplit("/s/", 1)[1] not in page and code not in page


def test_admin_list_filters_and_scope(manager, outsider, make_share, other_org):
    created = make_share()
    client = sign_in(Client(), manager)
    page = client.get("/admin/sharing/share/?state__exact=active")
    assert page.status_code == 200 and f"/admin/sharing/share/{created.share.pk}/change/" in page.content.decode()
    assert f"/admin/sharing/share/{created.share.pk}/change/" not in client.get(
        "/admin/sharing/share/?state__exact=revoked"
    ).content.decode()
    assert client.get("/admin/sharing/share/?q=recipient@example.net").status_code == 200
    # Staff of another organisation do not see it.
    from django.contrib.auth.models import Permission

    stranger = make_user(email="stranger@example.org", organization=other_org, role=Role.STAFF, is_staff=True)
    stranger.user_permissions.set(Permission.objects.filter(content_type__app_label="sharing"))
    other = sign_in(Client(), stranger)
    assert f"/admin/sharing/share/{created.share.pk}/change/" not in other.get("/admin/sharing/share/").content.decode()


def _action(client, action, share):
    return client.post("/admin/sharing/share/", {"action": action, "_selected_action": [str(share.pk)]})


def test_admin_actions_revoke_extend_new_code_new_link(manager, make_share):
    created = make_share()
    share = created.share
    client = sign_in(Client(), manager)
    before = share.expires_at
    _action(client, "extend", share)
    share.refresh_from_db()
    assert share.expires_at == before + timedelta(days=7)

    page = _action(client, "resend_code", share).content.decode()
    _, new_code = _secrets(page)
    old = Client()
    old.get(f"/s/{created.token}")
    assert old.post("/share/verify/", {"code": created.access_code}).status_code == 400
    assert old.post("/share/verify/", {"code": new_code}).status_code == 302

    page = _action(client, "regenerate_link", share).content.decode()
    new_link, _ = _secrets(page)
    assert Client().get(f"/s/{created.token}").status_code == 404  # the old link is dead
    assert old.get("/share/").status_code == 403  # and so are its sessions
    assert Client().get("/s/" + new_link.rsplit("/s/", 1)[1]).status_code == 200

    _action(client, "revoke", share)
    share.refresh_from_db()
    assert share.state == Share.State.REVOKED and share.state_changed_by == manager
    actions = set(AuditEvent.objects.filter(object_id=str(share.pk)).values_list("action", flat=True))
    assert {"share.extended", "share.code_reset", "share.link_regenerated", "share.revoked"} <= actions


def test_admin_change_page_shows_access_history(manager, make_share):
    created = make_share()
    open_and_verify(Client(), created)
    page = sign_in(Client(), manager).get(f"/admin/sharing/share/{created.share.pk}/change/").content.decode()
    assert "Link opened" in page and "Verified" in page
