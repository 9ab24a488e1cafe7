"""The encrypted blob store: round trips, bounded streaming, partial reads, tamper detection.

Django-free: runs under the project's conftest or alone with
``pytest tests/archive/test_blobstore.py -p no:django --noconftest``.
"""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from archive.blobstore import (
    BlobNotFound,
    BlobStore,
    IntegrityError,
    KeyNotFound,
    LocalFileBackend,
    generate_dek,
    rotate_dek,
)
from archive.blobstore import format as fmt

CHUNK = 4096
DEK_ID = "org-1/dek-1"
OTHER_DEK_ID = "org-2/dek-1"  # same length as DEK_ID, so it can be patched into a header
HEADER = 27 + len(DEK_ID)
RECORD = CHUNK + fmt.CHUNK_OVERHEAD
# CT_small.dcm: 128x128 16-bit CT, explicit VR little endian, ~39 kB (10 chunks of 4 kB).
CT_SMALL = get_testdata_file("CT_small.dcm")


@pytest.fixture
def keys():
    return {DEK_ID: generate_dek(), OTHER_DEK_ID: generate_dek()}


@pytest.fixture
def backend(tmp_path):
    return LocalFileBackend(tmp_path / "blobs")


@pytest.fixture
def store(backend, keys):
    return BlobStore(backend, keys.__getitem__, chunk_size=CHUNK)


@pytest.fixture
def decrypts(monkeypatch):
    """Counts chunk decryptions made anywhere in the store."""
    calls = []
    real = fmt.decrypt_chunk

    def spy(aead, header, index, *args, **kwargs):
        calls.append(index)
        return real(aead, header, index, *args, **kwargs)

    monkeypatch.setattr(fmt, "decrypt_chunk", spy)
    return calls


def put(store, keys, data, dek_id=DEK_ID):
    return store.write(data, dek_id=dek_id, dek=keys[dek_id])


def path_of(backend, blob_id) -> Path:
    return backend.root / blob_id[:2] / blob_id[2:4] / blob_id


def patch_file(path: Path, edit) -> None:
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(edit(data)))


def assert_unreadable(store, blob_id, error=IntegrityError):
    with pytest.raises(error):
        with store.open(blob_id) as reader:
            reader.read()
    assert not store.verify(blob_id).ok


SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, CHUNK * 7 // 2]


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_returns_the_same_bytes_and_sha256(store, keys, size):
    data = os.urandom(size)
    info = put(store, keys, data)
    assert info.size == size
    assert info.sha256_hex == hashlib.sha256(data).hexdigest()
    assert store.size(info.blob_id) == size
    with store.open(info.blob_id) as reader:
        assert reader.read() == data
    assert b"".join(store.iter_chunks(info.blob_id)) == data
    assert store.verify(info.blob_id, info.sha256_hex).ok


@pytest.mark.parametrize("size", SIZES)
def test_stream_write_matches_bytes_write(store, keys, size):
    data = os.urandom(size)
    info = store.write(io.BytesIO(data), dek_id=DEK_ID, dek=keys[DEK_ID])
    assert info.sha256_hex == hashlib.sha256(data).hexdigest()
    assert store.read_range(info.blob_id, 0, size) == data


