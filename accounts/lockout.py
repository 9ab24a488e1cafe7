"""Password lockout with django-axes: the hooks our settings point at, and the audit of lockouts.

Settings (config/settings.py): AXES_FAILURE_LIMIT failures per account *or* per client address
lock sign-in for AXES_COOLOFF_TIME. Axes asks this module for the client address (the same
trusted-proxy rule as the audit trail), for the normalised account name, and for the response
a locked-out sign-in gets: the sign-in page with a plain message, status 429.
"""

from __future__ import annotations

from datetime import timedelta

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib import messages
from django.dispatch import receiver
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

from audit.services import client_ip as _client_ip
from audit.services import record


def client_ip(request) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: X-Forwarded-For only behind LIGHTBOX_TRUSTED_PROXY (last hop)."""
    return _client_ip(request)


def username(request, credentials) -> str | None:
    """AXES_USERNAME_CALLABLE: the e-mail tried, lower-cased like the user model stores it.

    # SECURITY: without this, OWNER@… and owner@… would count as two accounts and double the
    # number of guesses an attacker gets before the per-account lock.
    """
    field = settings.AXES_USERNAME_FORM_FIELD
    value = (credentials or {}).get(field)
    if value is None and request is not None:
        value = getattr(request, "POST", {}).get(field)
    if value is None:
        return None
    return str(value).strip().lower()[:254] or None


def cooloff() -> timedelta:
    value = settings.AXES_COOLOFF_TIME
    return value if isinstance(value, timedelta) else timedelta(hours=float(value))


def lockout_message() -> str:
    minutes = max(1, round(cooloff().total_seconds() / 60))
    return (
        f"Too many failed sign-ins. Try again in {minutes} minute{'' if minutes == 1 else 's'} "
        "or contact your administrator."
    )


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the sign-in page again, with the lockout message, status 429."""
    from accounts.forms import SignInForm

    messages.error(request, lockout_message())
    next_url = request.POST.get("next", "") if request.method == "POST" else ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    return render(
        request,
        "accounts/sign_in.html",
        {"form": SignInForm(request), "next": next_url, "locked_out": True},
        status=429,
    )


@receiver(user_locked_out, dispatch_uid="lightbox.lockout.audit")
def _audit_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    # Axes sends this when the limit is reached and again for each attempt refused while locked.
    # PRIVACY/SECURITY: the e-mail tried is kept (as for auth.login_failed), never the password.
    reached_now = getattr(request, "axes_failures_since_start", None) is not None
    record(
        action="auth.lockout",
        actor=None,
        request=request,
        outcome="denied",
        object_type="user",
        details={
            "attempted_email": (username or "")[:254],
            "event": "locked" if reached_now else "refused_while_locked",
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_minutes": round(cooloff().total_seconds() / 60),
        },
        source_ip=ip_address,
    )
