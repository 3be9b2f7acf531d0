// /admin/access: groups and their members, a table x group grid of grants (a checkbox per cell
// creates or removes the grant), and "see what this user sees".
import { page, api, h, replace, badge, dataTable, errorNotice, notice, announce } from "./app.js";

const content = document.getElementById("content");

page("/admin/access", async () => {
  const message = h("div", { "aria-live": "polite" });
  const groupsBox = h("div", {});
  const membersBox = h("div", {});
  const gridBox = h("div", {});
  const simulateBox = h("div", {});
  let selected = null;

  const load = async () => {
    const [groups, grants, catalog, users] = await Promise.all([api("/api/admin/groups"), api("/api/admin/grants"),
      api("/api/catalog/tables"), api("/api/users")]);
    if (!selected || !groups.some((g) => g.id === selected)) selected = (groups.find((g) => !g.is_system) || groups[0] || {}).id;
    replace(groupsBox, dataTable([
      { label: "Group", render: (g) => h("button", { type: "button", class: "small", "aria-pressed": String(g.id === selected),
        onclick: () => { selected = g.id; load(); } }, g.name) },
      { label: "Description", wrap: true, render: (g) => g.description || "" },
      { label: "Members", num: true, key: "member_count" },
      { label: "Grants", num: true, key: "grant_count" },
      { label: "", render: (g) => g.is_system ? badge("system") : h("button", { type: "button", class: "small danger",
        "aria-label": `Delete group ${g.name}`, onclick: async () => {
          if (!confirm(`Delete the group ${g.name} with its memberships and grants?`)) return;
          try { await api(`/api/admin/groups/${encodeURIComponent(g.id)}`, { method: "DELETE" }); announce(`${g.name} deleted`); await load(); }
          catch (error) { replace(message, errorNotice(error)); }
        } }, "Delete") },
    ], groups, { caption: "Groups" }));
    await showMembers(groups.find((g) => g.id === selected), users);
    showGrid(groups, grants, catalog.tables);
    showSimulate(users);
  };

  const showMembers = async (group, users) => {
    if (!group) { replace(membersBox); return; }
    const members = await api(`/api/admin/groups/${encodeURIComponent(group.id)}/members`);
    const candidates = users.filter((u) => !members.some((m) => m.user_id === u.id));
    const picker = h("select", { id: "add-member" }, candidates.map((u) => h("option", { value: u.email }, u.email)));
    replace(membersBox,
      h("h3", {}, `Members of ${group.name}`),
      group.name === "Everyone" ? h("p", { class: "hint" }, "Every user is a member of Everyone: a grant to it opens a table to all.") : null,
      dataTable([
        { label: "User", render: (m) => h("a", { href: `/admin/users/${encodeURIComponent(m.user_id)}` }, m.email) },
        { label: "Added", render: (m) => m.source || "" },
        { label: "", render: (m) => group.name === "Everyone" ? null : h("button", { type: "button", class: "small danger",
          "aria-label": `Remove ${m.email} from ${group.name}`, onclick: async () => {
            try {
              await api(`/api/admin/groups/${encodeURIComponent(group.id)}/members/${encodeURIComponent(m.user_id)}`, { method: "DELETE" });
              announce(`${m.email} removed`);
              await load();
            } catch (error) { replace(message, errorNotice(error)); }
          } }, "Remove") },
      ], members, { empty: "No members yet." }),
      group.name !== "Everyone" && candidates.length ? h("div", { class: "form-row" },
        h("div", {}, h("label", { for: "add-member" }, `Add to ${group.name}`), picker),
        h("button", { type: "button", onclick: async () => {
          try {
            await api(`/api/admin/groups/${encodeURIComponent(group.id)}/members`, { method: "POST", body: { email: picker.value } });
            announce(`${picker.value} added to ${group.name}`);
            await load();
          } catch (error) { replace(message, errorNotice(error)); }
        } }, "Add member")) : null);
  };

  const showGrid = (groups, grants, tables) => {
    const columns = groups.filter((g) => g.name !== "Admin"); // admins see everything anyway
    const grantOf = (group, table) => grants.find((g) => g.group_id === group.id && g.resource_type === "table" && g.resource_id === table.id);
    replace(gridBox, tables.length ? h("div", { class: "table-wrap", tabindex: "0" }, h("table", { class: "grid-check" },
      h("caption", {}, "Which group may read which table"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Table"), columns.map((g) => h("th", { scope: "col" }, g.name)))),
      h("tbody", {}, tables.map((t) => h("tr", {},
        h("th", { scope: "row" }, t.id),
        columns.map((g) => {
          const grant = grantOf(g, t);
          const box = h("input", { type: "checkbox", checked: Boolean(grant), "aria-label": `${g.name} may read ${t.id}` });
          box.addEventListener("change", async () => {
            box.disabled = true;
            try {
              if (box.checked) await api("/api/admin/grants", { method: "POST", body: { group_id: g.id, resource_type: "table", resource_id: t.id } });
              else await api(`/api/admin/grants/${encodeURIComponent(grant.id)}`, { method: "DELETE" });
              announce(`${g.name} ${box.checked ? "may now read" : "may no longer read"} ${t.id}`);
              await load();
            } catch (error) {
              box.checked = !box.checked;
              box.disabled = false;
              replace(message, errorNotice(error));
            }
          });
          return h("td", {}, box);
        })))))) : h("p", { class: "empty" }, "No tables yet."));
  };

  const showSimulate = (users) => {
    const picker = h("select", { id: "simulate-user" }, h("option", { value: "" }, "Choose a user"),
      users.map((u) => h("option", { value: u.id }, u.email)));
    const out = h("div", { "aria-live": "polite" });
    picker.addEventListener("change", async () => {
      if (!picker.value) { replace(out); return; }
      try {
        const access = await api(`/api/admin/users/${encodeURIComponent(picker.value)}/effective-access`);
        const user = users.find((u) => u.id === picker.value);
        const tables = access.items.filter((i) => i.resource_type === "table");
        replace(out, access.is_admin ? notice("info", h("p", {}, `${user.email} is an admin and sees every table.`))
          : tables.length ? h("div", {}, h("p", {}, `${user.email} sees ${tables.length} table${tables.length === 1 ? "" : "s"}:`),
              h("ul", {}, tables.map((i) => {
                let via = i.via_groups;
                if (typeof via === "string") { try { via = JSON.parse(via); } catch { via = []; } }
                return h("li", {}, h("strong", {}, i.resource_id), ` (through ${(via || []).map((g) => g.group_name).join(", ")})`);
              })))
          : notice("warn", h("p", {}, `${user.email} sees no table yet.`)));
      } catch (error) { replace(out, errorNotice(error)); }
    });
    replace(simulateBox, h("div", {}, h("label", { for: "simulate-user" }, "User"), picker), out);
  };

  const form = h("form", { class: "form-row" },
    h("div", {}, h("label", { for: "group-name" }, "New group"), h("input", { id: "group-name", name: "name", type: "text", required: true, placeholder: "Finance" })),
    h("div", {}, h("label", { for: "group-description" }, "Description"), h("input", { id: "group-description", name: "description", type: "text" })),
    h("button", { type: "submit" }, "Create group"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.elements.name.value.trim();
    const description = form.elements.description.value.trim();
    try {
      const group = await api("/api/admin/groups", { method: "POST", body: description ? { name, description } : { name } });
      selected = group.id;
      form.reset();
      announce(`Group ${name} created`);
      await load();
    } catch (error) { replace(message, errorNotice(error)); }
  });

  replace(content, message,
    h("div", { class: "two-col" },
      h("section", { "aria-labelledby": "groups-h" }, h("h2", { id: "groups-h" }, "Groups"), groupsBox, form),
      h("section", { "aria-labelledby": "members-h" }, h("h2", { id: "members-h" }, "Members"), membersBox)),
    h("h2", {}, "Grants"), gridBox,
    h("h2", {}, "See what a user sees"), simulateBox);
  await load();
});
