// One viewport: a canvas, the view state (slice, window, zoom, pan, rotation, flips, invert),
// frame requests (one in flight plus the newest pending) and drawing with createImageBitmap.
// Nothing decoded is kept: each bitmap is closed as soon as it is on the canvas.

import { renderOverlay, clearOverlay } from "./overlay.js";

const SETTLE_MS = 150; // send the lossless "final" request this long after the last interaction
const REPLY_TIMEOUT_MS = 5000; // a lost reply must not freeze the viewport
const MAX_SIDE = 4096; // docs/viewer-protocol.md: width/height <= 4096 device pixels

let nextSeq = 1;

/** Rotate a source-space offset clockwise by `rotation` degrees, then flip (server order). */
function toView(dx, dy, rotation, flipH, flipV) {
  let x = dx;
  let y = dy;
  if (rotation === 90) [x, y] = [-dy, dx];
  else if (rotation === 180) [x, y] = [-dx, -dy];
  else if (rotation === 270) [x, y] = [dy, -dx];
  if (flipH) x = -x;
  if (flipV) y = -y;
  return [x, y];
}

function fromView(vx, vy, rotation, flipH, flipV) {
  const x = flipH ? -vx : vx;
  const y = flipV ? -vy : vy;
  if (rotation === 90) return [y, -x];
  if (rotation === 180) return [-x, -y];
  if (rotation === 270) return [-y, x];
  return [x, y];
}

export class Viewport {
  constructor(element, index, app) {
    this.element = element;
    this.index = index;
    this.app = app;
    this.canvas = element.querySelector(".viewport-canvas");
    this.svg = element.querySelector(".viewport-annotations");
    this.scrubber = element.querySelector(".viewport-scrubber");
    this.context = this.canvas.getContext("2d", { alpha: false });
    this.series = null; // uid
    this.images = []; // [{instance, frame, rows, columns}] one entry per stack position
    this.position = 0;
    this.window = null; // {center, width} once known
    this.defaultWindow = null;
    this.zoom = 1; // relative to fit
    this.center = null; // source coordinates at the canvas centre; null = image centre
    this.rotation = 0;
    this.flipH = false;
    this.flipV = false;
    this.invert = false;
    this.inFlight = null; // {seq, sentAt, request}
    this.pending = null; // tier of the newest wanted request not yet sent
    this.lastDrawnSeq = 0;
    this.settleTimer = 0;
    this.replyTimer = 0;
    this.drawing = Promise.resolve();
    this.drawn = 0;
    this.closed = false;
    this.cine = { playing: false, fps: 20, timer: 0 };

    this._preventSaving();
    this.resizeObserver = new ResizeObserver(() => this.resize());
    this.resizeObserver.observe(element);
    this.scrubber.addEventListener("input", () => this.goTo(Number(this.scrubber.value)));
  }

  _preventSaving() {
    // PRIVACY: no "Save image as" and no drag-out of the rendered pixels.
    for (const node of [this.canvas, this.svg, this.element]) {
      node.addEventListener("contextmenu", (event) => event.preventDefault());
      node.addEventListener("dragstart", (event) => event.preventDefault());
    }
    this.canvas.setAttribute("draggable", "false");
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-label", `Viewport ${this.index + 1}`);
  }

  // ---- geometry -------------------------------------------------------------------------

  get dpr() {
    return window.devicePixelRatio || 1;
  }

  get image() {
    return this.images[this.position] || null;
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect(); // inside the viewport's border
    const width = Math.max(1, Math.min(MAX_SIDE, Math.round(rect.width * this.dpr)));
    const height = Math.max(1, Math.min(MAX_SIDE, Math.round(rect.height * this.dpr)));
    if (width === this.canvas.width && height === this.canvas.height) return;
    this.canvas.width = width;
    this.canvas.height = height;
    this.svg.setAttribute("viewBox", `0 0 ${rect.width} ${rect.height}`);
    if (this.image) this.request("final");
  }

  /** Source size after rotation (what is laid out on screen). */
  _rotatedSize(image) {
    const quarter = this.rotation === 90 || this.rotation === 270;
    return quarter ? [image.rows, image.columns] : [image.columns, image.rows];
  }

  fitScale(image = this.image) {
    if (!image) return 1;
    const [w, h] = this._rotatedSize(image);
    return Math.min(this.canvas.width / w, this.canvas.height / h);
  }

