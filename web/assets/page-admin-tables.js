// /admin/tables: the registry (mode, schedule, description, last sync and its error), with edit,
// sync now and unregister per table; registering a table by hand; uploading a file as a table.
import { page, api, h, replace, number, bytes, ago, badge, stateBadge, errorNotice, notice, announce, commandBlock, curl } from "./app.js";
import { field, showFieldError } from "./sources-ui.js";

const content = document.getElementById("content");

function editForm(row, reload) {
  const id = `edit-${row.id}`;
  const form = h("form", { class: "card", "aria-label": `Edit ${row.id}` },
    h("div", { class: "form-row" },
      h("div", {}, h("label", { for: `${id}-mode` }, "Query mode"),
        h("select", { id: `${id}-mode`, name: "query_mode" }, ["local", "remote", "materialized"].map((m) =>
          h("option", { value: m, selected: row.query_mode === m }, m)))),
      h("div", {}, h("label", { for: `${id}-schedule` }, "Schedule"),
        h("input", { id: `${id}-schedule`, name: "sync_schedule", type: "text", value: row.sync_schedule || "", placeholder: "every 1h",
          "aria-describedby": `${id}-schedule-help` }),
        h("p", { class: "hint", id: `${id}-schedule-help` }, "every 15m, every 6h, daily 03:00 (UTC); empty: only when triggered"))),
    h("label", { for: `${id}-description` }, "Description"),
    h("textarea", { id: `${id}-description`, name: "description", rows: "2" }, row.description || ""),
    row.query_mode === "materialized" || row.source_query ? [h("label", { for: `${id}-query` }, "Source query (materialized)"),
      h("textarea", { id: `${id}-query`, name: "source_query", rows: "3" }, row.source_query || "")] : null,
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save"),
      h("button", { type: "button", onclick: () => form.remove() }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { query_mode: data.query_mode, sync_schedule: data.sync_schedule.trim() || null,
      description: data.description.trim() || null };
    if ("source_query" in data) body.source_query = data.source_query.trim() || null;
    try {
      await api(`/api/admin/registry/${encodeURIComponent(row.id)}`, { method: "PUT", body });
      announce(`${row.id} saved`);
      await reload();
    } catch (error) {
      showFieldError(form, error, ["sync_schedule", "query_mode", "source_query", "description"],
        (d) => (/schedule/i.test(d) ? "sync_schedule" : /query/i.test(d) ? "source_query" : null));
    }
  });
  return form;
}

