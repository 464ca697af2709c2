// Shared by every page of the console: state, the API client, and building elements.
const TOKEN_KEY = "planforge.token";
const CONTEXTS_KEY = "planforge.recent-contexts";
const RECENT_KEPT = 5;
const FINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);
const TERMINAL_EVENTS = new Set(["agent_completed", "agent_error"]);

// the router, set by console.js: a page that changed what it shows asks for a fresh render
const nav = { route: () => undefined };

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  socket: null,
  lastSequence: 0,
  listeners: new Set(), // page handlers of live events
};

class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// h("td", {class: "x"}, "text", child): text is always set as text, never parsed as HTML.
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const $ = (id) => document.getElementById(id);
const isAdmin = () => state.me && state.me.role === "admin";
const canOperate = () => state.me && (state.me.role === "operator" || state.me.role === "admin");
const badge = (text) => h("span", { class: `badge ${text}` }, text);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

export {
  CONTEXTS_KEY,
  FINAL,
  RECENT_KEPT,
  TERMINAL_EVENTS,
  TOKEN_KEY,
  $,
  api,
  badge,
  canOperate,
  h,
  isAdmin,
  nav,
  state,
  when,
};
