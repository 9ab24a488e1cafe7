"""Synthetic colour-Doppler ultrasound cine: RGB multi-frame with a burned-in text band."""

import numpy as np
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage

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

DEMO_US_PATIENT = SyntheticPatient(name="DEMO^US", patient_id="DEMO-US-0001", birth_date="19900105", sex="F")

FRAMES_PER_SECOND = 30
_DEPTH_CM = 12.0
_HALF_ANGLE = 0.6  # radians, about 34 degrees each side of the beam axis
_FRAMES_PER_HEARTBEAT = 20


def us_burned_in_region(*, rows: int, columns: int) -> tuple[int, int, int, int]:
    """The fake burned-in text band as (x0, y0, x1, y1), ends exclusive: frame[y0:y1, x0:x1]."""
    return 0, 0, columns, max(6, rows // 14)


def us_multiframe(
    *,
    patient: SyntheticPatient = DEMO_US_PATIENT,
    frames: int = 60,
    rows: int = 480,
    columns: int = 640,
    seed: int = 0,
    transfer_syntax: str = ExplicitVRLittleEndian,
    uid_prefix: str = DEFAULT_UID_PREFIX,
) -> Dataset:
    """One Ultrasound Multi-frame instance: an RGB sector scan of a pulsating vessel."""
    if frames < 1 or rows < 32 or columns < 32:
        raise ValueError("an ultrasound cine needs at least 1 frame of at least 32 x 32 pixels")
    study = StudyContext(
        kind="us",
        seed=seed,
        patient=patient,
        modality="US",
        description="DEMO US ABDOMEN DOPPLER",
        body_part="ABDOMEN",
        model_name="Phantom US",
        uid_prefix=uid_prefix,
    )
    rng = make_rng(seed, "us")
    pixels = _render_cine(rng, frames=frames, rows=rows, columns=columns)

    ds = new_instance(
        study=study,
        sop_class_uid=UltrasoundMultiFrameImageStorage,
        series_number=1,
        series_description="ABDOMEN COLOUR DOPPLER",
        instance_number=1,
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.PatientOrientation = ""
    # PS3.3 C.7.6.6: the frame increment pointer names the attribute that times frames.
    ds.FrameIncrementPointer = Tag("FrameTime")
    ds.FrameTime = ds_number(1000 / FRAMES_PER_SECOND)
    ds.CineRate = FRAMES_PER_SECOND
    ds.RecommendedDisplayFrameRate = FRAMES_PER_SECOND
    ds.LossyImageCompression = "00"
    # PRIVACY: the band from us_burned_in_region imitates on-screen text; redaction
    # tests mask it, and this flag is what tells a de-identifier to look for it.
    ds.BurnedInAnnotation = "YES"
    ds.SequenceOfUltrasoundRegions = [_tissue_region(rows=rows, columns=columns)]
    set_pixels(ds, pixels, photometric="RGB", bits_stored=8)

    if transfer_syntax != ExplicitVRLittleEndian:
        ds = compress(ds, transfer_syntax=transfer_syntax)
    return ds


def _fan_geometry(rows: int, columns: int) -> tuple[float, float, float]:
    """Apex (column, row) and depth in pixels of the sector below the text band."""
    band = us_burned_in_region(rows=rows, columns=columns)[3]
    apex_row = band + 2
    return (columns - 1) / 2, apex_row, rows - apex_row - 4


def _render_cine(rng: np.random.Generator, *, frames: int, rows: int, columns: int) -> np.ndarray:
    """All frames as a (frames, rows, columns, 3) uint8 array."""
    apex_x, apex_y, depth = _fan_geometry(rows, columns)
    # A child stream for the overlays, so the fake text does not depend on the frame count.
    (overlay_rng,) = rng.spawn(1)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    radius = np.hypot(x - apex_x, y - apex_y)
    angle = np.arctan2(x - apex_x, y - apex_y)
    in_fan = (radius <= depth) & (np.abs(angle) <= _HALF_ANGLE) & (y >= apex_y)
    attenuation = np.exp(-0.9 * radius / depth)

    # Speckle is Rayleigh distributed; keep a fixed pattern that moves with the tissue
    # plus a little fresh noise per frame, as real speckle decorrelates slowly.
    pad = max(4, rows // 40)
    speckle = np.hypot(*rng.standard_normal((2, rows + 2 * pad, columns), dtype=np.float32))
    speckle /= np.float32(1.25)  # mean of a unit Rayleigh
    vessel_y, vessel_r = apex_y + 0.55 * depth, 0.09 * depth
    box = (apex_x - 0.25 * depth, vessel_y - 0.2 * depth, apex_x + 0.25 * depth, vessel_y + 0.2 * depth)
    in_box = (x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])
    box_edge = in_box & ~((x >= box[0] + 1) & (x <= box[2] - 1) & (y >= box[1] + 1) & (y <= box[3] - 1))

    out = np.zeros((frames, rows, columns, 3), dtype=np.uint8)
    for index in range(frames):
        phase = 2 * np.pi * index / _FRAMES_PER_HEARTBEAT
        shift = int(round(pad * np.sin(phase / 4)))  # slow breathing motion
        moved = radius - shift
        echo = 0.55 + 0.25 * np.sin(0.09 * moved + 1.7 * angle) + 0.15 * np.sin(0.031 * moved - 3 * angle)
        texture = 0.85 * speckle[pad + shift : pad + shift + rows] + 0.15 * np.abs(
            rng.standard_normal((rows, columns), dtype=np.float32)
        )
        grey = echo * texture * attenuation * 200

        vx = apex_x + 0.03 * depth * np.sin(phase / 4)
        r = vessel_r * (1 + 0.25 * np.sin(phase))  # the vessel pulses with the heartbeat
        distance = np.hypot((x - vx) / r, (y - vessel_y) / (0.8 * r))
        lumen = distance <= 1
        grey[lumen] *= 0.08
        grey[(distance > 1) & (distance <= 1.3)] *= 1.6  # bright vessel wall
        grey = np.where(in_fan, np.clip(grey, 0, 255), 0).astype(np.uint8)
        frame = out[index]
        frame[...] = grey[..., None]

        # Colour Doppler: a parabolic flow profile whose direction reverses each beat.
        velocity = np.sin(phase) * (1 - distance**2)
        flow = lumen & in_box & (np.abs(velocity) > 0.08)
        towards = flow & (velocity > 0)
        away = flow & (velocity < 0)
        speed = np.abs(velocity)
        frame[towards] = _flow_colour(speed[towards], towards=True)
        frame[away] = _flow_colour(speed[away], towards=False)
        frame[box_edge & in_fan] = 170

    _draw_static_overlays(out, overlay_rng, rows=rows, columns=columns)
    return out


def _flow_colour(speed: np.ndarray, *, towards: bool) -> np.ndarray:
    """Doppler colour map: red for flow towards the probe, blue away, brighter when faster."""
    strong, tint, zero = 120 + 135 * speed, (40 if towards else 60) * speed, np.zeros_like(speed)
    channels = (strong, tint, zero) if towards else (zero, tint, strong)
    return np.stack(channels, axis=-1).astype(np.uint8)


def _draw_static_overlays(out: np.ndarray, rng: np.random.Generator, *, rows: int, columns: int) -> None:
    """Colour bar, depth ticks and the block 'text' band, the same on every frame."""
    apex_x, apex_y, depth = _fan_geometry(rows, columns)
    bar_top, bar_bottom = int(apex_y + 10), int(apex_y + 10 + 0.3 * depth)
    ramp = np.linspace(1, -1, bar_bottom - bar_top, dtype=np.float32)
    bar = np.where(
        (ramp > 0)[:, None], _flow_colour(np.abs(ramp), towards=True), _flow_colour(np.abs(ramp), towards=False)
    )
    out[:, bar_top:bar_bottom, columns - 20 : columns - 12] = bar[:, None, :]

    for centimetre in range(1, int(_DEPTH_CM) + 1):
        row = int(apex_y + depth * centimetre / _DEPTH_CM)
        if row < rows:
            out[:, row, 4:10] = 200

    # Fake burned-in text: white blocks where a scanner would print the patient's
    # name, date and settings.
    x0, y0, x1, y1 = us_burned_in_region(rows=rows, columns=columns)
    text_top, text_bottom = y0 + 2, max(y0 + 3, y1 - 2)
    x = x0 + 4
    while x < x1 - 4:
        width = int(rng.integers(3, max(4, columns // 12)))
        out[:, text_top:text_bottom, x : min(x + width, x1 - 4)] = 230
        x += width + int(rng.integers(3, max(4, columns // 30)))


def _tissue_region(*, rows: int, columns: int) -> Dataset:
    """US Region Calibration (PS3.3 C.8.5.5) so a viewer can measure in cm."""
    apex_x, apex_y, depth = _fan_geometry(rows, columns)
    cm_per_pixel = _DEPTH_CM / depth
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = int(apex_y)
    region.RegionLocationMaxX1 = columns - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = cm_per_pixel
    region.PhysicalDeltaY = cm_per_pixel
    region.ReferencePixelX0 = int(round(apex_x))
    region.ReferencePixelY0 = int(apex_y)
    return region
