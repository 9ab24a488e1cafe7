"""The second-factor gate: a signed-in user who has not passed a second factor reaches only the
pages that let them do so (verification, enrolment, sign-out) and static files.

Views opt out with `@allow_before_second_factor`; third-party flows that must run before the
second factor (OIDC callback, passkey verification) are listed by path prefix in
LIGHTBOX_BEFORE_SECOND_FACTOR_PREFIXES. Everything else is closed by default.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import reverse

from accounts.mfa import has_second_factor_device, is_verified

_ATTRIBUTE = "lightbox_before_second_factor"


def allow_before_second_factor(view):
    """Mark a view as reachable by a signed-in user whose session has no second factor yet."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        return view(*args, **kwargs)

    setattr(wrapped, _ATTRIBUTE, True)
    return wrapped


class RequireSecondFactorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or is_verified(request):
            return None
        if getattr(view_func, _ATTRIBUTE, False) or getattr(getattr(view_func, "view_class", None), _ATTRIBUTE, False):
            return None
        if request.path.startswith(tuple(settings.LIGHTBOX_BEFORE_SECOND_FACTOR_PREFIXES)):
            return None
        target = "accounts:verify" if has_second_factor_device(user) else "accounts:enrol"
        if request.method not in ("GET", "HEAD") or request.headers.get("Accept", "").startswith("application/json"):
            return JsonResponse(
                {"error": "second factor required", "verify": reverse(target)}, status=403
            )
        return HttpResponseRedirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")
