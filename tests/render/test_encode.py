"""Encoders: lossless round trips, JPEG sanity, determinism."""

from __future__ import annotations

import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from viewer.render import InvalidRenderParams, encode
from viewer.render.encode import encode_jpeg_pillow

GREY = np.random.default_rng(0).integers(0, 256, (61, 97), dtype=np.uint8)
RGB = np.random.default_rng(1).integers(0, 256, (61, 97, 3), dtype=np.uint8)
SMOOTH = np.tile(np.linspace(0, 255, 128).astype(np.uint8), (64, 1))


@pytest.mark.parametrize("fmt", ["png", "webp"])
@pytest.mark.parametrize("img", [GREY, RGB], ids=["grey", "rgb"])
def test_lossless_formats_round_trip_exactly(fmt, img):
    decoded = Image.open(io.BytesIO(encode(img, fmt)))
    assert decoded.format == fmt.upper()
    if img.ndim == 2:
        decoded = decoded.convert("L")  # WebP stores grey as RGB with R = G = B
    np.testing.assert_array_equal(np.asarray(decoded), img)


def test_jpeg_is_grey_for_grey_input_and_close_to_it():
    data = encode(SMOOTH, "jpeg", 90)
    assert data[:2] == b"\xff\xd8"
    decoded = simplejpeg.decode_jpeg(data, colorspace="GRAY")
    assert decoded.shape == (64, 128, 1)
    assert np.abs(decoded[:, :, 0].astype(int) - SMOOTH).max() <= 4


def test_jpeg_rgb_decodes_to_the_same_shape():
    decoded = simplejpeg.decode_jpeg(encode(RGB, "jpeg", 95))
    assert decoded.shape == RGB.shape


def test_jpeg_quality_changes_size():
    assert len(encode(GREY, "jpeg", 30)) < len(encode(GREY, "jpeg", 95))


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_same_input_gives_the_same_bytes(fmt):
    assert encode(RGB, fmt, 80) == encode(RGB.copy(), fmt, 80)


def test_pillow_jpeg_encoder_also_works_for_the_benchmark():
    assert Image.open(io.BytesIO(encode_jpeg_pillow(GREY))).size == (97, 61)


def test_rejects_non_uint8_and_unknown_formats():
    with pytest.raises(InvalidRenderParams):
        encode(GREY.astype(np.uint16), "png")
    with pytest.raises(InvalidRenderParams):
        encode(GREY, "gif")
