"""The checkpoint task runs in-process by default and through a real Celery worker on Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.services import record
from audit.tasks import write_checkpoint
from audit.verification import checkpoint_path, verify_latest_checkpoint
from tests.system import require_service

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_checkpoint_task_runs_in_process_without_a_broker():
    record(action="study.view", object_id="1.2.3")
    write_checkpoint.apply()
    entry = json.loads(checkpoint_path().read_text().splitlines()[-1])
    assert entry["sequence"] == 1
    assert verify_latest_checkpoint().ok


@pytest.mark.django_db
def test_embedded_scheduler_runs_the_beat_schedule():
    from config.scheduler import EmbeddedScheduler

    record(action="study.view", object_id="1.2.3")
    scheduler = EmbeddedScheduler(schedule={"cp": {"task": "audit.tasks.write_checkpoint", "schedule": 3600}}, tick=0.01)
    scheduler.start()
    deadline = time.monotonic() + 10
    while not checkpoint_path().exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.stop()
    assert checkpoint_path().exists()


def test_embedded_scheduler_finds_every_scheduled_task_in_a_fresh_web_process():
    # In the test process the task modules are already imported by the tests; a fresh web
    # process (make run) has imported none of them, which is where a lazy lookup failed.
    code = (
        "import django; django.setup()\n"
        "import sys\n"
        "from config.scheduler import EmbeddedScheduler\n"
        "print(sorted(t.name for t in EmbeddedScheduler().resolve_tasks().values()))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = sorted(entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values())
    assert result.stdout.strip() == repr(expected)


@pytest.mark.django_db(transaction=True)
def test_checkpoint_task_runs_in_a_real_celery_worker(tmp_path):
    require_service("Redis", bool(os.environ.get("REDIS_URL")), how="set REDIS_URL=redis://127.0.0.1:6379/0")
    record(action="study.view", object_id="1.2.3")
    queue = f"lightbox-test-{uuid.uuid4().hex[:8]}"
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
            if connection.vendor == "postgresql"
            else f"sqlite:///{db['NAME']}",
            "LIGHTBOX_DATA_DIR": str(settings.DATA_DIR),
            "SECRET_KEY": settings.SECRET_KEY,
            "LIGHTBOX_AUDIT_KEY": settings.AUDIT_HMAC_KEY,
        }
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", queue, "--concurrency=1", "--loglevel=WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        write_checkpoint.apply_async(queue=queue)
        deadline = time.monotonic() + 60
        while not checkpoint_path().exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert checkpoint_path().exists(), worker.stdout.read1().decode(errors="replace") if worker.poll() is not None else "worker did not run the task"
        entry = json.loads(checkpoint_path().read_text().splitlines()[-1])
        assert entry["sequence"] == 1
        assert verify_latest_checkpoint().ok
    finally:
        worker.terminate()
        worker.wait(timeout=20)
