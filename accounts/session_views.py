"""The user's own browser sessions: list, end one, sign out everywhere; idle keep-alive and status.

Self-service on the caller's own records only (filtered by request.user), so no policy action is
involved: every signed-in person may see and end their own sessions.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.middleware import allow_before_second_factor
from accounts.models import UserSession
from accounts.sessions import (
    duration_text,
    end_all_sessions,
    end_session,
    find_record,
    hash_session_key,
    seconds_left,
)

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari" too.
_BROWSERS = [
    ("Edge", r"Edg(?:e|A|iOS)?/(\d+)"),
    ("Opera", r"OPR/(\d+)"),
    ("Firefox", r"(?:Firefox|FxiOS)/(\d+)"),
    ("Chrome", r"(?:HeadlessChrome|Chrome|CriOS)/(\d+)"),
    ("Safari", r"Version/(\d+)[\d.]* (?:Mobile/\S+ )?Safari/"),
]
_SYSTEMS = [
    ("iPhone", r"iPhone"),
    ("iPad", r"iPad"),
    ("Android", r"Android"),
    ("Windows", r"Windows"),
    ("ChromeOS", r"CrOS"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("Linux", r"Linux|X11"),
]


def describe_user_agent(user_agent: str) -> str:
    """A short device summary such as 'Firefox 128 on Windows' (or 'Unknown device')."""
    browser = next(
        (f"{name} {match.group(1)}" for name, pattern in _BROWSERS if (match := re.search(pattern, user_agent))),
        None,
    )
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, user_agent)), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or ("Other client" if user_agent else "Unknown device")


def _active_sessions(user):
    """The user's sessions that are not ended, expired or idle beyond doubt."""
    now = timezone.now()
    # last_seen_at is written at most once a minute, hence the extra minute of slack.
    idle_cutoff = now - timedelta(seconds=settings.LIGHTBOX_SESSION_IDLE_SECONDS + 60)
    return UserSession.objects.filter(
        user=user,
        ended_at__isnull=True,
        created_at__gt=now - timedelta(seconds=settings.SESSION_COOKIE_AGE),
        last_seen_at__gt=idle_cutoff,
    ).order_by("-last_seen_at")


def _signed_out_response(request):
    logout(request)
    response = HttpResponseRedirect(resolve_url(settings.LOGOUT_REDIRECT_URL))
    # PRIVACY: zero footprint on shared workstations, as on sign-out.
    response.headers["Clear-Site-Data"] = '"cache", "cookies", "storage"'
    return response


@login_required
@require_GET
def session_list(request):
    current = hash_session_key(request.session.session_key or "")
    rows = [
        {
            "pk": found.pk,
            "device": describe_user_agent(found.user_agent),
            "ip_address": found.ip_address or "unknown",
            "created_at": found.created_at,
            "last_seen_at": found.last_seen_at,
            "is_current": found.key_hash == current,
        }
        for found in _active_sessions(request.user)
    ]
    context = {
        "sessions": rows,
        "idle_text": duration_text(settings.LIGHTBOX_SESSION_IDLE_SECONDS),
        "lifetime_text": duration_text(settings.SESSION_COOKIE_AGE),
    }
    return render(request, "accounts/sessions.html", context)


@login_required
@require_POST
def session_end(request, pk: int):
    # SECURITY: only the caller's own records; another user's id is a 404 like an unknown one.
    found = UserSession.objects.filter(pk=pk, user=request.user, ended_at__isnull=True).first()
    if found is None:
        raise Http404("No such session.")
    end_session(found, "ended_by_user", actor=request.user, request=request)
    if found.key_hash == hash_session_key(request.session.session_key or ""):
        return _signed_out_response(request)
    messages.success(request, "The session was ended. That device is signed out.")
    return HttpResponseRedirect(reverse("accounts:sessions"))


@login_required
@require_POST
def sign_out_everywhere(request):
    end_all_sessions(request.user, reason="signed_out_everywhere", actor=request.user, request=request)
    return _signed_out_response(request)


def _status(request) -> JsonResponse:
    found = find_record(request.session, request.user)
    if found is None:  # the middleware records every signed-in session; this is a race at most
        return JsonResponse({"error": "no session"}, status=401)
    return JsonResponse(
        {
            "idle_seconds": settings.LIGHTBOX_SESSION_IDLE_SECONDS,
            "warning_seconds": settings.LIGHTBOX_SESSION_WARNING_SECONDS,
            **seconds_left(request.session, found),
        }
    )


def _json_login_required(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return JsonResponse({"error": "signed out", "login_url": resolve_url(settings.LOGIN_URL)}, status=401)
        return view(request, *args, **kwargs)

    return wrapped


@allow_before_second_factor
@_json_login_required
@require_POST
def keepalive(request):
    """'Stay signed in': the request itself is activity (SessionPolicyMiddleware); report the new times."""
    return _status(request)


@allow_before_second_factor
@_json_login_required
@require_GET
def status(request):
    """Seconds left (sent with X-Lightbox-Background: 1, so asking does not count as activity)."""
    return _status(request)
