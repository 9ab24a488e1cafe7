"""Benchmark ingest: STOW-RS against a live server, import_dicom, encryption cost, memory.

Usage: python bench/ingest.py [--slices 300] [--clients 4] [--per-request 10] [--big-gb 2] [--quick]

Everything runs against a fresh temporary data directory (migrated first) and a uvicorn
subprocess on a free loopback port serving the project's ASGI application with STOW-RS
bodies streamed (`StreamStowBodies`). Prints figures; asserts nothing.

1. The encrypt + hash cost: the same objects written as plaintext files (fsynced, the same
   durability) versus encrypted blobs (AES-256-GCM + SHA-256 + fsync), in this process.
2. STOW-RS: a `--slices` x 512 x 512 CT, uncompressed and JPEG-LS lossless, sent by
   `--clients` concurrent clients, `--per-request` instances per request, with the CPU time
   per instance of the server processes and of this (client) process, which share the cores.
3. `manage.py import_dicom` of the same CT as a folder of files, and, for scale, the ingest
   pipeline alone (parse, validate, hash, encrypt, write, index) in one thread of one process:
   the ceiling the web layer and the worker processes are measured against.
4. One `--big-gb` multipart request streamed (chunked) to the server while its peak RSS is
   sampled: memory must stay flat however large the body.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archive import synthetic  # noqa: E402  (Django-free)
from archive.blobstore import BlobStore, LocalFileBackend, generate_dek  # noqa: E402

BOUNDARY = "lightbox-bench-boundary"
CONTENT_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
PYTHON = sys.executable


def stow_app():
    """uvicorn --factory target: the project's application, STOW bodies streamed (idempotent)."""
    from config.asgi import application  # sets Django up first  # isort: skip
    from archive.dicomweb.stow import StreamStowBodies  # isort: skip

    return StreamStowBodies(application)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def multipart(parts: list[bytes]) -> bytes:
    return b"".join(part_bytes(p) for p in parts) + f"--{BOUNDARY}--\r\n".encode()


def part_bytes(data: bytes) -> bytes:
    return f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    """The ASGI app under uvicorn in a subprocess of our own, with its own data directory."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        command = [PYTHON, "-m", "uvicorn", "--factory", "ingest:stow_app", "--app-dir", str(ROOT / "bench"),
                   "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log", "--log-level", "warning",
                   "--lifespan", "off"]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        kids = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [self.process.pid, *kids]

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def manage(env: dict[str, str], *args: str, code: str | None = None) -> str:
    command = [PYTHON, "manage.py", *args] + (["-c", code] if code else [])
    return subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout


SETUP = """
from accounts.models import Membership, Organization, Role, User
from accounts.tokens import issue_api_token
stow = Organization.objects.create(name="Bench STOW", slug="bench-stow")
Organization.objects.create(name="Bench import", slug="bench-import")
Organization.objects.create(name="Bench pipeline", slug="bench-pipeline")
user = User.objects.create_user(email="bench@example.org", password="bench-" + "x" * 20, is_staff=True)
Membership.objects.create(user=user, organization=stow, role=Role.STAFF)
print(issue_api_token(user=user, write=True)[1])
"""


# The ingest pipeline without a web layer or worker processes: one thread, batches of 64.
PIPELINE = """
import io, pathlib, time
from accounts.models import Organization
from archive.services import IngestBatch
objects = [path.read_bytes() for path in sorted(pathlib.Path(%r).iterdir())]
started, cpu = time.perf_counter(), time.process_time()
with IngestBatch(organization=Organization.objects.get(slug="bench-pipeline"), source="bench") as batch:
    for data in objects:
        batch.add(io.BytesIO(data))
    batch.flush()
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
print(f"pipeline alone, one thread: {len(objects) / wall:.0f} instances/s, {cpu / len(objects) * 1e3:.2f} ms CPU "
      f"per instance ({len(objects) / cpu:.0f} instances/s per core)")
