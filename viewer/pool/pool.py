"""``RenderPool``: route render jobs to isolated worker processes and hand back futures.

One duplex pipe and one reader thread per worker. Jobs for the same ``Source.key`` always go
to the same worker (``StickyRouter``: new keys round-robin, then sticky), so its frame cache
hits and the workers share the load evenly. Up to ``pipeline_depth``
jobs are in a worker's pipe at once; the rest wait in the parent, where a newer job with the
same ``supersedes`` key, or cancelling the future, drops them. A worker that dies fails only
the job it was running (the oldest unanswered one); the jobs queued behind it go to its
replacement.

Start method: 'forkserver' with this package preloaded. Measured on the reference 2-core
machine: 'spawn' takes ~350 ms per worker (a fresh interpreter importing numpy, pydicom and
the codecs); the fork server pays that once and then forks ready workers in ~8 ms, so a
crashed worker is replaced before the next request notices. Plain 'fork' is unsafe in an
ASGI server: it would copy the parent's threads' locks mid-use.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

from viewer.render.decode import DEFAULT_MAX_PIXELS

from . import protocol
from .errors import JobTimeout, PoolClosed, PoolError, Superseded, WorkerCrashed
from .jobs import Job
from .routing import StickyRouter
from .worker import WorkerConfig, worker_main

__all__ = ["DEFAULT_CACHE_BYTES", "RenderPool"]

DEFAULT_CACHE_BYTES = 512 << 20
# Address space beyond the cache: interpreter and codecs (~200 MiB mapped), one maximal
# frame being decoded (8192 x 8192 x 16 bits = 128 MiB) and its render intermediates.
_DEFAULT_HEADROOM = 1 << 30
# Largest reply accepted from a worker: an 8192 x 8192 RGB PNG is at most ~200 MiB.
_MAX_REPLY_BYTES = 256 << 20
_WATCHDOG_INTERVAL = 0.1


@dataclass(eq=False)
class _Entry:
    job_id: int
    payload: bytes
    future: Future[Any]
    slot: _Slot
    supersedes: Hashable | None = None


@dataclass(eq=False)
class _Slot:
    index: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    process: Any = None
    conn: Any = None
    pid: int | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    queue: deque[_Entry] = field(default_factory=deque)
    inflight: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    head_since: float = 0.0
    killed: tuple[int, str] | None = None  # (job id, reason) when the parent killed it
    broken: PoolError | None = None
    reader: threading.Thread | None = None
    watched_fd: int | None = None  # loop mode: the pipe's fd registered with the event loop


class RenderPool:
    """A pool of render worker processes with per-worker frame caches.

    Parameters
    ----------
    opener : str
        ``"package.module:function"``; in the worker, ``opener(source.opener_arg)`` returns a
        seekable binary file-like (or bytes) of the decrypted DICOM object.
    workers : int, optional
        Number of processes; default ``os.cpu_count()``.
    init : str, optional
        ``"package.module:function"`` called once in each worker before the opener is
        imported (e.g. ``django.setup``).
    cache_bytes : int
        Frame cache budget per worker.
    memory_limit_bytes : int, optional
        Address-space limit per worker; default ``cache_bytes`` + 1 GiB.
    job_cpu_seconds : float
        CPU time one job may use (a prefetch: per frame).
    job_wall_seconds : float, optional
        Wall-clock time the running job may take before its worker is killed and replaced
        (catches hangs that use no CPU); None disables.
    max_pixels : int
        Per-frame pixel budget, checked before decoding.
    pipeline_depth : int
        Jobs written to a worker's pipe ahead of its answers.
    loop : asyncio.AbstractEventLoop, optional
        The server's event loop: replies are then read by that loop (``add_reader``) instead of
        one thread per worker. Under load each reply saved a thread switch and a GIL hand-off
        (~0.1 ms of the web process's CPU per frame). Replacing a dead worker still happens on
        a short-lived thread.
    """

    def __init__(
        self,
        *,
        opener: str,
        workers: int | None = None,
        init: str | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        memory_limit_bytes: int | None = None,
        job_cpu_seconds: float = 5.0,
        job_wall_seconds: float | None = 30.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        pipeline_depth: int = 2,
        start_method: str = "forkserver",
        start_timeout: float = 60.0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        workers = workers or os.cpu_count() or 1
        if memory_limit_bytes is None:
            memory_limit_bytes = cache_bytes + _DEFAULT_HEADROOM
        if workers < 1 or pipeline_depth < 1:
            raise ValueError("workers and pipeline_depth: expected >= 1")
        if memory_limit_bytes <= cache_bytes:
            raise ValueError(
                f"memory_limit_bytes: expected more than cache_bytes ({cache_bytes}), got {memory_limit_bytes}"
            )
        if not job_cpu_seconds > 0 or (job_wall_seconds is not None and not job_wall_seconds > 0):
            raise ValueError("job_cpu_seconds and job_wall_seconds: expected > 0")
        self.workers = workers
        self.job_wall_seconds = job_wall_seconds
        self.pipeline_depth = pipeline_depth
        self.config = WorkerConfig(
            opener=opener,
            init=init,
            cache_bytes=cache_bytes,
            memory_limit_bytes=memory_limit_bytes,
            job_cpu_seconds=job_cpu_seconds,
            max_pixels=max_pixels,
        )
        self._context = multiprocessing.get_context(start_method)
        self._start_timeout = start_timeout
        self._slots = [_Slot(i) for i in range(workers)]
        self._router = StickyRouter(workers)
        self._ids = itertools.count(1)
        self._latest: dict[Hashable, _Entry] = {}
        self._latest_lock = threading.Lock()
        self._started = False
        self._closing = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._loop = loop

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> RenderPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers and wait until each has loaded its opener.

        Raises
        ------
        PoolError
            A worker could not import the opener or run the init hook (the pool is closed).
        """
        if self._started:
            return
        if self._context.get_start_method() == "forkserver":
            # Only takes effect if this process has not started its fork server yet
            self._context.set_forkserver_preload(["viewer.pool.worker"])
        self._started = True
        for slot in self._slots:
            with slot.lock:
                self._spawn(slot)
            if self._loop is None:
                slot.reader = threading.Thread(
                    target=self._read_loop, args=(slot,), name=f"render-pool-reader-{slot.index}", daemon=True
                )
                slot.reader.start()
        if self.job_wall_seconds is not None:
            self._watchdog = threading.Thread(target=self._watch, name="render-pool-watchdog", daemon=True)
            self._watchdog.start()
        deadline = time.monotonic() + self._start_timeout
        if self._loop is not None:
            for slot in self._slots:
                self._read_ready(slot, deadline)
                self._watch_in_loop(slot)
        for slot in self._slots:
            if not slot.ready.wait(max(0.0, deadline - time.monotonic())):
                self.close()
                raise PoolError("render workers did not start in time")
            if slot.broken is not None:
                error = slot.broken
                self.close()
                raise error

    def close(self, timeout: float = 5.0) -> None:
        """Stop every worker (jobs still pending fail with ``PoolClosed``) and wait for them."""
        if not self._started or self._closing:
            return
        self._closing = True
        self._stop.set()
        stop = pickle.dumps(("stop",))
        for slot in self._slots:
            with slot.lock:
                if slot.conn is not None:
                    try:
                        slot.conn.send_bytes(stop)
                    except OSError:
                        pass
        deadline = time.monotonic() + timeout
        self._unwatch_all()
        for slot in self._slots:
            process = slot.process
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join(1.0)
        for slot in self._slots:
            if slot.reader is not None:
                slot.reader.join(max(0.1, deadline - time.monotonic()))
            with slot.lock:
                leftovers = list(slot.inflight.values()) + list(slot.queue)
                slot.inflight.clear()
                slot.queue.clear()
                if slot.conn is not None:
                    slot.conn.close()
                    slot.conn = None
            for entry in leftovers:
                self._resolve(entry, error=PoolClosed("the render pool was shut down"))
        if self._watchdog is not None:
            self._watchdog.join(1.0)

    def worker_pids(self) -> list[int | None]:
        """Return the pid of each worker (None while one is being replaced)."""
        return [slot.pid for slot in self._slots]

    def worker_index(self, key: str) -> int:
        """Return the index of the worker that serves `key` (assigning one if it is new)."""
        return self._router.worker_for(key)

    # -- submitting ------------------------------------------------------------------------

    def submit(self, job: Job, *, supersedes: Hashable | None = None) -> Future[Any]:
        """Queue `job` on the worker of its source and return a future of its result.

        Parameters
        ----------
        job : RenderJob | TileJob | MeasureJob | InfoJob | PrefetchJob
        supersedes : Hashable, optional
            A later job submitted with the same key resolves this one with ``Superseded``
            if it has not started yet (newest wins, e.g. one key per viewport).

        Returns
        -------
        concurrent.futures.Future
            Resolves to the result, or raises a ``RenderError`` subclass (the engine's own
            classes, codes and messages, or a ``PoolError``). Cancelling it drops the job if
            it has not started.

        Raises
        ------
        PoolClosed
            The pool is not running.
        """
        slot = self._slots[self._router.worker_for(job.source.key)]
        job_id = next(self._ids)
        return self._enqueue(slot, job_id, pickle.dumps(("job", job_id, job), pickle.HIGHEST_PROTOCOL), supersedes)

    async def run(self, job: Job, *, supersedes: Hashable | None = None) -> Any:
        """Await the result of `job` (``submit`` wrapped for asyncio; cancelling cancels the job)."""
        return await asyncio.wrap_future(self.submit(job, supersedes=supersedes))

    def cancel(self, future: Future[Any]) -> bool:
        """Cancel a job not yet started (same as ``future.cancel()``); True if it was dropped."""
        return future.cancel()

    def cache_stats(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Return each worker's cache statistics (pid, hits, misses, evictions, entries, bytes)."""
        futures = []
        for slot in self._slots:
            job_id = next(self._ids)
            futures.append(self._enqueue(slot, job_id, pickle.dumps(("stats", job_id, None)), None))
        return [future.result(timeout) for future in futures]

    def _enqueue(self, slot: _Slot, job_id: int, payload: bytes, supersedes: Hashable | None) -> Future[Any]:
        if not self._started or self._closing:
            raise PoolClosed("the render pool is not running")
        future: Future[Any] = Future()
        entry = _Entry(job_id, payload, future, slot, supersedes)
        if supersedes is not None:
            with self._latest_lock:
                older = self._latest.get(supersedes)
                self._latest[supersedes] = entry
            if older is not None:
                self._drop(older, Superseded("superseded by a newer request"))
        with slot.lock:
            broken = slot.broken
            if broken is None:
                slot.queue.append(entry)
                self._pump(slot)
        if broken is not None:
            self._resolve(entry, error=broken)
        future.add_done_callback(lambda f: self._on_cancelled(entry) if f.cancelled() else None)
        return future

    def _on_cancelled(self, entry: _Entry) -> None:
        self._drop(entry, None)
        self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        if entry.supersedes is not None:
            with self._latest_lock:
                if self._latest.get(entry.supersedes) is entry:
                    del self._latest[entry.supersedes]

    def _drop(self, entry: _Entry, error: PoolError | None) -> None:
        """Remove a job that has not started: from the parent queue, else by a cancel message."""
        slot = entry.slot
        with slot.lock:
            if entry in slot.queue:
                slot.queue.remove(entry)
                dropped = True
            else:
                dropped = False
                if entry.job_id in slot.inflight and slot.conn is not None:
                    try:
                        slot.conn.send_bytes(pickle.dumps(("cancel", entry.job_id)))
                    except OSError:
                        pass  # the reader thread handles the dead worker
        if dropped and error is not None:
            self._resolve(entry, error=error)

    def _pump(self, slot: _Slot) -> None:
        """Write queued jobs to the worker's pipe up to the pipeline depth (lock held)."""
        while slot.queue and slot.conn is not None and len(slot.inflight) < self.pipeline_depth:
            entry = slot.queue[0]
            try:
                slot.conn.send_bytes(entry.payload)
            except OSError:
                return  # worker gone: the entry stays queued for the replacement
            slot.queue.popleft()
            if not slot.inflight:
                slot.head_since = time.monotonic()
            slot.inflight[entry.job_id] = entry

    def _resolve(self, entry: _Entry, result: Any = None, error: BaseException | None = None) -> None:
        self._forget(entry)
        try:
            if error is not None:
                entry.future.set_exception(error)
            else:
                entry.future.set_result(result)
        except InvalidStateError:
            pass  # cancelled by the caller meanwhile

    # -- workers ---------------------------------------------------------------------------

    def _spawn(self, slot: _Slot) -> None:
        """Start a worker process for `slot` (lock held)."""
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child_end, self.config),
            name=f"lightbox-render-{slot.index}",
            daemon=True,
        )
        process.start()
        child_end.close()  # else EOF would never arrive when the worker dies
        slot.process, slot.conn, slot.pid, slot.killed = process, parent_end, process.pid, None

    def _read_loop(self, slot: _Slot) -> None:
        while True:
            conn = slot.conn
            if conn is None:
                return
            try:
                message = conn.recv_bytes(_MAX_REPLY_BYTES)
            except (EOFError, OSError):
                if not self._on_exit(slot):
                    return
                continue
            self._handle_message(slot, message)

    def _handle_message(self, slot: _Slot, message: bytes) -> None:
        try:
            reply = protocol.decode_reply(message)
        except protocol.ProtocolError:
            self._kill(slot, reason="protocol")
            return
        if reply.kind == "ready":
            slot.ready.set()
            return
        if reply.kind == "init_failed":
            slot.broken = reply.value
            slot.ready.set()
            return
        with slot.lock:
            was_head = bool(slot.inflight) and next(iter(slot.inflight)) == reply.job_id
            entry = slot.inflight.pop(reply.job_id, None)
            if was_head:
                slot.head_since = time.monotonic()
            self._pump(slot)
        if entry is not None:
            if reply.kind == "error":
                self._resolve(entry, error=reply.value)
            else:
                self._resolve(entry, result=reply.value)

    # -- reading in the event loop (loop mode) -----------------------------------------------

    def _read_ready(self, slot: _Slot, deadline: float) -> None:
        """Read a new worker's first message here (it is 'ready' or 'init_failed')."""
        conn = slot.conn
        try:
            if conn is None or not conn.poll(max(0.0, deadline - time.monotonic())):
                return  # start() or the caller reports the timeout
            self._handle_message(slot, conn.recv_bytes(_MAX_REPLY_BYTES))
        except (EOFError, OSError):
            slot.broken = slot.broken or WorkerCrashed("the render worker could not start")
            slot.ready.set()

    def _watch_in_loop(self, slot: _Slot) -> None:
        conn = slot.conn
        if conn is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._add_reader, slot, conn)
        except RuntimeError:
            pass  # the loop is closed: the server is shutting down

    def _add_reader(self, slot: _Slot, conn: Any) -> None:
        if slot.conn is conn and not self._closing:
            assert self._loop is not None
            slot.watched_fd = conn.fileno()
            self._loop.add_reader(slot.watched_fd, self._on_readable, slot, conn)
            # uvloop (libuv) makes a watched fd non-blocking; the pipe's reads and writes here
            # expect blocking (a reply is read whole; a job is written whole), and libuv only polls it.
            os.set_blocking(slot.watched_fd, True)

    def _remove_reader(self, slot: _Slot) -> None:
        fd, slot.watched_fd = slot.watched_fd, None
        if fd is not None and self._loop is not None:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                self._loop.remove_reader(fd)

    def _unwatch_all(self) -> None:
        """Stop the loop watching the pipes before they are closed (their fds could be reused)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or not loop.is_running():
            for slot in self._slots:
                self._remove_reader(slot)
            return
        done = threading.Event()

        def unwatch() -> None:
            for slot in self._slots:
                self._remove_reader(slot)
            done.set()

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(unwatch)
            done.wait(2.0)

    def _on_readable(self, slot: _Slot, conn: Any) -> None:
        """In the event loop: handle every reply waiting in the pipe (a worker writes each whole)."""
        assert self._loop is not None
        try:
            while True:
                self._handle_message(slot, conn.recv_bytes(_MAX_REPLY_BYTES))
                if slot.conn is not conn or not conn.poll():
                    return
        except (EOFError, OSError, ValueError, TypeError):
            pass  # the worker died (or the pool closed its pipe)
        self._remove_reader(slot)
        if not self._closing:
            threading.Thread(target=self._replace, args=(slot,), name=f"render-pool-replace-{slot.index}",
                             daemon=True).start()

    def _replace(self, slot: _Slot) -> None:
        """Off the loop: fail the dead worker's job, start its replacement, then watch its pipe."""
        if self._on_exit(slot):
            self._read_ready(slot, time.monotonic() + self._start_timeout)
            self._watch_in_loop(slot)

    def _kill(self, slot: _Slot, reason: str, job_id: int = 0) -> None:
        with slot.lock:
            if slot.process is not None and slot.killed is None:
                slot.killed = (job_id, reason)
                slot.process.kill()

    def _on_exit(self, slot: _Slot) -> bool:
        """Handle a worker's death: fail its running job, replace it; False when closing."""
        process = slot.process
        process.join(1.0)
        if process.exitcode is None:  # alive: the pipe broke (e.g. an oversized reply)
            with slot.lock:
                slot.killed = slot.killed or (0, "protocol")
            process.kill()
            process.join(1.0)
        code = process.exitcode
        failures: list[tuple[_Entry, BaseException]] = []
        with slot.lock:
            entries = list(slot.inflight.values())
            slot.inflight.clear()
            if slot.conn is not None:
                slot.conn.close()
                slot.conn = None
            slot.pid = None
            if self._closing:
                failures = [(e, PoolClosed("the render pool was shut down")) for e in entries + list(slot.queue)]
                slot.queue.clear()
            elif not slot.ready.is_set() or slot.broken is not None:
                # Died while starting: replacing it would loop; fail fast from now on
                if slot.broken is None:
                    slot.broken = WorkerCrashed("the render worker could not start")
                slot.ready.set()
                failures = [(e, slot.broken) for e in entries + list(slot.queue)]
                slot.queue.clear()
            else:
                running, waiting = (entries[0], entries[1:]) if entries else (None, [])
                killed = slot.killed
                if running is not None:
                    if killed is not None and killed[1] == "timeout" and killed[0] != running.job_id:
                        waiting.insert(0, running)  # killed for another job: this one is innocent
                    else:
                        failures.append((running, self._death_error(code, killed, running)))
                slot.ready.clear()
                try:
                    self._spawn(slot)
                except (OSError, ValueError) as exc:
                    slot.broken = WorkerCrashed("the render worker could not be restarted")
                    slot.broken.detail = repr(exc)
                    slot.ready.set()
                    failures += [(e, slot.broken) for e in waiting + list(slot.queue)]
                    slot.queue.clear()
                else:
                    slot.queue.extendleft(reversed(waiting))
                    self._pump(slot)
        for entry, error in failures:
            self._resolve(entry, error=error)
        return not self._closing and slot.conn is not None

    def _death_error(self, code: int | None, killed: tuple[int, str] | None, entry: _Entry) -> PoolError:
        if killed is not None and killed[1] == "timeout":
            return JobTimeout(f"render took longer than {self.job_wall_seconds:g} s")
        if code == -signal.SIGXCPU:
            return JobTimeout(f"render took longer than {self.config.job_cpu_seconds:g} s of CPU time")
        if killed is not None and killed[1] == "protocol":
            return WorkerCrashed("the render worker sent a malformed reply and was stopped")
        if code is not None and code < 0:
            status = f"signal {-code}"
        elif code is not None:
            status = f"exit status {code}"
        else:
            status = "unknown status"
        return WorkerCrashed(f"the render worker stopped unexpectedly ({status})")

    def _watch(self) -> None:
        """Kill a worker whose running job exceeds the wall-clock budget."""
        limit = self.job_wall_seconds
        assert limit is not None
        while not self._stop.wait(_WATCHDOG_INTERVAL):
            now = time.monotonic()
            for slot in self._slots:
                with slot.lock:
                    if not slot.inflight or slot.killed is not None or now - slot.head_since <= limit:
                        continue
                    head = next(iter(slot.inflight))
                self._kill(slot, reason="timeout", job_id=head)
