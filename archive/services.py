"""Write-side archive work: `ingest`, used by every entry point (STOW-RS, import, demo, uploads)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from archive.blobstore import BlobStoreError
from archive.errors import InvalidUpload
from archive.headers import metadata_json, read_header, validate_instance
from archive.models import Instance, Patient, Series, Study
from archive.storage import active_data_key, get_store

logger = logging.getLogger("lightbox.archive")

PREAMBLE = 128
COPY_CHUNK = 1024 * 1024


class Status:
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"


@dataclass
class IngestResult:
    """What happened to one object. `reason` is safe to show: it never contains PHI."""

    status: str
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    reason: str = ""
    code: str = ""
    failure_reason: int = 0
    size: int = 0
    instance_id: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in (Status.STORED, Status.DUPLICATE)


def _text(ds, keyword: str, limit: int) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)[:limit]


def _number(ds, keyword: str):
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _floats(ds, keyword: str):
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _float(ds, keyword: str):
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def _store_encrypted(stream: BinaryIO, *, dek_id: str, dek: bytes) -> tuple[str, int, str, str]:
    """Stream the object into a new encrypted blob with a zeroed preamble.

    Returns (blob id, size, SHA-256 as received, SHA-256 as stored). SECURITY: the 128-byte
    preamble may carry an executable header (PE/ELF polyglots, CVE-2019-11687); it is
    replaced with zeros. Nothing is ever written to disk in plaintext.
    """
    head = stream.read(PREAMBLE + 4)
    if len(head) < PREAMBLE + 4 or head[PREAMBLE:] != b"DICM":
        raise InvalidUpload("not a DICOM Part 10 file (no DICM prefix at byte 128)", code="not_dicom")
    received = hashlib.sha256(head)
    limit = settings.LIGHTBOX_MAX_INSTANCE_BYTES
    size = len(head)
    with get_store().writer(dek_id=dek_id, dek=dek) as writer:
        writer.write(bytes(PREAMBLE) + b"DICM")
        while chunk := stream.read(COPY_CHUNK):
            size += len(chunk)
            if size > limit:
                writer.abort()
                raise InvalidUpload(f"the object is larger than the limit of {limit} bytes", code="too_large", failure_reason=0xA700)
            received.update(chunk)
            writer.write(chunk)
        info = writer.commit()
    return info.blob_id, info.size, received.hexdigest(), info.sha256_hex


def ingest(
    *,
    stream: BinaryIO,
    organization,
    source: str,
    expected_study_uid: str | None = None,
) -> IngestResult:
    """Validate, encrypt, store and index one DICOM object; never touches what is already stored.

    Identical re-sends are a no-op (DUPLICATE); the same SOP Instance UID with other bytes is a
    CONFLICT and the original stays. Any refusal deletes the new blob before returning.
    """
    data_key, dek = active_data_key(organization)
    try:
        blob_id, size, sha_received, sha_stored = _store_encrypted(stream, dek_id=data_key.key_id, dek=dek)
    except InvalidUpload as exc:
        return IngestResult(Status.REJECTED, reason=str(exc), code=exc.code, failure_reason=exc.failure_reason)
    try:
        result = _index(
            blob_id=blob_id,
            size=size,
            sha_received=sha_received,
            sha_stored=sha_stored,
            data_key=data_key,
            organization=organization,
            source=source,
            expected_study_uid=expected_study_uid,
        )
    except BaseException:
        get_store().delete(blob_id)
        raise
    if result.status != Status.STORED:
        get_store().delete(blob_id)
    return result


def _index(*, blob_id, size, sha_received, sha_stored, data_key, organization, source, expected_study_uid) -> IngestResult:
    try:
        with get_store().open(blob_id) as reader:
            ds, notes = read_header(reader, max_inflated_bytes=settings.LIGHTBOX_MAX_PIXEL_BYTES + 64 * 1024**2)
            problems = validate_instance(ds, max_pixel_bytes=settings.LIGHTBOX_MAX_PIXEL_BYTES)
            uids = {
                "sop_class_uid": _text(ds, "SOPClassUID", 64),
                "sop_instance_uid": _text(ds, "SOPInstanceUID", 64),
                "study_instance_uid": _text(ds, "StudyInstanceUID", 64),
                "series_instance_uid": _text(ds, "SeriesInstanceUID", 64),
            }
            if problems:
                code = "too_large" if any("limit" in p.message for p in problems) else "invalid"
                return IngestResult(Status.REJECTED, reason="; ".join(map(str, problems)), code=code,
                                    failure_reason=0xA700 if code == "too_large" else 0xA900, size=size, **uids)
            if expected_study_uid and uids["study_instance_uid"] != expected_study_uid:
                return IngestResult(Status.REJECTED, reason="StudyInstanceUID (0020,000D) differs from the study in the request URL",
                                    code="wrong_study", failure_reason=0xA900, size=size, **uids)
            metadata = metadata_json(ds)
    except InvalidUpload as exc:
        return IngestResult(Status.REJECTED, reason=str(exc), code=exc.code, failure_reason=exc.failure_reason, size=size)
    except BlobStoreError:
        logger.exception("could not read back a blob just written")
        return IngestResult(Status.REJECTED, reason="storage error", code="storage", failure_reason=0x0110, size=size)

    existing = Instance.objects.filter(organization=organization, sop_instance_uid=uids["sop_instance_uid"]).first()
    if existing is not None:
        return _duplicate_or_conflict(existing, sha_stored, size, uids)
    try:
        with transaction.atomic():
            instance = _create_rows(ds, organization, uids, metadata, notes, blob_id=blob_id, size=size,
                                    sha256_received=sha_received, sha256_stored=sha_stored, data_key=data_key, source=source)
    except InvalidUpload as exc:
        return IngestResult(Status.REJECTED, reason=str(exc), code=exc.code, failure_reason=0xA900, size=size, **uids)
    except IntegrityError:
        # Lost a race with a concurrent identical (or conflicting) upload: compare with the winner.
        existing = Instance.objects.filter(organization=organization, sop_instance_uid=uids["sop_instance_uid"]).first()
        if existing is None:
            raise
        return _duplicate_or_conflict(existing, sha_stored, size, uids)
    return IngestResult(Status.STORED, size=size, instance_id=instance.pk, notes=notes, **uids)


def _duplicate_or_conflict(existing: Instance, sha_stored: str, size: int, uids: dict) -> IngestResult:
    if existing.sha256_stored == sha_stored:
        return IngestResult(Status.DUPLICATE, reason="already stored with identical content", code="duplicate",
                            size=size, instance_id=existing.pk, **uids)
    return IngestResult(Status.CONFLICT, reason="an instance with this SOPInstanceUID (0008,0018) is stored with different content",
                        code="conflict", failure_reason=0x0111, size=size, instance_id=existing.pk, **uids)


def _create_rows(ds, organization, uids, metadata, notes, **blob) -> Instance:
    patient, _ = Patient.objects.get_or_create(
        organization=organization,
        patient_id=_text(ds, "PatientID", 64),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID", 64),
        defaults={
            "patient_name": _text(ds, "PatientName", 324),
            "patient_birth_date": _text(ds, "PatientBirthDate", 8),
            "patient_sex": _text(ds, "PatientSex", 16),
        },
    )
    study, _ = Study.objects.get_or_create(
        organization=organization,
        study_instance_uid=uids["study_instance_uid"],
        defaults={
            "patient": patient,
            "study_date": _text(ds, "StudyDate", 8),
            "study_time": _text(ds, "StudyTime", 16),
            "accession_number": _text(ds, "AccessionNumber", 16),
            "study_id": _text(ds, "StudyID", 16),
            "study_description": _text(ds, "StudyDescription", 64),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
        },
    )
    series, series_created = Series.objects.get_or_create(
        organization=organization,
        series_instance_uid=uids["series_instance_uid"],
        defaults={
            "study": study,
            "modality": _text(ds, "Modality", 16),
            "series_number": _number(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription", 64),
            "body_part_examined": _text(ds, "BodyPartExamined", 16),
        },
    )
    if series.study_id != study.pk:
        raise InvalidUpload("SeriesInstanceUID (0020,000E) already belongs to another study", code="invalid")
    instance = Instance.objects.create(
        organization=organization,
        series=series,
        sop_class_uid=uids["sop_class_uid"],
        sop_instance_uid=uids["sop_instance_uid"],
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", ""))[:64],
        instance_number=_number(ds, "InstanceNumber"),
        rows=_number(ds, "Rows"),
        columns=_number(ds, "Columns"),
        number_of_frames=_number(ds, "NumberOfFrames") or 1,
        bits_allocated=_number(ds, "BitsAllocated"),
        bits_stored=_number(ds, "BitsStored"),
        samples_per_pixel=_number(ds, "SamplesPerPixel"),
        photometric_interpretation=_text(ds, "PhotometricInterpretation", 32),
        image_position_patient=_floats(ds, "ImagePositionPatient"),
        image_orientation_patient=_floats(ds, "ImageOrientationPatient"),
        slice_location=_float(ds, "SliceLocation"),
        conformance_notes=notes,
        metadata=metadata,
        **blob,
    )
    Series.objects.filter(pk=series.pk).update(number_of_instances=F("number_of_instances") + 1)
    modality = _text(ds, "Modality", 16)
    Study.objects.filter(pk=study.pk).update(
        number_of_instances=F("number_of_instances") + 1,
        number_of_series=F("number_of_series") + (1 if series_created else 0),
    )
    if modality and modality not in study.modalities_in_study.split("\\"):
        # Re-read under the row lock so two new modalities arriving together both land.
        locked = Study.objects.select_for_update().get(pk=study.pk)
        modalities = [m for m in locked.modalities_in_study.split("\\") if m]
        if modality not in modalities:
            locked.modalities_in_study = "\\".join(sorted([*modalities, modality]))
            locked.save(update_fields=["modalities_in_study"])
    return instance
