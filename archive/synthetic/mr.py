"""Synthetic axial brain MR: one series per contrast (T1, T2, FLAIR), 12-bit, no rescale."""

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

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

DEMO_MR_PATIENT = SyntheticPatient(name="DEMO^MR", patient_id="DEMO-MR-0001", birth_date="19810722", sex="F")

_FIELD_OF_VIEW_MM = 230.0
_SLICE_THICKNESS_MM = 5.0
_SLICE_GAP_MM = 1.0
_NOISE = 18.0
_BITS_STORED = 12


@dataclass(frozen=True, slots=True)
class _Sequence:
    description: str
    scanning_sequence: str
    repetition_time: float
    echo_time: float
    inversion_time: float | None
    window: tuple[int, int]
    # Signal per tissue: fat, bone, csf, grey matter, white matter, vitreous, lesion.
    signal: tuple[float, float, float, float, float, float, float]


_SEQUENCES = (
    _Sequence("T1 AX SE", "SE", 500, 15, None, (1000, 2000), (1800, 90, 250, 900, 1300, 200, 700)),
    _Sequence("T2 AX TSE", "SE", 4000, 100, None, (1100, 2200), (1200, 70, 2000, 1300, 900, 1900, 1700)),
    _Sequence("FLAIR AX", "IR", 9000, 120, 2500, (900, 1800), (1000, 70, 150, 1100, 800, 200, 1800)),
)  # fmt: skip


def mr_study(
    *,
    patient: SyntheticPatient = DEMO_MR_PATIENT,
    series: int = 2,
    slices: int = 24,
    size: int = 256,
    seed: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    uid_prefix: str = DEFAULT_UID_PREFIX,
) -> list[Dataset]:
    """Axial brain MR: `series` series (T1, then T2, then FLAIR) of `slices` slices each."""
    if not 1 <= series <= len(_SEQUENCES):
        raise ValueError(f"series must be between 1 and {len(_SEQUENCES)}, not {series}")
    if slices < 1 or size < 8:
        raise ValueError("an MR series needs at least 1 slice of at least 8 x 8 pixels")
    study = StudyContext(
        kind="mr",
        seed=seed,
        patient=patient,
        modality="MR",
        description="DEMO MR BRAIN",
        body_part="HEAD",
        model_name="Phantom MR 1.5T",
        uid_prefix=uid_prefix,
    )
    rng = make_rng(seed, "mr")
    spacing = _FIELD_OF_VIEW_MM / size
    step = _SLICE_THICKNESS_MM + _SLICE_GAP_MM
    origin = -(size - 1) / 2 * spacing
    first_z = -step * (slices - 1) / 2
    frame_of_reference = study.uid("frame-of-reference")
    # Receive-coil shading: brighter towards the back of the head.
    rows = np.arange(size, dtype=np.float32)[:, None]
    bias = 1.0 + 0.15 * (rows / size - 0.5)
    labels = Canvas(rows=size, columns=size, spacing=spacing, fill=-1)

    datasets = []
    for series_index, sequence in enumerate(_SEQUENCES[:series]):
        lookup = np.array((0.0, *sequence.signal), dtype=np.float32)  # label -1 is air
        for index in range(slices):
            f = index / max(slices - 1, 1)
            _draw_head(labels, f=f)
            signal = lookup[labels.pixels.astype(np.intp) + 1] * bias
            # Magnitude images have Rician noise: |signal + complex Gaussian noise|.
            noise = rng.standard_normal((2, size, size), dtype=np.float32) * _NOISE
            magnitude = np.hypot(signal + noise[0], noise[1])
            stored = np.clip(np.rint(magnitude), 0, 2**_BITS_STORED - 1).astype(np.uint16)

            z = first_z + index * step
            ds = new_instance(
                study=study,
                sop_class_uid=MRImageStorage,
                series_number=series_index + 1,
                series_description=sequence.description,
                instance_number=index + 1,
            )
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
            ds.FrameOfReferenceUID = frame_of_reference
            ds.PositionReferenceIndicator = ""
            ds.PatientPosition = "HFS"
            ds.AcquisitionNumber = 1
            ds.ScanningSequence = sequence.scanning_sequence
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = sequence.repetition_time
            ds.EchoTime = sequence.echo_time
            if sequence.inversion_time is not None:
                ds.InversionTime = sequence.inversion_time
            ds.EchoTrainLength = 1
            ds.MagneticFieldStrength = 1.5
            ds.ImagedNucleus = "1H"
            ds.SliceThickness = _SLICE_THICKNESS_MM
            ds.SpacingBetweenSlices = step
            ds.PixelSpacing = [ds_number(spacing), ds_number(spacing)]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [ds_number(origin), ds_number(origin), ds_number(z)]
            ds.SliceLocation = ds_number(z)
            ds.WindowCenter, ds.WindowWidth = sequence.window
            set_pixels(ds, stored, photometric="MONOCHROME2", bits_stored=_BITS_STORED)
            datasets.append(ds)

    if transfer_syntax != ExplicitVRLittleEndian:
        datasets = [compress(ds, transfer_syntax=transfer_syntax) for ds in datasets]
    return datasets


_FAT, _BONE, _CSF, _GREY, _WHITE, _VITREOUS, _LESION = range(7)


def _draw_head(labels: Canvas, *, f: float) -> None:
    """Paint tissue labels for the slice at fraction `f` from skull base (0) to vertex (1)."""
    labels.pixels.fill(-1)
    scale = float(np.sqrt(np.clip(1 - ((f - 0.35) / 0.72) ** 2, 0.04, 1)))
    ax, ay = 72 * scale, 92 * scale
    for inset, tissue in ((0, _FAT), (5, _BONE), (11, _CSF), (13, _GREY), (19, _WHITE)):
        labels.ellipse(x=0, y=0, ax=ax - inset, ay=ay - inset, value=tissue)
    labels.ellipse(x=0, y=0, ax=1.2, ay=ay - 14, value=_CSF)  # interhemispheric fissure
    nuclei = float(np.sin(np.pi * np.clip((f - 0.28) / 0.3, 0, 1)))
    for side in (-1, 1):
        labels.ellipse(x=side * 12, y=12, ax=8 * nuclei, ay=11 * nuclei, value=_GREY)  # thalamus
        labels.ellipse(x=side * 27, y=-4, ax=5 * nuclei, ay=15 * nuclei, value=_GREY)  # putamen
    ventricle = float(np.sin(np.pi * np.clip((f - 0.3) / 0.4, 0, 1)))
    for side in (-1, 1):
        labels.ellipse(x=side * 11, y=-8, ax=2 + 5 * ventricle, ay=24 * ventricle, value=_CSF)
        # Caudate-like grey matter beside each ventricle.
        labels.ellipse(x=side * 20, y=-22, ax=6 * ventricle, ay=9 * ventricle, value=_GREY)
    orbit = float(np.clip(1 - f / 0.2, 0, 1))
    for side in (-1, 1):
        labels.ellipse(x=side * 30, y=-58, ax=11 * orbit, ay=11 * orbit, value=_VITREOUS)
    lesion = float(np.sqrt(max(0.0, 1 - ((f - 0.6) / 0.08) ** 2)))
    labels.ellipse(x=28, y=12, ax=6 * lesion, ay=5 * lesion, value=_LESION)
