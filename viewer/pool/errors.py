"""Errors of the render worker pool.

Every pool error is a ``RenderError`` with a stable ``code``, so callers that already turn
render errors into a coded JSON frame or a 422 page handle these too. Messages are fixed
strings plus numbers: never a path, a header value or a worker's exception text (those go to
``detail``, which is for the server log only).
"""

from __future__ import annotations

from viewer.render.errors import ImageTooLarge, RenderError

__all__ = [
    "JobTimeout",
    "PoolClosed",
    "PoolError",
    "RenderFailed",
    "SourceUnavailable",
    "Superseded",
    "WorkerCrashed",
    "WorkerMemoryExceeded",
]


class PoolError(RenderError):
    """Base class of the errors the pool adds to the engine's."""

    code = "pool_error"

    #: Server-log-only detail (worker traceback, exit status); never shown to users.
    detail: str = ""


class WorkerCrashed(PoolError):
    """The worker process running the job died (signal, abort, segfault) or broke protocol."""

    code = "worker_crashed"


class JobTimeout(PoolError):
    """The job used more than its CPU-time or wall-clock budget."""

    code = "render_timeout"


class Superseded(PoolError):
    """A newer job with the same supersede key (or a cancel) replaced this one before it ran."""

    code = "superseded"


class PoolClosed(PoolError):
    """The pool was closed (or never started) while the job was pending."""

    code = "pool_closed"


class SourceUnavailable(PoolError):
    """The opener could not open the instance (missing blob, key or I/O error)."""

    code = "source_unavailable"


class RenderFailed(PoolError):
    """An unexpected exception in the worker (a bug, not bad input); see ``detail``."""

    code = "render_failed"


class WorkerMemoryExceeded(ImageTooLarge, PoolError):
    """The job needed more memory than the worker's address-space limit allows."""

    code = ImageTooLarge.code
