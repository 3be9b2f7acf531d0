// /setup: the first-run wizard.  Five steps: admin account, data source, credentials, tables,
// first sync.  Where it stands comes from the server (GET /api/admin/setup), so a reload, another
// browser or an agent that did a step with curl all land on the right step.  The one thing the
// browser remembers is a choice not yet saved anywhere: the source picked in step 2 (in the URL).
import {
  api, ApiError, h, replace, clear, errorNotice, notice, announce, number, bytes, stateBadge, commandBlock, curl,
  mountHeader, poll,
} from "./app.js";
import { credentialsForm, discoverForm, field, showFieldError } from "./sources-ui.js";

const STEP_NAMES = ["Admin account", "Data source", "Credentials", "Tables", "First sync"];
const stepBox = document.getElementById("step");
const headless = document.getElementById("headless-body");
let stopPolling = () => {};
let headerMounted = false;

// ---- the state ------------------------------------------------------------------------------

function hashState() {
  const params = new URLSearchParams(location.hash.slice(1));
  return { source: params.get("source"), step: params.get("step") };
}

function setHash(source, step) {
  const params = new URLSearchParams();
  if (source) params.set("source", source);
  if (step) params.set("step", step);
  history.replaceState(null, "", `${location.pathname}${params.toString() ? "#" + params : ""}`);
}

async function loadState() {
  try {
    const state = await api("/api/admin/setup", { noRedirect: true });
    return { ...state, setupMode: false };
  } catch (error) {
    if (error instanceof ApiError && error.status === 503 && error.body && error.body.setup_required)
      return { setupMode: true, step: "1" };
    if (error instanceof ApiError && error.status === 401) {
      location.assign("/login?next=/setup");
      throw error;
    }
    if (error instanceof ApiError && error.status === 403) {
      replace(stepBox, notice("warn", h("p", {}, "Only an admin can set up this instance."),
        h("p", {}, h("a", { href: "/dashboard" }, "Go to the dashboard"))));
      throw error;
    }
    throw error;
  }
}

let sourcesCache;
async function loadSources(refresh) {
  if (!sourcesCache || refresh) sourcesCache = await api("/api/admin/sources");
  return sourcesCache;
}

function sourceOf(sources, type) {
  if (!type) return null;
  const builtin = sources.sources.find((s) => s.type === type);
  if (builtin) return builtin;
  const custom = sources.sources.find((s) => s.kind === "custom");
  const connector = custom && custom.connectors.find((c) => c.name === type);
  return connector ? { ...custom, type, connector } : null;
}

// ---- rendering helpers ------------------------------------------------------------------------

function showProgress(current) {
  const items = document.querySelectorAll("#steps li");
  items.forEach((item, i) => {
    const n = i + 1;
    item.className = current === "done" || n < Number(current) ? "done" : n === Number(current) ? "current" : "";
    if (n === Number(current)) item.setAttribute("aria-current", "step");
    else item.removeAttribute("aria-current");
    item.textContent = STEP_NAMES[i] + (item.className === "done" ? " ✓" : "");
  });
}

function setHeadless(...nodes) {
  replace(headless, ...nodes);
}

// A token line for agents that join at a later step.
function tokenHelp() {
  return [
    h("p", {}, "Every call below needs an admin's token. Get one with:"),
    commandBlock(`${curl("POST", "/auth/token", { email: "admin@example.com", password: "your password" }, { token: false })}\n` +
      "export TOKEN=<the access_token of the answer>", "Get a token"),
  ];
}

function continueButton(text, onclick) {
  return h("button", { type: "button", class: "primary", onclick }, text);
}

function focusStep() {
  const heading = stepBox.querySelector("h2");
  if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus(); }
}

// ---- step 1: the admin account ------------------------------------------------------------------

