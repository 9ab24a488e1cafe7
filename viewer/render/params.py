"""Render inputs: ``ImageInfo`` (what the file says) and ``RenderParams`` (what the viewer asks).

``from_dataset`` (alias ``image_info``) is the single adapter from DICOM attributes; every other
module of the engine reads ``ImageInfo`` and never a ``Dataset``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut

from .errors import CorruptPixelData, InvalidRenderParams

__all__ = [
    "CT_WINDOW_PRESETS",
    "Ellipse",
    "ImageInfo",
    "Lut",
    "Rect",
    "RenderParams",
    "VOI_FUNCTIONS",
    "Window",
    "from_dataset",
    "image_info",
]

# Common CT window presets as (center, width) in HU. Values as published in Radiopaedia,
# "Windowing (CT)" (https://radiopaedia.org/articles/windowing-ct): brain W80/L40,
# subdural W130-300/L50-100 (we take L75/W215, the middle of both ranges), stroke W40/L40,
# lungs W1500/L-600, mediastinum W350/L50, abdomen W400/L40, bone W1800/L400. Radiopaedia
# gives liver W150/L30; L60/W160 is the liver preset of common PACS viewers and fits
# contrast-enhanced parenchyma better.
CT_WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}

# PS3.3 C.11.2.1.3 VOI LUT Function defined terms.
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
FORMATS = ("jpeg", "png", "webp")
ROTATIONS = (0, 90, 180, 270)
MAX_OUTPUT_SIDE = 8192
MAX_REDACTIONS = 256
MAX_WATERMARK_CHARS = 200

_SUPPORTED_PHOTOMETRIC = (
    "MONOCHROME1",
    "MONOCHROME2",
    "PALETTE COLOR",
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_ICT",
    "YBR_RCT",
)

# Defined terms we do not render (PS3.3 C.7.6.3.1.2, some retired)
_OTHER_PHOTOMETRIC = ("ARGB", "CMYK", "HSV", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "XYB")


@dataclass(frozen=True)
class Lut:
    """One LUT of a Modality or VOI LUT Sequence item (PS3.3 C.11.1.1.1, C.11.2.1.1).

    ``data`` holds the entries as little-endian uint16 so the object is hashable and its hash
    is cached by ``bytes``.
    """

    first_mapped: int
    bits: int
    data: bytes
    explanation: str = ""
    lut_type: str = ""

    def values(self) -> np.ndarray:
        """Return the LUT entries as a read-only uint16 array.

        Returns
        -------
        numpy.ndarray
            One entry per input value, starting at ``first_mapped``.
        """
        return np.frombuffer(self.data, dtype="<u2")

    @property
    def entries(self) -> int:
        """Number of LUT entries."""
        return len(self.data) // 2


@dataclass(frozen=True)
class ImageInfo:
    """The DICOM attributes the engine needs, read once from a dataset (PS3.3 C.7.6.3).

    ``pixel_spacing`` is (row spacing, column spacing) in mm; ``pixel_spacing_source`` says
    whether it came from Pixel Spacing (patient plane) or Imager Pixel Spacing (detector
    plane, PS3.3 C.8.11.7, not corrected for magnification). ``palette`` is an RGB uint8
    table (``2**bits_allocated`` x 3 entries) for PALETTE COLOR images.
    """

    rows: int
    columns: int
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    photometric_interpretation: str = "MONOCHROME2"
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    planar_configuration: int = 0
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    rescale_type: str = ""
    modality_lut: Lut | None = None
    window_centers: tuple[float, ...] = ()
    window_widths: tuple[float, ...] = ()
    window_explanations: tuple[str, ...] = ()
    voi_lut_function: str = "LINEAR"
    voi_luts: tuple[Lut, ...] = ()
    pixel_padding_value: int | None = None
    pixel_padding_range_limit: int | None = None
    pixel_spacing: tuple[float, float] | None = None
    pixel_spacing_source: str | None = None
    modality: str = ""
    transfer_syntax_uid: str = ""
    palette: bytes | None = field(default=None, repr=False)

    @property
    def is_signed(self) -> bool:
        """True when stored values are two's complement (Pixel Representation 1)."""
        return self.pixel_representation == 1

    @property
    def is_monochrome(self) -> bool:
        """True for MONOCHROME1 and MONOCHROME2."""
        return self.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2")

    @property
    def frame_pixels(self) -> int:
        """Samples in one frame: rows x columns x samples per pixel."""
        return self.rows * self.columns * self.samples_per_pixel

    @property
    def frame_bytes(self) -> int:
        """Bytes of one natively encoded frame, rounded up (PS3.5 8.1.1, 8.2)."""
        if self.photometric_interpretation == "YBR_FULL_422":
            # PS3.3 C.7.6.3.1.2: two samples per pixel after horizontal subsampling
            return self.rows * self.columns * 2 * self.bits_allocated // 8
        return math.ceil(self.frame_pixels * self.bits_allocated / 8)

    def padding_range(self) -> tuple[int, int] | None:
        """Return the stored-value range marked as padding (PS3.3 C.7.5.1.1.2), or None.

        Returns
        -------
        tuple[int, int] | None
            Inclusive (low, high) stored values, or None when the image has no padding.
        """
        if self.pixel_padding_value is None:
            return None
        limit = self.pixel_padding_range_limit
        if limit is None:
            return (self.pixel_padding_value, self.pixel_padding_value)
        return (min(self.pixel_padding_value, limit), max(self.pixel_padding_value, limit))

    def palette_table(self) -> np.ndarray:
        """Return the PALETTE COLOR table as a read-only (N, 3) uint8 array.

        Returns
        -------
        numpy.ndarray
            Row ``v`` is the RGB colour of stored value ``v``.

        Raises
        ------
        CorruptPixelData
            If the image has no palette.
        """
        if self.palette is None:
            raise CorruptPixelData(
                "(0028,1201) Red Palette Color Lookup Table Data: expected present for PALETTE COLOR, got missing"
            )
        return np.frombuffer(self.palette, dtype=np.uint8).reshape(-1, 3)


