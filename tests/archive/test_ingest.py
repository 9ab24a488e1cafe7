"""The ingest service: store, duplicates, conflicts, bad input, batching and crash safety."""

from __future__ import annotations

import copy
import hashlib
import io
import os
import zlib

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, RLELossless, generate_uid

from archive import services, synthetic
from archive.blobstore.backends import NAME_RE
from archive.models import DataKey, Instance, Patient, Series, Study
from archive.services import IngestBatch, Status, ingest, ingest_many, sweep_orphans
from archive.storage import active_data_key, get_store

from .faults import fail_blob_writes

pytestmark = pytest.mark.django_db

PATIENT = synthetic.SyntheticPatient(name="INGEST^TESTPERSON", patient_id="ING-0001")


def ct(slices: int = 3, size: int = 32, **kwargs) -> list[Dataset]:
    return synthetic.ct_study(slices=slices, size=size, patient=kwargs.pop("patient", PATIENT), **kwargs)


def as_bytes(ds: Dataset) -> bytes:
    return synthetic.to_bytes(ds)


def stored_bytes(result) -> bytes:
    instance = Instance.objects.get(pk=result.instance_id)
    with get_store().open(instance.blob_id) as reader:
        return reader.read()


def blob_count() -> int:
    return sum(1 for _ in get_store().iter_blob_ids())


def snapshot() -> dict[str, str]:
    """SHA-256 of every stored object's plaintext, by SOP Instance UID."""
    store = get_store()
    result = {}
    for instance in Instance.objects.all():
        with store.open(instance.blob_id) as reader:
            result[instance.sop_instance_uid] = hashlib.sha256(reader.read()).hexdigest()
    return result


def test_stores_a_study_and_indexes_it(org):
    datasets = ct(slices=3)
    results = list(
        ingest_many(((i, io.BytesIO(as_bytes(ds))) for i, ds in enumerate(datasets)), organization=org, source="test")
    )
    assert [label for label, _ in results] == [0, 1, 2]
    assert all(r.status == Status.STORED for _, r in results)
    study = Study.objects.get()
    assert (study.number_of_instances, study.number_of_series, study.modalities_in_study) == (3, 1, "CT")
    assert Series.objects.get().number_of_instances == 3
    assert Patient.objects.get().patient_name == "INGEST^TESTPERSON"
    instance = Instance.objects.get(sop_instance_uid=datasets[1].SOPInstanceUID)
    assert (instance.rows, instance.columns, instance.instance_number, instance.source) == (32, 32, 2, "test")
    assert instance.metadata["00080018"]["Value"] == [datasets[1].SOPInstanceUID]
    assert instance.metadata["7FE00010"]["BulkDataURI"] == "bulk:7FE00010"
    original = as_bytes(datasets[1])
    assert stored_bytes(results[1][1]) == original
    assert instance.sha256_received == instance.sha256_stored == hashlib.sha256(original).hexdigest()


def test_preamble_is_stored_as_zeros_and_both_hashes_are_kept(org):
    original = as_bytes(ct(slices=1)[0])
    polyglot = b"MZ" + b"\x90" * 126 + original[128:]
    result = ingest(stream=io.BytesIO(polyglot), organization=org, source="test")
    assert result.status == Status.STORED
    assert stored_bytes(result) == bytes(128) + original[128:]
    instance = Instance.objects.get()
    assert instance.sha256_received == hashlib.sha256(polyglot).hexdigest()
    assert instance.sha256_stored == hashlib.sha256(original).hexdigest()


def test_identical_resend_is_a_noop(org):
    data = as_bytes(ct(slices=1)[0])
    first = ingest(stream=io.BytesIO(data), organization=org, source="test")
    blobs = blob_count()
    again = ingest(stream=io.BytesIO(data), organization=org, source="test")
    assert again.status == Status.DUPLICATE and again.ok and again.instance_id == first.instance_id
    assert blob_count() == blobs
    assert Study.objects.get().number_of_instances == 1


def test_same_uid_with_other_bytes_is_a_conflict_and_the_original_stays(org):
    ds = ct(slices=1)[0]
    ingest(stream=io.BytesIO(as_bytes(ds)), organization=org, source="test")
    before = snapshot()
    ds.SeriesDescription = "CHANGED"
    result = ingest(stream=io.BytesIO(as_bytes(ds)), organization=org, source="test")
    assert (result.status, result.code, result.failure_reason) == (Status.CONFLICT, "conflict", 0x0111)
    assert snapshot() == before
    assert blob_count() == 1


