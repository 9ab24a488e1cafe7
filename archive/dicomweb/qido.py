"""QIDO-RS (PS3.18 10.6): search for studies, series and instances as DICOM JSON.

Matching (PS3.4 C.2.2.2) runs in the database on the indexed columns of Study, Series and
Instance: single value, wildcards `*` and `?`, date and time ranges, UID lists, and fuzzy person
name matching. Attributes outside those columns can be returned (`includefield`), read from the
stored DICOM JSON of an instance, but not matched: such a query is refused with a 400.

PRIVACY: query values carry patient names, ids and birth dates. They are never logged or
audited and never echoed in an error message; the audit trail records which keys were used.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from django.db.models import OuterRef, Q, Subquery
from django.http import Http404, JsonResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from archive import access
from archive.dicomweb import dicomjson
from archive.dicomweb.auth import dicomweb_view
from archive.dicomweb.multipart import accepts_json
from archive.models import Instance
from audit.models import Outcome
from audit.services import record

# The most results one response carries; more are announced with a Warning (PS3.18 8.3.4.4).
MAX_RESULTS = 1000
DICOM_JSON = "application/dicom+json"
_MORE_RESULTS = '299 lightbox "There are more matches than this response holds. Additional results can be requested."'

# How a key matches (PS3.4 C.2.2.2).
UID, DATE, TIME, TEXT, PN, MULTI, INT = "uid", "date", "time", "text", "pn", "multi", "int"

# keyword -> (column relative to the level's model, matching kind). Only these can be matched.
STUDY_KEYS = {
    "StudyInstanceUID": ("study_instance_uid", UID),
    "StudyDate": ("study_date", DATE),
    "StudyTime": ("study_time", TIME),
    "AccessionNumber": ("accession_number", TEXT),
    "ModalitiesInStudy": ("modalities_in_study", MULTI),
    "ReferringPhysicianName": ("referring_physician_name", PN),
    "StudyDescription": ("study_description", TEXT),
    "StudyID": ("study_id", TEXT),
    "PatientName": ("patient__patient_name", PN),
    "PatientID": ("patient__patient_id", TEXT),
    "IssuerOfPatientID": ("patient__issuer_of_patient_id", TEXT),
    "PatientBirthDate": ("patient__patient_birth_date", DATE),
    "PatientSex": ("patient__patient_sex", TEXT),
}
SERIES_KEYS = {
    "SeriesInstanceUID": ("series_instance_uid", UID),
    "Modality": ("modality", TEXT),
    "SeriesNumber": ("series_number", INT),
    "SeriesDescription": ("series_description", TEXT),
    "BodyPartExamined": ("body_part_examined", TEXT),
}
INSTANCE_KEYS = {
    "SOPInstanceUID": ("sop_instance_uid", UID),
    "SOPClassUID": ("sop_class_uid", UID),
    "InstanceNumber": ("instance_number", INT),
}

# Attributes returned by default (PS3.18 Tables 10.6.3-3 to -5), plus StudyDescription, which
# viewers list, and the parent UIDs that let a client address what it found.
STUDY_DEFAULTS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "RetrieveURL",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_DEFAULTS = (
    "Modality",
    "SeriesDescription",
    "RetrieveURL",
    "SeriesInstanceUID",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
    "StudyInstanceUID",
)
INSTANCE_DEFAULTS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "RetrieveURL",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
    "StudyInstanceUID",
    "SeriesInstanceUID",
)

# What `includefield=all` adds at the study and series levels, from a representative instance:
# the Patient, General Study and Patient Study modules (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2), and
# the General Series, General Equipment and Frame of Reference modules (C.7.3.1, C.7.5.1,
# C.7.4.1). At the instance level `all` is the instance's whole header.
_STUDY_MODULE_KEYWORDS = frozenset(
    {
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "IssuerOfAccessionNumberSequence",
        "ReferringPhysicianName",
        "ReferringPhysicianIdentificationSequence",
        "StudyDescription",
        "ProcedureCodeSequence",
        "PhysiciansOfRecord",
        "NameOfPhysiciansReadingStudy",
        "StudyInstanceUID",
        "StudyID",
        "ReasonForPerformedProcedureCodeSequence",
        "RequestingService",
        "AdmittingDiagnosesDescription",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "Occupation",
        "AdditionalPatientHistory",
        "PatientSexNeutered",
        "TimezoneOffsetFromUTC",
        "SpecificCharacterSet",
    }
)
_SERIES_MODULE_KEYWORDS = frozenset(
    {
        "Modality",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "SeriesDate",
        "SeriesTime",
        "Laterality",
        "PerformingPhysicianName",
        "ProtocolName",
        "OperatorsName",
        "BodyPartExamined",
        "PatientPosition",
        "SmallestPixelValueInSeries",
        "LargestPixelValueInSeries",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
        "RequestAttributesSequence",
        "AnatomicalOrientationType",
        "FrameOfReferenceUID",
        "PositionReferenceIndicator",
        "Manufacturer",
        "InstitutionName",
        "InstitutionAddress",
        "StationName",
        "InstitutionalDepartmentName",
        "ManufacturerModelName",
        "DeviceSerialNumber",
        "SoftwareVersions",
        "SeriesDescriptionCodeSequence",
    }
)

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_SAFE_KEY = re.compile(r"[^A-Za-z0-9.]")


class QueryError(Exception):
    """A query this server cannot answer; the message names keys, never values."""


@dataclass(frozen=True)
class _Level:
    name: str  # "study", "series" or "instance"
    keys: dict[str, tuple[str, str]]  # matchable keyword -> (ORM path, kind)
    defaults: tuple[str, ...]
    all_keywords: frozenset[str] | None  # None: the whole header


@dataclass
class _Query:
    matches: list[tuple[str, str, str]] = field(default_factory=list)  # (ORM path, kind, raw value)
    keys: list[str] = field(default_factory=list)
    include: set[str] = field(default_factory=set)  # keywords
    include_all: bool = False
    fuzzy: bool = False
    limit: int = MAX_RESULTS
    offset: int = 0
    limit_given: bool = False
    limit_clamped: bool = False


def _prefixed(keys: dict, prefix: str) -> dict:
    return {keyword: (prefix + column, kind) for keyword, (column, kind) in keys.items()}


_STUDY_ALL = _STUDY_MODULE_KEYWORDS
_SERIES_ALL = _STUDY_MODULE_KEYWORDS | _SERIES_MODULE_KEYWORDS


# --- parsing --------------------------------------------------------------------------------


def _parse(params, level: _Level) -> _Query:
    query = _Query()
    for name, values in params.lists():
        if name == "includefield":
            _parse_includefield(values, query)
            continue
        if len(values) > 1:
            raise QueryError(f"{_safe(name)} is given more than once")
        value = values[0]
        if name == "limit":
            query.limit, query.limit_given = _integer(name, value, minimum=1), True
        elif name == "offset":
            query.offset = _integer(name, value, minimum=0)
        elif name == "fuzzymatching":
            if value not in ("true", "false"):
                raise QueryError("fuzzymatching must be true or false")
            query.fuzzy = value == "true"
        else:
            _parse_key(name, value, level, query)
    if query.limit > MAX_RESULTS:
        query.limit, query.limit_clamped = MAX_RESULTS, True
    return query


def _filters(query: _Query) -> list[Q]:
    """The query's conditions; built after parsing, since fuzzymatching may come last."""
    conditions = (_condition(column, kind, value, query.fuzzy) for column, kind, value in query.matches)
    return [c for c in conditions if c is not None]