  /** Device pixels per source pixel. */
  get scale() {
    return this.fitScale() * this.zoom;
  }

  _center(image = this.image) {
    return this.center || [image.columns / 2, image.rows / 2];
  }

  /** Source pixel coordinates -> canvas device pixels. */
  toCanvas(x, y) {
    const image = this.image;
    const [cx, cy] = this._center(image);
    const [vx, vy] = toView(x - cx, y - cy, this.rotation, this.flipH, this.flipV);
    return [this.canvas.width / 2 + vx * this.scale, this.canvas.height / 2 + vy * this.scale];
  }

  /** Canvas device pixels -> source pixel coordinates. */
  toSource(px, py) {
    const image = this.image;
    const [cx, cy] = this._center(image);
    const s = this.scale;
    const [dx, dy] = fromView((px - this.canvas.width / 2) / s, (py - this.canvas.height / 2) / s,
      this.rotation, this.flipH, this.flipV);
    return [cx + dx, cy + dy];
  }

  /** Client (CSS) coordinates of a pointer event -> canvas device pixels. */
  eventToCanvas(event) {
    const rect = this.canvas.getBoundingClientRect();
    return [(event.clientX - rect.left) * this.dpr, (event.clientY - rect.top) * this.dpr];
  }

  /** Keep source point `source` under canvas point `target` (zoom about a pointer, pinch, pan). */
  anchor(source, target) {
    const s = this.scale;
    const [dx, dy] = fromView((target[0] - this.canvas.width / 2) / s, (target[1] - this.canvas.height / 2) / s,
      this.rotation, this.flipH, this.flipV);
    this.center = [source[0] - dx, source[1] - dy];
  }