function registerForm(sources, reload) {
  const types = sources.sources.filter((s) => s.kind === "builtin" && s.available).map((s) => s.type)
    .concat(sources.sources.find((s) => s.kind === "custom").connectors.map((c) => c.name));
  const form = h("form", { class: "card", id: "register", novalidate: true },
    h("h2", {}, "Register a table"),
    h("p", {}, "For one table at a time; ", h("a", { href: "/admin/sources" }, "Sources"), " lists and registers a database's tables in one go."),
    field({ name: "name", label: "Name", required: true, help: "What analysts query it as (letters, digits, _)." }),
    h("label", { for: "f-source_type" }, "Source"),
    h("select", { id: "f-source_type", name: "source_type" }, types.map((t) => h("option", { value: t }, t))),
    field({ name: "bucket", label: "Schema (or bucket)", placeholder: "public" }),
    field({ name: "source_table", label: "Table at the source", help: "Defaults to the name." }),
    h("label", { for: "f-query_mode" }, "Query mode"),
    h("select", { id: "f-query_mode", name: "query_mode" }, ["local", "remote", "materialized"].map((m) => h("option", { value: m }, m))),
    h("label", { for: "f-source_query" }, "Source query (materialized only)"),
    h("textarea", { id: "f-source_query", name: "source_query", rows: "3", placeholder: "SELECT ... FROM ... WHERE ..." }),
    field({ name: "sync_schedule", label: "Schedule", placeholder: "every 1h" }),
    field({ name: "description", label: "Description" }),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" },
      h("button", { type: "button", id: "precheck" }, "Check"),
      h("button", { type: "submit", class: "primary" }, "Register")),
    h("div", { id: "precheck-result", "aria-live": "polite" }));
  const body = () => {
    const data = {};
    for (const [k, v] of new FormData(form)) if (String(v).trim()) data[k] = String(v).trim();
    return data;
  };
  const fields = ["name", "source_type", "bucket", "source_table", "query_mode", "source_query", "sync_schedule", "description"];
  form.querySelector("#precheck").addEventListener("click", async () => {
    const out = form.querySelector("#precheck-result");
    replace(out, h("p", { class: "muted" }, "Checking…"));
    try {
      const answer = await api("/api/admin/register-table/precheck", { method: "POST", body: body() });
      const t = answer.table || {};
      replace(out, notice("ok", h("p", {}, t.note || "Valid."),
        (t.columns || []).length ? h("p", {}, "Columns: ", t.columns.map((c) => `${c.name} ${c.type}`).join(", ")) : null));
    } catch (error) {
      replace(out);
      showFieldError(form, error, fields);
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await api("/api/admin/register-table", { method: "POST", body: body() });
      announce(`${answer.id} registered`);
      form.reset();
      replace(form.querySelector(".form-error"), notice("ok", h("p", {}, `${answer.id} is registered. Sync it from the list above.`)));
      await reload();
    } catch (error) {
      showFieldError(form, error, fields);
    }
  });
  return form;
}

function uploadForm(reload) {
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", id: "upload" },
    h("h2", {}, "Upload a file as a table"),
    h("p", { id: "upload-help" }, "CSV, TSV, Parquet, JSON or NDJSON. The table is named after the file unless you name it; ",
      "uploading to an existing name replaces that table. It is published at once."),
    h("label", { for: "upload-file" }, "File"),
    h("input", { type: "file", id: "upload-file", name: "file", required: true, "aria-describedby": "upload-help",
      accept: ".csv,.tsv,.txt,.parquet,.json,.ndjson,.jsonl" }),
    h("label", { for: "upload-name" }, "Table name (optional)"),
    h("input", { type: "text", id: "upload-name", name: "name", placeholder: "from the file name" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Upload")),
    status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) {
      replace(status, notice("error", "Choose a file first."));
      return;
    }
    const data = new FormData();
    data.append("file", file);
    const name = form.elements.name.value.trim();
    replace(status, h("p", { class: "muted" }, `Uploading ${file.name}…`));
    try {
      const answer = await api(`/api/upload/tables${name ? `?name=${encodeURIComponent(name)}` : ""}`, { method: "POST", body: data });
      const t = answer.table;
      replace(status, notice("ok", h("p", {}, h("a", { href: `/catalog/${encodeURIComponent(t.id)}` }, t.id),
        ` ${answer.replaced ? "replaced" : "created"}: ${number(t.rows)} rows, ${t.columns.length} columns.`)));
      announce(`${t.id} uploaded`);
      form.reset();
      await reload();
    } catch (error) {
      replace(status, errorNotice(error));
    }
  });
  return form;
}

