"""Run one job against a worker's frame cache: open, decode once, render, encode.

Process-agnostic (no signals, limits or pipes), so it can be exercised in-process; the worker
module wraps it with resource limits and the IPC loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from viewer.render.decode import DEFAULT_MAX_PIXELS, DecodedFrame, PixelSource, decodes_reduced
from viewer.render.encode import MEDIA_TYPES, encode
from viewer.render.errors import InvalidRenderParams, RenderError
from viewer.render.lut import resolve_window
from viewer.render.params import ImageInfo, RenderParams
from viewer.render.pipeline import (
    measure_region,
    needs_data_window,
    reduction_step,
    render_array,
    window_basis_step,
    with_window,
)
from viewer.render.tiles import Pyramid, build_pyramid
from viewer.render.transcode import fast_lossless_copy

from .cache import ByteLRU
from .errors import SourceUnavailable
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

__all__ = ["JobRunner", "Opener"]

Opener = Callable[[Any], Any]

# Sources are accounted at least this much: it bounds the number of open file handles the
# cache can hold (one per cached multi-frame instance) as well as their memory.
_MIN_SOURCE_BYTES = 1 << 20
_INFO_BYTES = 4096
_DEFLATED = "1.2.840.10008.1.2.1.99"
# Cached in place of a reduced frame when a codestream turned out to decode only in full
_DECODES_IN_FULL = "decodes in full"


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _info_nbytes(info: ImageInfo) -> int:
    luts = ([info.modality_lut] if info.modality_lut else []) + list(info.voi_luts)
    return _INFO_BYTES + len(info.palette or b"") + sum(len(lut.data) for lut in luts)


def _source_nbytes(opened: Any, info: ImageInfo) -> int:
    """Memory an open ``PixelSource`` pins: an in-memory file's buffer, inflated data."""
    size = 0
    if isinstance(opened, bytes | bytearray | memoryview):
        size = len(opened)
    elif isinstance(opened, io.BytesIO):
        size = opened.getbuffer().nbytes
    if info.transfer_syntax_uid == _DEFLATED:
        size += info.frame_bytes * info.number_of_frames
    return max(_MIN_SOURCE_BYTES, size + 16 * info.number_of_frames)


def _pyramid_key(params: RenderParams) -> tuple[Any, ...]:
    """The fields a ``Pyramid`` base depends on (tiles ignore viewport, format, watermark)."""
    return (params.window_center, params.window_width, params.voi_function, params.invert, params.redactions)


