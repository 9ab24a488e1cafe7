"""Generate the synthetic demo studies and store them in the archive under the demo organisation.

The objects are generated in memory and go straight into the encrypted store through the
ingest service: no DICOM file is written anywhere. Re-running is idempotent, because the
generator is deterministic and identical objects are reported as duplicates.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path


def load_demo_studies(*, small: bool, stdout) -> str:
    """Ingest the demo studies into the demo organisation; return a one-line summary."""
    from accounts.demo import DEMO_ORG_NAME, DEMO_ORG_SLUG
    from accounts.models import Organization
    from archive import synthetic
    from archive.services import IngestBatch, Status
    from audit.models import ActorType
    from audit.services import record

    organization, _ = Organization.objects.get_or_create(slug=DEMO_ORG_SLUG, defaults={"name": DEMO_ORG_NAME})
    studies = synthetic.demo_studies(seed=0, small=small)
    counts: Counter[str] = Counter()
    with IngestBatch(organization=organization, source="demo") as batch:
        for datasets in studies.values():
            for ds in datasets:
                counts.update(result.status for _, result in batch.add(io.BytesIO(synthetic.to_bytes(ds))))
        for path in _bundled_samples():
            with open(path, "rb") as handle:
                counts.update(result.status for _, result in batch.add(handle))
        counts.update(result.status for _, result in batch.flush())
    record(action="archive.import", actor="manage.py demo", actor_type=ActorType.SYSTEM, organization=organization,
           object_type="study", details={"stored": counts[Status.STORED], "duplicates": counts[Status.DUPLICATE],
                                         "rejected": counts[Status.REJECTED] + counts[Status.CONFLICT],
                                         "not_stored": counts[Status.FAILED], "demo": True})
    summary = (f"{counts[Status.STORED]} instances stored, {counts[Status.DUPLICATE]} already present, "
               f"({len(studies)} synthetic studies and {len(_bundled_samples())} pydicom samples) in {organization.name}")
    failed = counts[Status.REJECTED] + counts[Status.CONFLICT] + counts[Status.FAILED]
    return summary + (f"; {failed} refused" if failed else "")


# A few of pydicom's bundled (anonymised sample) files, for transfer syntaxes and vendors
# the generator does not produce. Only files shipped inside the package: nothing is downloaded.
BUNDLED_SAMPLES = ("CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_rle.dcm")


def _bundled_samples() -> list[Path]:
    import pydicom.data

    root = Path(pydicom.data.__file__).parent / "test_files"
    return [root / name for name in BUNDLED_SAMPLES if (root / name).is_file()]