class Window(NamedTuple):
    """A resolved VOI transform: a window (center, width, function) or a VOI LUT by index."""

    center: float
    width: float
    function: str
    lut_index: int | None = None


@dataclass(frozen=True)
class Rect:
    """A rectangle in source pixel coordinates: columns x..x+w-1, rows y..y+h-1."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse in source pixel coordinates (pixel (c, r) centre is c+.5, r+.5)."""

    cx: float
    cy: float
    rx: float
    ry: float


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class RenderParams:
    """What to render: window, frame, viewport, orientation, overlays and output format.

    ``window_center``/``window_width`` None means the default window (``lut.resolve_window``);
    ``voi_function`` None means the file's VOI LUT Function (LINEAR if absent). ``width`` and
    ``height`` bound the output, which keeps the region's aspect ratio (PS3.18 8.3.5.1.3
    viewport semantics). ``region`` is (sx, sy, sw, sh) and ``redactions`` are (x, y, w, h)
    rectangles, all in source pixels. ``rotation`` is clockwise degrees; flips apply after it.
    """

    window_center: float | None = None
    window_width: float | None = None
    voi_function: str | None = None
    frame: int = 0
    width: int | None = None
    height: int | None = None
    region: tuple[int, int, int, int] | None = None
    rotation: int = 0
    flip_h: bool = False
    flip_v: bool = False
    invert: bool = False
    format: str = "jpeg"
    quality: int = 90
    watermark: str | None = None
    redactions: tuple[tuple[int, int, int, int], ...] = ()

    def __post_init__(self) -> None:
        wc, ww = self.window_center, self.window_width
        if (wc is None) != (ww is None):
            raise InvalidRenderParams("window_center/window_width: expected both or neither, got only one")
        if wc is not None and ww is not None:
            if not (_is_number(wc) and _is_number(ww)):
                raise InvalidRenderParams(
                    f"window_center/window_width: expected finite numbers, got {type(wc).__name__}/{type(ww).__name__}"
                )
            object.__setattr__(self, "window_center", float(wc))
            object.__setattr__(self, "window_width", float(ww))
            # PS3.3 C.11.2.1.2: Window Width >= 1 for LINEAR, > 0 for the others
            minimum = 1.0 if self.voi_function in (None, "LINEAR") else 0.0
            if float(ww) < minimum or float(ww) <= 0:
                raise InvalidRenderParams(f"window_width: expected >= 1 (LINEAR) or > 0, got {float(ww):g}")
        if self.voi_function is not None and self.voi_function not in VOI_FUNCTIONS:
            raise InvalidRenderParams(
                f"voi_function: expected one of {', '.join(VOI_FUNCTIONS)}, got {str(self.voi_function)[:20]!r}"
            )
        if not _is_int(self.frame) or self.frame < 0:
            raise InvalidRenderParams(f"frame: expected an integer >= 0, got {self.frame!r}")
        # numpy integers become int so equal params have equal cache keys
        object.__setattr__(self, "frame", int(self.frame))
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or not 1 <= value <= MAX_OUTPUT_SIDE):
                raise InvalidRenderParams(f"{name}: expected an integer in 1..{MAX_OUTPUT_SIDE}, got {value!r}")
            object.__setattr__(self, name, None if value is None else int(value))
        if self.region is not None:
            object.__setattr__(self, "region", _rect_tuple("region", self.region))
        if self.rotation not in ROTATIONS or isinstance(self.rotation, bool):
            raise InvalidRenderParams(f"rotation: expected one of 0, 90, 180, 270, got {self.rotation!r}")
        object.__setattr__(self, "rotation", int(self.rotation))
        for name in ("flip_h", "flip_v", "invert"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidRenderParams(f"{name}: expected a bool")
        if self.format not in FORMATS:
            raise InvalidRenderParams(f"format: expected one of {', '.join(FORMATS)}, got {str(self.format)[:20]!r}")
        if not _is_int(self.quality) or not 1 <= self.quality <= 100:
            raise InvalidRenderParams(f"quality: expected 1..100, got {self.quality!r}")
        object.__setattr__(self, "quality", int(self.quality))
        if self.watermark is not None:
            if not isinstance(self.watermark, str):
                raise InvalidRenderParams("watermark: expected a string or None")
            if len(self.watermark) > MAX_WATERMARK_CHARS:
                raise InvalidRenderParams(
                    f"watermark: expected at most {MAX_WATERMARK_CHARS} characters, got {len(self.watermark)}"
                )
        if not isinstance(self.redactions, Sequence) or isinstance(self.redactions, str):
            raise InvalidRenderParams("redactions: expected a sequence of (x, y, w, h)")
        if len(self.redactions) > MAX_REDACTIONS:
            raise InvalidRenderParams(f"redactions: expected at most {MAX_REDACTIONS}, got {len(self.redactions)}")
        object.__setattr__(self, "redactions", tuple(_rect_tuple("redactions", r) for r in self.redactions))

    @property
    def has_window(self) -> bool:
        """True when the request names an explicit window."""
        return self.window_center is not None

    def cache_key(self) -> str:
        """Return a stable digest of every field, equal across processes for equal params.

        Returns
        -------
        str
            32 hex characters; combine with the SOP Instance UID to key a render cache.
        """
        canonical = repr(tuple((f.name, getattr(self, f.name)) for f in fields(self)))
        return hashlib.blake2b(canonical.encode("utf-8"), digest_size=16).hexdigest()


def _rect_tuple(name: str, value: Any) -> tuple[int, int, int, int]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 4
        or not all(_is_int(v) for v in value)
    ):
        raise InvalidRenderParams(f"{name}: expected (x, y, w, h) integers, got {value!r}"[:120])
    x, y, w, h = (int(v) for v in value)
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise InvalidRenderParams(f"{name}: expected x, y >= 0 and w, h >= 1, got ({x}, {y}, {w}, {h})")
    return (x, y, w, h)


