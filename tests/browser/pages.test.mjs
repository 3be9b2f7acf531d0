// The pages after setup, in a real browser: what an analyst sees (and does not), each admin page's
// main action, cross-site requests refused, accessibility (axe-core) and a 375 px wide screen.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  Agnes, launchBrowser, newPage, axeViolations, unexpectedProblems, withScreenshots, login, forgive, freePort,
} from "./harness.mjs";

const ANALYST = { email: "ana@example.com", password: "analyst password 1" };
let agnes, browser, admin, analyst, groupId;

before(async () => {
  agnes = await new Agnes({ AGNES_DEMO: "1" }).start(); // demo tables: customers, products, orders
  await agnes.bootstrap();
  await agnes.createUser(ANALYST.email, ANALYST.password);
  const group = await agnes.call("POST", "/api/admin/groups", { name: "Sales" });
  groupId = group.id;
  await agnes.call("POST", `/api/admin/groups/${group.id}/members`, { email: ANALYST.email });
  await agnes.call("POST", "/api/admin/grants", { group_id: group.id, resource_type: "table", resource_id: "orders" });
  // A value that would run as script if any page inserted API text as HTML.
  await agnes.call("POST", "/api/admin/register-table", { name: "notes", source_type: "postgres",
    description: '<img src=x onerror="document.title=\'pwned\'"><b>bold</b>' });
  browser = await launchBrowser();
  admin = await newPage(browser);
  await login(admin, agnes, agnes.admin.email, agnes.admin.password);
  analyst = await newPage(browser);
  await login(analyst, agnes, ANALYST.email, ANALYST.password);
});

after(async () => {
  await browser?.close();
  await agnes?.stop();
});

async function assertClean(page, what) {
  const violations = await axeViolations(page);
  assert.deepEqual(violations, [], `axe on ${what}: ${JSON.stringify(violations, null, 1)}`);
  assert.deepEqual(unexpectedProblems(page), [], `the browser reported problems on ${what}`);
}

// Open a page and wait until its script has put something in place of "Loading…".
async function open(page, path) {
  await page.goto(`${agnes.url}${path}`);
  await page.waitForFunction(() => !document.body.innerText.includes("Loading…"), null, { timeout: 20000 });
  await page.waitForLoadState("networkidle");
}

