// What every Agnes page shares: the API client, a DOM builder, the header, formatting.
//
// Rule of these pages: a value from the API is only ever inserted as text (h() makes text nodes,
// never parses HTML).  The Content-Security-Policy enforces it: it forbids inline script and turns
// on Trusted Types, so an innerHTML assignment would throw.

export class ApiError extends Error {
  constructor(status, detail, hint, body) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail || `The server answered HTTP ${status}.`;
    this.hint = hint || "";
    this.body = body;
  }
}

// Call the JSON API with the session cookie.  Resolves to the parsed body (or the Response when
// options.raw); rejects with ApiError {status, detail, hint}.  A 401 sends the browser to the
// login page, coming back here afterwards.
export async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (options.body instanceof FormData) {
    init.body = options.body;
  } else if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (options.signal) init.signal = options.signal;
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "The server cannot be reached.", "Check that Agnes is running and your network connection.");
  }
  if (response.status === 401 && !options.noRedirect) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, "Your session has ended; sign in again.");
  }
  if (response.status === 503 && !options.noRedirect) {
    const body = await response.clone().json().catch(() => null);
    if (body && body.setup_required) {
      location.assign("/setup");
      throw new ApiError(503, body.detail);
    }
  }
  if (options.raw && response.ok) return response;
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail
      : body && body.detail ? JSON.stringify(body.detail) : text.slice(0, 300);
    throw new ApiError(response.status, detail, body && body.hint, body);
  }
  return body;
}

// h("a", {href, class, onclick}, "text", child, ...): an element.  Strings and numbers become
// text nodes; null/false children are skipped; arrays are flattened.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "for") el.htmlFor = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value") el.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected" || key === "hidden" || key === "required") el[key] = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

// ---- formatting -----------------------------------------------------------------------------

