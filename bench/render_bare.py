"""Benchmark the bare render pipeline (no Django): per-stage times and frames/s on one core.

Usage: python bench/render_bare.py [--quick]

Builds a synthetic 512 x 512 16-bit CT frame (a water cylinder with lungs, bone and noise,
stored values = HU + 1024, Pixel Padding Value -2000 outside the body) as a DICOM object in
memory, then times each stage of viewer.render. "warm" means the decoded frame and the
window table are cached (what scrolling through cached slices costs); "cold" means parse +
decode + render from the DICOM bytes each time. Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import pydicom
import simplejpeg
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from viewer.render import (  # noqa: E402
    PixelSource,
    RenderParams,
    Window,
    apply_watermark,
    display_table,
    encode,
    from_dataset,
    render_frame,
    render_instance,
    resize,
    to_display,
)
from viewer.render.encode import encode_jpeg_pillow  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    repeat = 50 if args.quick else 300

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

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


if __name__ == "__main__":
    main()
