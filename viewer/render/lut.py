"""Modality LUT, VOI and photometric handling: stored values in, display uint8 out.

Integer data of up to 16 bits goes through one precomputed uint8 table per (image, window,
invert, dtype) that fuses the Modality LUT, the VOI transform, MONOCHROME1 inversion, the
user's invert and Pixel Padding, so windowing a frame is a single ``np.take``. The table is
built by running the float reference maths (``window_float``) over every possible stored
value, so both paths give identical pixels by construction.
"""

from __future__ import annotations

import functools

import numpy as np

from .bands import run_in_bands
from .errors import InvalidRenderParams
from .params import ImageInfo, RenderParams, Window

__all__ = [
    "default_window",
    "display_table",
    "modality_lut",
    "resolve_window",
    "to_display",
    "voi_lut",
    "voi_window",
    "window_float",
]

_Y_MAX = 255.0


def modality_lut(values: np.ndarray, info: ImageInfo) -> np.ndarray:
    """Apply the Modality LUT to stored values (PS3.3 C.11.1).

    Same maths as ``pydicom.pixels.apply_modality_lut``: a Modality LUT Sequence takes
    precedence over Rescale Slope/Intercept (PS3.3 C.11.1.1.2).

    Parameters
    ----------
    values : numpy.ndarray
        Stored values.
    info : ImageInfo

    Returns
    -------
    numpy.ndarray
        float64 modality values (HU for CT).
    """
    lut = info.modality_lut
    if lut is not None:
        entries = lut.values()
        # PS3.3 C.11.1.1.1: inputs below the first mapped value use the first entry,
        # inputs beyond the last use the last entry
        index = np.clip(values.astype(np.int64) - lut.first_mapped, 0, len(entries) - 1)
        return entries[index].astype(np.float64)
    out = values.astype(np.float64)
    if info.rescale_slope != 1.0:
        out *= info.rescale_slope
    if info.rescale_intercept != 0.0:
        out += info.rescale_intercept
    return out