@pytest.mark.parametrize("size", SIZES)
def test_stored_size_is_header_plus_28_bytes_per_chunk(store, keys, backend, size):
    info = put(store, keys, os.urandom(size))
    chunks = max(1, -(-size // CHUNK))
    assert backend.size(info.blob_id) == HEADER + size + chunks * fmt.CHUNK_OVERHEAD


def test_incremental_writer_accepts_pieces_of_any_size(store, keys):
    data = os.urandom(5 * CHUNK + 123)
    with store.writer(dek_id=DEK_ID, dek=keys[DEK_ID]) as writer:
        pos = 0
        for step in [1, 4095, 4096, 9000, 7, 1, 10**6]:
            writer.write(data[pos : pos + step])
            pos += step
    assert writer.info.sha256_hex == hashlib.sha256(data).hexdigest()
    assert store.read_range(writer.info.blob_id, 0, len(data)) == data


def test_blob_ids_are_random_server_generated_hex(store, keys):
    ids = {put(store, keys, b"same bytes").blob_id for _ in range(5)}
    assert len(ids) == 5
    assert all(len(blob_id) == 32 and int(blob_id, 16) >= 0 for blob_id in ids)


class _PatternStream(io.RawIOBase):
    """`size` bytes of a repeating pattern, produced without allocating per read."""

    def __init__(self, size):
        self._left = size
        self._pattern = memoryview(os.urandom(65521))  # prime length: never chunk-aligned
        self._offset = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        count = min(len(buffer), self._left, len(self._pattern) - self._offset)
        buffer[:count] = self._pattern[self._offset : self._offset + count]
        self._offset = (self._offset + count) % len(self._pattern)
        self._left -= count
        return count


def test_streaming_write_of_50_mib_keeps_memory_bounded(backend, keys):
    store = BlobStore(backend, keys.__getitem__)  # default 1 MiB chunks
    source = _PatternStream(50 << 20)
    tracemalloc.start()
    try:
        info = store.write(source, dek_id=DEK_ID, dek=keys[DEK_ID])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == 50 << 20
    assert peak < 4 * fmt.DEFAULT_CHUNK_SIZE


# -- partial reads ----------------------------------------------------------------------


def test_range_read_across_a_boundary_decrypts_only_the_two_chunks(store, keys, decrypts):
    data = os.urandom(10 * CHUNK)
    info = put(store, keys, data)
    decrypts.clear()
    assert store.read_range(info.blob_id, 3 * CHUNK - 10, 20) == data[3 * CHUNK - 10 : 3 * CHUNK + 10]
    assert decrypts == [2, 3]


def test_range_read_inside_one_chunk_decrypts_one_chunk(store, keys, decrypts):
    data = os.urandom(10 * CHUNK)
    info = put(store, keys, data)
    decrypts.clear()
    assert store.read_range(info.blob_id, 7 * CHUNK + 5, 100) == data[7 * CHUNK + 5 : 7 * CHUNK + 105]
    assert decrypts == [7]


def test_reader_reuses_the_current_chunk_for_consecutive_reads(store, keys, decrypts):
    data = os.urandom(4 * CHUNK)
    info = put(store, keys, data)
    decrypts.clear()
    with store.open(info.blob_id) as reader:
        reader.seek(CHUNK + 1)
        parts = [reader.read(100) for _ in range(10)]
        assert reader.chunks_decrypted == 1
    assert b"".join(parts) == data[CHUNK + 1 : CHUNK + 1001]
    assert decrypts == [1]


def test_size_and_dek_id_need_no_decryption(store, keys, decrypts):
    info = put(store, keys, os.urandom(3 * CHUNK + 5))
    decrypts.clear()
    assert store.size(info.blob_id) == 3 * CHUNK + 5
    assert store.dek_id_of(info.blob_id) == DEK_ID
    assert decrypts == []


def test_reader_behaves_like_a_read_only_binary_file(store, keys):
    data = os.urandom(3 * CHUNK + 17)
    info = put(store, keys, data)
    with store.open(info.blob_id) as reader:
        assert isinstance(reader, io.BufferedIOBase)
        assert reader.readable() and reader.seekable() and not reader.writable()
        assert reader.seek(0, io.SEEK_END) == len(data)
        assert reader.read(10) == b""
        assert reader.seek(-20, io.SEEK_END) == len(data) - 20
        assert reader.read() == data[-20:]
        reader.seek(CHUNK - 3)
        assert reader.seek(5, io.SEEK_CUR) == CHUNK + 2
        buffer = bytearray(CHUNK)
        assert reader.readinto(buffer) == CHUNK
        assert bytes(buffer) == data[CHUNK + 2 : 2 * CHUNK + 2]
        assert reader.tell() == 2 * CHUNK + 2
        reader.seek(len(data) + 100)
        assert reader.read(1) == b""
        with pytest.raises(ValueError):
            reader.seek(-1)
        with pytest.raises(io.UnsupportedOperation):
            reader.write(b"x")
    with pytest.raises(ValueError):
        reader.read(1)


def test_pydicom_reads_dataset_and_pixels_from_the_reader(store, keys):
    original = pydicom.dcmread(CT_SMALL)
    with open(CT_SMALL, "rb") as source:
        info = store.write(source, dek_id=DEK_ID, dek=keys[DEK_ID])
    with store.open(info.blob_id) as reader:
        ds = pydicom.dcmread(reader)
        assert ds.PatientName == original.PatientName
        assert ds.SOPInstanceUID == original.SOPInstanceUID
        assert (ds.pixel_array == original.pixel_array).all()


def test_pydicom_header_read_decrypts_only_leading_chunks(store, keys):
    with open(CT_SMALL, "rb") as source:
        info = store.write(source, dek_id=DEK_ID, dek=keys[DEK_ID])
    with store.open(info.blob_id) as reader:
        ds = pydicom.dcmread(reader, stop_before_pixels=True)
        total = -(-reader.size // CHUNK)
        assert ds.Rows == 128
        assert reader.chunks_decrypted < total // 2


# -- nothing in plaintext on disk --------------------------------------------------------


def _runs(data: bytes, width: int = 64) -> set[bytes]:
    return {data[i : i + width] for i in range(len(data) - width + 1)}


def _assert_no_plaintext_under(root: Path, plaintext: bytes) -> None:
    runs = _runs(plaintext)
    files = [path for path in root.rglob("*") if path.is_file()]
    assert files
    for path in files:
        stored = path.read_bytes()
        assert b"DICM" not in stored
        assert not runs & _runs(stored), f"plaintext run found in {path}"


def test_no_plaintext_lands_on_disk(store, keys, backend):
    dicom = Path(CT_SMALL).read_bytes()
    put(store, keys, dicom)
    put(store, keys, os.urandom(2 * CHUNK))
    _assert_no_plaintext_under(backend.root, dicom)


def test_write_in_progress_keeps_only_ciphertext_on_disk(store, keys, backend):
    dicom = Path(CT_SMALL).read_bytes()
    with store.writer(dek_id=DEK_ID, dek=keys[DEK_ID]) as writer:
        writer.write(dicom)
        writer.write(b"\0" * CHUNK)  # push every DICOM byte out of the buffer
        _assert_no_plaintext_under(backend.root, dicom)


# -- tampering ----------------------------------------------------------------------------


def test_flipping_any_single_byte_is_detected(backend, keys):
    store = BlobStore(backend, keys.__getitem__, chunk_size=32)
    data = os.urandom(80)  # chunks of 32, 32, 16: header, nonces, ciphertext and tags
    info = put(store, keys, data)
    path = path_of(backend, info.blob_id)
    pristine = path.read_bytes()
    for position in range(len(pristine)):
        tampered = bytearray(pristine)
        tampered[position] ^= 0xFF
        path.write_bytes(tampered)
        with pytest.raises(IntegrityError):
            with store.open(info.blob_id) as reader:
                reader.read()
        result = store.verify(info.blob_id, info.sha256_hex)
        assert not result.ok, f"byte {position} flipped without detection"
    path.write_bytes(pristine)
    assert store.verify(info.blob_id, info.sha256_hex).ok


def test_header_relabelled_to_another_known_dek_is_detected(store, keys, backend):
    info = put(store, keys, os.urandom(CHUNK))
    patch_file(
        path_of(backend, info.blob_id),
        lambda data: data.replace(DEK_ID.encode(), OTHER_DEK_ID.encode(), 1),
    )
    assert store.dek_id_of(info.blob_id) == OTHER_DEK_ID
    assert_unreadable(store, info.blob_id)


def test_header_naming_an_unknown_dek_raises_key_not_found(store, keys, backend):
    info = put(store, keys, os.urandom(10))
    patch_file(
        path_of(backend, info.blob_id),
        lambda data: data.replace(DEK_ID.encode(), b"org-9/dek-1", 1),
    )
    assert_unreadable(store, info.blob_id, KeyNotFound)


def test_swapping_two_chunks_is_detected(store, keys, backend):
    info = put(store, keys, os.urandom(3 * CHUNK))

    def swap(data):
        first = data[HEADER : HEADER + RECORD]
        data[HEADER : HEADER + RECORD] = data[HEADER + RECORD : HEADER + 2 * RECORD]
        data[HEADER + RECORD : HEADER + 2 * RECORD] = first
        return data

    patch_file(path_of(backend, info.blob_id), swap)
    assert_unreadable(store, info.blob_id)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda data: data[:-1], id="last-byte"),
        pytest.param(lambda data: data[: HEADER + 2 * RECORD + 10], id="inside-last-chunk"),
        pytest.param(lambda data: data[: HEADER + 2 * RECORD], id="whole-last-chunk"),
        pytest.param(lambda data: data[: HEADER + RECORD], id="two-chunks"),
        pytest.param(lambda data: data[:HEADER], id="all-chunks"),
        pytest.param(lambda data: data[:10], id="inside-header"),
        pytest.param(lambda data: data + data[HEADER : HEADER + RECORD], id="chunk-appended"),
    ],
)
def test_truncated_or_extended_blob_is_detected(store, keys, backend, cut):
    info = put(store, keys, os.urandom(2 * CHUNK + 100))
    patch_file(path_of(backend, info.blob_id), cut)
    assert_unreadable(store, info.blob_id)


