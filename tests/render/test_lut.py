"""Modality LUT, VOI maths, photometric handling and the fused lookup table."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, apply_windowing

from viewer.render import (
    CT_WINDOW_PRESETS,
    ImageInfo,
    InvalidRenderParams,
    RenderParams,
    Window,
    decode_frame,
    default_window,
    display_table,
    from_dataset,
    modality_lut,
    render_array,
    resolve_window,
    to_display,
    voi_window,
    window_float,
)

from .samples import (
    CR_16_1F_MONO1,
    CT_16_1F,
    RT_32_15F,
    SC_8_1F_RGB_RLE,
    SC_8_1F_YBR422,
    US_8_1F_PALETTE,
    make_dataset,
    sample_bytes,
    sample_path,
    to_bytes,
)


def _voi(x: float, center: float, width: float, function: str) -> float:
    return float(voi_window(np.array([x], dtype=np.float64), center, width, function)[0])


# -- VOI maths at the window edges (PS3.3 C.11.2.1.2 / C.11.2.1.3) ---------------------------


def test_linear_window_edges_match_hand_computed_values():
    # c=40, w=80: lower edge c - 0.5 - (w-1)/2 = 0, upper edge c - 0.5 + (w-1)/2 = 79
    assert _voi(-1000, 40, 80, "LINEAR") == 0.0
    assert _voi(0, 40, 80, "LINEAR") == 0.0
    assert _voi(1, 40, 80, "LINEAR") == pytest.approx(((1 - 39.5) / 79 + 0.5) * 255)  # 3.228
    assert _voi(40, 40, 80, "LINEAR") == pytest.approx(((40 - 39.5) / 79 + 0.5) * 255)  # 129.11
    assert _voi(79, 40, 80, "LINEAR") == 255.0
    assert _voi(80, 40, 80, "LINEAR") == 255.0


def test_linear_window_of_width_one_is_a_threshold_at_center_minus_half():
    assert _voi(99.5, 100, 1, "LINEAR") == 0.0
    assert _voi(99.6, 100, 1, "LINEAR") == 255.0


def test_linear_exact_window_edges_match_hand_computed_values():
    # c=40, w=80: x <= 0 -> 0, x > 80 -> 255, else ((x - 40) / 80 + 0.5) * 255
    assert _voi(0, 40, 80, "LINEAR_EXACT") == 0.0
    assert _voi(20, 40, 80, "LINEAR_EXACT") == pytest.approx(63.75)
    assert _voi(40, 40, 80, "LINEAR_EXACT") == pytest.approx(127.5)
    assert _voi(80, 40, 80, "LINEAR_EXACT") == pytest.approx(255.0)
    assert _voi(81, 40, 80, "LINEAR_EXACT") == 255.0


def test_sigmoid_window_matches_hand_computed_values():
    # 255 / (1 + exp(-4 (x - c) / w))
    assert _voi(40, 40, 80, "SIGMOID") == pytest.approx(127.5)
    assert _voi(0, 40, 80, "SIGMOID") == pytest.approx(255 / (1 + math.exp(2)))  # 30.48
    assert _voi(80, 40, 80, "SIGMOID") == pytest.approx(255 / (1 + math.exp(-2)))  # 224.52
    assert 0 < _voi(-5000, 40, 80, "SIGMOID") < 1e-6


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("center", "width"), [(128, 256), (100, 40), (30.5, 7), (200, 1.5)])
def test_voi_window_equals_pydicom_apply_windowing_on_8_bit_data(function, center, width):
    # With 8-bit unsigned data and no rescale pydicom's output range is 0..255 like ours
    ds = make_dataset(np.zeros((1, 256), np.uint8))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, function
    x = np.arange(256, dtype=np.uint8).reshape(1, 256)
    expected = apply_windowing(x, ds)
    np.testing.assert_allclose(voi_window(x.astype(float), center, width, function), expected)


def test_voi_window_rejects_non_positive_width():
    with pytest.raises(InvalidRenderParams):
        voi_window(np.zeros(3), 0, 0, "SIGMOID")


# -- modality LUT ----------------------------------------------------------------------------


def test_modality_lut_equals_pydicom_for_ct_rescale():
    ds = pydicom.dcmread(sample_path(CT_16_1F))
    info = from_dataset(ds)
    assert (info.rescale_slope, info.rescale_intercept) == (1.0, -1024.0)
    np.testing.assert_array_equal(modality_lut(ds.pixel_array, info), apply_modality_lut(ds.pixel_array, ds))


def _with_lut_sequence(keyword: str, first: int, entries: list[int], bits: int = 16, *, as_ow: bool = False) -> Dataset:
    ds = make_dataset(np.arange(-20, 20, dtype=np.int16).reshape(4, 10))
    item = Dataset()
    item.add_new(0x00283002, "SS", [len(entries), first, bits])  # LUT Descriptor, signed data
    if as_ow:
        item.add_new(0x00283006, "OW", np.asarray(entries, "<u2").tobytes())
    else:
        item.add_new(0x00283006, "US", entries)
    if keyword == "ModalityLUTSequence":
        item.ModalityLUTType = "OD"
    setattr(ds, keyword, [item])
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def test_modality_lut_sequence_equals_pydicom_including_out_of_range_inputs():
    ds = _with_lut_sequence("ModalityLUTSequence", -5, [10 * i for i in range(16)])
    info = from_dataset(ds)
    assert info.modality_lut is not None and info.modality_lut.first_mapped == -5
    values = ds.pixel_array
    np.testing.assert_array_equal(modality_lut(values, info), apply_modality_lut(values, ds))


@pytest.mark.parametrize("as_ow", [False, True])
def test_voi_lut_sequence_equals_pydicom_scaled_to_8_bits(as_ow):
    entries = [int(4095 * (i / 29) ** 2) for i in range(30)]
    ds = _with_lut_sequence("VOILUTSequence", -10, entries, bits=12, as_ow=as_ow)
    info = from_dataset(ds)
    window = resolve_window(info, RenderParams())
    assert window.lut_index == 0
    values = ds.pixel_array
    expected = np.rint(apply_voi_lut(values, ds).astype(float) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(to_display(values, info, window), expected)


# -- photometric -----------------------------------------------------------------------------


def test_monochrome1_renders_as_the_inversion_of_monochrome2():
    frame = decode_frame(sample_bytes(CR_16_1F_MONO1)).values
    mono1 = from_dataset(pydicom.dcmread(sample_path(CR_16_1F_MONO1)))
    assert mono1.photometric_interpretation == "MONOCHROME1"
    mono2 = ImageInfo(**{**mono1.__dict__, "photometric_interpretation": "MONOCHROME2"})
    window = Window(2000.0, 3000.0, "LINEAR")
    out1 = to_display(frame, mono1, window)
    out2 = to_display(frame, mono2, window)
    np.testing.assert_array_equal(out1, 255 - out2)
    assert len(np.unique(out2)) > 10


def test_invert_flag_inverts_monochrome_and_colour():
    frame = decode_frame(sample_bytes(CT_16_1F)).values
    info = from_dataset(pydicom.dcmread(sample_path(CT_16_1F)))
    window = Window(40.0, 400.0, "LINEAR")
    np.testing.assert_array_equal(to_display(frame, info, window, invert=True), 255 - to_display(frame, info, window))
    rgb = decode_frame(sample_bytes(SC_8_1F_RGB_RLE))
    rgb_info = from_dataset(pydicom.dcmread(sample_path(SC_8_1F_RGB_RLE)))
    np.testing.assert_array_equal(to_display(rgb.values, rgb_info, invert=True), 255 - rgb.values)


def test_pixel_padding_renders_black_even_for_monochrome1():
    values = np.array([[-2000, -1000, 0, 1000]], dtype=np.int16)
    ds = make_dataset(values, PixelPaddingValue=-2000, WindowCenter=0, WindowWidth=4000)
    ds.PhotometricInterpretation = "MONOCHROME1"
    info = from_dataset(ds)
    out = to_display(values, info, resolve_window(info, RenderParams()))
    assert out[0, 0] == 0  # padding: black, not the white MONOCHROME1 gives -2000
    assert out[0, 1] > out[0, 2] > out[0, 3]


def test_padding_range_limit_marks_a_range_as_padding():
    values = np.array([[-3000, -2500, -2000, 0]], dtype=np.int16)
    ds = make_dataset(values, PixelPaddingValue=-3000, PixelPaddingRangeLimit=-2000)
    info = from_dataset(ds)
    out = to_display(values, info, Window(-2500.0, 100.0, "LINEAR"), invert=True)
    np.testing.assert_array_equal(out[0, :3], [0, 0, 0])


def test_palette_color_renders_to_pydicom_palette_rgb():
    ds = pydicom.dcmread(sample_path(US_8_1F_PALETTE))
    info = from_dataset(ds)
    frame = decode_frame(sample_bytes(US_8_1F_PALETTE)).values
    out = render_array(frame, info, RenderParams(format="png"))
    expected = (apply_color_lut(ds.pixel_array, ds) >> 8).astype(np.uint8)  # 16-bit entries
    assert out.shape == (350, 800, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_ybr_full_422_renders_to_the_rgb_of_the_same_colour_bars():
    ybr = decode_frame(sample_bytes(SC_8_1F_YBR422))
    rgb = decode_frame(sample_bytes(SC_8_1F_RGB_RLE))
    info = from_dataset(pydicom.dcmread(sample_path(SC_8_1F_YBR422)))
    out = render_array(ybr.values, info, RenderParams(format="png")).astype(int)
    assert np.abs(out - rgb.values.astype(int)).max() <= 6  # chroma subsampling + rounding
    assert tuple(out[5, 50]) == pytest.approx((255, 0, 0), abs=2)
    assert tuple(out[25, 50]) == pytest.approx((0, 255, 0), abs=6)
    assert tuple(out[45, 50]) == pytest.approx((0, 0, 255), abs=2)


def test_16_bit_rgb_is_scaled_to_8_bits():
    values = np.array([[[0, 32768, 65535]]], dtype=np.uint16)
    info = from_dataset(make_dataset(values, photometric="RGB"))
    np.testing.assert_array_equal(to_display(values, info), [[[0, 128, 255]]])


# -- the fused table equals the float reference ----------------------------------------------


def _synthetic(dtype: str, bits_stored: int, photometric: str, **attrs: object) -> tuple[np.ndarray, ImageInfo]:
    rng = np.random.default_rng(7)
    kind = np.dtype(dtype)
    if kind.kind == "i":
        low, high = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    else:
        low, high = 0, (1 << bits_stored) - 1
    values = rng.integers(low, high, (40, 50), endpoint=True).astype(dtype)
    ds = make_dataset(values, bits_stored=bits_stored, **attrs)
    ds.PhotometricInterpretation = photometric
    return values, from_dataset(ds)


@pytest.mark.parametrize(
    ("dtype", "bits_stored"), [("uint8", 8), ("int8", 8), ("uint16", 12), ("int16", 12), ("int16", 16), ("uint16", 16)]
)
@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_lut_path_equals_float_reference_path(dtype, bits_stored, photometric, function):
    values, info = _synthetic(
        dtype, bits_stored, photometric, RescaleSlope=0.5, RescaleIntercept=-10, PixelPaddingValue=3
    )
    window = Window(20.0, 90.0, function)
    for invert in (False, True):
        fused = to_display(values, info, window, invert=invert)
        np.testing.assert_array_equal(fused, window_float(values, info, window, invert=invert))
        assert fused.dtype == np.uint8 and fused.shape == values.shape


def test_ct_presets_render_identically_through_lut_and_float_paths():
    frame = decode_frame(sample_bytes(CT_16_1F)).values
    info = from_dataset(pydicom.dcmread(sample_path(CT_16_1F)))
    for center, width in CT_WINDOW_PRESETS.values():
        window = Window(center, width, "LINEAR")
        np.testing.assert_array_equal(to_display(frame, info, window), window_float(frame, info, window))


def test_display_table_is_cached_read_only_and_indexed_by_unsigned_bits():
    _, info = _synthetic("int16", 12, "MONOCHROME2")
    window = Window(0.0, 100.0, "LINEAR")
    table = display_table(info, window, False, "<i2")
    assert table is display_table(info, window, False, "<i2")
    assert table.shape == (65536,) and not table.flags.writeable
    assert table[np.array([-60], np.int16).view(np.uint16)[0]] == 0
    assert table[60] == 255


@pytest.mark.parametrize(("dtype", "bits_stored"), [("int16", 12), ("uint16", 12), ("int16", 16), ("uint16", 10)])
def test_display_table_matches_the_float_path_for_every_bit_pattern(dtype, bits_stored):
    # The table is computed over the Bits Stored range and repeated: every possible bit pattern
    # must display exactly like its masked (and sign-extended) stored value on the float path.
    _, info = _synthetic(dtype, bits_stored, "MONOCHROME2")
    window = Window(37.5, 211.0, "LINEAR")
    table = display_table(info, window, False, np.dtype(dtype).str)
    patterns = np.arange(65536, dtype=np.uint32)
    low = (patterns & ((1 << bits_stored) - 1)).astype(np.int64)
    if dtype == "int16":
        low = np.where(low >= 1 << (bits_stored - 1), low - (1 << bits_stored), low)
    masked = low.astype(dtype)
    np.testing.assert_array_equal(table, window_float(masked, info, window))
    # and for values already in range (all that decoding produces) that is the plain float path
    in_range = masked[: 1 << bits_stored]
    np.testing.assert_array_equal(table[in_range.view(np.uint16)], window_float(in_range, info, window))


def test_32_bit_dose_uses_the_float_path():
    frame = decode_frame(sample_bytes(RT_32_15F)).values
    info = from_dataset(pydicom.dcmread(sample_path(RT_32_15F), stop_before_pixels=True))
    window = default_window(info, frame)
    out = to_display(frame, info, window)
    np.testing.assert_array_equal(out, window_float(frame, info, window))
    assert out.min() == 0 and out.max() == 255


# -- default window --------------------------------------------------------------------------


def test_default_window_prefers_the_files_first_window():
    ds = make_dataset(np.zeros((4, 4), np.int16), WindowCenter=[40, 400], WindowWidth=[80, 1800])
    ds.VOILUTFunction = "SIGMOID"
    assert default_window(from_dataset(ds)) == Window(40.0, 80.0, "SIGMOID")


def test_default_window_spans_modality_values_without_padding():
    values = np.array([[-2000, -1024, 0, 1024]], dtype=np.int16)  # -24..2024 after rescale
    ds = make_dataset(values, RescaleIntercept=1000, RescaleSlope=1, PixelPaddingValue=-2000)
    info = from_dataset(ds)
    window = default_window(info, values)
    out = to_display(values, info, window)
    np.testing.assert_array_equal(out, [[0, 0, 128, 255]])


def test_request_window_overrides_file_window_and_keeps_file_function():
    ds = make_dataset(np.zeros((4, 4), np.int16), WindowCenter=40, WindowWidth=80, VOILUTFunction="LINEAR_EXACT")
    info = from_dataset(ds)
    assert resolve_window(info, RenderParams(window_center=-600, window_width=1500)) == Window(
        -600.0, 1500.0, "LINEAR_EXACT"
    )
    assert resolve_window(info, RenderParams(voi_function="SIGMOID")).function == "SIGMOID"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(7, 9), (600, 300)])  # one take, and cache-sized bands
def test_table_lookup_is_plain_indexing_for_every_index_value(dtype, shape):
    from viewer.render.lut import _lookup

    top = np.iinfo(dtype).max
    rng = np.random.default_rng(4)
    table = rng.integers(0, 256, size=top + 1, dtype=np.uint8)
    indices = rng.integers(0, top + 1, size=shape, dtype=dtype)
    indices.flat[:2] = (0, top)  # both ends of the range
    assert np.array_equal(_lookup(table, indices), table[indices])


def test_a_table_shorter_than_the_index_range_clips_instead_of_wrapping():
    from viewer.render.lut import _lookup

    table = np.arange(10, dtype=np.uint8)
    indices = np.array([[0, 9, 10, 200]], dtype=np.uint8)
    assert _lookup(table, indices).tolist() == [[0, 9, 9, 9]]
