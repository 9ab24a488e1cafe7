// Corner text of a viewport, composed by the server (it decides what PHI may be shown).
// Always set as textContent: strings from DICOM headers are never parsed as HTML.

const CORNERS = {
  tl: ["tl", "top_left", "topLeft"],
  tr: ["tr", "top_right", "topRight"],
  bl: ["bl", "bottom_left", "bottomLeft"],
  br: ["br", "bottom_right", "bottomRight"],
};

function lines(value) {
  if (value === null || value === undefined) return [];
  if (Array.isArray(value)) return value.filter((line) => line !== null && line !== "").map(String);
  if (typeof value === "object") {
    return Object.entries(value).filter(([, v]) => v !== null && v !== "").map(([k, v]) => `${k}: ${v}`);
  }
  return String(value).split("\n");
}

/** Split an overlay object into the four corners. */
export function cornersOf(overlay) {
  const result = { tl: [], tr: [], bl: [], br: [] };
  if (!overlay) return result;
  if (typeof overlay === "string" || Array.isArray(overlay)) {
    result.tl = lines(overlay);
    return result;
  }
  let matched = false;
  for (const [corner, names] of Object.entries(CORNERS)) {
    for (const name of names) {
      if (name in overlay) {
        result[corner] = result[corner].concat(lines(overlay[name]));
        matched = true;
      }
    }
  }
  if (!matched) result.tl = lines(overlay);
  return result;
}

/** Fill the four corner boxes of a viewport from the frame's overlay (or the series' one). */
export function renderOverlay(element, overlay, fallback) {
  const corners = cornersOf(overlay || fallback);
  for (const corner of Object.keys(CORNERS)) {
    const box = element.querySelector(`.overlay-${corner}`);
    if (!box) continue;
    const text = corners[corner].join("\n");
    if (box.textContent !== text) box.textContent = text;
  }
}

export function clearOverlay(element) {
  for (const box of element.querySelectorAll(".viewport-overlay")) box.textContent = "";
}