function stepAdmin() {
  const form = h("form", { class: "card", novalidate: true },
    h("h2", {}, "1. Create the admin account"),
    h("p", {}, "This instance has no admin yet. The first account you create here is its admin; after that, this step is closed."),
    field({ name: "email", label: "Email", input: "email", required: true, autocomplete: "username" }),
    field({ name: "name", label: "Name", autocomplete: "name" }),
    field({ name: "password", label: "Password", input: "password", required: true, autocomplete: "new-password",
      help: "At least 12 characters." }),
    field({ name: "confirm", label: "Repeat the password", input: "password", required: true, autocomplete: "new-password" }),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create the admin")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (data.password !== data.confirm) {
      showFieldError(form, new Error("The two passwords differ; type the same password twice."), ["confirm"]);
      return;
    }
    const body = { email: data.email.trim(), password: data.password };
    if (data.name.trim()) body.name = data.name.trim();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("/auth/bootstrap", { method: "POST", body, noRedirect: true }); // sets the session cookie
      announce("Admin account created");
      await show();
    } catch (error) {
      showFieldError(form, error, ["email", "password", "name"]);
    } finally {
      button.disabled = false;
    }
  });
  replace(stepBox, form);
  setHeadless(
    h("p", {}, "Create the admin and get a token in one call (or start the server with ",
      h("code", {}, "SEED_ADMIN_EMAIL"), " and ", h("code", {}, "SEED_ADMIN_PASSWORD"), "):"),
    commandBlock(curl("POST", "/auth/bootstrap", { email: "admin@example.com", password: "at least 12 characters" }, { token: false }) +
      "\nexport TOKEN=<the access_token of the answer>", "Bootstrap command"));
}

// ---- step 2: the data source ----------------------------------------------------------------------

async function stepSource(state) {
  const sources = await loadSources(true);
  const chosen = hashState().source;
  const configuredType = state.configured && state.configured.explicit ? state.configured.type : null;
  const cards = sources.sources.map((s) => {
    const id = `source-${s.type}`;
    const reasonId = `${id}-why`;
    return h("label", { class: "choice", for: id },
      h("span", { class: "title" },
        h("input", { type: "radio", name: "source", id, value: s.type, disabled: !s.available,
          checked: s.available && (chosen === s.type || (!chosen && configuredType === s.type)),
          "aria-describedby": s.available ? null : reasonId }),
        s.label, !s.available ? h("span", { class: "badge" }, "not in this build") : null),
      h("span", { class: "muted" }, s.summary),
      s.available ? null : h("span", { class: "why", id: reasonId }, s.reason));
  });
  const form = h("form", { class: "card" },
    h("h2", {}, "2. Choose where your data comes from"),
    h("p", {}, "You can add more sources later, on the Sources and Tables pages."),
    h("fieldset", {}, h("legend", {}, "Data source"), h("div", { class: "choices" }, cards)),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Continue")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const picked = new FormData(form).get("source");
    if (!picked) {
      replace(form.querySelector(".form-error"), notice("error", "Choose a data source first."));
      return;
    }
    if (picked === "demo") {
      try {
        await api("/api/admin/configure", { method: "POST", body: { data_source: "local" } });
        setHash("demo", null);
        await show();
      } catch (error) {
        replace(form.querySelector(".form-error"), errorNotice(error));
      }
      return;
    }
    setHash(picked, "3");
    await show();
  });
  replace(stepBox, form);
  setHeadless(...tokenHelp(),
    h("p", {}, "See what this build can connect to, and the custom connectors installed:"),
    commandBlock(curl("GET", "/api/admin/sources"), "List sources"),
    h("p", {}, "To keep the demo data and finish:"),
    commandBlock(curl("POST", "/api/admin/configure", { data_source: "local" }), "Keep the demo"));
}

// ---- step 3: credentials / files / connector ------------------------------------------------------

