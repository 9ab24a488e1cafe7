"""Decode a JPEG 2000 codestream at a reduced resolution, straight from its wavelet levels.

A JPEG 2000 codestream holds its image as a stack of resolution levels: decoding to level r
reads only the code-blocks of the lower levels and yields the image at 1/2^r of its size, the
wavelet's own low-pass (ISO 15444-1 Annex F). Its sample n is centred on source pixel 2^r n
(the reduced grid keeps every 2^r-th position, B.5), not on the middle of a 2^r block, and
mixes source pixels up to ``LOWPASS_REACH`` x (2^r - 1) away. A 4096 x 5120 mammogram fit to a 1024 viewport
needs no more than its level-2 image, which decodes about 10x faster than the whole frame
(bench/render_bare.py). pydicom's JPEG 2000 decoder (pylibjpeg-openjpeg) decodes only the full
image, so this goes through Pillow's OpenJPEG binding, the one that exposes ``reduce``.

Pillow hands back samples scaled to its mode (a 12-bit image as 16-bit values, signed samples
offset to unsigned); ``decode_reduced`` undoes both using the codestream's own SIZ precision
and sign, so its values are stored values like any other decoder's.
"""

from __future__ import annotations

import io
import os
import warnings
from struct import unpack
from typing import NamedTuple

import numpy as np
from PIL import Image

from .errors import CorruptPixelData

__all__ = ["LOWPASS_REACH", "J2KHeader", "decode_reduced", "read_header", "usable_reduction"]

# The analysis low-pass filters reach 2 (5/3 reversible) or 4 (9/7 irreversible) samples each
# side (ISO 15444-1 Table F.4, F.5); through r levels that is LOWPASS_REACH x (2^r - 1) pixels.
LOWPASS_REACH = 4

_SOC_SIZ = b"\xff\x4f\xff\x51"
_COD = 0x52
_SOT = 0x90

# OpenJPEG reads its decoding thread count from this variable when a codec is created (the
# only way to reach it through Pillow). A reduced decode of a large image then uses every core
# the process is allowed; an explicit setting from the deployment wins.
os.environ.setdefault("OPJ_NUM_THREADS", str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


class J2KHeader(NamedTuple):
    """What the main header says about components and resolution levels."""

    components: int
    precision: int  # bits per sample of component 0
    signed: bool
    levels: int  # wavelet decomposition levels (COD), so the deepest reduction
    at_origin: bool  # the image starts at the reference grid's origin (XOsiz = YOsiz = 0)


def read_header(codestream: bytes) -> J2KHeader:
    """Parse SIZ and COD from a JPEG 2000 main header (ISO 15444-1 A.5.1, A.6.1).

    Parameters
    ----------
    codestream : bytes
        Starting at SOC (a JP2 wrapper is not accepted here).

    Returns
    -------
    J2KHeader

    Raises
    ------
    CorruptPixelData
        No SOC/SIZ, a truncated segment, or no COD before the first tile-part.
    """
    if codestream[:4] != _SOC_SIZ or len(codestream) < 43:
        raise CorruptPixelData("JPEG 2000 codestream: expected SOC FF4F then SIZ FF51, got other bytes")
    # SOC, SIZ marker, Lsiz, Rsiz, 8 x 32-bit sizes and offsets, then Csiz and component 0's Ssiz
    x_offset, y_offset = unpack(">LL", codestream[16:24])
    (components,) = unpack(">H", codestream[40:42])
    ssiz = codestream[42]
    position = 2
    while position + 4 <= len(codestream) and codestream[position] == 0xFF:
        marker = codestream[position + 1]
        if marker == _SOT:
            break
        (length,) = unpack(">H", codestream[position + 2 : position + 4])
        if marker == _COD and position + 10 <= len(codestream):
            # Lcod(2) Scod(1) SGcod(4: progression, layers, MCT) then SPcod's decomposition levels
            levels = codestream[position + 9]
            return J2KHeader(components, (ssiz & 0x7F) + 1, bool(ssiz & 0x80), levels, x_offset == y_offset == 0)
        position += 2 + length
    raise CorruptPixelData("JPEG 2000 main header: expected a COD marker segment before the first tile-part")


def usable_reduction(rows: int, columns: int, reduce: int) -> int:
    """Return the deepest reduction <= `reduce` Pillow decodes for an image of this size.

    Pillow 12 refuses a reduction r ("broken data stream") when a side's length modulo 2^r
    lies in 1 .. 2^(r-1) - 1; it rounds that side's reduced length differently from OpenJPEG.
    Measured over every length modulo 32 (tests/render/test_j2k_reduced.py).

    Parameters
    ----------
    rows, columns : int
    reduce : int
        The reduction wanted.

    Returns
    -------
    int
        0 when none works.
    """

    def _fits(length: int, r: int) -> bool:
        rest = length % (1 << r)
        return rest == 0 or rest >= 1 << (r - 1)

    while reduce > 0 and not (_fits(rows, reduce) and _fits(columns, reduce)):
        reduce -= 1
    return reduce


def decode_reduced(codestream: bytes, reduce: int, header: J2KHeader) -> np.ndarray:
    """Decode a single-component codestream at 1/2^reduce of its size, as stored values.

    Parameters
    ----------
    codestream : bytes
        Already structurally checked (``decode._check_j2k``) and of an allowed size.
    reduce : int
        1..header.levels.
    header : J2KHeader
        From ``read_header(codestream)``: one component, precision <= 16.

    Returns
    -------
    numpy.ndarray
        (ceil(rows / 2^reduce), ceil(columns / 2^reduce)), uint8/uint16 or int16 for signed.

    Raises
    ------
    CorruptPixelData
        OpenJPEG could not decode it (the message keeps only the exception's class).
    """
    try:
        with warnings.catch_warnings():
            # The frame's size was checked against the render budget already
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(codestream), formats=["JPEG2000"]) as image:
                image.reduce = reduce
                image.load()
                samples = np.asarray(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CorruptPixelData(
            f"JPEG 2000 codestream: expected decodable data at reduction {reduce}, got a decoder error "
            f"({type(exc).__name__})"
        ) from exc
    container_bits = 8 * samples.dtype.itemsize
    # Pillow stores (value + signed offset) << (container bits - precision); undo both
    values = samples.astype(np.int32 if header.signed else samples.dtype)  # a writable copy
    shift = container_bits - header.precision
    if shift > 0:
        np.right_shift(values, shift, out=values)
    if header.signed:
        values -= 1 << (header.precision - 1)
        return values.astype(np.int16 if header.precision > 8 else np.int8)
    return np.ascontiguousarray(values)
