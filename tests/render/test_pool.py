"""The render worker pool: same bytes as in-process, routing and caching, isolation.

Worker processes import openers from ``tests/render/pool_openers.py``. Timing bounds here are
generous isolation limits ("within 2 s", "not hung"), not benchmarks (see bench/render_pool.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless, RLELossless

from archive.synthetic import compress, ct_study, us_multiframe
from archive.synthetic import to_bytes as synthetic_bytes
from viewer.pool import (
    ByteLRU,
    InfoJob,
    JobRunner,
    JobTimeout,
    MeasureJob,
    PoolClosed,
    PoolError,
    PrefetchJob,
    RenderFailed,
    RenderJob,
    RenderPool,
    RenderResult,
    Source,
    SourceUnavailable,
    StickyRouter,
    Superseded,
    TileJob,
    WorkerCrashed,
    WorkerMemoryExceeded,
    protocol,
)
from viewer.render import (
    CorruptPixelData,
    Ellipse,
    ImageTooLarge,
    InvalidRenderParams,
    PixelSource,
    Rect,
    RenderParams,
    measure_region,
    render_instance,
    render_tile,
)

from .pool_openers import CountingOpener
from .samples import CT_16_1F, MR_16_1F_RLE, RGB_8_2F_RLE, encapsulated_copy, make_dataset, sample_path

OPENERS = "tests.render.pool_openers"
MIB = 1 << 20
MEMORY_LIMIT = 640 * MIB


def _write(directory: Path, name: str, data: bytes) -> str:
    path = directory / name
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Sample files on disk. Legend: MODALITY_BITS_FRAMES[_SYNTAX], plus broken ones."""
    directory = tmp_path_factory.mktemp("pool")
    ct = ct_study(slices=2, size=64)[0]
    ct_j2k = synthetic_bytes(compress(ct, transfer_syntax=JPEG2000Lossless))
    us = us_multiframe(frames=3, rows=64, columns=80)
    native = synthetic_bytes(ct)

    # JPEG 2000 frame with a mangled COD marker segment (coding style, layers, levels):
    # structurally plausible, so it reaches the codec, which must refuse it
    ds = compress(ct, transfer_syntax=JPEG2000Lossless)
    frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    cod = frame.find(b"\xff\x52") + 4
    frame[cod : cod + 4] = bytes(b ^ 0xFF for b in frame[cod : cod + 4])
    corrupt_j2k = encapsulated_copy(ds, [bytes(frame)])

    # 65535 x 65535 declared in the header, a few bytes of RLE data
    huge = make_dataset(rows=65535, columns=65535, transfer_syntax=RLELossless, bits_stored=16)
    tiny_rle = struct.pack("<16L", 2, 64, 72, *([0] * 13)) + b"\x81\x00" * 4 * 2
    return {
        "CT_16_1F": sample_path(CT_16_1F),
        "MR_16_1F_RLE": sample_path(MR_16_1F_RLE),
        "RGB_8_2F_RLE": sample_path(RGB_8_2F_RLE),
        "CT_16_1F_SYN": _write(directory, "ct.dcm", native),
        "CT_16_1F_J2K": _write(directory, "ct_j2k.dcm", ct_j2k),
        "US_8_3F": _write(directory, "us.dcm", synthetic_bytes(us)),
        "CORRUPT_J2K": _write(directory, "corrupt_j2k.dcm", corrupt_j2k),
        "TRUNCATED": _write(directory, "truncated.dcm", native[:-1000]),
        "HUGE_65535": _write(directory, "huge.dcm", encapsulated_copy(huge, [tiny_rle])),
        "BOMB_20000": _write(directory, "bomb.dcm", _rle_bomb(20000)),
    }


def _rle_bomb(side: int) -> bytes:
    """A 16-bit RLE frame declaring side x side pixels in 8 bytes per segment.

    The decoder allocates its output for the declared size before reading any run.
    """
    ds = make_dataset(rows=side, columns=side, transfer_syntax=RLELossless, bits_stored=16)
    ds.PixelRepresentation = 0
    segment = b"\x81\x00" * 4
    header = struct.pack("<16L", 2, 64, 64 + len(segment), *([0] * 13))
    return encapsulated_copy(ds, [header + segment + segment])


