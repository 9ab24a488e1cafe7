"""Synthetic digital mammogram (For Presentation): one large 14-bit cranio-caudal view."""

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian

from ._base import (
    DEFAULT_UID_PREFIX,
    StudyContext,
    SyntheticPatient,
    ds_number,
    make_rng,
    new_instance,
    set_pixels,
)
from .encoding import compress

DEMO_MAMMO_PATIENT = SyntheticPatient(name="DEMO^MAMMO", patient_id="DEMO-MG-0001", birth_date="19690930", sex="F")

BITS_STORED = 14
_DETECTOR_WIDTH_MM = 260.0  # 4000 columns -> 0.065 mm, a typical direct-conversion detector
_MAX = 2**BITS_STORED - 1


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def mammo_image(
    *,
    patient: SyntheticPatient = DEMO_MAMMO_PATIENT,
    rows: int = 5000,
    columns: int = 4000,
    seed: int = 0,
    photometric_interpretation: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    uid_prefix: str = DEFAULT_UID_PREFIX,
) -> Dataset:
    """A left cranio-caudal mammogram; MONOCHROME1 stores inverted values that look the same."""
    if photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError("photometric_interpretation must be MONOCHROME1 or MONOCHROME2")
    if rows < 16 or columns < 16:
        raise ValueError("a mammogram needs at least 16 x 16 pixels")
    study = StudyContext(
        kind="mammo",
        seed=seed,
        patient=patient,
        modality="MG",
        description="DEMO MAMMOGRAPHY SCREENING",
        body_part="BREAST",
        model_name="Phantom Mammo",
        uid_prefix=uid_prefix,
    )
    rng = make_rng(seed, "mammo")
    display = _render_breast(rng, rows=rows, columns=columns)
    # PS3.3 C.7.6.3.1.2: in MONOCHROME1 the minimum value is white, so invert the
    # stored values to keep what the viewer shows unchanged.
    stored = _MAX - display if photometric_interpretation == "MONOCHROME1" else display

    ds = new_instance(
        study=study,
        sop_class_uid=DigitalMammographyXRayImageStorageForPresentation,
        series_number=1,
        series_description="L CC",
        instance_number=1,
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageLaterality = "L"
    ds.ViewPosition = "CC"
    ds.ViewCodeSequence = [_code("399162004", "SCT", "cranio-caudal")]
    ds.AnatomicRegionSequence = [_code("76752008", "SCT", "Breast")]
    # Left CC: the chest wall is on the image's left and lateral is up (PS3.3 C.8.11.7).
    ds.PatientOrientation = ["A", "R"]
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.KVP = 29
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    spacing = ds_number(_DETECTOR_WIDTH_MM / columns)
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if photometric_interpretation == "MONOCHROME1" else "IDENTITY"
    ds.WindowCenter = _MAX - 8000 if photometric_interpretation == "MONOCHROME1" else 8000
    ds.WindowWidth = 10000
    set_pixels(ds, stored, photometric=photometric_interpretation, bits_stored=BITS_STORED)

    if transfer_syntax != ExplicitVRLittleEndian:
        ds = compress(ds, transfer_syntax=transfer_syntax)
    return ds


def _smooth_noise(rng: np.random.Generator, *, rows: int, columns: int, cell: float) -> np.ndarray:
    """Gaussian-smoothed noise with features about `cell` pixels across, roughly unit variance."""

    # A separable blur of a coarse random grid is two small matrix products, which is
    # far cheaper than convolving the full 20-megapixel image.
    def weights(n: int) -> np.ndarray:
        nodes = int(np.ceil(n / cell)) + 3
        position = (np.arange(n, dtype=np.float32) + 0.5) / cell + 1
        w = np.exp(-0.5 * ((position[:, None] - np.arange(nodes, dtype=np.float32)) / 0.8) ** 2)
        return w / w.sum(axis=1, keepdims=True)

    wy, wx = weights(rows), weights(columns)
    grid = rng.standard_normal((wy.shape[1], wx.shape[1]), dtype=np.float32)
    return (wy @ grid) @ wx.T * np.float32(1.8)


def _render_breast(rng: np.random.Generator, *, rows: int, columns: int) -> np.ndarray:
    """Display values (bright tissue on dark background) as a uint16 array."""
    y = ((np.arange(rows, dtype=np.float32) - rows / 2) / (0.44 * rows))[:, None]
    x = (np.arange(columns, dtype=np.float32) / (0.8 * columns))[None, :]
    r2 = x * x + y * y  # < 1 inside the breast outline; the chest wall is column 0
    outside = r2 >= 1
    skin = (r2 > 0.96) & ~outside

    # In-place arithmetic throughout: each temporary of a full-size image is 80 MB.
    gland = _smooth_noise(rng, rows=rows, columns=columns, cell=columns / 12)
    gland += 0.5 * _smooth_noise(rng, rows=rows, columns=columns, cell=columns / 45)
    gland += 0.25 * _smooth_noise(rng, rows=rows, columns=columns, cell=columns / 140)
    # Fibroglandular tissue sits behind the nipple and thins out towards the skin:
    # a logistic of texture minus distance, 1 / (1 + exp(-3 (texture + 1.2 - 2.2 r2))).
    gland -= 2.2 * r2
    gland += 1.2
    gland *= -3
    np.exp(gland, out=gland)
    gland += 1
    np.reciprocal(gland, out=gland)
    thickness = np.subtract(1, r2, out=r2)
    np.clip(thickness, 0, 1, out=thickness)
    np.sqrt(thickness, out=thickness)
    gland *= thickness
    gland *= 5000
    np.sqrt(thickness, out=thickness)
    image = gland
    image += 4500
    image += 1500 * thickness
    image[skin] += 1500
    image[outside] = 300
    image += rng.standard_normal((rows, columns), dtype=np.float32) * np.float32(60)

    # A cluster of microcalcifications: tiny, very bright dots.
    cluster_y, cluster_x = rows * 0.45, columns * 0.35
    size = max(1, columns // 1000)
    for dy, dx in rng.normal(0, columns / 150, (12, 2)):
        r, c = int(cluster_y + dy), int(cluster_x + dx)
        image[r : r + size + 1, c : c + size + 1] = 15000
    return np.clip(np.rint(image), 0, _MAX).astype(np.uint16)
