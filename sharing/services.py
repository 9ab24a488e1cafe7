"""Write-side work on shares: create, open, verify, revoke, extend, expire, download links."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from accounts.policy import Action, can
from archive import access
from audit.services import client_ip, record
from sharing import emails, tokens
from sharing.errors import ShareRefused
from sharing.models import DownloadLink, Share, ShareAccess, ShareSession

logger = logging.getLogger("lightbox.sharing")

OBJECT_TYPE = "share"


def share_group(share_id: int) -> str:
    """The channel-layer group of every live viewer socket of one share."""
    return f"share.{share_id}"


# --- helpers ----------------------------------------------------------------------------------


def _audit(
    action: str, share: Share, *, actor=None, actor_type=None, request=None, outcome: str = "success", **details
) -> None:
    if actor is None and actor_type is None:
        actor_type = "share"  # the recipient, known only by the share (ActorType.SHARE)
    record(
        action=action,
        actor=actor,
        actor_type=actor_type,
        request=request,
        organization=share.organization_id,
        object_type=OBJECT_TYPE,
        object_id=share.pk,
        outcome=outcome,
        details={"share_id": share.pk, **details},
    )


def _history(share: Share, event: str, request=None, *, outcome: str = "success", detail: str = "") -> None:
    ShareAccess.objects.create(
        share=share,
        event=event,
        outcome=outcome,
        ip_address=client_ip(request),
        user_agent=(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:300],
        detail=detail[:200],
    )


def _signal_revoke(share_id: int, reason: str) -> None:
    """Close every open viewer socket of the share (the viewer consumer handles "viewer.revoke")."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(share_group(share_id), {"type": "viewer.revoke", "reason": reason})
    except Exception:  # noqa: BLE001 - a process edge: the layer being down must not undo a revocation
        # Sockets re-check `is_current()` before every frame, so they still stop; log and go on.
        logger.warning("could not signal share sockets", exc_info=True)


def end_sessions(share: Share, reason: str) -> int:
    """End every recipient session of the share; returns how many were live."""
    now = timezone.now()
    ended = ShareSession.objects.filter(share=share, ended_at__isnull=True).update(ended_at=now, end_reason=reason)
    DownloadLink.objects.filter(share=share, used_at__isnull=True).update(expires_at=now)
    return ended


# --- creating ---------------------------------------------------------------------------------


@dataclass
class CreatedShare:
    share: Share
    token: str  # shown once: the link is /s/<token>
    access_code: str | None  # shown once when verification is access_code


def is_own_study(user, study) -> bool:
    """True when `user` is the patient of `study` (linked account): patients may share their own images."""
    from archive.models import PatientLink

    return bool(getattr(user, "is_authenticated", False)) and PatientLink.objects.filter(
        user=user, patient_id=study.patient_id
    ).exists()


def check_share_policy(
    *, user, study, expires_at, download: str, verification: str, step_up_fresh: bool, series=()
) -> None:
    """Raise ShareRefused unless `user` may share `study` this way."""
    # SECURITY: the creator must see the study (archive.access, 404-equivalent) and hold a role
    # that may manage shares in its organisation.
    if not access.studies_for(user).filter(pk=study.pk).exists():
        raise ShareRefused("You cannot share this study.")
    if not (can(user, Action.SHARE_MANAGE, study) or is_own_study(user, study)):
        raise ShareRefused("Your role does not allow sharing studies here.")
    if any(s.study_id != study.pk for s in series):
        raise ShareRefused("Chosen series must belong to the shared study.", field="series")
    now = timezone.now()
    if expires_at <= now:
        raise ShareRefused("The expiry must be in the future.", field="expires_at")
    max_days = study.organization.max_share_days
    if expires_at > now + timedelta(days=max_days):
        raise ShareRefused(f"Your organisation allows shares of at most {max_days} days.", field="expires_at")
    if download not in Share.Download.values:
        raise ShareRefused("Unknown download right.", field="download")
    if download == Share.Download.ORIGINAL:
        if not can(user, Action.STUDY_EXPORT, study):
            raise ShareRefused("Your role does not allow handing out original files.", field="download")
        if not step_up_fresh:
            raise ShareRefused("Confirm with a fresh code to allow downloads of originals.", step_up=True)
    if verification == Share.Verification.DATE_OF_BIRTH and not study.patient.patient_birth_date:
        raise ShareRefused("This patient has no date of birth on file; choose another check.", field="verification")