@pytest.fixture(scope="module")
def pool() -> Iterator[RenderPool]:
    with RenderPool(
        opener=f"{OPENERS}:open_path",
        workers=2,
        cache_bytes=32 * MIB,
        memory_limit_bytes=MEMORY_LIMIT,
        job_cpu_seconds=2.0,
        job_wall_seconds=10.0,
    ) as started:
        yield started


def _job(path: str, key: str | None = None, **params: object) -> RenderJob:
    return RenderJob(Source(key or path, path), RenderParams(**params))  # type: ignore[arg-type]


def _vm_peak(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fp:
        for line in fp:
            if line.startswith("VmPeak:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmPeak")


# -- same output as in-process --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("CT_16_1F", {}),
        ("CT_16_1F", {"window_center": 40.0, "window_width": 400.0, "width": 100, "height": 100}),
        ("CT_16_1F", {"rotation": 90, "flip_h": True, "invert": True, "format": "png"}),
        ("CT_16_1F", {"region": (10, 10, 60, 40), "redactions": ((0, 0, 20, 20),), "watermark": "Dr Example"}),
        ("MR_16_1F_RLE", {"format": "webp"}),
        ("CT_16_1F_J2K", {"window_center": -600.0, "window_width": 1500.0}),
        ("US_8_3F", {"frame": 2}),
        ("RGB_8_2F_RLE", {"frame": 1, "width": 50}),
    ],
)
def test_render_equals_in_process_render_byte_for_byte(pool, files, name, params):
    params = RenderParams(**params)
    expected = render_instance(Path(files[name]).read_bytes(), params)
    result = pool.submit(RenderJob(Source(name, files[name]), params)).result(10)
    assert isinstance(result, RenderResult)
    assert result.data == expected
    assert result.media_type == f"image/{params.format}"


def test_result_reports_the_output_size(pool, files):
    result = pool.submit(_job(files["CT_16_1F"], width=64, height=32)).result(10)
    assert (result.width, result.height) == (32, 32)


def test_tile_job_equals_render_tile(pool, files):
    path = files["CT_16_1F_SYN"]
    params = RenderParams(window_center=40.0, window_width=400.0, format="png", watermark="W")
    source = PixelSource(Path(path).read_bytes())
    expected = render_tile(source.decode(0).values, source.info, params, 0, 0, 0)
    first = pool.submit(TileJob(Source("tile", path), params, 0, 0, 0)).result(10)
    again = pool.submit(TileJob(Source("tile", path), params, 0, 0, 0)).result(10)
    assert first.data == again.data == expected
    assert again.cached


def test_measure_job_equals_measure_region(pool, files):
    path = files["CT_16_1F"]
    source = PixelSource(Path(path).read_bytes())
    for roi in (Rect(10, 10, 30, 20), Ellipse(64.0, 64.0, 20.0, 10.0)):
        expected = measure_region(source.decode(0).values, source.info, roi)
        assert pool.submit(MeasureJob(Source("measure", path), 0, roi)).result(10) == expected


def test_info_job_returns_header_summary_and_default_window(pool, files):
    result = pool.submit(InfoJob(Source("info-us", files["US_8_3F"]))).result(10)
    assert result.info == PixelSource(Path(files["US_8_3F"]).read_bytes()).info
    summary = result.summary()
    assert (summary["rows"], summary["columns"], summary["frames"]) == (64, 80, 3)
    assert summary["photometric_interpretation"] == "RGB"


def test_errors_are_the_engines_classes_with_code_and_message(pool, files):
    with pytest.raises(InvalidRenderParams) as caught:
        pool.submit(_job(files["CT_16_1F"], frame=5)).result(10)
    with pytest.raises(InvalidRenderParams) as local:
        render_instance(Path(files["CT_16_1F"]).read_bytes(), RenderParams(frame=5))
    assert str(caught.value) == str(local.value)
    assert caught.value.code == "invalid_render_params"


# -- routing and the frame cache ------------------------------------------------------------


