// Entry point of the zero-footprint viewer (docs/viewer-protocol.md). Plain ES modules, no build.
// PRIVACY: nothing is written to localStorage, sessionStorage, IndexedDB, the Cache API or a
// service worker; frames live only as canvas pixels and in-flight blobs.

import { applyLayout, LAYOUTS } from "./layout.js";
import { Measurements } from "./measure.js";
import { endSession } from "./session.js";
import { markOnce, ViewerSocket } from "./socket.js";
import { attachKeyboard, attachPointer, buildToolbar, fillHelp, syncToolbar } from "./tools.js";
import { Viewport } from "./viewport.js";

class App {
  constructor(data) {
    this.data = data;
    this.presets = Array.isArray(data.presets) ? data.presets : [];
    this.series = Array.isArray(data.series) ? data.series : [];
    this.root = document.getElementById("viewer-app");
    this.statusBox = document.getElementById("viewer-status");
    this.help = document.getElementById("viewer-help");
    this.viewports = [...document.querySelectorAll("#viewport-grid .viewport")]
      .sort((a, b) => Number(a.dataset.viewport) - Number(b.dataset.viewport))
      .map((element, index) => new Viewport(element, index, this));
    this.measure = new Measurements(this);
    this.active = this.viewports[0] || null;
    this.tool = "wl";
    this.touchWindowing = false;
    this.layout = LAYOUTS[this.root.dataset.layout] ? this.root.dataset.layout : "1x1";
    this.ended = false;
    this.stats = { interactive: { frames: 0, bytes: 0 }, final: { frames: 0, bytes: 0 } };
    this.socket = new ViewerSocket(data, {
      onOpen: () => this.onOpen(),
      onFrame: (frame) => this.onFrame(frame),
      onMessage: (message) => this.onMessage(message),
      onClose: (event) => this.onClose(event),
    });
  }

  start() {
    markOnce("start");
    // The ticket request goes out first; the UI below is built while it is in flight.
    this.socket.connect();
    this.controls = buildToolbar(this);
    this.root.addEventListener("lightbox:frame", () => this.loadThumbnails(), { once: true });
    window.setTimeout(() => this.loadThumbnails(), 2000); // no frame yet (slow server): load them anyway
    fillHelp(this.help);
    this.buildSeriesStrip();
    for (const viewport of this.viewports) attachPointer(this, viewport);
    attachKeyboard(this);
    applyLayout(this, this.layout);
    this.setActive(this.active);
    this.refresh();
    // Sign-out elsewhere, idle log-off and revocation arrive on the viewer socket itself as
    // `closing`; the site-wide session script (base.html) watches /ws/session/ for the page.
    window.setInterval(() => this.send({ type: "ping" }), 30_000);
    // PRIVACY: leaving the page (or the browser freezing it) takes the pixels off the canvases.
    window.addEventListener("pagehide", () => {
      this.socket.stop();
      for (const viewport of this.viewports) viewport.clear();
    });
  }

  // ---- wiring to the socket -------------------------------------------------------------------

  send(message) {
    return !this.ended && this.socket.send(message);
  }

  onOpen() {
    this.status("");
    // A (re)connected socket knows nothing: open every visible viewport's series again.
    this.visibleViewports().forEach((viewport, index) => {
      const uid = viewport.series || (this.series[index % Math.max(1, this.series.length)] || {}).uid;
      if (uid) this.openSeries(viewport, uid);
    });
  }

  onFrame(frame) {
    markOnce("first-frame-received");
    const viewport = this.viewports[frame.header.viewport];
    const tier = frame.header.tier === "final" ? "final" : "interactive";
    this.stats[tier].frames += 1;
    this.stats[tier].bytes += frame.bytes;
    if (viewport) viewport.receive(frame);
  }

  onMessage(message) {
    if (!message || typeof message !== "object") return;
    switch (message.type) {
      case "series": {
        markOnce("series");
        const index = Number.isInteger(message.viewport) ? message.viewport : this.pendingOpen(message.series);
        const viewport = this.viewports[index];
        if (viewport) {
          viewport.opening = null;
          viewport.setSeries(message);
          this.markSeries();
        }
        break;
      }
      case "measurement":
        this.measure.receive(message);
        break;
      case "error":
        this.onError(message);
        break;
      case "closing":
        endSession(this, message.reason, 4403);
        break;
      default:
        break;
    }
  }

