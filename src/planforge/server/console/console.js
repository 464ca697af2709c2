// The planforge console: the public HTTP and WebSocket API, nothing else.
// The token lives in sessionStorage (this tab only) and travels in a header or, for the
// event stream, as a WebSocket subprotocol: never in a URL.

const TOKEN_KEY = "planforge.token";
const CONTEXTS_KEY = "planforge.recent-contexts";
const RECENT_KEPT = 5;
const FINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);
const TERMINAL_EVENTS = new Set(["agent_completed", "agent_error"]);

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
const canOperate = () => state.me && (state.me.role === "operator" || state.me.role === "admin");
const badge = (text) => h("span", { class: `badge ${text}` }, text);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");

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

// -- runs -----------------------------------------------------------------------------------

async function runsPage(root) {
  const [{ runs }, planners] = await Promise.all([api("/plans"), api("/planners")]);
  const table = h("tbody", { id: "runs-body" }, runs.map(runRow));
  root.replaceChildren(
    canOperate() ? startForm(planners) : h("p", { class: "help" }, "Viewers read runs; an operator starts them."),
    h("section", { "aria-labelledby": "runs-title" },
      h("h2", { id: "runs-title" }, "Your runs"),
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Run", "Status", "Planner", "Bucket", "Created", "Seconds", ""].map((t) => h("th", { scope: "col" }, t)))),
        table))));
  state.listeners.add((event) => {
    if (TERMINAL_EVENTS.has(event.type) || event.type === "agent_started") refreshRuns();
  });
}

function runRow(run) {
  const live = !FINAL.has(run.status);
  return h("tr", { "data-run": run.run_id },
    h("td", {}, h("a", { href: `#/run/${encodeURIComponent(run.run_id)}` }, run.run_id.slice(-12))),
    h("td", {}, badge(run.status)),
    h("td", {}, run.planner || ""),
    h("td", {}, run.bucket ? `${run.bucket}${run.config_version ? ` v${run.config_version}` : ""}` : ""),
    h("td", {}, when(run.created_at)),
    h("td", {}, run.duration_s == null ? "" : Number(run.duration_s).toFixed(2)),
    h("td", {}, live && canOperate()
      ? h("button", { type: "button", class: "secondary", "aria-label": `Cancel run ${run.run_id}`, onclick: () => cancel(run.run_id) }, "Cancel")
      : ""));
}

async function refreshRuns() {
  const body = $("runs-body");
  if (!body) return;
  const { runs } = await api("/plans");
  body.replaceChildren(...runs.map(runRow));
}

async function cancel(runId) {
  try {
    await api(`/plans/${encodeURIComponent(runId)}`, { method: "DELETE" });
  } catch (error) {
    alert(error.message);
  }
  refreshRuns();
}

function recentContexts() {
  try {
    return JSON.parse(sessionStorage.getItem(CONTEXTS_KEY) || "[]");
  } catch {
    return [];
  }
}

function remember(name, text) {
  const kept = recentContexts().filter((item) => item.name !== name);
  kept.unshift({ name, text });
  sessionStorage.setItem(CONTEXTS_KEY, JSON.stringify(kept.slice(0, RECENT_KEPT)));
}

