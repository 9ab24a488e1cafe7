"""Encryption at rest: no plaintext under the data dir, tampering detected, rotations keep data readable."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command

from archive import synthetic
from archive.blobstore import IntegrityError
from archive.blobstore import format as fmt
from archive.blobstore import store as store_module
from archive.models import DataKey, Instance
from archive.services import ingest_many
from archive.storage import forget_cached_keys, get_store, key_provider

pytestmark = pytest.mark.django_db

PATIENT = synthetic.SyntheticPatient(name="ATREST^SECRETNAME", patient_id="AT-REST-77")
CHUNK = 1024  # several chunks per object, so chunks can be swapped and cut


@pytest.fixture(autouse=True)
def small_chunks(settings):
    settings.LIGHTBOX_BLOB_CHUNK_BYTES = CHUNK
    forget_cached_keys()


@pytest.fixture
def originals(org) -> list[bytes]:
    data = [synthetic.to_bytes(ds) for ds in synthetic.ct_study(slices=3, size=48, patient=PATIENT)]
    results = list(ingest_many(((i, io.BytesIO(d)) for i, d in enumerate(data)), organization=org, source="test"))
    assert all(r.status == "stored" for _, r in results)
    return data


def run(command: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        quiet = ("--no-progress",) if command in ("import_dicom", "rotate_dek", "verify_store") else ()
        call_command(command, *args, *quiet, stdout=out, stderr=io.StringIO())
        return 0, out.getvalue()
    except SystemExit as exc:
        return exc.code, out.getvalue()


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def readable_everything() -> dict[str, str]:
    out = {}
    for instance in Instance.objects.all():
        with get_store().open(instance.blob_id) as reader:
            data = reader.read()
        assert hashlib.sha256(data).hexdigest() == instance.sha256_stored
        out[instance.sop_instance_uid] = instance.sha256_stored
    return out


def blob_path(instance: Instance) -> Path:
    return get_store().backend._path(instance.blob_id)


def test_no_file_under_the_data_dir_holds_plaintext(settings, originals, tmp_path):
    # Also through the import command reading a ZIP: nothing is extracted anywhere.
    archive = tmp_path / "more.zip"
    more = synthetic.to_bytes(synthetic.ct_study(slices=4, size=48, patient=PATIENT)[3])
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.dcm", more)
    assert run("import_dicom", str(archive))[0] == 0

    windows = set()
    for data in [*originals, more]:
        for i in range(len(data) - 63):
            window = data[i : i + 64]
            if window.count(window[:1]) != 64:  # runs of one byte value (padding) prove nothing
                windows.add(window)
    stored = files_under(Path(settings.DATA_DIR))
    assert len([p for p in stored if "blobs" in p.parts]) == 4
    for path in stored:
        content = path.read_bytes()
        assert b"DICM" not in content, path
        assert b"SECRETNAME" not in content and b"AT-REST-77" not in content, path
        assert not any(content[i : i + 64] in windows for i in range(len(content) - 63)), path


def _flip(path: Path, layout) -> None:
    data = bytearray(path.read_bytes())
    data[layout.header_size + layout.record_size + 40] ^= 0x01  # one bit inside chunk 1
    path.write_bytes(bytes(data))


def _swap(path: Path, layout) -> None:
    data = bytearray(path.read_bytes())
    a, b = layout.record_span(0), layout.record_span(1)
    first, second = bytes(data[a[0] : a[0] + a[1]]), bytes(data[b[0] : b[0] + b[1]])
    data[a[0] : a[0] + a[1]], data[b[0] : b[0] + b[1]] = second, first
    path.write_bytes(bytes(data))


def _truncate_at_chunk(path: Path, layout) -> None:
    offset, _ = layout.record_span(layout.chunk_count - 1)
    path.write_bytes(path.read_bytes()[:offset])  # drop the last chunk: still a whole number of records


def _truncate_inside(path: Path, layout) -> None:
    path.write_bytes(path.read_bytes()[:-7])


TAMPERING = {"flip_one_byte": _flip, "swap_two_chunks": _swap, "drop_last_chunk": _truncate_at_chunk,
             "cut_inside_a_chunk": _truncate_inside}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampering_with_a_blob_fails_reading_and_verify_store(originals, how):
    victim = Instance.objects.order_by("pk")[1]
    path = blob_path(victim)
    with path.open("rb") as fp:
        header = fmt.read_header(fp)
        layout = fmt.layout_of(header, path.stat().st_size)
    assert layout.chunk_count >= 3
    TAMPERING[how](path, layout)

    with pytest.raises(IntegrityError):
        with get_store().open(victim.blob_id) as reader:
            reader.read()
    code, out = run("verify_store")
    assert code == 1
    assert f"instance {victim.pk} ({victim.sop_instance_uid})" in out and "1 problems" in out


def test_swapping_whole_blobs_is_detected(originals):
    first, second = Instance.objects.order_by("pk")[:2]
    a, b = blob_path(first), blob_path(second)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    code, out = run("verify_store")
    assert code == 1 and "2 problems" in out


def test_verify_store_passes_on_an_intact_store(originals):
    code, out = run("verify_store")
    assert code == 0 and "checked 3 instances" in out and "0 problems" in out


def test_kek_rotation_keeps_every_object_readable(originals):
    before = readable_everything()
    old_kek = key_provider().current_kek_id()
    code, out = run("rotate_kek")
    assert code == 0
    new_kek = key_provider().current_kek_id()
    assert new_kek != old_kek and old_kek not in key_provider().kek_ids()
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {new_kek}
    forget_cached_keys()  # a fresh process: every DEK must unwrap with the new KEK
    assert readable_everything() == before


def test_dek_rotation_keeps_every_object_readable(org, originals):
    before = readable_everything()
    old = DataKey.objects.get(organization=org)
    assert run("rotate_dek", "--org", org.slug)[0] == 0
    new = DataKey.objects.get(organization=org, state="active")
    assert DataKey.objects.get(pk=old.pk).state == "retired"
    assert {get_store().dek_id_of(i.blob_id) for i in Instance.objects.all()} == {new.key_id}
    assert set(Instance.objects.values_list("data_key", flat=True)) == {new.pk}
    forget_cached_keys()
    assert readable_everything() == before
    assert sorted(get_store().iter_blob_ids()) == sorted(Instance.objects.values_list("blob_id", flat=True))


def test_an_interrupted_dek_rotation_resumes(org, originals, monkeypatch):
    before = readable_everything()
    old = DataKey.objects.get(organization=org)
    real = store_module.BlobStore.reencrypt
    calls = []

    def dies_on_the_second_blob(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the operator's Ctrl-C, or a killed process
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store_module.BlobStore, "reencrypt", dies_on_the_second_blob)
    with pytest.raises(KeyboardInterrupt):
        run("rotate_dek", "--org", org.slug)
    monkeypatch.undo()
    new = DataKey.objects.get(organization=org, state="active")
    assert DataKey.objects.get(pk=old.pk).state == "retiring"
    assert Instance.objects.filter(data_key=new).count() == 1
    assert readable_everything() == before

    code, out = run("rotate_dek", "--org", org.slug)
    assert code == 0 and "resumed" in out and "2 blobs re-encrypted" in out
    assert DataKey.objects.get(pk=old.pk).state == "retired"
    assert DataKey.objects.get(organization=org, state="active").pk == new.pk
    forget_cached_keys()
    assert readable_everything() == before
    assert sorted(get_store().iter_blob_ids()) == sorted(Instance.objects.values_list("blob_id", flat=True))
