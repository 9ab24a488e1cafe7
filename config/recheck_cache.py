"""Short-lived, in-process memory of access decisions for hot read paths.

A WADO-RS client fetching rendered frames sends hundreds of requests a second with the same
token for the same few instances; re-reading the token, the caller's memberships, access rules
and grants for each one cost ~3 ms of database work per frame. `RecheckCache` remembers such an
answer for `ACCESS_RECHECK_SECONDS` (the same interval at which open viewer sockets re-check
their session), so a revocation, an expiry or a policy change takes effect within that time in
every process, and at once in the process that made the change (its signal handlers clear the
caches).

SECURITY: process memory only, never a shared cache: values may hold model instances and the
render source, which carries an unwrapped data key.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any

from cachetools import TTLCache

__all__ = ["ACCESS_RECHECK_SECONDS", "MISSING", "RecheckCache"]

ACCESS_RECHECK_SECONDS = 2.0
MISSING: Any = object()


class RecheckCache:
    """A thread-safe TTL map; `clear_all()` empties every instance (used by signal receivers).

    Parameters
    ----------
    maxsize : int
        Entries kept (least recently used dropped first).
    ttl : float
        Seconds an entry is trusted.
    """

    _instances: list[RecheckCache] = []

    def __init__(self, maxsize: int = 10_000, ttl: float = ACCESS_RECHECK_SECONDS) -> None:
        self._data: TTLCache = TTLCache(maxsize=maxsize, ttl=ttl)
        self._lock = threading.Lock()
        RecheckCache._instances.append(self)

    def get(self, key: Hashable) -> Any:
        """Return the remembered value, or ``MISSING``."""
        with self._lock:
            return self._data.get(key, MISSING)

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    @classmethod
    def clear_all(cls, *args: Any, **kwargs: Any) -> None:
        """Forget every remembered decision (signature fits a Django signal receiver)."""
        for cache in cls._instances:
            cache.clear()
