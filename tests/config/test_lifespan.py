"""The ASGI lifespan starts the render workers in the background and the server shuts down cleanly."""

from __future__ import annotations

import asyncio
import time

from config.lifespan import Lifespan


def test_startup_warms_the_render_pool_without_waiting_for_it(settings):
    from viewer import rendering

    settings.LIGHTBOX_EMBEDDED_SCHEDULER = False
    rendering.close_pool()
    messages = asyncio.Queue()
    sent = []

    async def send(message):
        sent.append(message["type"])

    async def run():
        await messages.put({"type": "lifespan.startup"})
        await messages.put({"type": "lifespan.shutdown"})
        await Lifespan()({"type": "lifespan"}, messages.get, send)

    started = time.monotonic()
    asyncio.run(run())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    deadline = started + 30
    while rendering._pool is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rendering._pool is not None and all(pid for pid in rendering._pool.worker_pids())
