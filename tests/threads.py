"""Run a function on several threads released at the same moment (concurrency tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def run_concurrently(count: int, target: Callable[[int], Any], *, timeout: float = 60.0) -> tuple[dict[int, Any], list]:
    """Call ``target(n)`` for n in range(count), each on its own thread, all started together.

    Returns ({n: result}, [exceptions]); each thread closes its database connections.
    """
    barrier = threading.Barrier(count)
    results: dict[int, Any] = {}
    errors: list = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = target(n)
        except Exception as exc:  # collected for the caller to assert on
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results, errors
