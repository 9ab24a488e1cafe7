"""Key rotation, Django side: the DataKey records, transactions and audit events around
`archive.blobstore.rotation` (which does the cryptography and knows nothing of the database).

- `rotate_kek`: a new KEK becomes current, every DEK is re-wrapped under it, and the old KEKs
  are retired only once no DataKey row names them.
- `rotate_dek`: an organisation gets a new active DEK, the old one becomes RETIRING, each of
  its blobs is re-encrypted under the new DEK (one blob, one transaction), and the old DEK is
  RETIRED when no instance uses it. Interrupted, it is resumed by running it again.

Every key event is audited. Operators run these through management commands; a web UI must
check `may_rotate_keys` first (key custodians only, a duty separate from every other role).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied
from django.db import transaction

from accounts.policy import Action, can
from archive.blobstore import BlobInfo, IntegrityError, WrappedKey
from archive.blobstore import rotation as blob_rotation
from archive.models import DataKey, DerivedCopy, Instance
from archive.storage import create_data_key, get_store, key_provider, resolve_dek
from audit.models import ActorType
from audit.services import record

logger = logging.getLogger("lightbox.archive.keys")

# A rotation sweeps again for instances written under the old DEK while it ran; this many
# sweeps without finishing means writers still use the old key, so stop and let a re-run finish.
MAX_DEK_PASSES = 5
_ID_BATCH = 500


def may_rotate_keys(user, organization=None) -> bool:
    """Whether `user` may rotate keys (of `organization`, or the KEK when None)."""
    return can(user, Action.KEYS_ROTATE, organization).allowed


def _check_actor(actor, organization=None) -> None:
    if actor is not None and getattr(actor, "is_authenticated", False) and not may_rotate_keys(actor, organization):
        # SECURITY: only key custodians rotate keys; the commands pass actor=None (an operator).
        raise PermissionDenied("only a key custodian may rotate keys")


def _audit(action: str, *, actor, organization=None, object_id: str = "", details: dict | None = None) -> None:
    record(
        action=action,
        actor=actor if actor is not None else "manage.py",
        actor_type=None if actor is not None else ActorType.SYSTEM,
        organization=organization,
        object_type="key",
        object_id=object_id,
        details=details or {},
    )


# -- KEK ----------------------------------------------------------------------------------------


@dataclass
class KekReport:
    new_kek_id: str
    rewrapped: int = 0
    retired: list[str] = field(default_factory=list)


def _wrapped_deks(queryset) -> Iterator[tuple[tuple[int, str], WrappedKey]]:
    for pk, kek_id, wrapped in queryset.order_by("pk").values_list("pk", "kek_id", "wrapped"):
        yield (pk, kek_id), WrappedKey(kek_id=kek_id, blob=bytes(wrapped))


def _save_wrapped(key: tuple[int, str], new: WrappedKey) -> None:
    pk, old_kek_id = key
    # Compare-and-set on the old KEK id: a concurrent rotation that got there first wins.
    DataKey.objects.filter(pk=pk, kek_id=old_kek_id).update(kek_id=new.kek_id, wrapped=new.blob)


def rotate_kek(*, actor=None, resume: bool = False, retire_old: bool = True) -> KekReport:
    """Make a new KEK current, re-wrap every DEK under it, then retire KEKs no DEK uses.

    With `resume=True` no new KEK is made: DEKs still under an older one are re-wrapped under
    the current KEK (finishing an interrupted rotation). Old KEKs stay until every DataKey row
    has been re-wrapped and saved, so an interruption never loses a key.
    """
    _check_actor(actor)
    provider = key_provider()
    done = blob_rotation.rotate_kek(provider, _wrapped_deks(DataKey.objects.all()), _save_wrapped, new_kek=not resume)
    report = KekReport(new_kek_id=done.new_kek_id, rewrapped=done.rewrapped)
    old_ids = set(done.old_kek_ids)
    # A DEK created just before the new KEK became current may have been saved after our pass.
    while DataKey.objects.exclude(kek_id=report.new_kek_id).exists():
        more = blob_rotation.rotate_kek(provider, _wrapped_deks(DataKey.objects.exclude(kek_id=report.new_kek_id)),
                                        _save_wrapped, new_kek=False)
        report.rewrapped += more.rewrapped
        old_ids |= more.old_kek_ids
    _audit("key.kek_rotated", actor=actor, object_id=report.new_kek_id,
           details={"rewrapped": report.rewrapped, "previous_kek_ids": sorted(old_ids), "resumed": resume})
    if retire_old:
        in_use = set(DataKey.objects.values_list("kek_id", flat=True)) | {report.new_kek_id}
        known = set(provider.kek_ids()) if hasattr(provider, "kek_ids") else set()
        for kek_id in sorted((old_ids | known) - in_use):
            provider.retire(kek_id)
            report.retired.append(kek_id)
            _audit("key.kek_retired", actor=actor, object_id=kek_id)
    return report


# -- DEK ----------------------------------------------------------------------------------------


@dataclass
class DekReport:
    new_key_id: str
    resumed: bool = False
    moved: int = 0
    skipped: int = 0
    retired: list[str] = field(default_factory=list)
    remaining: int = 0  # instances still under a retiring DEK (run again to finish)
    copies_dropped: int = 0  # derived fast-decode copies under old keys (derived again in the background)


def _start_or_resume(organization, actor) -> tuple[DataKey, bool]:
    """Return (the DEK to move to, whether an earlier rotation is being resumed)."""
    with transaction.atomic():
        keys = list(DataKey.objects.select_for_update().filter(organization=organization).order_by("pk"))
        active = next((k for k in keys if k.state == DataKey.State.ACTIVE), None)
        retiring = [k for k in keys if k.state == DataKey.State.RETIRING]
        if retiring and active is not None:
            _audit("key.dek_rotation_resumed", actor=actor, organization=organization, object_id=active.key_id,
                   details={"retiring": [k.key_id for k in retiring]})
            return active, True
        if active is not None:
            DataKey.objects.filter(pk=active.pk).update(state=DataKey.State.RETIRING)
        target, _ = create_data_key(organization)
        _audit("key.dek_rotation_started", actor=actor, organization=organization, object_id=target.key_id,
               details={"previous": active.key_id if active is not None else None})
        return target, False


def _blob_ids_off(organization, target: DataKey) -> Iterator[str]:
    """Blob ids of the organisation's instances not yet under `target`, in primary-key order."""
    last = 0
    while True:
        rows = list(
            Instance.objects.filter(organization=organization, pk__gt=last)
            .exclude(data_key=target)
            .order_by("pk")
            .values_list("pk", "blob_id")[:_ID_BATCH]
        )
        if not rows:
            return
        for pk, blob_id in rows:
            last = pk
            yield blob_id


