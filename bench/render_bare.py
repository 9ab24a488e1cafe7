"""Benchmark the bare render pipeline (no Django): per-stage times and frames/s on one core.

Usage: python bench/render_bare.py [--quick]

Builds a synthetic 512 x 512 16-bit CT frame (a water cylinder with lungs, bone and noise,
stored values = HU + 1024, Pixel Padding Value -2000 outside the body) as a DICOM object in
memory, then times each stage of viewer.render. "warm" means the decoded frame and the
window table are cached (what scrolling through cached slices costs); "cold" means parse +
decode + render from the DICOM bytes each time. Prints figures only; asserts nothing.

Then three sections built from archive.synthetic (Django-free), each as median ms per
operation, cold (nothing cached: parse + decode from the bytes every time, window table
cache cleared) and warm (decoded frame already in hand, window table cached):

1. a 512 x 512 16-bit CT slice in four transfer syntaxes (uncompressed, RLE, JPEG-LS
   lossless, JPEG 2000 lossless), stage by stage;
2. a 4096 x 5120 16-bit mammogram (uncompressed, JPEG 2000 lossless): fit to a 1024 x 1024
   viewport, full-resolution render, pyramid build and 256 px tiles;
3. one frame of a 60-frame 640 x 480 RGB ultrasound cine (native and RLE), with the bytes
   read from the object counted to show that only one frame is read and decoded.

The last section lists each performance target with "met" or "NOT met". The whole run
takes about a minute on one core (less with --quick).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import PIL
import pydicom
import simplejpeg
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archive.synthetic import compress, ct_study, mammo_image, to_bytes, us_multiframe  # noqa: E402
from viewer.render import (  # noqa: E402
    PixelSource,
    RenderParams,
    Window,
    apply_watermark,
    build_pyramid,
    display_table,
    encode,
    from_dataset,
    render_array,
    render_frame,
    render_instance,
    render_tile,
    resize,
    resolve_window,
    tile_grid,
    to_display,
)
from viewer.render.encode import encode_jpeg_pillow  # noqa: E402
from viewer.render.pipeline import reduction_step  # noqa: E402

ROWS = COLUMNS = 512
WATERMARK = "Shared with Dr Example 2025-06-01 14:02 UTC #7f3a"


def synthetic_ct() -> np.ndarray:
    """HU image of a body cross-section; deterministic."""
    rng = np.random.default_rng(42)
    y, x = np.mgrid[0:ROWS, 0:COLUMNS].astype(np.float64)
    cy, cx = ROWS / 2, COLUMNS / 2
    hu = np.full((ROWS, COLUMNS), -1000.0)
    body = ((x - cx) / 220) ** 2 + ((y - cy) / 180) ** 2 <= 1
    hu[body] = 40.0
    for lung_x in (cx - 90, cx + 90):
        hu[((x - lung_x) / 70) ** 2 + ((y - cy + 10) / 110) ** 2 <= 1] = -820.0
    spine = (x - cx) ** 2 + (y - cy - 120) ** 2 <= 22**2
    hu[spine] = 700.0
    hu[body] += rng.normal(0, 12, body.sum())
    stored = np.rint(hu + 1024).astype(np.int16)
    stored[~body & (hu <= -1000)] = -2000  # padding outside the patient
    return stored


def dicom_bytes(stored: np.ndarray, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelPaddingValue = -2000
    ds.PixelSpacing = [0.7, 0.7]
    ds.PixelData = stored.astype("<i2").tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def timed(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, p90) wall milliseconds of `func`, after one warm-up call."""
    func()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def cpu_per_call(func: Callable[[], object], repeat: int) -> float:
    """CPU milliseconds per call (process time, so time spent waiting is not counted)."""
    func()
    start = time.process_time()
    for _ in range(repeat):
        func()
    return (time.process_time() - start) * 1000 / repeat