def test_router_spreads_new_keys_evenly_and_keeps_each_key_on_its_worker():
    router = StickyRouter(2)
    slices = [f"blob-{i}" for i in range(8)]
    first = [router.worker_for(key) for key in slices]
    assert first.count(0) == first.count(1) == 4  # a crc32 split these 8 keys 5:3
    assert first[:4] == [0, 1, 0, 1]  # neighbouring slices of a stack alternate
    assert [router.worker_for(key) for key in reversed(slices)] == first[::-1]


def test_router_memory_is_bounded_and_forgets_the_least_recently_used_key():
    router = StickyRouter(3, memory=4)
    for i in range(4):
        router.worker_for(f"k{i}")
    router.worker_for("k0")  # recently used again
    router.worker_for("k4")  # evicts k1, the least recently used
    assert len(router) == 4
    assert set(router._assigned) == {"k0", "k2", "k3", "k4"}


def test_same_key_routes_to_same_worker_and_second_request_is_a_cache_hit(pool, files):
    key = "routing-ct"
    before = pool.cache_stats()[pool.worker_index(key)]
    first = pool.submit(_job(files["CT_16_1F"], key)).result(10)
    second = pool.submit(_job(files["CT_16_1F"], key, window_center=50.0, window_width=350.0)).result(10)
    after = pool.cache_stats()[pool.worker_index(key)]
    assert (first.cached, second.cached) == (False, True)
    assert "decode" in first.timings_ms and "decode" not in second.timings_ms
    assert after["pid"] == before["pid"] == pool.worker_pids()[pool.worker_index(key)]
    assert after["hits"] > before["hits"]


def test_prefetch_decodes_into_the_cache_once(pool, files):
    source = Source("prefetch-us", files["US_8_3F"])
    assert pool.submit(PrefetchJob(source, (0, 1, 2))).result(10) == 3
    assert pool.submit(PrefetchJob(source, (0, 1, 2))).result(10) == 0
    assert pool.submit(RenderJob(source, RenderParams(frame=1))).result(10).cached


def test_runner_opens_and_decodes_once_per_frame_while_cached(files):
    opener = CountingOpener(Path(files["US_8_3F"]).read_bytes())
    runner = JobRunner(opener, ByteLRU(16 * MIB))
    source = Source("us", None)
    for params in (RenderParams(frame=0), RenderParams(frame=0, invert=True), RenderParams(frame=1)):
        runner.run(RenderJob(source, params))
    assert opener.calls == 1  # multi-frame: the source stays open for frame 1
    frame = runner.cache.get(("frame", "us", 0))[0]
    assert not frame.values.flags.writeable


def test_runner_reopens_a_single_frame_source_only_after_its_frame_is_evicted(files):
    data = Path(files["CT_16_1F"]).read_bytes()
    opener = CountingOpener(data)
    frame_bytes = PixelSource(data).decode(0).values.nbytes
    runner = JobRunner(opener, ByteLRU(frame_bytes + 3 * 4096 + 512))
    runner.run(RenderJob(Source("a", None), RenderParams()))
    runner.run(RenderJob(Source("a", None), RenderParams(invert=True)))
    assert opener.calls == 1
    runner.run(RenderJob(Source("b", None), RenderParams()))  # evicts a's frame
    runner.run(RenderJob(Source("a", None), RenderParams()))
    assert opener.calls == 3
    assert runner.cache.nbytes <= runner.cache.max_bytes


def test_lru_respects_max_bytes_and_evicts_least_recently_used():
    cache = ByteLRU(100)
    for key in "abc":
        assert cache.put(key, key.upper(), 40) or key == "c"
    assert "a" not in cache and cache.nbytes == 80
    cache.get("b")
    cache.put("d", "D", 40)
    assert "c" not in cache and list(cache._entries) == ["b", "d"]
    assert cache.put("big", "X", 101) is False and "big" not in cache
    cache.put("b", "B", 60)  # re-accounting an entry that grew
    assert cache.nbytes == 100 and cache.stats()["evictions"] == 2


def test_lru_counts_hits_and_misses():
    cache = ByteLRU(10)
    cache.put("a", 1, 1)
    cache.get("a")
    cache.get("zz")
    assert cache.stats() == {"hits": 1, "misses": 1, "evictions": 0, "entries": 1, "bytes": 1, "max_bytes": 10}


