"""Redactions and watermarks composited into the uint8 display pixels before encoding.

Both change the pixels themselves, so no client can strip them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "WATERMARK_FONT_SIZE",
    "apply_redactions",
    "apply_watermark",
    "watermark_alpha",
    "watermark_pitch",
]

WATERMARK_FONT_SIZE = 14
_ANGLE = 30.0  # degrees, counter-clockwise: a diagonal that still reads left to right
_OPACITY = 0.45
_MAX_CELL = 248  # pitch < 256, so every 256 x 256 tile holds a whole period of the pattern
_MIN_CELL = 160
_MIN_FONT_SIZE = 8


def apply_redactions(
    img: np.ndarray,
    rects: Iterable[tuple[int, int, int, int]],
    *,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Set every pixel inside the rectangles to exactly 0, in place.

    Parameters
    ----------
    img : numpy.ndarray
        Writable uint8 (H, W) or (H, W, 3) at source resolution.
    rects : iterable of (x, y, w, h)
        In source pixel coordinates of the whole frame.
    offset : tuple[int, int]
        Source (x, y) of ``img[0, 0]``, i.e. the crop origin.

    Returns
    -------
    numpy.ndarray
        `img`.
    """
    height, width = img.shape[:2]
    ox, oy = offset
    for x, y, w, h in rects:
        # PRIVACY: clip to the image; a rectangle partly outside still blanks what is inside
        x0, y0 = max(0, x - ox), max(0, y - oy)
        x1, y1 = min(width, x - ox + w), min(height, y - oy + h)
        if x0 < x1 and y0 < y1:
            img[y0:y1, x0:x1] = 0
    return img


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, limit: float) -> str:
    """Greedy word wrap to `limit` pixels; words longer than a line are split."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= limit:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:
                if font.getlength(line + char) > limit and line:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return "\n".join(lines)


@functools.lru_cache(maxsize=32)
def _pattern(text: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One periodic cell of the watermark: (light alpha, dark alpha), uint16 0..255."""
    for font_size in range(max(size, _MIN_FONT_SIZE), _MIN_FONT_SIZE - 1, -1):
        font = ImageFont.load_default(size=font_size)
        wrapped = _wrap(text, font, 200.0)
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.multiline_textbbox((0, 0), wrapped, font=font, stroke_width=1, align="center")
        w, h = math.ceil(right - left) + 4, math.ceil(bottom - top) + 4
        rad = math.radians(_ANGLE)
        rotated_w = w * math.cos(rad) + h * math.sin(rad)
        rotated_h = w * math.sin(rad) + h * math.cos(rad)
        if max(rotated_w, rotated_h) + 16 <= _MAX_CELL:
            break
    cell = int(min(_MAX_CELL, max(_MIN_CELL, math.ceil(max(rotated_w, rotated_h)) + 24)))
    with_stroke = Image.new("L", (w, h), 0)
    fill_only = Image.new("L", (w, h), 0)
    origin = (2 - math.floor(left), 2 - math.floor(top))
    ImageDraw.Draw(with_stroke).multiline_text(
        origin, wrapped, font=font, fill=255, stroke_width=1, stroke_fill=255, align="center"
    )
    ImageDraw.Draw(fill_only).multiline_text(origin, wrapped, font=font, fill=255, align="center")
    cells = []
    for layer in (fill_only, with_stroke):
        block = np.asarray(layer.rotate(_ANGLE, Image.Resampling.BICUBIC, expand=True))
        bh, bw = block.shape
        canvas = np.zeros((cell, cell), dtype=np.uint8)
        y0, x0 = (cell - bh) // 2, (cell - bw) // 2
        # Paste with wrap-around so the cell tiles seamlessly
        for dy in (-cell, 0, cell):
            for dx in (-cell, 0, cell):
                top_y, left_x = y0 + dy, x0 + dx
                cy0, cx0 = max(0, top_y), max(0, left_x)
                cy1, cx1 = min(cell, top_y + bh), min(cell, left_x + bw)
                if cy0 < cy1 and cx0 < cx1:
                    part = block[cy0 - top_y : cy1 - top_y, cx0 - left_x : cx1 - left_x]
                    np.maximum(canvas[cy0:cy1, cx0:cx1], part, out=canvas[cy0:cy1, cx0:cx1])
        cells.append(canvas.astype(np.uint16))
    fill, outline_and_fill = cells
    light = (fill * round(_OPACITY * 256)) >> 8
    dark = ((outline_and_fill - np.minimum(fill, outline_and_fill)) * round(_OPACITY * 256)) >> 8
    light.setflags(write=False)
    dark.setflags(write=False)
    return light, dark