"""


def encryption_cost(objects: list[bytes], workdir: Path, rounds: int = 3) -> dict[str, float]:
    """ms per object: plaintext files vs encrypted blobs, with and without fsync; best of `rounds`.

    Rounds are interleaved and files deleted in between, so neither side pays alone for the
    first touch of fresh page-cache memory (expensive on a VM).
    """
    dek = generate_dek()
    store = BlobStore(LocalFileBackend(workdir / "blobs"), lambda key: dek)
    best: dict[str, float] = {}
    real_fsync = os.fsync
    for _ in range(rounds):
        for fsync in (True, False):
            label = "fsync" if fsync else "no fsync"
            if not fsync:
                os.fsync = lambda fd: None  # noqa: E731 - measuring CPU cost only
            try:
                plain_dir = workdir / "plain"
                plain_dir.mkdir(exist_ok=True)
                started = time.perf_counter()
                for i, data in enumerate(objects):
                    with open(plain_dir / f"{i:05d}.dcm", "wb") as out:
                        out.write(data)
                        out.flush()
                        os.fsync(out.fileno())
                plain = time.perf_counter() - started
                started = time.perf_counter()
                ids = [store.write(data, dek_id="bench", dek=dek).blob_id for data in objects]
                encrypted = time.perf_counter() - started
            finally:
                os.fsync = real_fsync
            shutil.rmtree(plain_dir)
            for blob_id in ids:
                store.delete(blob_id)
            for key, value in ((f"plain ({label})", plain), (f"encrypted ({label})", encrypted)):
                best[key] = min(best.get(key, float("inf")), value / len(objects) * 1e3)
    return best


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far, from /proc (Linux)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def stow_throughput(url: str, token: str, objects: list[bytes], clients: int, per_request: int) -> tuple[float, float]:
    bodies = [multipart(objects[i : i + per_request]) for i in range(0, len(objects), per_request)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE}
    local = threading.local()

    def send(body: bytes) -> int:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        response = session.post(url + "/dicomweb/studies", data=body, headers=headers, timeout=600)
        if response.status_code != 200:
            raise RuntimeError(f"STOW answered {response.status_code}: {response.text[:300]}")
        return len(response.json()["00081199"]["Value"])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        stored = sum(pool.map(send, bodies))
    elapsed = time.perf_counter() - started
    assert stored == len(objects), stored
    return len(objects) / elapsed, sum(map(len, objects)) / elapsed / 1e6


def unique_copies(template: bytes, uid: str, count: int):
    """`count` copies of one object, each with its own SOP Instance UID (same length)."""
    stem = uid.encode()[:-7]
    for n in range(count):
        new = stem + f"{n:07d}".encode()
        yield template.replace(uid.encode(), new)


def big_request(server: Server, token: str, template: bytes, uid: str, gigabytes: float) -> dict[str, float]:
    count = int(gigabytes * 1e9 / len(template)) + 1
    sent = 0

    def body():
        nonlocal sent
        for data in unique_copies(template, uid, count):
            piece = part_bytes(data)
            sent += len(piece)
            yield piece
        yield f"--{BOUNDARY}--\r\n".encode()

    pids = server.pids()
    baseline = sum(rss_kb(pid) for pid in pids)
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, sum(rss_kb(pid) for pid in pids))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    response = requests.post(server.url + "/dicomweb/studies", data=body(), timeout=3600,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE})
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    stored = len(response.json().get("00081199", {}).get("Value", [])) if response.ok else 0
    return {"status": response.status_code, "instances": count, "stored": stored, "GB": sent / 1e9,
            "seconds": elapsed, "MB/s": sent / elapsed / 1e6, "rss_before_MB": baseline / 1024,
            "rss_growth_MB": (peak - baseline) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-request", type=int, default=10)
    parser.add_argument("--big-gb", type=float, default=2.0, help="size of the streamed request (0 to skip)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--quick", action="store_true", help="30 slices and a 0.2 GB big request")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.big_gb = 30, min(args.big_gb, 0.2)

    print(f"Lightbox ingest benchmark on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"Generating a {args.slices}-slice {args.size}x{args.size} CT (uncompressed and JPEG-LS)...", flush=True)
    from pydicom.uid import JPEGLSLossless

    raw_sets = synthetic.ct_study(slices=args.slices, size=args.size, seed=1)
    raw = [synthetic.to_bytes(ds) for ds in raw_sets]
    jls = [synthetic.to_bytes(synthetic.compress(ds, transfer_syntax=JPEGLSLossless))
           for ds in synthetic.ct_study(slices=args.slices, size=args.size, seed=2)]
    mb_raw, mb_jls = sum(map(len, raw)) / 1e6, sum(map(len, jls)) / 1e6
    print(f"  uncompressed: {len(raw)} objects, {mb_raw:.1f} MB; JPEG-LS: {mb_jls:.1f} MB")

    work = Path(tempfile.mkdtemp(prefix="lightbox-bench-"))
    try:
        env = {**os.environ, "LIGHTBOX_DATA_DIR": str(work / "data"), "DJANGO_SETTINGS_MODULE": "config.settings",
               "LOG_LEVEL": "WARNING", "LIGHTBOX_EMBEDDED_SCHEDULER": "false"}
        for name in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "LIGHTBOX_AUDIT_KEY"):
            env.pop(name, None)

        print("\n1. Encrypt + hash cost, per 512x512 CT object (ms):")
        cost_dir = work / "cost"
        cost_dir.mkdir()
        figures = encryption_cost(raw, cost_dir)
        for label, value in figures.items():
            print(f"  {label:<22} {value:6.2f} ms  ({len(raw[0]) / value / 1e3:7.1f} MB/s)")
        print(f"  overhead: {figures['encrypted (fsync)'] - figures['plain (fsync)']:+.2f} ms with fsync, "
              f"{figures['encrypted (no fsync)'] - figures['plain (no fsync)']:+.2f} ms CPU only")
        shutil.rmtree(cost_dir)

        manage(env, "migrate", "--noinput")
        token = manage(env, "shell", code=SETUP).strip().splitlines()[-1]

        with Server(env, args.workers) as server:
            print(f"\n2. STOW-RS, {args.clients} clients, {args.per_request} instances per request "
                  f"(uvicorn, {args.workers} worker{'s' if args.workers > 1 else ''}):")
            for label, objects in (("uncompressed", raw), ("JPEG-LS", jls)):
                server_cpu, client_cpu = cpu_seconds(server.pids()), time.process_time()
                rate, mbps = stow_throughput(server.url, token, objects, args.clients, args.per_request)
                server_cpu = (cpu_seconds(server.pids()) - server_cpu) / len(objects) * 1e3
                client_cpu = (time.process_time() - client_cpu) / len(objects) * 1e3
                # Both share the machine's cores: their sum per instance bounds the rate.
                print(f"  {label:<13} {rate:7.0f} instances/s  {mbps:7.1f} MB/s   CPU per instance: "
                      f"server {server_cpu:.2f} ms, load client {client_cpu:.2f} ms")

            if args.big_gb > 0:
                print(f"\n4. One streamed {args.big_gb:g} GB multipart request (chunked), server RSS sampled:",
                      flush=True)
                template = synthetic.to_bytes(synthetic.ct_study(slices=1, size=args.size, seed=3)[0])
                uid = str(synthetic.ct_study(slices=1, size=args.size, seed=3)[0].SOPInstanceUID)
                result = big_request(server, token, template, uid, args.big_gb)
                print(f"  status {result['status']}: {result['stored']}/{result['instances']} instances, "
                      f"{result['GB']:.2f} GB in {result['seconds']:.1f} s ({result['MB/s']:.0f} MB/s, "
                      f"{result['stored'] / result['seconds']:.0f} instances/s)")
                print(f"  server RSS {result['rss_before_MB']:.0f} MB before, peak growth "
                      f"{result['rss_growth_MB']:.0f} MB")

        print("\n3. manage.py import_dicom of the same CT as a folder of files:", flush=True)
        folder = work / "folder"
        for i, data in enumerate(raw):
            (folder / "ct").mkdir(parents=True, exist_ok=True)
            (folder / "ct" / f"IM{i:05d}.dcm").write_bytes(data)
        started = time.perf_counter()
        output = manage(env, "import_dicom", str(folder), "--organization", "bench-import", "--no-progress")
        elapsed = time.perf_counter() - started
        print(f"  {output.splitlines()[0]}")
        print(f"  wall clock with process start: {len(raw) / elapsed:.0f} instances/s, {mb_raw / elapsed:.1f} MB/s")
        print(f"  {manage(env, 'shell', code=PIPELINE % str(folder / 'ct')).strip().splitlines()[-1]}")
        print(json.dumps({"figures_ms": figures}, indent=None) if os.environ.get("BENCH_JSON") else "", end="")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
