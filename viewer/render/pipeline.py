"""The render pipeline: stored values in, encoded image out; plus ROI statistics."""

from __future__ import annotations

import dataclasses
from typing import Any, BinaryIO

import numpy as np

from .decode import DEFAULT_MAX_PIXELS, PixelSource, decodes_reduced
from .encode import encode
from .errors import InvalidRenderParams
from .j2k import LOWPASS_REACH
from .lut import modality_lut, resolve_window, to_display
from .overlay import apply_redactions, apply_watermark
from .params import Ellipse, ImageInfo, Rect, RenderParams, Window
from .viewport import crop_region, orient, output_size, reduce_rect, resize, source_region

__all__ = [
    "WINDOW_BASIS_SIDE",
    "measure_region",
    "needs_data_window",
    "reduction_step",
    "render_array",
    "render_frame",
    "render_instance",
    "window_basis_step",
    "with_window",
]


def _check_frame(frame_values: np.ndarray, info: ImageInfo, step: int = 1) -> None:
    expected = (-(-info.rows // step), -(-info.columns // step))
    if frame_values.shape[:2] != expected:
        raise InvalidRenderParams(f"frame: expected {expected[0]} x {expected[1]} values, got {frame_values.shape}")


def _pixel_aspect(info: ImageInfo) -> float:
    if info.pixel_spacing is None:
        return 1.0
    row_spacing, column_spacing = info.pixel_spacing
    aspect = row_spacing / column_spacing
    # Treat rounding noise in the header as square pixels
    return 1.0 if abs(aspect - 1.0) < 1e-3 else aspect


def _output_size(info: ImageInfo, params: RenderParams, region: tuple[int, int, int, int]) -> tuple[int, int]:
    return output_size(
        region[2],
        region[3],
        params.width,
        params.height,
        rotation=params.rotation,
        pixel_aspect=_pixel_aspect(info),
    )


def _reduced_box(
    region: tuple[int, int, int, int], stored_region: tuple[int, int, int, int], step: int
) -> tuple[float, float, float, float]:
    """Where the source `region` lies in a crop (`stored_region`) of a reduced frame.

    In Pillow's coordinates, where crop pixel j spans [j, j + 1). Reduced sample n is centred
    on source pixel step * n (``j2k``), so source coordinate u is sample (u - 0.5) / step;
    the edges are clamped to the crop, losing at most half a sample at the far edges.
    """
    sx, sy, sw, sh = region
    x0, y0, crop_w, crop_h = stored_region

    def _place(u: int, origin: int, size: int) -> float:
        return min(max((u - 0.5) / step - origin + 0.5, 0.0), float(size))

    return _place(sx, x0, crop_w), _place(sy, y0, crop_h), _place(sx + sw, x0, crop_w), _place(sy + sh, y0, crop_h)


# The data-range default window of an image that decodes reduced comes from its reduced image
# with the longer side at least this long: the same values for every view of it (fit, zoomed,
# tiles), and no whole-image decode just to choose a window.
WINDOW_BASIS_SIDE = 1024


def needs_data_window(info: ImageInfo, params: RenderParams) -> bool:
    """Whether a view's window comes from the frame's data range (none asked for, none in the file).

    Parameters
    ----------
    info : ImageInfo
    params : RenderParams

    Returns
    -------
    bool
    """
    return params.window_center is None and not info.window_centers and not info.voi_luts and info.is_monochrome


def window_basis_step(info: ImageInfo) -> int:
    """Return the reduction whose values define the data-range window of an image that decodes
    reduced: the largest power of two leaving its longer side at least ``WINDOW_BASIS_SIDE``.

    Parameters
    ----------
    info : ImageInfo

    Returns
    -------
    int
        1, 2, 4, ...
    """
    step = 1
    while max(info.rows, info.columns) // (2 * step) >= WINDOW_BASIS_SIDE:
        step *= 2
    return step


def with_window(params: RenderParams, window: Window) -> RenderParams:
    """Return `params` asking for `window` explicitly (its VOI function unless one was asked for).

    Parameters
    ----------
    params : RenderParams
    window : Window

    Returns
    -------
    RenderParams
    """
    return dataclasses.replace(
        params,
        window_center=window.center,
        window_width=window.width,
        voi_function=params.voi_function or window.function,
    )


def reduction_step(info: ImageInfo, params: RenderParams) -> int:
    """Return how many source pixels (a power of two) per output pixel a view can start from.

    A view shrunk 2x or more (a large image fit to a viewport) can be rendered from the image
    reduced by that power of two, which some codestreams decode directly
    (``PixelSource.decode_reduced``); the final resize then shrinks less than 2x.

    Parameters
    ----------
    info : ImageInfo
    params : RenderParams

    Returns
    -------
    int
        1 (full size), 2, 4, ...

    Raises
    ------
    InvalidRenderParams
        A region outside the image.
    """
    region = source_region(info, params)
    out_w, out_h = _output_size(info, params, region)
    if params.rotation in (90, 270):
        out_w, out_h = out_h, out_w
    ratio = min(region[2] / out_w, region[3] / out_h)
    return 1 << (int(ratio).bit_length() - 1) if ratio >= 2 else 1


def render_array(frame_values: np.ndarray, info: ImageInfo, params: RenderParams, *, step: int = 1) -> np.ndarray:
    """Render one frame to display pixels, everything but the encoding.

    Order: crop the region (a view) -> Modality LUT + VOI + photometric (``to_display``) ->
    redactions at source resolution -> resize -> rotate/flip -> watermark. Cropping first is
    equivalent to windowing first (both are per pixel) and cheaper; the default window is
    taken from the whole frame so it does not change while panning.

    Parameters
    ----------
    frame_values : numpy.ndarray
        Stored values of one frame, (rows, columns) or (rows, columns, 3), or of the frame
        reduced `step` times (``PixelSource.decode_reduced``).
    info : ImageInfo
    params : RenderParams
        Region and redactions in source pixels whatever the step; a reduced frame's crop and
        redactions round outward (``reduce_rect``).
    step : int
        Source pixels per value of `frame_values` (at most ``reduction_step(info, params)``).

    Returns
    -------
    numpy.ndarray
        uint8 (H, W) or (H, W, 3), H <= params.height and W <= params.width when given.

    Raises
    ------
    InvalidRenderParams
        Region outside the image or a frame of the wrong shape.
    """
    _check_frame(frame_values, info, step)
    region = source_region(info, params)
    stored_region = reduce_rect(region, step)
    window = None
    if frame_values.ndim == 2 and info.photometric_interpretation != "PALETTE COLOR":
        window = resolve_window(info, params, frame_values)
    img = to_display(crop_region(frame_values, stored_region), info, window, invert=params.invert)
    if params.redactions:
        if np.shares_memory(img, frame_values):
            img = img.copy()
        # PRIVACY: a reduced sample mixes source pixels around it; blank every sample that
        # could carry any redacted pixel, not just those whose block lies inside the rectangle
        margin = LOWPASS_REACH * (step - 1)
        rects = [
            reduce_rect((x - margin, y - margin, w + 2 * margin, h + 2 * margin), step)
            for x, y, w, h in params.redactions
        ]
        apply_redactions(img, rects, offset=(stored_region[0], stored_region[1]))
    out_w, out_h = _output_size(info, params, region)
    box = _reduced_box(region, stored_region, step) if step > 1 else None
    if params.rotation in (90, 270):
        img = resize(img, out_h, out_w, box=box)
    else:
        img = resize(img, out_w, out_h, box=box)
    img = orient(img, params.rotation, params.flip_h, params.flip_v)
    if params.watermark:
        img = apply_watermark(img, params.watermark)
    return img


def render_frame(frame_values: np.ndarray, info: ImageInfo, params: RenderParams, *, step: int = 1) -> bytes:
    """Render one decoded frame to encoded image bytes (deterministic).

    Parameters
    ----------
    frame_values : numpy.ndarray
        Stored values of one frame (from ``decode``; cache these, not the encoded output).
    info : ImageInfo
    params : RenderParams
    step : int
        As ``render_array``.

    Returns
    -------
    bytes
        JPEG, PNG or WebP as ``params.format`` says.

    Raises
    ------
    InvalidRenderParams
    """
    return encode(render_array(frame_values, info, params, step=step), params.format, params.quality)


def render_instance(
    source: bytes | bytearray | memoryview | BinaryIO | PixelSource,
    params: RenderParams,
    info: ImageInfo | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> bytes:
    """Decode frame ``params.frame`` of an instance and render it (parse + decode + render).

    A view shrunk 2x or more decodes only the reduced image it needs where the codestream
    allows (JPEG 2000, see ``reduction_step``); such an image's data-range default window
    comes from one reduced image for every view (``window_basis_step``).

    Parameters
    ----------
    source : bytes | file-like | PixelSource
        The DICOM object (never a path: the archive hands over bytes or a file-like).
    params : RenderParams
    info : ImageInfo, optional
        Overrides the ``ImageInfo`` read from the header.
    max_pixels : int
        Per-frame pixel budget.

    Returns
    -------
    bytes

    Raises
    ------
    UnsupportedTransferSyntax, CorruptPixelData, ImageTooLarge, InvalidRenderParams
    """
    if not isinstance(source, PixelSource):
        source = PixelSource(source, max_pixels=max_pixels)
    info = info or source.info
    wanted = reduction_step(info, params)
    if decodes_reduced(info) and needs_data_window(info, params):
        basis_step = window_basis_step(info)
        basis, step = source.decode_reduced(params.frame, basis_step)
        params = with_window(params, resolve_window(info, params, basis.values))
        if basis_step == wanted:  # a fit view often wants just that level: decode it once
            return render_frame(basis.values, info, params, step=step)
    frame, step = source.decode_reduced(params.frame, wanted)
    return render_frame(frame.values, info, params, step=step)


def _units(info: ImageInfo) -> str:
    """Units of modality values (PS3.3 C.11.1.1.2 Rescale Type, C.11.1.1.1 LUT Type)."""
    if info.modality_lut is not None:
        return info.modality_lut.lut_type
    if info.rescale_type:
        return info.rescale_type
    # PS3.3 C.8.2.1: CT Image rescales to Hounsfield units
    return "HU" if info.modality == "CT" else ""


def measure_region(frame_values: np.ndarray, info: ImageInfo, roi: Rect | Ellipse) -> dict[str, Any]:
    """Return statistics of a monochrome frame inside a rectangle or ellipse.

    Values are modality values (HU for CT, PS3.3 C.11.1); pixels equal to the Pixel Padding
    Value (range) are excluded. A pixel belongs to the ROI when its centre does. ``sd`` is the
    population standard deviation. ``area_mm2`` is the pixel count times the pixel area, from
    Pixel Spacing, or from Imager Pixel Spacing (detector plane, see ``spacing_source``);
    None when the image has neither.

    Parameters
    ----------
    frame_values : numpy.ndarray
        Stored values of one monochrome frame.
    info : ImageInfo
    roi : Rect | Ellipse
        In source pixel coordinates.

    Returns
    -------
    dict
        mean, sd, min, max (float or None when empty), pixels (int), area_mm2, units,
        spacing_source.

    Raises
    ------
    InvalidRenderParams
        Colour image, wrong frame shape or an unknown ROI type.
    """
    _check_frame(frame_values, info)
    if frame_values.ndim != 2 or info.photometric_interpretation == "PALETTE COLOR":
        raise InvalidRenderParams("roi: expected a monochrome image, got colour")
    rows, columns = info.rows, info.columns
    if isinstance(roi, Rect):
        x0, y0 = max(0, roi.x), max(0, roi.y)
        x1, y1 = min(columns, roi.x + roi.w), min(rows, roi.y + roi.h)
        values = frame_values[y0 : max(y0, y1), x0 : max(x0, x1)].ravel()
    elif isinstance(roi, Ellipse):
        if not (roi.rx > 0 and roi.ry > 0):
            raise InvalidRenderParams("roi: expected ellipse radii > 0")
        x0 = max(0, int(np.floor(roi.cx - roi.rx)))
        x1 = min(columns, int(np.ceil(roi.cx + roi.rx)))
        y0 = max(0, int(np.floor(roi.cy - roi.ry)))
        y1 = min(rows, int(np.ceil(roi.cy + roi.ry)))
        ys = (np.arange(y0, max(y0, y1)) + 0.5 - roi.cy) / roi.ry
        xs = (np.arange(x0, max(x0, x1)) + 0.5 - roi.cx) / roi.rx
        inside = ys[:, None] ** 2 + xs[None, :] ** 2 <= 1.0
        values = frame_values[y0 : max(y0, y1), x0 : max(x0, x1)][inside]
    else:
        raise InvalidRenderParams(f"roi: expected Rect or Ellipse, got {type(roi).__name__}")
    padding = info.padding_range()
    if padding is not None and values.dtype.kind in "iu":
        values = values[(values < padding[0]) | (values > padding[1])]
    count = int(values.size)
    spacing = info.pixel_spacing
    area = count * spacing[0] * spacing[1] if spacing else None
    result: dict[str, Any] = {
        "mean": None,
        "sd": None,
        "min": None,
        "max": None,
        "pixels": count,
        "area_mm2": area,
        "units": _units(info),
        "spacing_source": info.pixel_spacing_source,
    }
    if count:
        mapped = modality_lut(values, info)
        result.update(
            mean=float(mapped.mean()),
            sd=float(mapped.std()),
            min=float(mapped.min()),
            max=float(mapped.max()),
        )
    return result
