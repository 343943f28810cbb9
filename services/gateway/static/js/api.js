// The gateway's REST and WebSocket API, with the token kept in this browser.
const TOKEN_KEY = "yokeflow-token";

export class AuthRequired extends Error {}

export function token() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) localStorage.setItem(TOKEN_KEY, fromHash);
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  localStorage.setItem(TOKEN_KEY, value.trim());
}

export async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (options.body && typeof options.body !== "string") {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.body) };
  }
  const res = await fetch(path, { ...options, headers });
  if (res.status === 401) throw new AuthRequired("token required");
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.detail || `${res.status} ${res.statusText}`);
  return body;
}

// A WebSocket that reconnects with backoff; onState gets "live" | "reconnecting".
export function liveEvents({ run, onMessage, onState }) {
  let socket = null;
  let delay = 1000;
  let closed = false;
  const open = () => {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ run, logs: "false" });
    const t = token();
    if (t) params.set("token", t);
    socket = new WebSocket(`${proto}://${location.host}/api/events/ws?${params}`);
    socket.onopen = () => { delay = 1000; onState("live"); };
    socket.onmessage = (msg) => {
      try { onMessage(JSON.parse(msg.data)); } catch (err) { console.warn("bad live message", err); }
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
