"""/healthz: is the database, the channel layer and the data directory usable?"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import tempfile

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _channel_round_trip() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel("healthz.")
    marker = secrets.token_hex(8)
    await layer.send(channel, {"type": "healthz.ping", "marker": marker})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    if message.get("marker") != marker:
        raise RuntimeError("channel layer returned a different message")


def _check_channel_layer() -> None:
    async_to_sync(_channel_round_trip)()


def _check_data_dir() -> None:
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.DATA_DIR, prefix=".healthz-") as handle:
        handle.write(b"ok")
        handle.flush()
        os.fsync(handle.fileno())


logger = logging.getLogger("lightbox.health")

CHECKS = {"database": _check_database, "channel_layer": _check_channel_layer, "data_dir": _check_data_dir}


@require_GET
def healthz(request):
    """Return 200 when every part works, else 503 naming the parts that failed (no details)."""
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception:  # process edge: a health probe must answer, whatever broke
            logger.exception("health check %s failed", name)
            results[name] = "failed"
    healthy = all(value == "ok" for value in results.values())
    return JsonResponse({"status": "ok" if healthy else "failed", "checks": results}, status=200 if healthy else 503)
