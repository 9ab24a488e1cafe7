"""End-to-end WADO-RS /rendered throughput against the live ASGI server (loopback only).

Usage: python bench/render_http.py [--seconds 5] [--clients 1,4,8]

Creates a throw-away data directory, stores synthetic studies through the real ingest service
(512x512 CT slices as uncompressed, RLE, JPEG-LS and JPEG 2000; a 640x480 RGB ultrasound cine;
a 4096x5120 16-bit image), starts `uvicorn config.asgi:application` on a free 127.0.0.1 port,
and drives it with closed-loop HTTP clients in separate processes (keep-alive connections),
so the client's own GIL does not cap the figure. Warm: the same 8 frames round-robin (the
workers' frame caches hold them). Prints figures only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SETUP = r"""
import io, json, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
from accounts.models import Organization, Membership, User
from accounts.tokens import issue_api_token
from archive import synthetic
from archive.services import ingest
org = Organization.objects.create(name="Bench", slug="bench")
user = User.objects.create_user(email="bench@lightbox.test", password=None)
Membership.objects.create(user=user, organization=org, role="clinician")
urls = {}
ct = synthetic.ct_study(slices=8, size=512, seed=1)
def store(ds):
    result = ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="bench")
    assert result.ok, result
    return f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
for name, syntax in (("ct-native", None), ("ct-rle", RLELossless), ("ct-jpegls", JPEGLSLossless), ("ct-j2k", JPEG2000Lossless)):
    series = synthetic.ct_study(slices=8, size=512, seed={"ct-native": 1, "ct-rle": 2, "ct-jpegls": 3, "ct-j2k": 4}[name])
    urls[name] = [store(synthetic.compress(ds, transfer_syntax=syntax) if syntax else ds) + "/rendered" for ds in series]
us = synthetic.us_multiframe(frames=60, rows=480, columns=640)
base = store(us)
urls["us-frame"] = [f"{base}/frames/{n}/rendered" for n in range(1, 9)]
big = synthetic.mammo_image(rows=5120, columns=4096)
urls["4096x5120-fit1024"] = [store(big) + "/rendered?viewport=1024,1024"]
_, token = issue_api_token(user=user)
print(json.dumps({"token": token, "urls": urls}))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_loop(port: int, token: str, paths: list[str], seconds: float, out) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Accept": "image/jpeg"}
    done, nbytes, errors = 0, 0, 0
    deadline = time.monotonic() + seconds
    latencies = []
    while time.monotonic() < deadline:
        path = paths[done % len(paths)]
        started = time.perf_counter()
        connection.request("GET", "/dicomweb/" + path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        if response.status == 200:
            done += 1
            nbytes += len(body)
        else:
            errors += 1
            done += 1
    out.put((done - errors, errors, nbytes, latencies))


def run_load(port: int, token: str, paths: list[str], clients: int, seconds: float) -> dict:
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client_loop, args=(port, token, paths, seconds, queue)) for _ in range(clients)]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    ok = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    latencies = sorted(x for r in results for x in r[3])
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0
    return {"fps": ok / seconds, "errors": errors, "p50_ms": p50, "kb": (sum(r[2] for r in results) / max(ok, 1)) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    data_dir = Path(tempfile.mkdtemp(prefix="lightbox-bench-"))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"LIGHTBOX_DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    python = sys.executable
    try:
        subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        setup = subprocess.run([python, "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        config = json.loads(setup.stdout.strip().splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [python, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--no-access-log", "--log-level", "warning", "--lifespan", "off", "--workers", str(args.workers)],
            cwd=ROOT, env=env,
        )
        try:
            for _ in range(400):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        break
                except OSError:
                    time.sleep(0.1)
            print(f"# WADO-RS /rendered over HTTP, uvicorn ({args.workers} process(es)) + render pool, JPEG q90, "
                  f"{args.seconds:g} s per cell")
            print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
            print(f"{'source':<20} {'clients':>7} {'frames/s':>9} {'p50 ms':>7} {'kB/frame':>9} {'errors':>6}")
            for name, paths in config["urls"].items():
                run_load(port, config["token"], paths, 1, 1.0)  # warm the caches
                for count in clients:
                    result = run_load(port, config["token"], paths, count, args.seconds)
                    print(f"{name:<20} {count:>7} {result['fps']:>9.0f} {result['p50_ms']:>7.1f} {result['kb']:>9.1f} {result['errors']:>6}")
        finally:
            server.terminate()
            server.wait(timeout=20)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
