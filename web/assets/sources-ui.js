// Forms shared by the setup wizard and /admin/sources: a source's credentials (tested by
// POST /api/admin/configure before anything is saved) and the discovered-tables checklist.
import { api, ApiError, h, replace, errorNotice, notice, announce, number, bytes, commandBlock, curl } from "./app.js";

// Put an API error next to the field it is about (its name appears in the sentence), else on top.
export function showFieldError(form, error, fields, guess) {
  form.querySelectorAll(".field-error").forEach((el) => el.remove());
  form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  const detail = error instanceof ApiError ? error.detail : String(error.message || error);
  const field = fields.find((name) => detail.includes(`'${name}'`) || detail.includes(`"${name}"`) || detail.includes(name)) ||
    (guess ? guess(detail) : null);
  const input = field && form.querySelector(`[name="${field}"]`);
  if (!input) {
    const box = form.querySelector(".form-error");
    replace(box, errorNotice(error));
    box.querySelector(".notice").focus?.();
    return;
  }
  const id = `${input.id}-error`;
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", id);
  input.insertAdjacentElement("afterend", h("p", { class: "field-error", id, role: "alert" }, detail,
    error.hint ? ` ${error.hint}` : ""));
  input.focus();
}

// Which PostgreSQL field a connection failure is about, from libpq's own words (the advice the
// server adds after them names every field, so it is not looked at).
export function guessPostgresField(detail) {
  const text = detail.toLowerCase().split("nothing was saved")[0];
  if (/database "[^"]*" does not exist/.test(text)) return "postgres_database";
  if (/role "[^"]*" does not exist/.test(text)) return "postgres_user";
  if (text.includes("password")) return "postgres_password";
  if (text.includes("sslmode") || text.includes("ssl")) return "postgres_sslmode";
  if (text.includes("port")) return /connection refused|timeout/.test(text) ? "postgres_port" : "postgres_host";
  if (text.includes("host") || text.includes("could not translate") || text.includes("private")) return "postgres_host";
  return null;
}

export function field({ name, label, input = "text", placeholder, help, required, autocomplete, value }) {
  const id = `f-${name}`;
  const helpId = help ? `${id}-help` : null;
  return h("div", {},
    h("label", { for: id }, label, required ? "" : h("span", { class: "muted" }, " (optional)")),
    h("input", { id, name, type: input === "url" ? "url" : input, placeholder, required: Boolean(required), autocomplete,
      value: value ?? null, "aria-describedby": helpId, spellcheck: "false" }),
    help ? h("p", { class: "hint", id: helpId }, help) : null);
}


// The credentials form of a built-in source.  onSaved(answer) after a successful test-and-save;
// onHeadless(nodes) gets the equivalent curl command as the fields change.
export function credentialsForm({ source, configured = {}, title, extraActions = [], onSaved, onHeadless }) {
  const already = configured.explicit && configured.type === source.type && configured.secret_set;
  const values = already ? configured.settings || {} : {};
  const prefill = { postgres_host: values.host, postgres_port: values.port, postgres_database: values.database,
    postgres_user: values.user, postgres_sslmode: values.sslmode };
  const form = h("form", { class: "card", novalidate: true },
    h("h2", {}, title || `Connect to ${source.label}`),
    already ? notice("ok", h("p", {}, `${source.label} is configured and its credentials were tested. `,
      "Change them below, or carry on.")) : h("p", {}, "The credentials are tested before anything is saved."),
    source.fields.map((f) => field({ ...f, value: prefill[f.name] })),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Test and save"), extraActions));
  const body = () => {
    const data = { data_source: source.type };
    for (const [key, value] of new FormData(form)) {
      if (String(value).trim() === "") continue;
      const spec = source.fields.find((f) => f.name === key);
      data[key] = spec && spec.input === "number" ? Number(value) : String(value).trim();
    }
    return data;
  };
  const updateHeadless = () => {
    if (!onHeadless) return;
    const shown = body();
    for (const f of source.fields) if (f.input === "password" && shown[f.name]) shown[f.name] = "<secret>";
    onHeadless([h("p", {}, "Test and save the same credentials (nothing is saved if the test fails):"),
      commandBlock(curl("POST", "/api/admin/configure", shown), "Configure command")]);
  };
  form.addEventListener("input", updateHeadless);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    button.textContent = "Testing…";
    try {
      const answer = await api("/api/admin/configure", { method: "POST", body: body() });
      announce(`${source.label} connected and saved`);
      const verified = answer.verified || {};
      replace(form.querySelector(".form-error"), notice("ok",
        h("p", {}, `Connected${verified.server_version ? ` to ${source.label} ${verified.server_version}` : ""}; saved.`)));
      await onSaved(answer);
    } catch (error) {
      showFieldError(form, error, source.fields.map((f) => f.name), source.type === "postgres" ? guessPostgresField : null);
    } finally {
      button.disabled = false;
      button.textContent = "Test and save";
    }
  });
  updateHeadless();
  return form;
}

// Register rows [{id, bucket, source_table, mode}] of sourceType one by one; progress(ok, failed).
export async function registerTables(rows, sourceType, progress) {
  const failures = [];
  let done = 0;
  for (const row of rows) {
    const body = { name: row.id, source_type: sourceType, query_mode: row.mode };
    if (row.bucket) body.bucket = row.bucket;
    if (row.source_table) body.source_table = row.source_table;
    try {
      await api("/api/admin/register-table", { method: "POST", body });
      done++;
    } catch (error) {
      failures.push({ row, error });
    }
    progress(done, failures.length);
  }
  return failures;
}

