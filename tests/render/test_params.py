"""RenderParams validation and cache keys; ImageInfo from datasets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest

from viewer.render import CT_WINDOW_PRESETS, ImageInfo, InvalidRenderParams, RenderParams, from_dataset, image_info

from .samples import CT_16_1F, MR_16_1F_BE, US_8_30F_JPEG, make_dataset, sample_path


def test_defaults_are_valid_and_hashable():
    params = RenderParams()
    assert hash(params) == hash(RenderParams())
    assert {params: 1}[RenderParams()] == 1


def test_lists_from_json_become_tuples():
    params = RenderParams(region=[1, 2, 3, 4], redactions=[[0, 0, 5, 5]])
    assert params.region == (1, 2, 3, 4) and params.redactions == ((0, 0, 5, 5),)
    hash(params)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_center": 40},
        {"window_center": 40, "window_width": 0},
        {"window_center": 40, "window_width": 0.5},
        {"window_center": float("nan"), "window_width": 10},
        {"window_center": "40", "window_width": 10},
        {"voi_function": "LOG"},
        {"frame": -1},
        {"frame": 1.5},
        {"width": 0},
        {"height": 100_000},
        {"width": True},
        {"region": (0, 0, 0, 10)},
        {"region": (-1, 0, 10, 10)},
        {"region": (0, 0, 10)},
        {"rotation": 45},
        {"rotation": True},
        {"flip_h": 1},
        {"format": "gif"},
        {"quality": 0},
        {"quality": 101},
        {"watermark": "x" * 201},
        {"watermark": 5},
        {"redactions": [(0, 0, 1)]},
        {"redactions": [(0, 0, 1, 1)] * 257},
        {"redactions": "0,0,1,1"},
    ],
)
def test_rejects_invalid_params(kwargs):
    with pytest.raises(InvalidRenderParams):
        RenderParams(**kwargs)


def test_sigmoid_accepts_a_width_below_one():
    assert RenderParams(window_center=0, window_width=0.5, voi_function="SIGMOID").window_width == 0.5


def test_cache_key_is_equal_for_equal_params_and_differs_otherwise():
    a = RenderParams(window_center=40, window_width=80)
    assert a.cache_key() == RenderParams(window_center=40.0, window_width=80.0).cache_key()
    assert a.cache_key() != RenderParams(window_center=40, window_width=81).cache_key()
    assert a.cache_key() != RenderParams(window_center=40, window_width=80, watermark="x").cache_key()
    assert len(a.cache_key()) == 32


def test_numpy_integers_give_the_same_cache_key_as_ints():
    a = RenderParams(frame=np.int64(3), width=np.int32(100), quality=np.int16(80), rotation=np.int64(90))
    assert a.cache_key() == RenderParams(frame=3, width=100, quality=80, rotation=90).cache_key()


def test_cache_key_is_stable_across_processes():
    code = (
        "from viewer.render import RenderParams;"
        "print(RenderParams(window_center=40, window_width=80, redactions=[(1,2,3,4)]).cache_key())"
    )
    keys = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    }
    assert keys == {RenderParams(window_center=40, window_width=80, redactions=[(1, 2, 3, 4)]).cache_key() + "\n"}


def test_ct_presets_include_the_standard_windows():
    assert CT_WINDOW_PRESETS["brain"] == (40.0, 80.0)
    assert CT_WINDOW_PRESETS["lung"] == (-600.0, 1500.0)
    assert {"subdural", "stroke", "mediastinum", "abdomen", "liver", "bone"} <= set(CT_WINDOW_PRESETS)


def test_image_info_reads_the_ct_header():
    info = image_info(pydicom.dcmread(sample_path(CT_16_1F)))
    assert isinstance(info, ImageInfo)
    assert (info.rows, info.columns, info.number_of_frames) == (128, 128, 1)
    assert (info.bits_allocated, info.bits_stored, info.pixel_representation) == (16, 16, 1)
    assert info.rescale_intercept == -1024.0 and info.modality == "CT"
    assert info.pixel_padding_value == -2000
    assert info.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert info.pixel_spacing_source == "PixelSpacing"
    assert info.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    hash(info)


def test_image_info_reads_multiframe_and_big_endian_headers():
    assert image_info(pydicom.dcmread(sample_path(US_8_30F_JPEG), stop_before_pixels=True)).number_of_frames == 30
    be = image_info(pydicom.dcmread(sample_path(MR_16_1F_BE), stop_before_pixels=True))
    assert be.transfer_syntax_uid == "1.2.840.10008.1.2.2"


def test_imager_pixel_spacing_is_used_and_labelled_when_pixel_spacing_is_absent():
    ds = make_dataset(np.zeros((4, 4), np.uint16), ImagerPixelSpacing=[0.2, 0.1])
    info = from_dataset(ds)
    assert info.pixel_spacing == (0.2, 0.1) and info.pixel_spacing_source == "ImagerPixelSpacing"


def test_windows_are_read_with_all_values_and_bad_ones_dropped():
    ds = make_dataset(
        np.zeros((4, 4), np.int16),
        WindowCenter=[40, 400, 50],
        WindowWidth=[80, 1800, 0],
        WindowCenterWidthExplanation=["BRAIN", "BAD", "BONE"],
    )
    ds.WindowCenter, ds.WindowWidth = [40, 50, 400], [80, 0, 1800]
    info = from_dataset(ds)
    assert info.window_centers == (40.0, 400.0) and info.window_widths == (80.0, 1800.0)
    assert info.window_explanations == ("BRAIN", "BONE")


def test_enhanced_multiframe_attributes_come_from_shared_functional_groups():
    ds = make_dataset(np.zeros((2, 4, 4), np.int16))
    shared = pydicom.Dataset()
    measures, transform, voi = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
    measures.PixelSpacing = [0.5, 0.5]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -100, "HU"
    voi.WindowCenter, voi.WindowWidth = 30, 300
    shared.PixelMeasuresSequence = [measures]
    shared.PixelValueTransformationSequence = [transform]
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    info = from_dataset(ds)
    assert info.pixel_spacing == (0.5, 0.5)
    assert (info.rescale_slope, info.rescale_intercept, info.rescale_type) == (2.0, -100.0, "HU")
    assert info.window_centers == (30.0,)