test("an analyst sees their granted table, and the others nowhere", async () => {
  await withScreenshots("analyst", () => [analyst], async () => {
    await open(analyst, "/dashboard");
    const dashboard = await analyst.locator("#content").innerText();
    assert.match(dashboard, /orders/);
    assert.doesNotMatch(dashboard, /customers|products|notes/);
    assert.match(dashboard, /You have not pulled yet/);
    // The server serves the CLI installer: the dashboard shows the command, not "Ask your admin".
    assert.doesNotMatch(dashboard, /Ask your admin/);
    assert.ok(dashboard.includes(`curl -fsS ${agnes.url}/cli/install.sh | sh`), dashboard);
    assert.equal(await analyst.locator("nav").getByRole("link", { name: "Users" }).count(), 0, "no admin links for an analyst");
    await assertClean(analyst, "the analyst's dashboard");

    await open(analyst, "/catalog");
    const catalog = await analyst.locator("#content table").innerText();
    assert.match(catalog, /orders/);
    assert.doesNotMatch(catalog, /customers|products/);
    await analyst.getByLabel("Search").fill("zzz");
    assert.match(await analyst.locator("#content").innerText(), /0 of 1 table/);
    await assertClean(analyst, "the analyst's catalog");

    await analyst.getByLabel("Search").fill("");
    await analyst.getByRole("link", { name: "orders" }).click();
    await analyst.getByRole("heading", { name: "orders" }).waitFor();
    await analyst.locator("table.grid-results").waitFor();
    const page = await analyst.locator("#content").innerText();
    assert.match(page, /agnes pull orders/);
    assert.match(page, /status\s+VARCHAR/);
    await assertClean(analyst, "a table's page");

    // A table not granted: no page either.
    analyst.expectedProblems.push(/status of 40[34]/);
    await open(analyst, "/catalog/customers");
    const refused = await analyst.locator("#content").innerText();
    assert.match(refused, /not found|access denied/i);
    assert.doesNotMatch(refused, /customer_id|city/, "nothing of the table shows");

    // The query console: table list and completion hold only what the analyst may read.
    await open(analyst, "/query");
    assert.deepEqual(await analyst.locator("#table-list li").allInnerTexts(), ["orders"]);
    await analyst.locator(".cm-content").click();
    await analyst.keyboard.press("Control+a");
    await analyst.keyboard.press("Delete");
    await analyst.keyboard.type("SELECT * FROM cu");
    await analyst.keyboard.press("Control+Space");
    const completions = await analyst.locator(".cm-tooltip-autocomplete li").allInnerTexts().catch(() => []);
    assert.ok(!completions.some((c) => /^customers/.test(c)), `customers offered for completion: ${completions}`);
    await analyst.keyboard.press("Escape");
    await analyst.keyboard.press("Control+a");
    await analyst.keyboard.press("Delete");
    await analyst.keyboard.type("SELECT status, count(*) AS n FROM or");
    await analyst.keyboard.press("Control+Space");
    await analyst.locator(".cm-tooltip-autocomplete").waitFor();
    assert.ok((await analyst.locator(".cm-tooltip-autocomplete li").allInnerTexts()).some((c) => /^orders/.test(c)),
      "the granted table is offered");
    await analyst.keyboard.press("Escape");
    await analyst.keyboard.type("ders GROUP BY status ORDER BY status");
    await analyst.keyboard.press("Control+Enter"); // runs without leaving the keyboard
    await analyst.locator("#result table").waitFor();
    const meta = await analyst.locator("#result-status").innerText();
    assert.match(meta, /3 rows/);
    assert.match(meta, /ms on the server/);
    assert.match(await analyst.locator("#result thead").innerText(), /status\s*VARCHAR[\s\S]*n\s*BIGINT/);

    // Run while the completion popup is open: the popup closes (it stayed over the result).
    await analyst.locator(".cm-content").click();
    await analyst.keyboard.press("Control+End");
    await analyst.keyboard.type(" -- or");
    await analyst.keyboard.press("Control+Space");
    await analyst.locator(".cm-tooltip-autocomplete").waitFor();
    await analyst.keyboard.press("Control+Enter"); // the editor keeps the focus, so only Run itself can close it
    await analyst.locator("#result-status").getByText(/3 rows/).waitFor();
    assert.equal(await analyst.locator(".cm-tooltip-autocomplete").count(), 0, "the completion popup closes on Run");

    // Client-side sort: by n, descending on the second press.
    await analyst.getByRole("button", { name: "n", exact: true }).click();
    await analyst.getByRole("button", { name: "n ▲" }).click();
    const firstN = Number(await analyst.locator("#result tbody tr:first-child td:nth-child(2)").innerText());
    const lastN = Number(await analyst.locator("#result tbody tr:last-child td:nth-child(2)").innerText());
    assert.ok(firstN >= lastN, `sorted descending: ${firstN} then ${lastN}`);

    // A chart of it.
    await analyst.getByRole("tab", { name: "Chart" }).click();
    await analyst.getByLabel("Chart type").selectOption("line");
    await analyst.waitForFunction(() => {
      const canvas = document.getElementById("chart-canvas");
      return canvas && canvas.width > 0 && canvas.getAttribute("aria-label").startsWith("line chart of n by status");
    });
    await assertClean(analyst, "the query console with a chart");

    // The full result as CSV, not just the rows on screen.
    await analyst.keyboard.press("Control+Home");
    await analyst.locator(".cm-content").click();
    await analyst.keyboard.press("Control+a");
    await analyst.keyboard.press("Delete");
    await analyst.keyboard.type("SELECT * FROM orders");
    await analyst.getByLabel("Row limit").fill("10");
    await analyst.getByRole("button", { name: "Run" }).click();
    await analyst.getByText("Truncated at 10 rows").waitFor();
    const [download] = await Promise.all([analyst.waitForEvent("download"), analyst.getByRole("button", { name: "CSV" }).click()]);
    const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
    assert.equal(csv.length, 5001, "header plus every one of the 5000 orders");
    assert.match(csv[0], /^order_id,customer_id/);

    // An ungranted table in SQL: the server's sentence, shown as an error.
    analyst.expectedProblems.push(/status of 403/);
    await analyst.locator(".cm-content").click();
    await analyst.keyboard.press("Control+a");
    await analyst.keyboard.press("Delete");
    await analyst.keyboard.type("SELECT * FROM customers");
    await analyst.keyboard.press("Control+Enter");
    await analyst.locator("#result-status .notice.error").waitFor();
    assert.match(await analyst.locator("#result-status").innerText(), /customers/);
    assert.match(await analyst.locator("#history").innerText(), /SELECT \* FROM customers[\s\S]*failed/, "history keeps failures too");

    // Admin pages are not for analysts.
    await analyst.goto(`${agnes.url}/admin/users`);
    assert.match(await analyst.locator("h1").innerText(), /for admins/);
  });
});

