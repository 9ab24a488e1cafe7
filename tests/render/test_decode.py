"""Decoding one frame: equality with pydicom, random frame access, and bad input."""

from __future__ import annotations

import io
import logging
import os
import tracemalloc
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.encaps import encapsulate_extended, generate_frames
from pydicom.uid import JPEG2000Lossless, RLELossless

from viewer.render import (
    CorruptPixelData,
    ImageTooLarge,
    InvalidRenderParams,
    PixelSource,
    UnsupportedTransferSyntax,
    decode_frame,
    frame_index,
)
from viewer.render.errors import RenderError

from .samples import (
    CT_16_1F,
    MR_16_1F_J2K,
    RGB_8_2F_RLE,
    RT_32_15F,
    US_8_30F_JPEG,
    CountingReader,
    encapsulated_copy,
    make_dataset,
    sample_bytes,
    sample_path,
    to_bytes,
)


def _bundled_pixel_files() -> list[str]:
    names = []
    for path in sorted(get_testdata_files()):
        if os.path.isdir(path):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, defer_size=256)
        except Exception:  # not DICOM File Format, e.g. JSON and dumps  # noqa: S112
            continue
        if "PixelData" in ds:
            names.append(os.path.basename(path))
    return names


BUNDLED = _bundled_pixel_files()


def _pydicom_reference(name: str) -> np.ndarray | None:
    """pydicom's own decode, or None when pydicom cannot decode the file here."""
    logging.disable(logging.CRITICAL)  # pydicom logs every failing plugin
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(sample_path(name)).pixel_array
    except Exception:
        return None
    finally:
        logging.disable(logging.NOTSET)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bundled_sample_list_covers_every_syntax_family():
    assert len(BUNDLED) >= 40
    syntaxes = {
        pydicom.dcmread(sample_path(n), stop_before_pixels=True).file_meta.get("TransferSyntaxUID") for n in BUNDLED
    }
    assert {
        "1.2.840.10008.1.2",  # implicit LE
        "1.2.840.10008.1.2.1",  # explicit LE
        "1.2.840.10008.1.2.2",  # explicit BE
        "1.2.840.10008.1.2.1.99",  # deflated
        "1.2.840.10008.1.2.5",  # RLE
        "1.2.840.10008.1.2.4.50",  # JPEG baseline
        "1.2.840.10008.1.2.4.51",  # JPEG extended
        "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
    } <= syntaxes


@pytest.mark.parametrize("name", BUNDLED)
def test_decoded_frames_equal_pydicom_or_raise_a_render_error(name):
    reference = _pydicom_reference(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if reference is None:
            # pydicom cannot decode it: we must refuse with our own error, never guess
            with pytest.raises((UnsupportedTransferSyntax, CorruptPixelData)):
                source = PixelSource(sample_bytes(name))
                source.decode(0)
            return
        source = PixelSource(sample_bytes(name))
        frames = source.info.number_of_frames
        for index in sorted({0, frames - 1}):
            frame = source.decode(index)
            expected = reference if frames == 1 else reference[index]
            assert frame.values.dtype.isnative
            assert frame.values.dtype == expected.dtype.newbyteorder("=")
            assert frame.values.flags.c_contiguous
            np.testing.assert_array_equal(frame.values, expected)
            assert frame.is_color == (expected.ndim == 3)


def test_ybr_full_422_is_returned_as_rgb():
    frame = decode_frame(sample_bytes("SC_ybr_full_422_uncompressed.dcm"))
    assert frame.is_color and frame.photometric_interpretation == "RGB"
    assert tuple(frame.values[5, 50]) == pytest.approx((255, 0, 0), abs=2)  # red bar


def test_decoding_frame_of_60_frame_rle_reads_only_that_frame():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 4000, (60, 64, 64), dtype=np.uint16)
    ds = make_dataset(pixels, bits_stored=12)
    ds.compress(RLELossless, encoding_plugin="pydicom")
    reader = CountingReader(to_bytes(ds))
    source = PixelSource(reader)
    header_bytes = reader.bytes_read
    offset, length = source.frame_index()[42]
    reader.bytes_read = 0
    frame = source.decode(42)
    np.testing.assert_array_equal(frame.values, pixels[42])
    assert reader.bytes_read == length  # one read of frame 42's items, nothing else
    assert header_bytes < reader.getbuffer().nbytes // 4


