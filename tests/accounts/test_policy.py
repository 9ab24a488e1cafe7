"""The access-check seam: roles grant actions only inside their organisation."""

import pytest

from accounts.models import Role
from accounts.policy import Action, can
from tests import factories

pytestmark = pytest.mark.django_db


def test_clinician_may_view_studies_of_own_organisation_only(owner, org, other_org):
    assert can(owner, Action.STUDY_VIEW, org).allowed
    decision = can(owner, Action.STUDY_VIEW, other_org)
    assert not decision.allowed and decision.reason == "other organisation"


def test_auditor_reads_the_trail_but_sees_no_images(auditor, org):
    assert can(auditor, Action.AUDIT_VIEW, org)
    assert not can(auditor, Action.STUDY_VIEW, org)


def test_admin_gets_no_clinical_access(org):
    admin = factories.make_user(organization=org, role=Role.ADMIN, is_staff=True)
    admin.is_superuser = True
    admin.save()
    assert can(admin, Action.ORG_MANAGE, org)
    assert not can(admin, Action.STUDY_VIEW, org)
    assert not can(admin, Action.AUDIT_VIEW, org)


def test_only_key_custodians_rotate_keys(org):
    custodian = factories.make_user(organization=org, role=Role.ADMIN, is_key_custodian=True)
    plain_admin = factories.make_user(organization=org, role=Role.ADMIN)
    assert can(custodian, Action.KEYS_ROTATE, org)
    assert not can(plain_admin, Action.KEYS_ROTATE, org)


def test_unknown_action_and_anonymous_user_are_denied(owner, org):
    from django.contrib.auth.models import AnonymousUser

    assert can(owner, "study.veiw", org).reason == "unknown action study.veiw"
    assert not can(AnonymousUser(), Action.STUDY_VIEW, org)


def test_disabled_account_is_denied(owner, org):
    owner.is_active = False
    assert can(owner, Action.STUDY_VIEW, org).reason == "account disabled"