# -- the adapter ------------------------------------------------------------------------


def _functional_item(ds: Dataset, sequence: str) -> Dataset | None:
    """First item of `sequence` in the shared, else first per-frame, functional group."""
    for groups_keyword in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = ds.get(groups_keyword)
        if groups:
            items = groups[0].get(sequence)
            if items:
                return items[0]  # type: ignore[no-any-return]
    return None


def _required_int(ds: Dataset, keyword: str, tag: str, allowed: Sequence[int] | None = None) -> int:
    value = ds.get(keyword)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CorruptPixelData(
            f"({tag}) {keyword}: expected an integer, got {'missing' if value is None else type(value).__name__}"
        ) from None
    if allowed is not None and number not in allowed:
        raise CorruptPixelData(f"({tag}) {keyword}: expected one of {', '.join(map(str, allowed))}, got {number}")
    return number


def _floats(value: Any) -> tuple[float, ...]:
    """Multi-valued DS as floats; unparsable values are dropped (lenient on purpose)."""
    if value is None or value == "":
        return ()
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    out = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            continue
        out.append(number)
    return tuple(out)


def _to_signed(value: int, bits_allocated: int, signed: bool) -> int:
    """Undo a US read of an 'US or SS' value when Pixel Representation is 1."""
    if signed and value >= 1 << (bits_allocated - 1) and bits_allocated <= 16:
        return value - (1 << bits_allocated)
    return value