# -- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error"),
    [("CORRUPT_J2K", CorruptPixelData), ("TRUNCATED", CorruptPixelData), ("HUGE_65535", ImageTooLarge)],
)
def test_hostile_file_fails_quickly_with_a_render_error_and_the_pool_still_serves(pool, files, name, error):
    index = pool.worker_index(name)
    pid = pool.worker_pids()[index]
    start = time.monotonic()
    with pytest.raises(error) as caught:
        pool.submit(_job(files[name], name)).result(10)
    assert time.monotonic() - start < 2.0
    assert caught.value.code == error.code
    assert files[name] not in str(caught.value)
    # the same worker is alive, under its memory limit, and serves the next request
    assert pool.worker_pids()[index] == pid
    assert _vm_peak(pid) <= MEMORY_LIMIT
    assert pool.submit(_job(files["CT_16_1F"], name + "-next")).result(10).data


def test_decompression_bomb_within_the_pixel_budget_stops_at_the_memory_limit(files):
    with RenderPool(
        opener=f"{OPENERS}:open_path", workers=1, cache_bytes=16 * MIB, memory_limit_bytes=400 * MIB, max_pixels=1 << 40
    ) as bomb_pool:
        with pytest.raises((WorkerMemoryExceeded, WorkerCrashed)) as caught:
            bomb_pool.submit(_job(files["BOMB_20000"])).result(10)
        assert caught.value.code in ("image_too_large", "worker_crashed")
        pid = bomb_pool.worker_pids()[0]
        assert bomb_pool.submit(_job(files["CT_16_1F"])).result(10).data
        assert _vm_peak(pid) <= 400 * MIB


def test_allocation_over_the_memory_limit_fails_clearly_and_the_worker_survives():
    with RenderPool(opener=f"{OPENERS}:open_hog", workers=1, cache_bytes=16 * MIB, memory_limit_bytes=400 * MIB) as hog:
        pid = hog.worker_pids()[0]
        with pytest.raises(WorkerMemoryExceeded) as caught:
            hog.submit(RenderJob(Source("hog", 1 << 30), RenderParams())).result(10)
        assert isinstance(caught.value, ImageTooLarge)
        assert str(caught.value) == "render exceeded the worker memory limit (400 MiB)"
        with pytest.raises(WorkerMemoryExceeded):
            hog.submit(RenderJob(Source("hog", 1 << 30), RenderParams())).result(10)
        assert hog.worker_pids() == [pid]


def test_opener_failure_is_source_unavailable_without_the_path(pool, tmp_path):
    missing = str(tmp_path / "patient-name.dcm")
    with pytest.raises(SourceUnavailable) as caught:
        pool.submit(_job(missing)).result(10)
    assert str(caught.value) == "could not open the instance (FileNotFoundError)"
    assert "patient-name" in caught.value.detail  # kept for the server log only


# -- crashes, kills and timeouts ------------------------------------------------------------


@pytest.fixture(scope="module")
def tricky() -> Iterator[RenderPool]:
    """One worker whose opener is chosen per job (opener_arg = (function name, argument))."""
    with RenderPool(
        opener=f"{OPENERS}:dispatch",
        workers=1,
        cache_bytes=16 * MIB,
        memory_limit_bytes=MEMORY_LIMIT,
        job_cpu_seconds=0.5,
        job_wall_seconds=1.5,
    ) as started:
        yield started


def _tricky(kind: str, arg: object, key: str | None = None) -> RenderJob:
    return RenderJob(Source(key or f"{kind}-{time.monotonic_ns()}", (kind, arg)), RenderParams())


def test_sigkill_mid_render_fails_only_that_request_and_the_pool_serves_the_next(tricky, files, tmp_path):
    marker = tmp_path / "started"
    doomed = tricky.submit(_tricky("open_slow", (files["CT_16_1F"], str(marker), 1.0)))
    behind = tricky.submit(_tricky("open_path", files["CT_16_1F"]))
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    pid = int(marker.read_text())
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerCrashed) as caught:
        doomed.result(5)
    assert str(caught.value) == "the render worker stopped unexpectedly (signal 9)"
    assert behind.result(5).data  # queued behind the killed job: re-sent to the replacement
    assert tricky.worker_pids()[0] not in (None, pid)
    assert tricky.submit(_tricky("open_path", files["CT_16_1F"])).result(5).data