def _parse_key(name: str, value: str, level: _Level, query: _Query) -> None:
    if "." in name:
        raise QueryError(f"{_safe(name)}: matching on sequence attributes is not supported")
    attribute = dicomjson.attribute(name)
    if attribute is None:
        raise QueryError(f"{_safe(name)} is not a query parameter or a DICOM attribute keyword or tag")
    if attribute.keyword not in level.keys:
        raise QueryError(f"{attribute.keyword} cannot be used to match {level.name}-level results here")
    if attribute.keyword in query.keys:
        raise QueryError(f"{attribute.keyword} is given more than once")
    column, kind = level.keys[attribute.keyword]
    query.keys.append(attribute.keyword)
    query.include.add(attribute.keyword)
    query.matches.append((column, kind, value))


def _parse_includefield(values: list[str], query: _Query) -> None:
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name == "all":
                query.include_all = True
                continue
            attribute = dicomjson.attribute(name)
            if attribute is None:
                raise QueryError(f"includefield: {_safe(name)} is not a DICOM attribute keyword or tag")
            query.include.add(attribute.keyword)


def _integer(name: str, value: str, *, minimum: int) -> int:
    if not value.isdigit() or len(value) > 9 or int(value) < minimum:
        raise QueryError(f"{name} must be a whole number of at least {minimum}")
    return int(value)


