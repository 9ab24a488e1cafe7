"""Whether a session has passed its second factor, and when (for step-up).

One session flag records the method and the time of the last second-factor verification. It is
set by a django-otp device (TOTP, passkey, backup code) through `mark_verified`, or by an OpenID
Connect sign-in whose identity provider asserted MFA. The middleware, the websocket guard, the
admin site and the step-up check all read it through this module.
"""

from __future__ import annotations

import time

import django_otp
from django.conf import settings

SESSION_METHOD = "lightbox.second_factor.method"
SESSION_VERIFIED_AT = "lightbox.second_factor.at"


def mark_verified(request, *, method: str, device=None) -> None:
    """Record a successful second factor on this session (also django-otp's own flag)."""
    if device is not None:
        django_otp.login(request, device)
    request.session[SESSION_METHOD] = method
    request.session[SESSION_VERIFIED_AT] = time.time()


def session_is_verified(session, user) -> bool:
    """True when `session` belongs to a signed-in user who passed a second factor in it."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(session.get(SESSION_METHOD)) and session.get(SESSION_VERIFIED_AT) is not None


def is_verified(request) -> bool:
    return session_is_verified(request.session, getattr(request, "user", None))


def seconds_since_verification(session) -> float | None:
    at = session.get(SESSION_VERIFIED_AT)
    return None if at is None else max(0.0, time.time() - float(at))


def step_up_is_fresh(session) -> bool:
    """True when the last second-factor verification is recent enough for a sensitive action."""
    age = seconds_since_verification(session)
    return age is not None and age <= settings.LIGHTBOX_STEP_UP_SECONDS


def has_second_factor_device(user) -> bool:
    """True when the user has a confirmed authenticator (TOTP app or passkey).

    Backup codes do not count: they exist to recover an authenticator, not to replace one.
    """
    from accounts.models import BackupCodeDevice

    return any(
        not isinstance(device, BackupCodeDevice) for device in django_otp.devices_for_user(user, confirmed=True)
    )