def _read_lut(item: Dataset, sequence_tag: str, signed: bool, little_endian: bool) -> Lut:
    """Read one Modality/VOI LUT Sequence item (PS3.3 C.11.1.1.1 LUT Descriptor)."""
    descriptor = item.get("LUTDescriptor")
    data = item.get("LUTData")
    if descriptor is None or len(descriptor) != 3 or data is None:
        raise CorruptPixelData(
            f"({sequence_tag}) LUT Descriptor/LUT Data: expected 3 descriptor values and data, "
            f"got {'missing' if descriptor is None else len(descriptor)} values"
        )
    entries = int(descriptor[0]) or 65536  # PS3.3 C.11.1.1.1: 0 means 2**16 entries
    first = int(descriptor[1])
    # The first mapped value is US or SS depending on the pixel representation
    if signed and first >= 1 << 15:
        first -= 1 << 16
    bits = int(descriptor[2])
    if bits < 1 or bits > 16:
        raise CorruptPixelData(f"({sequence_tag}) LUT Descriptor: expected 8..16 bits per entry, got {bits}")
    if isinstance(data, bytes | bytearray):
        # OW data keeps the dataset's byte order; 8-bit entries may be packed as bytes
        if bits <= 8 and len(data) == entries:
            values = np.frombuffer(data, dtype=np.uint8).astype("<u2")
        else:
            values = np.frombuffer(data, dtype="<u2" if little_endian else ">u2").astype("<u2")
    else:
        values = np.asarray(list(data) if isinstance(data, Sequence) else [data], dtype=np.int64).astype("<u2")
    if len(values) < entries:
        raise CorruptPixelData(f"({sequence_tag}) LUT Data: expected {entries} entries, got {len(values)}")
    return Lut(
        first_mapped=first,
        bits=bits,
        data=values[:entries].tobytes(),
        explanation=str(item.get("LUTExplanation", "") or ""),
        lut_type=str(item.get("ModalityLUTType", "") or ""),
    )