function stepCredentials(state, source) {
  const back = h("button", { type: "button", onclick: () => { setHash(null, null); show(true); } }, "Back");
  const configured = state.configured || {};
  const already = configured.explicit && configured.type === source.type && configured.secret_set;
  const form = credentialsForm({
    source, configured, title: `3. Connect to ${source.label}`,
    extraActions: [already ? continueButton("Continue with the saved settings", () => { setHash(source.type, "4"); show(); }) : null, back],
    onSaved: async () => { setHash(source.type, null); await show(); },
    onHeadless: (nodes) => setHeadless(...tokenHelp(), ...nodes),
  });
  replace(stepBox, form);
}

function stepFiles(state, source) {
  const list = h("ul", {});
  const input = h("input", { type: "file", id: "upload-file", name: "file", multiple: true,
    accept: ".csv,.tsv,.txt,.parquet,.json,.ndjson,.jsonl", "aria-describedby": "upload-help" });
  const status = h("div", {});
  const form = h("form", { class: "card" },
    h("h2", {}, "3. Upload your files"),
    h("p", { id: "upload-help" }, "Each file becomes a table named after the file (", h("code", {}, "sales.csv"), " → ",
      h("code", {}, "sales"), "). CSV, TSV, Parquet, JSON and NDJSON; up to ", bytes(source.max_bytes), " each. ",
      "Uploading a file with the same name again replaces that table."),
    h("label", { for: "upload-file" }, "Files"), input,
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Upload"),
      h("button", { type: "button", onclick: () => { setHash(null, null); show(true); } }, "Back")),
    status, list);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!input.files.length) {
      replace(status, notice("error", "Choose at least one file."));
      return;
    }
    clear(status);
    let uploaded = 0;
    for (const file of input.files) {
      const data = new FormData();
      data.append("file", file);
      const item = h("li", {}, `${file.name}: uploading…`);
      list.append(item);
      try {
        const answer = await api("/api/upload/tables", { method: "POST", body: data });
        const t = answer.table;
        replace(item, h("strong", {}, t.id), ` — ${number(t.rows)} rows, ${t.columns.length} columns`,
          answer.replaced ? " (replaced)" : "");
        uploaded++;
      } catch (error) {
        replace(item, `${file.name}: `, errorNotice(error));
      }
    }
    announce(`${uploaded} file${uploaded === 1 ? "" : "s"} uploaded`);
    if (uploaded) {
      setHash("local", null);
      status.append(notice("ok", h("p", {}, "Uploaded tables are published at once. "),
        continueButton("Continue", () => show())));
    }
  });
  replace(stepBox, form);
  setHeadless(...tokenHelp(), h("p", {}, "Upload a file as a table (repeat per file):"),
    commandBlock(curl("POST", "/api/upload/tables", undefined, { form: "-F file=@sales.csv" }), "Upload command"));
}

function stepConnector(state, source, sources) {
  const custom = sources.sources.find((s) => s.kind === "custom");
  const connectors = custom.connectors;
  const dir = custom.connectors_dir;
  const chosen = connectors.find((c) => c.name === hashState().source);
  const form = h("form", { class: "card" },
    h("h2", {}, "3. Choose your connector"),
    h("p", {}, "A custom connector is a program Agnes runs to fetch data: any executable at ",
      h("code", {}, `${dir}/<name>/extract`), ". It writes an extract that ", h("code", {}, "agnes contract check"),
      " accepts; Agnes publishes it and keeps serving the last good one if a run fails."),
    connectors.length
      ? h("fieldset", {}, h("legend", {}, `Connectors found in ${dir}`),
          h("div", { class: "choices" }, connectors.map((c) => h("label", { class: "choice", for: `conn-${c.name}` },
            h("span", { class: "title" }, h("input", { type: "radio", name: "connector", id: `conn-${c.name}`, value: c.name,
              checked: chosen ? chosen.name === c.name : connectors.length === 1 }), c.name),
            h("span", { class: "muted" }, c.env.length ? `Reads ${c.env.join(", ")} from the server's environment.` : "Needs no settings.")))))
      : notice("warn", h("p", {}, `No connector is installed in ${dir} yet.`)),
    h("h3", {}, "Add a connector"),
    h("ol", {},
      h("li", {}, "Copy an example (a shell one reading CSV files, a Python one reading a JSON API) or write your own:"),
      h("li", {}, commandBlock(`mkdir -p ${dir}\ncp -r examples/connectors/csv_folder ${dir}/crm\nchmod +x ${dir}/crm/extract`, "Install an example connector")),
      h("li", {}, "Variables it needs go in ", h("code", {}, "connector.json"), " (", h("code", {}, '{"env": ["CRM_TOKEN"]}'),
        ") and the server's environment; then press Refresh.")),
    h("p", {}, "docs/connectors.md in the Agnes repository describes the contract in full."),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", disabled: !connectors.length }, "Continue"),
      h("button", { type: "button", onclick: async () => { await loadSources(true); show(); } }, "Refresh"),
      h("button", { type: "button", onclick: () => { setHash(null, null); show(true); } }, "Back")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = new FormData(form).get("connector");
    if (!name) {
      replace(form.querySelector(".form-error"), notice("error", "Choose a connector first."));
      return;
    }
    setHash(name, "4");
    show();
  });
  replace(stepBox, form);
  setHeadless(...tokenHelp(), h("p", {}, "List the connectors the server found:"),
    commandBlock(curl("GET", "/api/admin/sources"), "List sources"));
}

