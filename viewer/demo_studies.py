"""Generate the synthetic demo studies and store them in the archive under the demo organisation.

The objects are generated in memory and go straight into the encrypted store through the
ingest service: no DICOM file is written anywhere. Re-running is idempotent, because the
generator is deterministic and identical objects are reported as duplicates.
"""

from __future__ import annotations

import io
import shutil
from collections import Counter
from pathlib import Path

from django.conf import settings


def load_demo_studies(*, small: bool, stdout) -> str:
    """Ingest the demo studies into the demo organisation; return a one-line summary."""
    from accounts.demo import DEMO_ORG_NAME, DEMO_ORG_SLUG
    from accounts.models import Organization
    from archive import synthetic
    from archive.services import IngestBatch, Status
    from audit.models import ActorType
    from audit.services import record

    _remove_old_plaintext_copy(stdout)
    organization, _ = Organization.objects.get_or_create(slug=DEMO_ORG_SLUG, defaults={"name": DEMO_ORG_NAME})
    studies = synthetic.demo_studies(seed=0, small=small)
    counts: Counter[str] = Counter()
    with IngestBatch(organization=organization, source="demo") as batch:
        for datasets in studies.values():
            for ds in datasets:
                counts.update(result.status for _, result in batch.add(io.BytesIO(synthetic.to_bytes(ds))))
        counts.update(result.status for _, result in batch.flush())
    record(action="archive.import", actor="manage.py demo", actor_type=ActorType.SYSTEM, organization=organization,
           object_type="study", details={"stored": counts[Status.STORED], "duplicates": counts[Status.DUPLICATE],
                                         "rejected": counts[Status.REJECTED] + counts[Status.CONFLICT], "demo": True})
    summary = (f"{counts[Status.STORED]} instances stored, {counts[Status.DUPLICATE]} already present, "
               f"in {len(studies)} studies of {organization.name}")
    failed = counts[Status.REJECTED] + counts[Status.CONFLICT]
    return summary + (f"; {failed} refused" if failed else "")


def _remove_old_plaintext_copy(stdout) -> None:
    # Earlier versions wrote the demo as plain DICOM files under var/demo/; nothing should be
    # left on disk unencrypted, so that copy goes.
    old = Path(settings.DATA_DIR) / "demo"
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
        stdout.write(f"Removed the old unencrypted demo files in {old}")
