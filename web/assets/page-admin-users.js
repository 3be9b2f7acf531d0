// /admin/users: every user; create one with a password; set a password; activate, deactivate,
// delete.  Each user's own page (/admin/users/{id}) has groups, effective access and tokens.
import { page, api, h, replace, ago, badge, errorNotice, notice, announce, commandBlock, curl } from "./app.js";
import { field, showFieldError } from "./sources-ui.js";

const content = document.getElementById("content");

async function setPassword(user, message) {
  const password = prompt(`New password for ${user.email} (at least 12 characters):`);
  if (password === null) return;
  try {
    await api(`/api/users/${encodeURIComponent(user.id)}/set-password`, { method: "POST", body: { password } });
    replace(message, notice("ok", h("p", {}, `Password of ${user.email} changed.`)));
    announce("Password changed");
  } catch (error) {
    replace(message, errorNotice(error));
  }
}

page("/admin/users", async ({ me }) => {
  const message = h("div", { "aria-live": "polite" });
  const list = h("div", {});
  const load = async () => {
    const users = await api("/api/users");
    const act = (user, path, verb) => async () => {
      try {
        await api(`/api/users/${encodeURIComponent(user.id)}/${path}`, { method: "POST" });
        announce(`${user.email} ${verb}`);
        await load();
      } catch (error) { replace(message, errorNotice(error)); }
    };
    replace(list, h("div", { class: "table-wrap", tabindex: "0" }, h("table", {},
      h("caption", { class: "visually-hidden" }, "Users"),
      h("thead", {}, h("tr", {}, ["User", "Groups", "State", "Created", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, users.map((u) => h("tr", {},
        h("td", {}, h("a", { href: `/admin/users/${encodeURIComponent(u.id)}` }, h("strong", {}, u.email)),
          u.name ? h("div", { class: "hint" }, u.name) : null),
        h("td", {}, (u.groups || []).map((g) => [badge(g.name, g.name === "Admin" ? "info" : ""), " "])),
        h("td", {}, u.active ? badge("active", "ok") : badge("deactivated", "warn")),
        h("td", {}, ago(u.created_at)),
        h("td", {}, h("div", { class: "actions" },
          h("button", { type: "button", class: "small", "aria-label": `Set password of ${u.email}`, onclick: () => setPassword(u, message) }, "Set password"),
          u.id === me.id ? null : u.active
            ? h("button", { type: "button", class: "small", "aria-label": `Deactivate ${u.email}`, onclick: act(u, "deactivate", "deactivated") }, "Deactivate")
            : h("button", { type: "button", class: "small", "aria-label": `Activate ${u.email}`, onclick: act(u, "activate", "activated") }, "Activate"),
          u.id === me.id ? null : h("button", { type: "button", class: "small danger", "aria-label": `Delete ${u.email}`, onclick: async () => {
            if (!confirm(`Delete ${u.email}? Their tokens stop working and their memberships go.`)) return;
            try {
              await api(`/api/users/${encodeURIComponent(u.id)}`, { method: "DELETE" });
              announce(`${u.email} deleted`);
              await load();
            } catch (error) { replace(message, errorNotice(error)); }
          } }, "Delete")))))))));
  };
  const form = h("form", { class: "card", novalidate: true },
    h("h2", {}, "Add a user"),
    field({ name: "email", label: "Email", input: "email", required: true, autocomplete: "off" }),
    field({ name: "name", label: "Name", autocomplete: "off" }),
    field({ name: "password", label: "Password", input: "password", autocomplete: "new-password",
      help: "At least 12 characters. Tell it to the person; they can then log in and create tokens." }),
    h("div", { class: "form-error" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add user")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { email: data.email.trim() };
    if (data.name.trim()) body.name = data.name.trim();
    if (data.password) body.password = data.password;
    try {
      const user = await api("/api/users", { method: "POST", body });
      form.reset();
      replace(form.querySelector(".form-error"), notice("ok", h("p", {}, `${user.email} added. `,
        h("a", { href: `/admin/users/${encodeURIComponent(user.id)}` }, "Give them access"), ".")));
      announce(`${user.email} added`);
      await load();
    } catch (error) {
      showFieldError(form, error, ["email", "password", "name"]);
    }
  });
  replace(content, message, list, form,
    h("details", { class: "headless" }, h("summary", {}, "From a terminal"),
      commandBlock(curl("POST", "/api/users", { email: "analyst@example.com", password: "at least 12 characters" }), "Create a user")));
  await load();
});
