// Configurations: versions, the diff before saving, dry runs, import and export.

import { $, api, h, isAdmin, nav, state, when } from "./core.js";
import { presetForm } from "./presets.js";

// -- configurations -------------------------------------------------------------------------


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
    await nav.route();
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

export { configPage, configsPage };
