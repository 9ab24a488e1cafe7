"""ABAC rules of the policy: client networks, hours, restricted studies, patients' own records,
purpose; and the querysets of archive.access agree with `can` study by study."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import AccessRule, Role
from accounts.policy import Action, can, organizations_where
from accounts.tokens import issue_api_token
from archive import access
from archive.models import PatientLink, Study, StudyGrant
from tests import factories
from tests.archive.test_qido import make_archive

pytestmark = pytest.mark.django_db


@pytest.fixture
def archive(org):
    return make_archive(org)


def _study(uid):
    return Study.objects.get(study_instance_uid=uid)


def _visible_uids(user):
    return set(access.studies_for(user).values_list("study_instance_uid", flat=True))


def _agrees_with_can(user):
    """Every study: in the queryset exactly when can() allows it."""
    for study in Study.objects.all():
        allowed = can(user, Action.STUDY_VIEW, study).allowed
        listed = access.studies_for(user).filter(pk=study.pk).exists()
        assert allowed == listed, (study.study_instance_uid, allowed, listed)


def test_network_rule_allows_listed_networks_only(owner, org, archive):
    AccessRule.objects.create(organization=org, allowed_networks="10.0.0.0/8\n192.168.1.0/24  # ward")
    assert can(owner, Action.STUDY_VIEW, org, ip="10.1.2.3")
    assert can(owner, Action.STUDY_VIEW, org, ip="192.168.1.77")
    decision = can(owner, Action.STUDY_VIEW, org, ip="203.0.113.9")
    assert not decision and decision.reason == "client network not allowed"
    assert not can(owner, Action.STUDY_VIEW, org, ip=None)  # unknown address never passes a network rule
    assert organizations_where(owner, Action.STUDY_VIEW, ip="203.0.113.9") == []


def test_a_role_specific_rule_leaves_other_roles_alone(owner, auditor, org):
    AccessRule.objects.create(organization=org, role=Role.AUDITOR, allowed_networks="10.9.0.0/16")
    assert can(owner, Action.STUDY_VIEW, org, ip="203.0.113.9")
    assert not can(auditor, Action.AUDIT_VIEW, org, ip="203.0.113.9")
    assert can(auditor, Action.AUDIT_VIEW, org, ip="10.9.8.7")


def test_hours_window_in_the_organisations_time_zone_including_midnight_wrap(owner, org):
    org.time_zone = "Europe/Berlin"
    org.save()
    AccessRule.objects.create(organization=org, hours_start=time(22, 0), hours_end=time(6, 0), note="night shift")
    owner = type(owner).objects.get(pk=owner.pk)
    # 21:30 UTC is 22:30 in Berlin in winter: inside the wrapped window.
    assert can(owner, Action.STUDY_VIEW, org, now=datetime(2026, 1, 10, 21, 30, tzinfo=UTC))
    assert can(owner, Action.STUDY_VIEW, org, now=datetime(2026, 1, 11, 4, 0, tzinfo=UTC))
    late = can(owner, Action.STUDY_VIEW, org, now=datetime(2026, 1, 11, 12, 0, tzinfo=UTC))
    assert not late and late.reason == "outside allowed hours"


def test_restricted_study_needs_a_current_grant(owner, archive):
    study = _study(archive.ct)
    study.classification = "restricted"
    study.save()
    assert archive.ct not in _visible_uids(owner)
    assert can(owner, Action.STUDY_VIEW, study).reason == "restricted study without a grant"
    grant = StudyGrant.objects.create(study=study, user=owner, reason="consult", expires_at=timezone.now() + timedelta(hours=1))
    assert archive.ct in _visible_uids(owner) and can(owner, Action.STUDY_VIEW, study)
    _agrees_with_can(owner)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        assert archive.ct not in _visible_uids(owner)
        assert not can(owner, Action.STUDY_VIEW, study)
    grant.revoked_at = timezone.now()
    grant.save()
    assert archive.ct not in _visible_uids(owner)


def test_patient_sees_only_their_own_linked_studies(org, archive):
    patient_user = factories.make_user(organization=org, role=Role.PATIENT)
    assert _visible_uids(patient_user) == set()
    ct = _study(archive.ct)
    PatientLink.objects.create(user=patient_user, patient=ct.patient, method=PatientLink.Method.STAFF)
    assert _visible_uids(patient_user) == {archive.ct}
    assert can(patient_user, Action.STUDY_VIEW, ct)
    assert can(patient_user, Action.STUDY_VIEW, _study(archive.mr)).reason == "not the patient's own study"
    _agrees_with_can(patient_user)
    # series and instances follow the study
    assert set(access.series_for(patient_user).values_list("study__study_instance_uid", flat=True)) == {archive.ct}
    assert set(access.instances_for(patient_user).values_list("series__study__study_instance_uid", flat=True)) == {
        archive.ct
    }


def test_a_clinician_who_is_also_a_patient_keeps_clinical_access(owner, org, archive):
    from accounts.models import Membership

    Membership.objects.create(user=owner, organization=org, role=Role.PATIENT)
    owner = type(owner).objects.get(pk=owner.pk)
    assert _visible_uids(owner) == {archive.ct, archive.mr, archive.us}
    _agrees_with_can(owner)


def test_research_purpose_gets_no_identified_images(owner, org):
    assert can(owner, Action.STUDY_VIEW, org, purpose="treatment")
    decision = can(owner, Action.STUDY_VIEW, org, purpose="research")
    assert not decision and "de-identified" in decision.reason
    assert not can(owner, Action.STUDY_VIEW, org, purpose="curiosity")


def test_network_rule_applies_to_real_requests_by_remote_addr(client, owner, org, archive, settings):
    AccessRule.objects.create(organization=org, allowed_networks="10.0.0.0/8")
    _, token = issue_api_token(user=owner, name="t")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    outside = client.get("/dicomweb/studies", REMOTE_ADDR="203.0.113.9", **headers)
    assert outside.status_code in (200, 204) and (not outside.content or outside.json() == [])
    inside = client.get("/dicomweb/studies", REMOTE_ADDR="10.0.0.5", **headers)
    assert inside.status_code == 200 and len(inside.json()) == 3
    blocked = client.get(f"/dicomweb/studies/{archive.ct}/metadata", REMOTE_ADDR="203.0.113.9", **headers)
    assert blocked.status_code == 404


def test_trusted_proxy_header_decides_the_client_address(client, owner, org, archive, settings):
    AccessRule.objects.create(organization=org, allowed_networks="10.0.0.0/8")
    _, token = issue_api_token(user=owner, name="t")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "127.0.0.1"}
    # Without a trusted proxy the header is ignored: 127.0.0.1 is outside 10/8.
    spoofed = client.get(f"/dicomweb/studies/{archive.ct}/metadata", HTTP_X_FORWARDED_FOR="10.0.0.5", **headers)
    assert spoofed.status_code == 404
    settings.TRUSTED_PROXY = True
    # Behind our proxy only the right-most entry (the one the proxy appended) counts.
    forged_left = client.get(
        f"/dicomweb/studies/{archive.ct}/metadata", HTTP_X_FORWARDED_FOR="10.0.0.5, 203.0.113.9", **headers
    )
    assert forged_left.status_code == 404
    ok = client.get(f"/dicomweb/studies/{archive.ct}/metadata", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.5", **headers)
    assert ok.status_code == 200
