// The first ten minutes, in a real browser: a fresh instance, a real PostgreSQL, nothing but the
// pages from `/` to the dashboard (SPEC §11, issue 14 "Done when").
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Agnes, Postgres, launchBrowser, newPage, axeViolations, unexpectedProblems, withScreenshots, forgive } from "./harness.mjs";

let pg, agnes, browser, page;

before(async () => {
  pg = await new Postgres().start();
  pg.sql(`CREATE TABLE public.orders (id int PRIMARY KEY, customer text, amount numeric(10,2), placed date);
          INSERT INTO public.orders SELECT g, 'customer ' || (g % 7), g * 1.5, DATE '2026-01-01' + g FROM generate_series(1, 250) g;
          CREATE TABLE public.customers (id int, name text);
          INSERT INTO public.customers SELECT g, 'name ' || g FROM generate_series(1, 7) g;
          CREATE SCHEMA sales; CREATE TABLE sales.targets (region text, target int);
          INSERT INTO sales.targets VALUES ('north', 10), ('south', 20);
          ANALYZE;`);
  agnes = await new Agnes().start(); // a fresh instance: no admin, no demo
  browser = await launchBrowser();
  page = await newPage(browser);
});

after(async () => {
  await browser?.close();
  await agnes?.stop();
  pg?.stop();
});

const check = async (what) => {
  const violations = await axeViolations(page);
  assert.deepEqual(violations, [], `axe on ${what}: ${JSON.stringify(violations, null, 1)}`);
  const problems = unexpectedProblems(page);
  assert.deepEqual(problems, [], `the browser reported problems on ${what}`);
};

