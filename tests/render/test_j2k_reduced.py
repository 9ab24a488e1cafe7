"""Views shrunk 2x or more of JPEG 2000 images render from the codestream's reduced levels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from openjpeg import encode as j2k_encode
from PIL import Image
from pydicom.uid import JPEG2000Lossless

from viewer.pool import ByteLRU, JobRunner, PrefetchJob, RenderJob, Source
from viewer.render import PixelSource, RenderParams, render_array, render_instance
from viewer.render import j2k as j2k_module
from viewer.render.errors import CorruptPixelData
from viewer.render.pipeline import reduction_step

from .pool_openers import CountingOpener
from .samples import encapsulated_copy, make_dataset

MIB = 1 << 20


def _smooth(rows: int, columns: int, *, lo: int, hi: int, seed: int = 3, noise: float = 0.002) -> np.ndarray:
    """A smooth image spanning lo..hi: slow gradients plus a bright disc with a soft edge."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    base = 0.5 + 0.25 * np.sin(x / 37.0) * np.cos(y / 53.0)
    disc = np.clip((120.0 - np.hypot(x - columns * 0.6, y - rows * 0.4)) / 20.0, 0.0, 1.0) * 0.2
    grain = np.random.default_rng(seed).normal(0.0, noise, size=(rows, columns))
    unit = np.clip(base + disc + grain, 0.0, 1.0)
    return np.round(lo + unit * (hi - lo))


def _j2k_instance(stored: np.ndarray, bits_stored: int, *, photometric: str = "MONOCHROME2", **attributes) -> bytes:
    """A single-frame JPEG 2000 Lossless instance holding `stored` (OpenJPEG, 6 resolutions)."""
    codestream = j2k_encode(
        stored,
        bits_stored=bits_stored,
        photometric_interpretation=1 if photometric == "RGB" else 2,
        use_mct=False,
        codec_format=0,
    )
    ds = make_dataset(stored, bits_stored=bits_stored, photometric=photometric, transfer_syntax=JPEG2000Lossless)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return encapsulated_copy(ds, [codestream])


@pytest.mark.parametrize(
    ("dtype", "bits", "value"),
    [
        (np.uint8, 8, 0),
        (np.uint8, 8, 255),
        (np.uint16, 12, 4095),
        (np.uint16, 12, 1),
        (np.uint16, 16, 65535),
        (np.int16, 12, -2048),
        (np.int16, 12, 2047),
        (np.int16, 16, -32768),
        (np.int16, 16, -1),
    ],
)
def test_reduced_decode_gives_stored_values_at_every_precision_and_sign(dtype, bits, value):
    # A constant image's every wavelet level is that constant: any scaling or offset Pillow
    # applies for its mode must be undone exactly.
    stored = np.full((64, 96), value, dtype)
    frame, step = PixelSource(_j2k_instance(stored, bits)).decode_reduced(0, 4)
    assert step == 4
    assert frame.values.shape == (16, 24)
    assert frame.values.dtype.kind == np.dtype(dtype).kind
    assert np.array_equal(frame.values, np.full((16, 24), value))


def test_reduced_samples_sit_on_every_fourth_source_pixel():
    # ISO 15444-1 B.5: the 2^2-reduced grid keeps source positions 4n, so on a smooth image
    # sample n is close to source pixel 4n, and farther from the middle of block n
    stored = _smooth(512, 640, lo=0, hi=4095, noise=0).astype(np.uint16)
    source = PixelSource(_j2k_instance(stored, 12))
    assert np.array_equal(source.decode(0).values, stored)
    frame, step = source.decode_reduced(0, 7)
    assert step == 4 and frame.values.shape == (128, 160)
    inner = (slice(2, -2), slice(2, -2))
    values = frame.values.astype(np.float64)[inner]
    on_grid = np.abs(values - stored[::4, ::4][inner]).mean()
    block_means = stored.reshape(128, 4, 160, 4).mean(axis=(1, 3))[inner]
    assert on_grid < 2  # of 4095
    assert np.abs(values - block_means).mean() > 5 * on_grid
    assert not frame.is_color and frame.photometric_interpretation == "MONOCHROME2"


def test_odd_sizes_round_up_and_the_step_never_exceeds_the_codestream_levels():
    stored = _smooth(302, 204, lo=0, hi=1000).astype(np.uint16)
    source = PixelSource(_j2k_instance(stored, 16))
    frame, step = source.decode_reduced(0, 2)
    assert (step, frame.values.shape) == (2, (151, 102))
    # OpenJPEG's encoder writes 5 decomposition levels by default: 2^5 is the most it holds
    assert j2k_module.read_header(source.encoded_frame(0)).levels == 5
    stored = _smooth(1024 + 16, 1024 + 31, lo=0, hi=1000).astype(np.uint16)
    frame, step = PixelSource(_j2k_instance(stored, 16)).decode_reduced(0, 1000)
    assert (step, frame.values.shape) == (32, (33, 33))