def test_decoding_frame_of_native_multiframe_reads_only_that_frame():
    reader = CountingReader(sample_bytes(RT_32_15F))
    source = PixelSource(reader)
    reader.bytes_read = 0
    frame = source.decode(7)
    assert reader.bytes_read == 10 * 10 * 4
    np.testing.assert_array_equal(frame.values, pydicom.dcmread(sample_path(RT_32_15F)).pixel_array[7])


def test_frame_index_of_30_frame_jpeg_gives_one_span_per_frame():
    index = frame_index(io.BytesIO(sample_bytes(US_8_30F_JPEG)))
    assert len(index) == 30
    starts = [offset for offset, _ in index]
    assert starts == sorted(starts)
    assert all(length > 0 for _, length in index)


@pytest.mark.parametrize("layout", ["bot", "no_bot", "extended", "two_fragments_per_frame"])
def test_every_offset_table_layout_gives_the_same_frames(layout):
    ds = pydicom.dcmread(sample_path(US_8_30F_JPEG))
    encoded = list(generate_frames(ds.PixelData, number_of_frames=30))[:5]
    ds.NumberOfFrames = 5
    if layout == "extended":
        ds = ds.copy()
        data, offsets, lengths = encapsulate_extended(encoded)
        ds.PixelData = data
        ds["PixelData"].is_undefined_length = True
        ds.ExtendedOffsetTable = offsets
        ds.ExtendedOffsetTableLengths = lengths
        blob = to_bytes(ds)
    elif layout == "two_fragments_per_frame":
        blob = encapsulated_copy(ds, encoded, fragments_per_frame=2, has_bot=False)
    else:
        blob = encapsulated_copy(ds, encoded, has_bot=layout == "bot")
    reference = pydicom.dcmread(sample_path(US_8_30F_JPEG)).pixel_array[:5]
    source = PixelSource(blob)
    for index in (0, 3, 4):
        np.testing.assert_array_equal(source.decode(index).values, reference[index])


def test_frame_index_out_of_range_is_invalid_params():
    with pytest.raises(InvalidRenderParams, match="frame"):
        PixelSource(sample_bytes(RGB_8_2F_RLE)).decode(2)


def test_bits_stored_masking_and_sign_extension_of_native_data():
    # 12-bit signed values stored with garbage in the top 4 bits (PS3.5 8.1.1)
    values = np.array([[-2048, -1, 0, 2047]], dtype=np.int16)
    garbage = (values.view(np.uint16) & 0x0FFF) | 0xA000
    ds = make_dataset(garbage.view(np.int16), bits_stored=12)
    frame = decode_frame(to_bytes(ds))
    np.testing.assert_array_equal(frame.values, values)


def _pydicom_frames(blob: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(blob)).pixel_array


class _TrickleReader(io.BytesIO):
    """Hands out at most 1,000 bytes per read, as a socket or a decrypting reader may."""

    def readinto(self, buffer) -> int:  # type: ignore[override]
        return super().readinto(memoryview(buffer)[:1000])

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        return super().read(1000 if size is None or size < 0 else min(size, 1000))


@pytest.mark.parametrize(
    ("dtype", "bits_stored", "photometric"),
    [
        ("u2", 12, "MONOCHROME2"),
        ("i2", 12, "MONOCHROME1"),
        ("u2", 16, "MONOCHROME2"),
        ("i2", 14, "MONOCHROME2"),
        ("u1", 6, "MONOCHROME2"),
        ("i1", 7, "MONOCHROME2"),
        ("u4", 24, "MONOCHROME2"),
        ("i4", 32, "MONOCHROME2"),
    ],
)
def test_native_frames_read_directly_equal_pydicom_with_garbage_above_bits_stored(dtype, bits_stored, photometric):
    # Every bit pattern in the top bits, so masking and sign extension are both exercised.
    rng = np.random.default_rng(bits_stored)
    stored = rng.integers(0, np.iinfo(np.dtype(dtype.replace("i", "u"))).max, (3, 17, 23), dtype=dtype.replace("i", "u"))
    ds = make_dataset(stored.view(dtype), bits_stored=bits_stored, photometric=photometric)
    blob = to_bytes(ds)
    expected = _pydicom_frames(blob)
    for source in (PixelSource(blob), PixelSource(_TrickleReader(blob))):
        assert source._reads_directly()  # noqa: SLF001 - this test is about that path
        for index in range(3):
            frame = source.decode(index)
            assert frame.values.dtype == expected.dtype and frame.values.flags.c_contiguous
            np.testing.assert_array_equal(frame.values, expected[index])


