// Viewport layouts: 1x1, 1x2 (side by side), 2x2. Hidden viewports cancel their work and go blank.

export const LAYOUTS = { "1x1": 1, "1x2": 2, "2x2": 4 };

/** Show the first n viewports for `layout`; returns the viewports that just became visible. */
export function applyLayout(app, layout) {
  const count = LAYOUTS[layout];
  if (!count) return [];
  document.getElementById("viewer-app").dataset.layout = layout;
  const shown = [];
  app.viewports.forEach((viewport, index) => {
    const visible = index < count;
    const wasVisible = !viewport.element.hidden;
    viewport.element.hidden = !visible;
    if (!visible && wasVisible) viewport.detach();
    if (visible && !wasVisible) shown.push(viewport);
  });
  if (app.active && app.active.element.hidden) app.setActive(app.viewports[0]);
  return shown;
}
