"""The id of the request being served, for log lines and audit events."""

from __future__ import annotations

import contextvars

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def current_request_id() -> str:
    """Return the id of the request this code runs for, or '-' outside a request."""
    return request_id_var.get()
