"""Build derived fast-decode copies of JPEG 2000 instances in the background.

Transcoding runs in a render worker (untrusted codestreams are decoded only there, under its
limits); the web or Celery process encrypts the result under the organisation's active data key
and records it. A failure is recorded too (with the reason) so a bad instance is not retried
forever; the original is never touched.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from archive.models import DerivedCopy, Instance
from archive.storage import active_data_key, get_store
from audit.services import record
from viewer.pool import TranscodeJob
from viewer.render.errors import RenderError
from viewer.render.transcode import FAST_SYNTAX, SLOW_SYNTAXES
from viewer.rendering import get_pool, original_source_for

logger = logging.getLogger("lightbox.fast_copies")


def pending(limit: int | None = None):
    """Instances in slow syntaxes with neither a copy nor a recorded failure, oldest first."""
    queryset = (
        Instance.objects.filter(transfer_syntax_uid__in=[str(uid) for uid in SLOW_SYNTAXES], derived_copy__isnull=True)
        .select_related("organization")
        .order_by("pk")
    )
    return queryset[:limit] if limit else queryset


def _store_copy(instance: Instance, data: bytes) -> DerivedCopy | None:
    data_key, dek = active_data_key(instance.organization)
    info = get_store().write(data, dek_id=data_key.key_id, dek=dek)
    try:
        with transaction.atomic():
            return DerivedCopy.objects.create(
                instance=instance,
                organization_id=instance.organization_id,
                blob_id=info.blob_id,
                data_key=data_key,
                transfer_syntax_uid=str(FAST_SYNTAX),
                size=len(data),
                sha256_stored=hashlib.sha256(data).hexdigest(),
            )
    except IntegrityError:
        # Another worker derived it first (or the instance went away): keep theirs, drop ours.
        get_store().delete(info.blob_id)
        return None


def derive(instance: Instance) -> DerivedCopy | None:
    """Derive and store the fast copy of one instance; record a failure instead of raising."""
    job = TranscodeJob(original_source_for(instance), frames=instance.number_of_frames or 1)
    try:
        result = get_pool().submit(job).result()
    except RenderError as exc:
        logger.warning("fast copy of instance %s failed: %s", instance.pk, exc)
        DerivedCopy.objects.get_or_create(
            instance=instance, defaults={"organization_id": instance.organization_id, "error": str(exc)[:300]}
        )
        return None
    return _store_copy(instance, result.data)


@dataclass
class DeriveReport:
    created: int = 0
    failed: int = 0


def derive_pending(limit: int = 50) -> DeriveReport:
    """Derive copies for up to `limit` pending instances; audited as one event when any were made."""
    report = DeriveReport()
    for instance in pending(limit):
        if derive(instance) is not None:
            report.created += 1
        elif DerivedCopy.objects.filter(instance=instance).exclude(error="").exists():
            report.failed += 1
    if report.created or report.failed:
        record(
            action="archive.fast_copies_derived",
            actor_type="system",
            object_type="blob_store",
            details={"created": report.created, "failed": report.failed},
        )
    return report
