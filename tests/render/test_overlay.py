"""Watermarks and redactions are burned into the pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from viewer.render import (
    RenderParams,
    apply_redactions,
    apply_watermark,
    build_pyramid,
    from_dataset,
    render_array,
    render_frame,
    tile_grid,
    watermark_alpha,
    watermark_pitch,
)

from .samples import make_dataset

TEXT = "Shared with Dr Example 2025-06-01 14:02 UTC #7f3a"


def _gradient_ct(rows: int = 512, columns: int = 768) -> tuple[np.ndarray, object]:
    y, x = np.mgrid[0:rows, 0:columns]
    values = ((x * 7 + y * 3) % 2000 - 1000).astype(np.int16)
    return values, from_dataset(make_dataset(values, WindowCenter=0, WindowWidth=2000))


def test_watermark_changes_pixels_only_where_the_pattern_is():
    values, info = _gradient_ct()
    plain = render_array(values, info, RenderParams())
    marked = render_array(values, info, RenderParams(watermark=TEXT))
    alpha = watermark_alpha(TEXT, plain.shape)
    changed = plain != marked
    assert changed.any()
    assert not (changed & (alpha == 0)).any()
    assert changed.sum() > 0.5 * (alpha > 40).sum()  # and it does change the pattern's pixels


def test_watermark_is_visible_on_black_and_on_white():
    for level in (0, 255):
        img = np.full((256, 256), level, np.uint8)
        marked = apply_watermark(img, TEXT)
        assert (marked != level).sum() > 500


def test_watermark_pitch_is_below_one_tile():
    assert watermark_pitch(TEXT) < 256
    assert watermark_pitch("x" * 200) < 256


def test_watermark_appears_in_every_tile_of_a_tiled_render():
    values, info = _gradient_ct(1024, 768)
    plain = build_pyramid(values, info, RenderParams(format="png"))
    params = RenderParams(format="png", watermark=TEXT)
    for level in plain.levels:
        across, down = tile_grid(level)
        for ty in range(down):
            for tx in range(across):
                tile = np.asarray(Image.open(io.BytesIO(plain.render_tile(level, tx, ty, params))))
                assert (tile != plain.tile(level, tx, ty)).sum() > 200, (level.index, tx, ty)


def test_watermark_pattern_continues_across_tile_borders():
    values, info = _gradient_ct(512, 512)
    whole = apply_watermark(render_array(values, info, RenderParams()), TEXT)
    pyramid = build_pyramid(values, info, RenderParams())
    tiles = [
        [apply_watermark(pyramid.tile(0, tx, ty), TEXT, origin=(tx * 256, ty * 256)) for tx in range(2)]
        for ty in range(2)
    ]
    np.testing.assert_array_equal(np.block(tiles), whole)


def test_watermark_is_deterministic_and_handles_rgb():
    rgb = np.random.default_rng(3).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    first = apply_watermark(rgb, TEXT)
    np.testing.assert_array_equal(first, apply_watermark(rgb, TEXT))
    assert first.shape == rgb.shape
    changed = (first != rgb).any(axis=2)
    assert not (changed & (watermark_alpha(TEXT, (300, 200)) == 0)).any()


def test_redaction_rectangles_are_exactly_zero_and_nothing_else_changes():
    values, info = _gradient_ct(256, 256)
    rects = ((10, 20, 30, 40), (200, 0, 100, 16))  # the second runs off the right edge
    plain = render_array(values, info, RenderParams(format="png"))
    out = render_array(values, info, RenderParams(format="png", redactions=rects))
    mask = np.zeros(out.shape, bool)
    mask[20:60, 10:40] = True
    mask[0:16, 200:256] = True
    assert (out[mask] == 0).all()
    np.testing.assert_array_equal(out[~mask], plain[~mask])


def test_redaction_uses_source_coordinates_through_region_and_rotation():
    values, info = _gradient_ct(256, 256)
    values = values + 1000  # no value maps to black on its own
    params = RenderParams(region=(100, 50, 100, 100), rotation=90, redactions=((120, 60, 10, 20),))
    out = render_array(values, info, params)
    # Source (120..129, 60..79) is region (20..29, 10..29); rotated 90 clockwise that is
    # output rows 20..29 and columns 100 - 30 .. 100 - 11
    assert (out[20:30, 70:90] == 0).all()
    assert (out == 0).sum() == 200


def test_redaction_survives_downscaling():
    values, info = _gradient_ct(512, 512)
    values = values + 1000
    out = render_array(values, info, RenderParams(width=128, redactions=((64, 64, 128, 64),)))
    assert out.shape == (128, 128)
    assert (out[16:32, 16:48] == 0).all()


def test_redacted_encoded_png_is_zero_inside():
    values, info = _gradient_ct(128, 128)
    data = render_frame(values + 1000, info, RenderParams(format="png", redactions=((5, 5, 20, 20),)))
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert (decoded[5:25, 5:25] == 0).all() and decoded[30, 30] != 0


def test_apply_redactions_handles_offsets_and_outside_rects():
    img = np.full((10, 10), 9, np.uint8)
    apply_redactions(img, [(100, 100, 5, 5), (12, 12, 2, 2)], offset=(10, 10))
    assert (img[2:4, 2:4] == 0).all() and (img == 0).sum() == 4


def test_redaction_never_modifies_the_callers_frame():
    rgb = np.full((20, 20, 3), 200, np.uint8)
    info = from_dataset(make_dataset(rgb, photometric="RGB"))
    render_array(rgb, info, RenderParams(redactions=((0, 0, 5, 5),)))
    assert (rgb == 200).all()


@pytest.mark.parametrize("size", [8, 14, 24])
def test_watermark_font_sizes_stay_within_one_tile(size):
    assert watermark_pitch(TEXT, size) < 256
