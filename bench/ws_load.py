"""Viewer websocket streaming capacity: warm 512x512 JPEG frames/s over real sockets (loopback only).

Usage: python bench/ws_load.py [--seconds 10] [--sockets 4] [--viewports 1,4] [--deflate]

Creates a throw-away data directory and database, stores an 8-slice 512x512 synthetic CT through
the real ingest service, signs a clinician in (second factor marked passed, as after TOTP), starts
`uvicorn config.asgi:application` (one process, websockets-sansio, as `make run`) on a free
127.0.0.1 port, and then does what the page does: GET the viewer page (CSRF token), POST for a
ticket, open /ws/viewer/, say hello. Each socket keeps every one of its viewports busy (closed
loop: the next request for a viewport goes out when its frame arrives, so newest-wins never
drops anything). Warm: the 8 slices round-robin, `interactive` tier (JPEG q80), one window.
The client runs in its own process(es) so its GIL does not cap the figure. Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import struct
import time

from live_server import bench_server  # bench/ is on sys.path when run as a script

SETUP = r"""
from django.conf import settings
from archive import synthetic
from archive.services import ingest
from tests.factories import session_key_for
ct = synthetic.ct_study(slices=8, size=512, seed=1)
for ds in ct:
    assert ingest(stream=io.BytesIO(synthetic.to_bytes(ds)), organization=org, source="bench").ok
keys = [session_key_for(user) for _ in range(16)]
print(json.dumps({"cookie_name": settings.SESSION_COOKIE_NAME, "sessions": keys,
                  "study": ct[0].StudyInstanceUID, "series": ct[0].SeriesInstanceUID,
                  "instances": [ds.SOPInstanceUID for ds in ct]}))
"""


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a process, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(server_pid: int) -> dict[str, float]:
    """CPU seconds of the uvicorn process and, separately, of all its descendants (fork server, workers)."""
    stats = {int(d): _proc_stat(int(d)) for d in os.listdir("/proc") if d.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    descendants, todo = [], list(children.get(server_pid, []))
    while todo:
        pid = todo.pop()
        descendants.append(pid)
        todo.extend(children.get(pid, []))
    own = stats.get(server_pid)
    return {"server": own[1] if own else 0.0, "workers": sum(stats[p][1] for p in descendants if stats.get(p))}


def _ticket(port: int, cookie: str, study: str) -> tuple[str, str]:
    """Do what the page does: load it (CSRF token + cookie), then POST for a ticket."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", f"/viewer/{study}/", headers={"Cookie": cookie})
    response = connection.getresponse()
    body = response.read().decode()
    if response.status != 200:
        raise RuntimeError(f"viewer page: HTTP {response.status}")
    data = json.loads(re.search(r'<script id="viewer-data" type="application/json">(.*?)</script>', body, re.S)[1])
    csrf_cookie = [v.split(";")[0] for k, v in response.getheaders() if k.lower() == "set-cookie" and "csrftoken" in v]
    cookies = "; ".join([cookie, *csrf_cookie])
    connection.request(
        "POST", data["ticket_url"], body=json.dumps({"study": study}),
        headers={"Cookie": cookies, "Content-Type": "application/json", "X-CSRFToken": data["csrf_token"],
                 "Origin": f"http://127.0.0.1:{port}", "Referer": f"http://127.0.0.1:{port}/viewer/{study}/"},
    )
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"ticket: HTTP {response.status} {payload[:200]!r}")
    return json.loads(payload)["ticket"], cookies


