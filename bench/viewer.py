"""The viewer page in a real Chromium against a live server: first frame, scrolling, W/L latency, bytes.

Usage: python bench/viewer.py [--slices 200] [--seconds 5] [--runs 5]

Creates a throw-away data directory and database, stores the synthetic 512x512 demo CT
(200 slices by default) through the real ingest service, signs a clinician in (second factor
marked passed, as after TOTP; `tests.factories.session_key_for`), starts
`uvicorn config.asgi:application` (one process, websockets-sansio, as `make run`) on a free
127.0.0.1 port, and drives `/viewer/<study>/` in Debian's Chromium through Playwright with the
viewport's canvas sized to 512x512 CSS pixels at devicePixelRatio 1. Prints figures only:

- navigation start -> first frame drawn on the canvas (cold: first load; warm: median of reloads);
- frames drawn per second while scrolling continuously (the page is asked for the next slice
  every 2 ms, so it always has a newer slice pending: it asks as fast as it can draw), and while
  stepping through every slice in order (the next slice asked once the previous one is drawn);
- W/L drag: real mouse moves at 60 Hz; for each pointermove, the time until a frame requested
  at or after it is drawn (p50/p95);
- bytes per frame by tier (interactive JPEG, final PNG).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

from live_server import bench_server  # bench/ is on sys.path when run as a script

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

SETUP = r"""
from django.conf import settings
from archive import synthetic
from archive.services import IngestBatch
from tests.factories import session_key_for
ct = synthetic.ct_study(slices=int(sys.argv[1]), size=512)
with IngestBatch(organization=org, source="bench") as batch:
    for ds in ct:
        batch.add(io.BytesIO(synthetic.to_bytes(ds)))
    batch.flush()
print(json.dumps({"cookie_name": settings.SESSION_COOKIE_NAME, "session": session_key_for(user),
                  "study": ct[0].StudyInstanceUID}))
"""

# Runs before the page's scripts (injected over CDP, outside the page's CSP); memory only.
PROBE = """
window.__bench = {frames: [], moves: [], recordMoves: false};
document.addEventListener('lightbox:frame', (event) => window.__bench.frames.push(event.detail), true);
document.addEventListener('pointermove', (event) => {
  if (window.__bench.recordMoves) window.__bench.moves.push(event.timeStamp);
}, true);
"""

FIRST_FRAME = "() => window.__bench.frames.length ? window.__bench.frames[0].drawnAt : null"

# Where the time to the first frame goes, on the last reload (ms since navigation start).
STEPS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const steps = [['HTML received', nav.responseEnd], ['DOM parsed', nav.domInteractive]];
  for (const mark of performance.getEntriesByType('mark')) {
    if (mark.name.startsWith('lightbox:')) steps.push([mark.name.slice(9), mark.startTime]);
  }
  steps.push(['first frame drawn', window.__bench.frames[0].drawnAt]);
  return steps.sort((a, b) => a[1] - b[1]);
}"""

SCROLL_FLOOD = """async (seconds) => {
  const viewport = document.querySelector('.viewport[data-viewport="0"]');
  const canvas = viewport.querySelector('canvas');
  const count = Number(viewport.dataset.count);
  const wheel = (dy) => canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: dy, bubbles: true, cancelable: true}));
  let direction = 1;
  const start = window.__bench.frames.length;
  const t0 = performance.now();
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const index = Number(viewport.dataset.index);
      if (index >= count - 1) direction = -1;
      if (index <= 0) direction = 1;
      wheel(100 * direction);
      if (performance.now() - t0 > seconds * 1000) { clearInterval(timer); resolve(); }
    }, 2);
  });
  const elapsed = (performance.now() - t0) / 1000;
  const frames = window.__bench.frames.slice(start);
  return {frames: frames.length, seconds: elapsed, distinct: new Set(frames.map((f) => f.position)).size};
}"""

SCROLL_IN_ORDER = """async (seconds) => {
  const viewport = document.querySelector('.viewport[data-viewport="0"]');
  const canvas = viewport.querySelector('canvas');
  const count = Number(viewport.dataset.count);
  let direction = 1;
  let drawn = 0;
  const t0 = performance.now();
  await new Promise((resolve) => {
    const next = () => {
      if (performance.now() - t0 > seconds * 1000) { viewport.removeEventListener('lightbox:frame', onFrame); resolve(); return; }
      const index = Number(viewport.dataset.index);
      if (index >= count - 1) direction = -1;
      if (index <= 0) direction = 1;
      canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: 100 * direction, bubbles: true, cancelable: true}));
    };
    const onFrame = (event) => {
      if (String(event.detail.position) !== viewport.dataset.index) return;
      drawn += 1;
      next();
    };
    viewport.addEventListener('lightbox:frame', onFrame);
    next();
  });
  return {frames: drawn, seconds: (performance.now() - t0) / 1000};
}"""

WL_LATENCIES = """() => {
  const frames = window.__bench.frames;
  return window.__bench.moves.map((t) => {
    let best = Infinity;
    for (const f of frames) if (f.sentAt >= t && f.drawnAt < best) best = f.drawnAt;
    return best - t;
  }).filter(Number.isFinite);
}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def wait_settled(page) -> None:
    page.wait_for_function(
        "() => { const e = document.querySelector('.viewport[data-viewport=\"0\"]');"
        " return e.dataset.tier === 'final' && e.dataset.drawnIndex === e.dataset.index; }",
        timeout=30_000,
    )


def size_canvas(page, url: str, target: int = 512) -> dict:
    """Resize the window until the first viewport's canvas is target x target CSS pixels."""
    size = {"width": 1000, "height": 800}
    for _ in range(4):
        page.set_viewport_size(size)
        page.goto(url)
        page.wait_for_function("() => window.__bench.frames.length > 0", timeout=30_000)
        box = page.locator('.viewport[data-viewport="0"] canvas').bounding_box()
        if round(box["width"]) == target and round(box["height"]) == target:
            return box
        size = {"width": size["width"] + target - round(box["width"]),
                "height": size["height"] + target - round(box["height"])}
    raise SystemExit(f"could not size the canvas to {target}x{target} (got {box})")


