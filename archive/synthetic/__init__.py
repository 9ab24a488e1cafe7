"""Synthetic DICOM studies for the demo, tests and benchmarks; never real patient data.

Django-free (stdlib, numpy, pydicom and pydicom's encoder plugins only) and deterministic:
the same seed gives the same pixels and the same UIDs, so re-running the demo is idempotent.
"""

from ._base import SyntheticPatient
from .ct import (
    DEMO_CT_PATIENT,
    ROD_HU,
    ROD_LENGTH_MM,
    calibration_rod_endpoints,
    ct_pixel_spacing,
    ct_study,
)
from .demo import demo_studies
from .encoding import (
    COMPRESSED_TRANSFER_SYNTAXES,
    NATIVE_TRANSFER_SYNTAXES,
    EncoderUnavailable,
    compress,
    instance_filename,
    to_bytes,
    write_study,
)
from .mammo import DEMO_MAMMO_PATIENT, mammo_image
from .mr import DEMO_MR_PATIENT, mr_study
from .us import DEMO_US_PATIENT, us_burned_in_region, us_multiframe

__all__ = [
    "COMPRESSED_TRANSFER_SYNTAXES",
    "DEMO_CT_PATIENT",
    "DEMO_MAMMO_PATIENT",
    "DEMO_MR_PATIENT",
    "DEMO_US_PATIENT",
    "NATIVE_TRANSFER_SYNTAXES",
    "ROD_HU",
    "ROD_LENGTH_MM",
    "EncoderUnavailable",
    "SyntheticPatient",
    "calibration_rod_endpoints",
    "compress",
    "ct_pixel_spacing",
    "ct_study",
    "demo_studies",
    "instance_filename",
    "mammo_image",
    "mr_study",
    "to_bytes",
    "us_burned_in_region",
    "us_multiframe",
    "write_study",
]
