"""Key rotation drivers: re-wrap DEKs under a new KEK, and move blobs to a new DEK.

Both are written to be resumed: they skip work already done, and they only destroy old
material (a KEK, an old blob) after the new one is safely recorded by the caller.
The Django layer supplies the records (wrapped DEKs, blob references) and the ``save`` /
``swap`` callbacks that update them in its own transactions, and audits each key event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .errors import IntegrityError
from .keys import KeyProvider, WrappedKey
from .store import BlobStore
from .writer import BlobInfo


def rewrap(provider: KeyProvider, wrapped: WrappedKey) -> WrappedKey:
    """Return ``wrapped`` re-encrypted under the current KEK (unchanged if already so)."""
    current = provider.current_kek_id()
    if wrapped.kek_id == current:
        return wrapped
    dek = provider.unwrap(wrapped)
    new = provider.wrap(dek)
    # Never hand back a wrapping that does not open to the same key: the caller is about
    # to overwrite the only other copy.
    if provider.unwrap(new) != dek:
        raise IntegrityError("re-wrapped DEK does not unwrap to the original")
    return new


@dataclass
class KekRotation:
    """What ``rotate_kek`` did: the new KEK, how many DEKs moved, which KEKs they left."""

    new_kek_id: str
    rewrapped: int = 0
    old_kek_ids: set[str] = field(default_factory=set)
    retired: set[str] = field(default_factory=set)


def rotate_kek[K](
    provider: KeyProvider,
    wrapped_deks: Iterable[tuple[K, WrappedKey]],
    save: Callable[[K, WrappedKey], None],
    *,
    new_kek: bool = True,
    retire_old: bool = False,
) -> KekRotation:
    """Re-wrap every DEK under a (new) current KEK, saving each; optionally retire old KEKs.

    ``wrapped_deks`` yields (key, wrapped) for the caller's records, and ``save(key, new)``
    stores one re-wrapped DEK. Old KEKs are kept until every DEK has been saved; pass
    ``retire_old=True`` only when ``wrapped_deks`` covers every DEK the provider wraps.
    To resume after an interruption call again with ``new_kek=False``.
    """
    new_kek_id = provider.rotate() if new_kek else provider.current_kek_id()
    report = KekRotation(new_kek_id=new_kek_id)
    for key, wrapped in wrapped_deks:
        if wrapped.kek_id == new_kek_id:
            continue
        save(key, rewrap(provider, wrapped))
        report.rewrapped += 1
        report.old_kek_ids.add(wrapped.kek_id)
    if retire_old:
        for kek_id in sorted(report.old_kek_ids):
            provider.retire(kek_id)
            report.retired.add(kek_id)
    return report


@dataclass
class DekRotation:
    """What ``rotate_dek`` did: blobs moved to the new DEK and blobs already there."""

    moved: int = 0
    skipped: int = 0


def rotate_dek(
    store: BlobStore,
    blob_ids: Iterable[str],
    *,
    new_dek_id: str,
    new_dek: bytes,
    swap: Callable[[str, BlobInfo], None],
) -> DekRotation:
    """Re-encrypt each blob under the new DEK, one at a time; resumable if interrupted.

    For each blob: copy it under the new DEK, call ``swap(old_id, new_info)`` (the caller
    repoints its record at ``new_info.blob_id`` in one transaction, and should check
    ``new_info.sha256_hex`` against the hash it stored at ingest), then delete the old
    blob. Blobs whose header already names ``new_dek_id`` are skipped, so running again
    over the caller's current references finishes an interrupted rotation. A crash
    between ``swap`` and the delete leaves an unreferenced old blob for an orphan sweep
    (``store.iter_blob_ids()`` minus referenced ids); it never loses data.
    """
    report = DekRotation()
    for old_id in blob_ids:
        if store.dek_id_of(old_id) == new_dek_id:
            report.skipped += 1
            continue
        info = store.reencrypt(old_id, new_dek_id=new_dek_id, new_dek=new_dek)
        try:
            swap(old_id, info)
        except BaseException:
            store.delete(info.blob_id)
            raise
        store.delete(old_id)
        report.moved += 1
    return report
