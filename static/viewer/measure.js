// Measurements: the client only collects points (in source pixels) and draws; the values come
// from the server (`measure` -> `measurement`), computed on the stored pixels in modality units.

const SVG = "http://www.w3.org/2000/svg";
const POINTS_NEEDED = { line: 2, rect: 2, ellipse: 2, angle: 3 };

let nextSeq = 1_000_000_000; // a range apart from frame sequence numbers, easier to read in logs

function fixed(value, digits = 1) {
  return Number.isFinite(value) ? Number(value).toFixed(digits) : "?";
}

const SPACING_NAMES = {
  PixelSpacing: "Pixel Spacing",
  pixel_spacing: "Pixel Spacing",
  ImagerPixelSpacing: "Imager Pixel Spacing",
  imager_pixel_spacing: "Imager Pixel Spacing",
};

function spacingName(source) {
  if (!source) return "";
  return SPACING_NAMES[source] || String(source);
}

/** The text shown beside a finished measurement, from the server's reply. */
export function labelFor(shape, reply) {
  if (!reply) return "…";
  if (reply.error) return reply.error;
  const v = reply.values || reply.result || reply;
  if (typeof v.text === "string" && v.text) return v.text;
  const spacing = spacingName(v.spacing_source);
  if (shape === "line") {
    if (Number.isFinite(v.length_mm)) return `${fixed(v.length_mm)} mm${spacing ? ` (${spacing})` : ""}`;
    if (Number.isFinite(v.length_px)) return `${fixed(v.length_px)} px (no pixel spacing)`;
  }
  if (shape === "angle") {
    const degrees = v.angle_deg ?? v.degrees ?? v.angle;
    if (Number.isFinite(degrees)) return `${fixed(degrees)}°`;
  }
  if (shape === "rect" || shape === "ellipse") {
    const units = v.units ? ` ${v.units}` : "";
    const parts = [];
    if (Number.isFinite(v.mean)) parts.push(`mean ${fixed(v.mean)}${units}`);
    if (Number.isFinite(v.sd)) parts.push(`SD ${fixed(v.sd)}`);
    if (Number.isFinite(v.min) && Number.isFinite(v.max)) parts.push(`min ${fixed(v.min)} max ${fixed(v.max)}`);
    if (Number.isFinite(v.area_mm2)) parts.push(`area ${fixed(v.area_mm2 / 100, 2)} cm²`);
    else if (Number.isFinite(v.pixels)) parts.push(`${v.pixels} px`);
    if (parts.length) return parts.join(", ");
  }
  return "no value";
}

function node(name, attributes, className) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (className) element.setAttribute("class", className);
  return element;
}

export class Measurements {
  constructor(app) {
    this.app = app;
    this.items = []; // {seq, shape, instance, frame, points, reply}
    this.draft = null; // {viewport, shape, points, hover}
  }

  get busy() {
    return this.draft !== null;
  }

  /** A pointer went down on `viewport` with a measuring tool: start or extend the draft. */
  pointerDown(viewport, shape, source) {
    const image = viewport.image;
    if (!image) return;
    if (!this.draft || this.draft.viewport !== viewport || this.draft.shape !== shape) {
      this.draft = { viewport, shape, instance: image.instance, frame: image.frame, points: [source], hover: source };
    } else {
      this.draft.points.push(source);
    }
    this._maybeFinish();
    this.render(viewport);
  }

  pointerMove(viewport, source) {
    if (!this.draft || this.draft.viewport !== viewport) return;
    this.draft.hover = source;
    this.render(viewport);
  }

  /** Releasing after a drag adds the end point (line, rect, ellipse; the angle's second arm too). */
  pointerUp(viewport, source, dragged) {
    if (!this.draft || this.draft.viewport !== viewport) return;
    if (dragged) {
      this.draft.points.push(source);
      this._maybeFinish();
    }
    this.render(viewport);
  }

