"""Header parsing at ingest: values converted once per batch give exactly what a fresh parse gives."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom.data
import pytest
from pydicom.dataset import Dataset

from archive import services, synthetic
from archive.errors import InvalidUpload
from archive.headers import ConversionMemo, metadata_json, read_header

LIMIT = 2 * 1024**3


def _part10_files() -> list[str]:
    """pydicom's bundled test files that are Part 10 objects (all transfer syntaxes, charsets)."""
    files = []
    # The folder that ships in the wheel (get_testdata_files would try to download more).
    for path in sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*")):
        if not path.is_file() or path.stat().st_size > 8 * 1024**2:
            continue
        with path.open("rb") as fp:
            head = fp.read(132)
        if head[128:132] == b"DICM":
            files.append(str(path))
    return files


def _header(data: bytes, memo: ConversionMemo | None) -> tuple[dict, list[str], dict]:
    ds, notes = read_header(io.BytesIO(data), max_inflated_bytes=LIMIT, memo=memo)
    values = {keyword: str(ds.get(keyword)) for keyword in (
        "PatientName", "PatientID", "StudyDate", "Modality", "SeriesNumber", "InstanceNumber", "Rows",
        "Columns", "BitsAllocated", "PhotometricInterpretation", "ImagePositionPatient", "SpecificCharacterSet")}
    return metadata_json(ds, memo), notes, values


@pytest.mark.parametrize("name", _part10_files(), ids=lambda name: Path(name).name)
def test_a_header_converted_through_the_memo_is_the_same_as_a_fresh_parse(name):
    data = Path(name).read_bytes()
    try:
        fresh = _header(data, None)
    except InvalidUpload:
        return  # refused the same way with or without a memo (covered by the ingest tests)
    memo = ConversionMemo()
    first = _header(data, memo)
    again = _header(data, memo)  # this time the values come out of the memo
    assert first == fresh
    assert again == fresh


def test_one_memo_across_every_transfer_syntax_and_character_set_changes_nothing():
    """Equal value bytes mean other things in another byte order or character set."""
    memo = ConversionMemo()
    for name in _part10_files() * 2:
        data = Path(name).read_bytes()
        try:
            fresh = _header(data, None)
        except InvalidUpload:
            continue
        assert _header(data, memo) == fresh, Path(name).name


def _raw_dataset(*elements: tuple[int, str, bytes], little_endian: bool = True) -> Dataset:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    return Dataset({Tag(tag): RawDataElement(Tag(tag), vr, len(value), value, 0, False, little_endian)
                    for tag, vr, value in elements})


def test_the_same_bytes_in_another_byte_order_or_character_set_are_converted_afresh():
    memo = ConversionMemo()
    little = _raw_dataset((0x00280010, "US", b"\x01\x00"))
    big = _raw_dataset((0x00280010, "US", b"\x01\x00"), little_endian=False)
    latin1 = _raw_dataset((0x00080005, "CS", b"ISO_IR 100"), (0x00100010, "PN", b"M\xc3\xbcller"))
    utf8 = _raw_dataset((0x00080005, "CS", b"ISO_IR 192"), (0x00100010, "PN", b"M\xc3\xbcller"))
    for ds in (little, big, latin1, utf8):
        memo.convert(ds, [])
    assert (little.Rows, big.Rows) == (1, 256)
    assert (str(latin1.PatientName), str(utf8.PatientName)) == ("MÃ¼ller", "Müller")


def test_a_series_shares_its_common_values_and_keeps_its_own():
    objects = [synthetic.to_bytes(ds) for ds in synthetic.ct_study(slices=4, size=64, seed=3)]
    memo = ConversionMemo()
    with_memo = [_header(data, memo) for data in objects]
    without = [_header(data, None) for data in objects]
    assert with_memo == without
    # The per-instance values differ, and each object got its own.
    assert len({meta["00080018"]["Value"][0] for meta, _, _ in with_memo}) == 4
    assert len({values["ImagePositionPatient"] for _, _, values in with_memo}) == 4


def _with_bad_series_number(seed: int) -> bytes:
    ds = synthetic.ct_study(slices=1, size=16, seed=seed)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.SeriesNumber = "7.0"  # not an integer string (PS3.5 6.2): pydicom warns when it reads it
    return synthetic.to_bytes(ds)


def test_every_object_gets_its_own_note_for_a_value_that_warned_and_no_note_shows_the_value():
    memo = ConversionMemo()
    for seed in (1, 2):
        _, notes, values = _header(_with_bad_series_number(seed), memo)
        assert any("Invalid value for VR IS" in note for note in notes), notes
        assert not any("7.0" in note for note in notes)


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(ConversionMemo, "LIMIT", 8)
    memo = ConversionMemo()
    for data in (synthetic.to_bytes(ds) for ds in synthetic.ct_study(slices=3, size=16, seed=4)):
        _header(data, memo)
        assert len(memo._elements) <= 8


def test_ingest_of_a_series_stores_the_same_metadata_as_one_object_at_a_time(org):
    objects = [synthetic.to_bytes(ds) for ds in synthetic.ct_study(slices=3, size=32, seed=7)]
    together = {result.sop_instance_uid: result for _, result in services.ingest_many(
        ((i, io.BytesIO(data)) for i, data in enumerate(objects)), organization=org, source="test")}
    for data in objects:
        described = services._describe(io.BytesIO(data), size=len(data), expected_study_uid=None)
        from archive.models import Instance

        row = Instance.objects.get(sop_instance_uid=described.uids["sop_instance_uid"])
        assert together[row.sop_instance_uid].status == services.Status.STORED
        assert row.metadata == described.instance["metadata"]
        assert row.image_position_patient == described.instance["image_position_patient"]


def test_metadata_leaves_out_only_an_element_pydicom_cannot_express(monkeypatch):
    ds = Dataset()
    ds.PatientID = "X1"
    ds.Modality = "CT"
    original = type(ds["Modality"]).to_json_dict

    def refuse_modality(element, *args, **kwargs):
        if element.keyword == "Modality":
            raise ValueError("cannot")
        return original(element, *args, **kwargs)

    monkeypatch.setattr(type(ds["Modality"]), "to_json_dict", refuse_modality)
    assert metadata_json(ds) == {"00100020": {"vr": "LO", "Value": ["X1"]}}