test("the whole wizard, from / to the dashboard, with a real PostgreSQL source", async () => {
  await withScreenshots("wizard", () => [page], async () => {
    // In setup mode the wizard learns "no admin yet" from the API's 503: expected, once per load.
    page.expectedProblems.push(/status of 503/);
    await page.goto(`${agnes.url}/`);
    assert.equal(new URL(page.url()).pathname, "/setup", "a fresh instance sends / to the wizard");
    await page.getByRole("heading", { name: "1. Create the admin account" }).waitFor();
    await check("step 1");
    // Each step shows its headless equivalent with this instance's real address.
    assert.match(await page.locator("#headless-body").textContent(), new RegExp(`curl -sS -X POST ${agnes.url}/auth/bootstrap`));

    // Step 1 with the keyboard alone: Tab from field to field, Enter submits.
    await page.getByLabel("Email").focus();
    await page.keyboard.type("owner@example.com");
    await page.keyboard.press("Tab");
    await page.keyboard.type("Olga Owner");
    await page.keyboard.press("Tab");
    await page.keyboard.type("short");
    await page.keyboard.press("Tab");
    await page.keyboard.type("short");
    await page.keyboard.press("Enter");
    const passwordError = page.locator("#f-password-error");
    await passwordError.waitFor();
    assert.match(await passwordError.innerText(), /at least 12 characters/, "the server's sentence, next to the password");
    assert.equal(await page.getByLabel("Password", { exact: true }).getAttribute("aria-invalid"), "true");
    forgive(page, /status of 422/);
    const focusOutline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(focusOutline, "none", "the focused field shows where the focus is");
    await page.getByLabel("Password", { exact: true }).fill("a long enough password");
    await page.getByLabel("Repeat the password").fill("a long enough password");
    await page.getByLabel("Repeat the password").press("Enter");

    // Step 2: every source type this build knows; those it cannot sync would be disabled with the reason.
    await page.getByRole("heading", { name: "2. Choose where your data comes from" }).waitFor();
    for (const name of [/PostgreSQL/, /Keboola/, /Files/, /Custom connector/]) assert.equal(await page.getByRole("radio", { name }).isDisabled(), false);
    assert.equal(await page.getByRole("radio", { name: /Keep the demo/ }).isDisabled(), true, "no demo data in this DATA_DIR");
    await check("step 2");
    // Signed in by the first step: no second password prompt.
    await page.locator("#site-header", { hasText: "owner@example.com" }).waitFor();
    await page.getByRole("radio", { name: /PostgreSQL/ }).focus();
    await page.keyboard.press("Space");
    await page.getByRole("button", { name: "Continue" }).focus();
    await page.keyboard.press("Enter");

    // Step 3: credentials, tested; the failure's sentence next to the field at fault.
    await page.getByRole("heading", { name: "3. Connect to PostgreSQL" }).waitFor();
    await page.getByLabel("Host").fill("127.0.0.1");
    await page.getByLabel("Port").fill(String(pg.port));
    await page.getByLabel("Database").fill("no_such_database");
    await page.getByLabel("User").fill("postgres");
    await page.getByRole("button", { name: "Test and save" }).click();
    const dbError = page.locator("#f-postgres_database-error");
    await dbError.waitFor();
    assert.match(await dbError.innerText(), /no_such_database.*does not exist|does not exist/);
    const headless = await page.locator("#headless-body").textContent();
    assert.match(headless, new RegExp(`${agnes.url}/api/admin/configure`), "the configure command names this instance");
    assert.match(headless, /"postgres_database":"no_such_database"/, "and carries the values typed");
    forgive(page, /status of 400/);
    await check("step 3 with an error");
    await page.getByLabel("Database").fill("postgres");
    await page.getByRole("button", { name: "Test and save" }).click();

    // Step 4: the discovered tables, to choose from.
    await page.getByRole("heading", { name: "4. Choose the tables to share" }).waitFor();
    // Resumable: the state is on the server, so a reload comes back here.
    await page.reload();
    await page.getByRole("heading", { name: "4. Choose the tables to share" }).waitFor();
    const rows = page.locator("form tbody tr");
    await rows.first().waitFor(); // the heading shows while the source is still being asked
    assert.equal(await rows.count(), 3);
    assert.match(await page.locator("form tbody").innerText(), /sales_targets[\s\S]*sales\.targets/);
    assert.match(await rows.filter({ hasText: "orders" }).innerText(), /≈ 250/);
    await check("step 4");
    await page.getByRole("button", { name: "Select none" }).click();
    assert.match(await page.locator("form .actions .muted").innerText(), /0 new tables selected/);
    await page.getByRole("button", { name: "Select all" }).click();
    await page.getByRole("checkbox", { name: "customers" }).uncheck();
    await page.getByRole("button", { name: "Register and continue" }).click();

    // Step 5: the first sync, with live per-table progress.
    await page.getByRole("heading", { name: "5. First sync" }).waitFor();
    await page.getByRole("button", { name: "Start the first sync" }).click();
    await page.getByText("Your data is ready.").waitFor({ timeout: 60000 });
    const progress = await page.locator("#step table").innerText();
    assert.match(progress, /orders\s+done\s+250/);
    assert.match(progress, /sales_targets\s+done\s+2/);
    assert.doesNotMatch(progress, /customers/, "an unchosen table is not synced");
    await check("step 5");

    await page.getByRole("link", { name: "Open the dashboard" }).click();
    await page.getByRole("heading", { name: "Dashboard" }).waitFor();
    await page.locator("#content table").first().waitFor();
    const dashboard = await page.locator("#content").innerText();
    assert.match(dashboard, /orders/);
    assert.match(dashboard, /sales_targets/);
    assert.doesNotMatch(dashboard, /not fully set up/, "the wizard is finished");
    assert.doesNotMatch(dashboard, /Needs attention/, "nothing needs attention when all is well");
    await check("the dashboard");

    // The wizard now says it is done, and / goes to the dashboard.
    await page.goto(`${agnes.url}/`);
    assert.equal(new URL(page.url()).pathname, "/dashboard");
    await page.goto(`${agnes.url}/setup`);
    await page.getByText("Open the dashboard").waitFor();
  });
});

test("a failed sync appears under Needs attention with its sentence and a link to fix it", async () => {
  await withScreenshots("attention", () => [page], async () => {
    pg.sql("DROP TABLE sales.targets");
    const run = await page.evaluate(async () => (await fetch("/api/sync/trigger", { method: "POST" })).json());
    for (let i = 0; i < 120; i++) { // the run's state, as the page's own session sees it
      const state = await page.evaluate(async (id) => (await (await fetch(`/api/sync/status/${id}`)).json()).state, run.run_id);
      if (state !== "running") break;
      await page.waitForTimeout(500);
    }
    await page.goto(`${agnes.url}/dashboard`);
    const attention = page.locator("section", { has: page.getByRole("heading", { name: "Needs attention" }) });
    await attention.waitFor();
    const text = await attention.innerText();
    assert.match(text, /sales_targets failed to sync: .*targets/);
    forgive(page, /status of 404/); // the page asks for the wizard's step, sometimes before a catalog exists
    await attention.getByRole("link", { name: "Open Tables" }).first().click();
    await page.getByRole("heading", { name: "Tables" }).waitFor();
    await check("the dashboard with a failure");
  });
});

test("the server stops cleanly after all this, with no sanitizer report in its log", async () => {
  await browser.close();
  await agnes.stopCleanly();
});