def test_a_batch_reports_each_object_in_order(org):
    first, second, third = ct(slices=3)
    changed = copy.deepcopy(second)
    changed.SeriesDescription = "OTHER BYTES"
    items = [
        ("a", as_bytes(first)),
        ("junk", b"not dicom at all"),
        ("b", as_bytes(second)),
        ("a-again", as_bytes(first)),
        ("b-changed", as_bytes(changed)),
        ("c", as_bytes(third)),
    ]
    with IngestBatch(organization=org, source="test", batch_size=100) as batch:
        settled = []
        for label, data in items:
            settled += batch.add(io.BytesIO(data), label=label)
        settled += batch.flush()
    statuses = {label: r.status for label, r in settled}
    assert [label for label, _ in settled] == [label for label, _ in items]
    assert statuses == {
        "a": "stored",
        "junk": "rejected",
        "b": "stored",
        "a-again": "duplicate",
        "b-changed": "conflict",
        "c": "stored",
    }
    assert Instance.objects.count() == 3 and blob_count() == 3
    assert Study.objects.get().number_of_instances == 3


def test_objects_larger_than_the_in_memory_limit_stream_through(org, monkeypatch):
    monkeypatch.setattr(services, "SMALL_OBJECT_BYTES", 1024)
    data = as_bytes(ct(slices=1, size=64)[0])
    result = ingest(stream=io.BytesIO(data), organization=org, source="test")
    assert result.status == Status.STORED
    assert stored_bytes(result) == data
    junk = b"\0" * 128 + b"DICM" + b"\xff" * 5000
    refused = ingest(stream=io.BytesIO(junk), organization=org, source="test")
    assert refused.status == Status.REJECTED and refused.code in ("malformed", "invalid")
    assert blob_count() == 1


def test_refuses_an_object_over_the_size_limit(org, settings, monkeypatch):
    settings.LIGHTBOX_MAX_INSTANCE_BYTES = 2048
    data = as_bytes(ct(slices=1, size=64)[0])
    assert ingest(stream=io.BytesIO(data), organization=org, source="test").code == "too_large"
    monkeypatch.setattr(services, "SMALL_OBJECT_BYTES", 1024)
    assert ingest(stream=io.BytesIO(data), organization=org, source="test").code == "too_large"
    assert blob_count() == 0


def _deflate_bomb() -> bytes:
    ds = ct(slices=1)[0]
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = as_bytes(ds)
    # Keep the file meta group (its length is in (0002,0000)), then a deflate stream that
    # inflates to 100 MiB of zeros from about 100 kB: far past the limit the test sets.
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(zeros) for _ in range(100)) + compressor.flush()
    return data[:meta_end] + bomb


def _with(ds: Dataset, **changes) -> bytes:
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return as_bytes(ds)


