"""Project-wide middleware: request ids and the no-store default."""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from config.client_ip import client_ip_of_request, client_ip_var
from config.request_context import request_id_var


class HybridMiddleware(ABC):
    """Base of middleware that runs in sync and async chains alike, without thread hops.

    Subclasses define ``handle(request)`` for a sync chain and ``__acall__(request)`` for an
    async one; Django picks by the chain it builds (``markcoroutinefunction``).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return self.handle(request)

    @abstractmethod
    def handle(self, request):
        """The middleware in a sync chain: return the response."""

    @abstractmethod
    async def __acall__(self, request):
        """The middleware in an async chain: return the response."""


class RequestIdMiddleware(HybridMiddleware):
    """Give each request a random id, expose it to logs and audit, echo it in X-Request-ID."""

    def _start(self, request):
        # SECURITY: never trust a client-supplied id; it would let a caller forge log correlation.
        request.request_id = uuid.uuid4().hex
        # The policy's network rules read the client address from here (accounts.policy).
        return request_id_var.set(request.request_id), client_ip_var.set(client_ip_of_request(request))

    @staticmethod
    def _finish(tokens):
        request_id_var.reset(tokens[0])
        client_ip_var.reset(tokens[1])

    def handle(self, request):
        tokens = self._start(request)
        try:
            response = self.get_response(request)
        finally:
            self._finish(tokens)
        response.headers["X-Request-ID"] = request.request_id
        return response

    async def __acall__(self, request):
        tokens = self._start(request)
        try:
            response = await self.get_response(request)
        finally:
            self._finish(tokens)
        response.headers["X-Request-ID"] = request.request_id
        return response


class NoStoreMiddleware(HybridMiddleware):
    """Send `Cache-Control: no-store` unless a response chose its own caching.

    # PRIVACY: almost every page here carries PHI, so not caching is the default; only static
    # assets (served before this middleware by WhiteNoise) opt into caching.
    """

    @staticmethod
    def _apply(response):
        if "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    def handle(self, request):
        return self._apply(self.get_response(request))

    async def __acall__(self, request):
        return self._apply(await self.get_response(request))


class ApiSecurityHeadersMiddleware:
    """The browser security baseline for API responses, set without thread hops.

    Mirrors what SecurityMiddleware, the CSP middleware and XFrameOptionsMiddleware send on
    pages; an API response is never a document, so its CSP forbids everything.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        response = await self.get_response(request)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "no-referrer")  # an API response is never a page with links
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Cache-Control", "no-store")
        if settings.SECURE_HSTS_SECONDS and request.is_secure():
            value = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                value += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                value += "; preload"
            headers.setdefault("Strict-Transport-Security", value)
        return response