def test_read_at_reported_end_of_blob_cut_at_a_chunk_boundary_raises(store, keys, backend):
    data = os.urandom(2 * CHUNK + 100)
    info = put(store, keys, data)
    patch_file(path_of(backend, info.blob_id), lambda stored: stored[: HEADER + 2 * RECORD])
    reported = store.size(info.blob_id)
    assert reported == 2 * CHUNK  # unauthenticated, as documented ...
    assert store.read_range(info.blob_id, 0, CHUNK) == data[:CHUNK]  # authentic bytes
    with pytest.raises(IntegrityError):  # ... but reaching that end is not
        store.read_range(info.blob_id, reported, 10)
    with pytest.raises(IntegrityError):
        store.read_range(info.blob_id, CHUNK + 5, CHUNK)


def test_chunk_swapped_in_from_another_object_is_detected(store, keys, backend):
    first = put(store, keys, os.urandom(3 * CHUNK))
    second = put(store, keys, os.urandom(3 * CHUNK))
    donor = path_of(backend, second.blob_id).read_bytes()

    def transplant(data):
        data[HEADER + RECORD : HEADER + 2 * RECORD] = donor[HEADER + RECORD : HEADER + 2 * RECORD]
        return data

    patch_file(path_of(backend, first.blob_id), transplant)
    assert_unreadable(store, first.blob_id)