def bare_table(repeat: int) -> None:
    """The original table: the benchmark's own 512 x 512 int16 CT, stage by stage."""
    stored = synthetic_ct()
    blob = dicom_bytes(stored)
    source = PixelSource(blob)
    frame = source.decode(0).values
    info = from_dataset(pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True))
    window = Window(40.0, 400.0, "LINEAR")
    windowed = to_display(frame, info, window)
    watermarked = apply_watermark(windowed, WATERMARK)
    params = RenderParams(window_center=40, window_width=400, format="jpeg", quality=90)

    rows: list[tuple[str, float, float]] = []

    def add(name: str, func: Callable[[], object], n: int = repeat) -> None:
        rows.append((name, *timed(func, n)))

    add("parse header + frame index (PixelSource)", lambda: PixelSource(blob))
    add("decode frame, native 16-bit (opened source)", lambda: source.decode(0))
    try:
        rle_blob = dicom_bytes(stored, RLELossless)
        rle_source = PixelSource(rle_blob)
        add("decode frame, RLE lossless", lambda: rle_source.decode(0))
    except Exception as exc:  # noqa: BLE001  - a benchmark reports and goes on
        print(f"(RLE skipped: {type(exc).__name__})")
    try:
        from pydicom.uid import JPEG2000Lossless

        j2k_source = PixelSource(dicom_bytes(stored, JPEG2000Lossless))
        add("decode frame, JPEG 2000 lossless", lambda: j2k_source.decode(0), max(10, repeat // 10))
    except Exception as exc:  # noqa: BLE001
        print(f"(JPEG 2000 skipped: {type(exc).__name__})")

    def build_table() -> None:
        display_table.cache_clear()
        display_table(info, window, False, frame.dtype.str)

    add("window table build (cache miss, 65536 entries)", build_table)
    to_display(frame, info, window)
    add("window/LUT apply (np.take, warm table)", lambda: to_display(frame, info, window))
    add("resize 512->256 (area average, reduce)", lambda: resize(windowed, 256, 256))
    add("resize 512->384 (area average, BOX)", lambda: resize(windowed, 384, 384))
    add("resize 512->1024 (bilinear zoom-in)", lambda: resize(windowed, 1024, 1024))
    add("watermark (cached pattern)", lambda: apply_watermark(windowed, WATERMARK))
    add("encode JPEG q90 simplejpeg", lambda: encode(windowed, "jpeg", 90))
    add("encode JPEG q90 Pillow", lambda: encode_jpeg_pillow(windowed, 90))
    add("encode PNG (zlib level 1)", lambda: encode(windowed, "png"))
    add("encode WebP lossless (method 0)", lambda: encode(windowed, "webp"), max(20, repeat // 5))
    add("warm: render_frame window+JPEG q90", lambda: render_frame(frame, info, params))
    add(
        "warm: + watermark",
        lambda: render_frame(frame, info, RenderParams(**{**params.__dict__, "watermark": WATERMARK})),
    )
    add("cold: parse+decode+render JPEG q90", lambda: render_instance(blob, params))

    sizes = {
        "jpeg simplejpeg": len(encode(windowed, "jpeg", 90)),
        "jpeg Pillow": len(encode_jpeg_pillow(windowed, 90)),
        "png": len(encode(windowed, "png")),
        "webp": len(encode(windowed, "webp")),
    }

    warm_cpu = cpu_per_call(lambda: render_frame(frame, info, params), repeat)
    cold_cpu = cpu_per_call(lambda: render_instance(blob, params), max(20, repeat // 3))
    _ = watermarked

    print(
        f"# viewer.render bare pipeline, synthetic {ROWS}x{COLUMNS} int16 CT, one core\n"
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pydicom {pydicom.__version__}, Pillow {PIL.__version__}, "
        f"simplejpeg {simplejpeg.__version__}"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'stage':<{width}}  {'median ms':>9}  {'p90 ms':>7}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 7}")
    for name, median, p90 in rows:
        print(f"{name:<{width}}  {median:9.3f}  {p90:7.3f}")
    print()
    print(f"warm CPU per frame: {warm_cpu:.3f} ms -> {1000 / warm_cpu:,.0f} frames/s on one core")
    print(f"cold CPU per frame: {cold_cpu:.3f} ms -> {1000 / cold_cpu:,.0f} frames/s on one core")
    print("encoded sizes (bytes): " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    jpeg = {name: median for name, median, _ in rows if name.startswith("encode JPEG")}
    fast = min(jpeg, key=jpeg.__getitem__)
    print(f"JPEG winner: {fast.removeprefix('encode JPEG q90 ')}")


# -- sections built from archive.synthetic -------------------------------------------------

CT_SYNTAXES = (
    ("uncompressed", ExplicitVRLittleEndian),
    ("RLE", RLELossless),
    ("JPEG-LS", JPEGLSLossless),
    ("JPEG 2000", JPEG2000Lossless),
)
VIEWPORT = 1024
TILE_SAMPLES = 200
US_FRAME = 30  # the frame decoded to check that only its bytes are read


class Budget:
    """How long to spend on one measurement: repeat until `seconds`, within [min_n, max_n]."""

    def __init__(self, seconds: float, max_n: int) -> None:
        self.seconds, self.max_n = seconds, max_n


def measure(
    func: Callable[[], object], budget: Budget, *, min_n: int = 3, max_n: int | None = None, warmup: bool = True
) -> list[float]:
    """Wall-clock samples (ms) of `func`; the number of calls follows the budget.

    With ``warmup`` the first call is discarded; without it (calls of seconds) it counts.
    """
    start = time.perf_counter()
    func()
    first = (time.perf_counter() - start) * 1000
    limit = budget.max_n if max_n is None else min(max_n, budget.max_n)
    n = max(min_n, min(limit, int(budget.seconds * 1000 / max(first, 1e-3))))
    samples = [] if warmup else [first]
    while len(samples) < n:
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def ms(value: float) -> str:
    if value < 10:
        return f"{value:.3f}"
    if value < 1000:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def cell(samples: list[float] | None) -> str:
    return "n/a" if not samples else f"{ms(median(samples))} ({len(samples)})"


def print_matrix(title: str, columns: list[str], rows: list[tuple[str, dict[str, str], str]], notes: list[str]) -> None:
    """Rows of (stage, {column: text}, target); "median ms (n samples)" in each cell."""
    print()
    print(title)
    width = max(len(name) for name, _, _ in rows)
    widths = [max(len(column), *(len(cells.get(column, "")) for _, cells, _ in rows)) for column in columns]
    header = f"{'stage':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))
    print(header + "  target")
    print(f"{'-' * width}  " + "  ".join("-" * w for w in widths) + "  ------")
    for name, cells, target in rows:
        line = f"{name:<{width}}  " + "  ".join(
            f"{cells.get(c, ''):>{w}}" for c, w in zip(columns, widths, strict=True)
        )
        print((line + "  " + target).rstrip())
    for note in notes:
        print(f"  {note}")


class Targets:
    """Performance targets and what was measured against them."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, bool | None]] = []

    def at_most(self, name: str, samples: list[float] | None, limit_ms: float) -> str:
        target = f"<= {ms(limit_ms)} ms"
        if not samples:
            self.rows.append((name, "not measured", target, None))
        else:
            value = median(samples)
            self.rows.append((name, f"{ms(value)} ms", target, value <= limit_ms))
        return target

    def at_least(self, name: str, value: float | None, limit: float, unit: str) -> str:
        target = f">= {limit:,.0f} {unit}"
        if value is None:
            self.rows.append((name, "not measured", target, None))
        else:
            self.rows.append((name, f"{value:,.0f} {unit}", target, value >= limit))
        return target

    def print(self) -> None:
        print()
        print("## Targets (median; one core)")
        width = max(len(name) for name, _, _, _ in self.rows)
        measured = max(len(value) for _, value, _, _ in self.rows)
        goal = max(len(target) for _, _, target, _ in self.rows)
        for name, value, target, met in self.rows:
            status = "not measured" if met is None else ("met" if met else "NOT met")
            print(f"{name:<{width}}  {value:>{measured}}  target {target:<{goal}}  {status}")


def decoder_plugin(source: PixelSource) -> str:
    """The decoder plugin pydicom tries first for the source's transfer syntax."""
    if not source.transfer_syntax.is_encapsulated:
        return "native (no codec)"
    available = getattr(source._decoder, "_available", None)  # noqa: SLF001 - report only
    names = list(available) if available else list(source._decoder.available_plugins)  # noqa: SLF001
    return names[0] if names else "?"


def cold(blob: bytes, params: RenderParams) -> Callable[[], object]:
    """render_instance from the bytes with the window table cache emptied first."""

    def run() -> object:
        display_table.cache_clear()
        return render_instance(blob, params)

    return run


def ct_section(budget: Budget, targets: Targets) -> None:
    """512 x 512 16-bit CT slice, per transfer syntax and per stage."""
    base = ct_study(slices=1, size=512)[0]
    params = RenderParams(window_center=40, window_width=400, format="jpeg", quality=90)
    stages = [
        "object size (bytes)",
        "decoder plugin tried first",
        "decoded == uncompressed",
        "parse header + frame index (PixelSource)",
        "decode frame (opened source)",
        "window/LUT (np.take, table cached)",
        "resize to 512 (none: same size)",
        "resize 512->256 (area average)",
        "watermark (512)",
        "encode JPEG q90 (512)",
        "total cold: parse+decode+window+JPEG",
        "total warm: window+JPEG (render_frame)",
    ]
    cells: dict[str, dict[str, str]] = {name: {} for name in stages}
    warm_totals: list[float] = []
    reference = None
    columns = []
    for label, uid in CT_SYNTAXES:
        try:
            blob = to_bytes(compress(base, transfer_syntax=uid))
            source = PixelSource(blob)
            frame = source.decode(0).values
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and goes on
            print(f"(CT {label} skipped: {type(exc).__name__}: {exc})")
            continue
        columns.append(label)
        info = source.info
        if reference is None:
            reference = frame
        window = resolve_window(info, params, frame)
        windowed = to_display(frame, info, window)
        column = {
            "object size (bytes)": f"{len(blob):,}",
            "decoder plugin tried first": decoder_plugin(source),
            "decoded == uncompressed": "yes" if np.array_equal(frame, reference) else "NO",
            "parse header + frame index (PixelSource)": cell(measure(lambda b=blob: PixelSource(b), budget)),
            "decode frame (opened source)": cell(measure(lambda s=source: s.decode(0), budget)),
            "window/LUT (np.take, table cached)": cell(
                measure(lambda f=frame, i=info, w=window: to_display(f, i, w), budget)
            ),
            "resize to 512 (none: same size)": cell(measure(lambda img=windowed: resize(img, 512, 512), budget)),
            "resize 512->256 (area average)": cell(measure(lambda img=windowed: resize(img, 256, 256), budget)),
            "watermark (512)": cell(measure(lambda img=windowed: apply_watermark(img, WATERMARK), budget)),
            "encode JPEG q90 (512)": cell(measure(lambda img=windowed: encode(img, "jpeg", 90), budget)),
            "total cold: parse+decode+window+JPEG": cell(measure(cold(blob, params), budget)),
        }
        warm = measure(lambda f=frame, i=info: render_frame(f, i, params), budget)
        warm_totals.append(median(warm))
        column["total warm: window+JPEG (render_frame)"] = cell(warm)
        for name, text in column.items():
            cells[name][label] = text
    worst = [max(warm_totals)] if warm_totals else None
    target = targets.at_most("512 CT warm window+JPEG q90 (slowest syntax)", worst, 1.0)
    rows = [(name, cells[name], target if name.startswith("total warm") else "") for name in stages]
    print_matrix(
        "## 1. 512x512 16-bit CT slice (archive.synthetic.ct_study, 12 bits stored), window 40/400, JPEG q90",
        columns,
        rows,
        [
            "median ms (number of samples); stages after decode work on the same decoded pixels in every column",
            "cold = render_instance(bytes): parse + frame index + decode + window (table cache emptied) + JPEG, "
            "512x512 out, no watermark",
            "warm = render_frame(decoded frame): window (table cached) + JPEG, 512x512 out",
        ],
    )


class CountingBytesIO(io.BytesIO):
    """BytesIO that counts the bytes handed out, to show what a decode reads."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.count = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.count += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        data = super().read1(size)
        self.count += len(data)
        return data

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        n = super().readinto(buffer)
        self.count += n
        return n

    def readinto1(self, buffer) -> int:  # noqa: ANN001
        n = super().readinto1(buffer)
        self.count += n
        return n


def mammo_section(budget: Budget, quick: bool, targets: Targets) -> None:
    """4096 x 5120 16-bit mammogram: fit to a 1024 viewport, full render, pyramid and tiles."""
    start = time.perf_counter()
    ds = mammo_image(rows=5120, columns=4096)
    variants = [("uncompressed", to_bytes(ds))]
    try:
        variants.append(("JPEG 2000", to_bytes(compress(ds, transfer_syntax=JPEG2000Lossless))))
    except Exception as exc:  # noqa: BLE001
        print(f"(mammogram JPEG 2000 skipped: {type(exc).__name__}: {exc})")
    del ds
    setup_s = time.perf_counter() - start
    fit = RenderParams(width=VIEWPORT, height=VIEWPORT, format="jpeg", quality=90)
    full = RenderParams(format="jpeg", quality=90)

    reference_source = PixelSource(variants[0][1])
    reference = reference_source.decode(0).values
    info = reference_source.info
    out_h, out_w = render_array(reference, info, fit).shape[:2]

    stage_names = [
        "parse header + frame index (PixelSource)",
        "decode frame",
        "window/LUT whole frame (table built)",
        f"resize 4096x5120->{out_w}x{out_h} (area average)",
        f"encode JPEG q90 ({out_w}x{out_h})",
    ]
    rows_cells: dict[str, dict[str, str]] = {}
    results: dict[tuple[str, str], list[float]] = {}

    def put(name: str, label: str, samples: list[float] | None, text: str | None = None) -> None:
        rows_cells.setdefault(name, {})[label] = text if text is not None else cell(samples)
        if samples:
            results[(name, label)] = samples

    for label, blob in variants:
        slow = label != "uncompressed"
        n_cold = (1 if quick else 2) if slow else (3 if quick else 7)
        n_full = 1 if slow else 3
        put("object size (bytes)", label, None, f"{len(blob):,}")
        source = PixelSource(blob)
        put("decoder plugin tried first", label, None, decoder_plugin(source))

        # Cold, stage by stage, all stages timed within the same run
        per_stage: dict[str, list[float]] = {name: [] for name in stage_names}
        totals: list[float] = []
        frame = None
        for _ in range(n_cold):
            display_table.cache_clear()
            t0 = time.perf_counter()
            src = PixelSource(blob)
            t1 = time.perf_counter()
            frame = src.decode(0).values
            t2 = time.perf_counter()
            img = to_display(frame, src.info, resolve_window(src.info, fit, frame))
            t3 = time.perf_counter()
            small = resize(img, out_w, out_h)
            t4 = time.perf_counter()
            encode(small, "jpeg", 90)
            t5 = time.perf_counter()
            for name, a, b in zip(stage_names, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5), strict=True):
                per_stage[name].append((b - a) * 1000)
            totals.append((t5 - t0) * 1000)
            del img, small
        assert frame is not None
        put("decoded == uncompressed", label, None, "yes" if np.array_equal(frame, reference) else "NO")
        # What a fit view decodes: JPEG 2000 stops at the wavelet level it needs
        step_wanted = reduction_step(info, fit)
        reduced_samples, step = [], 1
        for _ in range(n_cold):
            t0 = time.perf_counter()
            reduced, step = PixelSource(blob).decode_reduced(0, step_wanted)
            reduced_samples.append((time.perf_counter() - t0) * 1000)
        put(
            f"cold stage alt: parse + decode for the fit view (decode_reduced), step {step_wanted} wanted",
            label,
            reduced_samples,
            f"{cell(reduced_samples)}, 1/{step} ({reduced.values.shape[1]}x{reduced.values.shape[0]})",
        )
        exact = render_array(frame, info, fit).astype(np.int16)
        from_reduced = render_array(reduced.values, info, fit, step=step).astype(np.int16)
        difference = np.abs(exact - from_reduced)
        put(
            "fit view from it vs from the full frame: mean / p99 / max |8-bit difference|",
            label,
            None,
            f"{difference.mean():.2f} / {np.percentile(difference, 99):.0f} / {difference.max()}",
        )
        del reduced, exact, from_reduced, difference
        for name in stage_names:
            put(f"cold stage: {name}", label, per_stage[name])
        put("cold stages summed", label, totals)
        frame = None
        gc.collect()

        put(
            f"cold fit-{VIEWPORT}: render_instance",
            label,
            measure(cold(blob, fit), budget, min_n=n_cold, max_n=n_cold, warmup=not slow),
        )
        put(
            "cold full-resolution 4096x5120 JPEG: render_instance",
            label,
            measure(cold(blob, full), budget, min_n=n_full, max_n=n_full, warmup=not slow),
        )
        gc.collect()

        # Warm: from the decoded frame (window table cached)
        warm_frame = source.decode(0).values
        window = resolve_window(info, fit, warm_frame)
        windowed = to_display(warm_frame, info, window)
        put(
            "warm stage: window/LUT whole frame (table cached)",
            label,
            measure(lambda f=warm_frame, w=window: to_display(f, info, w), budget, max_n=30),
        )
        put(
            f"warm stage: resize ->{out_w}x{out_h} (area average)",
            label,
            measure(lambda img=windowed: resize(img, out_w, out_h), budget, max_n=30),
        )
        put(
            f"warm fit-{VIEWPORT}: render_frame",
            label,
            measure(lambda f=warm_frame: render_frame(f, info, fit), budget, min_n=5, max_n=30),
        )
        put(
            "warm full-resolution 4096x5120 JPEG: render_frame",
            label,
            measure(lambda f=warm_frame: render_frame(f, info, full), budget, max_n=10),
        )
        del warm_frame, windowed, source
        gc.collect()

    t_cold = targets.at_most(
        f"4096x5120 fit-{VIEWPORT} cold, uncompressed",
        results.get((f"cold fit-{VIEWPORT}: render_instance", "uncompressed")),
        60,
    )
    t_warm = targets.at_most(
        f"4096x5120 fit-{VIEWPORT} warm (uncompressed frame)",
        results.get((f"warm fit-{VIEWPORT}: render_frame", "uncompressed")),
        30,
    )
    t_j2k = targets.at_most(
        f"4096x5120 JPEG 2000 cold whole-image render (fit-{VIEWPORT})",
        results.get((f"cold fit-{VIEWPORT}: render_instance", "JPEG 2000")),
        1500,
    )
    targets.at_most(
        "4096x5120 JPEG 2000 cold whole-image render (full-res out)",
        results.get(("cold full-resolution 4096x5120 JPEG: render_instance", "JPEG 2000")),
        1500,
    )
    order = [
        "object size (bytes)",
        "decoder plugin tried first",
        "decoded == uncompressed",
        *(f"cold stage: {name}" for name in stage_names),
        "cold stages summed",
        f"cold stage alt: parse + decode for the fit view (decode_reduced), step {reduction_step(info, fit)} wanted",
        "fit view from it vs from the full frame: mean / p99 / max |8-bit difference|",
        f"cold fit-{VIEWPORT}: render_instance",
        "cold full-resolution 4096x5120 JPEG: render_instance",
        "warm stage: window/LUT whole frame (table cached)",
        f"warm stage: resize ->{out_w}x{out_h} (area average)",
        f"warm fit-{VIEWPORT}: render_frame",
        "warm full-resolution 4096x5120 JPEG: render_frame",
    ]
    goals = {
        f"cold fit-{VIEWPORT}: render_instance": f"{t_cold} (uncompr.), {t_j2k} (J2K)",
        f"warm fit-{VIEWPORT}: render_frame": t_warm,
        "cold full-resolution 4096x5120 JPEG: render_instance": f"{t_j2k} (J2K)",
    }
    print_matrix(
        f"## 2a. 4096x5120 16-bit mammogram (archive.synthetic.mammo_image, 14 bits stored), "
        f"file window, fit to {VIEWPORT}x{VIEWPORT} -> {out_w}x{out_h}, JPEG q90",
        [label for label, _ in variants],
        [(name, rows_cells.get(name, {}), goals.get(name, "")) for name in order],
        [
            "median ms (number of samples)",
            "cold stage rows: one run = parse, decode, window (table cache emptied), resize, encode, "
            "each timed inside the same run; render_instance rows are the API end to end",
            f"synthetic image + JPEG 2000 encoding took {setup_s:.1f} s (not counted)",
            "render_instance decodes a fit view's JPEG 2000 at the wavelet level it needs (decode_reduced, "
            f"OpenJPEG via Pillow, OPJ_NUM_THREADS={os.environ.get('OPJ_NUM_THREADS')}); the stage rows decode in full",
        ],
    )

    # -- pyramid and tiles, from the decoded (uncompressed) frame --------------------------
    tile_params = RenderParams(format="jpeg", quality=90)
    start = time.perf_counter()
    pyramid = build_pyramid(reference, info, tile_params)
    build_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    pyramid.image(1)
    level1_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    pyramid.image(len(pyramid.levels) - 1)
    rest_ms = (time.perf_counter() - start) * 1000
    across, down = tile_grid(pyramid.levels[0])
    # A tile inside the breast (tissue, not background)
    tx, ty = int(0.3 * info.columns) // 256, int(0.5 * info.rows) // 256
    one_tile = measure(lambda: pyramid.render_tile(0, tx, ty, tile_params), budget)
    one_tile_bytes = len(pyramid.render_tile(0, tx, ty, tile_params))
    rng = np.random.default_rng(0)
    coordinates = [
        (int(x), int(y))
        for x, y in zip(rng.integers(0, across, TILE_SAMPLES), rng.integers(0, down, TILE_SAMPLES), strict=True)
    ]

    def random_tiles(params: RenderParams) -> tuple[list[float], float, int]:
        for x, y in coordinates[:10]:  # warm-up
            render_tile(reference, info, params, 0, x, y, pyramid=pyramid)
        samples, size = [], 0
        begin = time.perf_counter()
        for x, y in coordinates:
            t = time.perf_counter()
            size += len(render_tile(reference, info, params, 0, x, y, pyramid=pyramid))
            samples.append((time.perf_counter() - t) * 1000)
        elapsed = time.perf_counter() - begin
        return samples, len(coordinates) / elapsed, size // len(coordinates)

    plain, plain_rate, plain_size = random_tiles(tile_params)
    marked, marked_rate, marked_size = random_tiles(RenderParams(format="jpeg", quality=90, watermark=WATERMARK))
    t_tile = targets.at_most("256 px tile encode from a cached level (tissue tile)", one_tile, 0.3)
    targets.at_most(f"256 px tile encode, median of {TILE_SAMPLES} random tiles", plain, 0.3)
    t_rate = targets.at_least(f"tiles/s over {TILE_SAMPLES} random full-resolution tiles", plain_rate, 3000, "tiles/s")
    print()
    print("## 2b. Tiles of the 4096x5120 mammogram (viewer.render.tiles), from the decoded frame, JPEG q90")
    levels = ", ".join(f"{level.index}: {level.columns}x{level.rows}" for level in pyramid.levels)
    rows = [
        ("pyramid levels", levels, ""),
        (f"build level 0 (window whole frame, once; {across}x{down} tiles of 256)", f"{ms(build_ms)} ms", ""),
        ("build level 1 from level 0 (2x2 area average, once)", f"{ms(level1_ms)} ms", ""),
        (f"build levels 2..{len(pyramid.levels) - 1} (once)", f"{ms(rest_ms)} ms", ""),
        (
            f"one tile ({tx},{ty}) level 0, encode only (slice + JPEG)",
            f"{ms(median(one_tile))} ms ({len(one_tile)}), {one_tile_bytes:,} B",
            t_tile,
        ),
        (
            f"{TILE_SAMPLES} random level-0 tiles, render_tile(pyramid=...)",
            f"{ms(median(plain))} ms median, {plain_rate:,.0f} tiles/s, {plain_size:,} B avg",
            t_rate,
        ),
        (
            f"{TILE_SAMPLES} random level-0 tiles + watermark",
            f"{ms(median(marked))} ms median, {marked_rate:,.0f} tiles/s, {marked_size:,} B avg",
            "",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    value_width = max(len(value) for _, value, _ in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<{value_width}}  {target}".rstrip())
    print("  tiles/s = tiles / wall time of the whole loop on one core; random tiles include background")


def us_section(budget: Budget, targets: Targets) -> None:
    """One frame of a 60-frame 640 x 480 RGB cine: cold, warm and the bytes actually read."""
    start = time.perf_counter()
    ds = us_multiframe()
    variants = [("native", to_bytes(ds))]
    try:
        variants.append(("RLE", to_bytes(compress(ds, transfer_syntax=RLELossless))))
    except Exception as exc:  # noqa: BLE001
        print(f"(ultrasound RLE skipped: {type(exc).__name__}: {exc})")
    frames, rows, columns = int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns)
    del ds
    setup_s = time.perf_counter() - start
    params = RenderParams(format="jpeg", quality=90)
    cells: dict[str, dict[str, str]] = {}
    warm_native: list[float] | None = None
    reads: list[str] = []
    reference = None
    for label, blob in variants:
        counting = CountingBytesIO(blob)
        source = PixelSource(counting)
        opened = counting.count
        counting.count = 0
        index = source.frame_index()
        indexed = counting.count
        counting.count = 0
        frame = source.decode(US_FRAME).values
        decoded = counting.count
        if reference is None:
            reference = frame
        items = " + item headers" if source.transfer_syntax.is_encapsulated else ""
        reads.append(
            f"{label}: object {len(blob):,} B; open read {opened:,} B (header{items}); "
            f"frame index {len(index)} entries (+{indexed:,} B read); decode frame {US_FRAME} read "
            f"{decoded:,} B = its index span {index[US_FRAME][1]:,} B "
            f"({'exactly one frame' if decoded <= index[US_FRAME][1] else 'MORE than one frame'}; "
            f"one native frame = {rows * columns * 3:,} B, all {frames} = {rows * columns * 3 * frames:,} B)"
        )
        info = source.info
        counter = iter(range(10**9))

        def cold_once(b: bytes = blob, c: Iterator[int] = counter) -> object:
            k = next(c) % frames  # a different frame each time
            src = PixelSource(b)
            src.frame_index()
            return render_instance(src, RenderParams(frame=k, format="jpeg", quality=90))

        warm = measure(lambda f=frame, i=info: render_frame(f, i, params), budget)
        if label == "native":
            warm_native = warm
        windowed = to_display(frame, info)
        column = {
            "object size (bytes)": f"{len(blob):,}",
            "decoder plugin tried first": decoder_plugin(source),
            f"decoded frame {US_FRAME} == native": "yes" if np.array_equal(frame, reference) else "NO",
            "open (PixelSource: header + frame index)": cell(
                measure(lambda b=blob: PixelSource(b).frame_index(), budget)
            ),
            "decode one frame (opened source)": cell(measure(lambda s=source: s.decode(US_FRAME), budget)),
            "display (RGB 8-bit as is)": cell(measure(lambda f=frame, i=info: to_display(f, i), budget)),
            "encode JPEG q90 4:4:4 (640x480 RGB)": cell(measure(lambda img=windowed: encode(img, "jpeg", 90), budget)),
            "total cold: open+index+decode 1 frame+JPEG": cell(measure(cold_once, budget)),
            "total warm: render_frame (decoded frame)": cell(warm),
        }
        for name, text in column.items():
            cells.setdefault(name, {})[label] = text
    target = targets.at_most("US 640x480 RGB frame warm (render_frame -> JPEG)", warm_native, 1.0)
    print_matrix(
        f"## 3. One frame of a {frames}-frame {columns}x{rows} RGB ultrasound (archive.synthetic.us_multiframe), "
        "JPEG q90",
        [label for label, _ in variants],
        [(name, text, target if name.startswith("total warm") else "") for name, text in cells.items()],
        [
            "median ms (number of samples); cold renders a different frame each call",
            *reads,
            f"synthetic cine + RLE encoding took {setup_s:.1f} s (not counted)",
        ],
    )


def machine_line(available_cores: int) -> str:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = " " + line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for dist in (
        "numpy",
        "pydicom",
        "pillow",
        "simplejpeg",
        "pylibjpeg",
        "pylibjpeg-openjpeg",
        "pylibjpeg-libjpeg",
        "pylibjpeg-rle",
        "pyjpegls",
    ):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} absent")
    load = ""
    if hasattr(os, "getloadavg"):
        load = ", load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"# machine: {platform.machine()}{model}, {os.cpu_count()} logical cores "
        f"({available_cores} available, benchmark pinned to 1){load}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()} ({platform.python_implementation()})\n"
        f"# libraries: {', '.join(versions)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 50 if args.quick else 300
    began = time.perf_counter()

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    print(machine_line(available), flush=True)
    bare_table(repeat)
    sys.stdout.flush()

    budget = Budget(0.1 if args.quick else 0.4, repeat)
    targets = Targets()
    ct_section(budget, targets)
    sys.stdout.flush()
    mammo_section(Budget(0.5 if args.quick else 1.0, repeat), args.quick, targets)
    sys.stdout.flush()
    us_section(budget, targets)
    targets.print()
    print(f"\n(total run {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
