// /dashboard: the instance at a glance.  Admins: status, what needs attention (each item links to
// the page that fixes it; nothing is shown when all is well), tables, sources, last syncs.
// Analysts: their tables, their last pull, and the problems of their tables.
import { page, api, h, replace, number, bytes, ago, stateBadge, notice, dataTable, commandBlock, errorNotice } from "./app.js";

const content = document.getElementById("content");

function stat(label, value, detail) {
  return h("div", { class: "stat" }, h("span", { class: "value" }, value), h("span", { class: "label" }, label),
    detail ? h("div", { class: "hint" }, detail) : null);
}

// Each problem: {text, href, link}.  From health (warnings, checks, catalog) and sync state.
function attentionItems(health, status, registry) {
  const items = [];
  for (const warning of health.warnings || []) {
    const deprecated = /deprecated/i.test(warning);
    items.push({ text: warning, href: deprecated ? "#update" : "#status", link: deprecated ? "How to update" : "See the status" });
  }
  const checks = health.checks || {};
  for (const [name, check] of Object.entries(checks)) {
    if (check.status !== "warning" && check.status !== "error") continue;
    if (name === "release_index" && (health.warnings || []).length) continue; // already listed
    items.push({ text: `${name.replace(/_/g, " ")}: ${check.detail || check.status}`, href: "#status", link: "Details" });
  }
  const catalog = health.catalog || {};
  for (const source of catalog.sources || []) {
    if (source.status === "ok" || source.status === "partial") continue;
    items.push({ text: `The extract of source ${source.name} is ${source.status}${source.errors && source.errors.length ? `: ${source.errors[0]}` : ""}`,
      href: "/admin/sync", link: "Open Sync" });
  }
  for (const c of catalog.collisions || (status && status.collisions) || []) {
    items.push({ text: `Table name ${c.view} is claimed by ${c.owner}; ${c.skipped_source}'s table of that name is not published`,
      href: "/admin/tables", link: "Rename it on Tables" });
  }
  for (const id of catalog.stale_tables || []) {
    const name = typeof id === "string" ? id : id.table_id || id.id || JSON.stringify(id);
    items.push({ text: `${name} has not been synced for a long time`, href: "/admin/sync", link: "Sync it" });
  }
  for (const t of registry || []) {
    if (t.last_sync_error) items.push({ text: `${t.id} failed to sync: ${t.last_sync_error}`, href: "/admin/tables", link: "Open Tables" });
  }
  if (!registry) {
    for (const t of (status && status.tables) || []) {
      if (t.state === "error" || t.state === "failed") items.push({ text: `${t.table_id} failed to sync: ${t.error || ""}`, href: `/catalog/${encodeURIComponent(t.table_id)}`, link: "Open the table" });
    }
  }
  return items;
}

function attentionList(items) {
  if (!items.length) return null;
  return h("section", { "aria-labelledby": "attention-h" },
    h("h2", { id: "attention-h" }, "Needs attention"),
    h("ul", { class: "attention card" }, items.map((i) => h("li", {}, i.text, " — ", h("a", { href: i.href }, i.link)))));
}

function tableList(tables) {
  return dataTable([
    { label: "Table", render: (t) => h("a", { href: `/catalog/${encodeURIComponent(t.id)}` }, t.id) },
    { label: "Source", key: "source_type" },
    { label: "Rows", num: true, render: (t) => number(t.rows) },
    { label: "Size", num: true, render: (t) => bytes(t.size_bytes) },
    { label: "Last sync", render: (t) => ago(t.last_sync) },
  ], tables, { caption: "Tables", empty: "No tables yet." });
}

