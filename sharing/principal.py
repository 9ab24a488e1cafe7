"""The share recipient as a viewer principal (docs/viewer-protocol.md section 1).

`viewer.principal` finds this module through settings.LIGHTBOX_SHARE_PRINCIPAL_RESOLVER and
calls the two resolvers below (sync; they use the ORM). A principal exists only for a live,
verified recipient session whose share is still usable; `is_current()` re-reads the share on
every call, so revocation, expiry, a lock and used-up opens stop a viewer at the next request.

Burned-in PHI (redacted shares): the archive keeps no annotation coordinates, so the rule is
deliberately coarse. An instance whose header says BurnedInAnnotation (0028,0301) = YES, or
whose modality is US or SC (the usual carriers of burned-in demographics) unless the header
says NO, gets its top band blacked out: the full width, the top REDACT_TOP_FRACTION of the
rows (at least REDACT_MIN_ROWS). Ultrasound and secondary-capture devices print patient
name, id and date in that band. docs/sharing.md documents the rule and its limits.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from archive.models import Instance, Study
from sharing.models import Share, ShareSession
from sharing.services import session_for_key, share_group

REDACT_TOP_FRACTION = 0.12
REDACT_MIN_ROWS = 16
BURNED_IN_MODALITIES = frozenset({"US", "SC"})
_BURNED_IN_TAG = "00280301"
_MODALITY_TAG = "00080060"


def _header_value(metadata: dict, tag: str) -> str | None:
    element = (metadata or {}).get(tag) or {}
    values = element.get("Value") or []
    return str(values[0]).strip().upper() if values else None


def burned_in_regions(instance: Instance) -> tuple[tuple[int, int, int, int], ...]:
    """(x, y, w, h) source-pixel rectangles likely to hold burned-in PHI (see module docstring)."""
    rows, columns = instance.rows or 0, instance.columns or 0
    if rows <= 0 or columns <= 0:
        return ()
    flag = _header_value(instance.metadata, _BURNED_IN_TAG)
    modality = _header_value(instance.metadata, _MODALITY_TAG) or ""
    if flag == "NO":
        return ()
    if flag != "YES" and modality not in BURNED_IN_MODALITIES:
        return ()
    band = min(rows, max(REDACT_MIN_ROWS, round(rows * REDACT_TOP_FRACTION)))
    return ((0, 0, columns, band),)


class SharePrincipal:
    """A verified share recipient: one study (or chosen series), watermarked, view-only unless allowed."""

    kind = "share"
    audit_actor = None

    def __init__(self, session: ShareSession):
        self.session = session
        self.share: Share = session.share
        self.audit_details = {"share_id": self.share.pk, "share_session_id": session.pk}
        self.group_names = [share_group(self.share.pk)]
        self._series_ids = list(self.share.series.values_list("pk", flat=True))

    def studies(self):
        # SECURITY: exactly the shared study, in the share's organisation; nothing else exists here.
        return Study.objects.filter(pk=self.share.study_id, organization_id=self.share.organization_id)

    def instances(self):
        qs = Instance.objects.filter(
            organization_id=self.share.organization_id, series__study_id=self.share.study_id
        )
        if self._series_ids:
            qs = qs.filter(series_id__in=self._series_ids)
        return qs

    def may_see_phi(self, study) -> bool:
        return self.share.phi_display == Share.PHIDisplay.FULL

    def watermark_text(self) -> str | None:
        # SECURITY: always on for shares: who, which share, when, burned into every frame.
        who = (self.share.recipient_name or self.share.recipient_email or "recipient")[:80]
        return f"{who} · share {self.share.pk} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"

    def redactions_for(self, instance) -> tuple:
        if self.share.phi_display == Share.PHIDisplay.FULL:
            return ()
        return burned_in_regions(instance)

    def can_download(self) -> bool:
        return self.share.download == Share.Download.ORIGINAL

    def can_list_studies(self) -> bool:
        return False

    def is_current(self) -> str | None:
        """None while usable; else "revoked", "expired", "locked" or "max_opens" (reads the database)."""
        share = Share.objects.filter(pk=self.share.pk).only(
            "state", "expires_at", "locked_until", "max_opens", "open_count"
        ).first()
        if share is None:
            return "revoked"
        reason = share.unavailable_reason()
        if reason is not None:
            return reason
        session = ShareSession.objects.filter(pk=self.session.pk).only("ended_at", "expires_at", "end_reason").first()
        if session is None or session.ended_at is not None:
            return "revoked" if session is None or session.end_reason in ("revoked", "link regenerated") else "expired"
        if session.expires_at <= timezone.now():
            return "expired"
        return None


def _verified_principal(session: ShareSession | None) -> SharePrincipal | None:
    if session is None or session.verified_at is None:
        return None
    if session.share.unavailable_reason() is not None:
        return None
    return SharePrincipal(session)


def share_principal_for_request(request) -> SharePrincipal | None:
    """The principal of a request carrying a verified share cookie, else None."""
    return _verified_principal(session_for_key(request.COOKIES.get(settings.LIGHTBOX_SHARE_COOKIE_NAME)))


def share_principal_for_scope(scope) -> SharePrincipal | None:
    """The principal of a websocket whose handshake carried a verified share cookie, else None."""
    cookies = scope.get("cookies") or {}
    return _verified_principal(session_for_key(cookies.get(settings.LIGHTBOX_SHARE_COOKIE_NAME)))