class JobRunner:
    """Serve jobs from a ``ByteLRU`` of headers, open sources, decoded frames and pyramids.

    Decoded frames are cached as stored values (read-only arrays): the Modality LUT is fused
    into the engine's display table, so caching stored values gives the same pixels as
    caching modality values at a quarter of the memory of float64. Single-frame sources are
    not kept open once decoded (their frame and ``ImageInfo`` are cached); multi-frame ones
    are, so other frames need no second header parse.

    Parameters
    ----------
    opener : callable
        ``opener(source.opener_arg)`` returns a seekable binary file-like (or bytes) holding
        the DICOM object, already decrypted.
    cache : ByteLRU
    max_pixels : int
        Per-frame budget handed to ``PixelSource``.
    critical : callable, optional
        Returns a context manager entered around cache mutations (the worker defers its
        CPU-time signal there so the cache is never left half-updated).
    """

    def __init__(
        self,
        opener: Opener,
        cache: ByteLRU,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        critical: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self._opener = opener
        self.cache = cache
        self._max_pixels = max_pixels
        self._critical = critical

    # -- building blocks -----------------------------------------------------------------

    def open(self, source: Source, timings: dict[str, float]) -> PixelSource:
        """Return the ``PixelSource`` of `source`, from the cache or freshly opened.

        Raises
        ------
        SourceUnavailable
            The opener failed (its exception text is not kept: it may name a path).
        RenderError
            From ``PixelSource`` (corrupt, unsupported, too large).
        """
        cached = self.cache.get(("source", source.key))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        start = time.perf_counter()
        try:
            opened = self._opener(source.opener_arg)
        except (RenderError, MemoryError):
            raise
        except Exception as exc:  # the opener is app code at a process edge: any failure
            raise SourceUnavailable(f"could not open the instance ({type(exc).__name__})") from exc
        pixels = PixelSource(opened, max_pixels=self._max_pixels)
        timings["open"] = _ms(start)
        with self._critical():
            self.cache.put(("info", source.key), pixels.info, _info_nbytes(pixels.info))
            if pixels.info.number_of_frames > 1:
                self.cache.put(("source", source.key), pixels, _source_nbytes(opened, pixels.info))
        return pixels

    def frame(
        self, source: Source, index: int, timings: dict[str, float], pixels: PixelSource | None = None
    ) -> tuple[DecodedFrame, ImageInfo, bool]:
        """Return (decoded frame, image info, whether it came from the cache).

        Raises
        ------
        RenderError
        """
        hit = self.cache.get(("frame", source.key, index))
        if hit is not None:
            return hit[0], hit[1], True
        pixels = pixels or self.open(source, timings)
        start = time.perf_counter()
        decoded = pixels.decode(index)
        # Cached arrays are shared by every later render: make accidental writes fail loudly
        decoded.values.setflags(write=False)
        timings["decode"] = _ms(start)
        with self._critical():
            self.cache.put(("frame", source.key, index), (decoded, pixels.info), decoded.values.nbytes)
        return decoded, pixels.info, False

    def view_frame(
        self,
        source: Source,
        params: RenderParams,
        timings: dict[str, float],
        header: tuple[ImageInfo, PixelSource | None] | None = None,
    ) -> tuple[DecodedFrame, ImageInfo, int, bool]:
        """Return (frame, image info, its step, whether cached) for rendering one view.

        A view shrunk 2x or more of a source that decodes reduced (JPEG 2000) always renders
        from the reduced decode, even when the full frame is cached, so a view's pixels do not
        depend on what happens to be in the cache. Everything else renders the full frame.

        Raises
        ------
        RenderError
        """
        info, pixels = header or self._header(source, params.frame, timings)
        want = reduction_step(info, params) if decodes_reduced(info) else 1
        return self._frame_at(source, params.frame, want, timings, pixels)

    def _header(
        self, source: Source, index: int, timings: dict[str, float]
    ) -> tuple[ImageInfo, PixelSource | None]:
        """The source's ``ImageInfo``, and its ``PixelSource`` if that had to be opened for it."""
        info = self.cache.get(("info", source.key))
        if info is None and (full := self.cache.get(("frame", source.key, index))) is not None:
            info = full[1]  # a cached frame carries its header: no need to open the source again
        if info is not None:
            return info, None
        pixels = self.open(source, timings)
        return pixels.info, pixels

    def _frame_at(
        self, source: Source, index: int, want: int, timings: dict[str, float], pixels: PixelSource | None = None
    ) -> tuple[DecodedFrame, ImageInfo, int, bool]:
        """Frame `index` reduced by up to `want` (``PixelSource.decode_reduced``), cached by `want`."""
        key = ("reduced", source.key, index, want)
        hit = self.cache.get(key) if want > 1 else _DECODES_IN_FULL
        if hit is _DECODES_IN_FULL:
            frame, info, cached = self.frame(source, index, timings, pixels)
            return frame, info, 1, cached
        if hit is not None:
            return hit[0], hit[1], hit[2], True
        pixels = pixels or self.open(source, timings)
        start = time.perf_counter()
        decoded, step = pixels.decode_reduced(index, want)
        decoded.values.setflags(write=False)
        timings["decode"] = _ms(start)
        with self._critical():
            if step > 1:
                self.cache.put(key, (decoded, pixels.info, step), decoded.values.nbytes)
            else:
                # The codestream decodes only in full (e.g. wrapped in JP2): remember that
                self.cache.put(key, _DECODES_IN_FULL, 64)
                self.cache.put(("frame", source.key, index), (decoded, pixels.info), decoded.values.nbytes)
        return decoded, pixels.info, step, False

    def _with_data_window(
        self, source: Source, params: RenderParams, info: ImageInfo, pixels: PixelSource | None, timings: dict[str, float]
    ) -> RenderParams:
        """`params`, with the data-range default window filled in for an image that decodes reduced.

        Every view of such an image (fit, zoomed, tiles, the window the viewer shows) takes it
        from the same reduced image (``window_basis_step``), not from whichever frame it renders.
        """
        if not (decodes_reduced(info) and needs_data_window(info, params)):
            return params
        basis = self._frame_at(source, params.frame, window_basis_step(info), timings, pixels)[0]
        return with_window(params, resolve_window(info, params, basis.values))

    def info(self, source: Source, timings: dict[str, float]) -> ImageInfo:
        """Return the ``ImageInfo`` of `source` (cached header, else open it)."""
        info = self.cache.get(("info", source.key))
        if info is not None:
            return info  # type: ignore[no-any-return]
        return self.open(source, timings).info

    # -- jobs ---------------------------------------------------------------------------

    def run(self, job: Job) -> Any:
        """Run one job and return its result (see ``jobs``).

        Raises
        ------
        RenderError
            Bad input, bad parameters or an opener failure; never a partial result.
        """
        if isinstance(job, RenderJob):
            return self._render(job)
        if isinstance(job, TileJob):
            return self._tile(job)
        if isinstance(job, MeasureJob):
            frame, info, _ = self.frame(job.source, job.frame, {})
            return measure_region(frame.values, info, job.roi)
        if isinstance(job, InfoJob):
            return self._info(job)
        if isinstance(job, PrefetchJob):
            return self._prefetch(job)
        if isinstance(job, TranscodeJob):
            return self._transcode(job)
        raise TypeError(f"unknown job type {type(job).__name__}")

    def _transcode(self, job: TranscodeJob) -> RenderResult:
        try:
            opened = self._opener(job.source.opener_arg)
        except (RenderError, MemoryError):
            raise
        except Exception as exc:  # the opener is app code at a process edge: any failure
            raise SourceUnavailable(f"could not open the instance ({type(exc).__name__})") from exc
        data = fast_lossless_copy(opened, max_pixels=self._max_pixels)
        return RenderResult(data, "application/dicom", 0, 0, False)

    def _render(self, job: RenderJob) -> RenderResult:
        start = time.perf_counter()
        timings: dict[str, float] = {}
        header = self._header(job.source, job.params.frame, timings)
        params = self._with_data_window(job.source, job.params, *header, timings)
        frame, info, step, cached = self.view_frame(job.source, params, timings, header)
        began = time.perf_counter()
        # Same steps as viewer.render.render_frame, split to learn the output size
        img = render_array(frame.values, info, params, step=step)
        data = encode(img, params.format, params.quality)
        timings["render"] = _ms(began)
        timings["total"] = _ms(start)
        return RenderResult(data, MEDIA_TYPES[params.format], img.shape[1], img.shape[0], cached, timings)

    def _tile(self, job: TileJob) -> RenderResult:
        start = time.perf_counter()
        timings: dict[str, float] = {}
        info, pixels = self._header(job.source, job.params.frame, timings)
        params = self._with_data_window(job.source, job.params, info, pixels, timings)
        key = ("pyramid", job.source.key, params.frame, _pyramid_key(params))
        pyramid: Pyramid | None = self.cache.get(key)
        cached = pyramid is not None
        if pyramid is None:
            frame, info, cached = self.frame(job.source, params.frame, timings, pixels)
            pyramid = build_pyramid(frame.values, info, params)
        step = time.perf_counter()
        data = pyramid.render_tile(job.level, job.tx, job.ty, params)
        tile = pyramid.tile(job.level, job.tx, job.ty)
        timings["render"] = _ms(step)
        with self._critical():
            # Re-accounted every time: levels are built lazily, so the pyramid grows
            self.cache.put(key, pyramid, pyramid.nbytes)
        timings["total"] = _ms(start)
        return RenderResult(data, MEDIA_TYPES[params.format], tile.shape[1], tile.shape[0], cached, timings)

    def _info(self, job: InfoJob) -> InfoResult:
        info = self.info(job.source, {})
        params = RenderParams()
        if decodes_reduced(info):
            return InfoResult(info, resolve_window(info, self._with_data_window(job.source, params, info, None, {})))
        values: np.ndarray | None = None
        if needs_data_window(info, params):
            # The default window spans the data, so it needs frame 0 (cached for the render)
            values = self.frame(job.source, 0, {})[0].values
        return InfoResult(info, resolve_window(info, params, values))

    def _prefetch(self, job: PrefetchJob) -> int:
        decoded = 0
        for index in job.frames:
            if job.view is not None:
                try:
                    decoded += not self.view_frame(job.source, dataclasses.replace(job.view, frame=index), {})[3]
                    continue
                except InvalidRenderParams:
                    pass  # the view does not fit this neighbour (another size): decode it plainly
            if ("frame", job.source.key, index) not in self.cache:
                self.frame(job.source, index, {})
                decoded += 1
        return decoded