page("/admin/tables", async () => {
  const list = h("div", {});
  const message = h("div", { "aria-live": "polite" });
  let sources;
  const reload = async () => {
    const [registry, status, catalog] = await Promise.all([api("/api/admin/registry"), api("/api/sync/status"), api("/api/catalog/tables")]);
    const states = Object.fromEntries((status.tables || []).map((t) => [t.table_id, t]));
    const rows = registry.tables;
    const uploads = catalog.tables.filter((t) => t.source_type === "local" && !rows.some((r) => r.id === t.id));
    const body = h("tbody", {}, rows.map((row) => {
      const state = states[row.id] || {};
      const editCell = h("td", { colspan: "8" });
      const editRow = h("tr", { hidden: true }, editCell);
      return [h("tr", {},
        h("td", {}, h("a", { href: `/catalog/${encodeURIComponent(row.id)}` }, h("strong", {}, row.id)),
          row.description ? h("div", { class: "hint" }, row.description) : null),
        h("td", {}, row.source_type, row.bucket || row.source_table ? h("div", { class: "hint" }, [row.bucket, row.source_table].filter(Boolean).join(".")) : null),
        h("td", {}, badge(row.query_mode, row.query_mode === "local" ? "" : "info")),
        h("td", {}, row.sync_schedule || h("span", { class: "muted" }, "on demand")),
        h("td", {}, ago(state.last_sync), state.state ? h("div", {}, stateBadge(state.state)) : null),
        h("td", { class: "num" }, number(state.rows), h("div", { class: "hint" }, bytes(state.size_bytes))),
        h("td", { class: "wrap" }, row.last_sync_error ? h("span", { class: "field-error" }, row.last_sync_error) : ""),
        h("td", {}, h("div", { class: "actions" },
          h("button", { type: "button", class: "small", "aria-label": `Edit ${row.id}`, onclick: () => {
            editRow.hidden = !editRow.hidden;
            if (!editRow.hidden) { replace(editCell, editForm(row, reload)); editCell.querySelector("select").focus(); }
          } }, "Edit"),
          h("button", { type: "button", class: "small", "aria-label": `Sync now: ${row.id}`, onclick: async () => {
            try {
              const run = await api("/api/sync/trigger", { method: "POST", body: [row.id] });
              replace(message, notice("info", h("p", {}, `Syncing ${row.id}: `, h("a", { href: `/admin/sync#${encodeURIComponent(run.run_id)}` }, "follow it on Sync"))));
              announce(`Sync of ${row.id} started`);
            } catch (error) { replace(message, errorNotice(error)); }
          } }, "Sync now"),
          h("button", { type: "button", class: "small danger", "aria-label": `Unregister ${row.id}`, onclick: async () => {
            if (!confirm(`Unregister ${row.id}? Its synced data and history are removed and analysts lose it at once.`)) return;
            try {
              await api(`/api/admin/registry/${encodeURIComponent(row.id)}`, { method: "DELETE" });
              announce(`${row.id} unregistered`);
              await reload();
            } catch (error) { replace(message, errorNotice(error)); }
          } }, "Unregister")))), editRow];
    }));
    replace(list,
      rows.length ? h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
        h("caption", { class: "visually-hidden" }, "Registered tables"),
        h("thead", {}, h("tr", {}, ["Table", "Source", "Mode", "Schedule", "Last sync", "Rows", "Last error", "Actions"].map((c, i) =>
          h("th", { scope: "col", class: i === 5 ? "num" : null }, c)))), body))
        : h("p", { class: "empty" }, "No table is registered. ", h("a", { href: "/admin/sources" }, "Discover a source's tables"), " or register one below."),
      uploads.length ? [h("h2", {}, "Uploaded tables"), h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Table", "Rows", "Size", "Uploaded"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, uploads.map((t) => h("tr", {}, h("td", {}, h("a", { href: `/catalog/${encodeURIComponent(t.id)}` }, t.id)),
          h("td", { class: "num" }, number(t.rows)), h("td", { class: "num" }, bytes(t.size_bytes)), h("td", {}, ago(t.last_sync)))))))] : null);
  };
  sources = await api("/api/admin/sources");
  replace(content, message, list, registerForm(sources, reload), uploadForm(reload),
    h("details", { class: "headless" }, h("summary", {}, "From a terminal"),
      commandBlock(curl("GET", "/api/admin/registry"), "List"),
      commandBlock(curl("PUT", "/api/admin/registry/orders", { sync_schedule: "every 1h" }), "Edit"),
      commandBlock(curl("POST", "/api/sync/trigger", ["orders"]), "Sync one"),
      commandBlock(curl("POST", "/api/upload/tables", undefined, { form: "-F file=@sales.csv" }), "Upload")));
  await reload();
});
