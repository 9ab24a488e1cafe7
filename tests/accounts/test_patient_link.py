"""A patient links their account by MRN + date of birth + an e-mailed code, then sees only their studies."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from accounts.models import Role
from archive.models import PatientLink
from audit.models import AuditEvent
from tests import factories
from tests.archive.test_qido import make_archive
from tests.factories import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def patient_user(org):
    return factories.make_user(organization=org, role=Role.PATIENT, email="zoe@example.org")


def _code():
    return re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)


def _studies_on_home(client):
    return client.get("/dicomweb/studies")


def test_patient_links_with_mrn_birth_date_and_code(client, org, patient_user):
    archive = make_archive(org)  # patient P-1 born 1980-01-01 owns the CT
    sign_in(client, patient_user)
    assert client.get("/dicomweb/studies").status_code in (200, 204)
    assert not client.get("/dicomweb/studies").content or client.get("/dicomweb/studies").json() == []
    page = client.post("/accounts/link-patient/", {"mrn": "P-1", "birth_date": "1980-01-01"}, follow=True)
    assert b"we sent a code" in page.content
    assert mail.outbox[-1].to == ["zoe@example.org"]
    assert "P-1" not in mail.outbox[-1].body  # PRIVACY: no identifiers in the e-mail
    done = client.post("/accounts/link-patient/", {"code": _code()})
    assert done.status_code == 302
    link = PatientLink.objects.get(user=patient_user)
    assert link.method == "self_service" and link.patient.patient_id == "P-1"
    uids = [s["0020000D"]["Value"][0] for s in client.get("/dicomweb/studies").json()]
    assert uids == [archive.ct]
    assert AuditEvent.objects.filter(action="patient_link.created").count() == 1


def test_wrong_details_look_the_same_and_cannot_link(client, org, patient_user):
    make_archive(org)
    sign_in(client, patient_user)
    page = client.post("/accounts/link-patient/", {"mrn": "P-1", "birth_date": "1999-09-09"}, follow=True)
    assert b"we sent a code" in page.content  # same answer as for a match
    response = client.post("/accounts/link-patient/", {"code": _code()})
    assert response.status_code == 200 and b"does not match" in response.content
    assert not PatientLink.objects.exists()


def test_wrong_codes_end_the_attempt_and_codes_expire(client, org, patient_user):
    make_archive(org)
    sign_in(client, patient_user)
    client.post("/accounts/link-patient/", {"mrn": "P-1", "birth_date": "1980-01-01"})
    good = _code()
    for _ in range(5):
        client.post("/accounts/link-patient/", {"code": "000000" if good != "000000" else "111111"})
    response = client.post("/accounts/link-patient/", {"code": good})
    assert b"expired or was tried too often" in response.content
    assert not PatientLink.objects.exists()
    client.post("/accounts/link-patient/", {"mrn": "P-1", "birth_date": "1980-01-01"})
    good = _code()
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        response = client.post("/accounts/link-patient/", {"code": good})
    assert b"expired or was tried too often" in response.content
    assert not PatientLink.objects.exists()


def test_only_patient_accounts_may_link(client, owner):
    sign_in(client, owner)
    assert client.get("/accounts/link-patient/").status_code == 403


def test_staff_link_a_patient_in_the_admin_with_step_up_and_audit(client, org, other_org, patient_user):
    make_archive(org)
    from archive.models import Patient

    staff = factories.make_user(organization=org, role=Role.STAFF, is_staff=True)
    sign_in(client, staff)
    patient = Patient.objects.get(patient_id="P-2")
    response = client.post("/admin/archive/patientlink/add/", {"user": patient_user.pk, "patient": patient.pk})
    assert response.status_code == 302, response.content[:300]
    link = PatientLink.objects.get()
    assert (link.user, link.patient, link.method, link.linked_by) == (patient_user, patient, "staff", staff)
    assert AuditEvent.objects.filter(action="policy.changed", object_type="patientlink").exists()
    # another organisation's patient record cannot be linked by this staff member
    make_archive(other_org)
    foreign = Patient.objects.filter(organization=other_org).first()
    response = client.post("/admin/archive/patientlink/add/", {"user": patient_user.pk, "patient": foreign.pk})
    assert response.status_code == 403
    assert PatientLink.objects.count() == 1
