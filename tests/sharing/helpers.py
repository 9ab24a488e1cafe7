"""Helpers for sharing tests (importable, unlike conftest)."""

from __future__ import annotations

import io

from pydicom.uid import generate_uid

from archive import synthetic
from archive.models import Study
from archive.services import ingest


def store_study(org, *, patient=None, seed: int = 0, with_us: bool = True) -> Study:
    patient = patient or synthetic.SyntheticPatient(name="DOE^JANE", patient_id=f"PID-{seed}", birth_date="19800214")
    datasets = synthetic.mr_study(patient=patient, series=2, slices=2, size=32, seed=seed)
    if with_us:
        cine = synthetic.us_multiframe(patient=patient, frames=2, rows=48, columns=64, seed=seed)
        cine.StudyInstanceUID = datasets[0].StudyInstanceUID
        cine.SeriesInstanceUID = generate_uid(entropy_srcs=["us-series", str(seed)])
        datasets.append(cine)
    for ds in datasets:
        result = ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test")
        assert result.ok, result
    return Study.objects.get(organization=org, study_instance_uid=datasets[0].StudyInstanceUID)


def open_and_verify(client, created, *, code: str | None = None):
    """Open the share link on a test client and verify with the access code; return the landing response."""
    response = client.get(f"/s/{created.token}")
    assert response.status_code == 200
    response = client.post("/share/verify/", {"code": code if code is not None else created.access_code})
    assert response.status_code == 302, response.content[:500]
    return client.get("/share/")
