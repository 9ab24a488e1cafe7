"""Django wiring of the encrypted blob store: backend, key provider and data keys."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError as DBIntegrityError
from django.db import transaction
from django.utils.module_loading import import_string

from archive.blobstore import BlobReader, BlobStore, KeyProvider, LocalFileBackend, WrappedKey, generate_dek
from archive.models import DataKey
from audit.services import record

_lock = threading.Lock()
_stores: dict[str, BlobStore] = {}
_providers: dict[str, KeyProvider] = {}
# Unwrapped DEKs, by key id. SECURITY: process memory only, never logged or written anywhere.
_dek_cache: dict[str, bytes] = {}


def key_provider() -> KeyProvider:
    """Return the configured KeyProvider (a local 0600 key file by default)."""
    root = str(Path(settings.DATA_DIR) / "keys")
    with _lock:
        provider = _providers.get(root)
        if provider is None:
            factory = import_string(settings.LIGHTBOX_KEY_PROVIDER)
            provider = _providers[root] = factory(root)
        return provider


def get_store() -> BlobStore:
    """Return the blob store of the configured data directory."""
    root = str(Path(settings.DATA_DIR) / "blobs")
    with _lock:
        store = _stores.get(root)
        if store is None:
            store = _stores[root] = BlobStore(
                LocalFileBackend(root), resolve_dek, chunk_size=settings.LIGHTBOX_BLOB_CHUNK_BYTES
            )
        return store


def resolve_dek(key_id: str) -> bytes:
    """Return the unwrapped data key `key_id` (raises KeyError when unknown)."""
    dek = _dek_cache.get(key_id)
    if dek is None:
        data_key = DataKey.objects.filter(key_id=key_id).first()
        if data_key is None:
            raise KeyError(key_id)
        dek = key_provider().unwrap(WrappedKey(kek_id=data_key.kek_id, blob=bytes(data_key.wrapped)))
        _dek_cache[key_id] = dek
    return dek


def forget_cached_keys() -> None:
    """Drop unwrapped keys from memory (after a rotation, or between tests)."""
    _dek_cache.clear()


def create_data_key(organization) -> tuple[DataKey, bytes]:
    """Generate, wrap and save a new active DEK for `organization` (audited key event)."""
    dek = generate_dek()
    wrapped = key_provider().wrap(dek)
    data_key = DataKey.objects.create(
        organization=organization,
        key_id=f"dek-{secrets.token_hex(12)}",
        kek_id=wrapped.kek_id,
        wrapped=wrapped.blob,
    )
    _dek_cache[data_key.key_id] = dek
    record(
        action="key.dek_created",
        actor_type="system",
        organization=organization,
        object_type="data_key",
        object_id=data_key.key_id,
        details={"kek_id": wrapped.kek_id},
    )
    return data_key, dek


def active_data_key(organization) -> tuple[DataKey, bytes]:
    """Return the organisation's active DEK, creating the first one on demand."""
    data_key = DataKey.objects.filter(organization=organization, state=DataKey.State.ACTIVE).first()
    if data_key is not None:
        return data_key, resolve_dek(data_key.key_id)
    try:
        with transaction.atomic():
            return create_data_key(organization)
    except DBIntegrityError:
        # Another process created it first (one active DEK per organisation is a constraint).
        data_key = DataKey.objects.get(organization=organization, state=DataKey.State.ACTIVE)
        return data_key, resolve_dek(data_key.key_id)


def open_instance_blob(instance) -> BlobReader:
    """Open an instance's stored bytes as a seekable, decrypting file object."""
    return get_store().open(instance.blob_id)


def open_blob(blob_id: str) -> BlobReader:
    """Open a blob by id (the render workers' opener)."""
    return get_store().open(blob_id)


def blob_age_seconds(blob_id: str) -> float | None:
    """Seconds since a blob was written, or None when unknown (such blobs are never swept)."""
    backend = get_store().backend
    if not isinstance(backend, LocalFileBackend):
        return None
    try:
        # The local backend's layout, through its own path helper (StorageBackend has no mtime).
        return time.time() - backend._path(blob_id).stat().st_mtime  # noqa: SLF001
    except FileNotFoundError:
        return None


def stale_partial_writes(older_than_seconds: float) -> Iterator[Path]:
    """Temporary files of writes that never committed or aborted (a crashed process).

    They hold ciphertext only, but nothing will ever finish them; the orphan sweep removes them.
    """
    backend = get_store().backend
    if not isinstance(backend, LocalFileBackend):
        return
    deadline = time.time() - older_than_seconds
    for first in sorted(backend.root.iterdir()):
        if not first.is_dir() or first.is_symlink():
            continue
        for second in sorted(first.iterdir()):
            if not second.is_dir() or second.is_symlink():
                continue
            with os.scandir(second) as entries:
                for entry in entries:
                    if (entry.name.startswith(".") and entry.name.endswith(".tmp")
                            and entry.is_file(follow_symlinks=False)
                            and entry.stat(follow_symlinks=False).st_mtime < deadline):
                        yield Path(entry.path)