def create_share(
    *,
    creator,
    study,
    series=(),
    recipient_name: str = "",
    recipient_email: str = "",
    recipient_phone: str = "",
    recipient_kind: str = Share.RecipientKind.OTHER,
    verification: str = Share.Verification.ACCESS_CODE,
    expires_at=None,
    max_opens: int | None = None,
    download: str = Share.Download.NONE,
    phi_display: str = Share.PHIDisplay.REDACTED,
    message: str = "",
    notify_creator_on_open: bool = True,
    step_up_fresh: bool = False,
    send_email: bool = True,
    request=None,
) -> CreatedShare:
    """Check policy, create the share and return it with its link token and access code (shown once)."""
    series = list(series)
    expires_at = expires_at or timezone.now() + timedelta(days=settings.LIGHTBOX_SHARE_DEFAULT_DAYS)
    if verification in (Share.Verification.EMAIL_CODE, Share.Verification.ACCOUNT) and not recipient_email:
        raise ShareRefused("This check needs the recipient's e-mail address.", field="recipient_email")
    check_share_policy(
        user=creator, study=study, expires_at=expires_at, download=download, verification=verification,
        step_up_fresh=step_up_fresh, series=series,
    )
    token = tokens.new_token()
    code = tokens.new_code() if verification == Share.Verification.ACCESS_CODE else None
    with transaction.atomic():
        share = Share.objects.create(
            organization=study.organization,
            created_by=creator,
            study=study,
            recipient_name=recipient_name,
            recipient_email=recipient_email,
            recipient_phone=recipient_phone,
            recipient_kind=recipient_kind,
            verification=verification,
            expires_at=expires_at,
            max_opens=max_opens,
            download=download,
            phi_display=phi_display,
            message=message,
            notify_creator_on_open=notify_creator_on_open,
            token_hash=tokens.token_hash(token),
            access_code_hash=make_password(code) if code else "",
        )
        if series:
            share.series.set(series)
        _audit(
            "share.created", share, actor=creator, request=request,
            study_id=study.pk, series_count=len(series), verification=verification, download=download,
            phi_display=phi_display, expires_at=expires_at.isoformat(), max_opens=max_opens,
        )
    if send_email and share.recipient_email:
        emails.send_link(share, token, request)
    return CreatedShare(share=share, token=token, access_code=code)


# --- managing ---------------------------------------------------------------------------------


def _set_state(share: Share, state: str, *, by=None, reason: str = "") -> None:
    share.state = state
    share.state_changed_at = timezone.now()
    share.state_changed_by = by if getattr(by, "is_authenticated", False) else None
    share.state_reason = reason[:200]
    share.save(update_fields=["state", "state_changed_at", "state_changed_by", "state_reason", "locked_until"])


def revoke_share(*, share: Share, by, reason: str = "", request=None) -> bool:
    """Revoke at once: every later request fails and open viewer sockets close. False if already revoked."""
    with transaction.atomic():
        share = Share.objects.select_for_update().get(pk=share.pk)
        if share.state == Share.State.REVOKED:
            return False
        _set_state(share, Share.State.REVOKED, by=by, reason=reason or "revoked")
        sessions = end_sessions(share, "revoked")
        _audit("share.revoked", share, actor=by, request=request, sessions_ended=sessions, reason=reason[:200])
    _signal_revoke(share.pk, "revoked")
    return True


def extend_share(*, share: Share, by, days: int, request=None) -> Share:
    """Push the expiry `days` further (from now if already past), within the organisation's maximum."""
    if days < 1:
        raise ShareRefused("Extend by at least one day.")
    now = timezone.now()
    with transaction.atomic():
        share = Share.objects.select_for_update().select_related("organization").get(pk=share.pk)
        if share.state == Share.State.REVOKED:
            raise ShareRefused("A revoked share cannot be extended; create a new one.")
        if not can(by, Action.SHARE_MANAGE, share.organization):
            raise ShareRefused("Your role does not allow managing shares here.")
        new_expiry = max(share.expires_at, now) + timedelta(days=days)
        limit = now + timedelta(days=share.organization.max_share_days)
        if new_expiry > limit:
            new_expiry = limit
        old = share.expires_at
        share.expires_at = new_expiry
        share.save(update_fields=["expires_at"])
        if share.state == Share.State.EXPIRED:
            _set_state(share, Share.State.ACTIVE, by=by, reason="extended")
        _audit("share.extended", share, actor=by, request=request, old=old.isoformat(), new=new_expiry.isoformat())
    return share


