"""ASGI lifespan handler: start the render workers and the embedded scheduler with the server."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

from asgiref.sync import sync_to_async
from django.conf import settings

logger = logging.getLogger("lightbox.lifespan")


def _warm_render_pool(loop: asyncio.AbstractEventLoop) -> None:
    from viewer.rendering import get_pool

    try:
        get_pool(loop)
    except Exception:  # process edge: the first request will start (or report) the pool instead
        logger.warning("could not start the render pool at start-up", exc_info=True)


def freeze_startup_heap() -> None:
    """Take the objects alive after start-up out of the garbage collector's sweeps (``gc.freeze``).

    Importing Django, the apps and the codecs leaves ~170,000 long-lived objects that will never
    be garbage. Without this, the first request that allocates a lot (opening a 200-slice series
    decodes 200 metadata documents) triggered a full collection over all of them: 115 ms of a
    first frame on a just-started server. Later full collections stay cheaper too.
    """
    gc.collect()
    gc.freeze()


class Lifespan:
    def __init__(self):
        self.scheduler = None

    async def __call__(self, scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Start the render workers now, in the background, so the first viewer does not
                # wait for processes to start (that was most of a first frame on a fresh server).
                threading.Thread(target=_warm_render_pool, args=(asyncio.get_running_loop(),),
                                 name="lightbox-pool-warmup", daemon=True).start()
                if settings.LIGHTBOX_EMBEDDED_SCHEDULER:
                    from config.scheduler import EmbeddedScheduler

                    self.scheduler = EmbeddedScheduler()
                    self.scheduler.start()
                freeze_startup_heap()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.scheduler is not None:
                    await sync_to_async(self.scheduler.stop)()
                await send({"type": "lifespan.shutdown.complete"})
                return
