// /query: the SQL console.  CodeMirror 6 (npm, pinned) for the editor: SQL highlighting,
// Ctrl/Cmd+Enter to run, completion of the caller's table and column names.  Results from
// POST /api/query as a sortable grid; the full result as CSV or Parquet through the same endpoint's
// streamed formats; a chart (Chart.js, loaded when first asked for); history in this browser.
import { EditorState, Compartment, Prec } from "@codemirror/state";
import { EditorView, keymap, lineNumbers, highlightActiveLine, drawSelection, placeholder } from "@codemirror/view";
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { syntaxHighlighting, defaultHighlightStyle, bracketMatching, indentOnInput } from "@codemirror/language";
import { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap, closeCompletion } from "@codemirror/autocomplete";
import { sql, PostgreSQL } from "@codemirror/lang-sql";
import { page, api, ApiError, h, replace, clear, number, errorNotice, notice, announce, ago, param } from "./app.js";

const content = document.getElementById("content");
const HISTORY_MAX = 50;
const GRID_MAX_ROWS = 2000; // the grid shows this many; a download has them all
const language = new Compartment();
let view;
let historyKey = "agnes.query.history";
let lastResult = null;
let sortState = { column: -1, descending: false };

// ---- history (this browser only) --------------------------------------------------------------

function readHistory() {
  try { return JSON.parse(localStorage.getItem(historyKey) || "[]"); } catch { return []; }
}

function remember(entry) {
  const items = readHistory().filter((e) => e.sql !== entry.sql);
  items.unshift(entry);
  try { localStorage.setItem(historyKey, JSON.stringify(items.slice(0, HISTORY_MAX))); } catch { /* full or disabled */ }
  renderHistory();
}

function renderHistory() {
  const list = document.getElementById("history");
  if (!list) return;
  const items = readHistory();
  replace(list, items.length ? items.map((e) => h("li", {},
    h("button", { type: "button", title: e.sql, onclick: () => setSql(e.sql, true) }, e.sql.length > 80 ? `${e.sql.slice(0, 80)}…` : e.sql),
    h("div", { class: "hint" }, ago(e.at), e.ok ? ` · ${number(e.rows)} rows` : " · failed")))
    : h("li", { class: "empty" }, "Queries you run appear here."));
}

// ---- the editor --------------------------------------------------------------------------------

function setSql(text, focus) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
  if (focus) view.focus();
}

function insertAtCursor(text) {
  const { from, to } = view.state.selection.main;
  view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length } });
  view.focus();
}

function sqlLanguage(schema) {
  return sql({ dialect: PostgreSQL, schema, upperCaseKeywords: true });
}

// The editor lives in a shadow root: there CodeMirror's styles go into a constructed stylesheet,
// which the page's Content-Security-Policy (style-src 'self', no inline <style>) allows; in the
// document itself it would add a <style> element, which the policy refuses.
const editorTheme = EditorView.theme({
  "&": { fontSize: "14px", backgroundColor: "#fff", borderRadius: "6px" },
  ".cm-scroller": { fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace', minHeight: "9rem" },
  ".cm-content": { minHeight: "9rem" },
  "&.cm-focused": { outline: "3px solid #ffb000", outlineOffset: "2px" },
  ".cm-gutters": { backgroundColor: "#f3f3f5", color: "#6b6b75", borderRight: "1px solid #d6d6dc" },
});

// The nonce the server put in this response's Content-Security-Policy (style-src): CodeMirror sets it
// on any <style> element it must add (where a constructed stylesheet is not available), so the
// policy needs no 'unsafe-inline'.
const cspNonce = document.querySelector('meta[name="csp-nonce"]')?.content || "";

function createEditor(host, initial) {
  const root = host.attachShadow({ mode: "open" });
  view = new EditorView({
    parent: root,
    root,
    state: EditorState.create({
      doc: initial,
      extensions: [
        lineNumbers(), history(), drawSelection(), highlightActiveLine(), bracketMatching(), closeBrackets(), indentOnInput(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        autocompletion({ activateOnTyping: true }),
        placeholder("SELECT * FROM orders LIMIT 10"),
        Prec.highest(keymap.of([{ key: "Mod-Enter", run: () => { run(); return true; } }])),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...historyKeymap, ...completionKeymap]),
        language.of(sqlLanguage({})),
        EditorView.lineWrapping,
        editorTheme,
        EditorView.cspNonce.of(cspNonce),
        // ids do not reach into a shadow root, so the label is repeated here
        EditorView.contentAttributes.of({ "aria-label": "SQL query (Ctrl+Enter runs it, Tab leaves the editor)" }),
      ],
    }),
  });
}