// ---- step 4: tables -------------------------------------------------------------------------------

async function stepDiscover(state, source) {
  replace(stepBox, h("div", { class: "card" }, h("h2", {}, "4. Choose the tables to share"),
    h("p", { class: "muted" }, `Asking ${source.label} which tables there are…`)));
  const form = await discoverForm({
    source, title: "4. Choose the tables to share", submitLabel: "Register and continue",
    extraActions: [h("button", { type: "button", onclick: () => { setHash(source.type, "3"); show(); } }, "Back")],
    onDone: async () => { setHash(source.type, null); await show(); },
    onRetry: () => show(),
    onHeadless: (nodes) => setHeadless(...tokenHelp(), ...nodes),
  });
  replace(stepBox, form);
}

async function stepConnectorTables(state, source) {
  const registry = await api("/api/admin/registry");
  const mine = registry.tables.filter((t) => t.source_type === source.type);
  const list = h("ul", {}, mine.map((t) => h("li", {}, h("strong", {}, t.id), t.source_table && t.source_table !== t.id ? ` (reads ${t.source_table})` : "")));
  const form = h("form", { class: "card", novalidate: true },
    h("h2", {}, `4. Name the tables ${source.type} provides`),
    h("p", {}, "The connector gets these rows on its standard input and writes one table for each."),
    mine.length ? h("div", {}, h("p", {}, "Registered:"), list) : null,
    field({ name: "name", label: "Table name", required: true, help: "Letters, digits and _; analysts query it by this name." }),
    field({ name: "source_table", label: "What the connector reads", help: "E.g. a file or endpoint name; the connector decides." }),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Add the table"),
      continueButton("Continue", () => { if (mine.length) { setHash(source.type, null); show(); } else replace(form.querySelector(".form-error"), notice("error", "Add at least one table first.")); }),
      h("button", { type: "button", onclick: () => { setHash(source.type, "3"); show(); } }, "Back")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { name: data.name.trim(), source_type: source.type };
    if (data.source_table.trim()) body.source_table = data.source_table.trim();
    try {
      await api("/api/admin/register-table", { method: "POST", body });
      announce(`${body.name} registered`);
      show();
    } catch (error) {
      showFieldError(form, error, ["source_table", "name"], () => "name");
    }
  });
  replace(stepBox, form);
  setHeadless(...tokenHelp(), h("p", {}, "Register a table of the connector:"),
    commandBlock(curl("POST", "/api/admin/register-table", { name: "accounts", source_type: source.type, source_table: "accounts" }), "Register"));
}

// ---- step 5: the first sync -----------------------------------------------------------------------