def run_browser(port: int, config: dict, args) -> None:
    from playwright.sync_api import sync_playwright

    url = f"http://127.0.0.1:{port}/viewer/{config['study']}/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(device_scale_factor=1)
        context.add_cookies([{"name": config["cookie_name"], "value": config["session"],
                              "domain": "127.0.0.1", "path": "/"}])
        context.add_init_script(PROBE)
        page = context.new_page()

        page.goto(url)  # cold: modules, ticket, socket, the first render of slice 1
        page.wait_for_function(FIRST_FRAME, timeout=30_000)
        cold = page.evaluate(FIRST_FRAME)
        cold_steps = page.evaluate(STEPS)
        box = size_canvas(page, url)
        fresh_context = browser.new_context(device_scale_factor=1, viewport=page.viewport_size)
        fresh_context.add_cookies([{"name": config["cookie_name"], "value": config["session"],
                                    "domain": "127.0.0.1", "path": "/"}])
        fresh_context.add_init_script(PROBE)
        fresh = fresh_context.new_page()  # a first visit (nothing in the HTTP cache), server warm
        fresh.goto(url)
        fresh.wait_for_function(FIRST_FRAME, timeout=30_000)
        first_visit = fresh.evaluate(FIRST_FRAME)
        first_visit_steps = fresh.evaluate(STEPS)
        fresh_context.close()
        warm = []
        for _ in range(args.runs):
            page.goto(url)
            page.wait_for_function(FIRST_FRAME, timeout=30_000)
            warm.append(page.evaluate(FIRST_FRAME))
        steps = page.evaluate(STEPS)
        wait_settled(page)
        canvas = page.evaluate("(() => { const c = document.querySelector('.viewport canvas');"
                               " return [c.width, c.height]; })()")

        page.evaluate(SCROLL_FLOOD, 1.0)  # warm the workers' caches along the stack
        wait_settled(page)
        flood = page.evaluate(SCROLL_FLOOD, args.seconds)
        wait_settled(page)
        in_order = page.evaluate(SCROLL_IN_ORDER, args.seconds)
        wait_settled(page)

        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.evaluate("window.__bench.recordMoves = true")
        moves = int(args.seconds * 60)
        for i in range(moves):
            phase = (i % 120) / 120
            offset = 120 * (phase * 2 if phase < 0.5 else 2 - phase * 2) - 60
            page.mouse.move(cx + offset, cy + offset / 2)
            time.sleep(1 / 60)
        page.evaluate("window.__bench.recordMoves = false")
        page.mouse.up()
        wait_settled(page)
        latencies = page.evaluate(WL_LATENCIES)

        frames = page.evaluate("window.__bench.frames.map((f) => [f.tier, f.bytes])")
        browser.close()

    print(f"# Viewer page in Chromium {args.chromium}, {config['slices']}-slice 512x512 CT, canvas "
          f"{canvas[0]}x{canvas[1]} device px, uvicorn (1 process) + render pool, loopback")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"first frame drawn after navigation: {cold:.0f} ms on a just-started server (render workers "
          f"starting), {first_visit:.0f} ms first visit of a fresh browser context, median "
          f"{statistics.median(warm):.0f} ms over {len(warm)} reloads (min {min(warm):.0f}, max {max(warm):.0f})"
          f"   target <= 400 ms")
    print("  just-started server: " + ", ".join(f"{name} {at:.0f}" for name, at in cold_steps))
    print("  first visit: " + ", ".join(f"{name} {at:.0f}" for name, at in first_visit_steps))
    print("  last reload: " + ", ".join(f"{name} {at:.0f}" for name, at in steps))
    print(f"continuous scrolling (always a newer slice pending): {flood['frames'] / flood['seconds']:.0f} frames/s "
          f"drawn, {flood['distinct']} distinct slices in {flood['seconds']:.1f} s   target >= 60")
    print(f"scrolling every slice in order (next asked after each draw): "
          f"{in_order['frames'] / in_order['seconds']:.0f} frames/s (second pass: the socket's encoded-frame "
          f"cache may answer)")
    if latencies:
        print(f"W/L drag, pointermove -> updated frame drawn: p50 {percentile(latencies, 0.5):.1f} ms, "
              f"p95 {percentile(latencies, 0.95):.1f} ms ({len(latencies)} moves at 60 Hz)   target p95 <= 50 ms")
    for tier in ("interactive", "final"):
        sizes = [b for t, b in frames if t == tier]
        if sizes:
            print(f"bytes per frame, {tier:<11}: mean {statistics.mean(sizes) / 1024:.1f} kB, "
                  f"median {statistics.median(sizes) / 1024:.1f} kB ({len(sizes)} frames)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5, help="warm page loads for the first-frame figure")
    args = parser.parse_args()
    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.split()
    args.chromium = version[1] if len(version) > 1 else "?"
    with bench_server(SETUP, str(args.slices)) as (port, config, _pid):
        config["slices"] = args.slices
        run_browser(port, config, args)


if __name__ == "__main__":
    main()
