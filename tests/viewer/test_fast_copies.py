"""Derived fast-decode copies: JPEG 2000 instances get an encrypted RLE copy that rendering reads,
beside the untouched original; the store's maintenance commands know about the copies."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, RLELossless

from archive import synthetic
from archive.models import DataKey, DerivedCopy, Instance
from archive.services import ingest, sweep_orphans, verify_store
from archive.storage import get_store
from viewer.fast_copies import derive_pending, pending
from viewer.pool import RenderJob
from viewer.render import RenderParams
from viewer.rendering import get_pool, original_source_for, source_for

pytestmark = pytest.mark.django_db


def _ingest(org, data: bytes) -> Instance:
    result = ingest(stream=io.BytesIO(data), organization=org, source="test")
    assert result.ok, result.reason
    return Instance.objects.get(sop_instance_uid=result.sop_instance_uid)


@pytest.fixture
def j2k_ct(org):
    ds = synthetic.ct_study(slices=1, size=64, seed=7)[0]
    return _ingest(org, synthetic.to_bytes(synthetic.compress(ds, transfer_syntax=JPEG2000Lossless)))


@pytest.fixture
def lossy_j2k(org):
    return _ingest(org, Path(get_testdata_file("JPEG2000.dcm")).read_bytes())


@pytest.fixture
def rgb_j2k(org):
    return _ingest(org, Path(get_testdata_file("GDCMJ2K_TextGBR.dcm")).read_bytes())


def _decoded(blob_id: str) -> np.ndarray:
    ds = dcmread(io.BytesIO(get_store().open(blob_id).read()))
    return ds, ds.pixel_array


def _render(source) -> bytes:
    return get_pool().submit(RenderJob(source, RenderParams(format="png"))).result().data


def test_copy_decodes_to_the_same_pixels_and_the_original_is_untouched(j2k_ct, lossy_j2k, rgb_j2k, org):
    originals = {i.pk: (i.blob_id, i.sha256_stored) for i in (j2k_ct, lossy_j2k, rgb_j2k)}
    before = {i.pk: _render(source_for(i)) for i in (j2k_ct, lossy_j2k, rgb_j2k)}
    report = derive_pending()
    assert report.created == 3 and report.failed == 0
    for instance in (j2k_ct, lossy_j2k, rgb_j2k):
        instance.refresh_from_db()
        assert (instance.blob_id, instance.sha256_stored) == originals[instance.pk]
        copy = instance.derived_copy
        assert copy.transfer_syntax_uid == RLELossless and copy.data_key.organization == org
        copy_ds, copy_pixels = _decoded(copy.blob_id)
        original_ds, original_pixels = _decoded(instance.blob_id)
        assert copy_ds.file_meta.TransferSyntaxUID == RLELossless
        assert copy_ds.SOPInstanceUID == original_ds.SOPInstanceUID
        np.testing.assert_array_equal(copy_pixels, original_pixels)
        # Rendering now reads the copy, and draws exactly what it drew from the original.
        assert source_for(instance).key == copy.blob_id != original_source_for(instance).key
        assert _render(source_for(instance)) == before[instance.pk]
        # Encrypted at rest like everything else.
        raw = (get_store().backend.root / copy.blob_id[:2] / copy.blob_id[2:4] / copy.blob_id).read_bytes()
        assert len(raw) >= copy.size and b"DICM" not in raw
    assert not pending().exists()


def test_other_syntaxes_get_no_copy(org):
    ds = synthetic.ct_study(slices=1, size=32, seed=1)[0]
    instance = _ingest(org, synthetic.to_bytes(ds))
    assert not pending().filter(pk=instance.pk).exists()
    assert derive_pending().created == 0
    assert source_for(instance).key == instance.blob_id


def test_a_corrupt_codestream_is_recorded_once_and_the_original_kept(org):
    ds = synthetic.compress(synthetic.ct_study(slices=1, size=64, seed=3)[0], transfer_syntax=JPEG2000Lossless)
    data = bytearray(synthetic.to_bytes(ds))
    start = data.rfind(b"\xff\x4f\xff\x51")  # J2K SOC + SIZ markers
    data[start + 60 : start + 400] = b"\x00" * 340
    instance = _ingest(org, bytes(data))
    sha = instance.sha256_stored
    report = derive_pending()
    assert report.created == 0 and report.failed == 1
    copy = DerivedCopy.objects.get(instance=instance)
    assert copy.blob_id == "" and copy.error
    assert derive_pending().failed == 0  # not tried again
    instance.refresh_from_db()
    assert instance.sha256_stored == sha and get_store().verify(instance.blob_id, sha).ok
    assert source_for(instance).key == instance.blob_id


def test_verify_store_checks_copies_and_sweep_keeps_them(j2k_ct):
    derive_pending()
    copy = DerivedCopy.objects.get()
    report = verify_store()
    assert report.checked == 1 and report.checked_copies == 1 and not report.problems
    assert copy.blob_id not in sweep_orphans(grace_seconds=0).orphans
    assert get_store().exists(copy.blob_id)
    # A damaged copy is reported as such.
    DerivedCopy.objects.filter(pk=copy.pk).update(sha256_stored=hashlib.sha256(b"other").hexdigest())
    problems = verify_store().problems
    assert len(problems) == 1 and problems[0].error.startswith("derived copy")


def test_dek_rotation_drops_old_copies_retires_the_key_and_copies_come_back(j2k_ct, org):
    derive_pending()
    old_copy = DerivedCopy.objects.get()
    old_key = old_copy.data_key
    call_command("rotate_dek", org=org.slug, no_progress=True, stdout=io.StringIO(), stderr=io.StringIO())
    assert not DerivedCopy.objects.exists() and not get_store().exists(old_copy.blob_id)
    old_key.refresh_from_db()
    assert old_key.state == DataKey.State.RETIRED
    assert derive_pending().created == 1
    assert DerivedCopy.objects.get().data_key.state == DataKey.State.ACTIVE


def test_command_backfills(j2k_ct, lossy_j2k):
    out = io.StringIO()
    call_command("derive_fast_copies", stdout=out)
    assert "derived 2 fast-decode copies" in out.getvalue()
    assert DerivedCopy.objects.exclude(blob_id="").count() == 2
