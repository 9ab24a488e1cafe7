"""Writing to the audit trail: one function, `record`, used by every part of Lightbox."""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import queue
import threading
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import compute_hash
from audit.models import ActorType, AuditEvent, ChainHead, Outcome
from config.request_context import current_request_id

logger = logging.getLogger("lightbox.audit")


def audit_key() -> bytes:
    """Return the HMAC key of the audit chain."""
    return settings.AUDIT_HMAC_KEY.encode()


def client_ip(request) -> str | None:
    """Return the client's address; X-Forwarded-For only when a trusted proxy is configured."""
    if request is None:
        return None
    raw = request.META.get("REMOTE_ADDR", "")
    if getattr(settings, "TRUSTED_PROXY", False):
        # SECURITY: the proxy appends the address it saw; the last entry is the one we trust.
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            raw = forwarded.split(",")[-1].strip()
    return _normalise_ip(raw)


def _normalise_ip(raw: str | None) -> str | None:
    try:
        return ipaddress.ip_address((raw or "").strip()).compressed
    except ValueError:
        return None


def _actor_fields(actor: Any, actor_type: str | None) -> tuple[str, str, str]:
    if actor is None:
        return actor_type or ActorType.ANONYMOUS, "", ""
    if getattr(actor, "is_authenticated", False) and hasattr(actor, "email"):
        return actor_type or ActorType.USER, str(actor.pk), actor.email
    return actor_type or ActorType.SYSTEM, str(getattr(actor, "pk", "") or ""), str(actor)[:254]


def record(
    *,
    action: str,
    actor: Any = None,
    actor_type: str | None = None,
    request=None,
    organization: Any = None,
    object_type: str = "",
    object_id: Any = "",
    outcome: str = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    source_ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEvent:
    """Append one event to the chain and return it.

    The append runs with the chain head row locked, so concurrent writers, in threads or other
    processes, queue instead of forking the chain. Inside a caller's transaction it is part of
    that transaction; outside one, concurrent callers of this process share one transaction
    (``_GroupCommit``) and each returns once its event is committed. PRIVACY: `details` must
    not carry PHI; callers pass UIDs and counts only.
    """
    fields = _event_fields(**locals())
    if connection.in_atomic_block:
        # Inside a caller's transaction the event must commit or roll back with its work.
        return _append([fields])[0]
    return _group.append(fields)


# record's signature is the one definition of an event's arguments; arecord checks them against it
_RECORD_ARGUMENTS = inspect.signature(record)


async def arecord(**kwargs: Any) -> None:
    """``record`` for async views: returns once the event is committed, without a thread per call.

    Events go to one writer thread that appends whatever has queued in one transaction, so a
    frame server's hundreds of audited requests a second cost one thread hand-off per batch
    rather than one per request. Inside a transaction of this thread (tests), it falls back to
    ``record`` so the event stays part of it.
    """
    if connection.in_atomic_block:
        record(**kwargs)
        return
    bound = _RECORD_ARGUMENTS.bind(**kwargs)
    bound.apply_defaults()
    future = asyncio.get_running_loop().create_future()
    _writer.submit(_event_fields(**bound.arguments), future)
    await future


def _event_fields(*, action, actor, actor_type, request, organization, object_type, object_id, outcome, details,
                  source_ip, user_agent) -> dict[str, Any]:
    """The stored columns of an event, from ``record``'s arguments."""
    kind, actor_id, actor_label = _actor_fields(actor, actor_type)
    if request is not None:
        source_ip = source_ip or client_ip(request)
        user_agent = user_agent or request.META.get("HTTP_USER_AGENT", "")
    return {
        "actor_type": kind,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "organization_id": getattr(organization, "pk", organization),
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id if object_id is not None else ""),
        "outcome": str(outcome),
        "source_ip": _normalise_ip(source_ip),
        "user_agent": (user_agent or "")[:256],
        "request_id": getattr(request, "request_id", None) or current_request_id(),
        "details": details or {},
    }


