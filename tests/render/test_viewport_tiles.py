"""Output sizes, crops, orientation and the tile pyramid."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.render import (
    InvalidRenderParams,
    Pyramid,
    RenderParams,
    from_dataset,
    orient,
    output_size,
    pyramid_levels,
    render_array,
    resize,
    tile_grid,
)

from .samples import make_dataset


def _ramp(rows: int, columns: int) -> tuple[np.ndarray, object]:
    values = (np.arange(rows * columns) % 251).astype(np.uint8).reshape(rows, columns)
    return values, from_dataset(make_dataset(values, WindowCenter=128, WindowWidth=256))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((512, 256, None, None), (512, 256)),
        ((512, 256, 100, None), (100, 50)),
        ((512, 256, None, 64), (128, 64)),
        ((512, 256, 300, 300), (300, 150)),
        ((512, 256, 100, 10), (20, 10)),
        ((1, 1000, 10, 10), (1, 10)),
    ],
)
def test_output_size_fits_the_box_and_keeps_aspect(args, expected):
    assert output_size(*args) == expected


def test_output_size_swaps_axes_for_quarter_turns_and_honours_pixel_aspect():
    assert output_size(512, 256, 200, 200, rotation=90) == (100, 200)
    assert output_size(100, 100, None, None, pixel_aspect=2.0) == (100, 200)


@pytest.mark.parametrize("seed", range(5))
def test_render_never_outputs_more_pixels_than_requested(seed):
    rng = np.random.default_rng(seed)
    values, info = _ramp(int(rng.integers(20, 300)), int(rng.integers(20, 300)))
    for _ in range(20):
        width, height = (int(v) for v in rng.integers(1, 400, 2))
        rotation = int(rng.choice([0, 90, 180, 270]))
        out = render_array(values, info, RenderParams(width=width, height=height, rotation=rotation))
        assert out.shape[1] <= width and out.shape[0] <= height
        assert max(out.shape[1] / width, out.shape[0] / height) > 0.95 or min(out.shape) == 1


def test_region_crop_selects_source_pixels():
    values, info = _ramp(100, 120)
    out = render_array(values, info, RenderParams(region=(10, 20, 30, 40)))
    np.testing.assert_array_equal(out, render_array(values, info, RenderParams())[20:60, 10:40])


def test_region_outside_the_image_is_invalid():
    values, info = _ramp(100, 120)
    with pytest.raises(InvalidRenderParams, match="region"):
        render_array(values, info, RenderParams(region=(100, 0, 30, 10)))


def test_rotation_is_clockwise_and_flips_follow_it():
    img = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    np.testing.assert_array_equal(orient(img, 90, False, False), [[4, 1], [5, 2], [6, 3]])
    np.testing.assert_array_equal(orient(img, 180, False, False), [[6, 5, 4], [3, 2, 1]])
    np.testing.assert_array_equal(orient(img, 270, False, False), [[3, 6], [2, 5], [1, 4]])
    np.testing.assert_array_equal(orient(img, 0, True, False), [[3, 2, 1], [6, 5, 4]])
    np.testing.assert_array_equal(orient(img, 0, False, True), [[4, 5, 6], [1, 2, 3]])
    np.testing.assert_array_equal(orient(img, 90, True, False), [[1, 4], [2, 5], [3, 6]])


def test_downsampling_is_an_area_average():
    img = np.array([[0, 100, 10, 10], [100, 200, 10, 10]], np.uint8)
    np.testing.assert_array_equal(resize(img, 2, 1), [[100, 10]])
    odd = np.arange(9 * 7, dtype=np.uint8).reshape(9, 7)
    assert resize(odd, 3, 4).shape == (4, 3)


def test_upsampling_is_bilinear_and_keeps_rgb():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[:, 1] = 200
    out = resize(rgb, 8, 8)
    assert out.shape == (8, 8, 3)
    assert 0 < out[0, 4, 0] < 200  # interpolated, not nearest


def test_pyramid_levels_halve_down_to_one_tile():
    levels = pyramid_levels(1000, 600)
    assert [(lv.rows, lv.columns) for lv in levels] == [(1000, 600), (500, 300), (250, 150)]
    assert [lv.scale for lv in levels] == [1, 2, 4]
    assert [tile_grid(lv) for lv in levels] == [(3, 4), (2, 2), (1, 1)]
    assert len(pyramid_levels(200, 100)) == 1


def test_pyramid_tiles_have_the_right_shapes_and_cover_the_level():
    base = np.arange(1000 * 600, dtype=np.uint32).astype(np.uint8).reshape(1000, 600)
    pyramid = Pyramid(base)
    assert pyramid.tile(0, 0, 0).shape == (256, 256)
    assert pyramid.tile(0, 2, 3).shape == (1000 - 768, 600 - 512)
    assert pyramid.tile(1, 1, 1).shape == (500 - 256, 300 - 256)
    assert pyramid.image(2).shape == (250, 150)
    level1 = np.block([[pyramid.tile(1, tx, ty) for tx in range(2)] for ty in range(2)])
    np.testing.assert_array_equal(level1, pyramid.image(1))


def test_pyramid_builds_levels_lazily_and_once():
    pyramid = Pyramid(np.zeros((1024, 1024), np.uint8))
    before = pyramid.nbytes
    first = pyramid.image(2)
    assert pyramid.nbytes > before
    assert pyramid.image(2) is first


def test_pyramid_level_two_is_the_mean_of_4x4_blocks():
    base = np.random.default_rng(0).integers(0, 256, (1024, 512), dtype=np.uint8)
    level2 = Pyramid(base).image(2).astype(int)
    blocks = base.reshape(256, 4, 128, 4).mean(axis=(1, 3))
    assert np.abs(level2 - blocks).max() <= 1


def test_tile_outside_the_grid_is_invalid():
    pyramid = Pyramid(np.zeros((300, 300), np.uint8))
    with pytest.raises(InvalidRenderParams):
        pyramid.tile(0, 2, 0)
    with pytest.raises(InvalidRenderParams):
        pyramid.tile(5, 0, 0)


@pytest.mark.parametrize(("src", "dst"), [((2560, 1700), (1000, 663)), ((5120, 4096), (1024, 819)), ((2049, 1031), (301, 97))])
def test_large_shrinks_run_in_bands_and_equal_one_whole_image_resize(src, dst):
    # Above PARALLEL_MIN_PIXELS the resize is split into bands of output rows on threads.
    from PIL import Image

    from viewer.render.bands import PARALLEL_MIN_PIXELS

    rows, columns = src
    assert rows * columns >= PARALLEL_MIN_PIXELS
    img = np.random.default_rng(3).integers(0, 256, src, dtype=np.uint8)
    expected = np.asarray(Image.fromarray(img).resize((dst[1], dst[0]), Image.Resampling.BOX))
    np.testing.assert_array_equal(resize(img, dst[1], dst[0]), expected)


def test_large_lookup_in_bands_equals_one_take():
    from viewer.render.lut import _lookup

    table = np.random.default_rng(4).integers(0, 256, 65536, dtype=np.uint8)
    indices = np.random.default_rng(5).integers(0, 65536, (3001, 1999), dtype=np.uint16)
    np.testing.assert_array_equal(_lookup(table, indices), np.take(table, indices))
    view = indices[7:2900:3, 5:1900]  # a strided crop (a zoomed region) too
    np.testing.assert_array_equal(_lookup(table, view), np.take(table, view))
