"""Benchmark the render worker pool (no Django): frames/s and per-job IPC overhead.

Usage: python bench/render_pool.py [--quick] [--workers N]

Writes a synthetic 512 x 512 CT slice (archive.synthetic) as uncompressed, RLE, JPEG-LS and
JPEG 2000 files and a 640 x 480 RGB ultrasound cine to a temporary directory, starts a
``RenderPool`` and drives it from 1, 2, 4 and 8 concurrent asyncio clients (closed loop, like
websocket consumers awaiting ``pool.run``). "warm": 8 cached instances rendered round-robin
at a fixed window (scrolling through cached slices); "cold": a new source key per request,
so every job opens, parses and decodes (the file itself is in the OS page cache). Output is
JPEG quality 90 at full size. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless  # noqa: E402

from viewer.pool import PrefetchJob, RenderJob, RenderPool, Source  # noqa: E402
from viewer.render import PixelSource, RenderParams, render_frame  # noqa: E402

CLIENTS = (1, 2, 4, 8)
WARM_KEYS = 8
CT_PARAMS = RenderParams(window_center=40.0, window_width=400.0)
US_PARAMS = RenderParams()


def open_path(path: str) -> BinaryIO:
    """The bench's opener (the archive's decrypts a blob instead)."""
    return open(path, "rb")


def build_files(directory: Path) -> dict[str, tuple[str, RenderParams]]:
    from archive.synthetic import compress, ct_study, to_bytes, us_multiframe

    ct = ct_study(slices=3, size=512)[1]
    files: dict[str, tuple[str, RenderParams]] = {}
    for label, syntax in (
        ("CT 512 native", None),
        ("CT 512 RLE", RLELossless),
        ("CT 512 JPEG-LS", JPEGLSLossless),
        ("CT 512 JPEG 2000", JPEG2000Lossless),
    ):
        ds = ct if syntax is None else compress(ct, transfer_syntax=syntax)
        path = directory / f"{label.replace(' ', '_')}.dcm"
        path.write_bytes(to_bytes(ds))
        files[label] = (str(path), CT_PARAMS)
    # What rendering reads once the background job has derived a JPEG 2000 instance's fast copy.
    from viewer.render.transcode import fast_lossless_copy

    path = directory / "CT_512_J2K_fast_copy.dcm"
    path.write_bytes(fast_lossless_copy(Path(files["CT 512 JPEG 2000"][0]).read_bytes()))
    files["CT 512 J2K fast copy"] = (str(path), CT_PARAMS)
    path = directory / "us.dcm"
    path.write_bytes(to_bytes(us_multiframe(frames=10)))
    files["US 640x480 RGB (1 fr)"] = (str(path), US_PARAMS)
    return files


async def closed_loop(pool: RenderPool, make_job: Callable[[], RenderJob], clients: int, seconds: float) -> dict:
    done = 0
    renders: list[float] = []
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            result = await pool.run(make_job())
            renders.append(result.timings_ms.get("total", 0.0))
            done += 1

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    return {
        "fps": done / elapsed,
        "worker_ms": statistics.median(renders) if renders else 0.0,
        "parent_cpu_us": (time.process_time() - cpu) / max(done, 1) * 1e6,
    }


def in_process_ms(path: str, params: RenderParams, repeat: int) -> tuple[float, float]:
    """(warm render ms, cold open+decode+render ms) in this process, best of `repeat`."""
    source = PixelSource(Path(path).read_bytes())
    values = source.decode(params.frame).values
    render_frame(values, source.info, params)
    warm = []
    for _ in range(repeat):
        start = time.perf_counter()
        render_frame(values, source.info, params)
        warm.append(time.perf_counter() - start)
    cold = []
    for _ in range(max(3, repeat // 10)):
        start = time.perf_counter()
        with open(path, "rb") as fp:
            fresh = PixelSource(fp)
            render_frame(fresh.decode(params.frame).values, fresh.info, params)
        cold.append(time.perf_counter() - start)
    return statistics.median(warm) * 1e3, statistics.median(cold) * 1e3


async def bench(pool: RenderPool, files: dict[str, tuple[str, RenderParams]], seconds: float) -> None:
    counter = itertools.count()
    header = f"{'source':24} {'mode':5} " + " ".join(f"{f'{c} client' + ('s' if c > 1 else ''):>10}" for c in CLIENTS)
    print(header + f" {'worker ms':>10} {'parent us/job':>14}")
    print("-" * (len(header) + 26))
    for label, (path, params) in files.items():
        warm_sources = [Source(f"warm-{label}-{i}", path) for i in range(WARM_KEYS)]
        await asyncio.gather(*(pool.run(PrefetchJob(s, (params.frame,))) for s in warm_sources))
        cycle = itertools.cycle(warm_sources)
        modes: dict[str, Callable[[], RenderJob]] = {
            "warm": lambda cycle=cycle, params=params: RenderJob(next(cycle), params),
            "cold": lambda path=path, params=params, label=label: RenderJob(
                Source(f"cold-{label}-{next(counter)}", path), params
            ),
        }
        for mode, make_job in modes.items():
            cells, last = [], {}
            for clients in CLIENTS:
                last = await closed_loop(pool, make_job, clients, seconds)
                cells.append(f"{last['fps']:10.0f}")
            print(
                f"{label:24} {mode:5} " + " ".join(cells) + f" {last['worker_ms']:10.2f} {last['parent_cpu_us']:14.0f}"
            )


async def overhead(pool: RenderPool, files: dict[str, tuple[str, RenderParams]], jobs: int) -> None:
    print("\nper-job overhead, 1 client, warm (sequential latency; median):")
    print(f"{'source':24} {'in-process ms':>14} {'pool ms':>9} {'overhead us':>12} {'cold in-proc ms':>16}")
    for label, (path, params) in files.items():
        source = Source(f"overhead-{label}", path)
        await pool.run(RenderJob(source, params))
        latencies = []
        for _ in range(jobs):
            start = time.perf_counter()
            await pool.run(RenderJob(source, params))
            latencies.append(time.perf_counter() - start)
        warm_ms, cold_ms = in_process_ms(path, params, jobs)
        pool_ms = statistics.median(latencies) * 1e3
        print(f"{label:24} {warm_ms:14.3f} {pool_ms:9.3f} {(pool_ms - warm_ms) * 1e3:12.0f} {cold_ms:16.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s per cell instead of 1.5 s")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: cpu count)")
    args = parser.parse_args()
    seconds = 0.3 if args.quick else 1.5
    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    with tempfile.TemporaryDirectory() as directory:
        files = build_files(Path(directory))
        start = time.perf_counter()
        pool = RenderPool(opener="render_pool:open_path", workers=args.workers)
        pool.start()
        print(f"pool: {pool.workers} workers (forkserver), started in {(time.perf_counter() - start) * 1e3:.0f} ms")
        try:
            print(f"frames/s by concurrent clients ({seconds:g} s per cell); worker ms and parent CPU at 8 clients\n")
            asyncio.run(bench(pool, files, seconds))
            asyncio.run(overhead(pool, files, 50 if args.quick else 300))
            for stats in pool.cache_stats():
                print(f"worker {stats['pid']}: {stats['entries']} cache entries, {stats['bytes'] >> 20} MiB")
        finally:
            pool.close()


if __name__ == "__main__":
    main()
