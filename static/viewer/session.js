// The end of a viewing session: revoked, expired, signed out, refused. The page blanks every
// canvas and overlay and says why; it never reconnects on its own after that.

const REASONS = {
  revoked: "Access to this study was revoked.",
  expired: "Your viewing session has expired.",
  signed_out: "You were signed out.",
  idle: "You were signed out after a period of inactivity.",
  bad_ticket: "The viewer could not start. Reload the page to try again.",
  locked: "This shared link is locked.",
  max_opens: "This shared link has been opened as many times as it allows.",
};

export function reasonText(reason, code) {
  if (reason && REASONS[reason]) return REASONS[reason];
  if (reason) return "This viewing session has ended."; // a reason this page does not know yet
  if (code === 4401) return "Your sign-in needs to be verified again. Please sign in.";
  if (code === 4403) return "The viewer connection was closed by the server.";
  if (code === 4404) return "This study is not available.";
  if (code === 1006) return "The viewer cannot reach the server.";
  return "The viewer connection was closed.";
}

/** Blank everything that shows the study and show the reason in the banner. */
export function endSession(app, reason, code) {
  if (app.ended) return;
  app.ended = true;
  app.socket.stop();
  for (const viewport of app.viewports) viewport.clear();
  app.measure.items = [];
  app.measure.draft = null;
  // PRIVACY: thumbnails are study pixels too.
  for (const image of document.querySelectorAll("#series-strip img")) image.removeAttribute("src");
  document.getElementById("series-strip").replaceChildren();
  const banner = document.getElementById("viewer-closed");
  banner.querySelector(".viewer-closed-reason").textContent = reasonText(reason, code);
  banner.hidden = false;
  document.getElementById("viewer-app").dataset.state = "closed";
}
