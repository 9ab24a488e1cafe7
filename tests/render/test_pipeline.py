"""The whole pipeline: instance bytes in, encoded image out; ROI statistics."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from PIL import Image

from viewer.render import (
    Ellipse,
    InvalidRenderParams,
    PixelSource,
    Rect,
    RenderParams,
    decode_frame,
    from_dataset,
    measure_region,
    render_array,
    render_frame,
    render_instance,
    render_tile,
)

from .samples import (
    CT_16_1F,
    MONO_8_1F_DEFLATE,
    MR_16_1F_RLE,
    RGB_8_2F_RLE,
    US_8_30F_JPEG,
    make_dataset,
    sample_bytes,
    sample_path,
)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_render_instance_gives_an_image_of_the_requested_size(fmt):
    data = render_instance(sample_bytes(CT_16_1F), RenderParams(format=fmt, width=64))
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt.upper() and image.size == (64, 64)


def test_render_is_deterministic():
    params = RenderParams(width=100, rotation=270, flip_h=True, watermark="x@example.org", redactions=((1, 1, 9, 9),))
    blob = sample_bytes(CT_16_1F)
    assert render_instance(blob, params) == render_instance(io.BytesIO(blob), params)


def test_second_frame_renders_differently_from_the_first():
    source = PixelSource(sample_bytes(RGB_8_2F_RLE))
    first = render_instance(source, RenderParams(format="png", frame=0))
    second = render_instance(source, RenderParams(format="png", frame=1))
    assert first != second
    reference = pydicom.dcmread(sample_path(RGB_8_2F_RLE)).pixel_array
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(second))), reference[1])


def test_frame_of_a_30_frame_jpeg_renders_without_decoding_the_rest():
    source = PixelSource(sample_bytes(US_8_30F_JPEG))
    image = Image.open(io.BytesIO(render_instance(source, RenderParams(frame=29, format="png"))))
    assert image.size == (320, 240) and image.mode == "RGB"


def test_render_of_lossless_png_equals_the_windowed_pixels():
    frame = decode_frame(sample_bytes(MR_16_1F_RLE)).values
    info = from_dataset(pydicom.dcmread(sample_path(MR_16_1F_RLE), stop_before_pixels=True))
    params = RenderParams(format="png", window_center=600, window_width=1600)
    png = np.asarray(Image.open(io.BytesIO(render_frame(frame, info, params))))
    np.testing.assert_array_equal(png, render_array(frame, info, params))


def test_deflated_instance_renders():
    assert Image.open(io.BytesIO(render_instance(sample_bytes(MONO_8_1F_DEFLATE), RenderParams()))).size == (512, 512)


def test_render_tile_matches_the_full_render_at_level_zero():
    frame = decode_frame(sample_bytes(CT_16_1F)).values
    info = from_dataset(pydicom.dcmread(sample_path(CT_16_1F), stop_before_pixels=True))
    params = RenderParams(format="png", window_center=40, window_width=400)
    tile = np.asarray(Image.open(io.BytesIO(render_tile(frame, info, params, 0, 0, 0))))
    np.testing.assert_array_equal(tile, render_array(frame, info, params))


def test_frame_of_the_wrong_shape_is_invalid():
    info = from_dataset(make_dataset(np.zeros((8, 8), np.int16)))
    with pytest.raises(InvalidRenderParams):
        render_frame(np.zeros((4, 4), np.int16), info, RenderParams())


# -- ROI statistics --------------------------------------------------------------------------


def _ct():
    ds = pydicom.dcmread(sample_path(CT_16_1F))
    return ds, decode_frame(sample_bytes(CT_16_1F)).values, from_dataset(ds)


def test_rect_statistics_are_in_hounsfield_units():
    ds, frame, info = _ct()
    stats = measure_region(frame, info, Rect(10, 20, 30, 40))
    hu = ds.pixel_array[20:60, 10:40].astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert stats["units"] == "HU"
    assert stats["pixels"] == 1200
    assert stats["mean"] == pytest.approx(hu.mean())
    assert stats["sd"] == pytest.approx(hu.std())
    assert (stats["min"], stats["max"]) == (hu.min(), hu.max())
    assert stats["area_mm2"] == pytest.approx(1200 * 0.661468**2)
    assert stats["spacing_source"] == "PixelSpacing"


def test_ellipse_statistics_cover_about_pi_r_squared_pixels():
    _, frame, info = _ct()
    stats = measure_region(frame, info, Ellipse(64, 64, 20, 10))
    assert abs(stats["pixels"] - math.pi * 200) < 0.03 * math.pi * 200


def test_roi_excludes_padding_and_handles_empty_and_unitless():
    values = np.array([[-2000, 10, 20], [30, -2000, 40]], dtype=np.int16)
    info = from_dataset(make_dataset(values, PixelPaddingValue=-2000))
    stats = measure_region(values, info, Rect(0, 0, 3, 2))
    assert stats["pixels"] == 4 and stats["mean"] == 25.0 and stats["units"] == ""
    assert stats["area_mm2"] is None
    empty = measure_region(values, info, Rect(0, 0, 1, 1))
    assert empty["pixels"] == 0 and empty["mean"] is None


def test_roi_on_colour_is_invalid():
    rgb = np.zeros((4, 4, 3), np.uint8)
    info = from_dataset(make_dataset(rgb, photometric="RGB"))
    with pytest.raises(InvalidRenderParams):
        measure_region(rgb, info, Rect(0, 0, 2, 2))