def regenerate_link(*, share: Share, by, request=None, send_email: bool = True) -> str:
    """Replace the link token (the old link stops working, its sessions end); return the new token."""
    token = tokens.new_token()
    with transaction.atomic():
        share = Share.objects.select_for_update().get(pk=share.pk)
        if share.state == Share.State.REVOKED:
            raise ShareRefused("A revoked share cannot get a new link.")
        share.token_hash = tokens.token_hash(token)
        share.save(update_fields=["token_hash"])
        sessions = end_sessions(share, "link regenerated")
        _audit("share.link_regenerated", share, actor=by, request=request, sessions_ended=sessions)
    _signal_revoke(share.pk, "revoked")
    if send_email and share.recipient_email:
        emails.send_link(share, token, request)
    return token


def reset_access_code(*, share: Share, by, request=None) -> str:
    """Issue a new access code (codes are hashed, so "resend" means a new one, shown once)."""
    if share.verification != Share.Verification.ACCESS_CODE:
        raise ShareRefused("This share is not checked with an access code.")
    code = tokens.new_code()
    share.access_code_hash = make_password(code)
    share.save(update_fields=["access_code_hash"])
    _audit("share.code_reset", share, actor=by, request=request)
    return code


def expire_shares(*, now=None, retention_days: int | None = None) -> dict:
    """Mark shares past expiry as expired, end their sessions, purge old derived data."""
    now = now or timezone.now()
    retention = timedelta(days=retention_days if retention_days is not None else settings.LIGHTBOX_SHARE_RETENTION_DAYS)
    expired_ids = []
    for share in Share.objects.past_expiry().filter(expires_at__lte=now):
        with transaction.atomic():
            share.state = Share.State.EXPIRED
            share.state_changed_at = now
            share.state_changed_by = None
            share.state_reason = "expired"
            share.save(update_fields=["state", "state_changed_at", "state_changed_by", "state_reason"])
            sessions = end_sessions(share, "expired")
            _audit("share.expired", share, actor_type="system", sessions_ended=sessions)
        expired_ids.append(share.pk)
    for share_id in expired_ids:
        _signal_revoke(share_id, "expired")
    cutoff = now - retention
    # PRIVACY: what a share left behind (its sessions, download links, access history with
    # addresses and user agents) goes once the share has been over for the retention window.
    ended = Share.objects.filter(state__in=[Share.State.EXPIRED, Share.State.REVOKED], state_changed_at__lte=cutoff)
    purged_sessions, _ = ShareSession.objects.filter(share__in=ended).delete()
    purged_history, _ = ShareAccess.objects.filter(share__in=ended).delete()
    stale_sessions, _ = ShareSession.objects.filter(expires_at__lte=cutoff).delete()
    stale_links, _ = DownloadLink.objects.filter(expires_at__lte=now - timedelta(days=1)).delete()
    return {
        "expired": len(expired_ids),
        "purged": purged_sessions + purged_history + stale_sessions + stale_links,
    }


# --- the recipient's side ---------------------------------------------------------------------


def find_by_token(token: str) -> Share | None:
    """The share whose link token this is (looked up by hash), or None."""
    if not token or len(token) > 128:
        return None
    return Share.objects.select_related("organization", "study").filter(token_hash=tokens.token_hash(token)).first()


def refresh_lock(share: Share) -> Share:
    """Unlock a share whose lock has run out (locks are lazy: no timer needed)."""
    if share.state == Share.State.LOCKED and (share.locked_until is None or share.locked_until <= timezone.now()):
        with transaction.atomic():
            locked = Share.objects.select_for_update().get(pk=share.pk)
            if locked.state == Share.State.LOCKED and (locked.locked_until is None or locked.locked_until <= timezone.now()):
                locked.failed_attempts = 0
                locked.locked_until = None
                locked.save(update_fields=["failed_attempts"])
                _set_state(locked, Share.State.ACTIVE, reason="lock ran out")
                _audit("share.unlocked", locked, actor_type="system")
            share = locked
    return share


