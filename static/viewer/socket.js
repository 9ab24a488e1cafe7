// The viewer websocket: ticket, hello, JSON messages out, binary frames and JSON messages in.
// Protocol: docs/viewer-protocol.md section 3. Tickets travel in the first message, never in a URL.

const decoder = new TextDecoder();
const marked = new Set();

/** A performance mark the first time a start-up step happens (for bench/viewer.py; memory only). */
export function markOnce(name) {
  if (marked.has(name)) return;
  marked.add(name);
  performance.mark(`lightbox:${name}`);
}
const MEDIA_TYPES = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp" };

/** Split a binary frame: 4-byte big-endian header length N, N bytes of JSON header, image bytes. */
export function parseFrame(buffer) {
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength < 4) {
    throw new Error("frame too short");
  }
  const length = new DataView(buffer).getUint32(0, false);
  if (4 + length > buffer.byteLength) {
    throw new Error("frame header longer than the frame");
  }
  const header = JSON.parse(decoder.decode(new Uint8Array(buffer, 4, length)));
  const type = MEDIA_TYPES[header.encoding] || "application/octet-stream";
  // The Blob is handed straight to createImageBitmap and dropped; nothing is kept.
  const image = new Blob([new Uint8Array(buffer, 4 + length)], { type });
  return { header, image, bytes: buffer.byteLength - 4 - length };
}

/** POST for a one-time ticket bound to this session and study. */
async function fetchTicket(data) {
  const response = await fetch(data.ticket_url, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
    headers: { "Content-Type": "application/json", "X-CSRFToken": data.csrf_token },
    body: JSON.stringify({ study: data.study }),
  });
  if (!response.ok) {
    const error = new Error(`ticket refused (${response.status})`);
    error.status = response.status;
    throw error;
  }
  const body = await response.json();
  return body.ticket;
}

export function socketUrl(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/**
 * One websocket to the viewer consumer. Callbacks:
 *   onOpen(), onFrame({header, image, bytes}), onMessage(json), onClose({code, reason, final}).
 * Reconnects with a fresh ticket after transient failures; never after 4401/4403 or a `closing`.
 */
export class ViewerSocket {
  constructor(data, handlers) {
    this.data = data;
    this.handlers = handlers;
    this.ws = null;
    this.stopped = false;
    this.attempt = 0;
    this.ready = false;
  }

  async connect() {
    if (this.stopped) return;
    let ticket;
    try {
      ticket = await fetchTicket(this.data);
    } catch (error) {
      if (error.status === 401 || error.status === 403 || error.status === 404) {
        this.stop();
        this.handlers.onClose({ code: error.status === 404 ? 4404 : 4401, reason: "ticket", final: true });
      } else {
        this._retry();
      }
      return;
    }
    markOnce("ticket");
    const ws = new WebSocket(socketUrl(this.data.socket_url));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.addEventListener("open", () => {
      markOnce("socket-open");
      ws.send(JSON.stringify({ type: "hello", ticket }));
      ticket = null;
    });
    ws.addEventListener("message", (event) => this._receive(event.data));
    ws.addEventListener("close", (event) => {
      this.ready = false;
      if (this.ws !== ws) return;
      this.ws = null;
      const final = this.stopped || event.code === 4401 || event.code === 4403;
      if (final) this.stopped = true;
      this.handlers.onClose({ code: event.code, reason: event.reason, final });
      if (!final) this._retry();
    });
  }

  _retry() {
    if (this.stopped) return;
    this.attempt += 1;
    if (this.attempt > 6) {
      this.stop();
      this.handlers.onClose({ code: 1006, reason: "unreachable", final: true });
      return;
    }
    const delay = Math.min(8000, 250 * 2 ** this.attempt);
    window.setTimeout(() => this.connect(), delay);
  }

  _receive(payload) {
    if (typeof payload === "string") {
      let message;
      try {
        message = JSON.parse(payload);
      } catch {
        return;
      }
      if (message && message.type === "ready") {
        // The hello was accepted: requests may flow now.
        markOnce("ready");
        this.ready = true;
        this.attempt = 0;
        this.handlers.onOpen();
        return;
      }
      if (message && message.type === "closing") this.stopped = true;
      this.handlers.onMessage(message);
      return;
    }
    let frame;
    try {
      frame = parseFrame(payload);
    } catch (error) {
      this.handlers.onMessage({ type: "error", code: "bad_frame", message: error.message });
      return;
    }
    this.handlers.onFrame(frame);
  }

  send(message) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  stop() {
    this.stopped = true;
    this.ready = false;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
  }
}