def rotate_dek(*, organization, actor=None, progress: Callable[[], None] | None = None) -> DekReport:
    """Give `organization` a new DEK and re-encrypt its blobs under it; resumable.

    Each blob is copied under the new DEK, its instance row repointed in one transaction (the
    plaintext SHA-256 must equal the one recorded at ingest), then the old blob deleted.
    Interrupted, a second run resumes with the same new DEK. Old DEKs become RETIRED once no
    instance uses them.
    """
    _check_actor(actor, organization)
    target, resumed = _start_or_resume(organization, actor)
    report = DekReport(new_key_id=target.key_id, resumed=resumed)
    store = get_store()
    new_dek = resolve_dek(target.key_id)

    def swap(old_blob_id: str, info: BlobInfo) -> None:
        with transaction.atomic():
            row = (Instance.objects.select_for_update().filter(organization=organization, blob_id=old_blob_id)
                   .only("pk", "sha256_stored").first())
            if row is not None:
                if row.sha256_stored != info.sha256_hex:
                    raise IntegrityError(f"instance {row.pk}: re-encrypted plaintext differs from the hash stored at ingest")
                Instance.objects.filter(pk=row.pk).update(blob_id=info.blob_id, data_key=target)
            # No row: the instance went away meanwhile; its old blob is deleted and the new one
            # is left unreferenced for sweep_orphans.
        if progress is not None:
            progress()

    for _ in range(MAX_DEK_PASSES):
        done = blob_rotation.rotate_dek(store, _blob_ids_off(organization, target), new_dek_id=target.key_id,
                                        new_dek=new_dek, swap=swap)
        report.moved += done.moved
        report.skipped += done.skipped
        if done.skipped:
            _adopt_already_moved(organization, target)
        if not Instance.objects.filter(organization=organization).exclude(data_key=target).exists():
            break
    report.remaining = Instance.objects.filter(organization=organization).exclude(data_key=target).count()
    report.copies_dropped = _drop_derived_copies_off(organization, target)
    for old in DataKey.objects.filter(organization=organization, state=DataKey.State.RETIRING):
        if not Instance.objects.filter(data_key=old).exists() and not DerivedCopy.objects.filter(data_key=old).exists():
            DataKey.objects.filter(pk=old.pk).update(state=DataKey.State.RETIRED)
            report.retired.append(old.key_id)
            _audit("key.dek_retired", actor=actor, organization=organization, object_id=old.key_id)
    _audit("key.dek_rotated", actor=actor, organization=organization, object_id=target.key_id,
           details={"moved": report.moved, "skipped": report.skipped, "resumed": resumed,
                    "derived_copies_dropped": report.copies_dropped,
                    "retired": report.retired, "remaining": report.remaining})
    return report


def _drop_derived_copies_off(organization, target: DataKey) -> int:
    """Delete derived fast-decode copies not under `target`: they are caches of the originals,
    so the background job derives them again under the new key instead of re-encrypting them."""
    store = get_store()
    dropped = 0
    for copy in DerivedCopy.objects.filter(organization=organization).exclude(data_key=target).exclude(blob_id=""):
        with transaction.atomic():
            DerivedCopy.objects.filter(pk=copy.pk).delete()
        store.delete(copy.blob_id)  # after the row: a crash in between leaves an orphan, never a dangling row
        dropped += 1
    return dropped


def _adopt_already_moved(organization, target: DataKey) -> None:
    """Point rows at `target` whose blob already names it (a swap recorded only half-way)."""
    store = get_store()
    for blob_id in list(_blob_ids_off(organization, target)):
        if store.dek_id_of(blob_id) == target.key_id:
            Instance.objects.filter(organization=organization, blob_id=blob_id).update(data_key=target)
