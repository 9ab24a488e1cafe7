"""A per-address failure budget for share links and verifications (Django cache counters).

# SECURITY: link tokens carry 256 bits, so guessing one is hopeless anyway; the budget keeps a
# scanner from even trying at volume, and bounds guessing of the shorter access codes across
# shares. Every address gets LIGHTBOX_SHARE_IP_FAILURES failures per fixed window; after that the
# share endpoints answer 429 before any database lookup.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache

from audit.services import client_ip

logger = logging.getLogger("lightbox.sharing")


def _key(request) -> str:
    window = int(time.time() // settings.LIGHTBOX_SHARE_IP_WINDOW_SECONDS)
    return f"sharing:ip-failures:{client_ip(request) or 'unknown'}:{window}"


def is_blocked(request) -> bool:
    """True when this address used up its failure budget in the current window."""
    return (cache.get(_key(request)) or 0) >= settings.LIGHTBOX_SHARE_IP_FAILURES


def note_failure(request) -> int:
    """Count one failure against this address; return the count in the current window."""
    key = _key(request)
    cache.add(key, 0, timeout=settings.LIGHTBOX_SHARE_IP_WINDOW_SECONDS * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=settings.LIGHTBOX_SHARE_IP_WINDOW_SECONDS * 2)
        count = 1
    if count == settings.LIGHTBOX_SHARE_IP_FAILURES:
        # One line per address and window; the 429s that follow are not logged one by one.
        logger.warning("share failure budget used up; answering 429 until the window ends")
    return count


def too_many(request):
    """429, cheaply: a scanner gets a tiny page and does not fill the log (one line per address and window)."""
    from django.http import HttpResponse

    response = HttpResponse(
        "<!doctype html><title>Too many attempts</title><h1>Too many attempts</h1>"
        "<p>Too many attempts from your network. Wait a while and try again.</p>",
        status=429,
    )
    response.headers["Retry-After"] = str(settings.LIGHTBOX_SHARE_IP_WINDOW_SECONDS)
    response.headers["Cache-Control"] = "no-store"
    response._has_been_logged = True  # skip Django's per-response warning; note_failure logged the first
    return response
