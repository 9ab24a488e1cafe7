"""Generate the synthetic demo studies (and, once the archive lands, store them)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def load_demo_studies(*, small: bool, stdout) -> str:
    """Write the synthetic demo studies as DICOM files under var/demo/; return a summary."""
    from archive import synthetic

    target = Path(settings.DATA_DIR) / "demo"
    if target.exists() and any(target.rglob("*")):
        return f"already generated in {target}"
    studies = synthetic.demo_studies(seed=0, small=small)
    count = 0
    for name, datasets in studies.items():
        synthetic.write_study(datasets, directory=target / name)
        count += len(datasets)
    return f"{count} instances in {len(studies)} studies written to {target}"