// The configured source's tables as a checklist; registers the chosen ones, then onDone(count).
// Resolves to the element (a card with the error when listing failed).
export async function discoverForm({ source, title, submitLabel = "Register the selected tables", extraActions = [], onDone, onHeadless, onRetry }) {
  let listing;
  try {
    listing = await api("/api/admin/discover-tables");
  } catch (error) {
    return h("div", { class: "card" }, h("h2", {}, title), errorNotice(error),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: onRetry }, "Try again"), extraActions));
  }
  const rows = listing.tables;
  const entries = [];
  const body = h("tbody", {}, rows.map((t, i) => {
    const id = `t-${i}`;
    const registered = Boolean(t.registered_as);
    const box = h("input", { type: "checkbox", id, checked: registered || !t.conflict, disabled: registered || Boolean(t.conflict),
      "aria-describedby": t.conflict ? `${id}-conflict` : null });
    const mode = h("select", { "aria-label": `Query mode of ${t.id}`, disabled: registered },
      h("option", { value: "local", selected: t.suggested_query_mode === "local" }, "local (copy)"),
      source.can_remote ? h("option", { value: "remote", selected: t.suggested_query_mode === "remote" }, "remote (query at the source)") : null);
    entries.push({ box, mode, t, registered });
    return h("tr", {},
      h("td", {}, box),
      h("td", {}, h("label", { for: id, class: "inline" }, h("strong", {}, t.id)),
        registered ? h("span", {}, " ", h("span", { class: "badge ok" }, "registered")) : null,
        t.conflict ? h("p", { class: "field-error", id: `${id}-conflict` }, t.conflict) : null),
      h("td", { class: "wrap" }, `${t.bucket}.${t.source_table}`, t.kind && t.kind !== "table" ? ` (${t.kind})` : ""),
      h("td", { class: "num" }, t.rows_estimate ? `≈ ${number(t.rows_estimate)}` : "—"),
      h("td", { class: "num" }, t.size_bytes === null || t.size_bytes === undefined ? "—" : bytes(t.size_bytes)),
      h("td", {}, mode, h("div", { class: "hint" }, t.suggestion)));
  }));
  const count = h("span", { class: "muted", "aria-live": "polite" });
  const updateCount = () => {
    const n = entries.filter((e) => e.box.checked && !e.registered).length;
    count.textContent = `${n} new table${n === 1 ? "" : "s"} selected`;
  };
  body.addEventListener("change", updateCount);
  const setAll = (value) => { entries.forEach((e) => { if (!e.box.disabled) e.box.checked = value; }); updateCount(); };
  const status = h("div", {});
  const form = h("form", { class: "card" },
    h("h2", {}, title),
    h("p", {}, `${source.label} lists ${rows.length} table${rows.length === 1 ? "" : "s"} this account can read. `,
      "Row counts are the database's estimates."),
    rows.length ? h("div", { class: "actions" },
      h("button", { type: "button", class: "small", onclick: () => setAll(true) }, "Select all"),
      h("button", { type: "button", class: "small", onclick: () => setAll(false) }, "Select none"), count) : null,
    rows.length ? h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
      h("caption", { class: "visually-hidden" }, "Tables found at the source"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Share")),
        h("th", { scope: "col" }, "Table"), h("th", { scope: "col" }, "At the source"), h("th", { scope: "col", class: "num" }, "Rows"),
        h("th", { scope: "col", class: "num" }, "Size"), h("th", { scope: "col" }, "Query mode"))),
      body)) : notice("warn", h("p", {}, "The source lists no table this account may read. Grant it SELECT on the tables to share, then try again.")),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", disabled: !rows.length }, submitLabel), extraActions));
  updateCount();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = entries.filter((e) => e.box.checked && !e.registered);
    if (!chosen.length && !entries.some((e) => e.registered)) {
      replace(status, notice("error", "Select at least one table."));
      return;
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const failures = await registerTables(chosen.map((e) => ({ id: e.t.id, bucket: e.t.bucket, source_table: e.t.source_table, mode: e.mode.value })),
      source.type, (ok, failed) => replace(status, notice("info", `Registered ${ok} of ${chosen.length}${failed ? `, ${failed} failed` : ""}…`)));
    button.disabled = false;
    if (failures.length) {
      replace(status, h("div", {}, failures.map((f) => errorNotice(f.error, f.row.id))));
      return;
    }
    announce(`${chosen.length} table${chosen.length === 1 ? "" : "s"} registered`);
    await onDone(chosen.length);
  });
  if (onHeadless) onHeadless([
    h("p", {}, "See the tables the source lists:"), commandBlock(curl("GET", "/api/admin/discover-tables"), "Discover"),
    h("p", {}, "Register every table it lists:"), commandBlock(curl("POST", "/api/admin/discover-and-register"), "Register all"),
    h("p", {}, "Or register one table:"),
    commandBlock(curl("POST", "/api/admin/register-table", { name: rows[0] ? rows[0].id : "orders", source_type: source.type,
      bucket: rows[0] ? rows[0].bucket : "public", source_table: rows[0] ? rows[0].source_table : "orders", query_mode: "local" }), "Register one")]);
  return form;
}
