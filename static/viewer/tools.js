// Physician tools: pointer, touch, wheel and keyboard handling, the toolbar and the help dialog.

const MEASURE_TOOLS = new Set(["line", "angle", "rect", "ellipse"]);
const MIN_ZOOM = 0.1;
const MAX_ZOOM = 32;

const TOOLS = [
  ["wl", "W/L", "w", "Window/level: drag"],
  ["scroll", "Scroll", "s", "Scroll slices: drag up/down"],
  ["zoom", "Zoom", "z", "Zoom: drag up/down"],
  ["pan", "Pan", "p", "Pan: drag"],
  ["line", "Length", "l", "Length in mm"],
  ["angle", "Angle", "g", "Angle: three clicks"],
  ["rect", "Rect ROI", "t", "Rectangle ROI statistics"],
  ["ellipse", "Ellipse ROI", "e", "Ellipse ROI statistics"],
];

const ACTIONS = [
  ["fit", "Fit", "f", "Fit to viewport"],
  ["actual", "1:1", "a", "One image pixel per screen pixel"],
  ["invert", "Invert", "i", "Invert"],
  ["rotate", "Rotate", "r", "Rotate 90° clockwise (Shift+R: anticlockwise)"],
  ["flip-h", "Flip H", "h", "Flip left-right"],
  ["flip-v", "Flip V", "v", "Flip top-bottom"],
  ["reset", "Reset", "0", "Reset view and window"],
  ["cine", "Play", "Space", "Cine play/pause"],
  ["clear-measurements", "Clear", "Delete", "Remove measurements"],
  ["fullscreen", "Full screen", "Shift+F", "Full screen"],
  ["help", "?", "?", "Keyboard help"],
];

const KEY_HELP = [
  ["Wheel, ↑/↓, ←/→", "Previous/next slice or frame"],
  ["PageUp / PageDown", "10 slices back/forward"],
  ["Home / End", "First/last slice"],
  ["Ctrl/⌘ + wheel, + / −", "Zoom (about the pointer / the centre)"],
  ["1 … 9", "Window presets"],
  ["Right drag / middle drag / Shift+drag", "Zoom / pan / pan"],
  ["Esc", "Cancel a measurement, close this help"],
];

function el(tag, attributes = {}, text = "") {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text) element.textContent = text;
  return element;
}

function clampZoom(zoom) {
  return Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, zoom));
}

/** Zoom `viewport` by `factor`, keeping the source point under canvas point `at` in place. */
export function zoomBy(viewport, factor, at) {
  if (!viewport.image) return;
  const target = at || [viewport.canvas.width / 2, viewport.canvas.height / 2];
  const source = viewport.toSource(...target);
  viewport.zoom = clampZoom(viewport.zoom * factor);
  viewport.anchor(source, target);
  viewport.changed("interactive");
}

// ---- toolbar -------------------------------------------------------------------------------

