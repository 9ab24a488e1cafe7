"""WADO-RS (PS3.18 10.4): retrieve instances, metadata, frames and bulk data.

Every body is streamed from the decrypting blob reader in chunks by an async generator (a sync
iterator would be buffered whole by Django under ASGI), one instance at a time, and closes its
reader when done or when the client goes away. DICOM objects are sent as stored unless the
client asks for Explicit VR Little Endian; frames are cut out of the stored pixel data by
offset, so one frame of a large multi-frame object costs one frame of reading.
"""

from __future__ import annotations

import functools
import json
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from io import BytesIO

import numpy as np
import pydicom
from asgiref.sync import sync_to_async
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_safe
from pydicom.encaps import encapsulate, get_frame
from pydicom.filewriter import dcmwrite
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import as_pixel_options
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from archive import access
from archive.dicomweb import dicomjson, multipart
from archive.dicomweb.auth import dicomweb_view
from archive.models import Instance
from archive.storage import open_instance_blob
from audit.models import Outcome
from audit.services import record

logger = logging.getLogger("lightbox.archive.dicomweb")

CHUNK = 1024 * 1024  # a multiple of 8, so byte swapping never splits a value
METADATA_BATCH = 200
OCTET_STREAM = "application/octet-stream"
DICOM_JSON = "application/dicom+json"
NATIVE_SYNTAXES = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
)
# Media types of compressed frames and bulk data (PS3.18 Table 8.7.4-1 / 8.7.3-5).
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_MEDIA_ALIASES = {"image/x-jls": "image/jls", "image/x-dicom-rle": "image/dicom-rle"}
PIXEL_TAGS = {0x7FE00010: 0, 0x7FE00008: 32, 0x7FE00009: 64}  # tag -> fixed bits (float pixel data)
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
# Value widths for byte swapping big endian values to little endian (PS3.5 7.3).
_SWAP_WIDTHS = {
    "OW": 2,
    "US": 2,
    "SS": 2,
    "AT": 2,
    "OF": 4,
    "OL": 4,
    "UL": 4,
    "SL": 4,
    "FL": 4,
    "OD": 8,
    "OV": 8,
    "FD": 8,
    "SV": 8,
    "UV": 8,
}
# What pydicom and its decoder plugins raise for data they cannot decode or re-encode (plugins
# raise RuntimeError; malformed values surface as ValueError, TypeError, KeyError...).
_TRANSCODE_ERRORS = (
    RuntimeError,
    ValueError,
    NotImplementedError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    EOFError,
)


class _Refusal(Exception):
    """A request this server will not answer; the message is safe to show (no PHI, no values)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _TranscodeError(Exception):
    pass


class _PixelDataError(Exception):
    """The stored pixel data does not agree with its header (length, frames, encoding)."""


# --- responses and audit ---------------------------------------------------------------------


def _deepest_uid(kwargs: dict) -> tuple[str, str]:
    for name in ("instance", "series", "study"):
        if name in kwargs:
            return name, dicomjson.uid_or_blank(kwargs[name])
    return "study", ""


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _guarded(resource: str):
    """Turn Http404 and _Refusal into audited JSON errors (404 is "denied": unknown or forbidden)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, **kwargs):
            try:
                return view(request, **kwargs)
            except Http404:
                status, message, outcome = 404, "not found", Outcome.DENIED
            except _Refusal as exc:
                status, message, outcome = exc.status, exc.message, Outcome.FAILURE
            object_type, object_id = _deepest_uid(kwargs)
            record(
                action="dicomweb.retrieve",
                actor=request.user,
                request=request,
                object_type=object_type,
                object_id=object_id,
                outcome=outcome,
                details={"resource": resource, "status": status},
            )
            return _error(status, message)

        return wrapper

    return decorate


def _audit(request, resource: str, kwargs: dict, organization, **details) -> None:
    object_type, object_id = _deepest_uid(kwargs)
    record(
        action="dicomweb.retrieve",
        actor=request.user,
        request=request,
        organization=organization,
        object_type=object_type,
        object_id=object_id,
        details={"resource": resource, **details},
    )


