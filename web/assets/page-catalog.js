// /catalog: the tables the caller may see, with search and filters (all in the browser: the list
// is one request).
import { page, api, h, replace, number, bytes, ago, badge } from "./app.js";

const content = document.getElementById("content");

page("/catalog", async () => {
  const catalog = await api("/api/catalog/tables");
  const tables = catalog.tables;
  const sources = [...new Set(tables.map((t) => t.source_type))].sort();
  const modes = [...new Set(tables.map((t) => t.query_mode))].sort();
  const search = h("input", { type: "search", id: "search", placeholder: "name or description", autocomplete: "off" });
  const source = h("select", { id: "source" }, h("option", { value: "" }, "All sources"), sources.map((s) => h("option", { value: s }, s)));
  const mode = h("select", { id: "mode" }, h("option", { value: "" }, "All modes"), modes.map((m) => h("option", { value: m }, m)));
  const count = h("p", { class: "muted", "aria-live": "polite" });
  const body = h("tbody", {});
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = tables.filter((t) => (!q || t.id.toLowerCase().includes(q) || (t.description || "").toLowerCase().includes(q) ||
      (t.source_type || "").toLowerCase().includes(q)) && (!source.value || t.source_type === source.value) &&
      (!mode.value || t.query_mode === mode.value));
    count.textContent = `${shown.length} of ${tables.length} table${tables.length === 1 ? "" : "s"}`;
    replace(body, shown.map((t) => h("tr", {},
      h("td", {}, h("a", { href: `/catalog/${encodeURIComponent(t.id)}` }, h("strong", {}, t.id))),
      h("td", { class: "wrap" }, t.description || h("span", { class: "muted" }, "no description")),
      h("td", {}, t.source_type),
      h("td", {}, badge(t.query_mode, t.query_mode === "local" ? "" : "info")),
      h("td", { class: "num" }, number(t.rows)),
      h("td", { class: "num" }, bytes(t.size_bytes)),
      h("td", {}, ago(t.last_sync)))));
  };
  for (const control of [search, source, mode]) control.addEventListener("input", render);
  if (!tables.length) {
    replace(content, h("p", { class: "empty" }, "No table is shared with you yet. Ask an admin of this instance to grant you access."));
    return;
  }
  replace(content,
    h("div", { class: "toolbar", role: "search" },
      h("div", {}, h("label", { for: "search" }, "Search"), search),
      h("div", {}, h("label", { for: "source" }, "Source"), source),
      h("div", {}, h("label", { for: "mode" }, "Mode"), mode)),
    count,
    h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
      h("caption", { class: "visually-hidden" }, "Tables you may query"),
      h("thead", {}, h("tr", {}, ["Table", "Description", "Source", "Mode", "Rows", "Size", "Last sync"].map((c, i) =>
        h("th", { scope: "col", class: i === 4 || i === 5 ? "num" : null }, c)))),
      body)));
  render();
});