export function buildToolbar(app) {
  const bar = document.getElementById("viewer-toolbar");
  bar.replaceChildren();

  const tools = el("div", { class: "tool-group", role: "group", "aria-label": "Mouse tool" });
  const touch = el("button", {
    type: "button", id: "wl-toggle", class: "touch-only", "aria-pressed": "false",
    title: "One-finger drag: window/level instead of scrolling",
  }, "W/L mode");
  tools.append(touch);
  for (const [name, label, key, title] of TOOLS) {
    // On touch screens one finger scrolls (or windows, with the toggle) and two fingers zoom
    // and pan, so the mouse-drag tools are hidden there; measuring tools stay.
    const mouseOnly = !MEASURE_TOOLS.has(name);
    tools.append(el("button", {
      type: "button", "data-tool": name, "aria-pressed": "false", title: `${title} (${key})`,
      class: mouseOnly ? "mouse-only" : "",
    }, label));
  }
  bar.append(tools);

  const layouts = el("div", { class: "tool-group", role: "group", "aria-label": "Layout" });
  for (const layout of ["1x1", "1x2", "2x2"]) {
    layouts.append(el("button", { type: "button", "data-layout": layout, "aria-pressed": "false" }, layout));
  }
  bar.append(layouts);

  const windowForm = el("form", { class: "tool-group window-form", "aria-label": "Window" });
  const presets = el("select", { name: "preset", "aria-label": "Window preset" });
  presets.append(el("option", { value: "" }, "Preset"));
  app.presets.forEach((preset, index) => {
    presets.append(el("option", { value: String(index) },
      `${preset.key || index + 1} ${preset.name} (${preset.center}/${preset.width})`));
  });
  const center = el("input", { type: "number", name: "center", step: "any", "aria-label": "Window centre", placeholder: "C" });
  const width = el("input", { type: "number", name: "width", step: "any", min: "1", "aria-label": "Window width", placeholder: "W" });
  windowForm.append(presets, center, width, el("button", { type: "submit" }, "Apply"));
  bar.append(windowForm);

  const actions = el("div", { class: "tool-group", role: "group", "aria-label": "View" });
  for (const [name, label, key, title] of ACTIONS) {
    actions.append(el("button", { type: "button", "data-action": name, title: `${title} (${key})` }, label));
  }
  const fps = el("input", {
    type: "number", name: "fps", min: "1", max: "60", step: "1", value: "20", "aria-label": "Cine frames per second",
  });
  actions.append(el("label", { class: "fps" }, "fps"), fps);
  bar.append(actions);

  bar.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || !bar.contains(button)) return;
    if (button.dataset.tool) {
      // Pressing the active measuring tool again puts it down (touch screens have no other way).
      const again = button.dataset.tool === app.tool && MEASURE_TOOLS.has(app.tool);
      app.setTool(again ? "wl" : button.dataset.tool);
    } else if (button.dataset.layout) {
      app.setLayout(button.dataset.layout);
    } else if (button.dataset.action) {
      runAction(app, button.dataset.action);
    } else if (button.id === "wl-toggle") {
      if (MEASURE_TOOLS.has(app.tool)) app.setTool("wl");
      app.setTouchWindowing(!app.touchWindowing);
    }
  });
  presets.addEventListener("change", () => {
    if (presets.value !== "") applyPreset(app, Number(presets.value));
    presets.value = "";
  });
  windowForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const viewport = app.active;
    if (viewport) viewport.setWindow(Number(center.value), Number(width.value), "final");
  });
  fps.addEventListener("change", () => {
    const value = Math.max(1, Math.min(60, Number(fps.value) || 20));
    fps.value = String(value);
    if (app.active) app.active.cine.fps = value;
  });
  return { tools, touch, layouts, center, width, fps, cine: actions.querySelector('[data-action="cine"]') };
}

/** Reflect the active viewport's state in the toolbar (without fighting the user's typing). */
export function syncToolbar(app, controls) {
  const viewport = app.active;
  for (const button of controls.tools.querySelectorAll("button[data-tool]")) {
    button.setAttribute("aria-pressed", String(button.dataset.tool === app.tool));
  }
  for (const button of controls.layouts.querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.layout === app.layout));
  }
  controls.touch.setAttribute("aria-pressed", String(app.touchWindowing));
  if (!viewport) return;
  if (viewport.window) {
    if (document.activeElement !== controls.center) controls.center.value = String(Math.round(viewport.window.center));
    if (document.activeElement !== controls.width) controls.width.value = String(Math.round(viewport.window.width));
  }
  if (document.activeElement !== controls.fps) controls.fps.value = String(viewport.cine.fps);
  controls.cine.textContent = viewport.cine.playing ? "Pause" : "Play";
  controls.cine.setAttribute("aria-pressed", String(viewport.cine.playing));
}

export function applyPreset(app, index) {
  const preset = app.presets[index];
  const viewport = app.active;
  if (!preset || !viewport) return;
  viewport.setWindow(Number(preset.center), Number(preset.width), "final");
  app.announce(`Window ${preset.name}`);
}

export function runAction(app, action) {
  const viewport = app.active;
  if (action === "help") return app.toggleHelp();
  if (action === "fullscreen") return toggleFullscreen();
  if (action === "clear-measurements") return app.measure.clearAll();
  if (!viewport || !viewport.image) return undefined;
  switch (action) {
    case "fit":
      viewport.zoom = 1;
      viewport.center = null;
      break;
    case "actual":
      viewport.zoom = clampZoom(1 / viewport.fitScale());
      break;
    case "invert":
      viewport.invert = !viewport.invert;
      break;
    case "rotate":
      viewport.rotation = (viewport.rotation + 90) % 360;
      break;
    case "rotate-back":
      viewport.rotation = (viewport.rotation + 270) % 360;
      break;
    case "flip-h":
      viewport.flipH = !viewport.flipH;
      break;
    case "flip-v":
      viewport.flipV = !viewport.flipV;
      break;
    case "reset":
      viewport.resetView();
      break;
    case "cine":
      viewport.toggleCine();
      return undefined;
    default:
      return undefined;
  }
  viewport.changed("final");
  return undefined;
}

