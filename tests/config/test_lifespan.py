"""The ASGI lifespan starts the render workers in the background and the server shuts down cleanly."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from config.lifespan import Lifespan


@pytest.fixture(autouse=True)
def _unfreeze():
    """Start-up freezes the heap (gc.freeze); give the objects back to the collector afterwards."""
    yield
    gc.unfreeze()


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


def test_startup_takes_the_startup_heap_out_of_the_collectors_sweeps(settings):
    # Without it the first request that allocated a lot paid a full collection over every
    # object the imports left (115 ms of a first frame on a just-started server)
    settings.LIGHTBOX_EMBEDDED_SCHEDULER = False
    gc.unfreeze()
    messages = asyncio.Queue()

    async def send(message):
        pass

    async def run():
        await messages.put({"type": "lifespan.startup"})
        await messages.put({"type": "lifespan.shutdown"})
        await Lifespan()({"type": "lifespan"}, messages.get, send)

    assert gc.get_freeze_count() == 0
    asyncio.run(run())
    assert gc.get_freeze_count() > 10_000  # Django, the apps, numpy, pydicom...
