"""`make run` on an empty data directory: migrates, loads demo data, serves, and lets a demo user in
(password, then a TOTP code computed from the printed secret)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.browser import totp_code
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.live


def _wait_for_health(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("make run exited early")
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise AssertionError("the server never became healthy")


def test_make_run_serves_and_a_demo_user_signs_in(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "LIGHTBOX_DATA_DIR", "SECRET_KEY", "LIGHTBOX_AUDIT_KEY")}
    env.update({"PORT": str(port), "LIGHTBOX_DATA_DIR": str(tmp_path / "data"), "LIGHTBOX_DEMO_SIZE": "small"})
    log = (tmp_path / "make-run.log").open("w+")
    process = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(url, process, seconds=600)
        output = Path(log.name).read_text()
        assert f"Sign in at http://127.0.0.1:{port}/" in output
        match = re.search(
            r"clinician\s+(clinician@lightbox\.test)\s+(\S+)\s+([A-Z2-7]{32})\s+(otpauth://totp/\S+)", output
        )
        assert match, output[-3000:]
        email, password, secret, uri = match.groups()
        assert f"secret={secret}" in uri

        session = requests.Session()
        page = session.get(url + "/accounts/sign-in/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        response = session.post(
            url + "/accounts/sign-in/",
            data={"username": email, "password": password, "csrfmiddlewaretoken": csrf},
            headers={"Referer": url + "/accounts/sign-in/"},
            timeout=10,
        )
        # The password alone leads only to the second-factor page.
        assert response.status_code == 200
        assert response.url.startswith(url + "/accounts/verify/"), response.url
        assert session.get(url + "/", timeout=10, allow_redirects=False).status_code == 302

        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text).group(1)
        response = session.post(
            url + "/accounts/verify/",
            data={"code": totp_code(secret), "next": "/", "csrfmiddlewaretoken": csrf},
            headers={"Referer": response.url},
            timeout=10,
        )
        assert response.status_code == 200
        assert response.url.rstrip("/") == url, response.url
        assert "clinician@lightbox.test" in response.text
        assert (tmp_path / "data" / "secrets" / "demo-credentials.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
