"""ASGI lifespan handler: start and stop the embedded scheduler with the server."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings


class Lifespan:
    def __init__(self):
        self.scheduler = None

    async def __call__(self, scope, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if settings.LIGHTBOX_EMBEDDED_SCHEDULER:
                    from config.scheduler import EmbeddedScheduler

                    self.scheduler = EmbeddedScheduler()
                    self.scheduler.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.scheduler is not None:
                    await sync_to_async(self.scheduler.stop)()
                await send({"type": "lifespan.shutdown.complete"})
                return