@pytest.mark.parametrize("planar", [0, 1])
def test_native_rgb_read_directly_equals_pydicom_in_both_planar_configurations(planar):
    rng = np.random.default_rng(planar)
    pixels = rng.integers(0, 256, (2, 9, 13, 3), dtype=np.uint8)
    ds = make_dataset(pixels, photometric="RGB")
    if planar:
        ds.PlanarConfiguration = 1
        ds.PixelData = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).tobytes()
    blob = to_bytes(ds)
    expected = _pydicom_frames(blob)
    np.testing.assert_array_equal(expected, pixels)  # the dataset says what we meant
    source = PixelSource(blob)
    for index in range(2):
        frame = source.decode(index)
        assert frame.is_color and frame.values.flags.c_contiguous
        np.testing.assert_array_equal(frame.values, expected[index])


def test_native_frame_cut_short_by_the_reader_is_corrupt_not_partial():
    ds = make_dataset(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    blob = to_bytes(ds)
    reader = io.BytesIO(blob)
    source = PixelSource(reader)
    reader.truncate(len(blob) - 100)  # the object shrinks after its header was checked
    with pytest.raises(CorruptPixelData, match="truncated"):
        source.decode(0)


# -- bad input --------------------------------------------------------------------------


def test_rejects_truncated_pixel_data():
    ds = make_dataset(np.zeros((64, 64), np.int16))
    ds.PixelData = ds.PixelData[:-200]
    with pytest.raises(CorruptPixelData, match=r"\(7FE0,0010\).*expected 8192 bytes.*got 7992"):
        PixelSource(to_bytes(ds))


def test_rejects_file_cut_short_inside_pixel_data():
    blob = sample_bytes(CT_16_1F)
    with pytest.raises(CorruptPixelData, match="7FE0,0010"):
        PixelSource(blob[:-1000])


def test_rejects_huge_dimensions_before_allocating():
    ds = make_dataset(rows=65535, columns=65535, pixel_data=b"\x00\x00")
    blob = to_bytes(ds)
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLarge, match=r"65535 x 65535"):
            PixelSource(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # 65535**2 x 2 bytes would be 8 GB


def test_pixel_budget_is_an_argument():
    blob = to_bytes(make_dataset(np.zeros((64, 64), np.int16)))
    with pytest.raises(ImageTooLarge):
        PixelSource(blob, max_pixels=64 * 63)
    assert PixelSource(blob, max_pixels=64 * 64).decode(0).values.shape == (64, 64)


def test_rejects_unknown_transfer_syntax():
    ds = make_dataset(np.zeros((8, 8), np.int16))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.2.1143.999"
    blob = to_bytes(ds, implicit_vr=False, little_endian=True)
    with pytest.raises(UnsupportedTransferSyntax, match=r"\(0002,0010\)"):
        PixelSource(blob)


def test_rejects_known_syntax_without_a_decoder():
    ds = make_dataset(np.zeros((8, 8), np.uint8), transfer_syntax="1.2.840.10008.1.2.4.100")
    blob = encapsulated_copy(ds, [b"\x00\x00\x01\xb3" + b"\x00" * 12])
    with pytest.raises(UnsupportedTransferSyntax, match="MPEG2"):
        PixelSource(blob)


def test_rejects_input_that_is_not_dicom_file_format():
    with pytest.raises(CorruptPixelData, match="DICM"):
        PixelSource(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)


def test_rejects_missing_rows():
    ds = make_dataset(np.zeros((8, 8), np.int16))
    del ds.Rows
    with pytest.raises(CorruptPixelData, match=r"\(0028,0010\) Rows"):
        PixelSource(to_bytes(ds))


def _j2k_parts() -> tuple[pydicom.Dataset, bytes]:
    ds = pydicom.dcmread(sample_path(MR_16_1F_J2K))
    return ds, next(generate_frames(ds.PixelData, number_of_frames=1))


@pytest.mark.parametrize(
    ("where", "description"),
    [
        (slice(8, 12), "SIZ image width"),
        (slice(4, 6), "SIZ segment length"),
        (slice(41, 45), "SIZ component sampling"),
        (slice(49, 53), "COD marker segment"),
        (slice(-2, None), "EOC marker"),
        (slice(0, 2), "SOC marker"),
    ],
)
def test_corrupt_jpeg2000_codestream_raises_corrupt_pixel_data(where, description):
    ds, codestream = _j2k_parts()
    assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
    broken = bytearray(codestream)
    broken[where] = bytes(b ^ 0xFF for b in broken[where])
    source = PixelSource(encapsulated_copy(ds, [bytes(broken)]))
    with pytest.raises(CorruptPixelData):
        source.decode(0)


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.9, 0.99])
def test_truncated_jpeg2000_codestream_never_returns_a_partial_image(keep):
    ds, codestream = _j2k_parts()
    truncated = codestream[: int(len(codestream) * keep)]
    source = PixelSource(encapsulated_copy(ds, [truncated]))
    with pytest.raises(CorruptPixelData):
        source.decode(0)