BAD_INPUT = {
    "empty": (lambda: b"", "not_dicom"),
    "not_dicom": (lambda: b"%PDF-1.7 " + bytes(300), "not_dicom"),
    # Cut inside a value, the element is found short; cut between elements, pydicom stops
    # quietly and the image is found to have no pixel data.
    "truncated_header": (lambda: as_bytes(ct(slices=1)[0])[:1500], ("truncated", "invalid")),
    "truncated_pixels": (lambda: as_bytes(ct(slices=1)[0])[:-100], "truncated"),
    "truncated_compressed": (lambda: as_bytes(ct(slices=1, transfer_syntax=RLELossless)[0])[:-30], "invalid"),
    "image_without_pixels": (lambda: _with(ct(slices=1)[0], PixelData=None), "invalid"),
    "missing_uid": (lambda: _with(ct(slices=1)[0], StudyInstanceUID=None), "invalid"),
    "bad_uid": (lambda: _with(ct(slices=1)[0], SeriesInstanceUID="1.2.abc"), "invalid"),
    "absurd_dimensions": (lambda: _with(ct(slices=1)[0], Rows=65535, Columns=65535, NumberOfFrames=9999), "too_large"),
    "zero_rows": (lambda: _with(ct(slices=1)[0], Rows=0), "invalid"),
    "deflate_bomb": (_deflate_bomb, "too_large"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_gets_a_reason_and_touches_nothing_stored(org, case, settings):
    settings.LIGHTBOX_MAX_PIXEL_BYTES = 4 * 1024**2  # inflated datasets may then reach 68 MiB
    keep = ct(slices=1, patient=synthetic.SyntheticPatient(patient_id="KEEP-1"))[0]
    ingest(stream=io.BytesIO(as_bytes(keep)), organization=org, source="test")
    before, blobs = snapshot(), blob_count()
    make, code = BAD_INPUT[case]
    result = ingest(stream=io.BytesIO(make()), organization=org, source="test")
    assert result.status == Status.REJECTED and not result.ok
    assert result.code in ((code,) if isinstance(code, str) else code)
    assert result.reason and result.failure_reason
    assert "INGEST" not in result.reason and "TESTPERSON" not in result.reason
    assert snapshot() == before and blob_count() == blobs


def test_the_study_in_the_url_must_match(org):
    data = as_bytes(ct(slices=1)[0])
    result = ingest(stream=io.BytesIO(data), organization=org, source="test", expected_study_uid=generate_uid())
    assert (result.status, result.code, result.failure_reason) == (Status.REJECTED, "wrong_study", 0xA900)
    assert blob_count() == 0


def test_a_series_cannot_move_to_another_study(org):
    ds = ct(slices=1)[0]
    ingest(stream=io.BytesIO(as_bytes(ds)), organization=org, source="test")
    ds.StudyInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    result = ingest(stream=io.BytesIO(as_bytes(ds)), organization=org, source="test")
    assert result.status == Status.REJECTED and "another study" in result.reason
    assert Study.objects.count() == 1 and blob_count() == 1


def test_organisations_are_separate(org, other_org):
    data = as_bytes(ct(slices=1)[0])
    assert ingest(stream=io.BytesIO(data), organization=org, source="test").status == Status.STORED
    assert ingest(stream=io.BytesIO(data), organization=other_org, source="test").status == Status.STORED
    assert DataKey.objects.filter(state="active").count() == 2
    assert {get_store().dek_id_of(i.blob_id) for i in Instance.objects.all()} == set(
        DataKey.objects.values_list("key_id", flat=True)
    )


def test_a_crash_between_blob_write_and_commit_leaves_only_an_orphan_that_the_sweep_removes(org, monkeypatch):
    data = as_bytes(ct(slices=1)[0])

    def crash(self, items):
        raise SystemExit("killed")

    # A killed process runs no cleanup: the blob is written, no row is committed.
    monkeypatch.setattr(IngestBatch, "_index_all", crash)
    monkeypatch.setattr(services, "_delete_quietly", lambda blob_id: None)
    with pytest.raises(SystemExit):
        ingest(stream=io.BytesIO(data), organization=org, source="test")
    monkeypatch.undo()
    assert Instance.objects.count() == 0 and blob_count() == 1

    assert sweep_orphans().orphans == []  # younger than the grace period: maybe still in flight
    dry = sweep_orphans(grace_seconds=0, dry_run=True)
    assert len(dry.orphans) == 1 and blob_count() == 1
    assert len(sweep_orphans(grace_seconds=0).orphans) == 1
    assert blob_count() == 0
    # And the object can be stored afterwards as if nothing happened.
    assert ingest(stream=io.BytesIO(data), organization=org, source="test").status == Status.STORED


def test_a_batch_whose_flush_to_disk_fails_keeps_no_rows_and_no_blobs(org, monkeypatch):
    """A disk error while a batch's blobs are made durable (the fsyncs run together)."""
    import errno

    objects = [as_bytes(ds) for ds in ct(slices=3)]
    active_data_key(org)  # the key files are written (and fsynced) before the failure starts
    real_fsync = os.fsync
    blob_files = []

    def failing_fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if NAME_RE.fullmatch(os.path.basename(path)):  # a committed blob, not a key file or a directory
            blob_files.append(path)
            if len(blob_files) == 2:
                raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    failed = list(ingest_many([(i, io.BytesIO(data)) for i, data in enumerate(objects)], organization=org, source="test"))
    monkeypatch.undo()
    # Each object is reported as not stored (a server fault, retryable), with its UIDs, never a crash
    assert [(r.status, r.code, r.failure_reason) for _, r in failed] == [(Status.FAILED, "storage_failed", 0x0110)] * 3
    assert [r.sop_instance_uid for _, r in failed] == [ds.SOPInstanceUID for ds in ct(slices=3)]
    assert "Input/output" not in failed[0][1].reason  # no OS text (it can carry a path)
    assert len(blob_files) == 3  # every file of the batch was still flushed before the error surfaced
    assert Instance.objects.count() == 0 and Study.objects.count() == 0
    assert blob_count() == 0  # the batch's blobs are deleted, not left as orphans
    # Once the disk works again the same objects store normally.
    settled = list(ingest_many([(i, io.BytesIO(data)) for i, data in enumerate(objects)], organization=org, source="test"))
    assert [r.status for _, r in settled] == [Status.STORED] * 3


@pytest.mark.parametrize(("error", "code", "reason"), [(28, "storage_full", 0xA700), (5, "storage_failed", 0x0110)])
def test_a_disk_that_fails_while_blobs_are_written_fails_those_objects_only(org, monkeypatch, error, code, reason):
    objects = [as_bytes(ds) for ds in ct(slices=4)]
    active_data_key(org)
    fail_blob_writes(monkeypatch, first=3, error=error)  # the second object's first write
    settled = list(ingest_many([(i, io.BytesIO(data)) for i, data in enumerate(objects)], organization=org, source="test"))
    monkeypatch.undo()
    assert [r.status for _, r in settled] == [Status.STORED, Status.FAILED, Status.STORED, Status.STORED]
    assert (settled[1][1].code, settled[1][1].failure_reason) == (code, reason)
    assert settled[1][1].sop_instance_uid == ct(slices=4)[1].SOPInstanceUID
    assert Instance.objects.count() == 3 and blob_count() == 3  # no partial blob left behind
    again = ingest(stream=io.BytesIO(objects[1]), organization=org, source="test")
    assert again.status == Status.STORED


def test_the_sweep_keeps_referenced_blobs(org):
    ingest(stream=io.BytesIO(as_bytes(ct(slices=1)[0])), organization=org, source="test")
    assert sweep_orphans(grace_seconds=0).orphans == []
    assert blob_count() == 1


def test_an_object_without_preamble_and_prefix_gets_them_added(org, monkeypatch):
    data = as_bytes(ct(slices=1)[0])
    bare = data[132:]
    result = ingest(stream=io.BytesIO(bare), organization=org, source="test")
    assert result.status == Status.STORED and "DICM prefix" in result.notes[0]
    assert stored_bytes(result) == data
    instance = Instance.objects.get()
    assert instance.sha256_received == hashlib.sha256(bare).hexdigest() != instance.sha256_stored
    monkeypatch.setattr(services, "SMALL_OBJECT_BYTES", 1024)
    other = ct(slices=2)[1]
    result = ingest(stream=io.BytesIO(as_bytes(other)[132:]), organization=org, source="test")
    assert result.status == Status.STORED and stored_bytes(result) == as_bytes(other)


def test_a_lost_insert_race_is_settled_one_by_one(org, monkeypatch):
    """PostgreSQL: another writer inserts a UID between our check and our insert."""
    first, second = ct(slices=2)
    ingest(stream=io.BytesIO(as_bytes(first)), organization=org, source="test")
    real_index = IngestBatch._index
    calls = []

    def racing(self, items):
        calls.append(len(items))
        if len(calls) == 1:
            raise services.IntegrityError("duplicate key value violates unique constraint")
        return real_index(self, items)

    monkeypatch.setattr(IngestBatch, "_index", racing)
    settled = list(
        ingest_many(
            [("a", io.BytesIO(as_bytes(first))), ("b", io.BytesIO(as_bytes(second)))], organization=org, source="test"
        )
    )
    assert calls == [2, 1, 1]
    assert [r.status for _, r in settled] == [Status.DUPLICATE, Status.STORED]
    assert Instance.objects.count() == 2 and blob_count() == 2


def test_a_large_object_is_indexed_without_reading_its_pixel_data_back(org, monkeypatch):
    from archive.blobstore import BlobReader

    monkeypatch.setattr(services, "SMALL_OBJECT_BYTES", 4096)
    ds = ct(slices=1, size=128)[0]
    data = as_bytes(ds)  # about 33 kB, most of it pixel data
    read = []
    real_read = BlobReader.read

    def counting_read(self, size=-1):
        out = real_read(self, size)
        read.append(len(out))
        return out

    monkeypatch.setattr(BlobReader, "read", counting_read)
    result = ingest(stream=io.BytesIO(data), organization=org, source="test")
    assert result.status == Status.STORED
    assert 0 < sum(read) < 4096, read  # the header, not the 32 kB of pixels
    assert Instance.objects.get().metadata["7FE00010"]["BulkDataURI"] == "bulk:7FE00010"
