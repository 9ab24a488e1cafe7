from celery import shared_task

from viewer.fast_copies import derive_pending


@shared_task(name="viewer.tasks.derive_fast_copies")
def derive_fast_copies(limit: int = 50) -> dict:
    """Build fast-decode copies of JPEG 2000 instances that have none yet."""
    report = derive_pending(limit)
    return {"created": report.created, "failed": report.failed}
