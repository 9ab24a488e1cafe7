"""Periodic work for the embedded (single process, no Celery beat) deployment.

Production runs Celery beat with `CELERY_BEAT_SCHEDULE`; `make run` has no beat, so the web
process runs the same schedule in one daemon thread, started by the ASGI lifespan handler.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger("lightbox.scheduler")


class EmbeddedScheduler:
    """Run each task of CELERY_BEAT_SCHEDULE in-process at its interval until stopped."""

    def __init__(self, schedule: dict | None = None, tick: float = 1.0):
        self.schedule = schedule if schedule is not None else settings.CELERY_BEAT_SCHEDULE
        self.tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lightbox-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def resolve_tasks(self) -> dict:
        """Return {entry name: task} for the schedule, importing every app's ``tasks`` module.

        ``autodiscover_tasks`` is lazy: only a Celery worker imports the task modules, so a web
        process that looked tasks up by name without this would find none of them.

        Raises
        ------
        celery.exceptions.NotRegistered
            A schedule entry names a task no app defines.
        """
        from config.celery import app

        app.loader.import_default_modules()
        return {name: app.tasks[entry["task"]] for name, entry in self.schedule.items()}

    def _run(self) -> None:
        try:
            tasks = self.resolve_tasks()
        except Exception:  # process edge: say so once instead of failing every tick
            logger.exception("the embedded scheduler could not load its tasks")
            return
        due = {name: time.monotonic() for name in self.schedule}
        while not self._stop.wait(self.tick):
            for name, entry in self.schedule.items():
                if time.monotonic() < due[name]:
                    continue
                due[name] = time.monotonic() + float(entry["schedule"])
                try:
                    tasks[name].apply()
                except Exception:  # process edge: one failing task must not stop the others
                    logger.exception("scheduled task %s failed", name)
                finally:
                    close_old_connections()
