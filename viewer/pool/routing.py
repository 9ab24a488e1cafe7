"""Which worker serves a source: sticky, so its frame cache hits; balanced, so no core idles."""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["StickyRouter"]

# Far more keys than the worker caches can hold frames for (~1,000 CT slices in 512 MiB), at
# ~150 bytes each; a key forgotten and seen again may land on another worker: one re-decode.
DEFAULT_MEMORY = 1 << 16


class StickyRouter:
    """Assign each source key to a worker the first time it is seen, round-robin, and keep it there.

    A hash of the key (crc32 % workers) was stable but uneven: the 8 slices of a small series
    split 5:3 between two workers left one core idle a third of the time under load. Round-robin
    over new keys puts neighbouring slices of a stack on alternate workers, so scrolling keeps
    every worker equally busy, while each key still always meets its own worker's cache.

    Parameters
    ----------
    workers : int
    memory : int
        Keys remembered (least recently used forgotten first).
    """

    def __init__(self, workers: int, memory: int = DEFAULT_MEMORY) -> None:
        if workers < 1 or memory < 1:
            raise ValueError("workers and memory: expected >= 1")
        self.workers = workers
        self._memory = memory
        self._assigned: OrderedDict[str, int] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()

    def worker_for(self, key: str) -> int:
        """Return the worker index for `key` (assigning the next worker if it is new)."""
        with self._lock:
            index = self._assigned.get(key)
            if index is not None:
                self._assigned.move_to_end(key)
                return index
            index = self._next
            self._next = (index + 1) % self.workers
            self._assigned[key] = index
            if len(self._assigned) > self._memory:
                self._assigned.popitem(last=False)
            return index

    def __len__(self) -> int:
        return len(self._assigned)