const numberFormat = new Intl.NumberFormat("en-US");
export function number(n) {
  return n === null || n === undefined ? "—" : numberFormat.format(n);
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = Number(n), unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function parseTime(text) {
  if (!text) return null;
  const t = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z");
  return Number.isNaN(t) ? null : new Date(t);
}

// "3 minutes ago" plus the exact UTC time as the tooltip.
export function ago(text) {
  const when = parseTime(text);
  if (!when) return h("span", { class: "muted" }, "never");
  const seconds = Math.round((Date.now() - when.getTime()) / 1000);
  const abs = Math.abs(seconds);
  const [value, unit] = abs < 60 ? [abs, "second"] : abs < 3600 ? [Math.round(abs / 60), "minute"]
    : abs < 86400 ? [Math.round(abs / 3600), "hour"] : [Math.round(abs / 86400), "day"];
  const words = abs < 10 ? "just now" : `${value} ${unit}${value === 1 ? "" : "s"} ${seconds >= 0 ? "ago" : "from now"}`;
  return h("time", { datetime: when.toISOString(), title: when.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") }, words);
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

export function stateBadge(state) {
  const kinds = { ok: "ok", done: "ok", synced: "ok", error: "bad", failed: "bad", partial: "warn", running: "info",
    queued: "info", joined: "info", skipped: "", degraded: "warn", unhealthy: "bad" };
  return badge(state || "unknown", kinds[state] || "");
}

// ---- messages -------------------------------------------------------------------------------

// An error from the API as a notice: its sentence and its hint.
export function errorNotice(error, prefix) {
  const detail = error instanceof ApiError ? error.detail : String(error && error.message ? error.message : error);
  return h("div", { class: "notice error", role: "alert" },
    h("p", {}, prefix ? `${prefix}: ${detail}` : detail),
    error && error.hint ? h("p", { class: "hint" }, error.hint) : null);
}

export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

let liveRegion;
// Say something to screen readers (and show it briefly for everyone).
export function announce(message) {
  if (!liveRegion) {
    liveRegion = h("div", { class: "visually-hidden", role: "status", "aria-live": "polite" });
    document.body.append(liveRegion);
  }
  liveRegion.textContent = "";
  setTimeout(() => { liveRegion.textContent = message; }, 50);
}

export function copyButton(getText, label = "Copy") {
  const button = h("button", { type: "button", class: "small" }, label);
  button.addEventListener("click", async () => {
    const text = typeof getText === "function" ? getText() : getText;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
      announce("Copied to the clipboard");
    } catch {
      // No clipboard permission (plain http on another host): select the text for a manual copy.
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  });
  return button;
}

// A shell command shown with a copy button.
export function commandBlock(text, label) {
  return h("div", {},
    h("pre", { tabindex: "0", "aria-label": label || "Command" }, h("code", {}, text)),
    h("div", { class: "copy-row" }, copyButton(text, "Copy command")));
}

// Quote a string for a POSIX shell, single-quoted.
export function shellQuote(text) {
  return `'${String(text).replace(/'/g, "'\\''")}'`;
}

// The curl command for one API call against this instance, as an agent would type it.
export function curl(method, path, body, { token = true, form } = {}) {
  const parts = [`curl -sS${method === "GET" ? "" : ` -X ${method}`} ${location.origin}${path}`];
  if (token) parts.push(`-H "Authorization: Bearer $TOKEN"`);
  if (body !== undefined) parts.push(`-H 'Content-Type: application/json'`, `-d ${shellQuote(JSON.stringify(body))}`);
  if (form) parts.push(form);
  return parts.join(" \\\n  ");
}

// ---- the header every page has ----------------------------------------------------------------

const NAV_USER = [
  ["/dashboard", "Dashboard"], ["/catalog", "Catalog"], ["/query", "Query"], ["/tokens", "Tokens"],
];
const NAV_ADMIN = [
  ["/admin/sources", "Sources"], ["/admin/tables", "Tables"], ["/admin/sync", "Sync"], ["/admin/users", "Users"],
  ["/admin/access", "Access"], ["/admin/audit", "Audit"],
];

let session;
// The caller and the instance: {me, instance}.  Cached for the page.
export async function whoami() {
  if (!session) session = Promise.all([api("/api/me"), api("/api/instance")]).then(([me, instance]) => ({ me, instance }));
  return session;
}

export async function logout() {
  try { await api("/auth/logout", { method: "POST", noRedirect: true }); } catch { /* the cookie is cleared anyway */ }
  location.assign("/login");
}

// Fill <header id="site-header"> and return {me, instance}.  `current` is the path whose link is
// marked as the current page.
export async function mountHeader(current) {
  const header = document.getElementById("site-header");
  const { me, instance } = await whoami();
  const link = ([href, text]) => h("li", {}, h("a", { href, "aria-current": href === current ? "page" : null }, text));
  const nav = h("nav", { id: "site-nav", "aria-label": "Pages" },
    h("ul", {}, NAV_USER.map(link),
      me.is_admin ? [h("li", { class: "group-label", "aria-hidden": "true" }, "Admin"), NAV_ADMIN.map(link)] : []));
  const toggle = h("button", { type: "button", class: "menu-toggle small", "aria-expanded": "false", "aria-controls": "site-nav" }, "Menu");
  toggle.addEventListener("click", () => {
    const open = nav.classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });
  replace(header,
    h("div", { class: "bar" },
      h("a", { class: "brand", href: "/dashboard" }, instance.name || "Agnes"),
      h("span", { class: "version", title: "version and release channel" }, `${instance.version} · ${instance.channel}`),
      toggle,
      nav,
      h("div", { class: "who" },
        h("span", { title: me.is_admin ? "admin" : "user" }, me.email, me.is_admin ? " (admin)" : ""),
        h("button", { type: "button", class: "small", onclick: logout }, "Log out"))));
  document.title = `${document.title.split(" · ")[0]} · ${instance.name || "Agnes"}`;
  return { me, instance };
}

// Run a page: mount the header, then its body; an error while loading shows as a notice.
export async function page(current, body) {
  const main = document.getElementById("main");
  try {
    const context = await mountHeader(current);
    await body(context, main);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 503)) return; // redirected
    main.append(errorNotice(error, "This page could not load"));
    console.error(error);
  }
}

// A sortable table: columns [{key, label, num, render(row) -> node|text}], rows [...].
export function dataTable(columns, rows, { caption, empty = "Nothing here yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap", tabindex: "0" },
    h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => {
        const value = c.render ? c.render(row) : row[c.key];
        return h("td", { class: [c.num ? "num" : "", c.wrap ? "wrap" : ""].join(" ").trim() || null },
          value === null || value === undefined ? "—" : value);
      }))))));
}

// The value of a query-string parameter of this page.
export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

// The {id} at the end of this page's path (/catalog/{id}, /admin/users/{id}).
export function pathId() {
  return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
}

// Poll fn every `ms` until it returns true (or the page is left).
export function poll(fn, ms = 1000) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    let finished = false;
    try { finished = await fn(); } catch (e) { console.error(e); }
    if (!finished && !stopped) setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; };
}
