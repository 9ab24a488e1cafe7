"""Derived fast-decode copies: JPEG 2000 re-encoded as RLE Lossless for rendering.

JPEG 2000 decodes at ~60 ms per 512x512 frame here, RLE at ~2 ms (bench figures in the README).
The archive keeps the original untouched and stores this copy beside it; the render path reads
the copy when it exists. The copy holds exactly the pixel values the original decodes to (for
lossy JPEG 2000, the decoded lossy values), so every render is the same either way.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG2000Lossless,
    RLELossless,
)

from .decode import DEFAULT_MAX_PIXELS, PixelSource
from .errors import CorruptPixelData, UnsupportedTransferSyntax

FAST_SYNTAX = RLELossless
SLOW_SYNTAXES = frozenset({JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})


def needs_fast_copy(transfer_syntax_uid: str) -> bool:
    """Whether an instance in `transfer_syntax_uid` should get a fast-decode copy.

    Returns
    -------
    bool
        True for transfer syntaxes slow enough to decode that a derived copy pays off.
    """
    return UID(transfer_syntax_uid) in SLOW_SYNTAXES


def fast_lossless_copy(source: bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Return a Part 10 file with the same header and the decoded pixels as RLE Lossless.

    Returns
    -------
    bytes
        The file, with a zeroed preamble, the original SOP Instance UID and RLE Lossless pixels.

    Raises
    ------
    UnsupportedTransferSyntax
        The source is not one of SLOW_SYNTAXES.
    ImageTooLarge, CorruptPixelData
        From the same checks every render makes, before anything is decoded.
    """
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source
    # The render engine's own checks first: pixel budget, frame table, codestream sanity.
    PixelSource(fp, max_pixels=max_pixels)
    fp.seek(0)
    try:
        ds = dcmread(fp, force=False)
    except InvalidDicomError as exc:
        raise CorruptPixelData(f"not a DICOM Part 10 file: {exc}") from None
    syntax = ds.file_meta.TransferSyntaxUID
    if syntax not in SLOW_SYNTAXES:
        raise UnsupportedTransferSyntax(
            f"TransferSyntaxUID (0002,0010): expected JPEG 2000 / HTJ2K for a fast copy, got {syntax}"
        )
    try:
        # decompress converts YBR_ICT / YBR_RCT to RGB and updates the header to match. The copy
        # keeps the SOP Instance UID: it stands for the same instance, it is never served as DICOM.
        ds.decompress(generate_instance_uid=False)
        ds.compress(FAST_SYNTAX, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    except (ValueError, RuntimeError) as exc:
        raise CorruptPixelData(f"PixelData (7FE0,0010): could not transcode ({str(exc)[:200]})") from None
    out = io.BytesIO()
    ds.preamble = b"\0" * 128
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
