// /catalog/{id}: one table: what it is, its columns, a sample, how to query and pull it.
import { page, api, h, replace, number, bytes, ago, badge, dataTable, commandBlock, errorNotice, pathId } from "./app.js";

const content = document.getElementById("content");

function cell(value) {
  if (value === null) return h("span", { class: "muted" }, "NULL");
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

page(null, async ({ me }) => {
  const id = pathId();
  let table;
  try {
    table = await api(`/api/catalog/tables/${encodeURIComponent(id)}`);
  } catch (error) {
    replace(content, errorNotice(error), h("p", {}, h("a", { href: "/catalog" }, "Back to the catalog")));
    return;
  }
  document.getElementById("title").textContent = table.id;
  document.title = `${table.id} · ${document.title.split(" · ").pop()}`;
  const sql = `SELECT * FROM "${table.id.replace(/"/g, '""')}" LIMIT 100`;
  const sample = h("div", {}, h("p", { class: "muted" }, "Loading a sample…"));
  replace(content,
    table.description ? h("p", {}, table.description) : h("p", { class: "muted" }, "No description yet."),
    h("dl", { class: "kv" },
      h("dt", {}, "Source"), h("dd", {}, table.source_type),
      h("dt", {}, "Mode"), h("dd", {}, badge(table.query_mode, table.query_mode === "local" ? "" : "info"),
        table.query_mode === "remote" ? " queried at the source; not downloadable" : ""),
      h("dt", {}, "Rows"), h("dd", {}, number(table.rows)),
      h("dt", {}, "Size"), h("dd", {}, bytes(table.size_bytes)),
      h("dt", {}, "Last sync"), h("dd", {}, ago(table.last_sync))),
    h("div", { class: "actions" },
      h("a", { class: "button primary", href: `/query?sql=${encodeURIComponent(sql)}` }, "Query this table")),
    h("h2", {}, "Pull it into your workspace"),
    commandBlock(`agnes pull ${table.id}`, "Pull command"),
    h("p", { class: "hint" }, "The first time: ", h("code", {}, `agnes login --server ${location.origin} --email ${me.email}`)),
    h("h2", {}, `Columns (${(table.columns || []).length})`),
    dataTable([
      { label: "Column", render: (c) => h("code", {}, c.name) },
      { label: "Type", render: (c) => h("code", {}, c.type) },
      { label: "Nullable", render: (c) => (c.nullable ? "yes" : "no") },
      { label: "Description", wrap: true, render: (c) => c.description || "" },
    ], table.columns || [], { caption: "Columns", empty: "The columns are known after the first sync." }),
    h("h2", {}, "Sample"),
    sample);
  try {
    const rows = await api(`/api/catalog/tables/${encodeURIComponent(table.id)}/sample?n=10`);
    replace(sample, rows.rows.length ? h("div", { class: "table-wrap", tabindex: "0" }, h("table", { class: "grid-results" },
      h("caption", { class: "visually-hidden" }, "Sample rows"),
      h("thead", {}, h("tr", {}, rows.columns.map((c, i) => h("th", { scope: "col" }, c, h("span", { class: "type" }, rows.types[i]))))),
      h("tbody", {}, rows.rows.map((r) => h("tr", {}, r.map((v) => h("td", { class: v === null ? "null" : null }, cell(v))))))))
      : h("p", { class: "empty" }, "The table is empty."));
  } catch (error) {
    replace(sample, errorNotice(error, "No sample"));
  }
});
