"""The web process's handle on the render worker pool."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from django.conf import settings

from archive.models import DataKey
from archive.storage import resolve_dek
from viewer.pool import RenderPool, Source

_lock = threading.Lock()
_pool: RenderPool | None = None
_key_ids: dict[int, str] = {}


def get_pool() -> RenderPool:
    """Return the process-wide render pool, starting it on first use."""
    global _pool
    with _lock:
        if _pool is None:
            pool = RenderPool(
                opener="viewer.blob_opener:open_encrypted",
                workers=settings.LIGHTBOX_RENDER_WORKERS or None,
                cache_bytes=settings.LIGHTBOX_RENDER_CACHE_BYTES,
                job_cpu_seconds=settings.LIGHTBOX_RENDER_JOB_SECONDS,
            )
            pool.start()
            atexit.register(pool.close)
            _pool = pool
        return _pool


def close_pool() -> None:
    """Stop the worker processes (server shutdown, tests)."""
    global _pool
    with _lock:
        if _pool is not None:
            _pool.close()
            _pool = None


def _key_id(data_key_id: int) -> str:
    key_id = _key_ids.get(data_key_id)
    if key_id is None:
        key_id = _key_ids[data_key_id] = DataKey.objects.values_list("key_id", flat=True).get(pk=data_key_id)
    return key_id


def source_for(instance) -> Source:
    """The pool Source of an instance: routed and cached by its (immutable) blob id."""
    key_id = _key_id(instance.data_key_id)
    root = str(Path(settings.DATA_DIR) / "blobs")
    return Source(key=instance.blob_id, opener_arg=(root, instance.blob_id, key_id, resolve_dek(key_id)))
