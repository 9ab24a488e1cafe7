"""The synthetic study generator: valid, deterministic, measurable, losslessly re-encodable."""

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from archive import synthetic
from archive.synthetic import (
    COMPRESSED_TRANSFER_SYNTAXES,
    NATIVE_TRANSFER_SYNTAXES,
    ROD_LENGTH_MM,
    EncoderUnavailable,
    SyntheticPatient,
    calibration_rod_endpoints,
    compress,
    ct_pixel_spacing,
    ct_study,
    demo_studies,
    mammo_image,
    mr_study,
    to_bytes,
    us_burned_in_region,
    us_multiframe,
    write_study,
)

# Small sizes keep the suite fast; the generators take the same code paths at any size.
CT_SIZE, CT_SLICES = 64, 4
US_ROWS, US_COLUMNS, US_FRAMES = 48, 64, 3


@pytest.fixture(scope="module")
def small_demo() -> dict[str, list[Dataset]]:
    return demo_studies(small=True)


@pytest.fixture(scope="module")
def ct_512() -> list[Dataset]:
    """Two full-size slices: the rod geometry is checked at the size the demo uses."""
    return ct_study(slices=2, size=512)


def _hu(ds: Dataset) -> np.ndarray:
    return apply_modality_lut(ds.pixel_array, ds)


def _all_instances(studies: dict[str, list[Dataset]]) -> list[Dataset]:
    return [ds for datasets in studies.values() for ds in datasets]


def test_demo_set_has_one_study_per_kind_with_distinct_fake_patients(small_demo):
    assert set(small_demo) == {"ct", "mr", "us", "mammo"}
    study_uids = {datasets[0].StudyInstanceUID for datasets in small_demo.values()}
    patient_ids = {datasets[0].PatientID for datasets in small_demo.values()}
    assert len(study_uids) == len(patient_ids) == 4
    for ds in _all_instances(small_demo):
        assert str(ds.PatientName).startswith("DEMO^")
        assert ds.Manufacturer == "Lightbox Synthetic"
        assert ds.InstitutionName == "Lightbox Demo Hospital"


def test_every_instance_has_required_attributes_and_pixel_data_of_the_right_length(small_demo):
    for ds in _all_instances(small_demo):
        for keyword in (
            "SOPClassUID",
            "SOPInstanceUID",
            "StudyInstanceUID",
            "SeriesInstanceUID",
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "ReferringPhysicianName",
            "StudyDescription",
            "Modality",
            "PhotometricInterpretation",
        ):
            assert ds.get(keyword) not in (None, ""), keyword
        assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.ImplementationClassUID
        assert ds.HighBit == ds.BitsStored - 1
        frames = int(ds.get("NumberOfFrames", 1))
        expected = ds.Rows * ds.Columns * frames * ds.SamplesPerPixel * ds.BitsAllocated // 8
        assert len(ds.PixelData) == expected + expected % 2


def test_every_instance_round_trips_through_part10_bytes_exactly(small_demo):
    for ds in _all_instances(small_demo):
        data = to_bytes(ds)
        assert data[128:132] == b"DICM"
        back = dcmread(io.BytesIO(data))
        assert back.SOPInstanceUID == ds.SOPInstanceUID
        assert back.PatientName == ds.PatientName
        np.testing.assert_array_equal(back.pixel_array, ds.pixel_array)


def test_instance_uids_are_unique_across_the_demo_set(small_demo):
    uids = [ds.SOPInstanceUID for ds in _all_instances(small_demo)]
    assert len(uids) == len(set(uids))
    assert all(len(uid) <= 64 and uid.is_valid for uid in uids)


def test_same_seed_gives_same_uids_and_pixels(small_demo):
    again = demo_studies(small=True)
    for first, second in zip(_all_instances(small_demo), _all_instances(again), strict=True):
        assert first.SOPInstanceUID == second.SOPInstanceUID
        assert first.StudyInstanceUID == second.StudyInstanceUID
        assert first.StudyDate == second.StudyDate
        assert first.PixelData == second.PixelData