function startForm(planners) {
  const recent = recentContexts();
  const form = h("form", { id: "start-form", onsubmit: start },
    h("label", { for: "objective" }, "Objective"),
    h("input", { id: "objective", name: "objective", value: "Rebalance my portfolio", required: true }),
    h("label", { for: "planner" }, "Planner"),
    h("select", { id: "planner", name: "planner" },
      h("option", { value: "" }, "Chosen for the objective"),
      planners.map((p) => h("option", { value: p.name }, `${p.name} (${p.tier})`))),
    h("label", { for: "bucket" }, "Bucket (optional: plans with its active configuration)"),
    h("input", { id: "bucket", name: "bucket" }),
    h("label", { for: "context-file" }, "Context file (JSON)"),
    h("input", { id: "context-file", name: "context-file", type: "file", accept: ".json,application/json", onchange: loadFile }),
    recent.length
      ? [h("label", { for: "recent" }, "Or a recent context"),
        h("select", { id: "recent", onchange: (e) => { if (e.target.value) $("context").value = recent[Number(e.target.value) - 1].text; } },
          h("option", { value: "" }, "—"),
          recent.map((item, index) => h("option", { value: index + 1 }, item.name)))]
      : null,
    h("label", { for: "context" }, "Context"),
    h("textarea", { id: "context", name: "context", rows: 6, spellcheck: "false" }, "{}"),
    h("p", { id: "start-error", class: "error", role: "alert" }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Start plan")));
  return h("section", { "aria-labelledby": "start-title" }, h("h2", { id: "start-title" }, "Start a plan"), form);
}

async function loadFile(changed) {
  const file = changed.target.files[0];
  if (!file) return;
  const text = await file.text();
  $("context").value = text;
  remember(file.name, text);
}

async function start(submitted) {
  submitted.preventDefault();
  const error = $("start-error");
  let context;
  try {
    context = JSON.parse($("context").value || "{}");
  } catch (problem) {
    error.textContent = `The context is not valid JSON: ${problem.message}`;
    $("context").focus();
    return;
  }
  const body = { objective: $("objective").value, context };
  if ($("planner").value) body.planner = $("planner").value;
  if ($("bucket").value.trim()) body.bucket = $("bucket").value.trim();
  try {
    const started = await api("/plans", { method: "POST", body });
    error.textContent = "";
    location.hash = `#/run/${encodeURIComponent(started.run_id)}`;
  } catch (problem) {
    const field = problem.body && problem.body.field ? ` (${problem.body.field})` : "";
    error.textContent = `${problem.message}${field}`;
  }
}

async function runPage(root, runId) {
  const progress = h("progress", { id: "run-progress", max: 100, value: 0, "aria-label": "Progress" });
  const modules = h("ul", { class: "modules", id: "run-modules", "aria-label": "Modules as they run" });
  const status = h("p", { id: "run-status" });
  const result = h("div", { id: "run-result" });
  root.replaceChildren(
    h("h2", {}, `Run ${runId}`), status, progress, modules, result);
  const seen = new Map();
  state.listeners.add((event) => {
    if (event.run_id !== runId) return;
    const payload = event.payload || {};
    if (event.type === "agent_thinking" && payload.progress_percentage != null) progress.value = payload.progress_percentage;
    if (event.type === "tool_executing" || event.type === "tool_completed") {
      const name = payload.tool_name;
      const item = seen.get(name) || h("li", {});
      seen.set(name, item);
      item.textContent = event.type === "tool_executing"
        ? `… ${name}`
        : `✓ ${name} (${Number(payload.execution_time_ms || 0).toFixed(1)} ms)`;
      modules.append(item);
    }
    if (TERMINAL_EVENTS.has(event.type)) showRun(runId, status, progress, result);
  });
  await showRun(runId, status, progress, result);
}

async function showRun(runId, status, progress, result) {
  const run = await api(`/plans/${encodeURIComponent(runId)}`);
  status.replaceChildren("Status: ", badge(run.status), run.planner ? ` — ${run.planner} ${run.planner_version || ""}` : "");
  if (!FINAL.has(run.status)) {
    if (canOperate()) status.append(" ", h("button", { type: "button", class: "secondary", onclick: () => cancel(runId) }, "Cancel"));
    return;
  }
  progress.value = 100;
  if (run.error) {
    result.replaceChildren(h("p", { class: "error", role: "alert" }, `${run.error.error}: ${run.error.message}`));
    return;
  }
  const plan = run.plan || { steps: [], metrics: {} };
  const metrics = plan.metrics || {};
  const money = (value) => (value == null ? "" : Number(value).toLocaleString(undefined, { maximumFractionDigits: 2 }));
  result.replaceChildren(
    h("h3", {}, "Plan"),
    h("p", {}, `Score ${money(plan.score)} · improvement ${money(metrics.improvement)} · costs ${money(metrics.costs)} · cash required ${money(metrics.cash_required)} · cash generated ${money(metrics.cash_generated)}`),
    h("div", { class: "scroll" }, h("table", { id: "steps" },
      h("thead", {}, h("tr", {}, ...["#", "Action", "What and why"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, plan.steps.map((step) => h("tr", {}, h("td", {}, step.id), h("td", {}, step.action), h("td", {}, step.description)))))));
  const stored = await api(`/plans/${encodeURIComponent(runId)}?context=true`);
  if (stored.context && Array.isArray(stored.context.positions)) {
    result.append(portfolioPicture(stored.context, plan.steps));
  }
}

// -- the portfolio before and after, against its targets ---------------------------------

function holdings(context) {
  const fx = (currency) => (currency === context.base_currency ? 1 : (context.fx_rates || {})[currency] || 1);
  const securities = new Map((context.securities || []).map((s) => [s.symbol, s]));
  const held = new Map();
  for (const p of context.positions) {
    const price = p.current_price ?? (securities.get(p.symbol) || {}).price ?? 0;
    held.set(p.symbol, { quantity: p.quantity, price: price * fx(p.currency || (securities.get(p.symbol) || {}).currency) });
  }
  return { securities, held, cash: Number(context.cash || 0), fx };
}

function afterSteps(before, steps) {
  const held = new Map([...before.held].map(([k, v]) => [k, { ...v }]));
  let cash = before.cash;
  for (const step of steps) {
    const p = step.params || {};
    if (!p.symbol || !p.quantity) continue;
    const security = before.securities.get(p.symbol) || {};
    const unit = p.value_base && p.quantity ? p.value_base / p.quantity : (security.price || 0) * before.fx(security.currency);
    const entry = held.get(p.symbol) || { quantity: 0, price: unit };
    const sign = step.action === "sell" ? -1 : 1;
    entry.quantity += sign * p.quantity;
    held.set(p.symbol, entry);
    cash -= sign * (p.value_base || unit * p.quantity) + (p.cost || 0);
  }
  return { ...before, held, cash };
}

function shares(side, key) {
  const total = [...side.held.values()].reduce((sum, h) => sum + h.quantity * h.price, 0) + side.cash;
  const out = new Map();
  for (const [symbol, h] of side.held) {
    const security = side.securities.get(symbol) || {};
    const group = key === "security" ? symbol : security[key] || "unknown";
    out.set(group, (out.get(group) || 0) + (h.quantity * h.price) / (total || 1));
  }
  return out;
}

function portfolioPicture(context, steps) {
  const before = holdings(context);
  const after = afterSteps(before, steps);
  const targets = context.targets || {};
  const section = h("section", { id: "picture", "aria-labelledby": "picture-title" },
    h("h3", { id: "picture-title" }, "The portfolio before and after, against its targets"),
    h("p", { class: "help" }, "Shares of the portfolio's value, cash included. Bars: ",
      h("span", { class: "key before" }, "before"), ", ", h("span", { class: "key after" }, "after"), ", ",
      h("span", { class: "key target" }, "target"), "."));
  for (const [key, title, target] of [["country", "By country", targets.by_country], ["industry", "By industry", targets.by_industry], ["security", "By security", targets.by_security]]) {
    const was = shares(before, key);
    const will = shares(after, key);
    const groups = [...new Set([...was.keys(), ...will.keys(), ...Object.keys(target || {})])].sort();
    const pct = (x) => (x == null ? "" : `${(100 * x).toFixed(1)}%`);
    const bar = (x, cls) => {
      const span = h("span", { class: `bar ${cls}` });
      span.style.width = `${Math.min(100, 100 * (x || 0)).toFixed(1)}%`; // CSSOM: allowed by the page's CSP
      return span;
    };
    section.append(h("h4", {}, title), h("div", { class: "scroll" }, h("table", { class: `picture picture-${key}` },
      h("thead", {}, h("tr", {}, ...["Group", "Before", "After", "Target", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, groups.map((g) => h("tr", {},
        h("td", {}, g), h("td", {}, pct(was.get(g) || 0)), h("td", {}, pct(will.get(g) || 0)),
        h("td", {}, target && g in target ? pct(target[g]) : ""),
        h("td", { class: "bars", "aria-hidden": "true" }, bar(was.get(g), "before"), bar(will.get(g), "after"), target && g in target ? bar(target[g], "target") : "")))))));
  }
  return section;
}

// -- configurations -------------------------------------------------------------------------

const isAdmin = () => state.me && state.me.role === "admin";

function importForm() {
  const form = h("form", { id: "import-form", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData();
    data.append("file", $("import-file").files[0]);
    if ($("import-name").value.trim()) data.append("name", $("import-name").value.trim());
    if ($("import-title").value.trim()) data.append("title", $("import-title").value.trim());
    const response = await fetch("/configs/import", { method: "POST", headers: { Authorization: `Bearer ${state.token}` }, body: data });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      $("import-error").textContent = body.message || `HTTP ${response.status}`;
      return;
    }
    location.hash = `#/config/${encodeURIComponent(body.config.name)}`;
  } },
    h("label", { for: "import-file" }, "Import a file (an export or plain TOML)"),
    h("input", { id: "import-file", type: "file", accept: ".toml,text/plain", required: true }),
    h("label", { for: "import-name" }, "Name (optional for an exported file)"),
    h("input", { id: "import-name" }),
    h("label", { for: "import-title" }, "Title (needed for plain TOML)"),
    h("input", { id: "import-title" }),
    h("p", { id: "import-error", class: "error", role: "alert" }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Import")));
  return h("section", { "aria-labelledby": "import-heading" }, h("h3", { id: "import-heading" }, "Import"), form);
}

async function configsPage(root) {
  const configs = await api("/configs");
  root.replaceChildren(
    h("h2", {}, "Configurations"),
    isAdmin() ? importForm() : null,
    configs.length
      ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Name", "Title", "Active version", "Last change", "By"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, configs.map((c) => h("tr", {},
          h("td", {}, h("a", { href: `#/config/${encodeURIComponent(c.name)}` }, c.name)),
          h("td", {}, c.title),
          h("td", {}, `v${c.version}`),
          h("td", {}, when(c.created_at)),
          h("td", {}, c.created_by || ""))))))
      : h("p", {}, "No configuration is stored yet."));
}

async function configPage(root, name) {
  const history = await api(`/configs/${encodeURIComponent(name)}/history`);
  const active = history[history.length - 1];
  const rows = history.slice().reverse().map((v) => h("tr", {},
    h("td", {}, `v${v.version}`), h("td", {}, v.title), h("td", {}, v.description || ""),
    h("td", {}, v.created_by || ""), h("td", {}, when(v.created_at))));
  root.replaceChildren(
    h("h2", {}, `${active.title} (${name} v${active.version})`),
    h("p", { id: "config-notice", role: "status" }),
    isAdmin() ? editor(name, active) : null,
    isAdmin() ? presetForm(active) : null,
    toolsSection(name, active),
    h("section", { "aria-labelledby": "toml-title" },
      h("h3", { id: "toml-title" }, `v${active.version} as stored`),
      h("pre", { class: "scroll", id: "active-toml" }, active.toml)),
    h("section", { "aria-labelledby": "history-title" },
      h("h3", { id: "history-title" }, "History"),
      h("div", { class: "scroll" }, h("table", { id: "history" },
        h("thead", {}, h("tr", {}, ...["Version", "Title", "Description", "By", "When"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows)))));
}

function editor(name, base) {
  const save = h("button", { type: "button", id: "save-config", disabled: true, onclick: () => saveConfig(name, base) }, "Save as a new version");
  const text = h("textarea", { id: "config-text", rows: 14, spellcheck: "false", oninput: () => { save.disabled = true; } }, base.toml);
  return h("section", { "aria-labelledby": "edit-title" },
    h("h3", { id: "edit-title" }, "Edit"),
    h("label", { for: "config-title" }, "Title"),
    h("input", { id: "config-title", value: base.title }),
    h("label", { for: "config-description" }, "What changed and why"),
    h("input", { id: "config-description" }),
    h("label", { for: "config-text" }, "Configuration (TOML)"),
    text,
    h("p", { id: "edit-error", class: "error", role: "alert" }),
    h("div", { class: "row" },
      h("button", { type: "button", class: "secondary", id: "show-changes", onclick: () => showChanges(base, save) }, "Show changes"),
      save),
    h("div", { id: "diff", "aria-live": "polite" }));
}

function semanticView(semantic) {
  const params = semantic.params_changed.map((c) => h("tr", {},
    h("td", {}, c.module), h("td", {}, c.param), h("td", { class: "old" }, JSON.stringify(c.old)), h("td", { class: "new" }, JSON.stringify(c.new))));
  const planner = semantic.planner_changed.map((c) => h("tr", {},
    h("td", {}, "[planner]"), h("td", {}, c.key), h("td", { class: "old" }, JSON.stringify(c.old)), h("td", { class: "new" }, JSON.stringify(c.new))));
  return h("div", { id: "semantic-diff" },
    semantic.is_empty ? h("p", {}, "No change in behaviour.") : null,
    semantic.modules_enabled.length ? h("p", {}, "Enabled: ", semantic.modules_enabled.join(", ")) : null,
    semantic.modules_disabled.length ? h("p", {}, "Disabled: ", semantic.modules_disabled.join(", ")) : null,
    params.length + planner.length
      ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Module", "Setting", "Old value", "New value"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, params, planner)))
      : null);
}

async function showChanges(base, save) {
  const error = $("edit-error");
  const diff = $("diff");
  try {
    const result = await api(`/configs/${base.id}/diff`, { method: "POST", body: { toml: $("config-text").value } });
    error.textContent = "";
    diff.replaceChildren(
      h("h4", {}, "What changes"), semanticView(result.semantic),
      h("h4", {}, "Text"), h("pre", { class: "scroll", id: "text-diff" }, result.unified || "(identical)"));
    save.disabled = false;
  } catch (problem) {
    showProblem(error, problem);
    diff.replaceChildren();
    save.disabled = true;
  }
}

// A configuration error names its key and line: say so, and select that line in the editor.
function showProblem(where, problem) {
  const body = problem.body || {};
  const text = $("config-text");
  const line = body.line || (text && body.field ? lineOf(text.value, body.field) : 0);
  const at = [line ? `line ${line}` : "", body.field || ""].filter(Boolean).join(", ");
  where.textContent = at ? `At ${at}: ${problem.message}` : problem.message;
  if (!text || !line) return;
  const lines = text.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((sum, l) => sum + l.length + 1, 0);
  text.focus();
  text.setSelectionRange(start, start + (lines[line - 1] || "").length);
}

// The line of a dotted key (`table.sub.key`) in TOML text: the key's line under its table,
// or the table's header; 0 when it is not written there (a default the file does not set).
function lineOf(toml, dotted) {
  const parts = dotted.split(".");
  const key = parts.pop();
  const table = parts.join(".");
  let current = "";
  const lines = toml.split("\n");
  for (let index = 0; index < lines.length; index += 1) {
    const header = lines[index].match(/^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$/);
    if (header) {
      current = header[1];
      if (current === dotted) return index + 1;
      continue;
    }
    const assignment = lines[index].match(/^\s*([A-Za-z0-9_-]+)\s*=/);
    if (assignment && current === table && assignment[1] === key) return index + 1;
  }
  return 0;
}

async function saveConfig(name, base) {
  const error = $("edit-error");
  const body = {
    name,
    title: $("config-title").value,
    toml: $("config-text").value,
    expected_version: base.version,
  };
  if ($("config-description").value.trim()) body.description = $("config-description").value.trim();
  try {
    const saved = await api("/configs", { method: "POST", body });
    await route();
    $("config-notice").textContent = saved.created ? `Saved as v${saved.config.version}.` : "Nothing changed: the text equals the active version.";
  } catch (problem) {
    showProblem(error, problem);
    if (problem.status !== 409) return;
    const history = await api(`/configs/${encodeURIComponent(name)}/history`);
    const current = history[history.length - 1];
    const changed = await api(`/configs/${base.id}/diff/${current.id}?semantic=true`);
    $("diff").replaceChildren(
      h("h4", {}, `What changed in v${current.version} since your v${base.version}`),
      semanticView(changed.semantic));
    $("save-config").disabled = true;
  }
}

function toolsSection(name, version) {
  const out = h("div", { id: "tools-out", "aria-live": "polite" });
  const dryRun = async () => {
    const edited = $("config-text");
    try {
      const report = await api("/configs/dry-run", { method: "POST", body: { toml: edited ? edited.value : version.toml } });
      out.replaceChildren(
        h("p", { id: "dry-run-result" }, report.valid ? "Valid: " : "Not valid: ",
          `${report.modules_loaded.length} modules load, about ${report.estimated_sequences} sequences per plan.`),
        report.warnings.length ? h("ul", {}, report.warnings.map((w) => h("li", {}, w))) : null,
        report.errors.length ? h("ul", { class: "error" }, report.errors.map((e) => h("li", {}, e))) : null);
    } catch (problem) {
      showProblem(out, problem);
    }
  };
  const exportFile = async () => {
    const response = await fetch(`/configs/${version.id}/export`, { headers: { Authorization: `Bearer ${state.token}` } });
    const link = h("a", { href: URL.createObjectURL(await response.blob()), download: `${name}-v${version.version}.toml` });
    document.body.append(link);
    link.click();
    link.remove();
  };
  const clone = isAdmin()
    ? h("form", { id: "clone-form", onsubmit: async (e) => {
      e.preventDefault();
      try {
        const made = await api(`/configs/${version.id}/clone`, { method: "POST", body: { name: $("clone-name").value.trim(), title: $("clone-title").value } });
        location.hash = `#/config/${encodeURIComponent(made.config.name)}`;
      } catch (problem) {
        out.textContent = problem.message;
      }
    } },
      h("label", { for: "clone-name" }, "Clone as (name)"),
      h("input", { id: "clone-name", required: true }),
      h("label", { for: "clone-title" }, "Title of the clone"),
      h("input", { id: "clone-title", value: `${version.title} (copy)`, required: true }),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Clone")))
    : null;
  return h("section", { "aria-labelledby": "tools-title" },
    h("h3", { id: "tools-title" }, "Check, export, clone"),
    h("div", { class: "row" },
      h("button", { type: "button", class: "secondary", onclick: dryRun }, "Dry run"),
      h("button", { type: "button", class: "secondary", onclick: exportFile }, "Export file")),
    out, clone);
}

// -- buckets --------------------------------------------------------------------------------

async function bucketsPage(root) {
  const buckets = await api("/buckets");
  const open = h("form", { id: "open-bucket", onsubmit: (e) => { e.preventDefault(); location.hash = `#/bucket/${encodeURIComponent($("bucket-name").value.trim())}`; } },
    h("label", { for: "bucket-name" }, "Open a bucket by name (a new name starts a new bucket)"),
    h("input", { id: "bucket-name", required: true }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Open")));
  root.replaceChildren(
    h("h2", {}, "Buckets"),
    buckets.length
      ? h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ...["Bucket", "Runs", "Title", "Since"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, buckets.map((b) => h("tr", {},
          h("td", {}, h("a", { href: `#/bucket/${encodeURIComponent(b.bucket)}` }, b.bucket)),
          h("td", {}, `${b.config.name} v${b.config.version}`),
          h("td", {}, b.config.title),
          h("td", {}, when(b.config.created_at)))))))
      : h("p", {}, "No bucket has a configuration yet."),
    isAdmin() ? h("section", {}, open) : null);
}

async function bucketPage(root, bucket) {
  const history = await api(`/buckets/${encodeURIComponent(bucket)}/history`);
  const current = history[history.length - 1];
  const timeline = history.slice().reverse().map((entry) => h("li", {},
    h("strong", {}, `${entry.config_name} v${entry.config_version}`),
    ` from ${when(entry.assigned_at)}, by ${entry.assigned_by}`,
    entry.reason ? h("span", { class: "reason" }, ` — ${entry.reason}`) : ""));
  root.replaceChildren(
    h("h2", {}, `Bucket ${bucket}`),
    h("p", { id: "bucket-current" }, current ? `Runs ${current.config_name} v${current.config_version}.` : "No configuration assigned yet."),
    h("p", { id: "bucket-notice", class: "error", role: "alert" }),
    isAdmin() ? await bucketControls(bucket, history) : null,
    h("section", { "aria-labelledby": "timeline-title" },
      h("h3", { id: "timeline-title" }, "Timeline"),
      h("ol", { id: "timeline", reversed: true }, timeline)));
}

async function bucketControls(bucket, history) {
  const configs = await api("/configs");
  const versions = (await Promise.all(configs.map((c) => api(`/configs/${encodeURIComponent(c.name)}/history`)))).flat();
  const assign = h("form", { id: "assign-form", onsubmit: (e) => bucketChange(e, bucket, "assign") },
    h("label", { for: "assign-version" }, "Configuration version"),
    h("select", { id: "assign-version", required: true },
      versions.map((v) => h("option", { value: v.id }, `${v.name} v${v.version} — ${v.title}`))),
    h("label", { for: "assign-reason" }, "Why (optional)"),
    h("input", { id: "assign-reason" }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Assign")));
  const earlier = history.slice(0, -1).reverse();
  const rollback = earlier.length
    ? h("form", { id: "rollback-form", onsubmit: (e) => bucketChange(e, bucket, "rollback") },
      h("label", { for: "rollback-version" }, "Roll back to"),
      h("select", { id: "rollback-version" },
        earlier.map((entry) => h("option", { value: `${entry.config_name}|${entry.config_version}` }, `${entry.config_name} v${entry.config_version}`))),
      h("label", { for: "rollback-reason" }, "Reason"),
      h("input", { id: "rollback-reason", required: true }),
      h("div", { class: "row" }, h("button", { type: "submit" }, "Roll back")))
    : null;
  return h("section", { "aria-labelledby": "change-title" }, h("h3", { id: "change-title" }, "Change what it runs"), assign, rollback);
}

async function bucketChange(submitted, bucket, kind) {
  submitted.preventDefault();
  const path = `/buckets/${encodeURIComponent(bucket)}/${kind}`;
  let body;
  if (kind === "assign") {
    body = { config_id: Number($("assign-version").value) };
    if ($("assign-reason").value.trim()) body.reason = $("assign-reason").value.trim();
  } else {
    const [name, version] = $("rollback-version").value.split("|");
    body = { name, version: Number(version), reason: $("rollback-reason").value.trim() };
  }
  try {
    await api(path, { method: "POST", body });
    await route();
  } catch (problem) {
    $("bucket-notice").textContent = problem.message;
  }
}

// -- presets --------------------------------------------------------------------------------

async function presetsPage(root, tag) {
  const query = tag ? `?tag=${encodeURIComponent(tag)}` : "";
  const presets = await api(`/presets${query}`);
  const filter = h("form", { id: "tag-filter", onsubmit: (e) => { e.preventDefault(); const t = $("tag").value.trim(); location.hash = t ? `#/presets/${encodeURIComponent(t)}` : "#/presets"; } },
    h("label", { for: "tag" }, "Filter by tag"),
    h("input", { id: "tag", value: tag || "" }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Filter")));
  root.replaceChildren(
    h("h2", {}, "Presets"), filter,
    presets.length
      ? h("div", { class: "scroll" }, h("table", { id: "presets" },
        h("thead", {}, h("tr", {}, ...["Name", "Tags", "Rating", "Downloads", "Author"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, presets.map((p) => h("tr", {},
          h("td", {}, h("a", { href: `#/preset/${encodeURIComponent(p.name)}` }, p.name)),
          h("td", {}, (p.tags || []).join(", ")),
          h("td", {}, rating(p)),
          h("td", {}, p.downloads),
          h("td", {}, p.author))))))
      : h("p", {}, tag ? `No preset is tagged ${tag}.` : "No preset yet."));
}

const rating = (p) => (p.rating == null ? "not rated" : `${Number(p.rating).toFixed(1)} of 5 (${p.ratings} votes)`);

async function presetPage(root, name) {
  const preset = await api(`/presets/${encodeURIComponent(name)}`);
  const rate = h("form", { id: "rate-form", onsubmit: async (e) => {
    e.preventDefault();
    try {
      await api(`/presets/${encodeURIComponent(name)}/rate`, { method: "POST", body: { rating: Number($("rating").value) } });
      await route();
    } catch (problem) {
      $("preset-error").textContent = problem.message;
    }
  } },
    h("label", { for: "rating" }, "Your rating"),
    h("select", { id: "rating" }, [5, 4, 3, 2, 1].map((n) => h("option", { value: n }, `${n} of 5`))),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Rate")));
  root.replaceChildren(
    h("h2", {}, `Preset ${preset.name}`),
    h("p", {}, preset.description || ""),
    h("p", { id: "preset-rating" }, `Rating: ${rating(preset)} · tags: ${(preset.tags || []).join(", ") || "none"} · by ${preset.author}`),
    h("p", { id: "preset-error", class: "error", role: "alert" }),
    isAdmin() ? rate : null,
    h("pre", { class: "scroll" }, preset.toml));
}

function presetForm(version) {
  const form = h("form", { id: "preset-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = {
      name: $("preset-name").value.trim(),
      description: $("preset-description").value,
      toml: version.toml,
      tags: $("preset-tags").value.split(",").map((t) => t.trim()).filter(Boolean),
    };
    try {
      const created = await api("/presets", { method: "POST", body });
      location.hash = `#/preset/${encodeURIComponent(created.name)}`;
    } catch (problem) {
      $("preset-form-error").textContent = problem.message;
    }
  } },
    h("label", { for: "preset-name" }, "Preset name"),
    h("input", { id: "preset-name", required: true }),
    h("label", { for: "preset-tags" }, "Tags (comma separated)"),
    h("input", { id: "preset-tags" }),
    h("label", { for: "preset-description" }, "Description"),
    h("input", { id: "preset-description" }),
    h("p", { id: "preset-form-error", class: "error", role: "alert" }),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Create preset")));
  return h("section", { "aria-labelledby": "preset-title" }, h("h3", { id: "preset-title" }, `Share v${version.version} as a preset`), form);
}

// -- start ----------------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", (submitted) => {
  submitted.preventDefault();
  signIn($("token").value.trim());
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
if (state.token) signIn(state.token);
else $("token").focus();
