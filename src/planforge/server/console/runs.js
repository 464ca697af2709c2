// Runs: start a plan, follow it live, its steps and the portfolio before and after.

import { $, CONTEXTS_KEY, FINAL, RECENT_KEPT, TERMINAL_EVENTS, api, badge, canOperate, h, state, when } from "./core.js";

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

export { runPage, runsPage };
