// The gateway's REST and WebSocket API. The token travels in an HttpOnly, SameSite=Strict
// cookie the gateway set when the URL `yokeflow up` printed was opened: script never sees it.

export class AuthRequired extends Error {}

// Trade a pasted token for the cookie: the gateway checks it, sets the cookie, and redirects back.
export function useToken(value) {
  location.href = `/?token=${encodeURIComponent(value.trim())}${location.hash}`;
}

export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.body && typeof options.body !== "string") {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.body) };
  }
  const res = await fetch(path, { ...options, headers, credentials: "same-origin" });
  if (res.status === 401) throw new AuthRequired("token required");
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(body.detail || `${res.status} ${res.statusText}`);
    err.body = body;  // `field` names the request field at fault
    throw err;
  }
  return body;
}

// A WebSocket that reconnects with backoff and resumes after the last stream sequence it saw
// (`since`), so no event is missed or repeated; onState gets "live" | "reconnecting" | "behind".
export function liveEvents({ run, since, onMessage, onState }) {
  let socket = null;
  let delay = 1000;
  let closed = false;
  let last = since;
  const open = () => {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ run, logs: "false" });
    if (last !== undefined && last !== null) params.set("since", String(last));
    socket = new WebSocket(`${proto}://${location.host}/api/events/ws?${params}`);
    socket.onopen = () => { delay = 1000; onState("live"); };
    socket.onmessage = (msg) => {
      let frame;
      try { frame = JSON.parse(msg.data); } catch (err) { console.warn("bad live message", err); return; }
      if (typeof frame.seq === "number") last = Math.max(last || 0, frame.seq);
      if (frame.kind === "hello" && (last === undefined || last === null)) last = frame.since;
      if (frame.kind === "behind") onState("behind");
      if (frame.kind === "caught_up") onState("live");
      onMessage(frame);
    };
    socket.onclose = () => {
      if (closed) return;
      onState("reconnecting");
      setTimeout(() => { if (!closed) open(); }, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  open();
  return { close() { closed = true; if (socket) socket.close(); } };
}
