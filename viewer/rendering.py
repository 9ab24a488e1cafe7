"""The web process's handle on the render worker pool."""

from __future__ import annotations

import asyncio
import atexit
import threading
from pathlib import Path

from django.conf import settings

from archive.models import DataKey, DerivedCopy
from archive.storage import resolve_dek
from viewer.pool import RenderPool, Source
from viewer.render.transcode import needs_fast_copy

_lock = threading.Lock()
_pool: RenderPool | None = None
_key_ids: dict[int, str] = {}


def get_pool(loop: asyncio.AbstractEventLoop | None = None) -> RenderPool:
    """Return the process-wide render pool, starting it on first use.

    `loop`: the server's event loop, given by the ASGI lifespan when it starts the pool, so
    that loop reads the workers' replies (see ``RenderPool``); ignored once the pool exists.
    """
    global _pool
    with _lock:
        if _pool is None:
            pool = RenderPool(
                opener="viewer.blob_opener:open_encrypted",
                workers=settings.LIGHTBOX_RENDER_WORKERS or None,
                cache_bytes=settings.LIGHTBOX_RENDER_CACHE_BYTES,
                job_cpu_seconds=settings.LIGHTBOX_RENDER_JOB_SECONDS,
                loop=loop,
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


def _source(blob_id: str, data_key_id: int) -> Source:
    key_id = _key_id(data_key_id)
    root = str(Path(settings.DATA_DIR) / "blobs")
    return Source(key=blob_id, opener_arg=(root, blob_id, key_id, resolve_dek(key_id)))


def original_source_for(instance) -> Source:
    """The pool Source of an instance's original bytes."""
    return _source(instance.blob_id, instance.data_key_id)


def source_for(instance) -> Source:
    """The pool Source to render an instance from: routed and cached by its (immutable) blob id.

    JPEG 2000 instances render from their derived fast-decode copy once it exists (one small
    query, only for those syntaxes); everything else, and J2K before its copy, from the original.
    """
    if needs_fast_copy(instance.transfer_syntax_uid):
        copy = (
            DerivedCopy.objects.filter(instance_id=instance.pk)
            .exclude(blob_id="")
            .values_list("blob_id", "data_key_id")
            .first()
        )
        if copy is not None:
            return _source(*copy)
    return original_source_for(instance)
