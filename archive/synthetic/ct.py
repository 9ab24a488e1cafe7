"""Synthetic axial CT of the chest and abdomen, with a 100 mm calibration rod in every slice."""

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from ._base import (
    DEFAULT_UID_PREFIX,
    Canvas,
    StudyContext,
    SyntheticPatient,
    ds_number,
    make_rng,
    new_instance,
    set_pixels,
)
from .encoding import compress

ROD_LENGTH_MM = 100.0
ROD_HU = 3000
RESCALE_INTERCEPT = -1024
BITS_STORED = 12  # scanner-style: stored 0..4095 is -1024..3071 HU

DEMO_CT_PATIENT = SyntheticPatient(name="DEMO^CT", patient_id="DEMO-CT-0001", birth_date="19580314", sex="M")

_FIELD_OF_VIEW_MM = 400.0  # 512 px -> 0.78125 mm, so the 100 mm rod is exactly 128 px
_COVERAGE_MM = 300.0  # inferior (abdomen) to superior (lung apices)
_ROD_Y_MM = 165.0  # posterior of the table, in air
_AIR_HU = -1000.0
_NOISE_HU = 12.0


def ct_pixel_spacing(size: int) -> float:
    """In-plane pixel spacing in mm for a `size` x `size` slice (400 mm field of view)."""
    return _FIELD_OF_VIEW_MM / size


