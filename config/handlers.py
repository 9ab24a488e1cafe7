"""A lean Django ASGI handler for machine clients (/dicomweb/).

Django runs each `MiddlewareMixin` middleware's hooks through `sync_to_async` on one shared
thread, twice per request; with a dozen of them a rendered frame spent ~7 ms hopping threads
and the whole server capped near 100 requests/s. API clients need neither sessions'
middleware, CSRF, messages nor clickjacking headers on HTML, so their requests take a short,
fully async chain; `archive.dicomweb.auth` authenticates bearer tokens and browser sessions
itself, and `ApiSecurityHeadersMiddleware` sets the same security headers.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

API_MIDDLEWARE = [
    "config.middleware.RequestIdMiddleware",
    "config.middleware.ApiSecurityHeadersMiddleware",
]


class LeanASGIHandler(ASGIHandler):
    """Django's ASGI handler with `API_MIDDLEWARE` instead of `settings.MIDDLEWARE`."""

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
