// /admin/sync: runs with live per-table progress, the recent runs, every table's last sync,
// catalog sources and name collisions.  Polls while a run is going.
import { page, api, h, replace, number, bytes, ago, stateBadge, dataTable, errorNotice, notice, announce, commandBlock, curl } from "./app.js";

const content = document.getElementById("content");

function runCard(run) {
  const failed = (run.tables || []).filter((t) => t.state === "failed").length;
  return h("section", { class: "card", id: run.run_id, "aria-label": `Run ${run.run_id}` },
    h("h3", {}, h("code", {}, run.run_id), " ", stateBadge(run.state)),
    h("p", { class: "muted" }, "Started ", h("span", {}, run.started_at ? ago(run.started_at) : "—"),
      run.finished_at ? [", finished ", ago(run.finished_at)] : "", failed ? ` · ${failed} failed` : ""),
    run.error ? errorNotice(new Error(run.error)) : null,
    dataTable([
      { label: "Table", render: (t) => h("strong", {}, t.table_id) },
      { label: "Source", key: "source" },
      { label: "State", render: (t) => stateBadge(t.state) },
      { label: "Rows", num: true, render: (t) => number(t.rows) },
      { label: "Size", num: true, render: (t) => (t.size_bytes === undefined ? "—" : bytes(t.size_bytes)) },
      { label: "Time", num: true, render: (t) => (t.duration_ms !== undefined && t.duration_ms !== null ? `${(t.duration_ms / 1000).toFixed(1)} s` : "—") },
      { label: "Problem", wrap: true, render: (t) => t.error || t.note || "" },
    ], run.tables || [], { empty: "This run had no table to sync." }));
}

page("/admin/sync", async () => {
  const message = h("div", { "aria-live": "polite" });
  const summary = h("div", {});
  const runsBox = h("div", {});
  const tablesBox = h("div", {});
  const filter = h("input", { type: "search", id: "filter", placeholder: "table or error", autocomplete: "off" });
  let timer = null;
  let lastRunning = false;
  let data;
  const renderTables = () => {
    const q = filter.value.trim().toLowerCase();
    const rows = (data.status.tables || []).filter((t) => !q || t.table_id.toLowerCase().includes(q) || (t.error || "").toLowerCase().includes(q));
    replace(tablesBox, dataTable([
      { label: "Table", render: (t) => h("a", { href: `/catalog/${encodeURIComponent(t.table_id)}` }, t.table_id) },
      { label: "Source", render: (t) => t.source || "—" },
      { label: "State", render: (t) => stateBadge(t.state) },
      { label: "Last sync", render: (t) => ago(t.last_sync) },
      { label: "Rows", num: true, render: (t) => number(t.rows) },
      { label: "Size", num: true, render: (t) => bytes(t.size_bytes) },
      { label: "Error", wrap: true, render: (t) => t.error || "" },
    ], rows, { caption: "Tables", empty: q ? "No table matches." : "No table has been synced yet." }));
  };
  const load = async () => {
    const [status, registry] = await Promise.all([api("/api/sync/status"), api("/api/admin/registry")]);
    data = { status, registry };
    const tables = status.tables || [];
    const synced = tables.filter((t) => t.last_sync).length;
    const errors = tables.filter((t) => t.state === "error" || t.error).length;
    const never = registry.tables.filter((r) => !tables.some((t) => t.table_id === r.id && t.last_sync)).length;
    const runs = (status.runs || []).slice().reverse();
    const running = runs.some((r) => r.state === "running");
    replace(summary, h("div", { class: "cards" },
      h("div", { class: "stat" }, h("span", { class: "value" }, running ? stateBadge("running") : stateBadge("idle")), h("span", { class: "label" }, "sync")),
      h("div", { class: "stat" }, h("span", { class: "value" }, number(registry.count)), h("span", { class: "label" }, "registered tables")),
      h("div", { class: "stat" }, h("span", { class: "value" }, number(synced)), h("span", { class: "label" }, "synced")),
      h("div", { class: "stat" }, h("span", { class: "value" }, number(never)), h("span", { class: "label" }, "never synced")),
      h("div", { class: "stat" }, h("span", { class: "value" }, number(errors)), h("span", { class: "label" }, "with errors"))),
      (status.collisions || []).length ? notice("warn", h("p", {}, "Name collisions: "),
        h("ul", {}, status.collisions.map((c) => h("li", {}, `${c.view}: kept from ${c.owner}, skipped from ${c.skipped_source}`)))) : null,
      h("p", { class: "hint" }, "Catalog rebuilt ", ago(status.last_rebuild), "; this page refreshes itself while a sync runs."));
    replace(runsBox, runs.length ? runs.map(runCard) : h("p", { class: "empty" }, "No sync has run since the server started."));
    renderTables();
    if (lastRunning && !running) announce("The sync finished");
    lastRunning = running;
    clearTimeout(timer);
    if (running) timer = setTimeout(() => load().catch((e) => replace(message, errorNotice(e))), 1000);
    if (location.hash && !running) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  };
  filter.addEventListener("input", () => renderTables());
  const trigger = h("button", { type: "button", class: "primary", id: "sync-all", onclick: async () => {
    trigger.disabled = true;
    try {
      const answer = await api("/api/sync/trigger", { method: "POST" });
      replace(message, notice("info", h("p", {}, answer.message || "Sync started.")));
      announce("Sync started");
      await load();
    } catch (error) {
      replace(message, errorNotice(error));
    } finally {
      trigger.disabled = false;
    }
  } }, "Sync every table now");
  replace(content,
    h("div", { class: "actions" }, trigger), message, summary,
    h("h2", {}, "Runs"), runsBox,
    h("h2", {}, "Tables"),
    h("div", { class: "toolbar", role: "search" }, h("div", {}, h("label", { for: "filter" }, "Filter"), filter)),
    tablesBox,
    h("details", { class: "headless" }, h("summary", {}, "From a terminal"),
      commandBlock(curl("POST", "/api/sync/trigger"), "Trigger"), commandBlock(curl("GET", "/api/sync/status"), "Status")));
  await load();
});
