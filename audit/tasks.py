from celery import shared_task

from audit.verification import write_checkpoint as _write_checkpoint


@shared_task(name="audit.tasks.write_checkpoint")
def write_checkpoint() -> dict:
    """Write a signed checkpoint of the audit chain head outside the database."""
    return _write_checkpoint()
