"""Decode one frame of one instance from bytes or a seekable file-like object.

``PixelSource`` parses the header once (stopping at the pixel data), checks the byte lengths
against the Image Pixel module and the pixel budget before anything is decoded, and for
encapsulated data builds a frame index (Extended Offset Table, Basic Offset Table, or a walk
over the item headers) once. Decoding frame ``n`` then reads only that frame's bytes and
hands them to pydicom's decoders (``pydicom.pixels``), so a 60-frame object never has its
other 59 frames read or decoded.
"""

from __future__ import annotations

import io
import sys
import threading
import zlib
from collections.abc import Callable
from struct import unpack
from typing import Any, BinaryIO, NamedTuple

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_dataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import UID

from . import j2k
from .errors import (
    CorruptPixelData,
    ImageTooLarge,
    InvalidRenderParams,
    UnsupportedTransferSyntax,
)
from .params import ImageInfo, from_dataset

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedFrame",
    "PixelSource",
    "decode_frame",
    "decodes_reduced",
    "frame_index",
]

# Per-frame budget in samples (rows x columns x samples per pixel): 8192 x 8192 greyscale,
# larger than any CT/MR/CR/DX/MG frame; whole-slide images arrive tiled.
DEFAULT_MAX_PIXELS = 8192 * 8192
# Upper bound on inflated bytes of a Deflated Explicit VR Little Endian object.
DEFAULT_MAX_INFLATED_BYTES = 1 << 30

_DEFLATED = "1.2.840.10008.1.2.1.99"
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_JPEG_FAMILY = ("1.2.840.10008.1.2.4.5", "1.2.840.10008.1.2.4.7", "1.2.840.10008.1.2.4.8")
_J2K_FAMILY = ("1.2.840.10008.1.2.4.9", "1.2.840.10008.1.2.4.20")
_RLE = "1.2.840.10008.1.2.5"

# Where several installed plugins decode a syntax, the fastest measured one (bench/render_bare.py:
# a 512x512 16-bit JPEG-LS frame takes 4.7 ms with CharLS/pyjpegls, 18 ms with pylibjpeg-libjpeg).
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS Near-Lossless
}


class DecodedFrame(NamedTuple):
    """One decoded frame: stored values, whether they are colour, and their photometric."""

    values: np.ndarray
    is_color: bool
    photometric_interpretation: str


def _at_top_level_pixel_data(tag: BaseTag, vr: str | None, length: int) -> bool:
    return int(tag) in _PIXEL_TAGS


