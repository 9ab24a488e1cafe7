"""Study list search: the form (all untrusted input) and the query over what the policy allows.

Patient-name matching is fuzzy in the way people type names: case- and accent-insensitive, and
token-wise ("muller hans" finds "MÜLLER^HANS^^DR"). Accent folding is not portable SQL (PostgreSQL
needs the `unaccent` extension, SQLite has none), so names are normalised in Python over the
*patients of the visible studies* only; the remaining criteria stay in SQL. At hospital scale
(~10^5 patients per organisation) this is one indexed column scan per search.
"""

from __future__ import annotations

import unicodedata

from django import forms
from django.db.models import Exists, OuterRef

from archive.models import Patient, Series

MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA", "RF", "OT", "SC"]


def normalise_name(value: str) -> str:
    """Fold a DICOM PN or a typed query for matching: components to words, no accents, casefolded."""
    text = (value or "").replace("^", " ").replace("=", " ").replace(",", " ")
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


class StudySearchForm(forms.Form):
    name = forms.CharField(label="Patient name", max_length=100, required=False)
    patient_id = forms.CharField(label="Patient ID", max_length=64, required=False)
    date_from = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    modality = forms.ChoiceField(
        label="Modality", required=False, choices=[("", "Any")] + [(m, m) for m in MODALITIES]
    )
    accession = forms.CharField(label="Accession", max_length=16, required=False)
    page = forms.IntegerField(required=False, min_value=1, max_value=100_000, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date must not be after the end date.")
        return data

    def has_criteria(self) -> bool:
        data = getattr(self, "cleaned_data", {}) or {}
        return any(data.get(k) for k in ("name", "patient_id", "date_from", "date_to", "modality", "accession"))


def _matching_patient_ids(studies, name: str) -> list[int]:
    tokens = normalise_name(name).split()
    if not tokens:
        return []
    candidates = Patient.objects.filter(pk__in=studies.values("patient_id")).values_list("pk", "patient_name")
    return [pk for pk, patient_name in candidates.iterator() if all(t in normalise_name(patient_name) for t in tokens)]


def search(studies, criteria: dict):
    """Filter a QuerySet of visible studies by cleaned form data; newest first."""
    name = (criteria.get("name") or "").strip()
    if name:
        studies = studies.filter(patient_id__in=_matching_patient_ids(studies, name))
    if criteria.get("patient_id"):
        studies = studies.filter(patient__patient_id__icontains=criteria["patient_id"].strip())
    if criteria.get("accession"):
        studies = studies.filter(accession_number__icontains=criteria["accession"].strip())
    if criteria.get("date_from"):
        studies = studies.filter(study_date__gte=criteria["date_from"].strftime("%Y%m%d"))
    if criteria.get("date_to"):
        studies = studies.filter(study_date__lte=criteria["date_to"].strftime("%Y%m%d"), study_date__gt="")
    if criteria.get("modality"):
        studies = studies.filter(
            Exists(Series.objects.filter(study=OuterRef("pk"), modality=criteria["modality"]))
        )
    return studies.select_related("patient").order_by("-study_date", "-study_time", "-created_at", "-pk")
