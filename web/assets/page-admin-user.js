// /admin/users/{id}: one user: details, groups (add, remove), effective access, tokens (revoke).
import { page, api, h, replace, ago, badge, dataTable, errorNotice, notice, announce, pathId } from "./app.js";

const content = document.getElementById("content");

function viaGroups(item) {
  let groups = item.via_groups;
  if (typeof groups === "string") { try { groups = JSON.parse(groups); } catch { groups = []; } }
  return (groups || []).map((g) => g.group_name).join(", ");
}

page(null, async () => {
  const id = pathId();
  const message = h("div", { "aria-live": "polite" });
  const load = async () => {
    let user;
    try {
      user = await api(`/api/users/${encodeURIComponent(id)}`);
    } catch (error) {
      replace(content, errorNotice(error), h("p", {}, h("a", { href: "/admin/users" }, "Back to the users")));
      return;
    }
    const [groups, access, tokens, catalog] = await Promise.all([api("/api/admin/groups"),
      api(`/api/admin/users/${encodeURIComponent(id)}/effective-access`), api("/auth/admin/tokens"), api("/api/catalog/tables")]);
    document.getElementById("title").textContent = user.email;
    const memberOf = new Set((user.groups || []).map((g) => g.id));
    const addable = groups.filter((g) => !memberOf.has(g.id) && g.name !== "Everyone");
    const picker = h("select", { id: "add-group" }, addable.map((g) => h("option", { value: g.id }, g.name)));
    const visible = access.is_admin ? catalog.tables.map((t) => t.id)
      : access.items.filter((i) => i.resource_type === "table").map((i) => i.resource_id);
    replace(content, message,
      h("dl", { class: "kv" },
        h("dt", {}, "Name"), h("dd", {}, user.name || "—"),
        h("dt", {}, "State"), h("dd", {}, user.active ? badge("active", "ok") : badge("deactivated", "warn")),
        h("dt", {}, "Role"), h("dd", {}, user.is_admin ? "admin (sees every table)" : "analyst"),
        h("dt", {}, "Created"), h("dd", {}, ago(user.created_at))),
      h("h2", {}, "Groups"),
      dataTable([
        { label: "Group", render: (g) => g.name },
        { label: "How", render: (g) => g.origin || "" },
        { label: "", render: (g) => g.name === "Everyone" ? h("span", { class: "muted" }, "everyone is a member") : h("button", {
          type: "button", class: "small danger", "aria-label": `Remove from ${g.name}`, onclick: async () => {
            try {
              await api(`/api/admin/groups/${encodeURIComponent(g.id)}/members/${encodeURIComponent(user.id)}`, { method: "DELETE" });
              announce(`Removed from ${g.name}`);
              await load();
            } catch (error) { replace(message, errorNotice(error)); }
          } }, "Remove") },
      ], user.groups || []),
      addable.length ? h("div", { class: "form-row" },
        h("div", {}, h("label", { for: "add-group" }, "Add to group"), picker),
        h("button", { type: "button", onclick: async () => {
          try {
            await api(`/api/admin/groups/${encodeURIComponent(picker.value)}/members`, { method: "POST", body: { email: user.email } });
            announce("Added to the group");
            await load();
          } catch (error) { replace(message, errorNotice(error)); }
        } }, "Add")) : null,
      h("h2", {}, "What this user sees"),
      access.is_admin ? h("p", {}, "As an admin, every table.") : dataTable([
        { label: "Table", render: (i) => h("a", { href: `/catalog/${encodeURIComponent(i.resource_id)}` }, i.resource_id) },
        { label: "Through", render: viaGroups },
      ], access.items.filter((i) => i.resource_type === "table"), { empty: "No table: grant one of their groups a table on the Access page." }),
      h("p", { class: "hint" }, `${visible.length} table${visible.length === 1 ? "" : "s"} in the catalog for them.`),
      h("h2", {}, "Tokens"),
      dataTable([
        { label: "Name", key: "name" },
        { label: "Prefix", render: (t) => h("code", {}, t.prefix) },
        { label: "Last used", render: (t) => ago(t.last_used_at) },
        { label: "Expires", render: (t) => (t.expires_at ? ago(t.expires_at) : "never") },
        { label: "State", render: (t) => (t.revoked_at ? badge("revoked") : badge("active", "ok")) },
        { label: "", render: (t) => t.revoked_at ? null : h("button", { type: "button", class: "small danger", "aria-label": `Revoke ${t.name}`,
          onclick: async () => {
            if (!confirm(`Revoke ${t.name}?`)) return;
            try { await api(`/auth/admin/tokens/${encodeURIComponent(t.id)}`, { method: "DELETE" }); await load(); } catch (error) { replace(message, errorNotice(error)); }
          } }, "Revoke") },
      ], tokens.filter((t) => t.user_id === user.id), { empty: "No tokens." }));
  };
  await load();
});
