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
import multiprocessing
import os
import platform
import time

from live_server import bench_server  # bench/ is on sys.path when run as a script

SETUP = r"""
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
from accounts.tokens import issue_api_token
from archive import synthetic
from archive.services import ingest
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
    with bench_server(SETUP, uvicorn_args=("--workers", str(args.workers))) as (port, config, _pid):
        print(f"# WADO-RS /rendered over HTTP, uvicorn ({args.workers} process(es)) + render pool, JPEG q90, "
              f"{args.seconds:g} s per cell")
        print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"{'source':<20} {'clients':>7} {'frames/s':>9} {'p50 ms':>7} {'kB/frame':>9} {'errors':>6}")
        for name, paths in config["urls"].items():
            run_load(port, config["token"], paths, 1, 1.0)  # warm the caches
            for count in clients:
                result = run_load(port, config["token"], paths, count, args.seconds)
                print(f"{name:<20} {count:>7} {result['fps']:>9.0f} {result['p50_ms']:>7.1f} {result['kb']:>9.1f} {result['errors']:>6}")


if __name__ == "__main__":
    main()
