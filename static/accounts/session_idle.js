// Idle log-off warning for signed-in pages (issue #6).
//
// The server is the authority (accounts/sessions.py): this module only asks it how long the
// session has left, shows a banner `warning_seconds` before the idle log-off with a
// "Stay signed in" button, and leaves the page when the server says the session is over, or when
// the session-events socket reports "signed out elsewhere". Nothing is kept in web storage.

const dataElement = document.getElementById("lightbox-session");
const data = dataElement ? JSON.parse(dataElement.textContent) : null;

// A request made by this script on its own (not by the user) must not count as activity.
const BACKGROUND = data ? { [data.background_header]: "1" } : {};
// Ask again this long after the server's deadline, so clocks never race the server's check.
const MARGIN_MS = 1000;
// Send user activity (keys, pointer) to the server at most this often while no banner shows.
const ACTIVITY_INTERVAL_MS = data ? Math.min(60, Math.max(1, data.idle_seconds / 4)) * 1000 : 60000;

let timer = null;
let countdown = null;
let leaving = false;
let banner = null;
let lastActivitySent = Date.now();
let activitySeen = false;

function leave() {
  if (leaving) return;
  leaving = true;
  clearTimeout(timer);
  clearInterval(countdown);
  // PRIVACY: take whatever the page showed off the screen before navigating away.
  document.body.replaceChildren();
  // Back to this page after signing in again (its path only; queries may carry search terms).
  const next = new URLSearchParams({ next: window.location.pathname });
  window.location.replace(`${data.login_url}?${next}`);
}

function formatSeconds(total) {
  const seconds = Math.max(0, Math.ceil(total));
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
}

function buildBanner() {
  const element = document.createElement("div");
  element.className = "session-warning";
  element.id = "session-warning";
  element.setAttribute("role", "alertdialog");
  element.setAttribute("aria-labelledby", "session-warning-text");
  element.hidden = true;
  const text = document.createElement("p");
  text.id = "session-warning-text";
  const button = document.createElement("button");
  button.type = "button";
  button.className = "primary";
  button.id = "session-stay";
  button.textContent = "Stay signed in";
  button.addEventListener("click", staySignedIn);
  element.append(text, button);
  document.body.prepend(element);
  return element;
}

function showBanner(deadline, idleBound) {
  banner = banner || buildBanner();
  const text = banner.querySelector("#session-warning-text");
  const button = banner.querySelector("#session-stay");
  // Only the idle timeout can be extended; the absolute lifetime ends the session regardless.
  button.hidden = !idleBound;
  const render = () => {
    const left = formatSeconds((deadline - Date.now()) / 1000);
    text.textContent = idleBound
      ? `You will be signed out in ${left} because of inactivity.`
      : `Your session ends in ${left}. Save your work; you will need to sign in again.`;
  };
  render();
  clearInterval(countdown);
  countdown = setInterval(render, 1000);
  if (banner.hidden) {
    banner.hidden = false;
    if (idleBound) button.focus();
  }
}

function hideBanner() {
  clearInterval(countdown);
  if (banner) banner.hidden = true;
}

function schedule(status) {
  clearTimeout(timer);
  const idleBound = status.idle_remaining <= status.absolute_remaining;
  const remaining = Math.min(status.idle_remaining, status.absolute_remaining);
  if (remaining <= 0) {
    // Over by the server's count: one more (background) request lets the server sign it out
    // and leave the reason for the sign-in page.
    timer = setTimeout(check, MARGIN_MS);
    return;
  }
  const deadline = Date.now() + remaining * 1000;
  const untilWarning = remaining - data.warning_seconds;
  if (untilWarning > 0) {
    hideBanner();
    timer = setTimeout(check, untilWarning * 1000);
  } else {
    showBanner(deadline, idleBound);
    timer = setTimeout(check, remaining * 1000 + MARGIN_MS);
  }
}

async function handle(response) {
  if (response.status === 401) {
    leave();
    return;
  }
  if (!response.ok) throw new Error(`session status ${response.status}`);
  schedule(await response.json());
}

// Requests to the session endpoints run one at a time. Two at once would race: the first gets
// the session ended (and the reason to show on the sign-in page), the second a bare 401 that
// could send the page away before the reason has arrived.
let chain = Promise.resolve();
let checkQueued = false;

function serial(task) {
  const run = chain.then(task);
  chain = run.catch(() => {});
  return run;
}

function check() {
  if (checkQueued) return chain;
  checkQueued = true;
  return serial(() => {
    checkQueued = false;
    return leaving ? undefined : checkNow();
  });
}

async function checkNow() {
  if (activitySeen && !leaving) {
    // The user did something since activity was last reported: report it instead of warning.
    try {
      await sendKeepalive();
      return;
    } catch {
      // fall through to a plain status check
    }
  }
  try {
    const response = await fetch(data.status_url, {
      headers: { Accept: "application/json", ...BACKGROUND },
      credentials: "same-origin",
      cache: "no-store",
    });
    await handle(response);
  } catch {
    // Offline or a server hiccup: try again soon; the server still ends the session on time.
    clearTimeout(timer);
    timer = setTimeout(check, 5000);
  }
}

function keepalive() {
  return serial(() => (leaving ? undefined : sendKeepalive()));
}

async function sendKeepalive() {
  lastActivitySent = Date.now();
  activitySeen = false;
  const response = await fetch(data.keepalive_url, {
    method: "POST",
    headers: { Accept: "application/json", "X-CSRFToken": data.csrf_token },
    credentials: "same-origin",
    cache: "no-store",
  });
  await handle(response);
}

async function staySignedIn() {
  try {
    await keepalive();
  } catch {
    await check();
  }
}

function onActivity() {
  // Using the page (e.g. scrolling images over the viewer's socket) is activity even without
  // page loads; it is reported while no warning shows. Once the banner shows, only the button counts.
  if (leaving || (banner && !banner.hidden)) return;
  activitySeen = true;
  if (Date.now() - lastActivitySent >= ACTIVITY_INTERVAL_MS) {
    keepalive().catch(() => {});
  }
}

function connectSocket(attempt = 0) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  let socket;
  try {
    socket = new WebSocket(`${scheme}://${window.location.host}${data.socket_path}`);
  } catch {
    return;
  }
  socket.addEventListener("open", () => {
    attempt = 0;
    // Observable state (tests and debugging): events from other devices now arrive at once.
    document.documentElement.dataset.sessionSocket = "open";
  });
  socket.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message.type === "session" && message.event === "signed_out") {
      // Signed out elsewhere: let the server confirm it (and leave the reason), then go.
      check();
    }
  });
  socket.addEventListener("close", (event) => {
    document.documentElement.dataset.sessionSocket = "closed";
    if (leaving) return;
    if (event.code === 4401 || event.code === 4403) {
      check();
      return;
    }
    const delay = Math.min(30000, 1000 * 2 ** attempt);
    setTimeout(() => connectSocket(attempt + 1), delay);
  });
}

if (data) {
  for (const name of ["keydown", "pointerdown", "wheel", "touchstart"]) {
    window.addEventListener(name, onActivity, { passive: true, capture: true });
  }
  // Timers of a hidden tab get throttled; check as soon as the tab shows again.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !leaving) check();
  });
  schedule(data);
  if (data.socket_path) connectSocket();
}