def voi_window(x: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """Map modality values through a VOI window to 0..255 (PS3.3 C.11.2.1.2, C.11.2.1.3).

    LINEAR (C.11.2.1.2.1)::

        x <= c - 0.5 - (w-1)/2 -> 0;  x > c - 0.5 + (w-1)/2 -> 255
        else ((x - (c - 0.5)) / (w-1) + 0.5) * 255

    LINEAR_EXACT (C.11.2.1.3.2)::

        x <= c - w/2 -> 0;  x > c + w/2 -> 255;  else ((x - c) / w + 0.5) * 255

    SIGMOID (C.11.2.1.3.1)::

        255 / (1 + exp(-4 (x - c) / w))

    The clamped branches equal clipping the middle formula to [0, 255], which is how it is
    computed.

    Parameters
    ----------
    x : numpy.ndarray
        Modality values (float).
    center, width : float
        Window Center and Window Width. LINEAR widths below 1 are treated as 1.
    function : str
        'LINEAR', 'LINEAR_EXACT' or 'SIGMOID'.

    Returns
    -------
    numpy.ndarray
        float64 values in [0, 255], not yet rounded.

    Raises
    ------
    InvalidRenderParams
        If the function is unknown or the width is not positive.
    """
    if not width > 0:
        raise InvalidRenderParams(f"window_width: expected > 0, got {width:g}")
    if function == "LINEAR":
        if width <= 1.0:
            # w == 1: the linear segment is empty, a threshold at c - 0.5
            return np.where(x <= center - 0.5, 0.0, _Y_MAX)
        y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * _Y_MAX
    elif function == "LINEAR_EXACT":
        y = ((x - center) / width + 0.5) * _Y_MAX
    elif function == "SIGMOID":
        with np.errstate(over="ignore"):
            return _Y_MAX / (1.0 + np.exp(-4.0 * (x - center) / width))
    else:
        raise InvalidRenderParams(f"voi_function: expected LINEAR/LINEAR_EXACT/SIGMOID, got {function!r}")
    return np.clip(y, 0.0, _Y_MAX)


def voi_lut(x: np.ndarray, info: ImageInfo, index: int = 0) -> np.ndarray:
    """Map modality values through a VOI LUT Sequence item to 0..255 (PS3.3 C.11.2.1.1).

    Parameters
    ----------
    x : numpy.ndarray
        Modality values.
    info : ImageInfo
    index : int
        Which item of the VOI LUT Sequence.

    Returns
    -------
    numpy.ndarray
        float64 values in [0, 255].

    Raises
    ------
    InvalidRenderParams
        If the image has no such VOI LUT.
    """
    if not 0 <= index < len(info.voi_luts):
        raise InvalidRenderParams(f"VOI LUT index: expected 0..{len(info.voi_luts) - 1}, got {index}")
    lut = info.voi_luts[index]
    entries = lut.values()
    # Same indexing as pydicom.pixels.apply_voi_lut: clamp, then truncate to an entry
    position = np.clip(np.floor(x) - lut.first_mapped, 0, len(entries) - 1).astype(np.int64)
    scaled: np.ndarray = entries[position].astype(np.float64) * (_Y_MAX / ((1 << lut.bits) - 1))
    return scaled


def _to_uint8(y: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.rint(np.clip(y, 0.0, _Y_MAX)).astype(np.uint8)
    return out


def default_window(info: ImageInfo, frame_values: np.ndarray | None = None) -> Window:
    """Return the window to use when the viewer asks for none.

    The file's first Window Center/Width (PS3.3 C.11.2.1.2) with its VOI LUT Function, else
    a LINEAR window spanning the modality values of ``frame_values`` (padding excluded),
    else the full range of the stored values.

    Parameters
    ----------
    info : ImageInfo
    frame_values : numpy.ndarray, optional
        Stored values of the frame being shown (not modality values: they are mapped here).

    Returns
    -------
    Window
    """
    if info.window_centers:
        return Window(info.window_centers[0], info.window_widths[0], info.voi_lut_function)
    if frame_values is not None and frame_values.size and frame_values.dtype.kind in "iub":
        values = frame_values
        padding = info.padding_range()
        if padding is not None:
            values = values[(values < padding[0]) | (values > padding[1])]
        if values.size:
            low, high = int(values.min()), int(values.max())
        else:
            low = high = 0
    elif frame_values is not None and frame_values.size:
        mapped = modality_lut(frame_values, info)
        finite = mapped[np.isfinite(mapped)]
        low_f, high_f = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return _span_window(low_f, high_f)
    else:
        if info.is_signed:
            low, high = -(1 << (info.bits_stored - 1)), (1 << (info.bits_stored - 1)) - 1
        else:
            low, high = 0, (1 << info.bits_stored) - 1
    mapped = modality_lut(np.arange(low, high + 1, dtype=np.int64), info)
    return _span_window(float(mapped.min()), float(mapped.max()))


def _span_window(low: float, high: float) -> Window:
    """LINEAR window mapping `low` to 0 and `high` to 255 exactly (PS3.3 C.11.2.1.2.1)."""
    if high - low < 1.0:
        return Window(low + 0.5, 1.0, "LINEAR")
    # center - 0.5 - (width - 1) / 2 == low and center - 0.5 + (width - 1) / 2 == high
    return Window((low + high + 1.0) / 2.0, high - low + 1.0, "LINEAR")


def resolve_window(info: ImageInfo, params: RenderParams, frame_values: np.ndarray | None = None) -> Window:
    """Return the VOI transform a request asks for.

    Order: the request's window; else the file's first window; else the file's first VOI LUT
    Sequence item (PS3.3 C.11.2 lets the application choose between the two); else the data
    range (``default_window``). The request's ``voi_function`` overrides the file's.

    Parameters
    ----------
    info : ImageInfo
    params : RenderParams
    frame_values : numpy.ndarray, optional
        Stored values, used only for the data-range default.

    Returns
    -------
    Window
    """
    function = params.voi_function or info.voi_lut_function
    if params.window_center is not None and params.window_width is not None:
        return Window(params.window_center, params.window_width, function)
    if info.window_centers:
        return Window(info.window_centers[0], info.window_widths[0], function)
    if info.voi_luts:
        return Window(0.0, 0.0, "LUT", 0)
    window = default_window(info, frame_values)
    return Window(window.center, window.width, params.voi_function or window.function)


def window_float(values: np.ndarray, info: ImageInfo, window: Window, *, invert: bool = False) -> np.ndarray:
    """Render monochrome stored values to display uint8 with float maths (reference path).

    Order: Modality LUT (C.11.1) -> VOI (C.11.2) -> MONOCHROME1 inversion (C.7.6.3.1.2) ->
    user invert -> Pixel Padding shown black (C.7.5.1.1.2).

    Parameters
    ----------
    values : numpy.ndarray
        Stored values of any numeric dtype.
    info : ImageInfo
    window : Window
        From ``resolve_window``.
    invert : bool

    Returns
    -------
    numpy.ndarray
        uint8, same shape as `values`.
    """
    x = modality_lut(values, info)
    if window.lut_index is not None:
        y = voi_lut(x, info, window.lut_index)
    else:
        y = voi_window(x, window.center, window.width, window.function)
    out = _to_uint8(np.nan_to_num(y, nan=0.0))
    if (info.photometric_interpretation == "MONOCHROME1") != invert:
        np.subtract(255, out, out=out)
    padding = info.padding_range()
    if padding is not None and values.dtype.kind in "iub":
        out[(values >= padding[0]) & (values <= padding[1])] = 0
    return out


@functools.lru_cache(maxsize=32)
def display_table(info: ImageInfo, window: Window, invert: bool, dtype: str) -> np.ndarray:
    """Return the fused uint8 lookup table for integer stored values of `dtype`.

    Indexed by the unsigned bit pattern of a stored value (``values.view(uintN)``), so signed
    data needs no offset pass. Cached (32 tables, at most 64 KiB each).

    Parameters
    ----------
    info : ImageInfo
    window : Window
    invert : bool
    dtype : str
        ``numpy.dtype.str`` of the stored values: 1- or 2-byte integers.

    Returns
    -------
    numpy.ndarray
        Read-only uint8 table of 256 or 65536 entries.
    """
    kind = np.dtype(dtype)
    bits = 8 * kind.itemsize
    signed = kind.kind == "i"
    # Decoding masks stored values to Bits Stored and sign-extends signed ones, so what a bit
    # pattern displays as depends only on its low `stored_bits` bits: compute those entries and
    # repeat them. 16 times less work for 12-bit CT, where every step of a W/L drag needs a
    # new table (0.24 -> ~0.02 ms per 65536-entry table).
    stored_bits = min(max(int(info.bits_stored), 1), bits)
    low = np.arange(1 << stored_bits, dtype=np.int64)
    if signed:
        low = np.where(low >= 1 << (stored_bits - 1), low - (1 << stored_bits), low)
    stored = low.astype(f"{'i' if signed else 'u'}{kind.itemsize}")
    table = np.tile(window_float(stored, info, window, invert=invert), 1 << (bits - stored_bits))
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=16)
def _palette_table(info: ImageInfo, invert: bool) -> np.ndarray:
    table = info.palette_table()
    if invert:
        table = 255 - table
    table = np.ascontiguousarray(table)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=8)
