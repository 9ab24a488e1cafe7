"""Write-side archive work: `ingest` and `IngestBatch`, used by every entry point.

STOW-RS, `manage.py import_dicom`, the demo loader and (later) uploads all come through here.
One object at a time goes: read -> parse and validate -> encrypt + hash into a new blob ->
index. Indexing is batched: `IngestBatch` commits the rows of up to `max_pending` objects in
one transaction, with the Patient/Study/Series rows of the batch looked up once, which is what
makes a 300-slice study cost a handful of queries instead of a thousand.

Durability and crash safety: the blob store fsyncs each blob before its `commit` returns,
and rows are committed only after that, so a committed row never points at a blob a crash
could lose. A crash between the blob write and the row commit leaves an unreferenced blob
(never a row without bytes); `manage.py sweep_orphans` removes those after a grace period.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F
from pydicom.dataelem import RawDataElement
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from archive.blobstore import BlobNotFound, BlobStoreError, VerifyResult
from archive.errors import InvalidUpload
from archive.headers import PIXEL_DATA_TAGS, ConversionMemo, Problem, metadata_json, read_header, validate_instance
from archive.models import DerivedCopy, Instance, Patient, Series, Study
from archive.storage import active_data_key, blob_age_seconds, get_store, stale_partial_writes
from audit.models import ActorType, Outcome
from audit.services import record

logger = logging.getLogger("lightbox.archive")

PREAMBLE = 128
ZERO_PREAMBLE = bytes(PREAMBLE)
COPY_CHUNK = 1024 * 1024
# Objects up to this size are parsed from memory before anything is written, so a bad one never
# reaches the store and a good one is not read back through the decrypting reader. Larger ones
# are streamed into their blob and their header is read back from it (a few chunks).
SMALL_OBJECT_BYTES = 8 * 1024 * 1024
# pydicom inflates a deflated dataset in memory in one go. Deflate is used for small non-image
# objects in practice (PS3.5 A.5), so a dataset that inflates past this is refused as a bomb
# long before it could claim the full pixel budget.
MAX_INFLATED_BYTES = 512 * 1024 * 1024
_ADDED_PREFIX_NOTE = "File Preamble and DICM prefix (PS3.10 7.1) were missing; a zero preamble and the prefix were added"
# Commit the rows of a batch when it has this many objects, or when its oldest is this old.
DEFAULT_BATCH_SIZE = 64
MAX_PENDING_SECONDS = 2.0


class Status:
    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    REJECTED = "rejected"  # the object itself is refused (not DICOM, invalid, too large...)
    FAILED = "failed"  # a good object the server could not store (disk full, I/O or database error)


# Server-side storage failures: reported per object as FAILED, never as a crash; the client may
# send the same objects again later (nothing of them is kept).
STORAGE_ERRORS = (OSError, DatabaseError)
_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


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


@dataclass
class _Prepared:
    """An object whose blob is written and whose header is parsed; its rows are not yet saved."""

    blob_id: str
    size: int
    sha_received: str
    sha_stored: str
    uids: dict[str, str]
    patient: dict[str, str]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    modality: str
    notes: list[str]


def _not_stored(exc: BaseException, size: int = 0, uids: dict | None = None) -> IngestResult:
    """The FAILED result of an object a storage error kept from being stored.

    PS3.4 Table B.2-1: A700 "Out of Resources" when the disk is full, else 0110 "Processing
    failure". The message names the kind of failure only: an OSError's text can carry a path.
    """
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE:
        return IngestResult(Status.FAILED, reason="not stored: the server's storage is full; send it again later",
                            code="storage_full", failure_reason=0xA700, size=size, **(uids or {}))
    return IngestResult(Status.FAILED, reason="not stored: the server could not write it; send it again later",
                        code="storage_failed", failure_reason=0x0110, size=size, **(uids or {}))


def _log_storage_failure(exc: BaseException, count: int) -> None:
    # PRIVACY: the exception's class and errno only (its text may name a blob path)
    code = errno.errorcode.get(exc.errno, "") if isinstance(exc, OSError) and exc.errno else ""
    logger.error("storage failure (%s %s): %d object(s) not stored", type(exc).__name__, code, count)


def _reject(exc: InvalidUpload, size: int = 0, uids: dict | None = None) -> IngestResult:
    return IngestResult(Status.REJECTED, reason=str(exc), code=exc.code, failure_reason=exc.failure_reason,
                        size=size, **(uids or {}))


def _describe(fp: BinaryIO, *, size: int, expected_study_uid: str | None,
              memo: ConversionMemo | None = None) -> _Prepared | IngestResult:
    """Parse and validate a Part 10 object; return its row fields, or a REJECTED result.

    Raises InvalidUpload for input pydicom cannot read (the caller turns it into a result).
    """
    ds, notes = read_header(fp, max_inflated_bytes=min(settings.LIGHTBOX_MAX_PIXEL_BYTES + 64 * 1024**2,
                                                       MAX_INFLATED_BYTES), memo=memo)
    _check_complete(ds, size)
    problems = validate_instance(ds, max_pixel_bytes=settings.LIGHTBOX_MAX_PIXEL_BYTES)
    sop_class = UID(str(ds.get("SOPClassUID", "")))
    if not problems and "Image Storage" in sop_class.name and not any(tag in ds for tag in PIXEL_DATA_TAGS):
        problems.append(Problem("PixelData (7FE0,0010)", f"missing from an instance of {sop_class.name} (or the object is truncated)"))
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
    modality = _text(ds, "Modality", 16)
    return _Prepared(
        blob_id="",
        size=size,
        sha_received="",
        sha_stored="",
        uids=uids,
        patient={
            "patient_id": _text(ds, "PatientID", 64),
            "issuer_of_patient_id": _text(ds, "IssuerOfPatientID", 64),
            "patient_name": _text(ds, "PatientName", 324),
            "patient_birth_date": _text(ds, "PatientBirthDate", 8),
            "patient_sex": _text(ds, "PatientSex", 16),
        },
        study={
            "study_date": _text(ds, "StudyDate", 8),
            "study_time": _text(ds, "StudyTime", 16),
            "accession_number": _text(ds, "AccessionNumber", 16),
            "study_id": _text(ds, "StudyID", 16),
            "study_description": _text(ds, "StudyDescription", 64),
            "referring_physician_name": _text(ds, "ReferringPhysicianName", 324),
        },
        series={
            "modality": modality,
            "series_number": _number(ds, "SeriesNumber"),
            "series_description": _text(ds, "SeriesDescription", 64),
            "body_part_examined": _text(ds, "BodyPartExamined", 16),
        },
        instance={
            "sop_class_uid": uids["sop_class_uid"],
            "sop_instance_uid": uids["sop_instance_uid"],
            "transfer_syntax_uid": str(ds.file_meta.get("TransferSyntaxUID", ""))[:64],
            "instance_number": _number(ds, "InstanceNumber"),
            "rows": _number(ds, "Rows"),
            "columns": _number(ds, "Columns"),
            "number_of_frames": _number(ds, "NumberOfFrames") or 1,
            "bits_allocated": _number(ds, "BitsAllocated"),
            "bits_stored": _number(ds, "BitsStored"),
            "samples_per_pixel": _number(ds, "SamplesPerPixel"),
            "photometric_interpretation": _text(ds, "PhotometricInterpretation", 32),
            "image_position_patient": _floats(ds, "ImagePositionPatient"),
            "image_orientation_patient": _floats(ds, "ImageOrientationPatient"),
            "slice_location": _float(ds, "SliceLocation"),
            "metadata": metadata_json(ds, memo),
        },
        modality=modality,
        notes=notes,
    )


def _check_complete(ds, size: int) -> None:
    """Refuse an object cut short: pydicom stops quietly at the end of the bytes it is given.

    Each top-level element whose value pydicom has not converted yet still knows where its
    value starts (PS3.5 7.1); a defined length running past the end of the object, or an
    undefined-length value (encapsulated pixel data, PS3.5 A.4) with no room left for its
    sequence delimiter, means the object was truncated. Positions in a deflated dataset (PS3.5
    A.5) are in the inflated stream, not the object, so those are not checked here.
    """
    if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return
    for tag in ds.keys():
        raw = ds.get_item(tag, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.value_tell is None:
            continue
        if raw.length != 0xFFFFFFFF:
            end = raw.value_tell + raw.length
        else:
            end = raw.value_tell + len(raw.value or b"") + 8
        if end > size:
            raise InvalidUpload(
                f"the object is truncated: element ({int(tag) >> 16:04X},{int(tag) & 0xFFFF:04X}) needs "
                f"{end - raw.value_tell} bytes but only {max(0, size - raw.value_tell)} remain",
                code="truncated",
            )


def _read_up_to(stream: BinaryIO, limit: int) -> bytes:
    """Read until `limit` bytes or the end of the stream (streams may return short reads)."""
    first = stream.read(limit)
    if not first or len(first) >= limit:
        return first or b""
    pieces = [first]
    have = len(first)
    while have < limit and (piece := stream.read(limit - have)):
        pieces.append(piece)
        have += len(piece)
    return b"".join(pieces)


def _is_bare_file_meta(head: bytes) -> bool:
    """Whether `head` starts with the file meta group but lacks the preamble and prefix.

    Leniency, on purpose: dicomweb-client (pydicom.dcmwrite of an in-memory Dataset) sends
    objects this way. The group 0002 header is always explicit VR little endian (PS3.10 7.1),
    so its first element is recognisable; such objects get a zero preamble and b"DICM".
    """
    return len(head) >= 12 and head[:2] == b"\x02\x00" and head[4:6] in (b"UL", b"OB", b"UI", b"SH", b"AE")


def _check_prefix(head: bytes) -> None:
    if len(head) < PREAMBLE + 4 or head[PREAMBLE : PREAMBLE + 4] != b"DICM":
        raise InvalidUpload("not a DICOM Part 10 file (no DICM prefix at byte 128)", code="not_dicom")


def _too_large(limit: int) -> InvalidUpload:
    return InvalidUpload(f"the object is larger than the limit of {limit} bytes", code="too_large", failure_reason=0xA700)


def _delete_quietly(blob_id: str) -> None:
    try:
        get_store().delete(blob_id)
    except BlobNotFound:
        pass


class IngestBatch:
    """Ingest many objects into one organisation, committing their rows in batches.

    `add(stream)` validates, encrypts and stores one object at once; its rows are written when
    the batch fills (or ages), and `flush()` writes the rest. Both return `(label, result)`
    pairs for the objects they settled, in the order they were added. Leaving the `with`
    block because of an exception deletes the blobs of objects whose rows were not written.
    Not thread-safe: one batch per thread (each thread has its own DB connection).
    """

    def __init__(self, *, organization, source: str, expected_study_uid: str | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.organization = organization
        self.source = source
        self.expected_study_uid = expected_study_uid
        self.batch_size = max(1, batch_size)
        self.data_key, self._dek = active_data_key(organization)
        self._memo = ConversionMemo()
        self._entries: list[tuple[Hashable, _Prepared | IngestResult]] = []
        self._pending = 0
        self._oldest = 0.0

    def __enter__(self) -> IngestBatch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()

    # -- adding ---------------------------------------------------------------------------

    def add(self, stream: BinaryIO, *, label: Hashable = None) -> list[tuple[Hashable, IngestResult]]:
        """Store one object (read to its end); return the results this call settled.

        Input errors become REJECTED results; errors of the stream itself (I/O, a truncated
        multipart body, a client that went away) propagate, and nothing of that object is kept.
        """
        entry = self._prepare(stream)
        self._entries.append((label, entry))
        if isinstance(entry, _Prepared):
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending += 1
            if self._pending >= self.batch_size or time.monotonic() - self._oldest > MAX_PENDING_SECONDS:
                return self.flush()
        elif not self._pending:
            return self.flush()
        return []

    def add_result(self, result: IngestResult, *, label: Hashable = None) -> list[tuple[Hashable, IngestResult]]:
        """Record an outcome decided by the caller (e.g. a part that is not DICOM), in order."""
        self._entries.append((label, result))
        return [] if self._pending else self.flush()

    def flush(self) -> list[tuple[Hashable, IngestResult]]:
        """Write the rows of every pending object in one transaction; return all settled results."""
        prepared = [entry for _, entry in self._entries if isinstance(entry, _Prepared)]
        outcomes: dict[int, IngestResult] = {}
        if prepared:
            try:
                # One flush for the whole batch, before any row can point at its blobs.
                get_store().sync([item.blob_id for item in prepared])
                outcomes = self._index_all(prepared)
            except STORAGE_ERRORS as exc:
                # No row was committed (the transaction rolled back); the blobs go below
                _log_storage_failure(exc, len(prepared))
                outcomes = {id(item): _not_stored(exc, item.size, item.uids) for item in prepared}
            except BaseException:
                self.discard()
                raise
            for item in prepared:
                if outcomes[id(item)].status != Status.STORED:
                    _delete_quietly(item.blob_id)
        settled = [(label, outcomes[id(entry)] if isinstance(entry, _Prepared) else entry)
                   for label, entry in self._entries]
        self._entries = []
        self._pending = 0
        return settled

    def discard(self) -> None:
        """Forget unsaved objects and delete their blobs (after an error)."""
        for _, entry in self._entries:
            if isinstance(entry, _Prepared):
                _delete_quietly(entry.blob_id)
        self._entries = []
        self._pending = 0

    # -- one object -------------------------------------------------------------------------

    def _prepare(self, stream: BinaryIO) -> _Prepared | IngestResult:
        limit = settings.LIGHTBOX_MAX_INSTANCE_BYTES
        head = _read_up_to(stream, min(SMALL_OBJECT_BYTES, limit) + 1)
        received = len(head)
        added = 0
        if _is_bare_file_meta(head):
            head, added = ZERO_PREAMBLE + b"DICM" + head, PREAMBLE + 4
        try:
            _check_prefix(head)
            if received <= min(SMALL_OBJECT_BYTES, limit):
                return self._prepare_small(head, added)
            if received > limit:
                raise _too_large(limit)
        except InvalidUpload as exc:
            return _reject(exc, size=received)
        return self._prepare_large(head, added, stream)

    def _prepare_small(self, data: bytes, added: int) -> _Prepared | IngestResult:
        try:
            described = _describe(io.BytesIO(data), size=len(data), expected_study_uid=self.expected_study_uid,
                                  memo=self._memo)
        except InvalidUpload as exc:
            return _reject(exc, size=len(data))
        if isinstance(described, IngestResult):
            return described
        if added:
            described.notes.append(_ADDED_PREFIX_NOTE)
        # SECURITY: the 128-byte preamble may carry an executable header (PE/ELF polyglots,
        # CVE-2019-11687); it is stored as zeros. Nothing is ever written in plaintext.
        try:
            with get_store().writer(dek_id=self.data_key.key_id, dek=self._dek, durable=False) as writer:
                writer.write(ZERO_PREAMBLE)
                writer.write(memoryview(data)[PREAMBLE:])
                info = writer.commit()
        except STORAGE_ERRORS as exc:  # the writer removed its partial blob
            _log_storage_failure(exc, 1)
            return _not_stored(exc, described.size, described.uids)
        described.blob_id, described.sha_stored = info.blob_id, info.sha256_hex
        # Most writers leave the preamble zero, and then both hashes are the same digest.
        described.sha_received = (info.sha256_hex if data[:PREAMBLE] == ZERO_PREAMBLE and not added
                                  else hashlib.sha256(memoryview(data)[added:]).hexdigest())
        return described

    def _prepare_large(self, head: bytes, added: int, stream: BinaryIO) -> _Prepared | IngestResult:
        limit = settings.LIGHTBOX_MAX_INSTANCE_BYTES
        received = hashlib.sha256(memoryview(head)[added:])
        size = len(head) - added
        try:
            with get_store().writer(dek_id=self.data_key.key_id, dek=self._dek, durable=False) as writer:
                writer.write(ZERO_PREAMBLE)  # SECURITY: see _prepare_small
                writer.write(memoryview(head)[PREAMBLE:])
                while chunk := stream.read(COPY_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        writer.abort()
                        return _reject(_too_large(limit), size=size)
                    received.update(chunk)
                    writer.write(chunk)
                info = writer.commit()
        except STORAGE_ERRORS as exc:
            # The writer removed its partial blob; a multipart reader skips the part's unread rest
            _log_storage_failure(exc, 1)
            return _not_stored(exc, size)
        try:
            with get_store().open(info.blob_id) as reader:
                described = _describe(reader, size=info.size, expected_study_uid=self.expected_study_uid,
                                      memo=self._memo)
        except InvalidUpload as exc:
            described = _reject(exc, size=size)
        except BlobStoreError:
            logger.exception("could not read back a blob just written")
            described = IngestResult(Status.REJECTED, reason="storage error", code="storage", failure_reason=0x0110, size=size)
        except BaseException:
            _delete_quietly(info.blob_id)
            raise
        if isinstance(described, IngestResult):
            _delete_quietly(info.blob_id)
            return described
        if added:
            described.notes.append(_ADDED_PREFIX_NOTE)
        described.blob_id, described.sha_stored, described.sha_received = info.blob_id, info.sha256_hex, received.hexdigest()
        return described

    # -- rows -----------------------------------------------------------------------------

    def _index_all(self, items: list[_Prepared]) -> dict[int, IngestResult]:
        try:
            with transaction.atomic():
                return self._index(items)
        except IntegrityError:
            # Another writer inserted one of these SOP Instance UIDs between our check and our
            # insert (PostgreSQL; SQLite's IMMEDIATE transactions serialise writers, so the check
            # inside the transaction is final there). Redo them one by one against the winner.
            pass
        outcomes: dict[int, IngestResult] = {}
        for item in items:
            try:
                with transaction.atomic():
                    outcomes.update(self._index([item]))
            except IntegrityError:
                existing = Instance.objects.filter(organization=self.organization,
                                                   sop_instance_uid=item.uids["sop_instance_uid"]).first()
                if existing is None:
                    raise
                outcomes[id(item)] = _duplicate_or_conflict(existing.pk, existing.sha256_stored, item)
        return outcomes

    def _index(self, items: list[_Prepared]) -> dict[int, IngestResult]:
        """Save the rows of `items` (inside the caller's transaction); return results by id(item)."""
        org = self.organization
        outcomes: dict[int, IngestResult] = {}
        existing = {
            row.sop_instance_uid: row
            for row in Instance.objects.filter(
                organization=org, sop_instance_uid__in={i.uids["sop_instance_uid"] for i in items}
            ).only("pk", "sop_instance_uid", "sha256_stored")
        }
        studies = {
            s.study_instance_uid: s
            for s in Study.objects.filter(organization=org,
                                          study_instance_uid__in={i.uids["study_instance_uid"] for i in items})
        }
        series_by_uid = {
            s.series_instance_uid: s
            for s in Series.objects.filter(
                organization=org, series_instance_uid__in={i.uids["series_instance_uid"] for i in items}
            ).select_related("study")
        }
        patients: dict[tuple[str, str], Patient] = {}
        new_series: set[int] = set()
        first_in_batch: dict[str, _Prepared] = {}
        later_in_batch: list[_Prepared] = []
        to_create: list[tuple[_Prepared, Instance]] = []
        for item in items:
            sop_uid = item.uids["sop_instance_uid"]
            if sop_uid in existing:
                row = existing[sop_uid]
                outcomes[id(item)] = _duplicate_or_conflict(row.pk, row.sha256_stored, item)
                continue
            if sop_uid in first_in_batch:
                later_in_batch.append(item)
                continue
            series = series_by_uid.get(item.uids["series_instance_uid"])
            if series is not None and series.study.study_instance_uid != item.uids["study_instance_uid"]:
                outcomes[id(item)] = IngestResult(
                    Status.REJECTED, reason="SeriesInstanceUID (0020,000E) already belongs to another study",
                    code="invalid", failure_reason=0xA900, size=item.size, **item.uids)
                continue
            study = studies.get(item.uids["study_instance_uid"])
            if study is None:
                study, _ = Study.objects.get_or_create(
                    organization=org,
                    study_instance_uid=item.uids["study_instance_uid"],
                    defaults={"patient": self._patient(item, patients), **item.study},
                )
                studies[study.study_instance_uid] = study
            if series is None:
                series, created = Series.objects.get_or_create(
                    organization=org,
                    series_instance_uid=item.uids["series_instance_uid"],
                    defaults={"study": study, **item.series},
                )
                series_by_uid[series.series_instance_uid] = series
                if created:
                    new_series.add(series.pk)
            first_in_batch[sop_uid] = item
            to_create.append((item, Instance(
                organization=org, series=series, blob_id=item.blob_id, data_key=self.data_key, size=item.size,
                sha256_received=item.sha_received, sha256_stored=item.sha_stored, source=self.source,
                conformance_notes=item.notes, **item.instance,
            )))
        Instance.objects.bulk_create([instance for _, instance in to_create])
        for item, instance in to_create:
            outcomes[id(item)] = IngestResult(Status.STORED, size=item.size, instance_id=instance.pk,
                                              notes=item.notes, **item.uids)
        for item in later_in_batch:
            first = first_in_batch[item.uids["sop_instance_uid"]]
            outcomes[id(item)] = _duplicate_or_conflict(outcomes[id(first)].instance_id, first.sha_stored, item)
        self._update_counts(to_create, series_by_uid, new_series, {s.pk: s for s in studies.values()})
        return outcomes

    def _patient(self, item: _Prepared, cache: dict[tuple[str, str], Patient]) -> Patient:
        key = (item.patient["patient_id"], item.patient["issuer_of_patient_id"])
        patient = cache.get(key)
        if patient is None:
            patient, _ = Patient.objects.get_or_create(
                organization=self.organization,
                patient_id=key[0],
                issuer_of_patient_id=key[1],
                defaults={k: item.patient[k] for k in ("patient_name", "patient_birth_date", "patient_sex")},
            )
            cache[key] = patient
        return patient

    def _update_counts(self, created: list[tuple[_Prepared, Instance]], series_by_uid: dict[str, Series],
                       new_series: set[int], studies: dict[int, Study]) -> None:
        # F() increments, so concurrent batches adding to the same series both count.
        per_series = Counter(instance.series_id for _, instance in created)
        study_of = {s.pk: s.study_id for s in series_by_uid.values()}
        per_study = Counter()
        series_added = Counter()
        modalities: dict[int, set[str]] = {}
        for series_pk, count in per_series.items():
            Series.objects.filter(pk=series_pk).update(number_of_instances=F("number_of_instances") + count)
            per_study[study_of[series_pk]] += count
            if series_pk in new_series:
                series_added[study_of[series_pk]] += 1
        for item, instance in created:
            if item.modality:
                modalities.setdefault(study_of[instance.series_id], set()).add(item.modality)
        for study_pk, count in per_study.items():
            Study.objects.filter(pk=study_pk).update(
                number_of_instances=F("number_of_instances") + count,
                number_of_series=F("number_of_series") + series_added[study_pk],
            )
        for study_pk, wanted in modalities.items():
            known = studies.get(study_pk)
            if known is not None and wanted <= set(known.modalities_in_study.split("\\")):
                continue  # modalities are only ever added, so a cached hit is still true
            # Re-read under the row lock so two new modalities arriving together both land.
            locked = Study.objects.select_for_update().only("modalities_in_study").get(pk=study_pk)
            present = [m for m in locked.modalities_in_study.split("\\") if m]
            if not wanted <= set(present):
                locked.modalities_in_study = "\\".join(sorted(set(present) | wanted))[:128]
                locked.save(update_fields=["modalities_in_study"])


def _duplicate_or_conflict(instance_id: int | None, stored_sha: str, item: _Prepared) -> IngestResult:
    if stored_sha == item.sha_stored:
        return IngestResult(Status.DUPLICATE, reason="already stored with identical content", code="duplicate",
                            size=item.size, instance_id=instance_id, **item.uids)
    return IngestResult(Status.CONFLICT, reason="an instance with this SOPInstanceUID (0008,0018) is stored with different content",
                        code="conflict", failure_reason=0x0111, size=item.size, instance_id=instance_id, **item.uids)


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
    with IngestBatch(organization=organization, source=source, expected_study_uid=expected_study_uid,
                     batch_size=1) as batch:
        settled = batch.add(stream) or batch.flush()
    return settled[0][1]


def ingest_many(
    items: Iterable[tuple[Hashable, BinaryIO]],
    *,
    organization,
    source: str,
    expected_study_uid: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[Hashable, IngestResult]]:
    """Ingest `(label, stream)` pairs with batched commits; yield `(label, result)` in order."""
    with IngestBatch(organization=organization, source=source, expected_study_uid=expected_study_uid,
                     batch_size=batch_size) as batch:
        for label, stream in items:
            yield from batch.add(stream, label=label)
        yield from batch.flush()


# -- store maintenance ------------------------------------------------------------------------


@dataclass
class VerifyProblem:
    """An instance whose blob is missing, unreadable or not the bytes that were stored."""

    instance_id: int
    sop_instance_uid: str
    blob_id: str
    error: str


@dataclass
class VerifyReport:
    checked: int = 0
    checked_copies: int = 0  # derived fast-decode copies
    bytes: int = 0
    problems: list[VerifyProblem] = field(default_factory=list)


def verify_store(*, organization=None, on_checked: Callable[[VerifyResult], None] | None = None,
                 actor: str = "manage.py") -> VerifyReport:
    """Decrypt every instance's blob, authenticating each chunk, and compare its SHA-256 with
    `Instance.sha256_stored`; report (and audit) what does not match."""
    store = get_store()
    report = VerifyReport()
    rows = Instance.objects.order_by("pk")
    if organization is not None:
        rows = rows.filter(organization=organization)
    for pk, sop_uid, blob_id, sha in rows.values_list("pk", "sop_instance_uid", "blob_id", "sha256_stored").iterator(
        chunk_size=2000
    ):
        result = store.verify(blob_id, sha)
        report.checked += 1
        report.bytes += result.size or 0
        if not result.ok:
            report.problems.append(VerifyProblem(pk, sop_uid, blob_id, result.error or "failed"))
        if on_checked is not None:
            on_checked(result)
    copies = DerivedCopy.objects.exclude(blob_id="").order_by("pk")
    if organization is not None:
        copies = copies.filter(organization=organization)
    for pk, sop_uid, blob_id, sha in copies.values_list(
        "instance_id", "instance__sop_instance_uid", "blob_id", "sha256_stored"
    ).iterator(chunk_size=2000):
        result = store.verify(blob_id, sha)
        report.checked_copies += 1
        report.bytes += result.size or 0
        if not result.ok:
            report.problems.append(VerifyProblem(pk, sop_uid, blob_id, f"derived copy: {result.error or 'failed'}"))
    record(
        action="archive.store_verified",
        actor=actor,
        actor_type=ActorType.SYSTEM,
        organization=organization,
        object_type="blob_store",
        outcome=Outcome.FAILURE if report.problems else Outcome.SUCCESS,
        details={"checked": report.checked, "checked_copies": report.checked_copies, "problems": len(report.problems),
                 "instances": [p.instance_id for p in report.problems][:1000]},
    )
    return report


@dataclass
class SweepReport:
    orphans: list[str] = field(default_factory=list)  # deleted (or, on a dry run, to delete)
    too_young: int = 0
    partial_writes: int = 0
    dry_run: bool = False


def sweep_orphans(*, grace_seconds: float = 3600, dry_run: bool = False, actor: str = "manage.py") -> SweepReport:
    """Delete blobs no Instance references that are older than `grace_seconds`.

    Orphans come from a crash between a blob write and its row commit, and from a DEK
    rotation interrupted between a swap and the delete. The grace period keeps blobs of
    ingests still in flight (written, rows not yet committed) out of reach.
    """
    store = get_store()
    report = SweepReport(dry_run=dry_run)
    batch: list[str] = []

    def settle() -> None:
        referenced = set(Instance.objects.filter(blob_id__in=batch).values_list("blob_id", flat=True))
        # Derived fast-decode copies are referenced blobs too.
        referenced |= set(DerivedCopy.objects.filter(blob_id__in=batch).values_list("blob_id", flat=True))
        for blob_id in batch:
            if blob_id in referenced:
                continue
            age = blob_age_seconds(blob_id)
            if age is None or age < grace_seconds:
                report.too_young += 1
                continue
            if not dry_run:
                _delete_quietly(blob_id)
            report.orphans.append(blob_id)
        batch.clear()

    for blob_id in store.iter_blob_ids():
        batch.append(blob_id)
        if len(batch) >= 500:
            settle()
    settle()
    for path in stale_partial_writes(grace_seconds):
        report.partial_writes += 1
        if not dry_run:
            path.unlink(missing_ok=True)
    record(
        action="archive.orphans_swept",
        actor=actor,
        actor_type=ActorType.SYSTEM,
        object_type="blob_store",
        details={"orphans": len(report.orphans), "partial_writes": report.partial_writes,
                 "too_young": report.too_young, "dry_run": dry_run, "blob_ids": report.orphans[:1000]},
    )
    return report
