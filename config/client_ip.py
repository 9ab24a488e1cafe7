"""The address of the client a request or websocket comes from.

Behind a reverse proxy we run (LIGHTBOX_TRUSTED_PROXY), REMOTE_ADDR is the proxy; the client is
the right-most X-Forwarded-For entry, the one our proxy appended. Entries to its left were sent
by the client and can say anything, so they are never used.
"""

from __future__ import annotations

import contextvars
import ipaddress

from django.conf import settings

client_ip_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_ip", default=None)


def _valid(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def _pick(remote_addr: str | None, forwarded_for: str | None) -> str | None:
    if settings.TRUSTED_PROXY and forwarded_for:
        return _valid(forwarded_for.split(",")[-1])
    return _valid(remote_addr)


def client_ip_of_request(request) -> str | None:
    return _pick(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def client_ip_of_scope(scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1") or None
    client = scope.get("client") or (None, None)
    return _pick(client[0], forwarded)


def current_client_ip() -> str | None:
    """The client address of the request or socket this code serves (None outside one)."""
    return client_ip_var.get()
