"""`manage.py import_dicom`: folders, ZIP files, DICOMDIRs and bad files."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from pydicom.fileset import FileSet

from archive import synthetic
from archive.models import Instance, Study
from audit.models import AuditEvent

from .faults import fail_blob_writes

pytestmark = pytest.mark.django_db


def patient(n: int) -> synthetic.SyntheticPatient:
    return synthetic.SyntheticPatient(name=f"IMPORT^PERSON{n}", patient_id=f"IMP-{n}")


def run(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("import_dicom", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out.getvalue()


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder with loose files, a ZIP, a DICOMDIR file set, a bad file and a hidden file."""
    root = tmp_path / "incoming"
    loose = synthetic.ct_study(slices=3, size=32, patient=patient(1))
    synthetic.write_study(loose, directory=root / "loose" / "deeper")

    zipped = synthetic.ct_study(slices=2, size=32, patient=patient(2))
    with zipfile.ZipFile(root / "study.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i, ds in enumerate(zipped):
            zf.writestr(f"series/IM{i}.dcm", synthetic.to_bytes(ds))
        zf.writestr("DICOMDIR", b"not used")

    file_set = FileSet()
    for ds in synthetic.ct_study(slices=2, size=32, patient=patient(3)):
        file_set.add(ds)
    file_set.write(root / "cd")

    (root / "notes.txt").write_text("scanned on the old PACS")
    (root / ".DS_Store").write_bytes(b"\0" * 10)
    return root


def test_imports_a_folder_with_a_zip_and_a_dicomdir_and_reports_the_bad_file(org, folder):
    code, out = run(str(folder))
    assert code == 1
    assert Instance.objects.count() == 7 and Study.objects.count() == 3
    assert "stored      7" in out and "rejected    1" in out
    assert f"{folder / 'notes.txt'}: not a DICOM Part 10 file" in out
    assert ".DS_Store" not in out
    event = AuditEvent.objects.get(action="archive.import")
    assert event.details["stored"] == 7 and event.details["rejected"] == 1
    assert "IMPORT" not in str(event.details) and "PERSON" not in str(event.details)


def test_a_second_import_reports_duplicates(org, folder):
    (folder / "notes.txt").unlink()
    assert run(str(folder))[0] == 0
    code, out = run(str(folder), "--organization", org.slug)
    assert code == 0
    assert "duplicates  7" in out and "stored      0" in out
    assert Instance.objects.count() == 7


def test_a_dicomdir_named_directly_imports_its_files_once(org, folder):
    code, out = run(str(folder / "cd" / "DICOMDIR"), str(folder / "cd"))
    assert code == 0
    assert "stored      2" in out and "duplicates  0" in out


def test_a_zip_member_with_a_bad_crc_is_rejected_and_the_rest_imported(org, tmp_path):
    datasets = synthetic.ct_study(slices=2, size=32, patient=patient(4))
    archive = tmp_path / "broken.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, ds in enumerate(datasets):
            zf.writestr(f"IM{i}.dcm", synthetic.to_bytes(ds))
    data = bytearray(archive.read_bytes())
    data[1000] ^= 0xFF  # inside the first member's pixel data
    archive.write_bytes(bytes(data))
    code, out = run(str(archive))
    assert code == 1
    assert f"{archive}:IM0.dcm: could not be read (BadZipFile)" in out
    assert Instance.objects.count() == 1


def test_missing_paths_and_conflicts_are_reported(org, tmp_path):
    ds = synthetic.ct_study(slices=1, size=32, patient=patient(5))[0]
    (tmp_path / "a.dcm").write_bytes(synthetic.to_bytes(ds))
    ds.SeriesDescription = "CHANGED"
    (tmp_path / "b.dcm").write_bytes(synthetic.to_bytes(ds))
    code, out = run(str(tmp_path / "a.dcm"), str(tmp_path / "b.dcm"), str(tmp_path / "nowhere"))
    assert code == 1
    assert "conflicts   1" in out and f"{tmp_path / 'b.dcm'}: an instance with this SOPInstanceUID" in out
    assert f"{tmp_path / 'nowhere'}: no such file or folder" in out


def test_the_organisation_must_be_named_when_there_are_several(org, other_org, tmp_path):
    with pytest.raises(CommandError, match="--organization"):
        call_command("import_dicom", str(tmp_path), stdout=io.StringIO())
    with pytest.raises(CommandError, match="no organisation"):
        call_command("import_dicom", str(tmp_path), "--organization", "nope", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_worker_processes_import_the_same_as_one(org, tmp_path):
    datasets = synthetic.ct_study(slices=40, size=16, patient=patient(6))
    synthetic.write_study(datasets, directory=tmp_path / "many")
    (tmp_path / "many" / "zz-bad.dcm").write_bytes(b"garbage")
    code, out = run(str(tmp_path / "many"), "--jobs", "2")
    assert code == 1
    assert "stored      40" in out and f"{tmp_path / 'many' / 'zz-bad.dcm'}: not a DICOM" in out
    assert Instance.objects.count() == 40 and Study.objects.get().number_of_instances == 40


def test_a_disk_that_fills_up_mid_import_reports_the_files_not_stored(org, tmp_path, monkeypatch):
    import errno

    datasets = synthetic.ct_study(slices=3, size=16, patient=patient(7))
    for number, ds in enumerate(datasets):
        (tmp_path / f"{number}.dcm").write_bytes(synthetic.to_bytes(ds))
    fail_blob_writes(monkeypatch, first=3, error=errno.ENOSPC, every_later=True)  # room for the first file only
    code, out = run(str(tmp_path), "--jobs", "1")
    assert code == 1
    assert "stored      1" in out and "not stored  2" in out
    assert f"{tmp_path / '1.dcm'}: not stored: the server's storage is full" in out
    assert Instance.objects.count() == 1
    event = AuditEvent.objects.get(action="archive.import")
    assert event.details["not_stored"] == 2
