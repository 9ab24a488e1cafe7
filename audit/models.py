"""The append-only, hash-chained audit trail."""

from __future__ import annotations

from django.db import models


class AppendOnlyError(RuntimeError):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("audit events cannot be updated")

    def delete(self):
        raise AppendOnlyError("audit events cannot be deleted")

    def for_object(self, object_type: str, object_id) -> AuditEventQuerySet:
        return self.filter(object_type=object_type, object_id=str(object_id))


class Outcome(models.TextChoices):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"
    ERROR = "error"


class ActorType(models.TextChoices):
    USER = "user"
    SHARE = "share"
    API_TOKEN = "api_token"  # noqa: S105  (a label, not a secret)
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


class AuditEvent(models.Model):
    """One thing that happened: who, what, when, from where, and how it ended.

    `details` never holds PHI (no names, birth dates or free text from DICOM headers); UIDs and
    counts are fine. Actor and organisation are plain ids, not foreign keys, so that deleting a
    user can never cascade into, or be blocked by, the trail.
    """

    sequence = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor_id = models.CharField(max_length=64, blank=True)
    actor_label = models.CharField(max_length=254, blank=True)
    organization_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=128, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SUCCESS)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-sequence"]
        indexes = [
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["organization_id", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.outcome}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("audit events cannot be deleted")


class ChainHead(models.Model):
    """A single row that serialises appends: writers lock it, then extend the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    sequence = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"chain head #{self.sequence}"
