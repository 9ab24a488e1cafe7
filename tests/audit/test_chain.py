"""The audit trail is append-only and tampering anywhere is detected."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection

from audit.models import AppendOnlyError, AuditEvent
from audit.services import record
from audit.verification import verify_chain, verify_latest_checkpoint, write_checkpoint
from tests.threads import run_concurrently


def _raw(sql: str, params=()):
    # An attacker with database access: on PostgreSQL they would first disable our trigger.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def _three_events():
    for n in range(3):
        record(action="study.view", object_type="study", object_id=f"1.2.3.{n}", details={"frames": n})


@pytest.mark.django_db
def test_recorded_events_form_a_valid_chain():
    _three_events()
    report = verify_chain()
    assert report.ok and report.checked == 3 and report.head_sequence == 3
    events = list(AuditEvent.objects.order_by("sequence"))
    assert events[0].prev_hash == "0" * 64
    assert events[1].prev_hash == events[0].hash


@pytest.mark.django_db
def test_model_refuses_update_and_delete():
    _three_events()
    event = AuditEvent.objects.first()
    event.outcome = "failure"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().update(outcome="failure")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.django_db
def test_raw_sql_update_is_detected(capsys):
    _three_events()
    _raw("UPDATE audit_auditevent SET object_id = %s WHERE sequence = 2", ["9.9.9"])
    report = verify_chain()
    assert not report.ok and report.broken_at == 2 and "altered" in report.reason
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_audit")
    assert exit_info.value.code == 1
    assert "BROKEN at event #2" in capsys.readouterr().err


@pytest.mark.django_db
def test_deleted_row_is_detected():
    _three_events()
    _raw("DELETE FROM audit_auditevent WHERE sequence = 2")
    report = verify_chain()
    assert not report.ok and report.broken_at == 2 and "missing" in report.reason


@pytest.mark.django_db
def test_truncated_tail_is_caught_by_the_checkpoint():
    _three_events()
    write_checkpoint()
    assert verify_latest_checkpoint().ok
    _raw("DELETE FROM audit_auditevent WHERE sequence = 3")
    assert verify_chain().ok  # the remaining chain is self-consistent...
    report = verify_latest_checkpoint()
    assert not report.ok and "missing" in report.reason  # ...but the checkpoint remembers #3


@pytest.mark.django_db
def test_forged_checkpoint_is_detected():
    _three_events()
    entry = write_checkpoint()
    from audit.verification import checkpoint_path

    path = checkpoint_path()
    assert path.stat().st_mode & 0o777 == 0o600
    forged = path.read_text().replace(entry["hash"], "f" * 64)
    path.write_text(forged)
    report = verify_latest_checkpoint()
    assert not report.ok and "signature" in report.reason


@pytest.mark.django_db
def test_verify_audit_command_passes_on_an_intact_chain(capsys):
    _three_events()
    write_checkpoint()
    call_command("verify_audit")
    out = capsys.readouterr().out
    assert "chain intact: 3 events" in out and "matches" in out


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_from_two_threads_leave_one_chain():
    def writer(tag):
        for n in range(25):
            record(action="test.concurrent", object_id=f"{tag}-{n}")

    _, errors = run_concurrently(2, writer)
    assert errors == []
    report = verify_chain()
    assert report.ok and report.checked == 50


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_share_transactions_and_each_gets_its_own_committed_event(monkeypatch):
    from audit import services

    batches, first = [], threading.Event()
    real_append = services._append

    def slow_first_append(batch):
        batches.append(len(batch))
        if not first.is_set():
            first.set()
            time.sleep(0.3)  # the others arrive while this transaction is open, and queue
        return real_append(batch)

    monkeypatch.setattr(services, "_append", slow_first_append)
    results, errors = run_concurrently(8, lambda n: record(action="test.group", object_id=f"caller-{n}"))
    assert errors == []
    assert max(batches) > 1 and sum(batches) == 8  # grouped, and every event written once
    for n, event in results.items():
        stored = AuditEvent.objects.get(pk=event.pk)
        assert (stored.object_id, stored.sequence, stored.hash) == (f"caller-{n}", event.sequence, event.hash)
    report = verify_chain()
    assert report.ok and report.checked == 8


@pytest.mark.django_db(transaction=True)
def test_a_failed_group_transaction_fails_every_caller_in_it_and_stores_none_of_them(monkeypatch):
    from audit import services

    real_append, first = services._append, threading.Event()

    def failing_when_grouped(batch):
        if not first.is_set():
            first.set()
            time.sleep(0.3)
            return real_append(batch)
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "_append", failing_when_grouped)
    results, errors = run_concurrently(6, lambda n: record(action="test.group", object_id=f"caller-{n}"))
    assert len(results) == 1 and len(errors) == 5  # the first alone succeeded
    assert all(isinstance(e, (RuntimeError, services.AuditWriteFailed)) for e in errors)
    assert AuditEvent.objects.count() == 1 and verify_chain().ok


@pytest.mark.django_db
def test_postgres_trigger_refuses_update_and_delete():
    if connection.vendor != "postgresql":
        from tests.system import require_service

        require_service("PostgreSQL", False, how="set DATABASE_URL=postgres://... to run this test")
    _three_events()
    from django.db import DatabaseError, transaction

    for sql in ("UPDATE audit_auditevent SET outcome = 'failure'", "DELETE FROM audit_auditevent"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(sql)
    assert AuditEvent.objects.count() == 3