def _streaming(body: AsyncIterator[bytes], content_type: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(body, content_type=content_type)
    # PRIVACY: PHI; no cache on the way may keep a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _instance_url(request, study: str, series: str, instance: str) -> str:
    base = request.build_absolute_uri(reverse("dicomweb:studies"))
    return f"{base}/{study}/series/{series}/instances/{instance}"


# --- async byte sources ----------------------------------------------------------------------


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _bytes_chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield data[start : start + CHUNK]


async def _blob_chunks(instance, *, start: int = 0, length: int | None = None, swap: int = 0) -> AsyncIterator[bytes]:
    """The stored bytes of an instance (or a range of them), read chunk by chunk, reader closed after."""
    reader = await sync_to_async(open_instance_blob)(instance)
    try:
        reader.seek(start)
        remaining = reader.size - start if length is None else length
        while remaining > 0:
            chunk = await sync_to_async(reader.read)(min(CHUNK, remaining))
            if not chunk:
                raise _PixelDataError("the stored object is shorter than its header says")
            remaining -= len(chunk)
            yield _to_little_endian(chunk, swap) if swap else chunk
    finally:
        reader.close()


def _to_little_endian(data: bytes, width: int) -> bytes:
    usable = len(data) - len(data) % width
    swapped = np.frombuffer(data, dtype=f">u{width}", count=usable // width).astype(f"<u{width}").tobytes()
    return swapped + data[usable:]


# --- DICOM objects ---------------------------------------------------------------------------


def _can_transcode(syntax: str) -> bool:
    """Whether an object in `syntax` can be rewritten as Explicit VR Little Endian here."""
    if syntax in NATIVE_SYNTAXES:
        return True
    try:
        return get_decoder(UID(syntax)).is_available
    except (NotImplementedError, ValueError):
        return False


def _object_choice(ranges: list[multipart.MediaRange], stored: str) -> bool | None:
    """For one stored object: False to send it as stored, True to transcode, None if unacceptable.

    A range without a transfer-syntax parameter, or with `*`, takes the stored syntax: the
    original bytes are what an archive should hand back, and converting costs a full decode.
    """
    for media_range in ranges:
        if not (media_range.is_multipart or media_range.media_type == "*/*"):
            continue
        if not multipart.type_matches(media_range.inner_type, "application/dicom"):
            continue
        wanted = media_range.transfer_syntax
        if wanted in (None, "*", stored):
            return False
        if wanted == ExplicitVRLittleEndian and _can_transcode(stored):
            return True
    return None


def _transcode(instance) -> bytes:
    """The instance as Explicit VR Little Endian Part 10 bytes (decoded in memory, one at a time)."""
    with open_instance_blob(instance) as reader:
        try:
            ds = pydicom.dcmread(reader, force=False)
            syntax = ds.file_meta.TransferSyntaxUID
            if syntax.is_compressed:
                # Same SOP Instance UID: the pixels are what was stored, only re-encoded.
                ds.decompress(generate_instance_uid=False)
            else:
                if not syntax.is_little_endian:
                    _swap_to_little_endian(ds)
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            buffer = BytesIO()
            dcmwrite(buffer, ds, enforce_file_format=True)
        except _TRANSCODE_ERRORS as exc:
            raise _TranscodeError(type(exc).__name__) from exc
    return buffer.getvalue()


def _swap_to_little_endian(ds) -> None:
    """Swap the bytes of binary values; pydicom leaves that to the caller (dcmwrite docs)."""
    for elem in ds.iterall():
        # Numeric VRs (US, FL...) were decoded to numbers and are re-encoded by dcmwrite.
        width = _SWAP_WIDTHS.get(elem.VR) if elem.VR.startswith("O") else None
        if width and isinstance(elem.value, bytes | bytearray):
            elem.value = _to_little_endian(bytes(elem.value), width)


async def _object_parts(plans: list[tuple[Instance, bool]], prepared: dict[int, bytes]):
    for instance, transcode in plans:
        if not transcode:
            yield f"application/dicom; transfer-syntax={instance.transfer_syntax_uid}", _blob_chunks(instance)
            continue
        data = prepared.get(instance.pk)
        if data is None:
            try:
                data = await sync_to_async(_transcode)(instance)
            except _TranscodeError as exc:
                # Headers are sent: abort the body so the client sees a broken transfer, not a short one.
                logger.error("cannot transcode instance %s (%s)", instance.sop_instance_uid, exc)
                raise
        yield f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}", _bytes_chunks(data)


def _scope(request, kwargs: dict):
    """The instances (and their organisation) named by the URL's study/series/instance UIDs."""
    return access.instances_in_scope(request.user, kwargs["study"], kwargs.get("series"), kwargs.get("instance"))


def _retrieve_objects(request, resource: str, instances, organization, kwargs: dict) -> StreamingHttpResponse:
    instances = list(
        instances.select_related("series")
        .defer("metadata")
        .order_by("series__series_number", "series_id", "instance_number", "pk")
    )
    if not instances:
        raise Http404("no instances")
    ranges = multipart.parse_accept(request.headers.get("Accept"))
    plans = []
    for instance in instances:
        choice = _object_choice(ranges, instance.transfer_syntax_uid)
        if choice is None:
            raise _Refusal(
                406,
                'this server sends multipart/related; type="application/dicom" in the stored '
                f"transfer syntax or {ExplicitVRLittleEndian} (Explicit VR Little Endian)",
            )
        plans.append((instance, choice))
    prepared: dict[int, bytes] = {}
    if len(plans) == 1 and plans[0][1]:
        # One object: convert before answering, so a failure can still be a clean 406.
        try:
            prepared[instances[0].pk] = _transcode(instances[0])
        except _TranscodeError:
            raise _Refusal(406, "this instance cannot be converted to Explicit VR Little Endian") from None
    _audit(
        request,
        resource,
        kwargs,
        organization,
        instances=len(plans),
        series=sorted({i.series.series_instance_uid for i in instances}),
        transcoded=sum(1 for _, t in plans if t),
    )
    boundary = multipart.new_boundary()
    body = multipart.stream(boundary, _object_parts(plans, prepared))
    return _streaming(body, multipart.content_type(boundary, "application/dicom"))


@require_safe
@dicomweb_view()
@_guarded("study")
def retrieve_study(request, **kwargs):
    return _retrieve_objects(request, "study", *_scope(request, kwargs), kwargs)


@require_safe
@dicomweb_view()
@_guarded("series")
def retrieve_series(request, **kwargs):
    return _retrieve_objects(request, "series", *_scope(request, kwargs), kwargs)


@require_safe
@dicomweb_view()
@_guarded("instance")
def retrieve_instance(request, **kwargs):
    return _retrieve_objects(request, "instance", *_scope(request, kwargs), kwargs)


# --- metadata --------------------------------------------------------------------------------


def _metadata_batch(ids: list[int], base: str) -> list[dict]:
    rows = Instance.objects.filter(pk__in=ids).values_list(
        "pk",
        "metadata",
        "transfer_syntax_uid",
        "sop_instance_uid",
        "series__series_instance_uid",
        "series__study__study_instance_uid",
    )
    by_pk = {row[0]: row for row in rows}
    result = []
    for pk in ids:
        if pk not in by_pk:
            continue  # deleted since the list was made
        _, metadata, syntax, sop, series, study = by_pk[pk]
        dataset = dicomjson.with_bulk_uris(metadata, f"{base}/{study}/series/{series}/instances/{sop}")
        # Available Transfer Syntax UID (0008,3002): what the frames resource can send as stored.
        dataset["00083002"] = dicomjson.string("UI", syntax)
        result.append(dict(sorted(dataset.items())))
    return result


async def _metadata_body(ids: list[int], base: str) -> AsyncIterator[bytes]:
    yield b"["
    first = True
    for start in range(0, len(ids), METADATA_BATCH):
        batch = await sync_to_async(_metadata_batch)(ids[start : start + METADATA_BATCH], base)
        for dataset in batch:
            yield (b"" if first else b",") + json.dumps(dataset, separators=(",", ":")).encode()
            first = False
    yield b"]"


def _metadata(request, resource: str, instances, organization, kwargs: dict) -> StreamingHttpResponse:
    if not multipart.accepts_json(request.headers.get("Accept")):
        raise _Refusal(406, "metadata is sent as application/dicom+json only")
    ids = list(
        instances.order_by("series__series_number", "series_id", "instance_number", "pk").values_list("pk", flat=True)
    )
    if not ids:
        raise Http404("no instances")
    _audit(request, resource, kwargs, organization, instances=len(ids))
    base = request.build_absolute_uri(reverse("dicomweb:studies"))
    return _streaming(_metadata_body(ids, base), DICOM_JSON)


@require_safe
@dicomweb_view()
@_guarded("study-metadata")
def study_metadata(request, **kwargs):
    return _metadata(request, "study-metadata", *_scope(request, kwargs), kwargs)


@require_safe
@dicomweb_view()
@_guarded("series-metadata")
def series_metadata(request, **kwargs):
    return _metadata(request, "series-metadata", *_scope(request, kwargs), kwargs)


@require_safe
@dicomweb_view()
@_guarded("instance-metadata")
def instance_metadata(request, **kwargs):
    return _metadata(request, "instance-metadata", *_scope(request, kwargs), kwargs)


# --- pixel data ------------------------------------------------------------------------------


class _PixelData:
    """Where an instance's pixel data lies in its stored bytes, read from the header alone.

    Native frames are cut at `offset + index * frame size`; encapsulated frames are found with
    pydicom.encaps.get_frame from the Basic (or Extended) Offset Table, or by walking item
    headers. A deflated dataset has no file positions to seek to, so it alone is inflated.
    """

    def __init__(self, reader, syntax: str):
        self.reader = reader
        self.syntax = UID(syntax)
        reader.seek(0)
        self.ds = pydicom.dcmread(reader, stop_before_pixels=True)
        self.frames = int(self.ds.get("NumberOfFrames") or 1)
        self.inflated: bytes | None = None
        if self.syntax == DeflatedExplicitVRLittleEndian:
            reader.seek(0)
            full = pydicom.dcmread(reader)
            tag = next((t for t in PIXEL_TAGS if t in full), None)
            if tag is None:
                raise _PixelDataError("no pixel data")
            self.tag, self.vr, self.inflated = tag, full[tag].VR, full[tag].value
            self.offset, self.length = 0, len(self.inflated)
        else:
            self.tag, self.vr, self.offset, self.length = self._locate(reader)
        self.encapsulated = self.length == 0xFFFFFFFF

    def _locate(self, reader) -> tuple[int, str, int, int]:
        """Parse the pixel data element header where the header parse stopped."""
        position = reader.tell()
        head = reader.read(8)
        if len(head) < 8:
            raise _PixelDataError("no pixel data")
        order = "<" if self.syntax.is_little_endian else ">"
        group, element = struct.unpack(f"{order}HH", head[:4])
        tag = group << 16 | element
        if tag not in PIXEL_TAGS:
            raise _PixelDataError("no pixel data")
        vr = head[4:6]
        # Some writers put implicit VR pixel data in an explicit VR file; pydicom reads it too.
        if self.syntax.is_implicit_VR or not (vr.isalpha() and vr.isupper()):
            return tag, "", position + 8, struct.unpack(f"{order}L", head[4:8])[0]
        if vr in _LONG_VRS:
            return tag, vr.decode(), position + 12, struct.unpack(f"{order}L", reader.read(4))[0]
        return tag, vr.decode(), position + 8, struct.unpack(f"{order}H", head[6:8])[0]

    @property
    def swap(self) -> int:
        """Byte width to swap native values by (0: already little endian)."""
        if self.syntax.is_little_endian or self.inflated is not None:
            return 0
        bits = PIXEL_TAGS[self.tag] or int(self.ds.BitsAllocated)
        if bits >= 16:
            return bits // 8
        return 2 if self.vr == "OW" else 0

    def _read(self, start: int, size: int) -> bytes:
        if start + size > self.length:
            raise _PixelDataError("pixel data is shorter than Rows x Columns x frames says")
        if self.inflated is not None:
            return self.inflated[start : start + size]
        self.reader.seek(self.offset + start)
        data = self.reader.read(size)
        if len(data) != size:
            raise _PixelDataError("the stored object is shorter than its header says")
        return data

    def native_frame(self, index: int) -> bytes:
        """Frame `index` (from 0) of native pixel data, little endian (PS3.5 8.1.1)."""
        ds = self.ds
        bits = PIXEL_TAGS[self.tag] or int(ds.BitsAllocated)
        frame_bits = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * bits
        if bits == 1:
            # Bit-packed frames need not start on a byte boundary (PS3.5 8.1.1).
            first_bit = index * frame_bits
            start = first_bit // 8
            data = self._read(start, (first_bit + frame_bits + 7) // 8 - start)
            unpacked = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
            shift = first_bit % 8
            return np.packbits(unpacked[shift : shift + frame_bits], bitorder="little").tobytes()
        size = frame_bits // 8
        start = index * size
        width = self.swap
        if not width:
            return self._read(start, size)
        aligned = start - start % width
        end = start + size
        end += -end % width
        data = _to_little_endian(self._read(aligned, min(end, self.length) - aligned), width)
        return data[start - aligned : start - aligned + size]

    def stored_frame(self, index: int) -> bytes:
        """Frame `index` of encapsulated pixel data, as the compressed bytes stored."""
        offsets = None
        if "ExtendedOffsetTable" in self.ds and "ExtendedOffsetTableLengths" in self.ds:
            offsets = (self.ds.ExtendedOffsetTable, self.ds.ExtendedOffsetTableLengths)
        self.reader.seek(self.offset)
        try:
            return get_frame(self.reader, index, number_of_frames=self.frames, extended_offsets=offsets)
        except (ValueError, EOFError) as exc:
            raise _PixelDataError(f"cannot find frame {index + 1} in the encapsulated pixel data") from exc

    def decoded_frame(self, index: int) -> bytes:
        """Frame `index` of encapsulated pixel data, decoded to native little endian bytes.

        Only the frame's own compressed bytes are decoded (re-wrapped as a one-frame item), with
        YCbCr turned into RGB as a full decode would (pydicom's default, as_rgb=True).
        """
        frame = self.stored_frame(index)
        options = as_pixel_options(self.ds, number_of_frames=1)
        try:
            array, _ = get_decoder(self.syntax).as_array(
                encapsulate([frame]), index=0, transfer_syntax_uid=self.syntax, **options
            )
        except _TRANSCODE_ERRORS as exc:
            raise _PixelDataError(f"cannot decode frame {index + 1}") from exc
        return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()

    def frame(self, index: int, mode: str) -> bytes:
        if not self.encapsulated:
            return self.native_frame(index)
        return self.decoded_frame(index) if mode == "decoded" else self.stored_frame(index)


@dataclass(frozen=True)
class _FramePlan:
    mode: str  # "native", "stored" (compressed, as stored) or "decoded"
    media_type: str
    part_content_type: str


def _plan_frames(ranges: list[multipart.MediaRange], stored: str) -> _FramePlan | None:
    """Pick how to send frames or pixel bulk data from the Accept ranges (PS3.18 8.7.3-8.7.4)."""
    if stored in NATIVE_SYNTAXES:
        native = _FramePlan("native", OCTET_STREAM, f"{OCTET_STREAM}; transfer-syntax={ExplicitVRLittleEndian}")
        for media_range in ranges:
            if (
                (media_range.is_multipart or media_range.media_type == "*/*")
                and multipart.type_matches(media_range.inner_type, OCTET_STREAM)
                and media_range.transfer_syntax in (None, "*", ExplicitVRLittleEndian)
            ):
                # Native pixels always go out little endian, whatever byte order they are stored in.
                return native
        return None
    media = FRAME_MEDIA_TYPES.get(stored, OCTET_STREAM)
    decodable = _can_transcode(stored)
    decoded = _FramePlan("decoded", OCTET_STREAM, f"{OCTET_STREAM}; transfer-syntax={ExplicitVRLittleEndian}")
    for media_range in ranges:
        if not (media_range.is_multipart or media_range.media_type == "*/*"):
            continue
        inner = _MEDIA_ALIASES.get(media_range.inner_type, media_range.inner_type)
        wanted = media_range.transfer_syntax
        if inner in (OCTET_STREAM, "application/*"):
            if wanted in ("*", stored):
                return _FramePlan("stored", OCTET_STREAM, f"{OCTET_STREAM}; transfer-syntax={stored}")
            if wanted in (None, ExplicitVRLittleEndian) and decodable:
                return decoded
        elif multipart.type_matches(inner, media):
            if wanted in (None, "*", stored):
                return _FramePlan("stored", media, f"{media}; transfer-syntax={stored}")
            if wanted == ExplicitVRLittleEndian and inner == "*/*" and decodable:
                return decoded
    return None


def _has_pixels(instance) -> bool:
    return any(f"{tag:08X}" in instance.metadata for tag in PIXEL_TAGS)


def _frame_numbers(text: str, count: int) -> list[int]:
    numbers = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece.isdigit() or len(piece) > 9:
            raise _Refusal(400, "frames are a comma-separated list of frame numbers, counting from 1")
        number = int(piece)
        if not 1 <= number <= count:
            raise _Refusal(400, f"frame numbers run from 1 to {count} for this instance")
        numbers.append(number)
    if len(numbers) > 10_000:
        raise _Refusal(400, "too many frames in one request")
    return numbers


async def _frame_parts(instance, numbers: list[int], plan: _FramePlan):
    reader = await sync_to_async(open_instance_blob)(instance)
    try:
        pixels = await sync_to_async(_PixelData)(reader, instance.transfer_syntax_uid)
        for number in numbers:
            try:
                data = await sync_to_async(pixels.frame)(number - 1, plan.mode)
            except _PixelDataError as exc:
                logger.error("cannot send frame %d of instance %s (%s)", number, instance.sop_instance_uid, exc)
                raise
            yield plan.part_content_type, _once(data)
    finally:
        reader.close()


@require_safe
@dicomweb_view()
@_guarded("frames")
def retrieve_frames(request, **kwargs):
    instance = access.get_instance(request.user, kwargs["study"], kwargs["series"], kwargs["instance"])
    if not _has_pixels(instance) or not instance.rows or not instance.columns:
        raise _Refusal(400, "this instance has no pixel data, so it has no frames")
    numbers = _frame_numbers(kwargs["frames"], instance.number_of_frames)
    plan = _plan_frames(multipart.parse_accept(request.headers.get("Accept")), instance.transfer_syntax_uid)
    if plan is None:
        raise _Refusal(406, f"frames of this instance are sent as {_frame_offer(instance.transfer_syntax_uid)}")
    _audit(request, "frames", kwargs, instance.organization_id, frames=numbers[:100], mode=plan.mode)
    boundary = multipart.new_boundary()
    body = multipart.stream(boundary, _frame_parts(instance, numbers, plan))
    return _streaming(body, multipart.content_type(boundary, plan.media_type))


def _frame_offer(syntax: str) -> str:
    if syntax in NATIVE_SYNTAXES:
        return f'multipart/related; type="{OCTET_STREAM}"'
    media = FRAME_MEDIA_TYPES.get(syntax, OCTET_STREAM)
    return f'multipart/related; type="{media}" or type="{OCTET_STREAM}"; transfer-syntax=*'


# --- bulk data -------------------------------------------------------------------------------


def _read_bulk_value(reader, path: str, vr: str, syntax: str) -> bytes:
    """The raw value a bulk data path names, little endian; only that element is read."""
    parts = path.upper().split(".")
    reader.seek(0)
    ds = pydicom.dcmread(reader, specific_tags=[int(parts[0], 16)])
    node = ds
    try:
        for position in range(0, len(parts) - 1, 2):
            node = node[int(parts[position], 16)].value[int(parts[position + 1])]
        element = node.get_item(int(parts[-1], 16))
    except (KeyError, IndexError) as exc:
        raise _PixelDataError("the bulk data element is not in the stored object") from exc
    value = getattr(element, "value", None)
    if not isinstance(value, bytes | bytearray):
        raise _PixelDataError("the bulk data value was not read as raw bytes")
    width = 0 if UID(syntax).is_little_endian else _SWAP_WIDTHS.get(vr, 0)
    return _to_little_endian(bytes(value), width) if width else bytes(value)


async def _bulk_value_parts(instance, path: str, vr: str):
    reader = await sync_to_async(open_instance_blob)(instance)
    try:
        data = await sync_to_async(_read_bulk_value)(reader, path, vr, instance.transfer_syntax_uid)
    finally:
        reader.close()
    yield OCTET_STREAM, _once(data)


async def _native_pixel_parts(instance):
    reader = await sync_to_async(open_instance_blob)(instance)
    try:
        pixels = await sync_to_async(_PixelData)(reader, instance.transfer_syntax_uid)
    finally:
        reader.close()
    if pixels.inflated is not None:
        yield OCTET_STREAM, _bytes_chunks(pixels.inflated)
    else:
        yield OCTET_STREAM, _blob_chunks(instance, start=pixels.offset, length=pixels.length, swap=pixels.swap)


@require_safe
@dicomweb_view()
@_guarded("bulkdata")
def retrieve_bulkdata(request, **kwargs):
    instance = access.get_instance(request.user, kwargs["study"], kwargs["series"], kwargs["instance"])
    path = kwargs["tag"]
    marker = dicomjson.find_bulk(instance.metadata, path) if dicomjson.valid_bulk_path(path) else None
    if marker is None:
        raise Http404("no such bulk data")
    ranges = multipart.parse_accept(request.headers.get("Accept"))
    syntax = instance.transfer_syntax_uid
    boundary = multipart.new_boundary()
    if "." not in path and int(path, 16) in PIXEL_TAGS:
        plan = _plan_frames(ranges, syntax)
        if plan is None:
            raise _Refusal(406, f"pixel data of this instance is sent as {_frame_offer(syntax)}")
        if plan.mode == "native":
            parts = _native_pixel_parts(instance)
        else:
            # Encapsulated pixel data: one part per frame (PS3.18 8.7.3.3.2).
            parts = _frame_parts(instance, list(range(1, instance.number_of_frames + 1)), plan)
        media_type = plan.media_type
    else:
        if not any(
            (r.is_multipart or r.media_type == "*/*") and multipart.type_matches(r.inner_type, OCTET_STREAM)
            for r in ranges
        ):
            raise _Refusal(406, f'bulk data is sent as multipart/related; type="{OCTET_STREAM}"')
        parts = _bulk_value_parts(instance, path.upper(), marker.get("vr", "UN"))
        media_type = OCTET_STREAM
    _audit(request, "bulkdata", kwargs, instance.organization_id, tag=path.upper())
    return _streaming(multipart.stream(boundary, parts), multipart.content_type(boundary, media_type))
