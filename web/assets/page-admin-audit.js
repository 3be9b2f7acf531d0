// /admin/audit: the audit log, newest first: filter by action (server side), page through.
import { page, api, h, replace, ago, badge, dataTable, param, number } from "./app.js";

const content = document.getElementById("content");
const PAGE_SIZE = 50;

page("/admin/audit", async () => {
  const action = h("input", { type: "search", id: "action", placeholder: "e.g. auth. or table.register", value: param("action") || "" });
  const list = h("div", {});
  const pager = h("div", { class: "actions" });
  let offset = Number(param("offset")) || 0;
  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
    if (action.value.trim()) query.set("action", action.value.trim());
    history.replaceState(null, "", `?${query}`);
    const pageData = await api(`/api/admin/audit?${query}`);
    replace(list, dataTable([
      { label: "When", render: (e) => ago(e.timestamp) },
      { label: "Who", render: (e) => e.user_email || e.user_id || h("span", { class: "muted" }, "anonymous") },
      { label: "Action", render: (e) => h("code", {}, e.action) },
      { label: "Resource", wrap: true, key: "resource" },
      { label: "Result", render: (e) => badge(e.result || "", e.result === "ok" ? "ok" : e.result && e.result !== "ok" ? "warn" : "") },
      { label: "Details", wrap: true, render: (e) => (e.params ? (typeof e.params === "string" ? e.params : JSON.stringify(e.params)) : "") },
    ], pageData.items, { caption: "Audit log", empty: "No entries." }));
    const last = Math.min(offset + PAGE_SIZE, pageData.total);
    replace(pager,
      h("button", { type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE_SIZE); load(); } }, "Newer"),
      h("span", { "aria-live": "polite" }, pageData.total ? `${number(offset + 1)}–${number(last)} of ${number(pageData.total)}` : "0 entries"),
      h("button", { type: "button", disabled: last >= pageData.total, onclick: () => { offset += PAGE_SIZE; load(); } }, "Older"));
  };
  const form = h("form", { class: "toolbar", role: "search" },
    h("div", {}, h("label", { for: "action" }, "Action starts with"), action),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => { event.preventDefault(); offset = 0; load(); });
  replace(content, form, list, pager);
  await load();
});
