"""Step-up ("sudo mode"): sensitive actions need a second-factor verification from the last few minutes.

Exporting, downloading originals, creating or widening a share, changing roles or policies,
regenerating backup codes and removing an authenticator ask for a fresh code even when the
session passed its second factor at sign-in. The window is LIGHTBOX_STEP_UP_SECONDS.

- Views: `@step_up_required` (sync or async views).
- Consumers and services: `require_fresh_step_up(session) -> bool` (no database access, safe on
  the event loop); record the refusal with `record_step_up_refused` from sync code.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpResponseRedirect, JsonResponse
from django.urls import reverse

from accounts.mfa import step_up_is_fresh
from audit.services import record

STEP_UP_PARAM = "step_up"


def require_fresh_step_up(session) -> bool:
    """True when the session's last second-factor verification is within the step-up window."""
    return step_up_is_fresh(session)


# The name the consumers' helpers were told about; same check.
require_step_up = require_fresh_step_up


def step_up_url(next_path: str) -> str:
    """The verification page that asks for a fresh code, then returns to `next_path`."""
    return f"{reverse('accounts:verify')}?{urlencode({'next': next_path, STEP_UP_PARAM: '1'})}"


def record_step_up_refused(*, user, request=None, action: str = "") -> None:
    """Audit a sensitive action refused for want of a fresh verification."""
    record(
        action="auth.step_up",
        actor=user,
        request=request,
        object_type="user",
        object_id=getattr(user, "pk", ""),
        outcome="denied",
        details={"reason": "verification too old", "for": action[:100]},
    )


def _wants_json(request) -> bool:
    return request.method not in ("GET", "HEAD") or request.headers.get("Accept", "").startswith("application/json")


def step_up_refusal(request):
    """The response for a sensitive request whose verification is too old (audited)."""
    user = getattr(request, "user", None)
    match = getattr(request, "resolver_match", None)
    record_step_up_refused(user=user, request=request, action=match.view_name if match else "")
    if _wants_json(request):
        # A form POST cannot be replayed after a redirect, so it is refused; the page that
        # posted it was reached through the same check and re-verifies before offering it.
        return JsonResponse(
            {"error": "step-up required: confirm with a fresh code", "verify": step_up_url(request.path)},
            status=403,
        )
    return HttpResponseRedirect(step_up_url(request.get_full_path()))


def step_up_required(view):
    """Refuse the view unless the session verified a second factor within the step-up window.

    GET/HEAD: redirect to the verification page (which returns here). Other methods or JSON
    clients: 403 with the verification URL. Anonymous users are left to the view's own
    login_required (put this decorator inside it).
    """

    if iscoroutinefunction(view):

        @wraps(view)
        async def async_wrapped(request, *args, **kwargs):
            # SECURITY: the session is read from the database; never on the event loop.
            if await sync_to_async(step_up_is_fresh)(request.session):
                return await view(request, *args, **kwargs)
            return await sync_to_async(step_up_refusal)(request)

        return async_wrapped

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        # SECURITY: a stolen or unattended session cannot do sensitive things without a new code.
        if step_up_is_fresh(request.session):
            return view(request, *args, **kwargs)
        return step_up_refusal(request)

    return wrapped
