"""256-px tiles over a power-of-two pyramid of the windowed frame.

Level 0 is full resolution; level k is 2**k times smaller (area averaged from level k-1),
down to the first level that fits in one tile. A ``Pyramid`` holds the windowed, redacted
uint8 base image and builds the other levels lazily, once; callers cache the ``Pyramid`` per
(instance UID, frame, window, invert, redactions). Tiles are in source orientation: region,
output size, rotation and flips of ``RenderParams`` do not apply (the client places, scales
and rotates tiles). The watermark is applied per tile at encode time, continuous across
tile borders.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .encode import encode
from .errors import InvalidRenderParams
from .lut import resolve_window, to_display
from .overlay import apply_redactions, apply_watermark
from .params import ImageInfo, RenderParams

__all__ = [
    "TILE_SIZE",
    "Level",
    "Pyramid",
    "build_pyramid",
    "pyramid_levels",
    "render_tile",
    "tile_grid",
]

TILE_SIZE = 256


@dataclass(frozen=True)
class Level:
    """One pyramid level: index, downsampling factor and size in pixels."""

    index: int
    scale: int
    rows: int
    columns: int
    tile_size: int = TILE_SIZE


def pyramid_levels(rows: int, columns: int, tile_size: int = TILE_SIZE) -> tuple[Level, ...]:
    """Return the levels of a power-of-two pyramid, full resolution first.

    Parameters
    ----------
    rows, columns : int
        Size of the full-resolution image.
    tile_size : int

    Returns
    -------
    tuple[Level, ...]
        Level k is ceil(rows / 2**k) x ceil(columns / 2**k); the last fits in one tile.
    """
    if rows < 1 or columns < 1 or tile_size < 1:
        raise InvalidRenderParams(f"pyramid: expected positive sizes, got {columns} x {rows}")
    levels = []
    index = 0
    while True:
        scale = 1 << index
        level = Level(index, scale, -(-rows // scale), -(-columns // scale), tile_size)
        levels.append(level)
        if level.rows <= tile_size and level.columns <= tile_size:
            return tuple(levels)
        index += 1


def tile_grid(level: Level) -> tuple[int, int]:
    """Return (tiles across, tiles down) of a level; edge tiles may be smaller.

    Parameters
    ----------
    level : Level

    Returns
    -------
    tuple[int, int]
    """
    return math.ceil(level.columns / level.tile_size), math.ceil(level.rows / level.tile_size)


class Pyramid:
    """Lazily built levels of one windowed uint8 image (grey or RGB).

    Parameters
    ----------
    base : numpy.ndarray
        uint8 (H, W) or (H, W, 3), already windowed and redacted.
    tile_size : int
    """

    def __init__(self, base: np.ndarray, tile_size: int = TILE_SIZE) -> None:
        if base.dtype != np.uint8:
            raise InvalidRenderParams(f"pyramid base: expected uint8, got {base.dtype}")
        base = np.ascontiguousarray(base)
        base.setflags(write=False)
        self.levels = pyramid_levels(base.shape[0], base.shape[1], tile_size)
        self.tile_size = tile_size
        self._images: list[np.ndarray | None] = [base] + [None] * (len(self.levels) - 1)
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held by the levels built so far (for a bytes-bounded cache)."""
        return sum(image.nbytes for image in self._images if image is not None)

    def _level(self, level: int | Level) -> int:
        index = level.index if isinstance(level, Level) else level
        if not isinstance(index, int) or not 0 <= index < len(self.levels):
            raise InvalidRenderParams(f"level: expected 0..{len(self.levels) - 1}, got {index!r}")
        return index

    def image(self, level: int | Level) -> np.ndarray:
        """Return the whole image of a level, building it (and coarser-than-base parents) once.

        Parameters
        ----------
        level : int | Level

        Returns
        -------
        numpy.ndarray
            Read-only uint8 array.

        Raises
        ------
        InvalidRenderParams
            For a level outside the pyramid.
        """
        index = self._level(level)
        with self._lock:
            for k in range(1, index + 1):
                if self._images[k] is None:
                    parent = self._images[k - 1]
                    assert parent is not None
                    # 2 x 2 area average; odd edges average the pixels that exist
                    reduced = np.asarray(Image.fromarray(parent).reduce(2))
                    reduced.setflags(write=False)
                    self._images[k] = reduced
            image = self._images[index]
        assert image is not None
        return image

    def tile(self, level: int | Level, tx: int, ty: int) -> np.ndarray:
        """Return tile (tx, ty) of a level as a read-only view.

        Parameters
        ----------
        level : int | Level
        tx, ty : int
            Tile column and row.

        Returns
        -------
        numpy.ndarray

        Raises
        ------
        InvalidRenderParams
            For a tile outside the level.
        """
        index = self._level(level)
        across, down = tile_grid(self.levels[index])
        if not (isinstance(tx, int) and isinstance(ty, int) and 0 <= tx < across and 0 <= ty < down):
            raise InvalidRenderParams(f"tile: expected (0..{across - 1}, 0..{down - 1}), got ({tx!r}, {ty!r})")
        size = self.tile_size
        return self.image(index)[ty * size : (ty + 1) * size, tx * size : (tx + 1) * size]

    def render_tile(self, level: int | Level, tx: int, ty: int, params: RenderParams) -> bytes:
        """Encode one tile with the request's watermark, format and quality.

        Parameters
        ----------
        level : int | Level
        tx, ty : int
        params : RenderParams

        Returns
        -------
        bytes

        Raises
        ------
        InvalidRenderParams
        """
        tile = self.tile(level, tx, ty)
        if params.watermark:
            tile = apply_watermark(tile, params.watermark, origin=(tx * self.tile_size, ty * self.tile_size))
        return encode(tile, params.format, params.quality)


def build_pyramid(
    frame_values: np.ndarray, info: ImageInfo, params: RenderParams, tile_size: int = TILE_SIZE
) -> Pyramid:
    """Window and redact a whole frame at source resolution and wrap it in a ``Pyramid``.

    Parameters
    ----------
    frame_values : numpy.ndarray
        Stored values of one frame (from ``decode``).
    info : ImageInfo
    params : RenderParams
        Window, invert and redactions are used.
    tile_size : int

    Returns
    -------
    Pyramid
    """
    window = resolve_window(info, params, frame_values)
    base = to_display(frame_values, info, window, invert=params.invert)
    if params.redactions:
        if np.shares_memory(base, frame_values):
            base = base.copy()
        apply_redactions(base, params.redactions)
    return Pyramid(base, tile_size)


def render_tile(
    frame: np.ndarray,
    info: ImageInfo,
    params: RenderParams,
    level: int | Level,
    tx: int,
    ty: int,
    *,
    pyramid: Pyramid | None = None,
) -> bytes:
    """Render and encode one tile of a frame.

    Parameters
    ----------
    frame : numpy.ndarray
        Stored values of one frame.
    info : ImageInfo
    params : RenderParams
    level : int | Level
    tx, ty : int
    pyramid : Pyramid, optional
        A cached ``build_pyramid(frame, info, params)``; built here when omitted.

    Returns
    -------
    bytes

    Raises
    ------
    InvalidRenderParams
    """
    if pyramid is None:
        pyramid = build_pyramid(frame, info, params)
    return pyramid.render_tile(level, tx, ty, params)