def _color_scale_table(bits_stored: int, itemsize: int, invert: bool) -> np.ndarray:
    top = (1 << bits_stored) - 1
    values = np.minimum(np.arange(1 << (8 * itemsize), dtype=np.float64), top)
    table = np.rint(values * (_Y_MAX / top)).astype(np.uint8)
    if invert:
        table = 255 - table
    table.setflags(write=False)
    return table


# np.take first casts every index to intp (8 bytes each): 168 MB for a 4096 x 5120 image,
# written and read back through memory. Bands of ~1 MiB of indices stay in cache, which
# halves the time for large images (33 -> 17 ms here) and changes nothing for small ones.
_LOOKUP_BAND_PIXELS = 1 << 17


def _take_mode(table: np.ndarray, indices: np.ndarray) -> str:
    # A table with an entry for every value of the index type never needs clipping, and numpy's
    # "wrap" loop is ~25 % faster than its "clip" loop (4096x5120: 16.3 -> 12.3 ms, one core)
    return "wrap" if len(table) == 1 << (8 * indices.dtype.itemsize) else "clip"


def _lookup(table: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``table[indices]`` for unsigned integer indices (all within the table), in cache-sized bands."""
    mode = _take_mode(table, indices)
    if indices.ndim != 2 or indices.size <= _LOOKUP_BAND_PIXELS:
        return np.take(table, indices, mode=mode)
    out = np.empty(indices.shape, table.dtype)
    step = max(1, _LOOKUP_BAND_PIXELS // indices.shape[1])

    def _band(first: int, end: int) -> None:
        for start in range(first, end, step):
            stop = min(start + step, end)
            np.take(table, indices[start:stop], out=out[start:stop], mode=mode)

    run_in_bands(indices.shape[0], indices.size, _band)
    return out


def to_display(
    values: np.ndarray,
    info: ImageInfo,
    window: Window | None = None,
    *,
    invert: bool = False,
) -> np.ndarray:
    """Turn decoded stored values into display pixels: uint8 grey (H, W) or RGB (H, W, 3).

    Monochrome: Modality LUT + VOI + MONOCHROME1 + invert + padding, through one cached
    table and ``np.take`` for integer data of <= 16 bits, else ``window_float``. PALETTE
    COLOR: the palette (PS3.3 C.7.6.3.1.5) as one table lookup. RGB (decoders return YBR as
    RGB): 8-bit as is, deeper samples scaled by Bits Stored. VOI does not apply to colour
    images (PS3.3 C.11.2), so `window` is ignored for them.

    Parameters
    ----------
    values : numpy.ndarray
        Stored values of one frame, (H, W) or (H, W, 3).
    info : ImageInfo
    window : Window, optional
        From ``resolve_window``; None means ``default_window(info, values)``.
    invert : bool

    Returns
    -------
    numpy.ndarray
        C-contiguous uint8 array.
    """
    if values.ndim == 3:
        if values.dtype == np.uint8:
            return np.subtract(255, values) if invert else np.ascontiguousarray(values)
        if values.dtype.kind in "ui" and values.dtype.itemsize == 2:
            table = _color_scale_table(info.bits_stored, 2, invert)
            return _lookup(table, values.view(np.uint16))
        top = float((1 << min(info.bits_stored, 63)) - 1)
        out = _to_uint8(values.astype(np.float64) * (_Y_MAX / top))
        return np.subtract(255, out) if invert else out
    if info.photometric_interpretation == "PALETTE COLOR":
        palette = _palette_table(info, invert)
        index = values if values.dtype.kind == "u" else values.view(f"u{values.dtype.itemsize}")
        return np.take(palette, index, axis=0, mode="clip")
    if window is None:
        window = default_window(info, values)
    if values.dtype.kind in "iub" and values.dtype.itemsize <= 2:
        if values.dtype.kind == "b":
            values = values.view(np.uint8)
        table = display_table(info, window, invert, values.dtype.str)
        return _lookup(table, values.view(f"u{values.dtype.itemsize}"))
    return window_float(values, info, window, invert=invert)