def start_session(share: Share, request) -> tuple[ShareSession, str]:
    """Exchange a link for a recipient session; return it and the cookie value (shown once)."""
    key = tokens.new_token()
    now = timezone.now()
    session = ShareSession.objects.create(
        share=share,
        key_hash=tokens.token_hash(key),
        created_at=now,
        expires_at=min(now + timedelta(seconds=settings.LIGHTBOX_SHARE_SESSION_SECONDS), share.expires_at),
        ip_address=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
    )
    _history(share, ShareAccess.Event.OPENED, request)
    _audit("share.opened", share, request=request, session_id=session.pk)
    return session, key


def session_for_key(key: str | None) -> ShareSession | None:
    """The live recipient session behind a cookie value, or None."""
    if not key or len(key) > 128:
        return None
    return (
        ShareSession.objects.live()
        .select_related("share", "share__organization", "share__study", "share__created_by")
        .filter(key_hash=tokens.token_hash(key))
        .first()
    )


def ended_session_reason(key: str | None) -> str | None:
    """For a cookie whose session ended: why, as a state-page reason ("revoked", "expired"...), else None."""
    if not key or len(key) > 128:
        return None
    session = ShareSession.objects.select_related("share").filter(key_hash=tokens.token_hash(key)).first()
    if session is None:
        return None
    return session.share.unavailable_reason()


def record_refusal(share: Share, reason: str, request) -> None:
    _history(share, ShareAccess.Event.REFUSED, request, outcome="denied", detail=reason)
    _audit("share.refused", share, request=request, outcome="denied", reason=reason)


def _verification_failed(share: Share, session: ShareSession, request, why: str) -> bool:
    """Count a failure; lock the share at the limit. Returns True when this failure locked it."""
    with transaction.atomic():
        share = Share.objects.select_for_update().get(pk=share.pk)
        share.failed_attempts += 1
        locked = share.failed_attempts >= settings.LIGHTBOX_SHARE_LOCK_AFTER and share.state == Share.State.ACTIVE
        share.save(update_fields=["failed_attempts"])
        _history(share, ShareAccess.Event.VERIFICATION_FAILED, request, outcome="failure", detail=why)
        _audit("share.verification_failed", share, request=request, outcome="failure",
               reason=why, attempts=share.failed_attempts, session_id=session.pk)
        if locked:
            share.locked_until = timezone.now() + timedelta(seconds=settings.LIGHTBOX_SHARE_LOCK_SECONDS)
            _set_state(share, Share.State.LOCKED, reason=f"{share.failed_attempts} failed verifications")
            ended = ShareSession.objects.filter(share=share, ended_at__isnull=True).exclude(verified_at__isnull=False)
            ended.update(ended_at=timezone.now(), end_reason="locked")
            _audit("share.locked", share, request=request, outcome="failure", attempts=share.failed_attempts,
                   until=share.locked_until.isoformat())
    if locked:
        emails.notify_locked(share, request)
    return locked


@dataclass
class VerifyResult:
    ok: bool
    error: str = ""
    locked: bool = False


def verify(*, session: ShareSession, request, code: str = "", birth_date: date | None = None) -> VerifyResult:
    """Check the recipient's answer for the share's verification method and count the open."""
    share = session.share
    method = share.verification
    if method == Share.Verification.ACCESS_CODE:
        ok = bool(share.access_code_hash) and check_password(tokens.normalise_code(code), share.access_code_hash)
        why = "wrong access code"
    elif method == Share.Verification.DATE_OF_BIRTH:
        expected = share.study.patient.patient_birth_date
        ok = birth_date is not None and bool(expected) and birth_date.strftime("%Y%m%d") == expected
        why = "wrong date of birth"
    elif method == Share.Verification.EMAIL_CODE:
        fresh = session.email_code_expires_at is not None and session.email_code_expires_at > timezone.now()
        ok = fresh and bool(session.email_code_hash) and check_password(tokens.normalise_code(code), session.email_code_hash)
        why = "wrong or expired e-mailed code"
        if ok:
            # SECURITY: one-time: the code cannot be replayed.
            ShareSession.objects.filter(pk=session.pk).update(email_code_hash="", email_code_expires_at=None)
    elif method == Share.Verification.ACCOUNT:
        from accounts.mfa import is_verified

        user = getattr(request, "user", None)
        ok = (
            user is not None
            and user.is_authenticated
            and is_verified(request)
            and user.email.lower() == (share.recipient_email or "").lower()
        )
        why = "not signed in as the recipient"
    else:
        ok, why = False, "unknown verification method"
    if not ok:
        locked = _verification_failed(share, session, request, why)
        return VerifyResult(False, error=why, locked=locked)
    return _verified(share, session, request)


