from celery import shared_task

from sharing.services import expire_shares as _expire_shares


@shared_task(name="sharing.tasks.expire_shares")
def expire_shares() -> dict:
    """Mark shares past their expiry as expired, end their sessions, purge old derived data."""
    return _expire_shares()
