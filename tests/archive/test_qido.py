"""QIDO-RS: matching (single value, wildcards, ranges, UID lists, fuzzy names), includefield,
paging, the default attributes of each level, errors, and a bounded number of queries."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from dicomweb_client import DICOMwebClient
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tokens import issue_api_token
from archive import synthetic
from archive.dicomweb import qido
from archive.services import ingest
from archive.synthetic import SyntheticPatient
from tests.factories import sign_in

# Default attributes of each level (PS3.18 Tables 10.6.3-3 to -5), by tag.
STUDY_TAGS = {
    "00080020",
    "00080030",
    "00080050",
    "00080056",
    "00080061",
    "00080090",
    "00081190",
    "00100010",
    "00100020",
    "00100030",
    "00100040",
    "0020000D",
    "00200010",
    "00201206",
    "00201208",
}
SERIES_TAGS = {"00080060", "0008103E", "00081190", "0020000E", "00200011", "00201209"}
INSTANCE_TAGS = {
    "00080016",
    "00080018",
    "00080056",
    "00081190",
    "00200013",
    "00280010",
    "00280011",
    "00280100",
    "00280008",
}


@dataclass(frozen=True)
class Archive:
    """Three studies of three patients; UIDs by short name."""

    ct: str  # MÜLLER^ZOË, CT, 2024-01-05 10:30, 1 series of 2 slices
    mr: str  # SMITH^JOHN, MR, 2024-02-20 08:15, 2 series of 2 slices
    us: str  # O'BRIEN^MARY ANNE, US, 2023-12-01 16:00, 1 multi-frame instance
    mr_series: tuple[str, str]


def _store(datasets, org, *, date: str, time: str, accession: str) -> None:
    for ds in datasets:
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = date, time, accession
        result = ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test")
        assert result.ok, result.reason


def make_archive(org) -> Archive:
    ct = synthetic.ct_study(patient=SyntheticPatient("MÜLLER^ZOË", "P-1", "19800101", "F"), slices=2, size=16, seed=1)
    mr = synthetic.mr_study(
        patient=SyntheticPatient("SMITH^JOHN", "P-2", "19700615", "M"), series=2, slices=2, size=16, seed=2
    )
    us = synthetic.us_multiframe(
        patient=SyntheticPatient("O'BRIEN^MARY ANNE", "P-3", "19901231", "F"), frames=2, rows=32, columns=32, seed=3
    )
    _store(ct, org, date="20240105", time="103000", accession="ACC-CT")
    _store(mr, org, date="20240220", time="081500", accession="ACC-MR")
    _store([us], org, date="20231201", time="160000", accession="ACC-US")
    return Archive(
        ct=ct[0].StudyInstanceUID,
        mr=mr[0].StudyInstanceUID,
        us=us.StudyInstanceUID,
        mr_series=tuple(sorted({ds.SeriesInstanceUID for ds in mr})),
    )


@pytest.fixture
def archive(org) -> Archive:
    return make_archive(org)


@pytest.fixture
def api(client, owner):
    sign_in(client, owner)

    def get(path: str, params=None, **headers):
        return client.get("/dicomweb/" + path, params or {}, **headers)

    return get


def _values(results: list[dict], tag: str) -> list:
    return [r[tag]["Value"][0] if "Value" in r[tag] else None for r in results]


def _study_uids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return _values(response.json(), "0020000D")


def test_study_search_answers_dicom_json_with_the_default_attributes(api, archive):
    response = api("studies")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/dicom+json"
    assert response["Cache-Control"] == "no-store"
    results = response.json()
    # Most recent first.
    assert _values(results, "0020000D") == [archive.mr, archive.ct, archive.us]
    assert all(STUDY_TAGS <= set(r) for r in results)
    mr = results[0]
    assert mr["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "SMITH^JOHN"}]}
    assert mr["00080061"] == {"vr": "CS", "Value": ["MR"]}
    assert mr["00201206"]["Value"] == [2] and mr["00201208"]["Value"] == [4]
    assert mr["00081190"]["Value"] == [f"http://testserver/dicomweb/studies/{archive.mr}"]


def test_single_value_matching_by_keyword_or_tag(api, archive):
    assert _study_uids(api("studies", {"PatientID": "P-2"})) == [archive.mr]
    assert _study_uids(api("studies", {"00100020": "P-2"})) == [archive.mr]
    assert _study_uids(api("studies", {"AccessionNumber": "ACC-US"})) == [archive.us]
    assert _study_uids(api("studies", {"ModalitiesInStudy": "CT"})) == [archive.ct]
    # Person names match whole, ignoring case.
    assert _study_uids(api("studies", {"PatientName": "smith^john"})) == [archive.mr]
    assert _study_uids(api("studies", {"PatientName": "SMITH"})) == []


def test_wildcard_matching(api, archive):
    assert _study_uids(api("studies", {"PatientName": "SMI*"})) == [archive.mr]
    assert _study_uids(api("studies", {"PatientName": "*BRIEN*"})) == [archive.us]
    assert _study_uids(api("studies", {"PatientID": "P-?"})) == [archive.mr, archive.ct, archive.us]
    assert _study_uids(api("studies", {"AccessionNumber": "ACC-?R"})) == [archive.mr]
    assert _study_uids(api("studies", {"ModalitiesInStudy": "U*"})) == [archive.us]
    # A regular-expression character in a value is literal.
    assert _study_uids(api("studies", {"PatientID": "P.2"})) == []


def test_date_and_time_range_matching(api, archive):
    assert _study_uids(api("studies", {"StudyDate": "20240101-20240131"})) == [archive.ct]
    assert _study_uids(api("studies", {"StudyDate": "-20231231"})) == [archive.us]
    assert _study_uids(api("studies", {"StudyDate": "20240201-"})) == [archive.mr]
    assert _study_uids(api("studies", {"StudyDate": "20240105"})) == [archive.ct]
    assert _study_uids(api("studies", {"StudyTime": "0800-1100"})) == [archive.mr, archive.ct]
    assert _study_uids(api("studies", {"PatientBirthDate": "19700101-19850101"})) == [archive.mr, archive.ct]


def test_uid_list_matching(api, archive):
    uids = _study_uids(api("studies", {"StudyInstanceUID": f"{archive.ct},{archive.us}"}))
    assert uids == [archive.ct, archive.us]
    assert _study_uids(api("studies", {"0020000D": f"{archive.mr}\\{archive.us}"})) == [archive.mr, archive.us]


def test_fuzzy_matching_ignores_case_and_accents_and_matches_name_component_prefixes(api, archive):
    def fuzzy(name):
        return _study_uids(api("studies", {"PatientName": name, "fuzzymatching": "true"}))

    assert fuzzy("muller") == [archive.ct]
    assert fuzzy("zoe") == [archive.ct]
    assert fuzzy("Zoë Müll") == [archive.ct]
    assert fuzzy("joh smi") == [archive.mr]
    assert fuzzy("anne") == [archive.us]  # the second given name
    assert fuzzy("brien") == [archive.us]
    assert fuzzy("ohn") == []  # not the start of a component
    assert _study_uids(api("studies", {"PatientName": "muller"})) == []  # not fuzzy: whole name


def test_includefield_adds_attributes_from_the_stored_header(api, archive):
    [result] = api("studies", {"PatientID": "P-1", "includefield": "InstitutionName,00080070"}).json()
    assert result["00080080"] == {"vr": "LO", "Value": ["Lightbox Demo Hospital"]}
    assert result["00080070"] == {"vr": "LO", "Value": ["Lightbox Synthetic"]}

    [everything] = api("studies", {"PatientID": "P-1", "includefield": "all"}).json()
    assert everything["00100010"]["Value"] == [{"Alphabetic": "MÜLLER^ZOË"}]
    assert "00280010" not in everything  # Rows is an instance attribute, not a study one

    instances = api(f"studies/{archive.ct}/instances", {"includefield": "all"}).json()
    assert len(instances) == 2
    assert "00280030" in instances[0]  # PixelSpacing: the whole header at the instance level
    bulk = instances[0]["7FE00010"]["BulkDataURI"]
    assert bulk.startswith(f"http://testserver/dicomweb/studies/{archive.ct}/series/")
    assert bulk.endswith("/bulkdata/7FE00010")


def test_limit_and_offset_page_through_results(api, archive):
    assert _study_uids(api("studies", {"limit": "1"})) == [archive.mr]
    assert _study_uids(api("studies", {"limit": "1", "offset": "1"})) == [archive.ct]
    assert _study_uids(api("studies", {"limit": "5", "offset": "2"})) == [archive.us]
    response = api("studies", {"offset": "3"})
    assert response.status_code == 200 and response.json() == []


def test_server_cap_is_announced_with_a_warning(api, archive, monkeypatch):
    monkeypatch.setattr(qido, "MAX_RESULTS", 2)
    response = api("studies")
    assert len(response.json()) == 2
    assert response["Warning"].startswith("299 ")
    assert "Warning" not in api("studies", {"limit": "2"})  # the client's own limit
    assert "Warning" not in api("studies", {"offset": "1"})  # nothing more to get


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"offset": "-1"},
        {"fuzzymatching": "yes"},
        {"NoSuchKeyword": "x"},
        {"99990010": "x"},
        {"InstitutionName": "x"},  # a real attribute, but not one this server matches on
        {"00081111.00081150": "1.2"},
        {"StudyDate": "last week"},
        {"StudyInstanceUID": "1.2.x"},
        {"includefield": "NoSuchKeyword"},
    ],
)
def test_bad_queries_are_refused_with_a_message(api, archive, params):
    response = api("studies", params)
    assert response.status_code == 400
    assert response.json()["error"]
    assert response["Cache-Control"] == "no-store"


def test_error_messages_do_not_echo_values(api, archive):
    response = api("studies", {"PatientBirthDate": "SMITH^JOHN"})
    assert response.status_code == 400
    assert "SMITH" not in response.content.decode()


def test_a_key_given_twice_is_refused(client, owner, archive):
    sign_in(client, owner)
    response = client.get("/dicomweb/studies?PatientID=P-1&PatientID=P-2")
    assert response.status_code == 400


def test_an_unacceptable_media_type_gets_406(api, archive):
    response = api("studies", HTTP_ACCEPT='multipart/related; type="application/dicom+xml"')
    assert response.status_code == 406


def test_series_searches(api, archive):
    response = api(f"studies/{archive.mr}/series")
    series = response.json()
    assert len(series) == 2 and all(SERIES_TAGS <= set(s) for s in series)
    assert all(s["00080060"]["Value"] == ["MR"] for s in series)
    assert _values(series, "00200011") == [1, 2]
    assert _values(api(f"studies/{archive.mr}/series", {"SeriesNumber": "2"}).json(), "00200011") == [2]

    everywhere = api("series", {"Modality": "US"}).json()
    assert len(everywhere) == 1
    # /series carries the study-level attributes too.
    assert everywhere[0]["0020000D"]["Value"] == [archive.us] and "00100010" in everywhere[0]
    assert len(api("series", {"PatientName": "SMITH^JOHN"}).json()) == 2
    assert api(f"studies/{'1.2.3.4'}/series").status_code == 404


def test_instance_searches(api, archive):
    in_series = api(f"studies/{archive.mr}/series/{archive.mr_series[0]}/instances").json()
    assert len(in_series) == 2 and all(INSTANCE_TAGS <= set(i) for i in in_series)
    assert _values(in_series, "00200013") == [1, 2]

    in_study = api(f"studies/{archive.mr}/instances", {"InstanceNumber": "1"}).json()
    assert len(in_study) == 2
    assert {i["0020000E"]["Value"][0] for i in in_study} == set(archive.mr_series)

    us = api("instances", {"ModalitiesInStudy": "US"}).json()
    assert len(us) == 1
    assert us[0]["00280008"]["Value"] == [2] and us[0]["00280010"]["Value"] == [32]
    sop = us[0]["00080018"]["Value"][0]
    assert _values(api("instances", {"SOPInstanceUID": sop}).json(), "00080018") == [sop]
    assert api(f"studies/{archive.mr}/series/{archive.mr_series[0]}/instances", {"Modality": "MR"}).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "studies",
        "series",
        "instances",
        "studies/{mr}/series",
        "studies/{mr}/instances",
        "studies/{mr}/series/{mr_series}/instances",
    ],
)
def test_searches_cost_a_fixed_number_of_queries(api, archive, org, path, django_assert_max_num_queries):
    url = path.format(mr=archive.mr, mr_series=archive.mr_series[0])
    with CaptureQueriesContext(connection) as before:
        assert api(url, {"includefield": "all"}).status_code == 200
    make_archive_copy(org)
    # Twice the data, the same number of queries: no query per result.
    with django_assert_max_num_queries(len(before)):
        results = api(url, {"includefield": "all"}).json()
    assert results


def make_archive_copy(org) -> None:
    for seed in (11, 12):
        ct = synthetic.ct_study(patient=SyntheticPatient("DOE^JANE", f"P-{seed}"), slices=2, size=16, seed=seed)
        _store(ct, org, date="20240301", time="090000", accession=f"ACC-{seed}")


def test_outsider_sees_no_results_and_scoped_searches_404(client, outsider, archive):
    sign_in(client, outsider)
    for path in ("studies", "series", "instances"):
        response = client.get(f"/dicomweb/{path}")
        assert response.status_code == 200 and response.json() == []
    for path in (
        f"studies/{archive.mr}/series",
        f"studies/{archive.mr}/instances",
        f"studies/{archive.mr}/series/{archive.mr_series[0]}/instances",
    ):
        assert client.get(f"/dicomweb/{path}").status_code == 404


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_uses_every_query_feature(live_server_url, org, owner):
    archive = make_archive(org)
    _, token = issue_api_token(user=owner)
    client = DICOMwebClient(url=live_server_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})

    def uids(results):
        return [r["0020000D"]["Value"][0] for r in results]

    assert uids(client.search_for_studies(search_filters={"PatientID": "P-3"})) == [archive.us]
    assert uids(client.search_for_studies(search_filters={"PatientName": "SMI*"})) == [archive.mr]
    assert uids(client.search_for_studies(search_filters={"StudyDate": "20240101-20240301"})) == [
        archive.mr,
        archive.ct,
    ]
    assert uids(client.search_for_studies(search_filters={"StudyInstanceUID": f"{archive.us},{archive.ct}"})) == [
        archive.ct,
        archive.us,
    ]
    assert uids(client.search_for_studies(search_filters={"PatientName": "zoe"}, fuzzymatching=True)) == [archive.ct]
    assert uids(client.search_for_studies(limit=1, offset=1)) == [archive.ct]
    assert uids(client.search_for_studies(limit=1, get_remaining=True)) == [archive.mr, archive.ct, archive.us]
    [with_field] = client.search_for_studies(search_filters={"PatientID": "P-1"}, fields=["InstitutionName"])
    assert with_field["00080080"]["Value"] == ["Lightbox Demo Hospital"]
    [everything] = client.search_for_studies(search_filters={"PatientID": "P-1"}, fields=["all"])
    assert everything["00100010"]["Value"] == [{"Alphabetic": "MÜLLER^ZOË"}]
    assert client.search_for_studies(search_filters={"PatientID": "nobody"}) == []

    assert len(client.search_for_series(archive.mr)) == 2
    assert len(client.search_for_series(search_filters={"Modality": "CT"})) == 1
    assert len(client.search_for_instances(archive.mr, archive.mr_series[1])) == 2
    assert len(client.search_for_instances(archive.mr)) == 4
    assert len(client.search_for_instances(search_filters={"PatientID": "P-1"}, fields=["all"])) == 2