function runTable(run) {
  return h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
    h("caption", { class: "visually-hidden" }, "Progress per table"),
    h("thead", {}, h("tr", {}, ["Table", "State", "Rows", "Size", "Problem"].map((c, i) =>
      h("th", { scope: "col", class: i === 2 || i === 3 ? "num" : null }, c)))),
    h("tbody", {}, (run.tables || []).map((t) => h("tr", {},
      h("td", {}, h("strong", {}, t.table_id)), h("td", {}, stateBadge(t.state)),
      h("td", { class: "num" }, number(t.rows)), h("td", { class: "num" }, t.size_bytes === undefined ? "—" : bytes(t.size_bytes)),
      h("td", { class: "wrap" }, t.error || (t.note || "")))))));
}

function doneActions() {
  return h("div", { class: "actions" },
    h("a", { class: "button primary", href: "/dashboard" }, "Open the dashboard"),
    h("a", { class: "button", href: "/admin/users" }, "Invite analysts"),
    h("button", { type: "button", onclick: () => { setHash(null, "2"); show(true); } }, "Set up another source"));
}

async function stepSync(state, sourceType) {
  const ids = state.tables.filter((t) => t.source_type === sourceType).map((t) => t.id);
  const box = h("div", {});
  const card = h("div", { class: "card" },
    h("h2", {}, "5. First sync"),
    h("p", {}, `Agnes copies the ${ids.length} registered table${ids.length === 1 ? "" : "s"} of ${sourceType} into Parquet and publishes them.`),
    box);
  replace(stepBox, card);
  setHeadless(...tokenHelp(),
    h("p", {}, "Start a sync of these tables (or send no body for every registered table):"),
    commandBlock(curl("POST", "/api/sync/trigger", ids), "Trigger"),
    h("p", {}, "Follow it:"), commandBlock(curl("GET", "/api/sync/status/<run_id>"), "Status"));
  let running = (state.runs || []).slice().reverse().find((r) => r.state === "running" &&
    (r.tables || []).some((t) => ids.includes(t.table_id)));
  const watch = (runId) => {
    stopPolling();
    let lastState = "";
    stopPolling = poll(async () => {
      const run = await api(`/api/sync/status/${encodeURIComponent(runId)}`);
      const finished = run.state !== "running";
      const failed = (run.tables || []).filter((t) => t.state === "failed");
      replace(box,
        h("p", {}, "Run ", h("code", {}, run.run_id), " — ", stateBadge(run.state)),
        run.error ? errorNotice(new Error(run.error)) : null,
        runTable(run),
        finished ? (failed.length
          ? notice("warn", h("p", {}, `${failed.length} table${failed.length === 1 ? "" : "s"} failed; the sentence next to each says why. `,
              "Fix the cause and sync again from the Sync page, or continue now."),
            h("div", { class: "actions" }, h("button", { type: "button", onclick: () => start() }, "Sync again")))
          : notice("ok", h("p", {}, "Your data is ready."))) : null,
        finished ? doneActions() : h("p", { class: "muted" }, "Syncing… this page updates by itself."));
      if (run.state !== lastState) { announce(`Sync ${run.state}`); lastState = run.state; }
      if (finished) setHash(null, null);
      return finished;
    }, 1000);
  };
  const start = async () => {
    try {
      const answer = await api("/api/sync/trigger", { method: "POST", body: ids });
      watch(answer.run_id);
    } catch (error) {
      replace(box, errorNotice(error));
    }
  };
  if (running) {
    watch(running.run_id);
  } else if (state.step === "5") {
    replace(box, h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: start }, "Start the first sync")));
  } else {
    const last = (state.runs || []).slice().reverse().find((r) => (r.tables || []).some((t) => ids.includes(t.table_id)));
    if (last) watch(last.run_id);
    else replace(box, notice("ok", h("p", {}, "These tables have been synced.")), tableStates(state.tables), doneActions());
  }
}

