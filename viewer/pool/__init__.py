"""Isolated render workers: a process pool with per-worker frame caches (Django-free).

Decoding hostile files with third-party codecs happens in worker processes with address-space
and CPU-time limits, so a crash or a runaway decode fails one request and never the web
server; several processes also lift the GIL's one-core cap. See ``pool.RenderPool``.

Errors raised by futures are ``viewer.render.errors`` classes (same class, code and message
as in-process rendering) or the ``PoolError`` subclasses below.
"""

from .cache import ByteLRU
from .errors import (
    JobTimeout,
    PoolClosed,
    PoolError,
    RenderFailed,
    SourceUnavailable,
    Superseded,
    WorkerCrashed,
    WorkerMemoryExceeded,
)
from .jobs import (
    InfoJob,
    InfoResult,
    Job,
    MeasureJob,
    PrefetchJob,
    RenderJob,
    RenderResult,
    Source,
    TileJob,
    TranscodeJob,
)
from .pool import DEFAULT_CACHE_BYTES, RenderPool
from .routing import StickyRouter
from .runner import JobRunner

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "ByteLRU",
    "InfoJob",
    "InfoResult",
    "Job",
    "JobRunner",
    "JobTimeout",
    "MeasureJob",
    "PoolClosed",
    "PoolError",
    "PrefetchJob",
    "RenderFailed",
    "RenderJob",
    "RenderPool",
    "RenderResult",
    "Source",
    "SourceUnavailable",
    "StickyRouter",
    "Superseded",
    "TileJob",
    "TranscodeJob",
    "WorkerCrashed",
    "WorkerMemoryExceeded",
]
