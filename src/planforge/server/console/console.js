// The planforge console: the public HTTP and WebSocket API, nothing else.
// The token lives in sessionStorage (this tab only) and travels in a header or, for the
// event stream, as a WebSocket subprotocol: never in a URL.

import { $, TOKEN_KEY, api, badge, h, isAdmin, nav, state } from "./core.js";
import { bucketPage, bucketsPage } from "./buckets.js";
import { configPage, configsPage } from "./configs.js";
import { presetPage, presetsPage } from "./presets.js";
import { runPage, runsPage } from "./runs.js";

// -- signing in and out ---------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/me");
  } catch (error) {
    state.token = null;
    const why = error.status === 401
      ? "That token was refused: it is unknown, revoked or rotated away. Check it, or ask an administrator for a new one."
      : `The service did not answer the sign-in (${error.message}).`;
    $("sign-in-error").textContent = why;
    $("token").focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("sign-in-error").textContent = "";
  $("sign-in").hidden = true;
  $("page").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = `${state.me.name} (${state.me.role})`;
  connectEvents();
  route();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close();
    state.socket = null;
  }
  state.listeners.clear();
  $("page").replaceChildren();
  $("page").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("token").value = "";
  $("sign-in-error").textContent = message;
  $("token").focus();
}

// -- live events: one stream per tab, resumed where it stopped ------------------------------

function connectEvents() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = state.lastSequence ? `?since=${state.lastSequence}` : "";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/events${since}`, [
    "planforge.v1",
    `planforge.token.${state.token}`,
  ]);
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.user_sequence) state.lastSequence = event.user_sequence;
    for (const listener of state.listeners) listener(event);
  };
  socket.onclose = (closed) => {
    state.socket = null;
    if (closed.code === 4401) signOut("Your token is no longer accepted; sign in again.");
    else if (state.token) setTimeout(connectEvents, 1000);
  };
  state.socket = socket;
}

// -- pages ----------------------------------------------------------------------------------

const pages = {
  runs: runsPage,
  planners: plannersPage,
  health: healthPage,
  run: runPage,
  configs: configsPage,
  config: configPage,
  buckets: bucketsPage,
  bucket: bucketPage,
  presets: presetsPage,
  preset: presetPage,
};

function route() {
  // returns the page's promise, so a caller can wait for it
  if (!state.me) return;
  const [name, argument] = location.hash.replace(/^#\//, "").split("/");
  const page = pages[name] ? name : "runs";
  const section = { run: "runs", config: "configs", bucket: "buckets", preset: "presets" }[page] || page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${section}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  state.listeners.clear();
  const root = $("page");
  root.replaceChildren(h("p", {}, "Loading…"));
  // Each page renders off-screen and is shown only if it is still the page asked for: a
  // slow earlier page must never replace a later one.
  const visit = (state.visit = (state.visit || 0) + 1);
  const holder = h("div", {});
  const show = () => {
    if (visit === state.visit) root.replaceChildren(...holder.childNodes);
  };
  return pages[page](holder, argument ? decodeURIComponent(argument) : undefined).then(show, (error) => {
    holder.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    show();
  });
}

async function plannersPage(root) {
  const planners = await api("/planners?include_inactive=true");
  const rows = planners.map((p) =>
    h("tr", {},
      h("td", {}, p.name),
      h("td", {}, p.version),
      h("td", {}, p.tier),
      h("td", {}, (p.capabilities || []).join(", ")),
      h("td", {}, p.reliability === undefined ? "" : Number(p.reliability).toFixed(2)),
      h("td", {}, badge(p.breaker ? p.breaker.state : "closed")),
      h("td", {}, badge(p.status)),
    ));
  const why = h("section", { "aria-labelledby": "why-title" },
    h("h2", { id: "why-title" }, "Why this planner?"),
    h("form", { id: "why-form", onsubmit: explain },
      h("label", { for: "why-objective" }, "Objective"),
      h("input", { id: "why-objective", name: "objective", value: "Rebalance my portfolio", required: true }),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Explain"))),
    h("div", { id: "why-answer", "aria-live": "polite" }));
  root.replaceChildren(
    h("h2", {}, "Planners"),
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ...["Name", "Version", "Tier", "Capabilities", "Reliability", "Breaker", "Status"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows))),
    why);
}

async function explain(submitted) {
  submitted.preventDefault();
  const objective = $("why-objective").value;
  const answer = $("why-answer");
  try {
    const result = await api("/planners/select", { method: "POST", body: { objective } });
    const winner = result.selected || result.winner || result.planner;
    answer.replaceChildren(
      h("p", {}, "Chosen: ", h("strong", {}, String(winner ?? "none"))),
      h("pre", { class: "scroll" }, JSON.stringify(result.candidates || result, null, 2).slice(0, 4000)));
  } catch (error) {
    answer.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
  }
}

async function healthPage(root) {
  const ready = await fetch("/readyz").then((r) => r.json()).catch(() => ({}));
  const quarantined = await api("/planners/quarantined");
  const checks = Object.entries(ready.checks || {}).map(([name, check]) =>
    h("tr", {}, h("td", {}, name), h("td", {}, badge(check.ok ? "ok" : "failed")), h("td", {}, typeof check.detail === "string" ? check.detail : JSON.stringify(check.detail ?? ""))));
  const release = async (name) => {
    try {
      await api(`/planners/${encodeURIComponent(name)}/release`, { method: "POST" });
    } catch (problem) {
      $("health-error").textContent = problem.message;
      return;
    }
    route();
  };
  root.replaceChildren(
    h("h2", {}, "Readiness: ", badge(ready.status === "ready" ? "ok" : "failed")),
    h("table", {}, h("tbody", {}, checks)),
    h("h2", {}, "Quarantined planners"),
    h("p", { id: "health-error", class: "error", role: "alert" }),
    quarantined.length
      ? h("ul", { id: "quarantined" }, quarantined.map((q) => h("li", {},
        h("strong", {}, q.planner_name), `: ${q.reason}`,
        isAdmin() ? [" ", h("button", { type: "button", class: "secondary", "aria-label": `Release ${q.planner_name}`, onclick: () => release(q.planner_name) }, "Release")] : null)))
      : h("p", { id: "no-quarantine" }, "None."));
}

// -- start ----------------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", () => signOut());
nav.route = route;
window.addEventListener("hashchange", route);
if (state.token) signIn(state.token);
else $("token").focus();
