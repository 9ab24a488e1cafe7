"""Shared fixtures: fast hashing, isolated data dir, personas, a live ASGI server."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

# Django-dependent imports live inside the fixtures, so Django-free suites (tests/render, the
# blob store, the generator) can run with `-p no:django`.


@pytest.fixture(autouse=True)
def _test_settings(request, tmp_path):
    if not request.config.pluginmanager.hasplugin("django"):
        yield
        return
    settings = request.getfixturevalue("settings")
    # Row ids restart between tests, so per-process caches keyed by them must too.
    from archive.storage import forget_cached_keys
    from config.recheck_cache import RecheckCache
    from viewer import rendering

    forget_cached_keys()
    rendering._key_ids.clear()
    RecheckCache.clear_all()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    if not os.environ.get("REDIS_URL"):
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    yield


@pytest.fixture
def org(db):
    from tests import factories

    return factories.make_organization(name="St Elsewhere")


@pytest.fixture
def other_org(db):
    from tests import factories

    return factories.make_organization(name="Other Hospital")


@pytest.fixture
def owner(org):
    """A clinician in `org`."""
    from accounts.models import Role
    from tests import factories

    return factories.make_user(email="owner@example.org", organization=org, role=Role.CLINICIAN)


@pytest.fixture
def colleague(org):
    """Another clinician in the same organisation."""
    from accounts.models import Role
    from tests import factories

    return factories.make_user(email="colleague@example.org", organization=org, role=Role.CLINICIAN)


@pytest.fixture
def outsider(other_org):
    """A clinician of another organisation."""
    from accounts.models import Role
    from tests import factories

    return factories.make_user(email="outsider@example.org", organization=other_org, role=Role.CLINICIAN)


@pytest.fixture
def auditor(org):
    from accounts.models import Role
    from tests import factories

    return factories.make_user(email="auditor@example.org", organization=org, role=Role.AUDITOR, is_staff=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveASGIServer:
    """Uvicorn serving the real ASGI application from a thread of the test process."""

    def __init__(self):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            "config.asgi:application",
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            lifespan="off",
            ws="websockets-sansio",
            # Frames are JPEG/PNG already: per-message deflate would only burn CPU (5x fewer frames/s).
            ws_per_message_deflate=False,
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live ASGI server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        # Async views ran their ORM calls on asgiref's shared thread-sensitive executor; close the
        # connections that thread opened, or PostgreSQL cannot drop the test database at the end.
        from asgiref.sync import SyncToAsync
        from django.db import connections

        SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=10)


@pytest.fixture
def live_server_url(transactional_db, settings):
    """Serve the app on a free loopback port for real clients (browsers, DICOMweb, tus)."""
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    server = LiveASGIServer()
    server.start()
    yield server.url
    server.stop()
