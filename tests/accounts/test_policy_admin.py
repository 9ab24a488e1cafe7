"""Policy is changed in the admin by organisation administrators, with step-up, audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import AccessRule, Role
from audit.models import AuditEvent
from tests import factories
from tests.factories import sign_in

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/accounts/accessrule/add/"


@pytest.fixture
def org_admin(org):
    return factories.make_user(organization=org, role=Role.ADMIN, is_staff=True)


def _rule(org, networks="10.0.0.0/8"):
    return {"organization": org.pk, "role": "", "allowed_networks": networks, "note": "wards only"}


def test_org_admin_adds_a_network_rule_and_it_is_audited(client, org_admin, org):
    sign_in(client, org_admin)
    response = client.post(ADD_URL, _rule(org))
    assert response.status_code == 302, response.content[:500]
    rule = AccessRule.objects.get()
    assert rule.organization == org and rule.allowed_networks == "10.0.0.0/8"
    event = AuditEvent.objects.get(action="policy.changed")
    assert event.details["change"] == "added" and event.object_type == "accessrule"


def test_bad_cidr_is_refused_with_a_message(client, org_admin, org):
    sign_in(client, org_admin)
    response = client.post(ADD_URL, _rule(org, "10.0.0.0/8\nnot-a-network"))
    assert response.status_code == 200
    assert b"line 2" in response.content and b"not an IP address or CIDR block" in response.content
    assert not AccessRule.objects.exists()


def test_changing_policy_needs_a_fresh_second_factor(client, org_admin, org, settings):
    sign_in(client, org_admin)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.LIGHTBOX_STEP_UP_SECONDS + 60)):
        response = client.post(ADD_URL, _rule(org))
    assert response.status_code == 302 and "/accounts/verify/" in response["Location"]
    assert "step_up=1" in response["Location"]
    assert not AccessRule.objects.exists()


def test_admin_cannot_write_rules_for_another_organisation(client, org_admin, other_org):
    sign_in(client, org_admin)
    response = client.post(ADD_URL, _rule(other_org))
    assert response.status_code == 200  # the form refuses the choice
    assert not AccessRule.objects.exists()


def test_clinicians_and_auditors_do_not_manage_policy(client, org):
    for role in (Role.CLINICIAN, Role.AUDITOR):
        user = factories.make_user(organization=org, role=role, is_staff=True)
        sign_in(client, user)
        assert client.get("/admin/accounts/accessrule/").status_code == 403
        assert client.post(ADD_URL, _rule(org)).status_code == 403
    assert not AccessRule.objects.exists()
