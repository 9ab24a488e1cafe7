"""A lean Django ASGI handler for machine clients (/dicomweb/).

Django runs each `MiddlewareMixin` middleware's hooks through `sync_to_async` on one shared
thread, twice per request; with a dozen of them a rendered frame spent ~7 ms hopping threads
and the whole server capped near 100 requests/s. API clients need neither sessions'
middleware, CSRF, messages nor clickjacking headers on HTML, so their requests take a short,
fully async chain; `archive.dicomweb.auth` authenticates bearer tokens and browser sessions
itself, and `ApiSecurityHeadersMiddleware` sets the same security headers.
"""

from __future__ import annotations

import functools

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve

API_MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.ApiSecurityHeadersMiddleware",
]


def resolve_scope(scope):
    """Resolve an ASGI scope's path (without its root path) to a URL match, or None."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        return resolve(path)
    except Resolver404:
        return None


def _serves_async_view(scope) -> bool:
    return _path_serves_async_view(scope.get("path", ""), scope.get("root_path", ""))


@functools.lru_cache(maxsize=4096)
def _path_serves_async_view(path: str, root_path: str) -> bool:
    # A frame client asks for the same few URLs hundreds of times a second.
    match = resolve_scope({"path": path, "root_path": root_path})
    return match is not None and iscoroutinefunction(match.func)


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with `API_MIDDLEWARE` instead of `settings.MIDDLEWARE`.

    Requests for async views skip Django's per-request ``ThreadSensitiveContext``: it starts
    and joins a thread for every request (~0.3 ms, a tenth of a rendered frame's budget) only
    to run the request signals' receivers. Async DICOMweb views do their database work with
    ``thread_sensitive=False`` anyway, so what is left for that thread (closing the signals'
    connections, ``response.close``) runs on asgiref's shared sync thread instead. Sync views
    (QIDO) keep their own thread per request, so they still run in parallel.
    """

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _serves_async_view(scope):
            await self.handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap it only while the chain is built, at start-up.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = full


class PathRouter:
    """Send HTTP requests under `prefix` to `api_app`, everything else to `default_app`."""

    def __init__(self, default_app, api_app, prefix: str = "/dicomweb/"):
        self.default_app = default_app
        self.api_app = api_app
        self.prefix = prefix

    async def __call__(self, scope, receive, send):
        app = self.api_app if scope.get("path", "").startswith(self.prefix) else self.default_app
        return await app(scope, receive, send)