@pytest.mark.parametrize("rows", range(64, 97))
def test_every_side_length_decodes_at_the_deepest_reduction_pillow_allows(rows):
    stored = _smooth(rows, 97, lo=0, hi=1000, noise=0).astype(np.uint16)
    source = PixelSource(_j2k_instance(stored, 16))
    frame, step = source.decode_reduced(0, 32)
    assert step == 1 << j2k_module.usable_reduction(rows, 97, 5)
    assert frame.values.shape == (-(-rows // step), -(-97 // step))
    if step > 1:
        assert np.abs(frame.values.astype(int) - stored[::step, ::step]).mean() < 10  # of 1000
    # The largest reduction Pillow refuses really is refused (the workaround is still needed)
    refused = next((r for r in range(5, 0, -1) if j2k_module.usable_reduction(rows, 97, r) != r), None)
    if refused is not None:
        header = j2k_module.read_header(source.encoded_frame(0))
        with pytest.raises(CorruptPixelData):
            j2k_module.decode_reduced(source.encoded_frame(0), refused, header)


@pytest.mark.parametrize("step", [0, 1])
def test_a_step_below_two_decodes_in_full(step):
    stored = _smooth(64, 64, lo=0, hi=255).astype(np.uint8)
    source = PixelSource(_j2k_instance(stored, 8))
    frame, got = source.decode_reduced(0, step)
    assert got == 1 and np.array_equal(frame.values, stored)


def test_colour_and_native_sources_decode_in_full():
    rgb = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    frame, step = PixelSource(_j2k_instance(rgb, 8, photometric="RGB")).decode_reduced(0, 8)
    assert step == 1 and np.array_equal(frame.values, rgb)
    native = make_dataset(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    from .samples import to_bytes

    frame, step = PixelSource(to_bytes(native)).decode_reduced(0, 8)
    assert step == 1 and frame.values.shape == (64, 64)


def test_a_truncated_codestream_is_refused_by_the_reduced_decode_too():
    stored = _smooth(128, 128, lo=0, hi=4095).astype(np.uint16)
    data = _j2k_instance(stored, 12)
    source = PixelSource(data)
    codestream = source.encoded_frame(0)
    ds = make_dataset(stored, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    broken = PixelSource(encapsulated_copy(ds, [codestream[: len(codestream) // 2]]))
    with pytest.raises(CorruptPixelData):
        broken.decode_reduced(0, 4)


def test_a_header_without_cod_is_refused():
    with pytest.raises(CorruptPixelData, match="COD"):
        j2k_module.read_header(b"\xff\x4f\xff\x51" + b"\x00" * 60)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (RenderParams(width=1024, height=1024), 4),  # 4096 x 5120 -> 819 x 1024: 5x
        (RenderParams(), 1),
        (RenderParams(width=4096), 1),
        (RenderParams(width=2048, height=2560), 2),
        (RenderParams(width=1366, height=1707), 2),  # 2.998x
        (RenderParams(region=(0, 0, 512, 512), width=512, height=512), 1),
        (RenderParams(region=(0, 0, 2048, 2048), width=512, height=512), 4),
        (RenderParams(width=1024, height=1024, rotation=90), 4),
    ],
)
def test_reduction_step_is_the_largest_power_of_two_the_view_shrinks_by(params, expected):
    info = PixelSource(_j2k_instance(np.zeros((5120, 4096), np.uint16), 12)).info
    assert reduction_step(info, params) == expected


def test_a_fit_view_renders_from_the_reduced_decode_and_looks_like_the_full_one(monkeypatch):
    stored = _smooth(1280, 1024, lo=0, hi=4095).astype(np.uint16)
    data = _j2k_instance(stored, 12, WindowCenter=2048, WindowWidth=4096)
    params = RenderParams(width=256, height=256, format="png")
    calls = []
    original = j2k_module.decode_reduced
    monkeypatch.setattr(j2k_module, "decode_reduced", lambda *a: calls.append(a[1]) or original(*a))
    reduced = np.asarray(Image.open(io.BytesIO(render_instance(data, params))))
    assert calls == [2]  # 1280 -> 256 is 5x: the 2^2-reduced image, then a 1.25x resize
    source = PixelSource(data)
    full = render_array(source.decode(0).values, source.info, params)
    assert reduced.shape == full.shape == (256, 205)
    assert np.abs(reduced.astype(int) - full.astype(int)).mean() < 1.0


def test_a_zoomed_in_region_renders_from_the_full_frame(monkeypatch):
    stored = _smooth(512, 512, lo=0, hi=255).astype(np.uint8)
    data = _j2k_instance(stored, 8)
    monkeypatch.setattr(j2k_module, "decode_reduced", lambda *a: pytest.fail("reduced decode for a 1:1 view"))
    params = RenderParams(region=(100, 100, 256, 256), width=512, height=512, format="png")
    source = PixelSource(data)
    assert render_instance(data, params) == render_instance(source, params)


def test_redactions_blank_at_least_their_area_in_a_reduced_render():
    # PRIVACY: a reduced pixel that touches a redaction is blanked, so nothing of it survives
    stored = np.full((1024, 1024), 4000, np.uint16)
    data = _j2k_instance(stored, 12, WindowCenter=2048, WindowWidth=4096)
    rect = (101, 203, 37, 51)
    params = RenderParams(width=256, height=256, redactions=(rect,))
    source = PixelSource(data)
    frame, step = source.decode_reduced(0, reduction_step(source.info, params))
    assert step == 4
    img = render_array(frame.values, source.info, params, step=step)
    full = render_array(source.decode(0).values, source.info, params)
    assert (img[full == 0] == 0).all()
    x, y, w, h = rect
    assert (img[y // 4 : -(-(y + h) // 4), x // 4 : -(-(x + w) // 4)] == 0).all()
    assert img[0, 0] > 200 and img[-1, -1] > 200


def test_render_array_checks_the_reduced_frame_shape():
    info = PixelSource(_j2k_instance(np.zeros((64, 64), np.uint16), 12)).info
    with pytest.raises(Exception, match="expected 16 x 16 values"):
        render_array(np.zeros((32, 32), np.uint16), info, RenderParams(width=16), step=4)


def _runner_over(data: bytes) -> tuple[JobRunner, CountingOpener]:
    opener = CountingOpener(data)
    return JobRunner(opener, ByteLRU(64 * MIB)), opener


def _windowed_instance(rows: int, columns: int) -> bytes:
    stored = _smooth(rows, columns, lo=0, hi=4095).astype(np.uint16)
    return _j2k_instance(stored, 12, WindowCenter=2048, WindowWidth=4096)


def test_runner_renders_a_view_the_same_whatever_the_cache_holds():
    runner, opener = _runner_over(_windowed_instance(1024, 1024))
    source = Source("mammo", None)
    fit = RenderParams(width=256, height=256)
    first = runner.run(RenderJob(source, fit))
    assert not first.cached and (first.width, first.height) == (256, 256)
    again = runner.run(RenderJob(source, fit))
    assert again.cached and again.data == first.data
    assert runner.cache.get(("reduced", "mammo", 0, 4))[2] == 4
    # A 1:1 view decodes the whole frame; the fit view still comes from the reduced one
    runner.run(RenderJob(source, RenderParams(region=(0, 0, 256, 256))))
    assert ("frame", "mammo", 0) in runner.cache
    assert runner.run(RenderJob(source, fit)).data == first.data
    assert opener.calls == 2  # single-frame: opened once per decode, header remembered


def test_runner_remembers_a_codestream_that_decodes_only_in_full():
    # A JP2 file in the Pixel Data instead of a bare codestream (PS3.5 A.4.4 says bare, but
    # such files exist): pydicom decodes it in full, and the runner stops trying to reduce it
    stored = _smooth(512, 512, lo=0, hi=4095).astype(np.uint16)
    jp2 = j2k_encode(stored, bits_stored=12, photometric_interpretation=2, use_mct=False, codec_format=1)
    assert jp2[4:8] == b"jP  "
    ds = make_dataset(stored, bits_stored=12, transfer_syntax=JPEG2000Lossless, WindowCenter=2048, WindowWidth=4096)
    runner, opener = _runner_over(encapsulated_copy(ds, [jp2]))
    fit = RenderParams(width=128, height=128)
    first = runner.run(RenderJob(Source("jp2", None), fit))
    second = runner.run(RenderJob(Source("jp2", None), fit))
    assert second.cached and second.data == first.data
    assert opener.calls == 1
    assert np.array_equal(runner.cache.get(("frame", "jp2", 0))[0].values, stored)


def test_a_prefetch_for_a_view_decodes_what_that_view_renders_from():
    runner, _ = _runner_over(_windowed_instance(1024, 1024))
    source = Source("next-slice", None)
    fit = RenderParams(width=256, height=256)
    assert runner.run(PrefetchJob(source, (0,), view=fit)) == 1
    assert runner.run(PrefetchJob(source, (0,), view=fit)) == 0
    assert ("frame", "next-slice", 0) not in runner.cache  # the full frame was never decoded
    assert runner.run(RenderJob(source, fit)).cached
    # A view that does not fit this image (a region beyond it) still gets the frame decoded
    beyond = RenderParams(region=(900, 900, 512, 512), width=128, height=128)
    assert runner.run(PrefetchJob(Source("other", None), (0,), view=beyond)) == 1
    assert ("frame", "other", 0) in runner.cache


def _windowless_with_hot_pixels() -> tuple[np.ndarray, bytes]:
    # No window in the file, and a few hot pixels the reduced image averages away: the data
    # range of the whole frame and of the reduced image differ
    stored = _smooth(2048, 1024, lo=1000, hi=3000, noise=0).astype(np.uint16)
    stored[100, 100] = stored[1500, 700] = 4095
    return stored, _j2k_instance(stored, 12)


def test_every_view_of_a_windowless_jpeg2000_image_uses_one_data_window():
    from viewer.pool import InfoJob
    from viewer.render.lut import resolve_window
    from viewer.render.pipeline import window_basis_step, with_window

    stored, data = _windowless_with_hot_pixels()
    source = PixelSource(data)
    info = source.info
    assert window_basis_step(info) == 2  # 2048 rows: the level whose longer side is 1024
    basis, _ = source.decode_reduced(0, 2)
    basis_window = resolve_window(info, RenderParams(), basis.values)
    assert basis_window != resolve_window(info, RenderParams(), stored)  # the hot pixels are gone

    runner, _ = _runner_over(data)
    shown = runner.run(InfoJob(Source("cr", None)))
    assert shown.default_window == basis_window
    assert ("frame", "cr", 0) not in runner.cache  # no whole-image decode just to pick a window
    zoomed = RenderParams(region=(0, 0, 256, 256), format="png")
    one_to_one = np.asarray(Image.open(io.BytesIO(runner.run(RenderJob(Source("cr", None), zoomed)).data)))
    expected = render_array(stored, info, with_window(zoomed, basis_window))
    assert np.array_equal(one_to_one, expected)
    # The engine's own entry point follows the same rule
    fit = RenderParams(width=256, height=256, format="png")
    assert runner.run(RenderJob(Source("cr", None), fit)).data == render_instance(data, fit)


def test_only_views_without_a_window_asked_for_or_in_the_file_take_the_data_window():
    from viewer.render.pipeline import needs_data_window

    info = PixelSource(_j2k_instance(np.zeros((64, 64), np.uint16), 12, WindowCenter=40, WindowWidth=400)).info
    assert not needs_data_window(info, RenderParams())
    bare = PixelSource(_j2k_instance(np.zeros((64, 64), np.uint16), 12)).info
    assert needs_data_window(bare, RenderParams())
    assert not needs_data_window(bare, RenderParams(window_center=10, window_width=20))


def test_mangled_main_headers_give_a_frame_or_corrupt_pixel_data_never_anything_else():
    # Bytes changed in the first 150 bytes of the codestream (SIZ, COD, QCD): the reduced
    # path, its fallback to pydicom and the checks before both must all end cleanly
    stored = _smooth(256, 256, lo=0, hi=4095).astype(np.uint16)
    codestream = PixelSource(_j2k_instance(stored, 12)).encoded_frame(0)
    ds = make_dataset(stored, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    rng = np.random.default_rng(11)
    refused = 0
    for _ in range(120):
        mangled = bytearray(codestream)
        for position in rng.integers(0, 150, size=int(rng.integers(1, 6))):
            mangled[int(position)] = int(rng.integers(0, 256))
        source = PixelSource(encapsulated_copy(ds, [bytes(mangled)]))
        try:
            frame, step = source.decode_reduced(0, 4)
        except CorruptPixelData:
            refused += 1
            continue
        assert step in (1, 2, 4) and frame.values.shape == (256 // step, 256 // step)
    assert refused > 60  # most such changes break the header, and are reported as such


def test_a_fit_view_at_the_window_basis_level_decodes_that_level_once(monkeypatch):
    stored, data = _windowless_with_hot_pixels()  # 2048 x 1024: the basis is the 1/2 level
    calls = []
    original = j2k_module.decode_reduced
    monkeypatch.setattr(j2k_module, "decode_reduced", lambda *a: calls.append(a[1]) or original(*a))
    render_instance(data, RenderParams(width=512, height=1024))
    assert calls == [1]  # reduce=1 (a step of 2), once