  /** The part of the image on screen: region in source px and its size on the canvas. */
  _visible(image) {
    const corners = [
      [0, 0], [this.canvas.width, 0], [0, this.canvas.height], [this.canvas.width, this.canvas.height],
    ].map(([x, y]) => this.toSource(x, y));
    const xs = corners.map((c) => c[0]);
    const ys = corners.map((c) => c[1]);
    const x0 = Math.max(0, Math.floor(Math.min(...xs)));
    const y0 = Math.max(0, Math.floor(Math.min(...ys)));
    const x1 = Math.min(image.columns, Math.ceil(Math.max(...xs)));
    const y1 = Math.min(image.rows, Math.ceil(Math.max(...ys)));
    if (x1 <= x0 || y1 <= y0) return null;
    const a = this.toCanvas(x0, y0);
    const b = this.toCanvas(x1, y1);
    const dest = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1])];
    const whole = x0 === 0 && y0 === 0 && x1 === image.columns && y1 === image.rows;
    return { region: whole ? null : [x0, y0, x1 - x0, y1 - y0], dest };
  }

  // ---- state changes ----------------------------------------------------------------------

  setSeries(message) {
    const same = message.series === this.series && (message.instances || []).length > 0 && this.images.length > 0;
    if (same) {
      // The socket reconnected or the layout came back: keep the slice, window and view.
      this.closed = false;
      this.inFlight = null;
      this.request("final");
      return;
    }
    this.series = message.series;
    const images = [];
    for (const instance of message.instances || []) {
      const frames = Math.max(1, instance.frames || 1);
      for (let frame = 0; frame < frames; frame += 1) {
        images.push({ instance: instance.uid, frame, rows: instance.rows, columns: instance.columns });
      }
    }
    this.images = images;
    this.seriesOverlay = message.overlay || null;
    this.multiframe = (message.instances || []).some((instance) => (instance.frames || 1) > 1);
    const fps = Number(message.fps || message.frame_rate || 0);
    this.cine.fps = fps > 0 ? Math.min(60, fps) : this.multiframe ? 30 : 20;
    this.position = 0;
    this.window = null;
    this.defaultWindow = null;
    this.resetView();
    this.scrubber.max = String(Math.max(0, images.length - 1));
    this.scrubber.value = String(this.position);
    this.scrubber.hidden = images.length < 2;
    this.element.dataset.series = this.series || "";
    this.element.dataset.count = String(images.length);
    this.app.onViewportChange(this);
    this.request("final");
  }

  resetView() {
    this.zoom = 1;
    this.center = null;
    this.rotation = 0;
    this.flipH = false;
    this.flipV = false;
    this.invert = false;
    if (this.defaultWindow) this.window = { ...this.defaultWindow };
  }

  goTo(position, tier = "interactive") {
    if (!this.images.length) return;
    const clamped = Math.max(0, Math.min(this.images.length - 1, Math.round(position)));
    if (clamped === this.position) return;
    this.position = clamped;
    this.scrubber.value = String(clamped);
    this.app.onViewportChange(this);
    this.request(tier);
  }

  scrollBy(step) {
    this.goTo(this.position + step);
  }

  setWindow(center, width, tier = "interactive") {
    if (!Number.isFinite(center) || !Number.isFinite(width)) return;
    this.window = { center, width: Math.max(1, width) };
    this.app.onViewportChange(this);
    this.request(tier);
  }

  changed(tier = "interactive") {
    this.app.onViewportChange(this);
    this.request(tier);
  }

  // ---- requests ---------------------------------------------------------------------------

  /** Want the current state on screen; sends now or after the reply in flight. */
  request(tier = "interactive") {
    if (this.closed || !this.image) return;
    this.element.dataset.index = String(this.position);
    this.pending = tier === "final" && this.pending !== "interactive" ? "final" : tier;
    if (tier === "interactive") {
      window.clearTimeout(this.settleTimer);
      this.settleTimer = window.setTimeout(() => this.request("final"), SETTLE_MS);
    }
    this.renderAnnotations();
    this._pump();
  }

  _pump() {
    if (this.inFlight || !this.pending || this.closed) return;
    const image = this.image;
    if (!image) return;
    const visible = this._visible(image);
    if (!visible) {
      this.pending = null;
      this.context.fillStyle = "#000";
      this.context.fillRect(0, 0, this.canvas.width, this.canvas.height);
      return;
    }
    const quarter = this.rotation === 90 || this.rotation === 270;
    const [regionW, regionH] = visible.region ? visible.region.slice(2) : [image.columns, image.rows];
    const [outW, outH] = quarter ? [regionH, regionW] : [regionW, regionH];
    const s = this.scale;
    const request = {
      type: "frame",
      viewport: this.index,
      seq: nextSeq++,
      instance: image.instance,
      frame: image.frame,
      width: Math.max(1, Math.min(MAX_SIDE, this.canvas.width, Math.round(outW * s))),
      height: Math.max(1, Math.min(MAX_SIDE, this.canvas.height, Math.round(outH * s))),
      window: this.window ? { center: this.window.center, width: this.window.width } : null,
      region: visible.region,
      rotation: this.rotation,
      flip_h: this.flipH,
      flip_v: this.flipV,
      invert: this.invert,
      tier: this.pending,
    };
    if (!this.app.send(request)) return; // not connected yet: stays pending, sent on open
    this.pending = null;
    this.inFlight = {
      seq: request.seq, request, dest: visible.dest, position: this.position, zoom: this.zoom, sentAt: performance.now(),
    };
    window.clearTimeout(this.replyTimer);
    this.replyTimer = window.setTimeout(() => this._lost(request.seq), REPLY_TIMEOUT_MS);
  }

  _lost(seq) {
    if (this.inFlight && this.inFlight.seq === seq) {
      this.inFlight = null;
      this.pending = this.pending || "final";
      this._pump();
    }
  }

  /** An error frame for our seq: give up on it and move on to the newest wish. */
  failed(seq, retry) {
    if (!this.inFlight || this.inFlight.seq !== seq) return;
    window.clearTimeout(this.replyTimer);
    this.inFlight = null;
    if (retry) {
      this.pending = this.pending || "final";
      window.setTimeout(() => this._pump(), 50);
    } else {
      this._pump();
    }
  }

  /** A binary frame arrived for this viewport. */
  receive(frame) {
    const { header, image } = frame;
    const sent = this.inFlight && this.inFlight.seq === header.seq ? this.inFlight : null;
    if (sent) {
      window.clearTimeout(this.replyTimer);
      this.inFlight = null;
      this._pump(); // the server renders the next one while we decode this one
    }
    if (!sent || header.seq <= this.lastDrawnSeq) return; // stale: never drawn
    this.lastDrawnSeq = header.seq;
    if (header.window && Number.isFinite(header.window.center)) {
      if (!this.defaultWindow) this.defaultWindow = { ...header.window };
      if (!this.window) {
        this.window = { ...header.window };
        this.app.onViewportChange(this);
      }
    }
    this.drawing = this.drawing.then(() => this._draw(header, image, sent, frame.bytes));
  }

  async _draw(header, blob, sent, bytes) {
    if (this.closed || header.seq < this.lastDrawnSeq) return;
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob);
    } catch {
      this.app.status("A frame could not be decoded.");
      return;
    }
    try {
      if (this.closed || header.seq < this.lastDrawnSeq) return;
      const ctx = this.context;
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      ctx.imageSmoothingEnabled = true;
      let [x, y, w, h] = sent.dest;
      const aspect = bitmap.width / bitmap.height;
      const rounding = 2 / Math.max(1, Math.min(bitmap.width, bitmap.height)); // what integer sizes explain
      if (Math.abs(aspect - w / h) > Math.max(0.02, rounding) * aspect) {
        // Non-square pixels (PS3.3 C.7.6.3.1.7): the server kept the physical aspect ratio,
        // so centre the picture in the place planned for square pixels instead of stretching it.
        const fit = Math.min(w / bitmap.width, h / bitmap.height);
        x += (w - bitmap.width * fit) / 2;
        y += (h - bitmap.height * fit) / 2;
        w = bitmap.width * fit;
        h = bitmap.height * fit;
      }
      const exact = Math.abs(w - bitmap.width) < 1.5 && Math.abs(h - bitmap.height) < 1.5;
      if (exact) {
        ctx.drawImage(bitmap, Math.round(x), Math.round(y));
      } else {
        ctx.drawImage(bitmap, x, y, w, h);
      }
    } finally {
      bitmap.close(); // PRIVACY: no decoded pixels survive off-screen
    }
    this.drawn += 1;
    const data = this.element.dataset;
    data.drawn = String(this.drawn);
    data.drawnIndex = String(sent.position);
    data.drawnSeq = String(header.seq);
    data.tier = header.tier || sent.request.tier;
    data.frame = String(header.frame);
    if (header.window) data.window = `${header.window.center},${header.window.width}`;
    data.dest = sent.dest.map((value) => Math.round(value)).join(",");
    data.zoom = String(Math.round(sent.zoom * 1000) / 1000);
    renderOverlay(this.element, header.overlay, this.seriesOverlay);
    this.element.dispatchEvent(new CustomEvent("lightbox:frame", {
      bubbles: true,
      detail: {
        seq: header.seq, tier: data.tier, position: sent.position, bytes, sentAt: sent.sentAt,
        drawnAt: performance.now(), window: header.window || null,
      },
    }));
    this.renderAnnotations();
  }

  renderAnnotations() {
    this.app.measure.render(this);
  }

  // ---- cine -------------------------------------------------------------------------------

  toggleCine(force) {
    const play = force === undefined ? !this.cine.playing : force;
    this.cine.playing = play && this.images.length > 1;
    window.clearTimeout(this.cine.timer);
    this.element.dataset.cine = this.cine.playing ? "playing" : "stopped";
    if (this.cine.playing) this._cineStep();
    else this.request("final");
    this.app.onViewportChange(this);
  }

  _cineStep() {
    if (!this.cine.playing || this.closed) return;
    const next = (this.position + 1) % this.images.length;
    this.position = next;
    this.scrubber.value = String(next);
    this.request("interactive");
    this.app.onViewportChange(this);
    this.cine.timer = window.setTimeout(() => this._cineStep(), 1000 / Math.max(1, this.cine.fps));
  }

  // ---- teardown ---------------------------------------------------------------------------

  /** Blank the canvas and drop every trace of the study from the page (sign-out, revocation). */
  clear() {
    this.closed = true;
    window.clearTimeout(this.settleTimer);
    window.clearTimeout(this.replyTimer);
    window.clearTimeout(this.cine.timer);
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.canvas.width = 1;
    this.canvas.height = 1;
    this.images = [];
    this.inFlight = null;
    this.pending = null;
    this.svg.replaceChildren();
    clearOverlay(this.element);
  }

  /** The viewport is hidden by a layout change: cancel its work and blank it. */
  detach() {
    window.clearTimeout(this.settleTimer);
    window.clearTimeout(this.cine.timer);
    this.cine.playing = false;
    this.pending = null;
    this.inFlight = null;
    this.app.send({ type: "cancel", viewport: this.index });
    this.context.clearRect(0, 0, this.canvas.width, this.canvas.height);
    this.svg.replaceChildren();
    clearOverlay(this.element);
  }
}