function toggleFullscreen() {
  const root = document.getElementById("viewer-app");
  if (document.fullscreenElement) document.exitFullscreen();
  else if (root.requestFullscreen) root.requestFullscreen().catch(() => {});
}

export function fillHelp(dialog) {
  dialog.replaceChildren();
  dialog.append(el("h2", {}, "Keyboard and mouse"));
  const table = el("table");
  const rows = [...KEY_HELP];
  for (const [, label, key, title] of [...TOOLS, ...ACTIONS]) rows.push([key, `${label}: ${title}`]);
  for (const [key, what] of rows) {
    const row = el("tr");
    row.append(el("th", { scope: "row" }, key), el("td", {}, what));
    table.append(row);
  }
  dialog.append(table);
  const form = el("form", { method: "dialog" });
  form.append(el("button", { type: "submit" }, "Close"));
  dialog.append(form);
}

// ---- keyboard ------------------------------------------------------------------------------

export function attachKeyboard(app) {
  const toolKeys = Object.fromEntries(TOOLS.map(([name, , key]) => [key, name]));
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement
      || target instanceof HTMLTextAreaElement;
    if (typing && event.key !== "Escape") return;
    if ((event.key === " " || event.key === "Enter") && target instanceof HTMLButtonElement) return;
    if (event.altKey || ((event.ctrlKey || event.metaKey) && !["+", "=", "-"].includes(event.key))) return;
    if (app.helpOpen() && event.key !== "?") return;
    const viewport = app.active;
    let handled = true;
    switch (event.key) {
      case "ArrowDown": case "ArrowRight": viewport && viewport.scrollBy(1); break;
      case "ArrowUp": case "ArrowLeft": viewport && viewport.scrollBy(-1); break;
      case "PageDown": viewport && viewport.scrollBy(10); break;
      case "PageUp": viewport && viewport.scrollBy(-10); break;
      case "Home": viewport && viewport.goTo(0); break;
      case "End": viewport && viewport.goTo(viewport.images.length - 1); break;
      case "+": case "=": viewport && zoomBy(viewport, 2); break;
      case "-": case "_": viewport && zoomBy(viewport, 0.5); break;
      case " ": runAction(app, "cine"); break;
      case "?": runAction(app, "help"); break;
      case "F": runAction(app, "fullscreen"); break;
      case "R": runAction(app, "rotate-back"); break;
      case "f": runAction(app, "fit"); break;
      case "a": runAction(app, "actual"); break;
      case "i": runAction(app, "invert"); break;
      case "r": runAction(app, "rotate"); break;
      case "h": runAction(app, "flip-h"); break;
      case "v": runAction(app, "flip-v"); break;
      case "0": runAction(app, "reset"); break;
      case "Delete": runAction(app, "clear-measurements"); break;
      case "Escape": app.measure.cancelDraft(); break;
      default:
        if (/^[1-9]$/.test(event.key)) {
          const index = app.presets.findIndex((preset) => String(preset.key) === event.key);
          applyPreset(app, index >= 0 ? index : Number(event.key) - 1);
        } else if (toolKeys[event.key]) {
          app.setTool(toolKeys[event.key]);
        } else {
          handled = false;
        }
    }
    if (handled) event.preventDefault();
  });
}

// ---- pointer, touch and wheel ----------------------------------------------------------------

