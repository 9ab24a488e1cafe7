"""A least-recently-used cache bounded by bytes, held in one worker's memory.

# PRIVACY: decoded frames are decrypted pixel data; this cache lives only in the worker
# process's memory and is never written to disk (workers also disable core dumps).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["ByteLRU"]


class ByteLRU:
    """LRU mapping whose entries carry a size; the total never exceeds ``max_bytes``.

    Not thread-safe: each worker process is single-threaded.

    Parameters
    ----------
    max_bytes : int
        Budget for the sum of the entries' sizes; 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes: expected an integer >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @property
    def nbytes(self) -> int:
        """Sum of the sizes of the entries held now."""
        return self._bytes

    def get(self, key: Hashable) -> Any | None:
        """Return the value under `key` (marking it most recently used), else None.

        Parameters
        ----------
        key : Hashable

        Returns
        -------
        Any | None
        """
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
        """Store `value` under `key` as most recently used, evicting the oldest to fit.

        Also re-accounts an existing entry whose size changed (a pyramid that grew).

        Parameters
        ----------
        key : Hashable
        value : Any
        nbytes : int
            Memory the value holds.

        Returns
        -------
        bool
            False when the value alone exceeds ``max_bytes`` (then it is not kept).
        """
        if nbytes < 0:
            raise ValueError(f"nbytes: expected >= 0, got {nbytes}")
        self.pop(key)
        if nbytes > self.max_bytes:
            return False
        while self._bytes + nbytes > self.max_bytes:
            _, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size
            self.evictions += 1
        self._entries[key] = (value, nbytes)
        self._bytes += nbytes
        return True

    def pop(self, key: Hashable) -> Any | None:
        """Remove `key`; return its value or None.

        Parameters
        ----------
        key : Hashable

        Returns
        -------
        Any | None
        """
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry[1]
        return entry[0]

    def clear(self) -> None:
        """Drop every entry (statistics are kept)."""
        self._entries.clear()
        self._bytes = 0

    def stats(self) -> dict[str, int]:
        """Return hits, misses, evictions, entries, bytes and max_bytes.

        Returns
        -------
        dict[str, int]
        """
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "entries": len(self._entries),
            "bytes": self._bytes,
            "max_bytes": self.max_bytes,
        }