def _not_group_2(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group != 2


# Native frames whose stored bytes are already the array numpy needs: read them straight into
# it. pydicom's native path reads in pieces, copies, then shifts: 37 ms for a 4096x5120
# 16-bit frame, against 17 ms for one read and one in-place pass (bench/render_bare.py).
_DIRECT_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB"})


def _read_exact_into(fp: BinaryIO, offset: int, view: memoryview) -> None:
    """Fill `view` from `offset`, however short the reads; CorruptPixelData if the bytes end first."""
    fp.seek(offset)
    filled = 0
    while filled < len(view):
        got = fp.readinto(view[filled:])
        if not got:
            raise CorruptPixelData(
                f"(7FE0,0010) Pixel Data: expected {len(view)} bytes at offset {offset}, got {filled} (truncated)"
            )
        filled += got


def _read_exact(fp: BinaryIO, offset: int, length: int) -> bytearray:
    data = bytearray(length)
    _read_exact_into(fp, offset, memoryview(data))
    return data


class PixelSource:
    """An opened instance: header, ``ImageInfo`` and random access to decoded frames.

    Thread-safe: reads from the underlying file-like object happen under a lock and decoding
    works on private copies of the frame bytes.

    Parameters
    ----------
    source : bytes | bytearray | memoryview | BinaryIO
        A DICOM File Format object (128-byte preamble, 'DICM', File Meta Information).
        A file-like must be seekable; it is not closed.
    max_pixels : int
        Per-frame budget, rows x columns x samples per pixel.
    max_inflated_bytes : int
        Budget for Deflated Explicit VR Little Endian objects once inflated.

    Raises
    ------
    CorruptPixelData
        Not DICOM, missing or inconsistent Image Pixel module, pixel data shorter than the
        header says, or a broken encapsulation.
    UnsupportedTransferSyntax
        No (0002,0010) or no decoder for it.
    ImageTooLarge
        Frame dimensions over ``max_pixels`` (checked before any pixel buffer exists).
    """

    def __init__(
        self,
        source: bytes | bytearray | memoryview | BinaryIO,
        *,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES,
    ) -> None:
        if isinstance(source, bytes | bytearray | memoryview):
            fp: BinaryIO = io.BytesIO(bytes(source))
        else:
            fp = source
        self._lock = threading.Lock()
        self._frames: list[tuple[int, int]] | None = None
        with self._lock:
            self._fp, self.dataset, self._pixel = self._read_header(fp, max_inflated_bytes)
        self.info: ImageInfo = from_dataset(self.dataset)
        self.transfer_syntax = UID(self.info.transfer_syntax_uid)
        self._check_budget(max_pixels)
        self._decoder = self._find_decoder()
        if self.transfer_syntax.is_encapsulated:
            with self._lock:
                self._frames = self._index_encapsulated()
        else:
            self._check_native_length()

    # -- header -------------------------------------------------------------------------

    def _read_header(self, fp: BinaryIO, max_inflated_bytes: int) -> tuple[BinaryIO, Dataset, dict[str, Any]]:
        fp.seek(0, io.SEEK_END)
        size = fp.tell()
        fp.seek(0)
        preamble = fp.read(132)
        if len(preamble) != 132 or preamble[128:] != b"DICM":
            raise CorruptPixelData("File Meta Information: expected a 128-byte preamble and 'DICM', got neither")
        try:
            meta = read_dataset(fp, False, True, stop_when=_not_group_2)
        except Exception as exc:  # pydicom raises assorted errors on garbage
            raise CorruptPixelData(
                f"File Meta Information: expected group 0002 elements, got {type(exc).__name__}"
            ) from None
        tsyntax = str(meta.get("TransferSyntaxUID", "") or "").strip()
        if not tsyntax:
            raise UnsupportedTransferSyntax("(0002,0010) Transfer Syntax UID: expected a UID, got missing")
        uid = UID(tsyntax)
        if not uid.is_transfer_syntax:
            # PRIVACY: a UID is digits and dots; anything else is not echoed
            shown = repr(tsyntax[:64]) if uid.is_valid else "an invalid UID"
            raise UnsupportedTransferSyntax(
                f"(0002,0010) Transfer Syntax UID: expected a known transfer syntax, got {shown}"
            )
        if tsyntax == _DEFLATED:
            fp = self._inflate(fp, max_inflated_bytes)
            size = len(fp.getbuffer())
        try:
            ds = read_dataset(fp, uid.is_implicit_VR, uid.is_little_endian, stop_when=_at_top_level_pixel_data)
        except Exception as exc:
            raise CorruptPixelData(f"Dataset: expected a parsable header, got {type(exc).__name__}") from None
        ds.file_meta = FileMetaDataset(meta)
        ds.set_original_encoding(uid.is_implicit_VR, uid.is_little_endian)
        return fp, ds, self._read_pixel_header(fp, uid, size)

    @staticmethod
    def _inflate(fp: BinaryIO, max_inflated_bytes: int) -> io.BytesIO:
        # SECURITY: bounded inflation; pydicom's reader inflates the whole stream at once,
        # which turns a small deflate bomb into an unbounded allocation.
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflater.decompress(fp.read(), max_inflated_bytes)
        except zlib.error:
            raise CorruptPixelData("Deflated dataset: expected a valid deflate stream, got a corrupt one") from None
        if inflater.unconsumed_tail:
            raise ImageTooLarge(f"Deflated dataset: expected at most {max_inflated_bytes} bytes inflated, got more")
        return io.BytesIO(body)

    @staticmethod
    def _read_pixel_header(fp: BinaryIO, uid: UID, size: int) -> dict[str, Any]:
        start = fp.tell()
        head = fp.read(8)
        if len(head) < 8:
            raise CorruptPixelData("(7FE0,0010) Pixel Data: expected present, got missing")
        endian = "<" if uid.is_little_endian else ">"
        group, element = unpack(f"{endian}HH", head[:4])
        tag = group << 16 | element
        if tag not in _PIXEL_TAGS:
            raise CorruptPixelData("(7FE0,0010) Pixel Data: expected present, got missing")
        vr = None
        # Lenient on purpose, like pydicom: some writers encode the Pixel Data element
        # implicitly inside an explicit VR dataset (no VR, 4-byte length).
        implicit = uid.is_implicit_VR or not head[4:6].isalpha() or not head[4:6].isupper()
        if implicit:
            (length,) = unpack(f"{endian}L", head[4:])
        else:
            vr = head[4:6].decode("ascii", "replace")
            extra = fp.read(4)
            if len(extra) < 4:
                raise CorruptPixelData("(7FE0,0010) Pixel Data: expected a length, got EOF")
            (length,) = unpack(f"{endian}L", extra)
        offset = fp.tell()
        return {
            "keyword": _PIXEL_TAGS[tag],
            "vr": vr,
            "offset": offset,
            "length": length,
            "available": max(0, size - offset),
            "element_start": start,
            "endian": endian,
        }

    def _check_budget(self, max_pixels: int) -> None:
        info = self.info
        # SECURITY: refuse absurd dimensions before any decoder allocates for them.
        if info.frame_pixels > max_pixels:
            raise ImageTooLarge(
                "(0028,0010)/(0028,0011) Rows/Columns: expected at most "
                f"{max_pixels} samples per frame, got {info.rows} x {info.columns} x "
                f"{info.samples_per_pixel}"
            )

    def _find_decoder(self) -> Any:
        uid = self.transfer_syntax
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise UnsupportedTransferSyntax(
                f"(0002,0010) Transfer Syntax UID: expected a decodable syntax, got {uid.name}"
            ) from None
        if not decoder.is_available:
            raise UnsupportedTransferSyntax(
                f"(0002,0010) Transfer Syntax UID: no decoder plugin installed for {uid.name}"
            )
        return decoder

    # -- native -------------------------------------------------------------------------

    def _native_span(self, index: int) -> tuple[int, int]:
        info = self.info
        base = self._pixel["offset"]
        if info.bits_allocated == 1:
            first_bit = index * info.frame_pixels
            start = first_bit // 8
            end = -(-(first_bit + info.frame_pixels) // 8)
            return base + start, end - start
        return base + index * info.frame_bytes, info.frame_bytes

    def _check_native_length(self) -> None:
        info = self._pixel
        if info["length"] == 0xFFFFFFFF:
            raise CorruptPixelData(
                f"(7FE0,0010) Pixel Data: expected a defined length for "
                f"{self.transfer_syntax.name}, got undefined length"
            )
        expected = -(-self.info.frame_pixels * self.info.number_of_frames * self.info.bits_allocated // 8)
        if self.info.photometric_interpretation == "YBR_FULL_422":
            expected = self.info.frame_bytes * self.info.number_of_frames
        actual = min(info["length"], info["available"])
        if actual < expected:
            raise CorruptPixelData(
                f"(7FE0,0010) Pixel Data: expected {expected} bytes for {self.info.rows} x "
                f"{self.info.columns} x {self.info.samples_per_pixel} samples x "
                f"{self.info.bits_allocated} bits x {self.info.number_of_frames} frames, "
                f"got {actual}"
            )

    # -- encapsulated -------------------------------------------------------------------

    def _index_encapsulated(self) -> list[tuple[int, int]]:
        """Frame spans (offset, length) over item headers + values (PS3.5 A.4)."""
        pixel = self._pixel
        if pixel["length"] != 0xFFFFFFFF:
            raise CorruptPixelData(
                f"(7FE0,0010) Pixel Data: expected undefined length for an encapsulated syntax, got {pixel['length']}"
            )
        fp, endian = self._fp, pixel["endian"]
        end_of_file = pixel["offset"] + pixel["available"]
        # Walk every item header once (8-byte reads and seeks, no fragment data)
        fragments: list[tuple[int, int]] = []  # (item start, value length)
        position = pixel["offset"]
        bot: tuple[int, ...] = ()
        first = True
        while position + 8 <= end_of_file:
            fp.seek(position)
            group, element, length = unpack(f"{endian}HHL", fp.read(8))
            tag = group << 16 | element
            if tag == _SEQUENCE_DELIMITER:
                break
            if tag != _ITEM or length == 0xFFFFFFFF:
                raise CorruptPixelData(
                    "(7FE0,0010) Pixel Data: expected (FFFE,E000) items of defined length, "
                    f"got tag ({group:04X},{element:04X})"
                )
            if position + 8 + length > end_of_file:
                raise CorruptPixelData(
                    f"(7FE0,0010) Pixel Data: expected a {length}-byte item, got "
                    f"{end_of_file - position - 8} bytes before the end (truncated)"
                )
            if first:
                if length % 4:
                    raise CorruptPixelData(f"Basic Offset Table: expected a multiple of 4 bytes, got {length}")
                bot = unpack(f"{endian}{length // 4}L", fp.read(length)) if length else ()
                first = False
            else:
                fragments.append((position, length))
            position += 8 + length
        if first:
            raise CorruptPixelData("Basic Offset Table: expected the first item of (7FE0,0010), got none")
        frames = self.info.number_of_frames
        if not fragments:
            raise CorruptPixelData("(7FE0,0010) Pixel Data: expected fragments, got none")
        base = fragments[0][0]
        starts = {start: i for i, (start, _) in enumerate(fragments)}
        spans: list[tuple[int, int]] = []
        eot = self.dataset.get("ExtendedOffsetTable")
        eot_lengths = self.dataset.get("ExtendedOffsetTableLengths")
        if eot and eot_lengths:
            # PS3.3 C.7.6.3.1.8: one fragment per frame, offsets from the first item
            offsets = unpack(f"{endian}{len(eot) // 8}Q", bytes(eot))
            spans = [(base + off, 0) for off in offsets]
        elif bot:
            spans = [(base + off, 0) for off in bot]
        if spans:
            bounds = []
            for start, _ in spans:
                if start not in starts:
                    raise CorruptPixelData(
                        "Basic/Extended Offset Table: expected offsets of fragment items, "
                        "got an offset inside a fragment"
                    )
                bounds.append(starts[start])
            bounds.append(len(fragments))
            groups = [range(bounds[i], bounds[i + 1]) for i in range(len(spans))]
        elif len(fragments) == frames:
            groups = [range(i, i + 1) for i in range(frames)]
        elif frames == 1:
            groups = [range(0, len(fragments))]
        else:
            groups = self._group_by_end_marker(fragments)
        if len(groups) < frames:
            raise CorruptPixelData(
                f"(0028,0008) Number of Frames: expected {frames} encoded frames, found {len(groups)}"
            )
        index = []
        for group in groups[:frames]:
            if not len(group):
                raise CorruptPixelData("Basic Offset Table: expected increasing offsets")
            start = fragments[group[0]][0]
            last_start, last_length = fragments[group[-1]]
            index.append((start, last_start + 8 + last_length - start))
        return index

    def _group_by_end_marker(self, fragments: list[tuple[int, int]]) -> list[range]:
        """Split fragments into frames at JPEG/J2K EOI/EOC markers (PS3.5 A.4, no BOT)."""
        if not self.transfer_syntax.startswith(_JPEG_FAMILY + _J2K_FAMILY):
            raise CorruptPixelData(
                f"Basic Offset Table: expected offsets for {len(fragments)} fragments over "
                f"{self.info.number_of_frames} frames, got an empty table"
            )
        groups = []
        first = 0
        for i, (start, length) in enumerate(fragments):
            tail = _read_exact(self._fp, start + 8 + max(0, length - 3), min(3, length))
            if b"\xff\xd9" in tail:
                groups.append(range(first, i + 1))
                first = i + 1
        return groups

    def frame_index(self) -> list[tuple[int, int]]:
        """Return the (offset, length) of every frame's bytes in the source.

        Returns
        -------
        list[tuple[int, int]]
            Native: the frame's bytes. Encapsulated: the frame's items (headers included).
        """
        if self._frames is not None:
            return list(self._frames)
        return [self._native_span(i) for i in range(self.info.number_of_frames)]

    # -- decoding -----------------------------------------------------------------------

    def _options(self, frames: int) -> dict[str, Any]:
        info = self.info
        plugin = _PREFERRED_PLUGINS.get(str(self.transfer_syntax))
        opts: dict[str, Any] = {
            "rows": info.rows,
            "columns": info.columns,
            "samples_per_pixel": info.samples_per_pixel,
            "bits_allocated": info.bits_allocated,
            "bits_stored": info.bits_stored,
            "pixel_representation": info.pixel_representation,
            "photometric_interpretation": info.photometric_interpretation,
            "number_of_frames": frames,
            "pixel_keyword": self._pixel["keyword"],
        }
        if info.samples_per_pixel > 1:
            opts["planar_configuration"] = info.planar_configuration
        if self._pixel["vr"]:
            opts["pixel_vr"] = self._pixel["vr"]
        if plugin and plugin in getattr(self._decoder, "available_plugins", ()):
            opts["decoding_plugin"] = plugin
        return opts

    def encoded_frame(self, index: int) -> bytes:
        """Return the encoded bytes of one encapsulated frame, item headers removed.

        Parameters
        ----------
        index : int

        Returns
        -------
        bytes

        Raises
        ------
        CorruptPixelData
            For native data or a frame index out of range.
        """
        if self._frames is None:
            raise CorruptPixelData("(7FE0,0010) Pixel Data: expected encapsulated data")
        self._check_index(index)
        offset, length = self._frames[index]
        with self._lock:
            raw = _read_exact(self._fp, offset, length)
        endian = self._pixel["endian"]
        parts, position = [], 0
        while position < len(raw):
            (item_length,) = unpack(f"{endian}L", raw[position + 4 : position + 8])
            parts.append(raw[position + 8 : position + 8 + item_length])
            position += 8 + item_length
        return b"".join(parts)

    def _check_index(self, index: int) -> None:
        frames = self.info.number_of_frames
        if not isinstance(index, int) or not 0 <= index < frames:
            raise InvalidRenderParams(f"frame: expected 0..{frames - 1} ((0028,0008) Number of Frames), got {index!r}")

    def decode(self, index: int = 0) -> DecodedFrame:
        """Decode one frame to stored values (Bits Stored masked, sign applied, YBR -> RGB).

        Parameters
        ----------
        index : int
            Frame number, 0-based.

        Returns
        -------
        DecodedFrame
            ``values`` is C-contiguous and native-endian: (rows, columns) or
            (rows, columns, 3) with planar configuration resolved.

        Raises
        ------
        InvalidRenderParams
            Frame index outside (0028,0008) Number of Frames.
        CorruptPixelData
            Structurally broken codestream or a decoder failure; no partial image is ever
            returned.
        """
        self._check_index(index)
        if self._frames is None and self._reads_directly():
            arr = self._read_native_frame(index)
            return DecodedFrame(arr, arr.ndim == 3, self.info.photometric_interpretation)
        if self._frames is None:
            with self._lock:
                self._fp.seek(self._pixel["offset"])
                arr, props = self._run(
                    lambda: self._decoder.as_array(self._fp, index=index, **self._options(self.info.number_of_frames))
                )
            return self._finish(arr, props)
        frame = self.encoded_frame(index)
        self._check_codestream(frame)
        return self._decode_codestream(frame)

    def decode_reduced(self, index: int, step: int) -> tuple[DecodedFrame, int]:
        """Decode one frame at 1/2^k of its size, the largest 2^k <= `step` its codestream holds.

        A JPEG 2000 codestream decodes directly to any of its wavelet resolution levels, far
        faster than in full (``j2k``); that is what a view fit to a viewport 2x or more smaller
        than the image needs. Single-component (monochrome) JPEG 2000 of up to 16 bits only:
        anything else (or an image offset on the reference grid) decodes in full and reports
        a step of 1.

        Parameters
        ----------
        index : int
            Frame number, 0-based.
        step : int
            The largest reduction the caller can use (source pixels per output pixel).

        Returns
        -------
        tuple[DecodedFrame, int]
            The frame, (ceil(rows / s), ceil(columns / s)) values, and its step s (1 = full size).

        Raises
        ------
        InvalidRenderParams, CorruptPixelData
            As ``decode``.
        """
        self._check_index(index)
        info = self.info
        if step < 2 or not decodes_reduced(info):  # JPEG 2000 is always encapsulated
            return self.decode(index), 1
        frame = self.encoded_frame(index)
        self._check_codestream(frame)
        header = j2k.read_header(frame) if frame[:2] == b"\xff\x4f" else None  # not JP2-wrapped
        if header is None or header.components != 1 or header.precision > 16 or not header.at_origin:
            return self._decode_codestream(frame), 1
        reduce = j2k.usable_reduction(info.rows, info.columns, min(header.levels, step.bit_length() - 1))
        if reduce < 1:
            return self._decode_codestream(frame), 1
        try:
            values = j2k.decode_reduced(frame, reduce, header)
        except CorruptPixelData:
            # The full decode gives the definitive answer (and the error a caller should see)
            return self._decode_codestream(frame), 1
        expected = ((info.rows + (1 << reduce) - 1) >> reduce, (info.columns + (1 << reduce) - 1) >> reduce)
        if values.shape != expected:
            raise CorruptPixelData(
                f"JPEG 2000 codestream: expected {expected[1]} x {expected[0]} values at reduction {reduce}, "
                f"got {values.shape[1] if values.ndim > 1 else 0} x {values.shape[0]}"
            )
        return DecodedFrame(values, False, info.photometric_interpretation), 1 << reduce

    def _decode_codestream(self, frame: bytes) -> DecodedFrame:
        """Decode one checked encapsulated frame with pydicom's decoder."""
        buffer = encapsulate([frame], has_bot=False)
        arr, props = self._run(lambda: self._decoder.as_array(buffer, index=0, **self._options(1)))
        return self._finish(arr, props)

    def _finish(self, arr: np.ndarray, props: dict[str, Any]) -> DecodedFrame:
        """Check a decoder's output shape; make it native-endian and C-contiguous."""
        info = self.info
        expected = (
            (info.rows, info.columns)
            if info.samples_per_pixel == 1
            else (info.rows, info.columns, info.samples_per_pixel)
        )
        if arr.shape != expected:
            raise CorruptPixelData(
                f"(7FE0,0010) Pixel Data: expected a decoded frame of shape {expected}, got {arr.shape}"
            )
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        arr = np.ascontiguousarray(arr)
        photometric = str(props.get("photometric_interpretation", info.photometric_interpretation))
        return DecodedFrame(arr, arr.ndim == 3, photometric)

    def _reads_directly(self) -> bool:
        """Whether a native frame is its array's bytes: the machine's byte order (little
        endian), whole-byte integer samples, no colour conversion. Anything else goes through
        pydicom."""
        info = self.info
        return (
            self._pixel["keyword"] == "PixelData"
            and self._pixel["endian"] == "<"
            and sys.byteorder == "little"
            and info.bits_allocated in (8, 16, 32)
            and 0 < info.bits_stored <= info.bits_allocated
            and info.photometric_interpretation in _DIRECT_PHOTOMETRICS
            and info.samples_per_pixel in (1, 3)
        )

    def _read_native_frame(self, index: int) -> np.ndarray:
        """Stored values of one native frame, as pydicom would give them, with one read."""
        info = self.info
        dtype = np.dtype(f"<{'i' if info.pixel_representation else 'u'}{info.bits_allocated // 8}")
        offset, length = self._native_span(index)
        arr = np.empty(length // dtype.itemsize, dtype)
        with self._lock:
            _read_exact_into(self._fp, offset, memoryview(arr).cast("B"))
        shift = info.bits_allocated - info.bits_stored
        if shift:
            # PS3.5 8.1.1: bits above Bits Stored are not part of the value; shifting them out
            # and back (arithmetic for signed types) masks or sign-extends, as pydicom does.
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
        if info.samples_per_pixel == 1:
            return arr.reshape(info.rows, info.columns)
        if info.planar_configuration == 1:  # R plane, G plane, B plane (PS3.3 C.7.6.3.1.3)
            return np.ascontiguousarray(arr.reshape(3, info.rows, info.columns).transpose(1, 2, 0))
        return arr.reshape(info.rows, info.columns, 3)

    def _run(self, call: Callable[[], Any]) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            arr, props = call()
        except (ValueError, RuntimeError, TypeError, IndexError, KeyError, AttributeError) as exc:
            # The message of a decoder failure may quote bytes; keep only its class.
            raise CorruptPixelData(
                f"(7FE0,0010) Pixel Data: expected decodable {self.transfer_syntax.name} "
                f"data, got a decoder error ({type(exc).__name__})"
            ) from exc
        return arr, props

    def _check_codestream(self, frame: bytes) -> None:
        """Structural checks before decoding, so no decoder returns a partial image."""
        uid = str(self.transfer_syntax)
        info = self.info
        if uid.startswith(_JPEG_FAMILY):
            _check_jpeg(frame, info.rows, info.columns)
        elif uid.startswith(_J2K_FAMILY):
            _check_j2k(frame, info.rows, info.columns)
        elif uid == _RLE:
            _check_rle(frame)


def decodes_reduced(info: ImageInfo) -> bool:
    """Whether ``PixelSource.decode_reduced`` can decode this image's frames reduced.

    Monochrome JPEG 2000 (Part 1 and High-Throughput): its codestream holds the reduced
    images. The codestream itself may still say otherwise (a JP2 wrapper, more than one
    component, over 16 bits), and then ``decode_reduced`` decodes in full.

    Parameters
    ----------
    info : ImageInfo

    Returns
    -------
    bool
    """
    return (
        info.transfer_syntax_uid.startswith(_J2K_FAMILY)
        and info.samples_per_pixel == 1
        and info.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2")
    )


def _strip_padding(frame: bytes) -> bytes:
    # PS3.5 A.4: fragments are padded to even length, with 0x00 or (JPEG fill) 0xFF
    end = len(frame)
    while end > 0 and frame[end - 1] in (0x00, 0xFF) and end > len(frame) - 4:
        end -= 1
    return frame[:end]


def _check_jpeg(frame: bytes, rows: int, columns: int) -> None:
    """JPEG / JPEG-LS: SOI first, EOI last, SOF size equal to Rows x Columns (PS3.5 8.2.1)."""
    body = _strip_padding(frame)
    if body[:2] != b"\xff\xd8":
        raise CorruptPixelData("JPEG codestream: expected SOI marker FFD8 first, got other bytes")
    if body[-2:] != b"\xff\xd9":
        raise CorruptPixelData("JPEG codestream: expected EOI marker FFD9 last, got other bytes (truncated)")
    position = 2
    while position + 4 <= len(body):
        if body[position] != 0xFF:
            raise CorruptPixelData("JPEG codestream: expected a marker, got entropy data")
        marker = body[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = unpack(">H", body[position + 2 : position + 4])
        is_sof = (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7
        if is_sof and position + 9 <= len(body):
            height, width = unpack(">HH", body[position + 5 : position + 9])
            # SECURITY: the codestream, not the header, decides what the decoder allocates
            if width != columns or (height and height != rows):
                raise CorruptPixelData(f"JPEG SOF: expected {columns} x {rows}, got {width} x {height}")
            return
        position += 2 + length
    raise CorruptPixelData("JPEG codestream: expected a SOF marker, got none")


def _check_j2k(frame: bytes, rows: int, columns: int) -> None:
    """JPEG 2000 (PS3.5 8.2.4, ISO 15444-1 A.4-A.5): SOC/SIZ first, tile-parts, EOC last."""
    body = _strip_padding(frame)
    if body[:4] == b"\x00\x00\x00\x0c":  # JP2 file format wrapper: find the codestream box
        at = body.find(b"jp2c")
        body = body[at + 4 :] if at >= 0 else b""
    if body[:4] != b"\xff\x4f\xff\x51" or len(body) < 24:
        raise CorruptPixelData("JPEG 2000 codestream: expected SOC FF4F then SIZ FF51, got other bytes")
    xsiz, ysiz, xosiz, yosiz = unpack(">LLLL", body[8:24])
    if xsiz - xosiz != columns or ysiz - yosiz != rows:
        raise CorruptPixelData(f"JPEG 2000 SIZ: expected {columns} x {rows}, got {xsiz - xosiz} x {ysiz - yosiz}")
    if body[-2:] != b"\xff\xd9":
        raise CorruptPixelData("JPEG 2000 codestream: expected EOC marker FFD9 last, got other bytes (truncated)")
    # Main header marker segments (SIZ first) up to the first SOT
    position = 2
    while True:
        if position + 4 > len(body) or body[position] != 0xFF:
            raise CorruptPixelData("JPEG 2000 main header: expected a marker segment")
        marker = body[position + 1]
        if marker == 0x90:  # SOT
            break
        (length,) = unpack(">H", body[position + 2 : position + 4])
        position += 2 + length
    # Tile-parts: each SOT's Psot must land on the next SOT or on EOC
    while position < len(body) - 2:
        if body[position : position + 2] != b"\xff\x90" or position + 12 > len(body):
            raise CorruptPixelData("JPEG 2000 tile-part: expected SOT marker FF90")
        (psot,) = unpack(">L", body[position + 6 : position + 10])
        if psot == 0:  # last tile-part runs to EOC (ISO 15444-1 A.4.2)
            return
        if psot < 14:
            raise CorruptPixelData(f"JPEG 2000 SOT: expected Psot >= 14, got {psot}")
        position += psot
    if position != len(body) - 2:
        raise CorruptPixelData("JPEG 2000 tile-parts: expected Psot lengths to end at EOC, got a mismatch")


def _check_rle(frame: bytes) -> None:
    """RLE Lossless header (PS3.5 G.5): segment count 1..15, increasing in-range offsets."""
    if len(frame) < 64:
        raise CorruptPixelData(f"RLE header: expected 64 bytes, got {len(frame)}")
    header = unpack("<16L", frame[:64])
    count = header[0]
    if not 1 <= count <= 15:
        raise CorruptPixelData(f"RLE header: expected 1..15 segments, got {count}")
    offsets = header[1 : 1 + count]
    if offsets[0] != 64 or list(offsets) != sorted(offsets) or offsets[-1] >= len(frame):
        raise CorruptPixelData("RLE header: expected increasing segment offsets from 64")


def decode_frame(
    source: bytes | bytearray | memoryview | BinaryIO,
    index: int = 0,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedFrame:
    """Decode frame `index` of one instance (convenience for ``PixelSource(...).decode``).

    Parameters
    ----------
    source : bytes | file-like
    index : int
    max_pixels : int

    Returns
    -------
    DecodedFrame

    Raises
    ------
    UnsupportedTransferSyntax, CorruptPixelData, ImageTooLarge
    """
    return PixelSource(source, max_pixels=max_pixels).decode(index)


def frame_index(
    source: bytes | bytearray | memoryview | BinaryIO | PixelSource,
) -> list[tuple[int, int]]:
    """Return the (offset, length) of every frame's bytes in `source`.

    Parameters
    ----------
    source : bytes | file-like | PixelSource

    Returns
    -------
    list[tuple[int, int]]

    Raises
    ------
    UnsupportedTransferSyntax, CorruptPixelData, ImageTooLarge
    """
    if not isinstance(source, PixelSource):
        source = PixelSource(source)
    return source.frame_index()
