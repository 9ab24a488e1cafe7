"""Route one URL to different views by HTTP method (DICOMweb reuses paths across services)."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.http import HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt


def by_method(**views):
    """Return an async view that calls views[request.method]; 405 for any other method.

    CSRF is exempted here because API clients send bearer tokens; the STOW view enforces CSRF
    itself when the caller is a browser session (see stow.py).
    """
    allowed = sorted(views)

    async def dispatch(request, *args, **kwargs):
        view = views.get(request.method)
        if view is None:
            return HttpResponseNotAllowed(allowed)
        if iscoroutinefunction(view):
            return await view(request, *args, **kwargs)
        return await sync_to_async(view)(request, *args, **kwargs)

    return csrf_exempt(dispatch)
