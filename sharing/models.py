"""Shares: a recipient's expiring, revocable, verified access to one study (or chosen series).

SECURITY: no secret is stored in clear. The link token, the access code, e-mailed one-time codes,
the recipient's browser-session key and single-use download links are kept as hashes only.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Organization
from archive.models import Series, Study


def default_expiry():
    return timezone.now() + timedelta(days=settings.LIGHTBOX_SHARE_DEFAULT_DAYS)


class ShareQuerySet(models.QuerySet):
    def active(self):
        return self.filter(state=Share.State.ACTIVE, expires_at__gt=timezone.now())

    def past_expiry(self):
        """Shares whose expiry passed but are not yet marked expired (or revoked)."""
        return self.filter(
            state__in=[Share.State.ACTIVE, Share.State.LOCKED], expires_at__lte=timezone.now()
        )

    def over_max_opens(self):
        return self.filter(max_opens__isnull=False, open_count__gte=F("max_opens"))


class Share(models.Model):
    class RecipientKind(models.TextChoices):
        PATIENT = "patient", "Patient"
        CLINICIAN = "clinician", "Clinician"
        OTHER = "other", "Other"

    class Verification(models.TextChoices):
        ACCESS_CODE = "access_code", "Access code (passed on separately)"
        DATE_OF_BIRTH = "date_of_birth", "Patient's date of birth"
        EMAIL_CODE = "email_code", "One-time code e-mailed to the recipient"
        ACCOUNT = "account", "Recipient signs in to a Lightbox account (with second factor)"

    class Download(models.TextChoices):
        NONE = "none", "View only"
        ORIGINAL = "original", "Original DICOM files"

    class PHIDisplay(models.TextChoices):
        FULL = "full", "Full (the patient or a treating clinician)"
        REDACTED = "redacted", "Redacted"

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"
        LOCKED = "locked", "Locked (too many failed verifications)"

    organization = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="shares")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="shares_created"
    )
    created_at = models.DateTimeField(default=timezone.now)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="shares")
    series = models.ManyToManyField(
        Series, blank=True, related_name="shares", help_text="Leave empty to share the whole study."
    )
    recipient_name = models.CharField(max_length=200, blank=True)
    recipient_email = models.EmailField(blank=True)
    recipient_phone = models.CharField(max_length=32, blank=True)
    recipient_kind = models.CharField(max_length=16, choices=RecipientKind.choices, default=RecipientKind.OTHER)
    verification = models.CharField(max_length=16, choices=Verification.choices, default=Verification.ACCESS_CODE)
    expires_at = models.DateTimeField(default=default_expiry)
    max_opens = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: no limit.")
    open_count = models.PositiveIntegerField(default=0, editable=False)
    download = models.CharField(max_length=16, choices=Download.choices, default=Download.NONE)
    phi_display = models.CharField(max_length=16, choices=PHIDisplay.choices, default=PHIDisplay.REDACTED)
    message = models.TextField(blank=True, max_length=2000, help_text="Shown to the recipient after verification.")
    notify_creator_on_open = models.BooleanField(default=True)

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    access_code_hash = models.CharField(max_length=128, blank=True, editable=False)

    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE, db_index=True)
    state_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    state_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )
    state_reason = models.CharField(max_length=200, blank=True, editable=False)
    failed_attempts = models.PositiveSmallIntegerField(default=0, editable=False)
    locked_until = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ShareQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["state", "expires_at"])]

    def __str__(self) -> str:
        # PRIVACY: no patient data; the recipient is who the creator typed in.
        return f"Share {self.pk} to {self.recipient_label}"

    @property
    def recipient_label(self) -> str:
        return self.recipient_name or self.recipient_email or "recipient"

    def unavailable_reason(self, now=None) -> str | None:
        """None while the share may be used, else "revoked", "expired", "locked" or "max_opens"."""
        now = now or timezone.now()
        if self.state == self.State.REVOKED:
            return "revoked"
        if self.state == self.State.EXPIRED or self.expires_at <= now:
            return "expired"
        if self.state == self.State.LOCKED and self.locked_until and self.locked_until > now:
            return "locked"
        if self.max_opens is not None and self.open_count > self.max_opens:
            return "max_opens"
        return None

    @property
    def opens_exhausted(self) -> bool:
        return self.max_opens is not None and self.open_count >= self.max_opens


class ShareAccess(models.Model):
    """One thing that happened on a share: link opened, verification, view, download."""

    class Event(models.TextChoices):
        OPENED = "opened", "Link opened"
        VERIFIED = "verified", "Verified"
        VERIFICATION_FAILED = "verification_failed", "Verification failed"
        CODE_SENT = "code_sent", "One-time code e-mailed"
        REFUSED = "refused", "Refused (expired, revoked, locked or used up)"
        DOWNLOAD = "download", "Downloaded"

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="accesses")
    at = models.DateTimeField(default=timezone.now)
    event = models.CharField(max_length=24, choices=Event.choices)
    outcome = models.CharField(max_length=16, default="success")
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "share accesses"

    def __str__(self) -> str:
        return f"{self.get_event_display()} at {self.at:%Y-%m-%d %H:%M}"


class ShareSessionQuerySet(models.QuerySet):
    def live(self):
        return self.filter(ended_at__isnull=True, expires_at__gt=timezone.now())


class ShareSession(models.Model):
    """A recipient's browser session on one share, behind the `lightbox-share` cookie.

    # SECURITY: the cookie holds a random key; only its SHA-256 is here. It is bound to one share
    # and never to a user account, so it cannot reach anything a user session reaches.
    """

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="sessions")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=40, blank=True)
    email_code_hash = models.CharField(max_length=128, blank=True)
    email_code_expires_at = models.DateTimeField(null=True, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    objects = ShareSessionQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Session {self.pk} on share {self.share_id}"


class DownloadLink(models.Model):
    """A single-use link (valid minutes) to the ZIP of a share's scope."""

    share = models.ForeignKey(Share, on_delete=models.CASCADE, related_name="download_links")
    session = models.ForeignKey(ShareSession, on_delete=models.CASCADE, related_name="download_links")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="download_link_expires_after_creation")
        ]

    def __str__(self) -> str:
        return f"Download link {self.pk} of share {self.share_id}"