  cancelDraft() {
    const viewport = this.draft && this.draft.viewport;
    this.draft = null;
    if (viewport) this.render(viewport);
  }

  clearAll() {
    this.items = [];
    this.draft = null;
    for (const viewport of this.app.viewports) this.render(viewport);
  }

  _maybeFinish() {
    const draft = this.draft;
    if (draft.points.length < POINTS_NEEDED[draft.shape]) return;
    const points = draft.points.slice(0, POINTS_NEEDED[draft.shape]).map(([x, y]) => [
      Math.round(x * 100) / 100, Math.round(y * 100) / 100,
    ]);
    const item = { seq: nextSeq++, shape: draft.shape, instance: draft.instance, frame: draft.frame, points, reply: null };
    this.items.push(item);
    this.draft = null;
    const sent = this.app.send({
      type: "measure", seq: item.seq, instance: item.instance, frame: item.frame, shape: item.shape, points,
    });
    if (!sent) item.reply = { error: "not connected" };
  }

  /** A `measurement` (or an error with a measurement seq) came back. */
  receive(message) {
    const item = this.items.find((candidate) => candidate.seq === message.seq);
    if (!item) return false;
    item.reply = message.type === "error" ? { error: message.message || message.code } : message;
    for (const viewport of this.app.viewports) this.render(viewport);
    this.app.announce(`${item.shape}: ${labelFor(item.shape, item.reply)}`);
    return true;
  }

  /** Redraw the annotation layer of one viewport in CSS pixels over its canvas. */
  render(viewport) {
    const svg = viewport.svg;
    if (!svg) return;
    if (!this.items.length && !this.draft && !svg.firstChild) return; // nothing to draw or erase
    const image = viewport.image;
    svg.replaceChildren();
    if (!image || viewport.closed) return;
    const dpr = viewport.dpr;
    const at = ([x, y]) => {
      const [cx, cy] = viewport.toCanvas(x, y);
      return [cx / dpr, cy / dpr];
    };
    const shown = this.items.filter((item) => item.instance === image.instance && item.frame === image.frame);
    for (const item of shown) this._draw(svg, item.shape, item.points.map(at), labelFor(item.shape, item.reply), "");
    const draft = this.draft;
    if (draft && draft.viewport === viewport && draft.instance === image.instance && draft.frame === image.frame) {
      const points = [...draft.points, draft.hover].map(at);
      this._draw(svg, draft.shape, points, "", "draft");
    }
  }

  _draw(svg, shape, points, label, extra) {
    const group = node("g", {}, `measurement ${extra}`.trim());
    const [a, b, c] = points;
    if (shape === "line" && b) {
      group.append(node("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1] }));
    } else if (shape === "angle" && b) {
      const path = c ? `M${a[0]} ${a[1]} L${b[0]} ${b[1]} L${c[0]} ${c[1]}` : `M${a[0]} ${a[1]} L${b[0]} ${b[1]}`;
      group.append(node("path", { d: path }));
    } else if (shape === "rect" && b) {
      group.append(node("rect", {
        x: Math.min(a[0], b[0]), y: Math.min(a[1], b[1]), width: Math.abs(b[0] - a[0]), height: Math.abs(b[1] - a[1]),
      }));
    } else if (shape === "ellipse" && b) {
      group.append(node("ellipse", {
        cx: (a[0] + b[0]) / 2, cy: (a[1] + b[1]) / 2, rx: Math.abs(b[0] - a[0]) / 2, ry: Math.abs(b[1] - a[1]) / 2,
      }));
    }
    for (const point of points) group.append(node("circle", { cx: point[0], cy: point[1], r: 3 }, "handle"));
    if (label) {
      const anchor = points[points.length - 1];
      const text = node("text", { x: anchor[0] + 6, y: anchor[1] - 6 }, "measurement-label");
      text.textContent = label;
      group.append(text);
    }
    svg.append(group);
  }
}
