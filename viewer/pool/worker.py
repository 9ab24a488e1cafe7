"""The render worker process: resource limits, then a receive -> run -> reply loop.

Started by ``RenderPool`` through the 'forkserver' start method, whose server preloads this
module (numpy, pydicom, the codecs), so starting or replacing a worker costs a fork, not
an interpreter start-up.

Limits, applied once at start:
- address space (``RLIMIT_AS``, soft and hard): an allocation past it raises MemoryError in
  Python, or makes a C decoder fail or abort; either way only this process suffers;
- no core dumps (``RLIMIT_CORE`` 0, not dumpable): a core would put decrypted pixels on disk;
- per job, ``ITIMER_PROF`` raises in Python after the CPU budget; code stuck in C never
  returns to Python, so ``RLIMIT_CPU`` (whole seconds) is kept between "used so far + budget
  + 1 s" and 1 s more before each job, and the kernel ends the process with SIGXCPU (the
  parent reports a timeout).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import math
import os
import pickle
import resource
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from viewer.render.decode import DEFAULT_MAX_PIXELS
from viewer.render.errors import RenderError

from . import protocol
from .cache import ByteLRU
from .errors import JobTimeout, RenderFailed, Superseded, WorkerMemoryExceeded
from .jobs import PrefetchJob, TranscodeJob
from .runner import JobRunner
from .warmup import warm_engine

# Load the codec plugins now: in the forkserver this happens once for every future worker.
for _plugin in ("openjpeg", "libjpeg", "rle", "pydicom.pixels.decoders.pylibjpeg", "pydicom.pixels.decoders.rle"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_plugin)

__all__ = ["WorkerConfig", "resolve", "worker_main"]

_PR_SET_DUMPABLE = 4
_BACKSTOP_SLACK_SECONDS = 1


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs, pickled once at start."""

    opener: str
    init: str | None = None
    cache_bytes: int = 512 << 20
    memory_limit_bytes: int | None = None
    job_cpu_seconds: float = 5.0
    max_pixels: int = DEFAULT_MAX_PIXELS


