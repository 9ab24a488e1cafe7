"""Housekeeping: `manage.py expire_shares` marks expired shares, ends sessions, purges old data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from audit.models import AuditEvent
from sharing import services
from sharing.models import Share, ShareAccess, ShareSession
from tests.sharing.helpers import open_and_verify

pytestmark = pytest.mark.django_db
T0 = datetime(2030, 6, 1, 8, 0, tzinfo=UTC)


def test_expire_shares_marks_expired_and_ends_sessions(make_share):
    with time_machine.travel(T0, tick=False) as traveller:
        short = make_share(expires_at=T0 + timedelta(minutes=30))
        long = make_share(expires_at=T0 + timedelta(days=5))
        open_and_verify(Client(), short)
        traveller.shift(timedelta(minutes=31))
        out = StringIO()
        call_command("expire_shares", stdout=out)
    assert "expired 1 share(s)" in out.getvalue()
    assert Share.objects.get(pk=short.share.pk).state == Share.State.EXPIRED
    assert Share.objects.get(pk=long.share.pk).state == Share.State.ACTIVE
    assert not ShareSession.objects.filter(share=short.share, ended_at__isnull=True).exists()
    event = AuditEvent.objects.get(action="share.expired")
    assert event.actor_type == "system" and event.details["share_id"] == short.share.pk


def test_retention_purges_what_an_ended_share_left_behind(make_share, owner):
    with time_machine.travel(T0, tick=False) as traveller:
        old = make_share()
        recent = make_share()
        open_and_verify(Client(), old)
        open_and_verify(Client(), recent)
        services.revoke_share(share=old.share, by=owner)
        traveller.shift(timedelta(days=settings.LIGHTBOX_SHARE_RETENTION_DAYS + 1))
        services.revoke_share(share=recent.share, by=owner)
        call_command("expire_shares", stdout=StringIO())
    assert not ShareAccess.objects.filter(share=old.share).exists()
    assert not ShareSession.objects.filter(share=old.share).exists()
    assert ShareAccess.objects.filter(share=recent.share).exists()
    # The share row and the audit trail stay.
    assert Share.objects.filter(pk=old.share.pk).exists()
    assert AuditEvent.objects.filter(action="share.verified", object_id=str(old.share.pk)).exists()


def test_celery_beat_runs_expiry():
    entry = settings.CELERY_BEAT_SCHEDULE["sharing-expire"]
    assert entry["task"] == "sharing.tasks.expire_shares"
    from config.celery import app
    from sharing.tasks import expire_shares

    assert app.tasks[entry["task"]].name == expire_shares.name == entry["task"]  # what the scheduler looks up
    assert expire_shares.apply().get() == {"expired": 0, "purged": 0}
