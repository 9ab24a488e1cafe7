"""The Celery app. With REDIS_URL it uses Redis as broker; without, tasks run in-process."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("lightbox")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
