"""Key management: KEK and DEK rotation states, audit events and who may rotate."""

from __future__ import annotations

import io

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from accounts.models import Role
from archive import synthetic
from archive.blobstore import IntegrityError
from archive.keys import may_rotate_keys, rotate_dek, rotate_kek
from archive.models import DataKey, Instance
from archive.services import ingest_many
from archive.storage import forget_cached_keys, get_store, key_provider, resolve_dek
from audit.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db


def store_study(org, slices: int = 2, seed: int = 0) -> None:
    data = [synthetic.to_bytes(ds) for ds in synthetic.ct_study(slices=slices, size=32, seed=seed)]
    results = list(ingest_many(((i, io.BytesIO(d)) for i, d in enumerate(data)), organization=org, source="test"))
    assert all(r.status == "stored" for _, r in results)


def actions() -> list[str]:
    return list(AuditEvent.objects.filter(action__startswith="key.").order_by("sequence").values_list("action", flat=True))


def test_kek_rotation_rewraps_every_dek_and_audits_it(org, other_org):
    store_study(org)
    store_study(other_org, seed=1)
    old = key_provider().current_kek_id()
    out = io.StringIO()
    call_command("rotate_kek", stdout=out)
    new = key_provider().current_kek_id()
    assert f"current KEK: {new}; 2 data keys re-wrapped" in out.getvalue()
    assert actions()[-2:] == ["key.kek_rotated", "key.kek_retired"]
    rotated = AuditEvent.objects.get(action="key.kek_rotated")
    assert rotated.details["rewrapped"] == 2 and rotated.details["previous_kek_ids"] == [old]
    assert AuditEvent.objects.get(action="key.kek_retired").object_id == old


def test_kek_rotation_can_keep_the_old_kek_and_resume_without_a_new_one(org):
    store_study(org)
    old = key_provider().current_kek_id()
    report = rotate_kek(retire_old=False)
    assert old in key_provider().kek_ids() and report.retired == []
    again = rotate_kek(resume=True)
    assert again.new_kek_id == report.new_kek_id and again.rewrapped == 0
    assert again.retired == [old]  # nothing uses it any more


def test_dek_rotation_moves_only_that_organisations_blobs(org, other_org):
    store_study(org)
    store_study(other_org, seed=1)
    theirs = set(Instance.objects.filter(organization=other_org).values_list("blob_id", flat=True))
    report = rotate_dek(organization=org)
    assert report.moved == 2 and not report.resumed and report.remaining == 0
    assert set(Instance.objects.filter(organization=other_org).values_list("blob_id", flat=True)) == theirs
    assert list(DataKey.objects.filter(organization=other_org).values_list("state", flat=True)) == ["active"]
    assert sorted(DataKey.objects.filter(organization=org).values_list("state", flat=True)) == ["active", "retired"]
    assert actions()[-4:] == ["key.dek_created", "key.dek_rotation_started", "key.dek_retired", "key.dek_rotated"]


def test_dek_rotation_refuses_a_blob_whose_plaintext_differs_from_the_recorded_hash(org):
    store_study(org, slices=1)
    instance = Instance.objects.get()
    Instance.objects.filter(pk=instance.pk).update(sha256_stored="0" * 64)
    with pytest.raises(IntegrityError):
        rotate_dek(organization=org)
    # Nothing is lost: the row still points at the old blob, and the new copy is gone.
    assert Instance.objects.get().blob_id == instance.blob_id
    assert list(get_store().iter_blob_ids()) == [instance.blob_id]
    forget_cached_keys()
    with get_store().open(instance.blob_id) as reader:
        assert reader.read(132)[128:] == b"DICM"


def test_dek_rotation_of_an_organisation_without_data(org):
    report = rotate_dek(organization=org)
    assert report.moved == 0 and DataKey.objects.get(organization=org).state == "active"


def test_rotate_dek_names_an_existing_organisation(db):
    with pytest.raises(CommandError, match="no organisation"):
        call_command("rotate_dek", "--org", "nowhere", stdout=io.StringIO())


def test_only_key_custodians_may_rotate_keys(org):
    custodian = factories.make_user(organization=org, role=Role.ADMIN, is_key_custodian=True)
    staff = factories.make_user(organization=org, role=Role.STAFF, is_staff=True)
    assert may_rotate_keys(custodian, org) and not may_rotate_keys(staff, org)
    with pytest.raises(PermissionDenied):
        rotate_dek(organization=org, actor=staff)
    with pytest.raises(PermissionDenied):
        rotate_kek(actor=staff)
    assert not DataKey.objects.exists()
    rotate_dek(organization=org, actor=custodian)
    assert AuditEvent.objects.get(action="key.dek_rotation_started").actor_id == str(custodian.pk)


def test_sweep_orphans_command_lists_and_deletes(org):
    store_study(org, slices=1)
    key_id = DataKey.objects.get().key_id
    orphan = get_store().write(b"stray", dek_id=key_id, dek=resolve_dek(key_id))
    out = io.StringIO()
    call_command("sweep_orphans", "--grace", "0", "--dry-run", stdout=out)
    assert f"would delete {orphan.blob_id}" in out.getvalue() and get_store().exists(orphan.blob_id)
    call_command("sweep_orphans", "--grace", "0", stdout=io.StringIO())
    assert not get_store().exists(orphan.blob_id)
    assert Instance.objects.count() == 1 and get_store().exists(Instance.objects.get().blob_id)
    assert AuditEvent.objects.filter(action="archive.orphans_swept").count() == 2