function tableStates(tables) {
  return h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
    h("thead", {}, h("tr", {}, ["Table", "Source", "State", "Rows", "Size"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, tables.map((t) => h("tr", {}, h("td", {}, t.id || t.table_id), h("td", {}, t.source_type || t.source || ""),
      h("td", {}, stateBadge(t.state)), h("td", { class: "num" }, number(t.rows)), h("td", { class: "num" }, bytes(t.size_bytes)))))));
}

async function stepPublished(state, sourceType) {
  const catalog = await api("/api/catalog/tables");
  const tables = catalog.tables.filter((t) => t.source_type === sourceType);
  replace(stepBox, h("div", { class: "card" },
    h("h2", {}, sourceType === "demo" ? "Done: the demo tables are ready" : "5. Your tables are published"),
    h("p", {}, sourceType === "demo"
      ? "Analysts can query the demo tables now. Add real sources later on the Sources page."
      : "Uploaded files are published the moment they arrive: there is nothing to sync."),
    h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Table", "Rows", "Size", "Description"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, tables.map((t) => h("tr", {}, h("td", {}, h("a", { href: `/catalog/${encodeURIComponent(t.id)}` }, t.id)),
        h("td", { class: "num" }, number(t.rows)), h("td", { class: "num" }, bytes(t.size_bytes)), h("td", { class: "wrap" }, t.description || "")))))),
    doneActions()));
  setHeadless(...tokenHelp(), h("p", {}, "List what analysts can query:"), commandBlock(curl("GET", "/api/catalog/tables"), "Catalog"));
}

// ---- the wizard -----------------------------------------------------------------------------------

async function show(forceChoice) {
  stopPolling();
  const state = await loadState();
  const local = hashState();
  let step = state.step;
  let sourceType = state.source;
  if (state.setupMode) {
    showProgress("1");
    stepAdmin();
    focusStep();
    return;
  }
  if (!headerMounted) { // signed in by now (step 1 sets the cookie): the full header, with the way out
    headerMounted = true;
    mountHeader(null).catch(() => {});
  }
  // The server knows steps it can see; a choice made in this browser but not saved yet refines them.
  if (forceChoice || (local.step === "2")) step = "2";
  else if (step === "2" && local.source && local.source !== "demo") { step = local.step === "4" ? "4" : "3"; sourceType = local.source; }
  else if ((step === "4" || step === "5" || step === "done") && local.step === "3" && local.source) { step = "3"; sourceType = local.source; }
  else if (step === "done" && local.step === "4" && local.source) { step = "4"; sourceType = local.source; }
  else if (step === "4" && local.source && local.source !== sourceType && local.step) { step = local.step; sourceType = local.source; }
  showProgress(step === "done" ? "done" : step);
  const sources = step === "2" || step === "done" ? null : await loadSources();
  const source = sources ? sourceOf(sources, sourceType) : null;
  if (step === "2") await stepSource(state);
  else if (step === "3" && source && source.kind === "builtin") stepCredentials(state, source);
  else if (step === "3" && source && source.kind === "upload") stepFiles(state, source);
  else if (step === "3" && source && source.kind === "custom") stepConnector(state, source, sources);
  else if (step === "4" && source && source.kind === "builtin") await stepDiscover(state, source);
  else if (step === "4" && source && source.kind === "custom" && source.connector) await stepConnectorTables(state, source);
  else if (step === "4" && source && source.kind === "custom") stepConnector(state, source, sources);
  else if (step === "5" || (step === "done" && state.tables.length && sourceType !== "local" && sourceType !== "demo")) await stepSync(state, sourceType);
  else if (step === "done") await stepPublished(state, sourceType);
  else { setHash(null, null); await stepSource(state); showProgress("2"); }
  focusStep();
}

(async () => {
  const version = document.getElementById("version");
  fetch("/api/version").then((r) => r.json()).then((v) => { version.textContent = `${v.version} · ${v.channel}`; }).catch(() => {});
  try {
    await show();
  } catch (error) {
    if (!(error instanceof ApiError && (error.status === 401 || error.status === 403))) stepBox.append(errorNotice(error));
  }
})();
window.addEventListener("hashchange", () => show());