// Table and column names for completion: the table list at once, columns as they arrive.
async function loadSchema(tables) {
  const schema = Object.fromEntries(tables.map((t) => [t.id, []]));
  view.dispatch({ effects: language.reconfigure(sqlLanguage(schema)) });
  const queue = tables.slice(0, 300);
  const worker = async () => {
    while (queue.length) {
      const t = queue.shift();
      try {
        const detail = await api(`/api/catalog/tables/${encodeURIComponent(t.id)}`);
        schema[t.id] = (detail.columns || []).map((c) => ({ label: c.name, type: "property", detail: c.type }));
      } catch { /* a table that vanished meanwhile */ }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  view.dispatch({ effects: language.reconfigure(sqlLanguage({ ...schema })) });
}

// ---- running -------------------------------------------------------------------------------------

function limitValue() {
  const n = Number(document.getElementById("limit").value);
  return Number.isInteger(n) && n > 0 ? n : 1000;
}

async function run() {
  const text = view.state.doc.toString().trim();
  const status = document.getElementById("result-status");
  const button = document.getElementById("run");
  if (!text) {
    replace(status, notice("error", "Write a query first."));
    return;
  }
  closeCompletion(view); // the popup would otherwise stay open over the result (Ctrl+Enter and the Run button alike)
  button.disabled = true;
  replace(status, h("p", { class: "muted" }, "Running…"));
  const started = performance.now();
  try {
    const result = await api("/api/query", { method: "POST", body: { sql: text, limit: limitValue() } });
    lastResult = { ...result, sql: text };
    sortState = { column: -1, descending: false };
    remember({ sql: text, at: new Date().toISOString(), ok: true, rows: result.row_count });
    showResult();
    announce(`${result.row_count} rows${result.truncated ? ", truncated" : ""}`);
  } catch (error) {
    lastResult = null;
    remember({ sql: text, at: new Date().toISOString(), ok: false });
    clear(document.getElementById("result"));
    document.getElementById("result-tools").hidden = true;
    replace(status, errorNotice(error));
    announce("The query failed");
  } finally {
    button.disabled = false;
    const took = Math.round(performance.now() - started);
    document.getElementById("run").title = `last run: ${took} ms in the browser`;
  }
}

function formatCell(value) {
  if (value === null || value === undefined) return "NULL";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1; // NULLs last, either way
  if (b === null || b === undefined) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  const x = Number(a), y = Number(b);
  if (a !== "" && b !== "" && !Number.isNaN(x) && !Number.isNaN(y)) return x - y;
  return String(a).localeCompare(String(b));
}

function sortedRows() {
  const rows = lastResult.rows.slice();
  const { column, descending } = sortState;
  if (column < 0) return rows;
  rows.sort((r1, r2) => {
    const null1 = r1[column] === null, null2 = r2[column] === null;
    if (null1 || null2) return null1 === null2 ? 0 : null1 ? 1 : -1;
    return descending ? compare(r2[column], r1[column]) : compare(r1[column], r2[column]);
  });
  return rows;
}

function showResult() {
  const r = lastResult;
  const status = document.getElementById("result-status");
  replace(status,
    h("div", { class: "result-meta" },
      h("strong", {}, `${number(r.row_count)} row${r.row_count === 1 ? "" : "s"}`),
      h("span", {}, `${r.columns.length} column${r.columns.length === 1 ? "" : "s"}`),
      h("span", {}, `${r.elapsed_ms !== undefined ? Number(r.elapsed_ms).toFixed(1) : "?"} ms on the server`)),
    r.truncated ? notice("warn", h("p", {}, `Truncated at ${number(r.row_count)} rows: the query returns more. `,
      "Raise the row limit, or download the full result below.")) : null,
    r.rows.length > GRID_MAX_ROWS ? notice("info", h("p", {}, `Showing the first ${number(GRID_MAX_ROWS)} rows here; the download has them all.`)) : null);
  document.getElementById("result-tools").hidden = false;
  renderGrid();
  if (!document.getElementById("panel-chart").hidden) drawChart();
  refreshChartControls();
}

function renderGrid() {
  const r = lastResult;
  const rows = sortedRows().slice(0, GRID_MAX_ROWS);
  const head = h("tr", {}, r.columns.map((name, i) => {
    const sorted = sortState.column === i;
    const label = `${name}${sorted ? (sortState.descending ? " ▼" : " ▲") : ""}`;
    return h("th", { scope: "col", "aria-sort": sorted ? (sortState.descending ? "descending" : "ascending") : "none" },
      h("button", { type: "button", class: "sort", title: `Sort by ${name}`, onclick: () => {
        sortState = { column: i, descending: sortState.column === i ? !sortState.descending : false };
        renderGrid();
        announce(`Sorted by ${name}, ${sortState.descending ? "descending" : "ascending"}`);
      } }, label),
      h("span", { class: "type" }, r.types ? r.types[i] : ""));
  }));
  const body = h("tbody", {}, rows.map((row) => h("tr", {}, row.map((v) => h("td", { class: v === null ? "null" : null, title: formatCell(v) }, formatCell(v))))));
  replace(document.getElementById("result"), r.columns.length
    ? h("div", { class: "table-wrap", tabindex: "0" }, h("table", { class: "grid-results" }, h("caption", { class: "visually-hidden" }, "Query result"),
        h("thead", {}, head), body))
    : h("p", { class: "empty" }, "The query returned no columns."));
}

// ---- downloads (the full result, streamed by the server) -----------------------------------------

async function download(format) {
  if (!lastResult) return;
  const status = document.getElementById("download-status");
  replace(status, h("span", { class: "muted" }, `Preparing the ${format.toUpperCase()}…`));
  try {
    // No row limit beyond the server's own: "the full result".
    const response = await api("/api/query", { method: "POST", raw: true, body: { sql: lastResult.sql, format, limit: 1000000000 } });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `query-result.${format}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    const truncated = response.headers.get("X-Agnes-Truncated") || response.headers.get("X-Truncated");
    replace(status, h("span", {}, `Downloaded ${format.toUpperCase()} (${blob.size.toLocaleString("en-US")} bytes).`,
      truncated ? ` The server cut it at ${truncated} rows.` : ""));
    announce(`${format.toUpperCase()} downloaded`);
  } catch (error) {
    replace(status, errorNotice(error, "The download failed"));
  }
}

// ---- chart ---------------------------------------------------------------------------------------

let chartModule;
function numericColumns() {
  const r = lastResult;
  return r.columns.map((c, i) => i).filter((i) => r.rows.some((row) => row[i] !== null) &&
    r.rows.every((row) => row[i] === null || typeof row[i] === "number" || (row[i] !== "" && !Number.isNaN(Number(row[i])))));
}

function refreshChartControls() {
  const r = lastResult;
  const x = document.getElementById("chart-x"), y = document.getElementById("chart-y");
  const numeric = numericColumns();
  const keepX = x.value, keepY = y.value;
  replace(x, r.columns.map((c, i) => h("option", { value: String(i) }, c)));
  replace(y, numeric.length ? numeric.map((i) => h("option", { value: String(i) }, r.columns[i])) : h("option", { value: "" }, "no numeric column"));
  if (keepX && Number(keepX) < r.columns.length) x.value = keepX;
  else x.value = "0";
  if (keepY && numeric.includes(Number(keepY))) y.value = keepY;
  else if (numeric.length) y.value = String(numeric.find((i) => i !== Number(x.value)) ?? numeric[0]);
}

async function drawChart() {
  const message = document.getElementById("chart-message");
  if (!lastResult) return;
  if (!chartModule) {
    replace(message, h("span", { class: "muted" }, "Loading the chart library…"));
    chartModule = await import("./query-chart.js");
  }
  const x = Number(document.getElementById("chart-x").value);
  const yValue = document.getElementById("chart-y").value;
  if (yValue === "") {
    replace(message, notice("warn", "The result has no numeric column to plot."));
    chartModule.clearChart();
    return;
  }
  clear(message);
  chartModule.drawChart(document.getElementById("chart-canvas"), {
    type: document.getElementById("chart-type").value,
    rows: sortedRows().slice(0, GRID_MAX_ROWS), x, y: Number(yValue), xLabel: lastResult.columns[x], yLabel: lastResult.columns[Number(yValue)],
  });
  document.getElementById("chart-canvas").setAttribute("aria-label",
    `${document.getElementById("chart-type").value} chart of ${lastResult.columns[Number(yValue)]} by ${lastResult.columns[x]}`);
}

function selectTab(name) {
  for (const tab of ["table", "chart"]) {
    const selected = tab === name;
    document.getElementById(`tab-${tab}`).setAttribute("aria-selected", String(selected));
    document.getElementById(`tab-${tab}`).tabIndex = selected ? 0 : -1;
    document.getElementById(`panel-${tab}`).hidden = !selected;
  }
  if (name === "chart") drawChart();
}

// ---- the page --------------------------------------------------------------------------------------

page("/query", async ({ me }) => {
  historyKey = `agnes.query.history.${me.email}`;
  const catalog = await api("/api/catalog/tables");
  const tableList = h("ul", { id: "table-list" }, catalog.tables.map((t) => h("li", {},
    h("button", { type: "button", title: `Insert ${t.id}`, onclick: () => insertAtCursor(t.id) }, t.id))));
  const editorBox = h("div", { class: "editor", id: "editor" });
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Result views" },
    h("button", { type: "button", role: "tab", id: "tab-table", "aria-controls": "panel-table", "aria-selected": "true", onclick: () => selectTab("table") }, "Table"),
    h("button", { type: "button", role: "tab", id: "tab-chart", "aria-controls": "panel-chart", "aria-selected": "false", tabindex: "-1", onclick: () => selectTab("chart") }, "Chart"));
  tablist.addEventListener("keydown", (event) => { // arrow keys move between tabs
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const next = document.getElementById("tab-table").getAttribute("aria-selected") === "true" ? "chart" : "table";
    selectTab(next);
    document.getElementById(`tab-${next}`).focus();
  });
  replace(content,
    h("div", { class: "query-layout" },
      h("div", {},
        h("div", { id: "sql-label", class: "label" }, "SQL"),
        h("p", { class: "hint", id: "sql-help" }, "One read-only SELECT over the tables you may see. ",
          h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "Enter"), " (", h("kbd", {}, "⌘"), "+", h("kbd", {}, "Enter"), " on a Mac) runs it; ",
          h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "Space"), " completes table and column names; ", h("kbd", {}, "Tab"), " leaves the editor."),
        editorBox,
        h("div", { class: "actions" },
          h("button", { type: "button", id: "run", class: "primary", onclick: run }, "Run"),
          h("label", { class: "inline", for: "limit" }, "Row limit", h("input", { type: "number", id: "limit", min: "1", value: "1000", class: "small-number" }))),
        h("div", { id: "result-status", "aria-live": "polite" }),
        h("div", { id: "result-tools", hidden: true },
          h("div", { class: "actions" },
            h("span", {}, "Download the full result:"),
            h("button", { type: "button", onclick: () => download("csv") }, "CSV"),
            h("button", { type: "button", onclick: () => download("parquet") }, "Parquet"),
            h("span", { id: "download-status", "aria-live": "polite" })),
          tablist,
          h("div", { id: "panel-table", role: "tabpanel", "aria-labelledby": "tab-table" }, h("div", { id: "result" })),
          h("div", { id: "panel-chart", role: "tabpanel", "aria-labelledby": "tab-chart", hidden: true },
            h("div", { class: "toolbar" },
              h("div", {}, h("label", { for: "chart-type" }, "Chart type"), h("select", { id: "chart-type" },
                h("option", { value: "bar" }, "Bar"), h("option", { value: "line" }, "Line"), h("option", { value: "scatter" }, "Scatter"))),
              h("div", {}, h("label", { for: "chart-x" }, "X axis"), h("select", { id: "chart-x" })),
              h("div", {}, h("label", { for: "chart-y" }, "Y axis"), h("select", { id: "chart-y" }))),
            h("div", { id: "chart-message" }),
            h("div", { class: "chart-box" }, h("canvas", { id: "chart-canvas", role: "img", "aria-label": "Chart of the result" }))))),
      h("aside", { class: "query-side", "aria-label": "Tables and history" },
        h("h2", {}, "Your tables"),
        catalog.tables.length ? tableList : h("p", { class: "empty" }, "No table is shared with you yet."),
        h("h2", {}, "History"),
        h("p", { class: "hint" }, "Kept in this browser only."),
        h("ul", { id: "history" }))));
  for (const id of ["chart-type", "chart-x", "chart-y"]) document.getElementById(id).addEventListener("change", drawChart);
  const first = catalog.tables[0];
  createEditor(editorBox, param("sql") || (readHistory()[0] || {}).sql || (first ? `SELECT * FROM ${first.id} LIMIT 10` : "SELECT 42 AS answer"));
  renderHistory();
  loadSchema(catalog.tables);
  if (param("sql") && param("run") !== "0") run();
});