async def _socket_loop(port, cookie, config, viewports, seconds, deflate, fresh, stats):
    from websockets.asyncio.client import connect

    ticket, cookies = await asyncio.to_thread(_ticket, port, cookie, config["study"])
    async with connect(
        f"ws://127.0.0.1:{port}/ws/viewer/",
        additional_headers={"Cookie": cookies, "Origin": f"http://127.0.0.1:{port}"},
        compression="deflate" if deflate else None,
        max_size=8 << 20,
    ) as ws:
        await ws.send(json.dumps({"type": "hello", "ticket": ticket}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        await ws.send(json.dumps({"type": "open", "viewport": 0, "series": config["series"]}))
        series = json.loads(await ws.recv())
        assert series["type"] == "series" and len(series["instances"]) == len(config["instances"]), series
        waiting: dict[int, asyncio.Future] = {}

        async def reader():
            async for message in ws:
                if isinstance(message, str):
                    reply = json.loads(message)
                    if reply.get("type") == "error" and reply.get("viewport") in waiting:
                        waiting.pop(reply["viewport"]).set_result(None)
                    continue
                (length,) = struct.unpack(">I", message[:4])
                header = json.loads(message[4 : 4 + length])
                future = waiting.pop(header["viewport"], None)
                if future is not None:
                    future.set_result(len(message))

        async def viewport_loop(viewport):
            seq = viewport * 10_000_000
            instances = config["instances"]
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                seq += 1
                future = asyncio.get_running_loop().create_future()
                waiting[viewport] = future
                started = time.perf_counter()
                await ws.send(json.dumps({
                    "type": "frame", "viewport": viewport, "seq": seq, "instance": instances[seq % len(instances)],
                    "frame": 0, "width": 512, "height": 512,
                    # fresh: a new window every request (a W/L drag), so nothing comes from a cache of
                    # encoded frames and every frame is rendered; repeat: one window (scrolling a stack).
                    "window": {"center": random.uniform(-500, 500) if fresh else 40, "width": 400},
                    "tier": "interactive",
                }))
                size = await future
                if stats is not None and time.monotonic() < deadline:
                    if size is None:
                        stats["errors"] += 1
                    else:
                        stats["frames"] += 1
                        stats["bytes"] += size
                        stats["latencies"].append(time.perf_counter() - started)

        read_task = asyncio.create_task(reader())
        await asyncio.gather(*(viewport_loop(v) for v in range(viewports)))
        read_task.cancel()


def client_process(port, cookies, config, viewports, seconds, deflate, fresh, out):
    stats = {"frames": 0, "bytes": 0, "errors": 0, "latencies": []}

    async def main():
        await asyncio.gather(*(_socket_loop(port, c, config, viewports, seconds, deflate, fresh, stats)
                               for c in cookies))

    started = time.process_time()
    asyncio.run(main())
    stats["cpu"] = time.process_time() - started
    out.put(stats)


def run_load(port, config, sockets, viewports, seconds, deflate, processes, fresh=True) -> dict:
    cookies = [f"{config['cookie_name']}={key}" for key in config["sessions"][:sockets]]
    groups = [cookies[i::processes] for i in range(processes)]
    queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=client_process,
                                     args=(port, g, config, viewports, seconds, deflate, fresh, queue))
             for g in groups if g]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    frames = sum(r["frames"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])
    pick = (lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000) if latencies else (lambda q: 0)
    return {"fps": frames / seconds, "errors": sum(r["errors"] for r in results), "p50": pick(0.5), "p95": pick(0.95),
            "kb": sum(r["bytes"] for r in results) / max(frames, 1) / 1024,
            "client_ms": sum(r["cpu"] for r in results) * 1000 / max(frames, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--viewports", default="1,4", help="busy viewports per socket (comma list)")
    parser.add_argument("--modes", default="fresh,repeat", help="fresh (new window per request) and/or repeat")
    parser.add_argument("--frame-cache-bytes", type=int, default=None,
                        help="LIGHTBOX_VIEWER_FRAME_CACHE_BYTES for the server (0: render every frame)")
    parser.add_argument("--processes", type=int, default=2, help="client processes sharing the sockets")
    parser.add_argument("--deflate", action="store_true", help="offer permessage-deflate, as browsers do")
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn websocket implementation (make run: websockets-sansio)")
    args = parser.parse_args()
    env = {}
    if args.frame_cache_bytes is not None:
        env["LIGHTBOX_VIEWER_FRAME_CACHE_BYTES"] = str(args.frame_cache_bytes)
    uvicorn_args = ("--ws", args.ws, "--ws-per-message-deflate", "true" if args.deflate else "false")
    with bench_server(SETUP, uvicorn_args=uvicorn_args, env=env) as (port, config, server_pid):
        print(f"# /ws/viewer/ warm 512x512 JPEG q80 frames, uvicorn (1 process, --ws {args.ws}) + render pool, "
              f"{args.seconds:g} s per row, permessage-deflate {'offered' if args.deflate else 'off'}, frame cache "
              f"{'default' if args.frame_cache_bytes is None else args.frame_cache_bytes} bytes")
        print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
              f"client: {args.processes} process(es) on the same machine")
        print(f"{'mode':>6} {'sockets':>7} {'viewports':>9} {'frames/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'kB/frame':>9} "
              f"{'errors':>6} {'server CPU ms/frame':>19} {'workers CPU ms/frame':>20} {'client CPU ms/frame':>19} "
              f"{'server-side capacity fps':>24}")
        run_load(port, config, args.sockets, 1, 2.0, args.deflate, 1)  # warm the worker caches
        # What the server and its workers could deliver with the load client on another machine:
        # every core's time divided by the server-side CPU per frame (the client shares these cores).
        cores = os.cpu_count() or 1
        rows = [(m, int(v)) for m in args.modes.split(",") for v in args.viewports.split(",")]
        for mode, viewports in rows:
            before = cpu_by_role(server_pid)
            result = run_load(port, config, args.sockets, viewports, args.seconds, args.deflate,
                              min(args.processes, args.sockets), fresh=mode == "fresh")
            after = cpu_by_role(server_pid)
            frames = max(1.0, result["fps"] * args.seconds)
            server_ms = (after["server"] - before["server"]) * 1000 / frames
            workers_ms = (after["workers"] - before["workers"]) * 1000 / frames
            print(f"{mode:>6} {args.sockets:>7} {viewports:>9} {result['fps']:>9.0f} {result['p50']:>7.2f} "
                  f"{result['p95']:>7.2f} {result['kb']:>9.1f} {result['errors']:>6} {server_ms:>19.3f} "
                  f"{workers_ms:>20.3f} {result['client_ms']:>19.3f} {cores * 1000 / (server_ms + workers_ms):>24.0f}")


if __name__ == "__main__":
    main()