def _safe(name: str) -> str:
    """A query key as it may appear in an error message: short, and only [A-Za-z0-9.]."""
    return _SAFE_KEY.sub("", name)[:64] or "a parameter"


# --- matching (PS3.4 C.2.2.2) ----------------------------------------------------------------


def _condition(column: str, kind: str, value: str, fuzzy: bool) -> Q | None:
    if value == "" or value == "*":
        return None  # universal matching: returned, not filtered (C.2.2.2.3)
    if kind == UID:
        uids = [u.strip() for u in re.split(r"[,\\]", value)]
        if not all(_UID.match(u) and len(u) <= 64 for u in uids):
            raise QueryError("a UID key takes UIDs (digits and dots) separated by commas")
        return Q(**{f"{column}__in": uids})
    if kind in (DATE, TIME):
        return _range(column, value, _DATE if kind == DATE else _TIME, kind)
    if kind == INT:
        if not re.fullmatch(r"[+-]?\d{1,9}", value.strip()):
            raise QueryError("a number key (SeriesNumber, InstanceNumber) takes a whole number")
        return Q(**{column: int(value)})
    if kind == PN:
        if fuzzy:
            return _fuzzy_name(column, value)
        return Q(**{f"{column}__iregex": "^" + _wildcards(value) + "$"})
    if kind == MULTI:
        # ModalitiesInStudy is stored backslash-separated; a value matches any one of them.
        condition = Q()
        for one in value.split(","):
            pattern = _wildcards(one.strip(), any_char=r"[^\\]", any_run=r"[^\\]*")
            condition |= Q(**{f"{column}__regex": r"(^|\\)" + pattern + r"(\\|$)"})
        return condition
    if "*" in value or "?" in value:
        return Q(**{f"{column}__regex": "^" + _wildcards(value) + "$"})
    return Q(**{column: value})


def _range(column: str, value: str, pattern: re.Pattern, kind: str) -> Q:
    """Single value or range `A-B`, `-B`, `A-` (C.2.2.2.5); stored values compare as strings."""
    message = (
        "a date key takes YYYYMMDD or a range YYYYMMDD-YYYYMMDD"
        if kind == DATE
        else "a time key takes HHMMSS(.FFFFFF) or a range of them"
    )
    if "-" not in value:
        if not pattern.match(value):
            raise QueryError(message)
        # A time matches at the precision given: 10 matches 1000 and 103000.5.
        return Q(**{f"{column}__startswith": value}) if kind == TIME else Q(**{column: value})
    low, _, high = value.partition("-")
    if (not low and not high) or (low and not pattern.match(low)) or (high and not pattern.match(high)):
        raise QueryError(message)
    condition = Q(**{f"{column}__gt": ""})  # an empty value never falls in a range
    if low:
        condition &= Q(**{f"{column}__gte": low})
    if high:
        # "…-1030" includes 103059: compare against the upper bound's prefix.
        condition &= Q(**{f"{column}__lte": high}) | Q(**{f"{column}__startswith": high})
    return condition


def _wildcards(value: str, *, any_char: str = ".", any_run: str = ".*") -> str:
    """A regular expression for a DICOM value with `*` and `?` wildcards (C.2.2.2.4)."""
    return "".join(any_run if c == "*" else any_char if c == "?" else re.escape(c) for c in value)


def _accent_classes() -> dict[str, str]:
    variants: dict[str, set[str]] = {}
    for code_point in range(0xC0, 0x250):
        char = chr(code_point)
        base = unicodedata.normalize("NFKD", char)[0].lower()
        if base != char.lower() and "a" <= base <= "z":
            variants.setdefault(base, set()).update({char, char.lower(), char.upper()})
    for base, extra in (("o", "øØ"), ("l", "łŁ"), ("d", "đĐ"), ("a", "æÆ")):
        variants.setdefault(base, set()).update(extra)
    return {base: "[" + base + base.upper() + "".join(sorted(chars)) + "]" for base, chars in variants.items()}


_ACCENTS = _accent_classes()
_NAME_SEPARATORS = r"[\^=\s,.'\-]"


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _fuzzy_name(column: str, value: str) -> Q | None:
    """Each word of the query must begin some name component; case and accents are ignored.

    "joh smi" and "Smith^John" both match "Smith^John" and "Smíth^Jöhn"; "ohn" does not.
    PS3.4 C.2.2.2.1.4 leaves the method to the server.
    """
    condition = Q()
    for word in re.split(r"[\^=\s,]+", _fold(value)):
        if not word.strip("*"):
            continue
        pattern = "".join(".*" if c == "*" else "." if c == "?" else _ACCENTS.get(c, re.escape(c)) for c in word)
        condition &= Q(**{f"{column}__iregex": f"(^|{_NAME_SEPARATORS}){pattern}"})
    return condition if condition else None


