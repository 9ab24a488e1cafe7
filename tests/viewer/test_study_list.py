"""The study list at /: search, pagination, newest first, and only what the policy allows."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.models import Role
from archive.models import Patient, PatientLink, Series, Study
from tests import factories
from tests.factories import sign_in
from viewer.study_search import normalise_name

pytestmark = pytest.mark.django_db

_uid = iter(range(1, 10_000))


def _study(org, *, name="DOE^JANE", patient_id=None, date="20240101", modality="CT", accession="", description=""):
    patient, _ = Patient.objects.get_or_create(
        organization=org, patient_id=patient_id or f"PID-{name}", defaults={"patient_name": name}
    )
    n = next(_uid)
    study = Study.objects.create(
        organization=org, patient=patient, study_instance_uid=f"1.2.826.0.1.{n}", study_date=date,
        accession_number=accession, study_description=description, modalities_in_study=modality,
    )
    Series.objects.create(organization=org, study=study, series_instance_uid=f"1.2.826.0.2.{n}", modality=modality)
    return study


def _client(user) -> Client:
    client = Client()
    sign_in(client, user)
    return client


def _uids(response) -> list[str]:
    page = response.context["page"]
    return [s.study_instance_uid for s in page.object_list] if page else []


def test_name_normalisation_folds_case_accents_and_components():
    assert normalise_name("MÜLLER^Hans^^Dr.") == "muller hans dr."
    assert normalise_name("  Łukasz  Żółć ") == "łukasz zołc"  # Ł has no decomposition; ż and ó do
    assert normalise_name("STRAßE") == "strasse"


def test_list_shows_visible_studies_newest_first_with_links(owner, org):
    old = _study(org, date="20200101")
    new = _study(org, date="20250101")
    middle = _study(org, date="20230101")
    response = _client(owner).get("/")
    assert response.status_code == 200
    assert _uids(response) == [new.study_instance_uid, middle.study_instance_uid, old.study_instance_uid]
    assert f'href="/viewer/{new.study_instance_uid}/"'.encode() in response.content
    assert b"Clinician at St Elsewhere" in response.content
    assert "no-store" in response.headers["Cache-Control"]


def test_fuzzy_name_search_is_case_accent_and_token_insensitive(owner, org):
    muller = _study(org, name="MÜLLER^HANS")
    _study(org, name="MULLIGAN^ANNA")
    _study(org, name="SMITH^JOHN")
    client = _client(owner)
    for query in ("muller", "hans müller", "Mull Han", "MÜLLER"):
        response = client.post("/", {"name": query})
        assert _uids(response) == [muller.study_instance_uid], query
    assert len(_uids(client.post("/", {"name": "mull"}))) == 2
    assert _uids(client.post("/", {"name": "nobody"})) == []


def test_search_is_a_post_and_names_in_a_url_are_ignored(owner, org):
    _study(org, name="MÜLLER^HANS")
    _study(org, name="SMITH^JOHN")
    client = _client(owner)
    response = client.get("/", {"name": "muller"})
    assert len(_uids(response)) == 2  # a GET never searches, so links with names in them are useless
    page = response.content.decode()
    assert 'method="post"' in page and 'action="/"' in page and "?name=" not in page


def test_search_by_patient_id_accession_modality_and_dates(owner, org):
    a = _study(org, name="A^A", patient_id="MRN-111", date="20240310", modality="CT", accession="ACC1")
    b = _study(org, name="B^B", patient_id="MRN-222", date="20240420", modality="MR", accession="ACC2")
    c = _study(org, name="C^C", patient_id="MRN-333", date="20230101", modality="US", accession="XYZ9")
    client = _client(owner)
    assert _uids(client.post("/", {"patient_id": "222"})) == [b.study_instance_uid]
    assert _uids(client.post("/", {"accession": "acc"})) == [b.study_instance_uid, a.study_instance_uid]
    assert _uids(client.post("/", {"modality": "US"})) == [c.study_instance_uid]
    assert _uids(client.post("/", {"date_from": "2024-01-01"})) == [b.study_instance_uid, a.study_instance_uid]
    assert _uids(client.post("/", {"date_from": "2024-03-01", "date_to": "2024-03-31"})) == [a.study_instance_uid]
    assert _uids(client.post("/", {"modality": "CT", "name": "b"})) == []


def test_invalid_search_input_is_a_form_error_not_a_500(owner, org):
    _study(org)
    client = _client(owner)
    response = client.post("/", {"date_from": "2024-05-01", "date_to": "2024-01-01"})
    assert response.status_code == 200 and b"start date must not be after" in response.content
    response = client.post("/", {"modality": "TELEPATHY", "date_from": "not a date"})
    assert response.status_code == 200 and response.context["form"].errors
    assert response.context["page"] is None


def test_pagination_25_per_page(owner, org):
    studies = [_study(org, name=f"P^{i}", date=f"2024{(i % 12) + 1:02d}{(i % 28) + 1:02d}") for i in range(30)]
    client = _client(owner)
    first = client.post("/", {})
    assert len(_uids(first)) == 25 and first.context["page"].paginator.num_pages == 2
    second = client.post("/", {"page": "2"})
    assert len(_uids(second)) == 5
    assert set(_uids(first)) | set(_uids(second)) == {s.study_instance_uid for s in studies}
    assert b'name="page" value="2"' in first.content
    assert len(_uids(client.get("/?page=2"))) == 5
    # A search narrows and the page resets through the search button (page=1).
    assert len(_uids(client.post("/", {"name": "p", "page": "1"}))) == 25


def test_outsider_sees_nothing_of_another_organisations_studies(outsider, org, other_org):
    _study(org, name="SECRET^PATIENT")
    mine = _study(other_org, name="OWN^PATIENT")
    client = _client(outsider)
    assert _uids(client.get("/")) == [mine.study_instance_uid]
    response = client.post("/", {"name": "secret"})
    assert _uids(response) == [] and b"SECRET" not in response.content


def test_patient_sees_only_their_linked_studies(org):
    patient_user = factories.make_user(organization=org, role=Role.PATIENT)
    own = _study(org, name="SELF^ME", patient_id="MRN-ME")
    _study(org, name="SOMEONE^ELSE", patient_id="MRN-OTHER")
    PatientLink.objects.create(user=patient_user, patient=own.patient, method=PatientLink.Method.STAFF)
    response = _client(patient_user).get("/")
    assert _uids(response) == [own.study_instance_uid]
    assert b"SOMEONE" not in response.content


def test_auditor_sees_an_empty_list_with_an_explanation(auditor, org):
    _study(org, name="DOE^JANE")
    response = _client(auditor).get("/")
    assert response.status_code == 200 and response.context["page"] is None
    assert b"no-study-access" in response.content and b"DOE" not in response.content
    assert _uids(_client(auditor).post("/", {"name": "doe"})) == []


def test_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302 and "/accounts/" in response["Location"]


def test_restricted_study_is_listed_only_with_a_current_grant(owner, colleague, org):
    from archive.models import Classification, StudyGrant

    restricted = _study(org, name="VIP^PERSON", date="20250505")
    Study.objects.filter(pk=restricted.pk).update(classification=Classification.RESTRICTED)
    normal = _study(org, name="PLAIN^PERSON", date="20240101")
    StudyGrant.objects.create(study=restricted, user=colleague, reason="treating physician")
    assert _uids(_client(owner).get("/")) == [normal.study_instance_uid]
    assert _uids(_client(colleague).get("/")) == [restricted.study_instance_uid, normal.study_instance_uid]
    assert _client(owner).get(f"/viewer/{restricted.study_instance_uid}/").status_code == 404


def test_rows_offer_sharing_and_patients_are_offered_record_linking(owner, auditor, org):
    study = _study(org, name="DOE^JANE")
    page = _client(owner).get("/").content.decode()
    assert f'href="/share/new/{study.study_instance_uid}/"' in page
    assert "/accounts/link-patient/" not in page
    patient_user = factories.make_user(organization=org, role=Role.PATIENT)
    assert "/accounts/link-patient/" in _client(patient_user).get("/").content.decode()
    assert "/share/new/" not in _client(auditor).get("/").content.decode()
