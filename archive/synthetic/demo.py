"""The demo set that `manage.py demo` loads: one study per modality, each with its own patient."""

from pydicom.dataset import Dataset

from ._base import DEFAULT_UID_PREFIX
from .ct import ct_study
from .mammo import mammo_image
from .mr import mr_study
from .us import us_multiframe


def demo_studies(
    *, seed: int = 0, small: bool = False, uid_prefix: str = DEFAULT_UID_PREFIX
) -> dict[str, list[Dataset]]:
    """CT, MR, US and mammography demo studies keyed by kind; `small` gives tiny ones for tests."""
    common = {"seed": seed, "uid_prefix": uid_prefix}
    if small:
        return {
            "ct": ct_study(slices=4, size=64, **common),
            "mr": mr_study(series=2, slices=3, size=32, **common),
            "us": [us_multiframe(frames=3, rows=48, columns=64, **common)],
            "mammo": [mammo_image(rows=100, columns=80, **common)],
        }
    return {
        "ct": ct_study(slices=200, size=512, **common),
        "mr": mr_study(series=2, slices=24, size=256, **common),
        "us": [us_multiframe(frames=60, rows=480, columns=640, **common)],
        "mammo": [mammo_image(rows=5000, columns=4000, **common)],
    }