async function adminView(me, instance) {
  const [health, status, registry, catalog, setup] = await Promise.all([
    api("/api/health/detailed"), api("/api/sync/status"), api("/api/admin/registry"), api("/api/catalog/tables"),
    api("/api/admin/setup").catch(() => null)]);
  const checks = health.checks || {};
  const disk = checks.disk_free || {};
  const mount = checks.state_dir || {};
  const totalRows = catalog.tables.reduce((n, t) => n + (t.rows || 0), 0);
  const totalBytes = catalog.tables.reduce((n, t) => n + (t.size_bytes || 0), 0);
  const runs = (status.runs || []).slice().reverse();
  replace(content,
    setup && !setup.done ? notice("info", h("p", {}, "This instance is not fully set up yet. ",
      h("a", { href: "/setup" }, "Continue the setup"))) : null,
    attentionList(attentionItems(health, status, registry.tables)),
    (health.warnings || []).some((w) => /deprecated/i.test(w)) ? h("section", { id: "update", class: "card" },
      h("h3", {}, "Updating this instance"),
      h("p", {}, "On the server, in the folder with docker-compose.yml, pull the current image and recreate the container; the state directory survives:"),
      commandBlock("docker compose pull && docker compose up -d", "Update command")) : null,
    h("h2", { id: "status" }, "Instance"),
    h("div", { class: "cards" },
      stat("status", stateBadge(health.status)),
      stat("version", instance.version, `channel ${instance.channel}`),
      stat("free disk (data)", bytes(disk.data_dir_free_bytes), `state: ${bytes(disk.state_dir_free_bytes)}`),
      stat("state directory", mount.is_mount_point ? "own mount" : "on the data disk",
        mount.mount_required ? "a separate mount is required" : mount.path),
      stat("schema", `${(health.schema || {}).current ?? "?"} of ${(health.schema || {}).expected ?? "?"}`),
      stat("uptime", health.uptime_seconds !== undefined ? `${Math.round(health.uptime_seconds / 60)} min` : "—",
        health.memory ? `${bytes(health.memory.rss_bytes)} memory` : null)),
    h("h2", {}, "Tables"),
    h("div", { class: "cards" },
      stat("tables", number(catalog.count)), stat("rows", number(totalRows)), stat("on disk", bytes(totalBytes)),
      stat("registered to sync", number(registry.count))),
    tableList(catalog.tables.slice().sort((a, b) => String(b.last_sync || "").localeCompare(String(a.last_sync || ""))).slice(0, 10)),
    catalog.count > 10 ? h("p", {}, h("a", { href: "/catalog" }, `All ${catalog.count} tables`)) : null,
    h("h2", {}, "Sources"),
    dataTable([
      { label: "Source", key: "name" },
      { label: "State", render: (s) => stateBadge(s.status) },
      { label: "Tables", num: true, render: (s) => number((s.views || []).length) },
      { label: "Problem", wrap: true, render: (s) => (s.errors || []).join("; ") },
    ], ((health.catalog || {}).sources) || [], { empty: "No source has published an extract yet." }),
    h("h2", {}, "Last syncs"),
    runs.length ? dataTable([
      { label: "Run", render: (r) => h("a", { href: `/admin/sync#${encodeURIComponent(r.run_id)}` }, r.run_id) },
      { label: "State", render: (r) => stateBadge(r.state) },
      { label: "Tables", num: true, render: (r) => number((r.tables || []).length) },
      { label: "Started", render: (r) => ago(r.started_at) },
    ], runs.slice(0, 5)) : h("p", { class: "empty" }, "No sync has run since the server started. ",
      h("a", { href: "/admin/sync" }, "Open Sync")));
}

async function analystView(me, instance) {
  const [catalog, activity, status] = await Promise.all([
    api("/api/catalog/tables"), api("/api/me/activity"), api("/api/sync/status").catch(() => null)]);
  const last = activity.last_pull;
  replace(content,
    attentionList(attentionItems({}, status, null)),
    h("h2", {}, "Your tables"),
    h("p", {}, `You may query and pull ${catalog.count} table${catalog.count === 1 ? "" : "s"}.`),
    tableList(catalog.tables),
    h("h2", {}, "Your last pull"),
    last ? h("p", {}, "You last pulled ", ago(last.at), ` (${number(last.tables)} tables, with ${last.client}).`)
      : h("p", {}, "You have not pulled yet."),
    h("p", {}, "Mirror your tables into a local workspace for your AI agent:"),
    commandBlock(`agnes login --server ${location.origin} --email ${me.email}\nagnes pull`, "Pull command"),
    h("p", {}, "No ", h("code", {}, "agnes"), " command yet? Install it from this server (into ~/.local, no root; the download's SHA-256 is checked):"),
    commandBlock(`curl -fsS ${location.origin}/cli/install.sh | sh`, "Install command"),
    h("p", {}, "Or use the ", h("a", { href: "/query" }, "query console"), " in the browser."));
}

page("/dashboard", async ({ me, instance }) => {
  try {
    if (me.is_admin) await adminView(me, instance);
    else await analystView(me, instance);
  } catch (error) {
    replace(content, errorNotice(error, "The dashboard could not load"));
  }
});