def test_codec_abort_fails_only_that_request(tricky, files):
    with pytest.raises(WorkerCrashed, match=r"signal 6"):
        tricky.submit(_tricky("open_crash", "")).result(5)
    assert tricky.submit(_tricky("open_path", files["CT_16_1F"])).result(5).data


def test_python_cpu_loop_times_out_and_the_worker_survives(tricky, files):
    pid = tricky.worker_pids()[0]
    start = time.monotonic()
    with pytest.raises(JobTimeout, match=r"render took longer than 0.5 s of CPU time"):
        tricky.submit(_tricky("open_spin_python", 30.0)).result(5)
    assert time.monotonic() - start < 2.0
    assert tricky.worker_pids()[0] == pid
    assert tricky.submit(_tricky("open_path", files["CT_16_1F"])).result(5).data


def test_cpu_loop_inside_c_is_stopped_by_the_kernel_limit_and_replaced(files):
    # sum() over a range never returns to the interpreter, so only RLIMIT_CPU can stop it
    with RenderPool(
        opener=f"{OPENERS}:dispatch", workers=1, cache_bytes=16 * MIB, job_cpu_seconds=0.5, job_wall_seconds=None
    ) as no_wall_clock:
        pid = no_wall_clock.worker_pids()[0]
        start = time.monotonic()
        with pytest.raises(JobTimeout, match=r"render took longer than 0.5 s of CPU time"):
            no_wall_clock.submit(_tricky("open_spin_c", 10**12)).result(10)
        assert time.monotonic() - start < 4.0
        assert no_wall_clock.submit(_tricky("open_path", files["CT_16_1F"])).result(5).data
        assert no_wall_clock.worker_pids()[0] != pid


def test_hang_without_cpu_is_stopped_by_the_wall_clock_limit(tricky, files, tmp_path):
    start = time.monotonic()
    with pytest.raises(JobTimeout, match=r"render took longer than 1.5 s"):
        tricky.submit(_tricky("open_slow", (files["CT_16_1F"], str(tmp_path / "m"), 60.0))).result(5)
    assert time.monotonic() - start < 3.0
    assert tricky.submit(_tricky("open_path", files["CT_16_1F"])).result(5).data


# -- superseding, cancelling, asyncio, shutdown ---------------------------------------------


def test_newer_job_with_the_same_supersede_key_replaces_queued_ones(tricky, files, tmp_path):
    busy = tricky.submit(_tricky("open_slow", (files["CT_16_1F"], str(tmp_path / "m"), 0.3)))
    stale = [tricky.submit(_tricky("open_path", files["CT_16_1F"]), supersedes="viewport-1") for _ in range(3)]
    newest = tricky.submit(_tricky("open_path", files["CT_16_1F"]), supersedes="viewport-1")
    other = tricky.submit(_tricky("open_path", files["CT_16_1F"]), supersedes="viewport-2")
    for future in stale:
        with pytest.raises(Superseded):
            future.result(5)
    assert newest.result(5).data and other.result(5).data and busy.result(5).data


def test_cancelled_future_is_dropped_before_it_runs(tricky, files, tmp_path):
    marker = tmp_path / "never"
    busy = tricky.submit(_tricky("open_slow", (files["CT_16_1F"], str(tmp_path / "m"), 0.3)))
    queued = tricky.submit(_tricky("open_slow", (files["CT_16_1F"], str(marker), 0.0)))
    assert tricky.cancel(queued)
    assert busy.result(5).data
    assert tricky.submit(_tricky("open_path", files["CT_16_1F"])).result(5).data
    assert not marker.exists()


async def test_run_awaits_results_under_asyncio(pool, files):
    jobs = [_job(files["CT_16_1F"], f"async-{i}", window_center=float(i), window_width=400.0) for i in range(6)]
    results = await asyncio.gather(*(pool.run(job) for job in jobs))
    assert len({r.data for r in results}) == 6
    with pytest.raises(CorruptPixelData):
        await pool.run(_job(files["TRUNCATED"]))


