"""Reading and checking DICOM headers at ingest, and their DICOM JSON form (PS3.18 F.2)."""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import AMBIGUOUS_VR

from archive.errors import InvalidUpload
from config.logging import scrub

# Values of these VRs, or longer than the threshold, are bulk data: served via BulkDataURI.
BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
BULK_THRESHOLD = 1024
PIXEL_DATA_TAGS = {0x7FE00008, 0x7FE00009, 0x7FE00010}
REQUIRED_UIDS = (("SOPClassUID", "(0008,0016)"), ("SOPInstanceUID", "(0008,0018)"),
                 ("StudyInstanceUID", "(0020,000D)"), ("SeriesInstanceUID", "(0020,000E)"))
IMAGE_ATTRIBUTES = (("Rows", "(0028,0010)"), ("Columns", "(0028,0011)"), ("BitsAllocated", "(0028,0100)"),
                    ("SamplesPerPixel", "(0028,0002)"), ("PhotometricInterpretation", "(0028,0004)"))


@dataclass(frozen=True)
class Problem:
    """One reason an object is refused: the attribute and what was wrong, never its value."""

    attribute: str
    message: str

    def __str__(self) -> str:
        return f"{self.attribute}: {self.message}"


def read_header(fp: BinaryIO, *, max_inflated_bytes: int,
                memo: ConversionMemo | None = None) -> tuple[Dataset, list[str]]:
    """Parse a Part 10 header without loading pixel data; return it with pydicom's warnings.

    The header's small top-level values are converted now, reusing what `memo` converted
    for earlier objects of the batch (see ConversionMemo).
    Raises InvalidUpload for anything pydicom cannot read with force=False.
    """
    _check_deflate_bomb(fp, max_inflated_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # defer_size keeps large values (pixel data) on disk, read on demand, so a 2 GB
            # object costs only its header in memory here.
            ds = pydicom.dcmread(fp, force=False, defer_size=BULK_THRESHOLD)
            ds.file_meta  # noqa: B018  (raises if the meta group is missing)
            # Converting the small values here, not when first used, puts pydicom's warnings
            # about them into the notes (and keeps them out of the log).
            (memo or ConversionMemo()).convert(ds, caught)
        except InvalidDicomError:
            raise InvalidUpload("not a DICOM Part 10 file", code="not_dicom") from None
        except (EOFError, ValueError, TypeError, KeyError, OSError, NotImplementedError, OverflowError, zlib.error):
            raise InvalidUpload("the DICOM header is truncated or malformed", code="malformed") from None
    # PRIVACY: pydicom quotes a value it finds invalid; notes name the problem, not the value.
    notes = sorted({scrub(str(w.message))[:200] for w in caught})
    return ds, notes


class ConversionMemo:
    """Header values pydicom has converted, with their DICOM JSON, reused across objects.

    Most of a series' header is byte-for-byte the same in every instance (patient, study,
    equipment, pixel module), and converting those bytes again for each instance was most of
    the per-object cost of ingest. A memo belongs to one ingest batch (one STOW request, one
    import), so nothing read for one batch outlives it. Only values whose meaning depends on
    nothing but their own bytes, VR, byte order and character set are shared: sequences,
    private elements, ambiguous VRs (settled from other elements, PS3.5 A.1) and values whose
    conversion warned (so each object still gets its own conformance notes) are converted
    afresh every time. Shared elements are never modified: ingest only reads them.
    """

    LIMIT = 4096  # distinct values kept; a batch with more starts over (bounded memory)

    def __init__(self) -> None:
        self._elements: dict[tuple, DataElement] = {}
        self._json: dict[int, dict] = {}  # id(element) -> its DICOM JSON; elements live in _elements

    def convert(self, ds: Dataset, caught: list) -> None:
        """Convert the small top-level raw values of `ds` in place, from the memo where possible.

        `caught` is the list a surrounding `warnings.catch_warnings(record=True)` fills.
        """
        charset = ds.get_item(0x00080005, keep_deferred=True)
        charset_key = getattr(charset, "value", None)
        if isinstance(charset_key, list):
            charset_key = tuple(charset_key)
        for tag in list(ds.keys()):
            raw = ds.get_item(tag, keep_deferred=True)
            if not isinstance(raw, RawDataElement) or raw.value is None or _is_bulk(raw):
                continue  # already converted (sequences), or bulk data, which is never read here
            key = None
            if self._shareable(raw):
                key = (raw.tag, raw.VR, raw.is_implicit_VR, raw.is_little_endian, charset_key, raw.value)
                shared = self._elements.get(key)
                if shared is not None:
                    ds[tag] = shared
                    continue
            warned = len(caught)
            try:
                converted = ds[tag]  # pydicom converts it (and keeps it in ds)
            except Exception:  # noqa: BLE001, S112 - left raw, as a plain parse leaves it until used
                continue
            if key is not None and len(caught) == warned:
                if len(self._elements) >= self.LIMIT:
                    self._elements.clear()
                    self._json.clear()
                self._elements[key] = converted
                self._json[id(converted)] = None  # its JSON, once first asked for

    @staticmethod
    def _shareable(raw: RawDataElement) -> bool:
        if raw.tag.is_private:
            return False
        vr = raw.VR
        if vr is None:
            try:
                vr = dictionary_VR(raw.tag)
            except KeyError:
                return False
        return vr not in AMBIGUOUS_VR

    def json_of(self, element: DataElement) -> dict:
        """The DICOM JSON of a converted element, computed once for shared elements."""
        key = id(element)
        cached = self._json.get(key)
        if cached is None:
            cached = _element_json(element)
            if key in self._json:  # a shared element: remember its JSON
                self._json[key] = cached
        return cached


def _check_deflate_bomb(fp: BinaryIO, max_inflated_bytes: int) -> None:
    """Refuse a deflated dataset that inflates past the limit, inflating in bounded steps.

    pydicom inflates a Deflated Explicit VR Little Endian dataset in one call; a few kB can
    claim gigabytes (a decompression bomb), so measure it first without keeping the output.
    """
    start = fp.tell()
    syntax, dataset_offset = _file_meta_syntax(fp)
    if syntax == DeflatedExplicitVRLittleEndian:
        fp.seek(dataset_offset)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflated = 0
        try:
            while (chunk := fp.read(1024 * 1024)) or inflater.unconsumed_tail:
                data = chunk if chunk else b""
                while True:
                    inflated += len(inflater.decompress(data, 16 * 1024 * 1024))
                    if inflated > max_inflated_bytes:
                        raise InvalidUpload(
                            f"deflated dataset inflates beyond the limit of {max_inflated_bytes} bytes",
                            code="too_large",
                            failure_reason=0xA700,
                        )
                    data = inflater.unconsumed_tail
                    if not data:
                        break
                if not chunk:
                    break
        except zlib.error:
            raise InvalidUpload("the deflated dataset is corrupt", code="malformed") from None
    fp.seek(start)


def _file_meta_syntax(fp: BinaryIO) -> tuple[str | None, int]:
    """Return (Transfer Syntax UID, offset of the dataset) by walking the group 0002 elements.

    The file meta group is always Explicit VR Little Endian (PS3.10 7.1); walking it by hand
    avoids asking pydicom to parse (and so inflate) the dataset that follows.
    """
    start = fp.tell()
    head = fp.read(132)
    if len(head) < 132 or head[128:132] != b"DICM":
        fp.seek(start)
        return None, start
    syntax = None
    while True:
        position = fp.tell()
        element = fp.read(8)
        if len(element) < 8 or int.from_bytes(element[0:2], "little") != 0x0002:
            fp.seek(start)
            return syntax, position
        tag_element = int.from_bytes(element[2:4], "little")
        vr = element[4:6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length = int.from_bytes(fp.read(4), "little")
        else:
            length = int.from_bytes(element[6:8], "little")
        if length > 1024 * 1024:
            fp.seek(start)
            return syntax, position
        value = fp.read(length)
        if tag_element == 0x0010:
            syntax = value.rstrip(b"\x00 ").decode("ascii", "replace")


def _is_valid_uid(value) -> bool:
    return isinstance(value, str) and UID(value).is_valid


def validate_instance(ds: Dataset, *, max_pixel_bytes: int) -> list[Problem]:
    """Check required UIDs, image attributes and the pixel budget before any decode."""
    problems: list[Problem] = []
    for keyword, tag in REQUIRED_UIDS:
        value = ds.get(keyword)
        if not value:
            problems.append(Problem(f"{keyword} {tag}", "missing"))
        elif not _is_valid_uid(str(value)):
            problems.append(Problem(f"{keyword} {tag}", "not a valid UID (digits and dots, at most 64 characters)"))
    if ds.file_meta.get("MediaStorageSOPInstanceUID") and ds.get("SOPInstanceUID") and str(
        ds.file_meta.MediaStorageSOPInstanceUID
    ) != str(ds.SOPInstanceUID):
        problems.append(Problem("MediaStorageSOPInstanceUID (0002,0003)", "differs from SOPInstanceUID (0008,0018)"))
    if not any(tag in ds for tag in PIXEL_DATA_TAGS):
        return problems
    for keyword, tag in IMAGE_ATTRIBUTES:
        if ds.get(keyword) in (None, ""):
            problems.append(Problem(f"{keyword} {tag}", "missing from an object with pixel data"))
    if problems:
        return problems
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.SamplesPerPixel)
        bits = int(ds.BitsAllocated)
    except (TypeError, ValueError):
        return [Problem("Image Pixel Module", "Rows, Columns, NumberOfFrames, SamplesPerPixel or BitsAllocated is not a number")]
    if min(rows, columns, frames, samples) < 1 or bits not in (1, 8, 16, 32, 64):
        return [Problem("Image Pixel Module", f"impossible geometry: {rows}x{columns}, {frames} frames, {samples} samples, {bits} bits")]
    pixel_bytes = rows * columns * frames * samples * max(bits // 8, 1)
    if pixel_bytes > max_pixel_bytes:
        problems.append(
            Problem("Image Pixel Module", f"decoded pixels would need {pixel_bytes} bytes; the limit is {max_pixel_bytes}")
        )
    return problems


def metadata_json(ds: Dataset, memo: ConversionMemo | None = None) -> dict:
    """Return the header as DICOM JSON, with bulk data as `{"vr", "BulkDataURI": "bulk:<tag>"}`.

    The `bulk:` marker is made an absolute URL when served. Deferred values are never read.
    An element pydicom cannot express as JSON is left out (the rest is still served).
    """
    result: dict[str, dict] = {}
    for tag in list(ds.keys()):
        # keep_deferred: reading a deferred value here would load pixel data (up to gigabytes) into memory.
        raw = ds.get_item(tag, keep_deferred=True)
        key = f"{int(tag):08X}"
        if _is_bulk(raw) if isinstance(raw, RawDataElement) else (int(tag) in PIXEL_DATA_TAGS or raw.VR in BULK_VRS):
            result[key] = {"vr": raw.VR or "UN", "BulkDataURI": f"bulk:{key}"}
            continue
        try:
            element = ds[tag]
            result[key] = memo.json_of(element) if memo is not None else _element_json(element)
        except (TypeError, ValueError):
            continue
    return dict(sorted(result.items()))


def _is_bulk(raw: RawDataElement) -> bool:
    """Whether a raw element is served as bulk data (BulkDataURI) rather than in the metadata."""
    return int(raw.tag) in PIXEL_DATA_TAGS or raw.VR in BULK_VRS or raw.value is None or raw.length > BULK_THRESHOLD


def _element_json(element: DataElement) -> dict:
    return element.to_json_dict(bulk_data_element_handler=_nested_bulk, bulk_data_threshold=BULK_THRESHOLD)


def _nested_bulk(element) -> str:
    return f"bulk:{int(element.tag):08X}"
