"""The archive in the admin: what ingest stored, shown without patient names; keys read-only."""

from __future__ import annotations

import io

import pytest

from accounts.models import Role
from archive import synthetic
from archive.models import DataKey, Series, Study, StudyGrant
from archive.services import ingest_many
from audit.models import AuditEvent
from tests import factories
from tests.factories import sign_in

pytestmark = pytest.mark.django_db

PATIENT = synthetic.SyntheticPatient(name="ADMIN^HIDDENNAME", patient_id="ADM-1")


@pytest.fixture
def study(org) -> Study:
    datasets = synthetic.ct_study(slices=2, size=32, patient=PATIENT)
    list(ingest_many(((i, io.BytesIO(synthetic.to_bytes(ds))) for i, ds in enumerate(datasets)),
                     organization=org, source="test"))
    return Study.objects.get()


@pytest.fixture
def staff(org):
    return factories.make_user(organization=org, role=Role.STAFF, is_staff=True)


def test_staff_list_studies_without_patient_names(client, staff, study):
    sign_in(client, staff)
    page = client.get("/admin/archive/study/")
    assert page.status_code == 200
    assert study.accession_number.encode() in page.content and b"HIDDENNAME" not in page.content
    assert client.get("/admin/archive/study/?q=ADMIN").content.count(b"field-accession_number") == 0
    found = client.get(f"/admin/archive/study/?q={study.study_instance_uid}")
    assert found.content.count(b"field-accession_number") == 1


def test_a_study_page_is_read_only_but_its_classification(client, staff, study):
    sign_in(client, staff)
    url = f"/admin/archive/study/{study.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200
    assert b'name="classification"' in page.content and b'name="study_instance_uid"' not in page.content
    assert Series.objects.get().series_instance_uid.encode() in page.content
    response = client.post(url, {"classification": "restricted", "series-TOTAL_FORMS": "1",
                                 "series-INITIAL_FORMS": "1", "series-0-id": Series.objects.get().pk,
                                 "series-0-study": study.pk, "study_instance_uid": "1.2.3"})
    assert response.status_code == 302
    study.refresh_from_db()
    assert study.classification == "restricted" and study.study_instance_uid != "1.2.3"
    assert AuditEvent.objects.get(action="study.classification_changed").object_id == study.study_instance_uid
    # Restricted now: even staff reach it only with an explicit grant.
    series_url = f"/admin/archive/series/{Series.objects.get().pk}/change/"
    assert client.get(series_url).status_code == 302
    StudyGrant.objects.create(study=study, user=staff, reason="ticket 42")
    assert client.get(series_url).status_code == 200


def test_other_organisations_do_not_see_the_study(client, study, other_org):
    outsider = factories.make_user(organization=other_org, role=Role.STAFF, is_staff=True)
    sign_in(client, outsider)
    assert study.accession_number.encode() not in client.get("/admin/archive/study/").content
    assert client.get(f"/admin/archive/study/{study.pk}/change/").status_code in (302, 403, 404)


def test_data_keys_are_shown_to_key_custodians_only_and_never_their_bytes(client, org, staff, study):
    key = DataKey.objects.get()
    sign_in(client, staff)
    assert client.get("/admin/archive/datakey/").status_code == 403
    custodian = factories.make_user(organization=org, role=Role.ADMIN, is_staff=True, is_key_custodian=True)
    sign_in(client, custodian)
    listing = client.get("/admin/archive/datakey/")
    assert listing.status_code == 200 and key.key_id.encode() in listing.content
    page = client.get(f"/admin/archive/datakey/{key.pk}/change/")
    assert page.status_code == 200 and b"wrapped" not in page.content.lower()
    assert bytes(key.wrapped).hex().encode() not in page.content
