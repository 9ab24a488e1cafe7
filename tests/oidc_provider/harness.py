"""Start and stop the test OpenID provider (`tests.oidc_provider.serve`) in a subprocess."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Provider:
    issuer: str
    client_id: str
    client_secret: str
    users: dict
    process: subprocess.Popen = field(repr=False)
    log_path: Path = field(repr=False)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_provider(workdir: Path, users: dict, *, redirect_uri: str = "http://127.0.0.1/oidc/callback/") -> Provider:
    """Start the provider on a free loopback port and wait until it serves its discovery document."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}/o"
    users_file = workdir / "users.json"
    users_file.write_text(json.dumps(users))
    client_id = "lightbox-" + secrets.token_hex(4)
    client_secret = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "OIDC_PROVIDER_PORT": str(port),
        "OIDC_PROVIDER_ISSUER": issuer,
        "OIDC_PROVIDER_DB": str(workdir / "provider.sqlite3"),
        "OIDC_PROVIDER_KEY_FILE": str(workdir / "signing-key.pem"),
        "OIDC_PROVIDER_USERS": str(users_file),
        "OIDC_PROVIDER_CLIENT_ID": client_id,
        "OIDC_PROVIDER_CLIENT_SECRET": client_secret,
        "OIDC_PROVIDER_REDIRECT_URI": redirect_uri,
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log_path = workdir / "provider.log"
    log = log_path.open("wb")
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "tests.oidc_provider.serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    provider = Provider(issuer, client_id, client_secret, users, process, log_path)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the test OpenID provider exited:\n{log_path.read_text()}")
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).ok:
                return provider
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            provider.stop()
            raise RuntimeError(f"the test OpenID provider did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
