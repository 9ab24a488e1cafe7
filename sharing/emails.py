"""E-mails about shares, through Django's e-mail framework (console backend unless SMTP is set).

# PRIVACY: no message names the patient, the recipient, the study or its description (e-mail
# travels in clear more often than not), and the access code is
# never in the same message as the link (the creator passes it on by another channel).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

logger = logging.getLogger("lightbox.sharing")

_HOW_TO_VERIFY = {
    "access_code": "You will also need the access code the sender gives you separately (it is not in this e-mail).",
    "date_of_birth": "You will be asked for the patient's date of birth.",
    "email_code": "When you open the link you can ask for a one-time code, which we send to this address.",
    "account": "You will be asked to sign in to your Lightbox account.",
}


def absolute_url(path: str, request=None) -> str:
    if request is not None:
        return request.build_absolute_uri(path)
    base = (settings.LIGHTBOX_PUBLIC_URL or "http://127.0.0.1:8000").rstrip("/")
    return f"{base}{path}"


def link_path(token: str) -> str:
    return reverse("sharing-link:open", kwargs={"token": token})


def _send(subject: str, body: str, to: str) -> bool:
    if not to:
        return False
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)
    except OSError:
        # SMTP down: the share still exists and the creator can resend; the audit trail knows.
        logger.warning("share e-mail could not be sent", exc_info=True)
        return False
    return True


def send_link(share, token: str, request=None) -> bool:
    """Send the recipient the link (and how they will be asked to prove who they are)."""
    body = (
        "Hello,\n\n"
        "medical images have been shared with you through Lightbox.\n\n"
        f"Open them here: {absolute_url(link_path(token), request)}\n\n"
        f"{_HOW_TO_VERIFY.get(share.verification, '')}\n"
        f"The link works until {share.expires_at:%Y-%m-%d %H:%M} UTC.\n\n"
        "If you did not expect this message, you can ignore it.\n"
    )
    return _send("Images have been shared with you", body, share.recipient_email)


def send_email_code(share, code: str) -> bool:
    """Send a one-time verification code (and nothing else) to the recipient."""
    minutes = settings.LIGHTBOX_SHARE_EMAIL_CODE_SECONDS // 60
    body = f"Your Lightbox one-time code is: {code}\n\nIt is valid for {minutes} minutes and can be used once.\n"
    return _send("Your Lightbox one-time code", body, share.recipient_email)


def _to_creator(share, subject: str, text: str, request=None) -> bool:
    creator = share.created_by
    if creator is None or not creator.is_active:
        return False
    admin_path = reverse("admin:sharing_share_change", args=[share.pk])
    body = f"{text}\n\nManage the share: {absolute_url(admin_path, request)}\n"
    return _send(subject, body, creator.email)


def notify_opened(share, request=None) -> bool:
    """Tell the creator the share was opened (when the share asks for it)."""
    if not share.notify_creator_on_open:
        return False
    return _to_creator(
        share,
        f"Share {share.pk} was opened",
        f"Your share {share.pk} was opened and the recipient verified.",
        request,
    )


def notify_locked(share, request=None) -> bool:
    """Tell the creator the share locked after repeated failed verifications."""
    minutes = settings.LIGHTBOX_SHARE_LOCK_SECONDS // 60
    return _to_creator(
        share,
        f"Share {share.pk} is locked",
        f"Your share {share.pk} was locked for {minutes} minutes after "
        f"{settings.LIGHTBOX_SHARE_LOCK_AFTER} failed verification attempts. If this was not the recipient, "
        "revoke the share.",
        request,
    )