def test_close_fails_pending_jobs_and_leaves_no_child_processes(files, tmp_path):
    closing = RenderPool(opener=f"{OPENERS}:dispatch", workers=2, cache_bytes=16 * MIB)
    closing.start()
    pids = closing.worker_pids()
    pending = [
        closing.submit(_tricky("open_slow", (files["CT_16_1F"], str(tmp_path / f"m{i}"), 0.5), key="same"))
        for i in range(4)
    ]
    closing.close()
    for future in pending:
        try:
            future.result(5)
        except PoolClosed:
            pass
    deadline = time.monotonic() + 2
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(PoolClosed):
        closing.submit(_job(files["CT_16_1F"]))


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fp:
            return fp.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_bad_opener_path_fails_start_with_a_clear_error():
    broken = RenderPool(opener=f"{OPENERS}:no_such_opener", workers=1)
    with pytest.raises(PoolError, match=r"could not start: AttributeError"):
        broken.start()


# -- the reply protocol ---------------------------------------------------------------------


def test_error_replies_rebuild_the_same_class_code_and_message():
    for error in (CorruptPixelData("(7FE0,0010) Pixel Data: expected 8 bytes, got 4"), Superseded("x")):
        rebuilt = protocol.decode_reply(protocol.encode_error(7, error)).value
        assert (type(rebuilt), rebuilt.code, str(rebuilt)) == (type(error), error.code, str(error))


def test_unknown_error_class_from_a_worker_becomes_render_failed():
    message = protocol.encode_error(1, CorruptPixelData("m")).replace(b"CorruptPixelData", b"SystemExit______")
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_reply(message[:6])
    assert type(protocol.decode_reply(message).value) is RenderFailed


def test_results_cross_without_pickle_and_keep_their_types():
    result = RenderResult(b"\xff\xd8 bytes", "image/jpeg", 3, 2, True, {"render": 0.5})
    assert protocol.decode_reply(protocol.encode_result(3, result)).value == result
    rebuilt = protocol.decode_reply(protocol.encode_result(4, {"mean": 1.5, "sd": None}))
    assert rebuilt.value == {"mean": 1.5, "sd": None}


# -- replies read by the event loop (loop mode, as under the ASGI server) -----------------------


async def test_in_loop_mode_the_event_loop_reads_replies_and_a_killed_worker_is_replaced(files, tmp_path):
    loop = asyncio.get_running_loop()
    pool = RenderPool(opener=f"{OPENERS}:dispatch", workers=1, cache_bytes=16 * MIB,
                      memory_limit_bytes=MEMORY_LIMIT, job_cpu_seconds=0.5, job_wall_seconds=5.0, loop=loop)
    pool.start()
    try:
        assert all(slot.reader is None for slot in pool._slots)  # no reader threads
        results = await asyncio.gather(*(pool.run(_tricky("open_path", files["CT_16_1F"])) for _ in range(6)))
        assert all(result.data[:2] == b"\xff\xd8" for result in results)  # JPEGs

        marker = tmp_path / "started"
        doomed = asyncio.ensure_future(pool.run(_tricky("open_slow", (files["CT_16_1F"], str(marker), 1.0))))
        behind = asyncio.ensure_future(pool.run(_tricky("open_path", files["CT_16_1F"])))
        for _ in range(500):
            if marker.exists():
                break
            await asyncio.sleep(0.01)
        pid = int(marker.read_text())
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashed):
            await asyncio.wait_for(doomed, 10)
        assert (await asyncio.wait_for(behind, 10)).data  # re-sent to the replacement
        assert pool.worker_pids()[0] not in (None, pid)
        assert (await asyncio.wait_for(pool.run(_tricky("open_path", files["CT_16_1F"])), 10)).data
    finally:
        pool.close()
    assert all(slot.watched_fd is None for slot in pool._slots)  # the loop no longer watches the pipes


def test_a_worker_warm_up_runs_the_whole_engine_on_a_synthetic_image():
    from viewer.pool.warmup import warm_engine

    assert warm_engine() > 100  # a JPEG and a PNG were encoded