# --- results ----------------------------------------------------------------------------------


def _study_attributes(study, base: str) -> dict[str, dict]:
    patient = study.patient
    return {
        "StudyDate": dicomjson.string("DA", study.study_date),
        "StudyTime": dicomjson.string("TM", study.study_time),
        "AccessionNumber": dicomjson.string("SH", study.accession_number),
        "InstanceAvailability": dicomjson.string("CS", "ONLINE"),
        "ModalitiesInStudy": dicomjson.string("CS", study.modalities_in_study),
        "ReferringPhysicianName": dicomjson.person_name(study.referring_physician_name),
        "PatientName": dicomjson.person_name(patient.patient_name),
        "PatientID": dicomjson.string("LO", patient.patient_id),
        "IssuerOfPatientID": dicomjson.string("LO", patient.issuer_of_patient_id),
        "PatientBirthDate": dicomjson.string("DA", patient.patient_birth_date),
        "PatientSex": dicomjson.string("CS", patient.patient_sex),
        "StudyInstanceUID": dicomjson.string("UI", study.study_instance_uid),
        "StudyID": dicomjson.string("SH", study.study_id),
        "StudyDescription": dicomjson.string("LO", study.study_description),
        "NumberOfStudyRelatedSeries": dicomjson.number("IS", study.number_of_series),
        "NumberOfStudyRelatedInstances": dicomjson.number("IS", study.number_of_instances),
        "RetrieveURL": dicomjson.string("UR", f"{base}/{study.study_instance_uid}"),
    }


def _series_attributes(series, base: str) -> dict[str, dict]:
    study_uid = series.study.study_instance_uid
    return {
        "Modality": dicomjson.string("CS", series.modality),
        "SeriesDescription": dicomjson.string("LO", series.series_description),
        "SeriesInstanceUID": dicomjson.string("UI", series.series_instance_uid),
        "SeriesNumber": dicomjson.number("IS", series.series_number),
        "BodyPartExamined": dicomjson.string("CS", series.body_part_examined),
        "NumberOfSeriesRelatedInstances": dicomjson.number("IS", series.number_of_instances),
        "RetrieveURL": dicomjson.string("UR", f"{base}/{study_uid}/series/{series.series_instance_uid}"),
    }


def _instance_attributes(instance, base: str) -> dict[str, dict]:
    series = instance.series
    url = f"{base}/{series.study.study_instance_uid}/series/{series.series_instance_uid}/instances/{instance.sop_instance_uid}"
    return {
        "SOPClassUID": dicomjson.string("UI", instance.sop_class_uid),
        "SOPInstanceUID": dicomjson.string("UI", instance.sop_instance_uid),
        "InstanceAvailability": dicomjson.string("CS", "ONLINE"),
        "InstanceNumber": dicomjson.number("IS", instance.instance_number),
        "Rows": dicomjson.number("US", instance.rows),
        "Columns": dicomjson.number("US", instance.columns),
        "BitsAllocated": dicomjson.number("US", instance.bits_allocated),
        "NumberOfFrames": dicomjson.number("IS", instance.number_of_frames if instance.rows else None),
        "RetrieveURL": dicomjson.string("UR", url),
    }


_STUDY_COMPUTED = frozenset(
    {
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "RetrieveURL",
    }
)
_SERIES_COMPUTED = _STUDY_COMPUTED | {
    "Modality",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "BodyPartExamined",
    "NumberOfSeriesRelatedInstances",
}
_INSTANCE_COMPUTED = _SERIES_COMPUTED | {
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
}
_COMPUTED = {"study": _STUDY_COMPUTED, "series": _SERIES_COMPUTED, "instance": _INSTANCE_COMPUTED}


def _computed(row, level: str, base: str) -> dict[str, dict]:
    """Attributes built from the index columns of the row and its parents, by keyword."""
    if level == "study":
        return _study_attributes(row, base)
    if level == "series":
        return {**_study_attributes(row.study, base), **_series_attributes(row, base)}
    return {
        **_study_attributes(row.series.study, base),
        **_series_attributes(row.series, base),
        **_instance_attributes(row, base),
    }