test("each admin page's main action", async () => {
  await withScreenshots("admin", () => [admin], async () => {
    // Users: create one, deactivate, then open their page and add them to a group.
    await open(admin, "/admin/users");
    await admin.getByLabel("Email").fill("bob@example.com");
    await admin.getByRole("textbox", { name: /^Password/ }).fill("bob password 123");
    await admin.getByRole("button", { name: "Add user" }).click();
    await admin.getByRole("link", { name: "bob@example.com" }).waitFor();
    await admin.getByRole("button", { name: "Deactivate bob@example.com" }).click();
    await admin.locator("tr", { hasText: "bob@example.com" }).getByText("deactivated").waitFor();
    await assertClean(admin, "/admin/users");
    await admin.getByRole("link", { name: "bob@example.com" }).click();
    await admin.getByRole("heading", { name: "bob@example.com" }).waitFor();
    await admin.getByLabel("Add to group").selectOption({ label: "Sales" });
    await admin.getByRole("button", { name: "Add", exact: true }).click();
    await admin.getByRole("button", { name: "Remove from Sales" }).waitFor();
    assert.match(await admin.locator("#content").innerText(), /orders/, "bob now sees orders through Sales");
    await assertClean(admin, "a user's page");

    // Access: a new group, a grant from the grid, "see what this user sees".
    await open(admin, "/admin/access");
    await admin.getByLabel("New group").fill("Finance");
    await admin.getByRole("button", { name: "Create group" }).click();
    await admin.getByRole("heading", { name: "Members of Finance" }).waitFor();
    await admin.getByRole("checkbox", { name: "Finance may read products" }).check();
    await admin.waitForFunction(() => document.querySelector('[aria-label="Finance may read products"]')?.checked && !document.querySelector('[aria-label="Finance may read products"]').disabled);
    const grants = await agnes.call("GET", "/api/admin/grants");
    assert.ok(grants.some((g) => g.group_name === "Finance" && g.resource_id === "products"), "the checkbox made the grant");
    await admin.getByLabel("User", { exact: true }).selectOption({ label: ANALYST.email });
    await admin.getByText(`${ANALYST.email} sees 1 table`).waitFor();
    await assertClean(admin, "/admin/access");

    // Tables: edit a registered table's schedule; upload a file as a table.
    await open(admin, "/admin/tables");
    assert.equal(await admin.title().then((t) => t.includes("pwned")), false);
    assert.equal(await admin.locator("img").count(), 0, "a description is text, never markup");
    assert.match(await admin.locator("#content").innerText(), /<img src=x onerror=/);
    await admin.getByRole("button", { name: "Edit notes" }).click();
    await admin.getByLabel("Schedule").first().fill("every 2h");
    await admin.getByRole("button", { name: "Save" }).click();
    await admin.locator("tr", { hasText: "notes" }).getByText("every 2h").waitFor();
    const registry = await agnes.call("GET", "/api/admin/registry");
    assert.equal(registry.tables.find((t) => t.id === "notes").sync_schedule, "every 2h");
    const dir = mkdtempSync(join(tmpdir(), "agnes-upload-"));
    writeFileSync(join(dir, "regions.csv"), "region,target\nnorth,10\nsouth,20\n");
    await admin.getByLabel("File").setInputFiles(join(dir, "regions.csv"));
    await admin.getByRole("button", { name: "Upload" }).click();
    await admin.getByText("regions created: 2 rows, 2 columns.").waitFor();
    await assertClean(admin, "/admin/tables");

    // Sync: a run of every table, with its per-table progress.
    admin.expectedProblems.push(/status of 404/);
    await open(admin, "/admin/sync");
    await admin.getByRole("button", { name: "Sync every table now" }).click();
    const run = admin.locator("section.card").first();
    await run.waitFor();
    await run.getByText(/notes/).waitFor();
    await admin.waitForFunction(() => !document.querySelector("section.card .badge.info"), null, { timeout: 30000 });
    assert.match(await run.innerText(), /notes\s+postgres\s+failed/, "a table whose source is not configured fails, saying why");
    await assertClean(admin, "/admin/sync");

    // Sources: what this build can connect to (Keboola's connector is built in).
    await open(admin, "/admin/sources");
    assert.match(await admin.locator("#content").innerText(), /Source type\s+PostgreSQL\s+Keboola/);
    await assertClean(admin, "/admin/sources");

    // Audit: filtered to logins.
    await open(admin, "/admin/audit");
    await admin.getByLabel("Action starts with").fill("auth.login");
    await admin.getByRole("button", { name: "Filter" }).click();
    await admin.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#content table tbody tr")];
      return rows.length > 0 && rows.every((r) => r.innerText.includes("auth.login"));
    });
    assert.match(new URL(admin.url()).search, /action=auth\.login/, "the filter is in the address, to share or reload");
    await assertClean(admin, "/admin/audit");

    // Tokens: create one (shown once, with the login line), then revoke it.
    await open(admin, "/tokens");
    await admin.getByLabel("Name").fill("laptop");
    await admin.getByLabel("Expires").selectOption("30");
    await admin.getByRole("button", { name: "Create token" }).click();
    const secret = await admin.locator("#new-token").innerText();
    assert.match(secret, /^eyJ/);
    assert.match(await admin.locator("#created").innerText(), new RegExp(`agnes login --server ${agnes.url} --token`));
    const me = await fetch(`${agnes.url}/api/me`, { headers: { Authorization: `Bearer ${secret}` } });
    assert.equal(me.status, 200, "the token shown works");
    admin.once("dialog", (d) => d.accept());
    await admin.getByRole("button", { name: "Revoke laptop" }).first().click();
    await admin.locator("tr", { hasText: "laptop" }).getByText("revoked").first().waitFor();
    const after = await fetch(`${agnes.url}/api/me`, { headers: { Authorization: `Bearer ${secret}` } });
    assert.equal(after.status, 401, "a revoked token stops working");
    await assertClean(admin, "/tokens");

    // The dashboard shows the failed sync as something to fix.
    await open(admin, "/dashboard");
    assert.match(await admin.locator("#content").innerText(), /Needs attention[\s\S]*notes failed to sync/);
    await assertClean(admin, "the admin dashboard");
  });
});