def resolve(path: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` and return the function.

    Raises
    ------
    ValueError
        Not of the form ``module:attribute``.
    ImportError, AttributeError
    """
    module, sep, name = path.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"expected 'package.module:function', got {path!r}")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    return target  # type: ignore[no-any-return]


class _CpuTimeExceeded(BaseException):
    """Raised by the SIGPROF handler; a BaseException so decoders' ``except Exception`` miss it."""


class _CpuBudget:
    """Per-job CPU deadline whose signal is deferred inside cache updates."""

    def __init__(self) -> None:
        self.armed = False
        self.expired = False
        self.masked = 0
        self._soft_limit: int | None = None  # our RLIMIT_CPU soft limit, in CPU seconds
        self._hard_limit = resource.getrlimit(resource.RLIMIT_CPU)[1]

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            return
        self.expired = True
        if not self.masked:
            raise _CpuTimeExceeded

    def arm(self, seconds: float) -> None:
        self.expired = False
        self.masked = 0
        self.armed = True
        # The RLIMIT_CPU backstop must leave this job its whole budget and end a job stuck in
        # C within ~2 s more; moving it only when it leaves that band saves two system calls
        # on almost every job (a warm frame takes ~0.6 ms, so it moves about once a second).
        needed = time.process_time() + seconds + 1
        soft = self._soft_limit
        if soft is None or not needed <= soft <= needed + _BACKSTOP_SLACK_SECONDS:
            soft = math.ceil(needed)
            hard = self._hard_limit
            if hard == resource.RLIM_INFINITY or soft < hard:
                resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
                self._soft_limit = soft
        signal.setitimer(signal.ITIMER_PROF, seconds)

    def disarm(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_PROF, 0)

    def critical(self) -> _Masked:
        return _Masked(self)


class _Masked:
    def __init__(self, budget: _CpuBudget) -> None:
        self._budget = budget

    def __enter__(self) -> None:
        self._budget.masked += 1

    def __exit__(self, *exc_info: object) -> None:
        budget = self._budget
        budget.masked -= 1
        if budget.armed and budget.expired and not budget.masked and exc_info[0] is None:
            raise _CpuTimeExceeded


def _apply_limits(config: WorkerConfig) -> None:
    # PRIVACY: a core dump of a worker would write decrypted pixel data to disk
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    if config.memory_limit_bytes:
        # SECURITY: hard limit too, so nothing in this process can raise it again
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = config.memory_limit_bytes
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Ctrl+C in a dev server reaches the whole process group; the parent stops workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _error_reply(job_id: int, exc: BaseException, config: WorkerConfig, budget: float) -> bytes:
    if isinstance(exc, _CpuTimeExceeded):
        return protocol.encode_error(job_id, JobTimeout(f"render took longer than {budget:g} s of CPU time"))
    if isinstance(exc, MemoryError):
        limit = (config.memory_limit_bytes or 0) >> 20
        return protocol.encode_error(
            job_id, WorkerMemoryExceeded(f"render exceeded the worker memory limit ({limit} MiB)")
        )
    if isinstance(exc, RenderError):
        # Engine messages are PHI-free by contract; the chained cause goes to the log only
        cause = exc.__cause__
        detail = "".join(traceback.format_exception(cause)) if cause is not None else ""
        return protocol.encode_error(job_id, exc, detail)
    return protocol.encode_error(
        job_id,
        RenderFailed(f"render failed unexpectedly ({type(exc).__name__})"),
        "".join(traceback.format_exception(exc)),
    )


def _run_one(runner: JobRunner, cpu: _CpuBudget, config: WorkerConfig, job_id: int, job: Any) -> bytes:
    budget = config.job_cpu_seconds
    if isinstance(job, PrefetchJob):
        budget *= max(1, len(job.frames))
    elif isinstance(job, TranscodeJob):
        # Whole-object decode + encode: the per-frame budget times the frames (plus one for the encode).
        budget *= max(1, job.frames) + 1
    try:
        try:
            cpu.arm(budget)
            result = runner.run(job)
        finally:
            cpu.disarm()
        return protocol.encode_result(job_id, result)
    except (_CpuTimeExceeded, Exception) as exc:  # process edge: every failure is a reply
        return _error_reply(job_id, exc, config, budget)


def _serve(conn: Any, runner: JobRunner, cpu: _CpuBudget, config: WorkerConfig) -> None:
    pending: deque[tuple[str, int, Any]] = deque()
    while True:
        try:
            messages = [conn.recv_bytes()] if not pending else []
            while conn.poll():
                messages.append(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the parent closed the pool or died
        for raw in messages:
            # Parent -> worker only: the parent is trusted (replies never use pickle)
            message = pickle.loads(raw)  # noqa: S301
            if message[0] == "stop":
                return
            if message[0] == "cancel":
                # Drop a job that has not started; a running or finished one answers itself
                for queued in pending:
                    if queued[1] == message[1]:
                        pending.remove(queued)
                        try:
                            conn.send_bytes(
                                protocol.encode_error(queued[1], Superseded("superseded by a newer request"))
                            )
                        except OSError:
                            return
                        break
            else:
                pending.append(message)
        if not pending:
            continue
        kind, job_id, job = pending.popleft()
        if kind == "stats":
            reply = protocol.encode_stats(job_id, {"pid": os.getpid(), **runner.cache.stats()})
        else:
            reply = _run_one(runner, cpu, config, job_id, job)
        try:
            conn.send_bytes(reply)
        except OSError:
            return


def worker_main(conn: Any, config: WorkerConfig) -> None:
    """Entry point of a worker process: limits, init hook, opener, then serve until EOF."""
    _apply_limits(config)
    cpu = _CpuBudget()
    signal.signal(signal.SIGPROF, cpu.on_signal)
    try:
        if config.init:
            resolve(config.init)()
        opener = resolve(config.opener)
    except Exception as exc:  # process edge: report and exit, the parent fails start()
        conn.send_bytes(
            protocol.encode_init_failed(
                f"render worker could not start: {type(exc).__name__} loading the opener or init hook",
                "".join(traceback.format_exception(exc)),
            )
        )
        return
    runner = JobRunner(opener, ByteLRU(config.cache_bytes), max_pixels=config.max_pixels, critical=cpu.critical)
    with contextlib.suppress(Exception):  # a warm-up never keeps a worker from serving (tested on its own)
        warm_engine()
    # The preloaded codecs and numpy are never garbage: keep full collections (the first one
    # would land on a job) from sweeping them (see config.lifespan.freeze_startup_heap)
    gc.collect()
    gc.freeze()
    conn.send_bytes(protocol.encode_ready(os.getpid()))
    _serve(conn, runner, cpu, config)