def _needs_header(query: _Query, level: _Level) -> bool:
    return query.include_all or bool(query.include - _COMPUTED[level.name])


def _representative_ids(level: str):
    """Subquery: the first instance of each study or series, whose header answers includefield."""
    if level == "study":
        instances = Instance.objects.filter(series__study=OuterRef("pk"))
    else:
        instances = Instance.objects.filter(series=OuterRef("pk"))
    return Subquery(instances.order_by("pk").values("pk")[:1])


def _from_header(header: dict, query: _Query, level: _Level, bulk_base: str | None) -> dict[str, dict]:
    """includefield attributes found in a stored header, keyed by tag."""
    wanted = {a.key for a in map(dicomjson.attribute, query.include) if a is not None}
    result = {}
    for key, value in header.items():
        keep = key in wanted
        if query.include_all and not keep:
            if level.all_keywords is None:
                keep = True
            else:
                attribute = dicomjson.attribute(key)
                keep = attribute is not None and (
                    attribute.keyword in level.all_keywords or attribute.tag >> 16 == 0x0010
                )
        if keep:
            result[key] = value
    # A study or series row borrows one instance's header: its bulk data is not the row's own.
    if bulk_base is None:
        return dicomjson.without_bulk(result)
    return dicomjson.with_bulk_uris(result, bulk_base)


def _render(rows, query: _Query, level: _Level, base: str, headers: dict[int, dict]) -> list[dict]:
    wanted = set(level.defaults) | query.include
    results = []
    for row in rows:
        values = _computed(row, level.name, base)
        dataset: dict[str, dict] = {}
        header = headers.get(row.pk)
        if header is not None:
            bulk_base = values["RetrieveURL"]["Value"][0] if level.name == "instance" else None
            dataset.update(_from_header(header, query, level, bulk_base))
        for keyword, value in values.items():
            if keyword in wanted:
                dataset[KEYS_BY_KEYWORD[keyword]] = value
        results.append(dict(sorted(dataset.items())))
    return results


KEYS_BY_KEYWORD = {keyword: dicomjson.attribute(keyword).key for keyword in _INSTANCE_COMPUTED}  # type: ignore[union-attr]


# --- views ---------------------------------------------------------------------------------


def _search(request, *, level: _Level, queryset, order: tuple[str, ...], object_id: str, organization) -> JsonResponse:
    if not accepts_json(request.headers.get("Accept")):
        return _refuse(request, level, object_id, organization, 406, "QIDO-RS answers application/dicom+json only")
    try:
        query = _parse(request.GET, level)
        conditions = _filters(query)
    except QueryError as exc:
        return _refuse(request, level, object_id, organization, 400, str(exc))
    for condition in conditions:
        queryset = queryset.filter(condition)
    needs_header = _needs_header(query, level)
    if level.name == "instance" and not needs_header:
        queryset = queryset.defer("metadata")
    elif level.name != "instance" and needs_header:
        queryset = queryset.annotate(representative=_representative_ids(level.name))
    # One row more than asked for tells whether more results exist (no COUNT query).
    rows = list(queryset.order_by(*order)[query.offset : query.offset + query.limit + 1])
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    headers: dict[int, dict] = {}
    if needs_header and level.name == "instance":
        headers = {row.pk: row.metadata for row in rows}
    elif needs_header:
        wanted = [row.representative for row in rows if row.representative]
        found = dict(Instance.objects.filter(pk__in=wanted).values_list("pk", "metadata"))
        headers = {row.pk: found[row.representative] for row in rows if row.representative in found}
    base = request.build_absolute_uri(reverse("dicomweb:studies"))
    results = _render(rows, query, level, base, headers)
    record(
        action="dicomweb.search",
        actor=request.user,
        request=request,
        organization=organization,
        object_type=level.name,
        object_id=object_id,
        details={
            "level": level.name,
            # PRIVACY: which keys were used, never their values.
            "keys": sorted(query.keys),
            "includefield": ["all"] if query.include_all else sorted(query.include - set(query.keys)),
            "fuzzymatching": query.fuzzy,
            "limit": query.limit,
            "offset": query.offset,
            "results": len(results),
        },
    )
    response = JsonResponse(results, safe=False, content_type=DICOM_JSON)
    response.headers["Cache-Control"] = "no-store"
    if more and (query.limit_clamped or not query.limit_given):
        # The server's cap, not the client's limit, cut the list short (PS3.18 8.3.4.4).
        response.headers["Warning"] = _MORE_RESULTS
    return response


