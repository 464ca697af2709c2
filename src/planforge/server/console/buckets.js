// Buckets: the active configuration, the timeline, assign and roll back.

import { $, api, h, isAdmin, nav, when } from "./core.js";

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
    await nav.route();
  } catch (problem) {
    $("bucket-notice").textContent = problem.message;
  }
}

export { bucketPage, bucketsPage };
