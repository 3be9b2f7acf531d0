// /admin/sources: the configured data source, changing and testing it, discovering and registering
// its tables; the custom connectors found; the source types this build cannot sync yet and why.
import { page, api, h, replace, badge, dataTable, errorNotice, notice, commandBlock, curl, number } from "./app.js";
import { credentialsForm, discoverForm } from "./sources-ui.js";

const content = document.getElementById("content");

function settingsList(configured) {
  const settings = configured.settings || {};
  const rows = Object.entries(settings).filter(([, v]) => v !== "" && v !== null && v !== undefined);
  return h("dl", { class: "kv" },
    h("dt", {}, "Type"), h("dd", {}, configured.type, configured.explicit ? "" : h("span", { class: "muted" }, " (the default)")),
    h("dt", {}, "Set by"), h("dd", {}, configured.origin || "—"),
    rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]),
    configured.secret_env ? [h("dt", {}, "Secret"), h("dd", {}, configured.secret_set
      ? [badge("set", "ok"), ` in ${configured.secret_env}`] : [badge("missing", "bad"), ` ${configured.secret_env} is not set`])] : null);
}

async function render() {
  const sources = await api("/api/admin/sources");
  const configured = sources.configured;
  const builtin = sources.sources.filter((s) => s.kind === "builtin");
  const available = builtin.filter((s) => s.available);
  const custom = sources.sources.find((s) => s.kind === "custom");
  const current = builtin.find((s) => s.type === configured.type);
  const editor = h("div", {});
  const discover = h("div", {});
  const picker = h("select", { id: "source-type" }, available.map((s) => h("option", { value: s.type, selected: s.type === configured.type }, s.label)));
  const showEditor = () => {
    const source = available.find((s) => s.type === picker.value);
    replace(editor, credentialsForm({ source, configured, title: `Connect to ${source.label}`,
      onSaved: async () => { await render(); } }));
  };
  picker.addEventListener("change", showEditor);
  replace(content,
    h("h2", {}, "Current source"),
    h("div", { class: "card" }, settingsList(configured),
      current && current.can_discover && configured.secret_set ? h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", id: "discover", onclick: async () => {
          replace(discover, h("p", { class: "muted" }, "Listing the source's tables…"));
          replace(discover, await discoverForm({ source: current, title: `Tables of ${current.label}`,
            onDone: async (n) => { replace(discover, notice("ok", h("p", {}, `${n} table${n === 1 ? "" : "s"} registered. `,
              h("a", { href: "/admin/sync" }, "Sync them now"), " or wait for their schedule."))); },
            onRetry: () => document.getElementById("discover").click() }));
        } }, "Discover and register tables")) : null),
    discover,
    h("h2", {}, "Change or test the source"),
    available.length ? h("div", {}, h("label", { for: "source-type" }, "Source type"), picker, editor)
      : notice("warn", h("p", {}, "This build has no built-in connector.")),
    h("details", { class: "headless" }, h("summary", {}, "From a terminal"),
      commandBlock(curl("POST", "/api/admin/configure", { data_source: "postgres", postgres_host: "db.example.com",
        postgres_database: "analytics", postgres_user: "agnes", postgres_password: "<secret>" }), "Configure"),
      commandBlock(curl("POST", "/api/admin/discover-and-register"), "Discover and register")),
    h("h2", {}, "Files"),
    h("p", {}, `${number(sources.catalog.local || 0)} uploaded table${sources.catalog.local === 1 ? "" : "s"}. Upload files on the `,
      h("a", { href: "/admin/tables#upload" }, "Tables page"), "."),
    h("h2", {}, "Custom connectors"),
    h("p", {}, "Programs in ", h("code", {}, custom.connectors_dir), " that write an extract; register their tables on the ",
      h("a", { href: "/admin/tables#register" }, "Tables page"), " with the connector's name as the source."),
    dataTable([
      { label: "Connector", render: (c) => h("strong", {}, c.name) },
      { label: "Executable", wrap: true, render: (c) => h("code", {}, c.path) },
      { label: "Reads from the environment", render: (c) => (c.env.length ? c.env.join(", ") : "nothing") },
    ], custom.connectors, { empty: `None installed. Copy one of examples/connectors/ into ${custom.connectors_dir}/<name>/.` }),
    h("h2", {}, "Not in this build"),
    dataTable([
      { label: "Source", render: (s) => s.label },
      { label: "Why", wrap: true, render: (s) => s.reason },
    ], sources.sources.filter((s) => !s.available), { empty: "Every source type is available." }));
  if (available.length) showEditor();
}

page("/admin/sources", async () => {
  try {
    await render();
  } catch (error) {
    replace(content, errorNotice(error));
  }
});