def test_whole_blob_stored_under_another_id_is_detected(store, keys, backend):
    first = put(store, keys, b"first object")
    second = put(store, keys, b"second object")
    path_of(backend, second.blob_id).write_bytes(path_of(backend, first.blob_id).read_bytes())
    assert_unreadable(store, second.blob_id)


def test_wrong_dek_is_detected(backend, keys):
    info = put(BlobStore(backend, keys.__getitem__, chunk_size=CHUNK), keys, os.urandom(100))
    wrong = BlobStore(backend, lambda dek_id: generate_dek(), chunk_size=CHUNK)
    assert_unreadable(wrong, info.blob_id)


def test_verify_reports_a_sha256_mismatch(store, keys):
    info = put(store, keys, b"content")
    result = store.verify(info.blob_id, hashlib.sha256(b"other").hexdigest())
    assert not result.ok
    assert result.sha256_hex == info.sha256_hex
    assert "SHA-256" in result.error


def test_verify_all_reports_every_blob_and_names_the_bad_one(store, keys, backend):
    good = put(store, keys, os.urandom(CHUNK + 1))
    bad = put(store, keys, os.urandom(CHUNK + 1))
    patch_file(path_of(backend, bad.blob_id), lambda data: data[:-1])
    results = {result.blob_id: result for result in store.verify_all()}
    assert results[good.blob_id].ok
    assert not results[bad.blob_id].ok
    assert "IntegrityError" in results[bad.blob_id].error