def _verified(share: Share, session: ShareSession, request) -> VerifyResult:
    with transaction.atomic():
        locked_share = Share.objects.select_for_update().get(pk=share.pk)
        reason = locked_share.unavailable_reason()
        if reason is None and locked_share.opens_exhausted:
            reason = "max_opens"
        if reason is not None:
            record_refusal(locked_share, reason, request)
            return VerifyResult(False, error=reason)
        locked_share.failed_attempts = 0
        locked_share.open_count += 1
        locked_share.save(update_fields=["failed_attempts", "open_count"])
        ShareSession.objects.filter(pk=session.pk).update(verified_at=timezone.now())
        _history(locked_share, ShareAccess.Event.VERIFIED, request)
        _audit("share.verified", locked_share, request=request, session_id=session.pk,
               method=locked_share.verification, opens=locked_share.open_count)
    session.verified_at = timezone.now()
    emails.notify_opened(locked_share, request)
    return VerifyResult(True)


def send_email_code(*, session: ShareSession, request) -> bool:
    """E-mail a fresh one-time code to the share's recipient (replacing any earlier one)."""
    share = session.share
    if share.verification != Share.Verification.EMAIL_CODE or not share.recipient_email:
        return False
    code = tokens.new_code(tokens.EMAIL_CODE_LENGTH)
    ShareSession.objects.filter(pk=session.pk).update(
        email_code_hash=make_password(code),
        email_code_expires_at=timezone.now() + timedelta(seconds=settings.LIGHTBOX_SHARE_EMAIL_CODE_SECONDS),
    )
    _history(share, ShareAccess.Event.CODE_SENT, request)
    _audit("share.code_sent", share, request=request, session_id=session.pk)
    return emails.send_email_code(share, code)


# --- downloads --------------------------------------------------------------------------------


def create_download_link(*, session: ShareSession, request) -> str:
    """A single-use download token, valid LIGHTBOX_SHARE_DOWNLOAD_LINK_SECONDS, bound to the session."""
    token = tokens.new_token()
    now = timezone.now()
    DownloadLink.objects.create(
        share=session.share,
        session=session,
        token_hash=tokens.token_hash(token),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.LIGHTBOX_SHARE_DOWNLOAD_LINK_SECONDS),
    )
    return token


def consume_download_link(*, session: ShareSession, token: str) -> DownloadLink | None:
    """Mark the link used and return it; None when unknown, used, expired or another session's."""
    if not token or len(token) > 128:
        return None
    now = timezone.now()
    with transaction.atomic():
        link = (
            DownloadLink.objects.select_for_update()
            .filter(token_hash=tokens.token_hash(token), session=session, used_at__isnull=True, expires_at__gt=now)
            .first()
        )
        if link is None:
            return None
        # SECURITY: single use; the conditional update wins once even under concurrent requests.
        if not DownloadLink.objects.filter(pk=link.pk, used_at__isnull=True).update(used_at=now):
            return None
    return link


def record_download(*, share: Share, request, files: int, size: int, manifest_sha256: str, completed: bool) -> None:
    outcome = "success" if completed else "failure"
    _history(share, ShareAccess.Event.DOWNLOAD, request, outcome=outcome, detail=f"{files} files, {size} bytes")
    _audit("share.downloaded", share, request=request, outcome=outcome, files=files, size=size,
           manifest_sha256=manifest_sha256, completed=completed)