def test_truncated_jpeg2000_with_eoc_appended_is_caught_by_tile_part_lengths():
    ds, codestream = _j2k_parts()
    forged = codestream[: len(codestream) // 2] + b"\xff\xd9"
    with pytest.raises(CorruptPixelData, match="Psot|tile-part"):
        PixelSource(encapsulated_copy(ds, [forged])).decode(0)


def test_truncated_jpeg_codestream_raises_corrupt_pixel_data():
    ds = pydicom.dcmread(sample_path(US_8_30F_JPEG))
    encoded = list(generate_frames(ds.PixelData, number_of_frames=30))
    ds.NumberOfFrames = 1
    with pytest.raises(CorruptPixelData, match="EOI"):
        PixelSource(encapsulated_copy(ds, [encoded[0][: len(encoded[0]) // 2]])).decode(0)


def test_codestream_larger_than_header_dimensions_is_refused():
    # SECURITY: a small header with a huge codestream must not reach the decoder
    ds, codestream = _j2k_parts()
    ds.Rows = ds.Columns = 32
    with pytest.raises(CorruptPixelData, match="SIZ: expected 32 x 32, got 64 x 64"):
        PixelSource(encapsulated_copy(ds, [codestream])).decode(0)


def test_missing_encapsulated_frames_are_reported():
    ds = pydicom.dcmread(sample_path(US_8_30F_JPEG))
    encoded = list(generate_frames(ds.PixelData, number_of_frames=30))[:3]
    with pytest.raises(CorruptPixelData, match="expected 30 encoded frames, found 3"):
        PixelSource(encapsulated_copy(ds, encoded, has_bot=True))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_render_errors_never_echo_header_strings():
    ds = make_dataset(np.zeros((8, 8), np.int16), PatientName="Doe^Jane")
    ds.PhotometricInterpretation = "Doe^Jane"
    with pytest.raises(RenderError) as caught:
        PixelSource(to_bytes(ds))
    assert "Jane" not in str(caught.value)


def test_float_pixel_data_decodes_and_renders():
    values = np.linspace(-5, 5, 32 * 32, dtype=np.float32).reshape(32, 32)
    ds = make_dataset(rows=32, columns=32)
    del ds.PixelData, ds.BitsStored, ds.HighBit, ds.PixelRepresentation
    ds.BitsAllocated = 32
    ds.FloatPixelData = values.tobytes()
    source = PixelSource(to_bytes(ds))
    np.testing.assert_array_equal(source.decode(0).values, values)


def test_open_file_objects_are_read_in_place():
    with open(sample_path(CT_16_1F), "rb") as fp:
        source = PixelSource(fp)
        frame = source.decode(0)
        assert not fp.closed
    np.testing.assert_array_equal(frame.values, pydicom.dcmread(sample_path(CT_16_1F)).pixel_array)


def test_one_source_decodes_safely_from_two_threads():
    from concurrent.futures import ThreadPoolExecutor

    source = PixelSource(io.BytesIO(sample_bytes(US_8_30F_JPEG)))
    expected = [source.decode(i).values for i in range(0, 30, 3)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda i: source.decode(i).values, range(0, 30, 3)))
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_jpeg_ls_decodes_with_charls_when_installed_and_matches_pydicom():
    from pydicom.uid import JPEGLSLossless

    from archive import synthetic

    ds = synthetic.compress(synthetic.ct_study(slices=1, size=64)[0], transfer_syntax=JPEGLSLossless)
    source = PixelSource(synthetic.to_bytes(ds))
    assert source._options(1).get("decoding_plugin") == "pyjpegls"  # pyjpegls is a dependency
    assert np.array_equal(source.decode(0).values, ds.pixel_array)