def test_different_seed_gives_different_uids_and_pixels():
    first = ct_study(slices=1, size=CT_SIZE, seed=1)[0]
    second = ct_study(slices=1, size=CT_SIZE, seed=2)[0]
    assert first.StudyInstanceUID != second.StudyInstanceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.PixelData != second.PixelData


def test_different_patients_with_the_same_seed_get_different_study_uids():
    first = ct_study(slices=1, size=CT_SIZE, patient=SyntheticPatient(patient_id="DEMO-A"))[0]
    second = ct_study(slices=1, size=CT_SIZE, patient=SyntheticPatient(patient_id="DEMO-B"))[0]
    assert first.StudyInstanceUID != second.StudyInstanceUID


def test_uid_prefix_option_is_used():
    ds = ct_study(slices=1, size=CT_SIZE, uid_prefix="1.2.3.4.")[0]
    assert ds.SOPInstanceUID.startswith("1.2.3.4.")
    assert ds.StudyInstanceUID.startswith("1.2.3.4.")


def test_ct_rod_row_is_at_least_2000_hu_exactly_between_the_endpoints(ct_512):
    spacing = float(ct_512[0].PixelSpacing[1])
    (x0, y0), (x1, y1) = calibration_rod_endpoints(size=512, pixel_spacing=spacing)
    assert y0 == y1
    for ds in ct_512:
        profile = _hu(ds)[y0]
        assert (profile[x0 : x1 + 1] >= 2000).all()
        assert (np.delete(profile, np.s_[x0 : x1 + 1]) < 2000).all()


def test_ct_rod_endpoints_are_100_mm_apart(ct_512):
    spacing = float(ct_512[0].PixelSpacing[1])
    (x0, _), (x1, _) = calibration_rod_endpoints(size=512, pixel_spacing=spacing)
    assert abs((x1 - x0) * spacing - ROD_LENGTH_MM) <= spacing
    # At the demo size the spacing divides 100 mm, so a ruler reads exactly 100 mm.
    assert (x1 - x0) * spacing == ROD_LENGTH_MM


@pytest.mark.parametrize("size", [64, 100, 250, 512])
def test_ct_rod_is_within_one_pixel_of_100_mm_at_any_size(size):
    spacing = ct_pixel_spacing(size)
    (x0, _), (x1, _) = calibration_rod_endpoints(size=size, pixel_spacing=spacing)
    assert abs((x1 - x0) * spacing - ROD_LENGTH_MM) <= spacing


def test_rod_endpoints_reject_a_field_of_view_too_small_for_the_rod():
    with pytest.raises(ValueError, match="too small"):
        calibration_rod_endpoints(size=64, pixel_spacing=1.0)


def test_ct_has_hu_rescale_and_two_named_windows(ct_512):
    ds = ct_512[0]
    assert (ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType) == (1, -1024, "HU")
    assert list(ds.WindowCenter) == [40, -600]
    assert list(ds.WindowWidth) == [400, 1500]
    assert list(ds.WindowCenterWidthExplanation) == ["SOFT TISSUE", "LUNG"]


def test_ct_hu_values_look_like_a_body():
    slices = ct_study(slices=10, size=128)
    lower, upper = _hu(slices[2]), _hu(slices[8])
    assert abs(np.median(lower[:10, :10]) - -1000) < 30  # air in the corner
    assert abs(np.median(lower[54:74, 54:74]) - 50) < 40  # soft tissue mid-abdomen
    assert (upper < -700).mean() > (lower < -700).mean() + 0.05  # lungs only in the chest
    assert ((upper > 600) & (upper < 1100)).any()  # bone