def test_missing_blob_raises_blob_not_found(store):
    with pytest.raises(BlobNotFound):
        store.open("0" * 32)
    assert not store.verify("0" * 32).ok


# -- writer lifecycle ----------------------------------------------------------------------


def test_writer_aborted_by_an_exception_leaves_no_file(store, keys, backend):
    with pytest.raises(RuntimeError):
        with store.writer(dek_id=DEK_ID, dek=keys[DEK_ID]) as writer:
            writer.write(os.urandom(3 * CHUNK))
            raise RuntimeError("upload interrupted")
    assert not store.exists(writer.blob_id)
    assert [path for path in backend.root.rglob("*") if path.is_file()] == []


def test_writer_with_unexpected_sha256_stores_nothing(store, keys, backend):
    writer = store.writer(dek_id=DEK_ID, dek=keys[DEK_ID])
    writer.write(b"payload")
    with pytest.raises(IntegrityError):
        writer.commit(expected_sha256=hashlib.sha256(b"other").hexdigest())
    assert [path for path in backend.root.rglob("*") if path.is_file()] == []


# -- re-encryption and DEK rotation -----------------------------------------------------------


def test_reencrypt_keeps_content_and_sha256_under_the_new_dek(store, keys):
    data = os.urandom(2 * CHUNK + 9)
    old = put(store, keys, data)
    new = store.reencrypt(old.blob_id, new_dek_id=OTHER_DEK_ID, new_dek=keys[OTHER_DEK_ID])
    assert new.blob_id != old.blob_id
    assert (new.size, new.sha256_hex) == (old.size, old.sha256_hex)
    assert store.dek_id_of(new.blob_id) == OTHER_DEK_ID
    assert store.read_range(new.blob_id, 0, len(data)) == data
    assert store.verify(old.blob_id, old.sha256_hex).ok  # the original is untouched


def test_reencrypt_refuses_a_blob_with_an_unexpected_sha256(store, keys, backend):
    old = put(store, keys, b"payload")
    with pytest.raises(IntegrityError):
        store.reencrypt(
            old.blob_id,
            new_dek_id=OTHER_DEK_ID,
            new_dek=keys[OTHER_DEK_ID],
            expected_sha256=hashlib.sha256(b"other").hexdigest(),
        )
    assert list(store.iter_blob_ids()) == [old.blob_id]


def test_rotate_dek_moves_every_blob_and_resumes_after_interruption(store, keys):
    contents = [os.urandom(n) for n in (0, CHUNK, 3 * CHUNK + 1)]
    references = {index: put(store, keys, data).blob_id for index, data in enumerate(contents)}
    new_dek_id, new_dek = "org-1/dek-2", generate_dek()
    keys[new_dek_id] = new_dek

    def swap(old_id, info):
        if info.size == CHUNK and not swap.failed:  # the "process" dies on the second blob
            swap.failed = True
            raise KeyboardInterrupt
        index = next(i for i, blob_id in references.items() if blob_id == old_id)
        references[index] = info.blob_id

    swap.failed = False
    with pytest.raises(KeyboardInterrupt):
        rotate_dek(store, list(references.values()), new_dek_id=new_dek_id, new_dek=new_dek, swap=swap)
    assert store.dek_id_of(references[0]) == new_dek_id
    assert store.dek_id_of(references[1]) == DEK_ID

    report = rotate_dek(store, list(references.values()), new_dek_id=new_dek_id, new_dek=new_dek, swap=swap)
    assert (report.moved, report.skipped) == (2, 1)
    assert sorted(store.iter_blob_ids()) == sorted(references.values())
    for index, data in enumerate(contents):
        assert store.dek_id_of(references[index]) == new_dek_id
        assert b"".join(store.iter_chunks(references[index])) == data