def watermark_pitch(text: str, size: int = WATERMARK_FONT_SIZE) -> int:
    """Return the period in pixels of the watermark pattern (always < 256).

    Parameters
    ----------
    text : str
    size : int
        Font size in pixels.

    Returns
    -------
    int
    """
    return int(_pattern(text, size)[0].shape[0])


@functools.lru_cache(maxsize=32)
def _placement(
    text: str, size: int, height: int, width: int, ox: int, oy: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices and alphas of the pattern's non-zero pixels over an image."""
    light, dark = _pattern(text, size)
    cell = light.shape[0]
    rows = (np.arange(height) + oy) % cell
    cols = (np.arange(width) + ox) % cell
    tiled_light = light[np.ix_(rows, cols)].ravel()
    tiled_dark = dark[np.ix_(rows, cols)].ravel()
    index = np.flatnonzero(tiled_light | tiled_dark)
    arrays = (index, tiled_light[index], tiled_dark[index])
    for array in arrays:
        array.setflags(write=False)
    return arrays


def watermark_alpha(
    text: str,
    shape: tuple[int, int],
    *,
    origin: tuple[int, int] = (0, 0),
    size: int = WATERMARK_FONT_SIZE,
) -> np.ndarray:
    """Return the pattern's total opacity (0..255) over an image of `shape`.

    Parameters
    ----------
    text : str
    shape : tuple[int, int]
        (height, width).
    origin : tuple[int, int]
        Pattern coordinates (x, y) of the image's top-left pixel (tile offset).
    size : int

    Returns
    -------
    numpy.ndarray
        uint8 (height, width); zero where the image is left untouched.
    """
    height, width = shape
    index, light, dark = _placement(text, size, height, width, origin[0], origin[1])
    alpha = np.zeros(height * width, dtype=np.uint8)
    alpha[index] = (light + dark).astype(np.uint8)
    return alpha.reshape(height, width)


def apply_watermark(
    img: np.ndarray,
    text: str,
    *,
    origin: tuple[int, int] = (0, 0),
    size: int = WATERMARK_FONT_SIZE,
) -> np.ndarray:
    """Blend a tiled diagonal text pattern (light text, dark outline) into `img`.

    Deterministic integer blending: ``out = (v * (255 - l - d) + 255 * l + 127) // 255``
    with light/dark opacities ``l``/``d`` from the cached pattern; only the pattern's
    pixels are touched. The pitch is below 256 px so every 256 px tile shows the text.

    Parameters
    ----------
    img : numpy.ndarray
        uint8 (H, W) or (H, W, 3).
    text : str
    origin : tuple[int, int]
        Pattern coordinates (x, y) of ``img[0, 0]``; tiles pass their offset so the pattern
        runs on across tile borders.
    size : int
        Font size in pixels.

    Returns
    -------
    numpy.ndarray
        A new uint8 array of the same shape.
    """
    height, width = img.shape[:2]
    out = np.array(img, dtype=np.uint8, order="C", copy=True)
    if not text or not height or not width:
        return out
    index, light, dark = _placement(text, size, height, width, origin[0], origin[1])
    flat: np.ndarray
    if out.ndim == 3:
        flat = out.reshape(-1, out.shape[2])
        light_c, keep = light[:, None], (255 - light - dark)[:, None]
    else:
        flat = out.reshape(-1)
        light_c, keep = light, 255 - light - dark
    values = flat[index].astype(np.uint32)
    flat[index] = ((values * keep + 255 * light_c + 127) // 255).astype(np.uint8)
    return out
