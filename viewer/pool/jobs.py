"""What the pool is asked to do (jobs) and what it answers (results).

Jobs are small frozen dataclasses, pickled parent -> worker (the parent is trusted). Results
travel worker -> parent without pickle (see ``protocol``), so they hold only bytes, numbers,
strings and the engine's own frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from viewer.render.params import Ellipse, ImageInfo, Rect, RenderParams, Window

__all__ = [
    "InfoJob",
    "InfoResult",
    "Job",
    "MeasureJob",
    "PrefetchJob",
    "RenderJob",
    "RenderResult",
    "Source",
    "TileJob",
    "TranscodeJob",
]


@dataclass(frozen=True)
class Source:
    """One DICOM instance: ``key`` routes and caches it, ``opener_arg`` opens it in a worker.

    ``key`` must identify immutable bytes (a blob id or SOP Instance UID): the worker caches
    the header and decoded frames under it. ``opener_arg`` is handed to the pool's opener
    function in the worker and must pickle small (an id or a path, never the file's bytes).
    """

    key: str
    opener_arg: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise TypeError("Source.key: expected a non-empty str")


@dataclass(frozen=True)
class RenderJob:
    """Render frame ``params.frame`` of ``source`` to an encoded image (``RenderResult``)."""

    source: Source
    params: RenderParams


@dataclass(frozen=True)
class TileJob:
    """Render tile (tx, ty) of pyramid ``level`` of frame ``params.frame`` (``RenderResult``)."""

    source: Source
    params: RenderParams
    level: int
    tx: int
    ty: int


@dataclass(frozen=True)
class MeasureJob:
    """ROI statistics of one frame (a dict, see ``viewer.render.measure_region``)."""

    source: Source
    frame: int
    roi: Rect | Ellipse


@dataclass(frozen=True)
class InfoJob:
    """Header summary and default window of an instance (``InfoResult``); caches frame 0."""

    source: Source


@dataclass(frozen=True)
class PrefetchJob:
    """Decode ``frames`` into the worker's cache; the result is the number newly decoded.

    ``view``, when given, is the view the frames are about to be shown in (its frame is
    ignored): frames are decoded as that view needs them, e.g. only the wavelet levels a fit
    view of a JPEG 2000 image uses (``JobRunner.view_frame``).
    """

    source: Source
    frames: tuple[int, ...] = (0,)
    view: RenderParams | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames", tuple(self.frames))


@dataclass(frozen=True)
class TranscodeJob:
    """Build the fast-decode copy of a JPEG 2000 instance (``RenderResult`` holding a Part 10 file).

    Runs in a worker like any decode of untrusted codestreams, under the same limits (its CPU
    budget scales with the number of frames).
    """

    source: Source
    frames: int = 1


Job = RenderJob | TileJob | MeasureJob | InfoJob | PrefetchJob | TranscodeJob


@dataclass(frozen=True)
class RenderResult:
    """An encoded image: never partial (a failed job raises instead)."""

    data: bytes
    media_type: str
    width: int
    height: int
    cached: bool
    timings_ms: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class InfoResult:
    """What a viewer needs before the first frame: the header as ``ImageInfo`` and the window."""

    info: ImageInfo
    default_window: Window

    def summary(self) -> dict[str, Any]:
        """Return a JSON-safe summary (sizes, frames, window, spacing); escape its strings when shown.

        Returns
        -------
        dict
        """
        info = self.info
        return {
            "rows": info.rows,
            "columns": info.columns,
            "frames": info.number_of_frames,
            "samples_per_pixel": info.samples_per_pixel,
            "photometric_interpretation": info.photometric_interpretation,
            "modality": info.modality,
            "bits_stored": info.bits_stored,
            "pixel_spacing": list(info.pixel_spacing) if info.pixel_spacing else None,
            "pixel_spacing_source": info.pixel_spacing_source,
            "window": {
                "center": self.default_window.center,
                "width": self.default_window.width,
                "function": self.default_window.function,
            },
            "windows": [
                {"center": c, "width": w, "explanation": e}
                for c, w, e in zip(info.window_centers, info.window_widths, info.window_explanations, strict=False)
            ],
        }
