"""Who is calling a DICOMweb endpoint: a bearer API token, or a signed-in browser session."""

from __future__ import annotations

import functools

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import JsonResponse

from accounts.tokens import authenticate_token, recent_token
from audit.services import record


def _unauthorised(message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="lightbox-dicomweb"'
    return response


def resolve_caller(request) -> tuple[object | None, str | None]:
    """Set request.user / request.api_token from the Authorization header; return (user, error)."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    request.api_token = None
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "use 'Authorization: Bearer <token>'"
        api_token = authenticate_token(token.strip())
        if api_token is None:
            record(action="dicomweb.auth_failed", request=request, outcome="denied", object_type="api_token")
            return None, "the API token is unknown, expired or revoked"
        request.user = api_token.user
        request.api_token = api_token
        return api_token.user, None
    user = getattr(request, "user", None)
    if user is None:
        user = _session_user(request)
    if user is not None and user.is_authenticated:
        from accounts.mfa import is_verified

        # SECURITY: a browser session counts only after its second factor, as on every page.
        if not is_verified(request):
            return None, "second factor required: complete sign-in verification first"
        return user, None
    return None, "authentication required"


def recent_bearer_caller(request) -> bool:
    """Set request.user from a bearer token found usable moments ago (no database work).

    False when there is no such token; the caller then runs the full ``resolve_caller``.
    """
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    api_token = recent_token(token.strip())
    if api_token is None:
        return False
    request.user = api_token.user
    request.api_token = api_token
    return True


def _session_user(request):
    """Authenticate a browser session on the lean API chain (no session middleware there)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user
    from django.contrib.auth.models import AnonymousUser

    session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    request.user = get_user(request) if session_key else AnonymousUser()
    from accounts.sessions import session_check

    # SECURITY: no SessionPolicyMiddleware on this chain, so refuse idle, too old or
    # ended-elsewhere sessions here (read-only: API calls are not user activity).
    if session_check(request) is not None:
        request.user = AnonymousUser()
    return request.user


def dicomweb_view(*, write: bool = False):
    """Decorate a DICOMweb view: 401 without a valid caller, 403 when a read token writes."""

    def decorate(view):
        def check(request):
            user, error = resolve_caller(request)
            if user is None:
                return _unauthorised(error or "authentication required")
            if write and request.api_token is not None and not request.api_token.can_write:
                return JsonResponse({"error": "this API token is read-only"}, status=403)
            return None

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request, *args, **kwargs):
                refusal = None
                # A token checked moments ago needs no thread hop (hot path: rendered frames).
                if not recent_bearer_caller(request) or (write and not request.api_token.can_write):
                    # thread_sensitive=False: API requests must not queue on Django's one sync thread.
                    refusal = await sync_to_async(check, thread_sensitive=False)(request)
                return refusal or await view(request, *args, **kwargs)

            return async_wrapper

        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            return check(request) or view(request, *args, **kwargs)

        return wrapper

    return decorate