def test_ct_geometry_is_consistent_slice_to_slice(small_demo):
    slices = small_demo["ct"]
    thickness = float(slices[0].SliceThickness)
    for index, ds in enumerate(slices):
        assert ds.InstanceNumber == index + 1
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        z = float(ds.ImagePositionPatient[2])
        assert z == pytest.approx(index * thickness)
        assert float(ds.SliceLocation) == pytest.approx(z)
        assert ds.FrameOfReferenceUID == slices[0].FrameOfReferenceUID
    assert len({ds.SeriesInstanceUID for ds in slices}) == 1


def test_consecutive_ct_slices_differ(small_demo):
    slices = small_demo["ct"]
    for previous, current in zip(slices, slices[1:], strict=False):
        assert not np.array_equal(previous.pixel_array, current.pixel_array)


def test_mr_has_two_series_sharing_a_frame_of_reference_with_different_contrast(small_demo):
    slices = small_demo["mr"]
    series = {ds.SeriesInstanceUID for ds in slices}
    assert len(series) == 2
    assert len({ds.FrameOfReferenceUID for ds in slices}) == 1
    t1, t2 = slices[1], slices[len(slices) // 2 + 1]
    assert (t1.SeriesDescription, t2.SeriesDescription) == ("T1 AX SE", "T2 AX TSE")
    assert not np.array_equal(t1.pixel_array, t2.pixel_array)
    for ds in slices:
        assert (ds.PixelRepresentation, ds.BitsAllocated) == (0, 16)
        assert "RescaleSlope" not in ds
        assert "WindowCenter" in ds and "WindowWidth" in ds


def test_mr_rejects_more_series_than_it_has_contrasts():
    with pytest.raises(ValueError, match="series"):
        mr_study(series=4, slices=1, size=16)


def test_us_cine_is_rgb_multiframe_with_timing(small_demo):
    ds = small_demo["us"][0]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1"
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration) == (3, "RGB", 0)
    assert ds.NumberOfFrames == US_FRAMES
    assert ds.pixel_array.shape == (US_FRAMES, US_ROWS, US_COLUMNS, 3)
    assert ds.pixel_array.dtype == np.uint8
    assert ds.FrameIncrementPointer == 0x00181063  # Frame Time
    assert float(ds.FrameTime) > 0 and ds.CineRate > 0


def test_us_frames_differ_and_contain_doppler_colour():
    frames = us_multiframe(frames=6, rows=96, columns=128).pixel_array
    for previous, current in zip(frames, frames[1:], strict=False):
        assert not np.array_equal(previous, current)
    red, blue = frames[..., 0].astype(int), frames[..., 2].astype(int)
    assert (red - blue > 100).any() and (blue - red > 100).any()


def test_us_burned_in_band_is_flagged_and_holds_only_the_fake_text(small_demo):
    ds = small_demo["us"][0]
    assert ds.BurnedInAnnotation == "YES"
    x0, y0, x1, y1 = us_burned_in_region(rows=US_ROWS, columns=US_COLUMNS)
    assert (x0, y0, x1) == (0, 0, US_COLUMNS) and 0 < y1 < US_ROWS
    band = ds.pixel_array[:, y0:y1, x0:x1]
    assert set(np.unique(band)) == {0, 230}  # white blocks on black, no image content


def test_mammo_small_has_presentation_attributes(small_demo):
    ds = small_demo["mammo"][0]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
    assert (ds.Modality, ds.PresentationIntentType) == ("MG", "FOR PRESENTATION")
    assert (ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored) == (100, 80, 16, 14)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert ds.ImageLaterality == "L" and ds.ViewPosition == "CC"
    assert ds.ViewCodeSequence[0].CodeMeaning == "cranio-caudal"
    assert float(ds.ImagerPixelSpacing[0]) == pytest.approx(260 / 80)
    assert ds.pixel_array.max() < 2**14
    # Breast tissue (chest wall on the left) is brighter than the background on the right.
    assert ds.pixel_array[50, :10].mean() > 3 * ds.pixel_array[50, -5:].mean()


