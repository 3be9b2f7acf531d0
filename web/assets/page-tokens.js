// /tokens: the caller's personal access tokens (create with an expiry, shown once with a copy
// button, revoke); admins also see and revoke everyone's.
import { page, api, h, replace, ago, badge, dataTable, errorNotice, notice, announce, copyButton, commandBlock } from "./app.js";

const content = document.getElementById("content");

function tokenState(t) {
  if (t.revoked_at) return badge("revoked", "");
  if (t.expires_at && Date.parse(t.expires_at) < Date.now()) return badge("expired", "warn");
  return badge("active", "ok");
}

function expiry(t) {
  return t.expires_at ? ago(t.expires_at) : h("span", { class: "muted" }, "never");
}

async function revoke(path, name, reload) {
  if (!confirm(`Revoke the token "${name}"? Whatever uses it stops working at once.`)) return;
  try {
    await api(path, { method: "DELETE" });
    announce(`Token ${name} revoked`);
    await reload();
  } catch (error) {
    alert(error.detail || String(error));
  }
}

page("/tokens", async ({ me }) => {
  const created = h("div", { id: "created", "aria-live": "polite" });
  const mine = h("div", {});
  const all = h("div", {});
  const form = h("form", { class: "card" },
    h("h2", {}, "Create a token"),
    h("label", { for: "token-name" }, "Name"),
    h("input", { id: "token-name", name: "name", type: "text", required: true, placeholder: "laptop CLI", "aria-describedby": "token-name-help" }),
    h("p", { class: "hint", id: "token-name-help" }, "Say where it will be used, so you know what to revoke later."),
    h("label", { for: "token-expiry" }, "Expires"),
    h("select", { id: "token-expiry", name: "expires_in_days" },
      [["7", "in 7 days"], ["30", "in 30 days"], ["90", "in 90 days"], ["180", "in 180 days"], ["365", "in a year"], ["never", "never"]]
        .map(([value, text]) => h("option", { value, selected: value === "90" }, text))),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create token")));
  const load = async () => {
    const tokens = await api("/auth/tokens");
    replace(mine, dataTable([
      { label: "Name", key: "name" },
      { label: "Prefix", render: (t) => h("code", {}, t.prefix) },
      { label: "State", render: tokenState },
      { label: "Created", render: (t) => ago(t.created_at) },
      { label: "Last used", render: (t) => ago(t.last_used_at) },
      { label: "Expires", render: expiry },
      { label: "", render: (t) => t.revoked_at ? null : h("button", { type: "button", class: "small danger",
        "aria-label": `Revoke ${t.name}`, onclick: () => revoke(`/auth/tokens/${encodeURIComponent(t.id)}`, t.name, load) }, "Revoke") },
    ], tokens, { caption: "Your tokens", empty: "You have no tokens yet." }));
    if (me.is_admin) {
      const everyone = await api("/auth/admin/tokens");
      replace(all, h("h2", {}, "Everyone's tokens (admin)"), dataTable([
        { label: "User", render: (t) => t.user_email || t.user_id },
        { label: "Name", key: "name" },
        { label: "Prefix", render: (t) => h("code", {}, t.prefix) },
        { label: "State", render: tokenState },
        { label: "Last used", render: (t) => ago(t.last_used_at) },
        { label: "Expires", render: expiry },
        { label: "", render: (t) => t.revoked_at ? null : h("button", { type: "button", class: "small danger",
          "aria-label": `Revoke ${t.name} of ${t.user_email || t.user_id}`,
          onclick: () => revoke(`/auth/admin/tokens/${encodeURIComponent(t.id)}`, t.name, load) }, "Revoke") },
      ], everyone, { caption: "Every token", empty: "Nobody has a token yet." }));
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const days = form.elements.expires_in_days.value;
    if (!name) {
      replace(form.querySelector(".form-error"), notice("error", "Give the token a name."));
      form.elements.name.focus();
      return;
    }
    try {
      const token = await api("/auth/tokens", { method: "POST", body: { name, expires_in_days: days === "never" ? null : Number(days) } });
      replace(form.querySelector(".form-error"));
      form.reset();
      replace(created, notice("ok",
        h("p", {}, h("strong", {}, `Token "${token.name}" created. `), "Copy it now: it is not shown again."),
        h("div", { class: "secret", id: "new-token", tabindex: "0", "aria-label": "The new token" }, token.token),
        h("div", { class: "actions" }, copyButton(token.token, "Copy token")),
        h("p", {}, "Use it with the command line:"),
        commandBlock(`agnes login --server ${location.origin} --token ${token.token}`, "Login command")));
      document.getElementById("new-token").focus();
      await load();
    } catch (error) {
      replace(form.querySelector(".form-error"), errorNotice(error));
    }
  });
  replace(content, form, created, h("h2", {}, "Your tokens"), mine, all);
  await load();
});
