// Presets: filter by tag, view, rate, and share a version as a preset.

import { $, api, h, isAdmin, nav } from "./core.js";

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
      await nav.route();
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

export { presetForm, presetPage, presetsPage };
