"""Viewport maths: region crop, output size, area-averaging resize, rotation and flips."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .bands import run_in_bands
from .errors import InvalidRenderParams
from .params import ImageInfo, RenderParams

__all__ = ["crop_region", "orient", "output_size", "reduce_rect", "resize", "source_region"]


def source_region(info: ImageInfo, params: RenderParams) -> tuple[int, int, int, int]:
    """Return the requested region (sx, sy, sw, sh), the whole image when none is given.

    Parameters
    ----------
    info : ImageInfo
    params : RenderParams

    Returns
    -------
    tuple[int, int, int, int]

    Raises
    ------
    InvalidRenderParams
        If the region does not lie inside the image.
    """
    if params.region is None:
        return (0, 0, info.columns, info.rows)
    sx, sy, sw, sh = params.region
    if sx + sw > info.columns or sy + sh > info.rows:
        raise InvalidRenderParams(f"region: expected inside {info.columns} x {info.rows}, got ({sx}, {sy}, {sw}, {sh})")
    return params.region


def crop_region(img: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """Return a view of `img` restricted to (sx, sy, sw, sh).

    Parameters
    ----------
    img : numpy.ndarray
        (H, W) or (H, W, C).
    region : tuple[int, int, int, int]

    Returns
    -------
    numpy.ndarray
        A view, no copy.
    """
    sx, sy, sw, sh = region
    return img[sy : sy + sh, sx : sx + sw]


def reduce_rect(rect: tuple[int, int, int, int], step: int) -> tuple[int, int, int, int]:
    """Map a source rectangle (x, y, w, h) onto an image reduced `step` times, rounding outward.

    Outward, so a reduced pixel that covers any part of the rectangle belongs to it: a crop
    keeps every pixel it needs, and a redaction blanks everything it touches (never less).

    Parameters
    ----------
    rect : tuple[int, int, int, int]
    step : int
        Source pixels per reduced pixel, >= 1.

    Returns
    -------
    tuple[int, int, int, int]
    """
    x, y, w, h = rect
    x0, y0 = x // step, y // step
    return x0, y0, -(-(x + w) // step) - x0, -(-(y + h) // step) - y0


def output_size(
    region_width: int,
    region_height: int,
    width: int | None,
    height: int | None,
    *,
    rotation: int = 0,
    pixel_aspect: float = 1.0,
) -> tuple[int, int]:
    """Return the output (width, height) after rotation, never above the requested box.

    The region keeps its physical aspect ratio (``pixel_aspect`` is row spacing / column
    spacing, PS3.3 C.7.6.3.1 and 10.7.1.3) and is scaled to fit inside ``width`` x
    ``height`` (PS3.18 8.3.5.1.3: "scaled to fit the viewport, maintaining aspect ratio").
    With only one of them given the other follows the aspect; with neither the region is
    shown one source column per output pixel.

    Parameters
    ----------
    region_width, region_height : int
        Source pixels.
    width, height : int | None
        Requested bounds in output pixels.
    rotation : int
        0, 90, 180 or 270; 90 and 270 swap the axes.
    pixel_aspect : float

    Returns
    -------
    tuple[int, int]
        (width, height) of the output image, each >= 1.
    """
    natural_w = float(region_width)
    natural_h = region_height * pixel_aspect
    if rotation in (90, 270):
        natural_w, natural_h = natural_h, natural_w
    if width is None and height is None:
        return max(1, round(natural_w)), max(1, round(natural_h))
    scales = []
    if width is not None:
        scales.append(width / natural_w)
    if height is not None:
        scales.append(height / natural_h)
    scale = min(scales)
    out_w = max(1, round(natural_w * scale))
    out_h = max(1, round(natural_h * scale))
    if width is not None:
        out_w = min(out_w, width)
    if height is not None:
        out_h = min(out_h, height)
    return out_w, out_h


def resize(
    img: np.ndarray, width: int, height: int, *, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Resample uint8 `img` (or the part of it inside `box`) to width x height.

    Shrinking uses area averaging (Pillow BOX, i.e. the mean of the source pixels each
    output pixel covers), so thin structures fade rather than alias; enlarging uses bilinear
    interpolation. Pillow's resampling is deterministic.

    Parameters
    ----------
    img : numpy.ndarray
        uint8 (H, W) or (H, W, 3).
    width, height : int
    box : tuple[float, float, float, float], optional
        (left, top, right, bottom) in pixel coordinates of `img` (pixel i spans [i, i + 1)),
        within the image; the whole image when None.

    Returns
    -------
    numpy.ndarray
        uint8 (height, width[, 3]); `img` itself when the size already matches.
    """
    src_h, src_w = img.shape[:2]
    left, top, right, bottom = box if box is not None else (0.0, 0.0, float(src_w), float(src_h))
    if box is None and (src_w, src_h) == (width, height):
        return img
    shrinking = width <= right - left and height <= bottom - top
    image = Image.fromarray(np.ascontiguousarray(img))
    if shrinking:
        factor_x, factor_y = src_w // width, src_h // height
        if box is None and factor_x > 1 and factor_y > 1 and src_w % width == 0 and src_h % height == 0:
            # Exact integer box: reduce() is the same mean and several times faster
            return np.asarray(image.reduce((factor_x, factor_y)))
        filt = Image.Resampling.BOX
    else:
        filt = Image.Resampling.BILINEAR
    if filt is not Image.Resampling.BOX:
        return np.asarray(image.resize((width, height), filt, box=(left, top, right, bottom)))
    # Large shrinks in bands of output rows on several threads (see render.bands): the source
    # box of a band starts exactly where its first output row's pixels start, so the result
    # is bit-identical to one whole-image resize.
    out = np.empty((height, width, *img.shape[2:]), np.uint8)
    scale = (bottom - top) / height

    def _band(first: int, end: int) -> None:
        band = (left, top + first * scale, right, top + end * scale)
        out[first:end] = np.asarray(image.resize((width, end - first), filt, box=band))

    run_in_bands(height, src_w * src_h, _band)
    return out


def orient(img: np.ndarray, rotation: int, flip_h: bool, flip_v: bool) -> np.ndarray:
    """Rotate clockwise by `rotation` degrees, then mirror (flips act on the rotated image).

    Parameters
    ----------
    img : numpy.ndarray
    rotation : int
        0, 90, 180 or 270.
    flip_h, flip_v : bool
        Mirror left-right / top-bottom.

    Returns
    -------
    numpy.ndarray
        C-contiguous.

    Raises
    ------
    InvalidRenderParams
        For any other rotation.
    """
    if rotation not in (0, 90, 180, 270):
        raise InvalidRenderParams(f"rotation: expected 0, 90, 180, 270, got {rotation!r}")
    out = np.rot90(img, k=-(rotation // 90)) if rotation else img
    if flip_h:
        out = out[:, ::-1]
    if flip_v:
        out = out[::-1]
    return np.ascontiguousarray(out)
