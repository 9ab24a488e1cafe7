"""Page data for the idle-timeout warning (static/accounts/session_idle.js), via json_script."""

from __future__ import annotations

from django import template
from django.conf import settings
from django.middleware.csrf import get_token
from django.shortcuts import resolve_url
from django.urls import reverse

from accounts.mfa import session_is_verified
from accounts.sessions import BACKGROUND_HEADER, find_record, seconds_left

register = template.Library()


@register.simple_tag(takes_context=True)
def session_page_data(context) -> dict | None:
    """The signed-in session's timings and endpoints, or None (anonymous, or no request)."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if request is None or user is None or not user.is_authenticated or not hasattr(request, "session"):
        return None
    found = find_record(request.session, user)
    if found is None:
        return None
    return {
        "idle_seconds": settings.LIGHTBOX_SESSION_IDLE_SECONDS,
        "warning_seconds": settings.LIGHTBOX_SESSION_WARNING_SECONDS,
        **seconds_left(request.session, found),
        "status_url": reverse("accounts:session_status"),
        "keepalive_url": reverse("accounts:session_keepalive"),
        "login_url": resolve_url(settings.LOGIN_URL),
        # The socket guard admits only sessions past the second factor; don't knock before that.
        "socket_path": "/ws/session/" if session_is_verified(request.session, user) else None,
        "background_header": BACKGROUND_HEADER,
        # The CSRF cookie is HttpOnly, so the keep-alive POST takes the token from the page.
        "csrf_token": get_token(request),
    }