test("a cross-site form POST with the session cookie is refused", async () => {
  // Another origin on this machine (same site, so the SameSite=Lax cookie does travel), serving a
  // page whose form posts a JSON-looking body (enctype text/plain) to the user-creation endpoint.
  const port = await freePort();
  const target = `${agnes.url}/api/users`;
  const evil = createServer((req, res) => {
    res.setHeader("Content-Type", "text/html");
    res.end(`<!doctype html><title>win a prize</title><form method="post" action="${target}" enctype="text/plain">
      <input name='{"email":"mallory@example.com","password":"mallory password","x":"' value='"}'>
      <button>Claim</button></form>`);
  });
  await new Promise((r) => evil.listen(port, "127.0.0.1", r));
  const page = await newPage(browser);
  try {
    await withScreenshots("csrf", () => [page], async () => {
      await login(page, agnes, agnes.admin.email, agnes.admin.password);
      await page.goto(`http://127.0.0.1:${port}/`);
      const [response] = await Promise.all([page.waitForResponse(target), page.getByRole("button", { name: "Claim" }).click()]);
      assert.equal(response.status(), 403);
      assert.match(await response.text(), /Cross-site request refused/);
      const users = await agnes.call("GET", "/api/users");
      assert.ok(!users.some((u) => u.email === "mallory@example.com"), "the forged request created nothing");
      // The same browser, on this instance's own page, still works.
      forgive(page, /status of 403/);
      await open(page, "/admin/users");
      await page.getByLabel("Email").fill("carol@example.com");
      await page.getByRole("button", { name: "Add user" }).click();
      await page.getByRole("link", { name: "carol@example.com" }).waitFor();
    });
  } finally {
    await page.context().close();
    evil.close();
  }
});

test("every page: no serious or critical axe violation, usable at 375 px, the header on each", async () => {
  // A table page of a table that exists now: the upload above retired the demo (orders is gone).
  const { tables } = await agnes.call("GET", "/api/catalog/tables");
  assert.ok(tables.length > 0, "the catalog has a table to show");
  const pages = ["/dashboard", "/catalog", `/catalog/${tables[0].id}`, "/query", "/tokens", "/admin/sources",
    "/admin/tables", "/admin/sync", "/admin/users", "/admin/access", "/admin/audit", "/setup"];
  const users = await agnes.call("GET", "/api/users");
  pages.push(`/admin/users/${users[0].id}`);
  const narrow = await newPage(browser, { width: 375, height: 800 });
  await login(narrow, agnes, agnes.admin.email, agnes.admin.password);
  await withScreenshots("every-page", () => [narrow], async () => {
    for (const path of pages) {
      await open(narrow, path);
      await narrow.locator("#site-header", { hasText: agnes.admin.email }).waitFor();
      const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${path} is ${overflow}px wider than a 375px screen`);
      await assertClean(narrow, `${path} at 375px`);
    }
    // The menu opens with the keyboard on a narrow screen, and logging out ends the session.
    await narrow.getByRole("button", { name: "Menu" }).focus();
    await narrow.keyboard.press("Enter");
    assert.equal(await narrow.getByRole("button", { name: "Menu" }).getAttribute("aria-expanded"), "true");
    assert.ok(await narrow.getByRole("link", { name: "Catalog" }).isVisible());
    await narrow.getByRole("button", { name: "Log out" }).click();
    await narrow.waitForURL(/\/login$/);
    await narrow.goto(`${agnes.url}/query`);
    assert.equal(new URL(narrow.url()).pathname + new URL(narrow.url()).search, "/login?next=/query");
    await assertClean(narrow, "the login page");
  });
  await narrow.context().close();
});

test("the server stops cleanly after all this, with no sanitizer report in its log", async () => {
  await browser.close();
  await agnes.stopCleanly();
});
