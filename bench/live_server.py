"""A throwaway Lightbox server for the HTTP/websocket/browser benchmarks.

Each bench gets a fresh data directory and SQLite database, runs its own setup code (as a
separate Python process, printing one JSON line the bench reads), then a uvicorn server on a
free loopback port, which is stopped and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Setup code starts with this: Django, and a clinician of a fresh organisation (`org`, `user`).
SETUP_PRELUDE = r"""
import io, json, os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from accounts.models import Organization, Membership, User
org = Organization.objects.create(name="Bench", slug="bench")
user = User.objects.create_user(email="bench@lightbox.test", password=None)
Membership.objects.create(user=user, organization=org, role="clinician")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(port: int) -> None:
    for _ in range(400):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the bench server on port {port} did not become healthy")


@contextlib.contextmanager
def bench_server(
    setup: str, *setup_args: str, uvicorn_args: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[tuple[int, dict, int]]:
    """Yield (port, the setup's JSON, the server's pid) for a server over a fresh data dir (embedded mode).

    `setup` runs after SETUP_PRELUDE and must print one JSON line last. Websocket compression is
    off unless `uvicorn_args` says otherwise, as in `make run`: frames are JPEG/PNG already.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="lightbox-bench-"))
    server_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    server_env.update({"LIGHTBOX_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    server_env.update(env or {})
    python = sys.executable
    try:
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=server_env, check=True)
        done = subprocess.run([python, "-c", SETUP_PRELUDE + setup, *setup_args], cwd=ROOT, env=server_env,
                              check=True, capture_output=True, text=True)
        config = json.loads(done.stdout.strip().splitlines()[-1])
        port = free_port()
        defaults = ("--ws", "websockets-sansio", "--ws-per-message-deflate", "false")
        server = subprocess.Popen(
            [python, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--log-level", "warning", "--lifespan", "on", *defaults, *uvicorn_args],
            cwd=ROOT, env=server_env,
        )
        try:
            _wait_healthy(port)
            yield port, config, server.pid
        finally:
            server.terminate()
            server.wait(timeout=20)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
