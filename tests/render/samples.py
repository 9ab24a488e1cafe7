"""Sample data for render tests: pydicom's bundled files and synthetic datasets.

Legend for constants: MODALITY/KIND _ BITS ALLOCATED _ FRAMES [_ SYNTAX], e.g. CT_16_1F is a
16-bit single-frame CT, RGB_8_2F_RLE an 8-bit RGB two-frame RLE object.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_16_1F = "CT_small.dcm"  # signed, rescale -1024, padding -2000
MR_16_1F = "MR_small.dcm"
MR_16_1F_RLE = "MR_small_RLE.dcm"
MR_16_1F_J2K = "MR_small_jp2klossless.dcm"
MR_16_1F_BE = "MR_small_bigendian.dcm"
CR_16_1F_MONO1 = "6154"  # MONOCHROME1, 12 bits stored
US_8_1F_PALETTE = "examples_palette.dcm"
SC_8_1F_YBR422 = "SC_ybr_full_422_uncompressed.dcm"
SC_8_1F_RGB_RLE = "SC_rgb_rle.dcm"  # the same colour bars as SC_8_1F_YBR422, stored RGB
RGB_8_2F_RLE = "SC_rgb_rle_2frame.dcm"
US_8_30F_JPEG = "examples_ybr_color.dcm"  # 30 frames, JPEG baseline YBR_FULL_422
RT_32_15F = "rtdose.dcm"  # 15 frames, native
MONO_8_1F_DEFLATE = "image_dfl.dcm"


def sample_path(name: str) -> str:
    """Path of a bundled pydicom test file (never downloads: these ship with pydicom)."""
    path = get_testdata_file(name)
    assert path is not None, name
    return str(path)


def sample_bytes(name: str) -> bytes:
    """Bytes of a bundled pydicom test file."""
    with open(sample_path(name), "rb") as fp:
        return fp.read()


def make_dataset(
    pixels: np.ndarray | None = None,
    *,
    rows: int | None = None,
    columns: int | None = None,
    frames: int = 1,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    **attributes: object,
) -> Dataset:
    """A minimal image dataset; `pixels` is (frames, rows, cols[, 3]) or (rows, cols[, 3])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    if pixels is not None:
        pixels = np.asarray(pixels)
        samples = 3 if photometric in ("RGB", "YBR_FULL") else 1
        if pixels.ndim == 2 + (samples == 3):
            pixels = pixels[None]
        frames = pixels.shape[0]
        rows, columns = pixels.shape[1:3]
        bits_allocated = pixels.dtype.itemsize * 8
        signed = pixels.dtype.kind == "i"
        pixel_data = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    else:
        samples = 3 if photometric in ("RGB", "YBR_FULL") else 1
        bits_allocated, signed = 16, True
    assert rows is not None and columns is not None
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    if samples == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixel_data if pixel_data is not None else b""
    if UID(transfer_syntax).is_encapsulated:
        ds["PixelData"].VR = "OB"
    return ds


def to_bytes(ds: Dataset, **encoding: bool) -> bytes:
    """Serialise in the DICOM File Format (preamble, 'DICM', meta).

    `encoding` (implicit_vr, little_endian) is needed for private transfer syntaxes.
    """
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, **encoding)
    return buffer.getvalue()


def encapsulated_copy(ds: Dataset, frames: Sequence[bytes], **kwargs: object) -> bytes:
    """`ds` with its Pixel Data replaced by the given encoded frames."""
    ds = ds.copy()
    ds.PixelData = encapsulate(list(frames), **kwargs)  # type: ignore[arg-type]
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return to_bytes(ds)


class CountingReader(io.BytesIO):
    """A BytesIO that counts the bytes read through it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = super().readinto(buffer)
        self.bytes_read += count
        return count