def from_dataset(ds: Dataset, *, transfer_syntax_uid: str | None = None) -> ImageInfo:
    """Build the ``ImageInfo`` of a dataset; the single adapter from DICOM attributes.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        Header (pixel data not needed). Enhanced multi-frame attributes are read from the
        Shared Functional Groups, else the first Per-Frame item (PS3.3 C.7.6.16).
    transfer_syntax_uid : str, optional
        Overrides ``ds.file_meta.TransferSyntaxUID``.

    Returns
    -------
    ImageInfo

    Raises
    ------
    CorruptPixelData
        If a required Image Pixel module attribute (PS3.3 C.7.6.3) is missing or invalid.
    """
    rows = _required_int(ds, "Rows", "0028,0010")
    columns = _required_int(ds, "Columns", "0028,0011")
    if rows < 1 or columns < 1:
        raise CorruptPixelData(f"(0028,0010)/(0028,0011) Rows/Columns: expected >= 1, got {rows} x {columns}")
    samples = _required_int(ds, "SamplesPerPixel", "0028,0002", (1, 3))
    bits_allocated = _required_int(ds, "BitsAllocated", "0028,0100", (1, 8, 16, 32, 64))
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    if not 1 <= bits_stored <= bits_allocated:
        raise CorruptPixelData(f"(0028,0101) BitsStored: expected 1..{bits_allocated}, got {bits_stored}")
    pixel_representation = int(ds.get("PixelRepresentation") or 0)
    if pixel_representation not in (0, 1):
        raise CorruptPixelData(f"(0028,0103) PixelRepresentation: expected 0 or 1, got {pixel_representation}")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        # PRIVACY: echo the value only when it is a defined term, never free text
        shown = repr(photometric) if photometric in _OTHER_PHOTOMETRIC else "another value"
        raise CorruptPixelData(
            "(0028,0004) PhotometricInterpretation: expected one of "
            f"{', '.join(_SUPPORTED_PHOTOMETRIC)}, got {shown if photometric else 'missing'}"
        )
    expected_samples = 1 if photometric.startswith(("MONOCHROME", "PALETTE")) else 3
    if samples != expected_samples:
        raise CorruptPixelData(
            f"(0028,0002) SamplesPerPixel: expected {expected_samples} for {photometric}, got {samples}"
        )
    raw_frames = ds.get("NumberOfFrames")
    try:
        frames = int(raw_frames) if raw_frames not in (None, "") else 1
    except (TypeError, ValueError):
        raise CorruptPixelData(
            "(0028,0008) NumberOfFrames: expected a positive integer, got an unparsable value"
        ) from None
    if frames < 1:
        frames = 1  # PS3.3 C.7.6.6: 0 is invalid; treated as one frame like pydicom does
    planar = int(ds.get("PlanarConfiguration") or 0) if samples > 1 else 0
    if planar not in (0, 1):
        raise CorruptPixelData(f"(0028,0006) PlanarConfiguration: expected 0 or 1, got {planar}")
    signed = pixel_representation == 1
    tsyntax = transfer_syntax_uid
    if tsyntax is None:
        tsyntax = str(getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID", "") or "")
    little_endian = tsyntax != "1.2.840.10008.1.2.2"  # only Explicit VR Big Endian is big

    # Modality LUT (PS3.3 C.11.1): sequence, else rescale; enhanced: Pixel Value Transformation
    source = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else None
    source = source or _functional_item(ds, "PixelValueTransformationSequence") or ds
    slope = _floats(source.get("RescaleSlope"))
    intercept = _floats(source.get("RescaleIntercept"))
    modality_lut = None
    if ds.get("ModalityLUTSequence"):
        modality_lut = _read_lut(ds.ModalityLUTSequence[0], "0028,3000", signed, little_endian)

    # VOI (PS3.3 C.11.2): windows, VOI LUT Function, VOI LUT Sequence; enhanced: Frame VOI LUT
    voi_source = ds if "WindowCenter" in ds else _functional_item(ds, "FrameVOILUTSequence") or ds
    centers = _floats(voi_source.get("WindowCenter"))
    widths = _floats(voi_source.get("WindowWidth"))
    explanation = voi_source.get("WindowCenterWidthExplanation") or ()
    if isinstance(explanation, str):
        explanation = (explanation,)
    explanations = [str(e) for e in explanation] + [""] * max(0, len(centers) - len(explanation))
    # Lenient: a window with a non-positive width is dropped, not fatal (PS3.3 C.11.2.1.2)
    windows = [(c, w, e) for c, w, e in zip(centers, widths, explanations, strict=False) if w > 0]
    function = str(voi_source.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in VOI_FUNCTIONS:
        function = "LINEAR"  # lenient: an unknown defined term falls back to the default
    voi_luts = tuple(_read_lut(item, "0028,3010", signed, little_endian) for item in (ds.get("VOILUTSequence") or ()))

    padding = ds.get("PixelPaddingValue")
    padding_limit = ds.get("PixelPaddingRangeLimit")

    spacing: tuple[float, float] | None = None
    spacing_source: str | None = None
    measures = _functional_item(ds, "PixelMeasuresSequence")
    for keyword, holder in (
        ("PixelSpacing", ds),
        ("PixelSpacing", measures),
        ("ImagerPixelSpacing", ds),
    ):
        values = _floats(holder.get(keyword)) if holder is not None else ()
        if len(values) == 2 and values[0] > 0 and values[1] > 0:
            spacing, spacing_source = (values[0], values[1]), keyword
            break

    palette = None
    if photometric == "PALETTE COLOR":
        palette = _palette_bytes(ds, bits_allocated)

    return ImageInfo(
        rows=rows,
        columns=columns,
        number_of_frames=frames,
        samples_per_pixel=samples,
        photometric_interpretation=photometric,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=pixel_representation,
        planar_configuration=planar,
        rescale_slope=slope[0] if slope and slope[0] != 0 else 1.0,
        rescale_intercept=intercept[0] if intercept else 0.0,
        rescale_type=str(source.get("RescaleType", "") or "").strip(),
        modality_lut=modality_lut,
        window_centers=tuple(c for c, _, _ in windows),
        window_widths=tuple(w for _, w, _ in windows),
        window_explanations=tuple(e for _, _, e in windows),
        voi_lut_function=function,
        voi_luts=voi_luts,
        pixel_padding_value=(_to_signed(int(padding), bits_allocated, signed) if padding is not None else None),
        pixel_padding_range_limit=(
            _to_signed(int(padding_limit), bits_allocated, signed) if padding_limit is not None else None
        ),
        pixel_spacing=spacing,
        pixel_spacing_source=spacing_source,
        modality=str(ds.get("Modality", "") or "").strip().upper(),
        transfer_syntax_uid=str(tsyntax),
        palette=palette,
    )


image_info = from_dataset


def _palette_bytes(ds: Dataset, bits_allocated: int) -> bytes:
    """RGB uint8 table of a PALETTE COLOR image, built with pydicom (PS3.3 C.7.6.3.1.5)."""
    if bits_allocated not in (8, 16):
        raise CorruptPixelData(f"(0028,0100) BitsAllocated: expected 8 or 16 for PALETTE COLOR, got {bits_allocated}")
    index = np.arange(1 << bits_allocated, dtype=np.uint8 if bits_allocated == 8 else np.uint16)
    try:
        table = apply_color_lut(index, ds)
    except (AttributeError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise CorruptPixelData(
            f"(0028,1101) Red Palette Color Lookup Table Descriptor: expected a valid palette, got {type(exc).__name__}"
        ) from None
    if table.dtype.itemsize > 1 and int(table.max(initial=0)) > 255:
        # 16-bit entries: use the high byte (8-bit colours are stored as v << 8). Some
        # writers declare 16 bits but store 0..255 entries; those are used as they are.
        table = table >> 8
    return np.ascontiguousarray(table[:, :3], dtype=np.uint8).tobytes()
