"""WADO-RS through a real DICOMweb client against a live server: originals byte for byte, frames
cut from stored pixel data, transcoding on request, metadata with fetchable BulkDataURIs."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest
import requests
from asgiref.sync import async_to_sync
from dicomweb_client import DICOMwebClient
from django.test import Client
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

from accounts.tokens import issue_api_token
from archive import synthetic
from archive.dicomweb import multipart, wado
from archive.models import Instance
from archive.services import ingest
from tests.factories import sign_in


def live(test):
    """A test against the live server, which must see committed rows."""
    return pytest.mark.live(pytest.mark.django_db(transaction=True)(test))


# pydicom's bundled files that ship in the wheel (get_testdata_file would try to download any
# other), by what each one exercises. Several share a SOP Instance UID, so each is given its own.
SAMPLES = {
    "CT_small.dcm": "CT, 16-bit signed, Explicit VR Little Endian",
    "MR_small.dcm": "MR, 16-bit, Explicit VR Little Endian",
    "MR_small_implicit.dcm": "Implicit VR Little Endian",
    "MR_small_bigendian.dcm": "Explicit VR Big Endian, 16-bit OW",
    "SC_rgb_small_odd_big_endian.dcm": "Explicit VR Big Endian, 8-bit RGB in OW, odd size",
    "image_dfl.dcm": "Deflated Explicit VR Little Endian",
    "SC_rgb_small_odd.dcm": "RGB, odd rows and columns",
    "rtdose.dcm": "Implicit VR, 32-bit, 15 native frames",
    "MR_small_RLE.dcm": "RLE Lossless",
    "SC_rgb_rle_2frame.dcm": "RLE Lossless, RGB, 2 frames",
    "rtdose_rle.dcm": "RLE Lossless, 32-bit, 15 frames",
    "MR_small_jp2klossless.dcm": "JPEG 2000 Lossless",
    "JPEG2000.dcm": "JPEG 2000",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS Lossless",
    "JPEGLSNearLossless_16.dcm": "JPEG-LS Near-Lossless, 16-bit",
    "SC_rgb_jpeg_gdcm.dcm": "JPEG Lossless SV1, RGB",
    "SC_rgb_dcmtk_+eb+cr.dcm": "JPEG Baseline, YBR_FULL_422",
    "examples_ybr_color.dcm": "JPEG Baseline, 30 frames",
    "JPEG-lossy.dcm": "JPEG Extended 12-bit: no decoder here, so served as stored only",
    "waveform_ecg.dcm": "no pixel data; waveform bulk data inside a sequence",
    "rtplan.dcm": "no pixel data",
}
UNDECODABLE = {"JPEG-lossy.dcm"}
EXPLICIT_LE = str(ExplicitVRLittleEndian)


def _sample_bytes(name: str) -> bytes:
    """A bundled file re-written with UIDs of its own, in its own transfer syntax."""
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[name, "sop"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[name, "series"])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[name, "study"])
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _synthetic_study() -> list[bytes]:
    """A two-series MR study plus an RLE multi-frame ultrasound, all in one study."""
    mr = synthetic.mr_study(series=2, slices=2, size=32)
    cine = synthetic.compress(synthetic.us_multiframe(frames=3, rows=48, columns=64), transfer_syntax=RLELossless)
    cine.StudyInstanceUID = mr[0].StudyInstanceUID
    return [synthetic.to_bytes(ds) for ds in [*mr, cine]]


@dataclass(frozen=True)
class Sample:
    name: str
    blob: bytes
    header: pydicom.Dataset

    @property
    def uids(self) -> tuple[str, str, str]:
        return self.header.StudyInstanceUID, self.header.SeriesInstanceUID, self.header.SOPInstanceUID

    @property
    def syntax(self):
        return self.header.file_meta.TransferSyntaxUID

    @property
    def frames(self) -> int:
        return int(self.header.get("NumberOfFrames") or 1)

    @property
    def is_image(self) -> bool:
        return "Rows" in self.header

    @property
    def stored_form(self) -> bytes:
        """What the archive keeps: the same bytes with the 128-byte preamble zeroed."""
        return bytes(128) + self.blob[128:]

    def dataset(self) -> pydicom.Dataset:
        return pydicom.dcmread(io.BytesIO(self.blob))

    def decoded(self) -> np.ndarray:
        array = self.dataset().pixel_array
        return array if self.frames > 1 else array[np.newaxis]


@pytest.fixture
def stored(org) -> dict[str, Sample]:
    """Ingest the samples and the synthetic study; return them by name."""
    blobs = {name: _sample_bytes(name) for name in SAMPLES}
    blobs.update({f"synthetic-{n}": blob for n, blob in enumerate(_synthetic_study())})
    samples = {}
    for name, blob in blobs.items():
        result = ingest(stream=io.BytesIO(blob), organization=org, source="test")
        assert result.ok, (name, result.reason)
        samples[name] = Sample(name, blob, pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True))
    return samples


@pytest.fixture
def token(owner) -> str:
    return issue_api_token(user=owner)[1]


@pytest.fixture
def client(live_server_url, token) -> DICOMwebClient:
    client = DICOMwebClient(url=live_server_url + "/dicomweb", headers={"Authorization": f"Bearer {token}"})
    # dicomweb-client sends `Host: 127.0.0.1` without the port on non-streamed requests; RFC 9110
    # 7.2 wants the port, and the server builds absolute BulkDataURIs from it.
    client.host = live_server_url.removeprefix("http://")
    return client


def multipart_parts(response: requests.Response) -> list[tuple[str, bytes]]:
    """(part Content-Type, body) of a multipart/related response, checking the framing strictly."""
    boundary = re.search(r"boundary=([^;]+)", response.headers["Content-Type"]).group(1).strip('"').encode()
    body = response.content
    opening, closing = b"--" + boundary + b"\r\n", b"\r\n--" + boundary + b"--\r\n"
    assert body.startswith(opening) and body.endswith(closing)
    parts = []
    for part in body[len(opening) : -len(closing)].split(b"\r\n--" + boundary + b"\r\n"):
        head, _, content = part.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append((headers["Content-Type"], content))
    return parts


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _synthetic(stored) -> list[Sample]:
    return [s for name, s in stored.items() if name.startswith("synthetic-")]


@live
def test_client_retrieves_every_instance_byte_for_byte(client, stored, live_server_url, token):
    for sample in stored.values():
        ds = client.retrieve_instance(*sample.uids)
        assert ds.SOPInstanceUID == sample.uids[2]
        if sample.syntax == DeflatedExplicitVRLittleEndian:
            # pydicom keeps the inflated dataset as its buffer; compare the bytes on the wire.
            study, series, sop = sample.uids
            response = requests.get(
                f"{live_server_url}/dicomweb/studies/{study}/series/{series}/instances/{sop}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            [(content_type, sent)] = multipart_parts(response)
            assert content_type == f"application/dicom; transfer-syntax={sample.syntax}"
        else:
            sent = ds.buffer.getvalue()
        assert _sha(sent) == _sha(sample.stored_form), sample.name


@live
def test_study_and_series_retrieval_return_all_their_instances(client, stored):
    samples = _synthetic(stored)
    study = samples[0].uids[0]
    got = {ds.SOPInstanceUID: _sha(ds.buffer.getvalue()) for ds in client.retrieve_study(study)}
    assert got == {s.uids[2]: _sha(s.stored_form) for s in samples}

    series = sorted({s.uids[1] for s in samples})
    assert len(series) == 3
    in_series = client.retrieve_series(study, series[0])
    assert sorted(ds.SOPInstanceUID for ds in in_series) == sorted(s.uids[2] for s in samples if s.uids[1] == series[0])


def _as_pixels(frame: bytes, like: np.ndarray) -> np.ndarray:
    return np.frombuffer(frame, dtype=like.dtype.newbyteorder("<")).reshape(like.shape)


@live
def test_frames_are_the_stored_pixels_native_or_compressed(client, stored):
    for sample in (s for s in stored.values() if s.is_image):
        numbers = sorted({1, sample.frames, (sample.frames + 1) // 2})
        frames = client.retrieve_instance_frames(*sample.uids, numbers)
        assert len(frames) == len(numbers), sample.name
        if sample.syntax.is_compressed:
            # `*/*`, the client's default: the compressed bytes exactly as stored.
            expected = list(generate_frames(sample.dataset().PixelData, number_of_frames=sample.frames))
            assert frames == [expected[n - 1] for n in numbers], sample.name
        else:
            pixels = sample.decoded()
            for number, frame in zip(numbers, frames, strict=True):
                assert np.array_equal(_as_pixels(frame, pixels[number - 1]), pixels[number - 1]), (sample.name, number)


@live
def test_compressed_frames_are_decoded_when_octet_stream_is_asked_for(client, stored):
    for sample in stored.values():
        if not sample.is_image or not sample.syntax.is_compressed or sample.name in UNDECODABLE:
            continue
        frames = client.retrieve_instance_frames(
            *sample.uids, [sample.frames], media_types=("application/octet-stream",)
        )
        expected = sample.decoded()[sample.frames - 1]
        assert np.array_equal(_as_pixels(frames[0], expected), expected), sample.name


@live
def test_frames_in_a_named_image_media_type(client, stored):
    sample = stored["MR_small_jpeg_ls_lossless.dcm"]
    frames = client.retrieve_instance_frames(*sample.uids, [1], media_types=(("image/jls", str(sample.syntax)),))
    assert frames == [next(generate_frames(sample.dataset().PixelData, number_of_frames=1))]


@live
def test_transcodes_to_explicit_vr_little_endian_on_request(client, stored):
    for sample in stored.values():
        if not sample.is_image or sample.syntax == ExplicitVRLittleEndian or sample.name in UNDECODABLE:
            continue
        got = client.retrieve_instance(*sample.uids, media_types=(("application/dicom", EXPLICIT_LE),))
        assert got.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian, sample.name
        assert got.SOPInstanceUID == sample.uids[2]
        assert np.array_equal(got.pixel_array, sample.dataset().pixel_array), sample.name


@live
def test_an_instance_that_cannot_be_decoded_is_not_transcoded_406(client, stored):
    with pytest.raises(requests.HTTPError) as caught:
        client.retrieve_instance(*stored["JPEG-lossy.dcm"].uids, media_types=(("application/dicom", EXPLICIT_LE),))
    assert caught.value.response.status_code == 406


@live
def test_metadata_bulk_data_uris_are_absolute_and_fetchable(client, stored, live_server_url):
    ct = stored["CT_small.dcm"]
    study, series, sop = ct.uids
    metadata = client.retrieve_instance_metadata(study, series, sop)
    uri = metadata["7FE00010"]["BulkDataURI"]
    assert uri == f"{live_server_url}/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulkdata/7FE00010"
    [pixels] = client.retrieve_bulkdata(uri)
    assert pixels == ct.dataset().PixelData
    assert metadata["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}

    # A value inside a sequence item gets a path of its own.
    ecg = stored["waveform_ecg.dcm"]
    waveform = client.retrieve_instance_metadata(*ecg.uids)["54000100"]["Value"][0]["54001010"]
    assert waveform["BulkDataURI"].endswith("/bulkdata/54000100.0.54001010")
    [data] = client.retrieve_bulkdata(waveform["BulkDataURI"])
    assert data == ecg.dataset().WaveformSequence[0].WaveformData

    # Study metadata: one dataset per instance, each with absolute URIs.
    samples = _synthetic(stored)
    datasets = client.retrieve_study_metadata(samples[0].uids[0])
    assert len(datasets) == len(samples)
    assert all(d["7FE00010"]["BulkDataURI"].startswith(live_server_url + "/dicomweb/") for d in datasets)
    assert {d["00080018"]["Value"][0] for d in datasets} == {s.uids[2] for s in samples}


@live
def test_big_endian_pixel_bulk_data_is_sent_little_endian(client, stored):
    sample = stored["MR_small_bigendian.dcm"]
    metadata = client.retrieve_instance_metadata(*sample.uids)
    [data] = client.retrieve_bulkdata(metadata["7FE00010"]["BulkDataURI"])
    assert data == sample.dataset().pixel_array.astype("<i2").tobytes()


def _tracking_opener(monkeypatch) -> list:
    opened = []
    real = wado.open_instance_blob

    def open_and_track(instance):
        reader = real(instance)
        opened.append(reader)
        return reader

    monkeypatch.setattr(wado, "open_instance_blob", open_and_track)
    return opened


def test_every_blob_reader_is_closed_after_the_body(owner, org, monkeypatch):
    datasets = synthetic.ct_study(slices=3, size=16, seed=4)
    for ds in datasets:
        assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test").ok
    opened = _tracking_opener(monkeypatch)
    browser = Client()  # in-process: `client` here is the DICOMweb client
    sign_in(browser, owner)
    response = browser.get(f"/dicomweb/studies/{datasets[0].StudyInstanceUID}")
    assert response["Cache-Control"] == "no-store"

    async def consume():
        return b"".join([chunk async for chunk in response.streaming_content])

    body = async_to_sync(consume)()
    assert body.count(b"Content-Type: application/dicom; transfer-syntax=") == 3
    assert len(opened) == 3 and all(reader.closed for reader in opened)


def test_an_abandoned_body_closes_its_open_reader(org, monkeypatch):
    ds = synthetic.ct_study(slices=1, size=16, seed=9)[0]
    result = ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="test")
    opened = _tracking_opener(monkeypatch)
    instance = Instance.objects.get(pk=result.instance_id)

    async def start_then_disconnect():
        body = multipart.stream(multipart.new_boundary(), wado._object_parts([(instance, False)], {}))
        await anext(body)  # the part's headers
        await anext(body)  # its first bytes: the reader is open now
        await body.aclose()  # what the server does when the client goes away

    async_to_sync(start_then_disconnect)()
    assert len(opened) == 1 and opened[0].closed