def calibration_rod_endpoints(*, size: int, pixel_spacing: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pixel (column, row) centres of the rod's two ends; a ruler between them reads 100 mm."""
    # The rod covers columns x0..x1 inclusive on its centre row. Measured centre to
    # centre it is round(100 / spacing) * spacing mm: exactly 100 mm when the spacing
    # divides 100 (any size divisible by 4 at the default field of view).
    length = round(ROD_LENGTH_MM / pixel_spacing)
    row = round((size - 1) / 2 + _ROD_Y_MM / pixel_spacing)
    x0 = (size - length) // 2
    if x0 < 1 or row >= size - 1:
        raise ValueError(
            f"a {size} px slice at {pixel_spacing} mm/px is too small for the {ROD_LENGTH_MM:g} mm calibration rod"
        )
    return (x0, row), (x0 + length, row)


def ct_study(
    *,
    patient: SyntheticPatient = DEMO_CT_PATIENT,
    slices: int = 200,
    size: int = 512,
    seed: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    uid_prefix: str = DEFAULT_UID_PREFIX,
) -> list[Dataset]:
    """One series of axial CT slices, inferior to superior, 12-bit stored with HU rescale."""
    if slices < 1 or size < 16:
        raise ValueError("a CT needs at least 1 slice of at least 16 x 16 pixels")
    study = StudyContext(
        kind="ct",
        seed=seed,
        patient=patient,
        modality="CT",
        description="DEMO CT CHEST ABDOMEN",
        body_part="CHEST",
        model_name="Phantom CT",
        uid_prefix=uid_prefix,
    )
    rng = make_rng(seed, "ct")
    spacing = ct_pixel_spacing(size)
    thickness = float(ds_number(_COVERAGE_MM / slices))
    features = _Features.random(rng)
    canvas = Canvas(rows=size, columns=size, spacing=spacing, fill=_AIR_HU)
    rod = calibration_rod_endpoints(size=size, pixel_spacing=spacing)
    frame_of_reference = study.uid("frame-of-reference")
    origin = -(size - 1) / 2 * spacing

    datasets = []
    for index in range(slices):
        z = index * thickness
        _draw_anatomy(canvas, z=z, features=features)
        _draw_rod(canvas, rod)
        hu = canvas.pixels + rng.standard_normal((size, size), dtype=np.float32) * _NOISE_HU
        stored = np.clip(np.rint(hu - RESCALE_INTERCEPT), 0, 2**BITS_STORED - 1)

        ds = new_instance(
            study=study,
            sop_class_uid=CTImageStorage,
            series_number=1,
            series_description=f"AXIAL {thickness:g} MM STANDARD",
            instance_number=index + 1,
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.AcquisitionNumber = 1
        ds.KVP = 120
        ds.XRayTubeCurrent = 200
        ds.ConvolutionKernel = "STANDARD"
        ds.SliceThickness = ds_number(thickness)
        ds.PixelSpacing = [ds_number(spacing), ds_number(spacing)]
        # PS3.3 C.7.6.2: rows run along patient +x (left), columns along +y (posterior).
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [ds_number(origin), ds_number(origin), ds_number(z)]
        ds.SliceLocation = ds_number(z)
        ds.RescaleIntercept = RESCALE_INTERCEPT
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.WindowCenter = [40, -600]
        ds.WindowWidth = [400, 1500]
        ds.WindowCenterWidthExplanation = ["SOFT TISSUE", "LUNG"]
        set_pixels(ds, stored.astype(np.uint16), photometric="MONOCHROME2", bits_stored=BITS_STORED)
        datasets.append(ds)

    if transfer_syntax != ExplicitVRLittleEndian:
        datasets = [compress(ds, transfer_syntax=transfer_syntax) for ds in datasets]
    return datasets


@dataclass(frozen=True, slots=True)
class _Features:
    """Per-study random structures: lung vessels (tubes) and bowel gas (spheres), in mm."""

    vessels: np.ndarray  # side (+1 left / -1 right), u, v, du, dv, radius
    gas: np.ndarray  # x, y, z, radius

    @classmethod
    def random(cls, rng: np.random.Generator) -> "_Features":
        n = 40
        vessels = np.column_stack(
            [
                rng.choice([-1.0, 1.0], n),
                rng.uniform(-0.7, 0.7, n),
                rng.uniform(-0.7, 0.7, n),
                rng.uniform(-0.4, 0.4, n),
                rng.uniform(-0.4, 0.4, n),
                rng.uniform(1.5, 4.0, n),
            ]
        )
        m = 14
        gas = np.column_stack(
            [
                rng.uniform(-100, 100, m),
                rng.uniform(-70, 20, m),
                rng.uniform(0, 0.4 * _COVERAGE_MM, m),
                rng.uniform(6, 16, m),
            ]
        )
        return cls(vessels=vessels, gas=gas)


def _bump(f: float, start: float, stop: float) -> float:
    """0 outside [start, stop], rising to 1 in the middle like half a sine."""
    if not start < f < stop:
        return 0.0
    return float(np.sin(np.pi * (f - start) / (stop - start)))


def _draw_anatomy(canvas: Canvas, *, z: float, features: _Features) -> None:
    """Paint one axial slice (in HU) at height `z` mm; later shapes overwrite earlier ones."""
    f = z / _COVERAGE_MM
    canvas.pixels.fill(_AIR_HU)
    canvas.rectangle(x0=-200, y0=135, x1=200, y1=143, value=-250)  # carbon-fibre table

    bx = 150 + 15 * f + 4 * np.sin(6 * np.pi * f)
    by = 100 + 10 * f
    canvas.ellipse(x=0, y=10, ax=bx, ay=by, value=-90)  # subcutaneous fat
    canvas.ellipse(x=0, y=10, ax=bx - 12, ay=by - 12, value=45)  # muscle and viscera
    spine_y = 10 + by - 62

    liver = _bump(f, 0.02, 0.55)
    canvas.ellipse(x=-60, y=-5, ax=85 * liver, ay=70 * liver, value=60)
    canvas.ellipse(x=80, y=20, ax=35 * liver, ay=45 * liver, value=50)  # spleen
    kidney = _bump(f, 0.08, 0.36)
    for side in (-1, 1):
        canvas.ellipse(x=side * 60, y=spine_y - 8, ax=25 * kidney, ay=35 * kidney, value=150)
        canvas.ellipse(x=side * 60, y=spine_y - 8, ax=11 * kidney, ay=18 * kidney, value=25)
    for x, y, zc, radius in features.gas:
        _sphere_section(canvas, x=x, y=y, dz=z - zc, radius=radius, value=-950)

    lung = float(np.clip((f - 0.42) / 0.12, 0, 1)) * (1 - 0.5 * float(np.clip((f - 0.9) / 0.1, 0, 1)))
    lungs = ((-1, -70, 62 * lung, 84 * lung), (1, 70, 56 * lung, 80 * lung))
    for _side, x, ax, ay in lungs:
        canvas.ellipse(x=x, y=-5, ax=ax, ay=ay, value=-850)
    if lung > 0:
        for side, u, v, du, dv, radius in features.vessels:
            _side, x, ax, ay = lungs[0] if side < 0 else lungs[1]
            pu, pv = u + du * f, v + dv * f
            if pu * pu + pv * pv < 0.8:
                canvas.ellipse(x=x + pu * ax, y=-5 + pv * ay, ax=radius, ay=radius, value=30)
        _sphere_section(canvas, x=-75, y=-20, dz=z - 0.75 * _COVERAGE_MM, radius=8, value=35)

    heart = _bump(f, 0.48, 0.86)
    canvas.ellipse(x=20, y=-20, ax=65 * heart, ay=55 * heart, value=45)
    canvas.ellipse(x=25, y=-18, ax=38 * heart, ay=30 * heart, value=140)  # contrast in chambers
    if 0.7 < f < 0.86:
        canvas.ellipse(x=-12, y=-35, ax=14, ay=14, value=170)  # ascending aorta
    canvas.ellipse(x=22, y=spine_y - 30, ax=12, ay=12, value=170)  # descending aorta

    if f > 0.4:  # ribs, drifting round the chest as one scrolls because they slope
        angles = np.deg2rad(np.r_[np.linspace(25, 150, 6), np.linspace(210, 335, 6)] + 0.6 * z)
        for angle in angles:
            x, y = (bx - 8) * np.cos(angle), 10 + (by - 8) * np.sin(angle)
            if y < spine_y - 10:
                canvas.ellipse(x=x, y=y, ax=6, ay=4, value=750)

    disc = (z + 12.0) % 30.0 < 5.0  # an intervertebral disc every 30 mm
    canvas.ellipse(x=0, y=spine_y, ax=19, ay=17, value=90 if disc else 900)
    if not disc:
        canvas.ellipse(x=0, y=spine_y, ax=16, ay=14, value=250)  # cancellous bone
    canvas.ellipse(x=0, y=spine_y + 32, ax=12, ay=20, value=700)  # posterior elements
    canvas.ellipse(x=0, y=spine_y + 25, ax=7, ay=7, value=15)  # spinal canal


def _sphere_section(canvas: Canvas, *, x: float, y: float, dz: float, radius: float, value: float) -> None:
    if abs(dz) < radius:
        r = float(np.sqrt(radius * radius - dz * dz))
        canvas.ellipse(x=x, y=y, ax=r, ay=r, value=value)


def _draw_rod(canvas: Canvas, rod: tuple[tuple[int, int], tuple[int, int]]) -> None:
    (x0, row), (x1, _) = rod
    half = int(1.0 / canvas.spacing)  # about 2 mm thick at 512 px, one row when coarse
    canvas.pixels[row - half : row + half + 1, x0 : x1 + 1] = ROD_HU