  onError(message) {
    if (message.seq !== undefined && this.measure.receive(message)) return;
    if (message.seq !== undefined) {
      for (const viewport of this.viewports) viewport.failed(message.seq, message.code === "busy");
    }
    if (message.code === "busy") return;
    const text = {
      not_found: "That image is not available.",
      render_failed: "That image could not be rendered.",
      bad_message: "The viewer sent a request the server did not accept.",
    }[message.code] || "The server reported an error.";
    this.status(text);
  }

  onClose(event) {
    if (event.final) endSession(this, null, event.code);
    else this.status("Reconnecting…");
  }

  pendingOpen(uid) {
    const viewport = this.viewports.find((candidate) => candidate.opening === uid);
    return viewport ? viewport.index : -1;
  }

  openSeries(viewport, uid) {
    viewport.opening = uid;
    viewport.inFlight = null;
    this.send({ type: "open", viewport: viewport.index, series: uid });
  }

  // ---- UI state -------------------------------------------------------------------------------

  visibleViewports() {
    return this.viewports.filter((viewport) => !viewport.element.hidden);
  }

  setActive(viewport) {
    if (!viewport || (viewport === this.active && viewport.element.classList.contains("active"))) return;
    this.active = viewport;
    for (const candidate of this.viewports) candidate.element.classList.toggle("active", candidate === viewport);
    this.markSeries();
    this.refresh();
  }

  setTool(tool) {
    this.measure.cancelDraft();
    this.tool = tool;
    this.root.dataset.tool = tool;
    this.refresh();
  }

  setTouchWindowing(on) {
    this.touchWindowing = on;
    this.root.dataset.touchMode = on ? "wl" : "scroll";
    this.announce(on ? "One-finger drag adjusts window/level" : "One-finger drag scrolls");
    this.refresh();
  }

  setLayout(layout) {
    this.layout = layout;
    const shown = applyLayout(this, layout);
    for (const viewport of shown) {
      viewport.closed = false;
      const uid = viewport.series || (this.series[viewport.index % Math.max(1, this.series.length)] || {}).uid;
      if (uid) this.openSeries(viewport, uid);
    }
    this.refresh();
  }

  onViewportChange(viewport) {
    // The slice/frame number is in the server's overlay ("Im: 3 (3/200)", "Fr: 2/30").
    if (viewport === this.active) this.refresh();
  }

  refresh() {
    // Coalesced to one toolbar update per animation frame: scrolling and dragging call this
    // for every event, and the toolbar only needs to be right when it is painted.
    if (!this.controls || this.refreshQueued) return;
    this.refreshQueued = true;
    window.requestAnimationFrame(() => {
      this.refreshQueued = false;
      syncToolbar(this, this.controls);
    });
  }

  toggleHelp() {
    if (this.help.open) this.help.close();
    else this.help.showModal();
  }

  helpOpen() {
    return this.help.open;
  }

  status(text) {
    this.statusBox.textContent = text;
  }

  announce(text) {
    this.status(text);
  }

  buildSeriesStrip() {
    const strip = document.getElementById("series-strip");
    strip.replaceChildren();
    for (const series of this.series) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "series-thumb";
      button.dataset.series = series.uid;
      if (series.thumbnail) {
        const image = document.createElement("img");
        image.dataset.src = series.thumbnail; // loaded after the first frame: that one comes first
        image.alt = "";
        image.draggable = false;
        image.loading = "lazy";
        image.addEventListener("contextmenu", (event) => event.preventDefault());
        button.append(image);
      }
      const caption = document.createElement("span");
      const count = series.frames || series.instances || 0;
      caption.textContent = `${series.modality || ""} ${series.number ?? ""} ${series.description || ""} (${count})`.trim();
      button.append(caption);
      button.addEventListener("click", () => {
        if (this.active) this.openSeries(this.active, series.uid);
      });
      strip.append(button);
    }
  }

  loadThumbnails() {
    if (this.thumbnailsLoaded || this.ended) return;
    this.thumbnailsLoaded = true;
    for (const image of document.querySelectorAll("#series-strip img[data-src]")) {
      image.src = image.dataset.src;
      delete image.dataset.src;
    }
  }

  markSeries() {
    const uid = this.active && this.active.series;
    for (const button of document.querySelectorAll("#series-strip .series-thumb")) {
      button.setAttribute("aria-current", String(button.dataset.series === uid));
    }
  }
}

function boot() {
  const script = document.getElementById("viewer-data");
  if (!script) return;
  const app = new App(JSON.parse(script.textContent));
  app.start();
}

boot();