export function attachPointer(app, viewport) {
  const element = viewport.element;
  const pointers = new Map(); // pointerId -> [x, y] canvas device px
  let gesture = null;
  let wheelRest = 0;

  const start = (mode, at) => ({
    mode,
    at,
    moved: false,
    position: viewport.position,
    window: viewport.window ? { ...viewport.window } : null,
    zoom: viewport.zoom,
    source: viewport.image ? viewport.toSource(...at) : null,
  });

  const pinchStart = () => {
    const [a, b] = [...pointers.values()];
    const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
    return { mode: "pinch", distance: Math.hypot(b[0] - a[0], b[1] - a[1]) || 1, zoom: viewport.zoom,
      source: viewport.toSource(...mid) };
  };

  element.addEventListener("pointerdown", (event) => {
    if (event.target === viewport.scrubber || !viewport.image) return;
    app.setActive(viewport);
    element.focus({ preventScroll: true });
    event.preventDefault();
    try {
      element.setPointerCapture(event.pointerId);
    } catch {
      // a synthetic or already-released pointer: follow it without capture
    }
    const at = viewport.eventToCanvas(event);
    pointers.set(event.pointerId, at);
    if (pointers.size === 2) {
      if (gesture && MEASURE_TOOLS.has(gesture.mode)) app.measure.cancelDraft();
      gesture = pinchStart();
      return;
    }
    if (pointers.size > 2) return;
    let mode;
    if (event.pointerType === "touch") {
      mode = MEASURE_TOOLS.has(app.tool) ? app.tool : app.touchWindowing ? "wl" : "scroll";
    } else if (event.button === 1 || (event.button === 0 && event.shiftKey)) {
      mode = "pan";
    } else if (event.button === 2) {
      mode = "zoom";
    } else {
      mode = app.tool;
    }
    gesture = start(mode, at);
    if (MEASURE_TOOLS.has(mode)) app.measure.pointerDown(viewport, mode, gesture.source);
  });

  element.addEventListener("pointermove", (event) => {
    const at = viewport.eventToCanvas(event);
    if (!pointers.has(event.pointerId)) {
      if (app.measure.busy && viewport.image) app.measure.pointerMove(viewport, viewport.toSource(...at));
      return;
    }
    pointers.set(event.pointerId, at);
    if (!gesture || !viewport.image) return;
    if (gesture.mode === "pinch") {
      if (pointers.size < 2) return;
      const [a, b] = [...pointers.values()];
      const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      viewport.zoom = clampZoom(gesture.zoom * (Math.hypot(b[0] - a[0], b[1] - a[1]) / gesture.distance));
      viewport.anchor(gesture.source, mid); // zoom about the fingers and follow them (pan)
      viewport.changed("interactive");
      return;
    }
    const dpr = viewport.dpr;
    const dx = (at[0] - gesture.at[0]) / dpr;
    const dy = (at[1] - gesture.at[1]) / dpr;
    if (Math.hypot(dx, dy) > 3) gesture.moved = true;
    switch (gesture.mode) {
      case "scroll": {
        const cssHeight = viewport.canvas.height / dpr;
        const step = Math.max(4, Math.min(40, cssHeight / Math.max(1, viewport.images.length)));
        viewport.goTo(gesture.position + Math.trunc(dy / step));
        break;
      }
      case "wl": {
        const base = gesture.window || viewport.window;
        if (!base) break;
        const k = Math.max(1, base.width) / 150;
        viewport.setWindow(base.center + dy * k, Math.max(1, base.width + dx * k));
        break;
      }
      case "zoom":
        viewport.zoom = clampZoom(gesture.zoom * 2 ** (-dy / 150));
        viewport.anchor(gesture.source, gesture.at);
        viewport.changed("interactive");
        break;
      case "pan":
        viewport.anchor(gesture.source, at);
        viewport.changed("interactive");
        break;
      default:
        if (MEASURE_TOOLS.has(gesture.mode)) app.measure.pointerMove(viewport, viewport.toSource(...at));
    }
  });

  const end = (event) => {
    if (!pointers.has(event.pointerId)) return;
    const at = viewport.eventToCanvas(event);
    pointers.delete(event.pointerId);
    if (gesture && MEASURE_TOOLS.has(gesture.mode) && viewport.image && event.type === "pointerup") {
      app.measure.pointerUp(viewport, viewport.toSource(...at), gesture.moved);
    }
    // After a pinch the remaining finger does nothing until every finger is lifted.
    if (pointers.size === 0) gesture = null;
    else if (gesture && gesture.mode === "pinch") gesture = { mode: "none" };
  };
  element.addEventListener("pointerup", end);
  element.addEventListener("pointercancel", end);

  element.addEventListener("wheel", (event) => {
    if (!viewport.image) return;
    event.preventDefault();
    app.setActive(viewport);
    const delta = event.deltaY * (event.deltaMode === 1 ? 33 : event.deltaMode === 2 ? 400 : 1);
    if (event.ctrlKey || event.metaKey) {
      zoomBy(viewport, 2 ** (-delta / 500), viewport.eventToCanvas(event));
      return;
    }
    wheelRest += delta;
    if (Math.abs(wheelRest) < 40) return;
    const steps = Math.sign(wheelRest) * Math.max(1, Math.floor(Math.abs(wheelRest) / 100));
    wheelRest = 0;
    viewport.scrollBy(steps);
  }, { passive: false });
}