def _refuse(request, level: _Level, object_id: str, organization, status: int, message: str) -> JsonResponse:
    record(
        action="dicomweb.search",
        actor=request.user,
        request=request,
        organization=organization,
        object_type=level.name,
        object_id=dicomjson.uid_or_blank(object_id),
        outcome=Outcome.DENIED if status == 404 else Outcome.FAILURE,
        details={"level": level.name, "status": status},
    )
    response = JsonResponse({"error": message}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _single_organization(user):
    ids = access.visible_organization_ids(user)
    return ids[0] if len(ids) == 1 else None


_STUDY = _Level("study", STUDY_KEYS, STUDY_DEFAULTS, _STUDY_ALL)
_SERIES_IN_STUDY = _Level("series", SERIES_KEYS, SERIES_DEFAULTS, _SERIES_ALL)
_SERIES = _Level(
    "series", {**SERIES_KEYS, **_prefixed(STUDY_KEYS, "study__")}, STUDY_DEFAULTS + SERIES_DEFAULTS, _SERIES_ALL
)
_INSTANCES_IN_SERIES = _Level("instance", INSTANCE_KEYS, INSTANCE_DEFAULTS, None)
_INSTANCES_IN_STUDY = _Level(
    "instance", {**INSTANCE_KEYS, **_prefixed(SERIES_KEYS, "series__")}, SERIES_DEFAULTS + INSTANCE_DEFAULTS, None
)
_INSTANCES = _Level(
    "instance",
    {**INSTANCE_KEYS, **_prefixed(SERIES_KEYS, "series__"), **_prefixed(STUDY_KEYS, "series__study__")},
    STUDY_DEFAULTS + SERIES_DEFAULTS + INSTANCE_DEFAULTS,
    None,
)


@require_safe
@dicomweb_view()
def search_studies(request):
    queryset = access.studies_for(request.user).select_related("patient")
    return _search(
        request,
        level=_STUDY,
        queryset=queryset,
        order=("-study_date", "-study_time", "-pk"),
        object_id="",
        organization=_single_organization(request.user),
    )


@require_safe
@dicomweb_view()
def search_series_in_study(request, study):
    try:
        found = access.get_study(request.user, study)
    except Http404:
        return _refuse(request, _SERIES_IN_STUDY, study, None, 404, "no such study")
    queryset = access.series_for(request.user).filter(study=found).select_related("study__patient")
    return _search(
        request,
        level=_SERIES_IN_STUDY,
        queryset=queryset,
        order=("series_number", "pk"),
        object_id=study,
        organization=found.organization_id,
    )


@require_safe
@dicomweb_view()
def search_series(request):
    queryset = access.series_for(request.user).select_related("study__patient")
    return _search(
        request,
        level=_SERIES,
        queryset=queryset,
        order=("-study__study_date", "study_id", "series_number", "pk"),
        object_id="",
        organization=_single_organization(request.user),
    )


@require_safe
@dicomweb_view()
def search_instances_in_series(request, study, series):
    try:
        found = access.get_series(request.user, study, series)
    except Http404:
        return _refuse(request, _INSTANCES_IN_SERIES, series, None, 404, "no such series")
    queryset = access.instances_for(request.user).filter(series=found).select_related("series__study__patient")
    return _search(
        request,
        level=_INSTANCES_IN_SERIES,
        queryset=queryset,
        order=("instance_number", "pk"),
        object_id=series,
        organization=found.organization_id,
    )


@require_safe
@dicomweb_view()
def search_instances_in_study(request, study):
    try:
        found = access.get_study(request.user, study)
    except Http404:
        return _refuse(request, _INSTANCES_IN_STUDY, study, None, 404, "no such study")
    queryset = access.instances_for(request.user).filter(series__study=found).select_related("series__study__patient")
    return _search(
        request,
        level=_INSTANCES_IN_STUDY,
        queryset=queryset,
        order=("series__series_number", "series_id", "instance_number", "pk"),
        object_id=study,
        organization=found.organization_id,
    )


@require_safe
@dicomweb_view()
def search_instances(request):
    queryset = access.instances_for(request.user).select_related("series__study__patient")
    return _search(
        request,
        level=_INSTANCES,
        queryset=queryset,
        order=(
            "-series__study__study_date",
            "series__study_id",
            "series__series_number",
            "series_id",
            "instance_number",
            "pk",
        ),
        object_id="",
        organization=_single_organization(request.user),
    )