def _append(batch: list[dict[str, Any]]) -> list[AuditEvent]:
    """Extend the chain by `batch`, in order, in one transaction (a savepoint when nested).

    Plain SQL through Django's connection rather than the ORM: this runs for every audited
    request (each rendered frame), and building the three ORM queries cost more than the
    database work itself (0.63 -> ~0.2 ms per event). Values go through each model field's
    own ``get_db_prep_save``, so they are stored exactly as the ORM would store them.
    """
    key = audit_key()
    quote = connection.ops.quote_name
    head_table = quote(ChainHead._meta.db_table)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    columns = _insert_columns()
    # Identifiers come from the models' own metadata; every value is a query parameter.
    names = ", ".join(quote(f.column) for f in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    insert = f"INSERT INTO {quote(AuditEvent._meta.db_table)} ({names}) VALUES ({placeholders}) "  # noqa: S608
    insert += f"RETURNING {quote(AuditEvent._meta.pk.column)}"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT sequence, hash FROM {head_table} WHERE id = 1{lock}")  # noqa: S608
        row = cursor.fetchone()
        if row is None:
            head = ChainHead.objects.create(pk=1)
            row = (head.sequence, head.hash)
        sequence, prev_hash = row
        now = timezone.now()
        events = []
        for fields in batch:
            sequence += 1
            linked = {**fields, "sequence": sequence, "created_at": now, "prev_hash": prev_hash}
            linked["hash"] = prev_hash = compute_hash(key, prev_hash, linked)
            cursor.execute(insert, [f.get_db_prep_save(linked[f.attname], connection) for f in columns])
            event = AuditEvent(pk=cursor.fetchone()[0], **linked)
            event._state.adding, event._state.db = False, connection.alias
            events.append(event)
        cursor.execute(f"UPDATE {head_table} SET sequence = %s, hash = %s WHERE id = 1", [sequence, prev_hash])  # noqa: S608
    return events


def _insert_columns() -> list:
    return [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]


class _GroupCommit:
    """Concurrent appends share one transaction (group commit), each returning once it is durable.

    A frame server answers hundreds of audited requests a second; one transaction per event
    (lock the head, insert, update the head, commit) made the audit trail the bottleneck. Here
    whichever caller finds no write in progress becomes the leader: it takes every event
    queued so far, its own included, appends them in one transaction and wakes the others. A
    caller still returns only after its own event has committed, as before.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    def append(self, fields: dict[str, Any]) -> AuditEvent:
        return self._append_pending([_Pending(fields)])[0]

    def append_many(self, batch: list[dict[str, Any]]) -> list[AuditEvent]:
        """Append several events, in order, committed together (or with others queued)."""
        return self._append_pending([_Pending(fields) for fields in batch])

    def _append_pending(self, mine_all: list[_Pending]) -> list[AuditEvent]:
        mine = mine_all[-1]
        with self._ready:
            self._queue.extend(mine_all)
            while not mine.done and self._writing:
                self._ready.wait()
            if mine.done:
                return [pending.result() for pending in mine_all]
            self._writing = True
            batch, self._queue = self._queue, []
        try:
            events = _append([pending.fields for pending in batch])
        except BaseException as exc:
            for pending in batch:
                pending.error = exc
            raise
        else:
            for pending, event in zip(batch, events, strict=True):
                pending.event = event
        finally:
            with self._ready:
                for pending in batch:
                    pending.done = True
                self._writing = False
                self._ready.notify_all()
        return [pending.result() for pending in mine_all]


class _Pending:
    __slots__ = ("done", "error", "event", "fields")

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields
        self.event: AuditEvent | None = None
        self.error: BaseException | None = None
        self.done = False

    def result(self) -> AuditEvent:
        if self.error is not None:
            raise AuditWriteFailed("the audit event could not be written") from self.error
        assert self.event is not None
        return self.event


class AuditWriteFailed(Exception):
    """Another caller's transaction that carried this event failed; nothing of it was stored."""


_group = _GroupCommit()


class _Writer:
    """One daemon thread appending the events of async callers, a batch per transaction."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], asyncio.Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, fields: dict[str, Any], future: asyncio.Future) -> None:
        self._queue.put((fields, future))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="lightbox-audit-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                events: list[Any] = _group.append_many([fields for fields, _ in batch])
            except Exception:  # process edge: every waiting request learns of the failure
                logger.exception("audit events could not be written")
                connection.close()  # a broken connection is reopened for the next batch
                events = [AuditWriteFailed("the audit event could not be written")] * len(batch)
            for (_, future), outcome in zip(batch, events, strict=True):
                future.get_loop().call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future, outcome: Any) -> None:
    if future.cancelled():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


_writer = _Writer()