def test_mammo_monochrome1_stores_inverted_values_that_display_the_same():
    plain = mammo_image(rows=40, columns=32, photometric_interpretation="MONOCHROME2")
    inverted = mammo_image(rows=40, columns=32, photometric_interpretation="MONOCHROME1")
    assert inverted.PhotometricInterpretation == "MONOCHROME1"
    assert inverted.PresentationLUTShape == "INVERSE"
    np.testing.assert_array_equal(inverted.pixel_array, 2**14 - 1 - plain.pixel_array.astype(int))


@pytest.mark.parametrize("transfer_syntax", NATIVE_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES, ids=str)
@pytest.mark.parametrize("kind", ["ct", "mr", "us", "mammo"])
def test_reencoding_is_lossless_and_keeps_the_instance_uid(small_demo, kind, transfer_syntax):
    original = small_demo[kind][0]
    encoded = compress(original, transfer_syntax=transfer_syntax)
    back = dcmread(io.BytesIO(to_bytes(encoded)))
    assert back.file_meta.TransferSyntaxUID == transfer_syntax
    assert back.SOPInstanceUID == original.SOPInstanceUID
    np.testing.assert_array_equal(back.pixel_array, original.pixel_array)


def test_compress_leaves_its_input_unchanged(small_demo):
    original = small_demo["ct"][0]
    before = original.PixelData
    compress(original, transfer_syntax=RLELossless)
    assert original.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert original.PixelData == before


def test_compress_reencodes_an_already_compressed_dataset(small_demo):
    original = small_demo["us"][0]
    rle = compress(original, transfer_syntax=RLELossless)
    assert rle.PlanarConfiguration == 1  # PS3.5 G.2: RLE colour is by plane
    j2k = compress(rle, transfer_syntax=COMPRESSED_TRANSFER_SYNTAXES[2])
    np.testing.assert_array_equal(j2k.pixel_array, original.pixel_array)


def test_generators_can_emit_compressed_series():
    slices = ct_study(slices=2, size=CT_SIZE, transfer_syntax=RLELossless)
    assert all(ds.file_meta.TransferSyntaxUID == RLELossless for ds in slices)


def test_compress_rejects_lossy_transfer_syntaxes(small_demo):
    with pytest.raises(ValueError, match="losslessly"):
        compress(small_demo["ct"][0], transfer_syntax=JPEGBaseline8Bit)


def test_compress_names_the_missing_plugin_when_an_encoder_is_unavailable(small_demo, monkeypatch):
    class MissingEncoder:
        is_available = False
        missing_dependencies = ["pyjpegls - requires pyjpegls>=1.0"]

    monkeypatch.setattr(synthetic.encoding, "get_encoder", lambda uid: MissingEncoder())
    with pytest.raises(EncoderUnavailable, match="pyjpegls"):
        compress(small_demo["ct"][0], transfer_syntax=COMPRESSED_TRANSFER_SYNTAXES[1])


def test_write_study_writes_readable_part10_files_named_without_patient_data(small_demo, tmp_path):
    datasets = small_demo["ct"] + small_demo["us"]
    paths = write_study(datasets, directory=tmp_path / "out")
    assert len(paths) == len(set(paths)) == len(datasets)
    assert sorted(tmp_path.joinpath("out").iterdir()) == sorted(paths)  # no partial files left
    for path, ds in zip(paths, datasets, strict=True):
        name = path.name.upper()
        for phi in (ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber, ds.StudyDate):
            for part in str(phi).upper().replace("^", " ").split():
                assert part not in name
        with path.open("rb") as fp:
            back = dcmread(fp, force=False)
        assert back.SOPInstanceUID == ds.SOPInstanceUID
        assert back.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID


def test_write_study_twice_gives_the_same_files(small_demo, tmp_path):
    first = write_study(small_demo["mammo"], directory=tmp_path)
    second = write_study(small_demo["mammo"], directory=tmp_path)
    assert first == second
    assert first[0].read_bytes() == to_bytes(small_demo["mammo"][0])


def test_generator_modules_do_not_import_django():
    import ast
    from pathlib import Path

    for path in Path(synthetic.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "django" for name in names), path.name
