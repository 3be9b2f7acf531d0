// The browser tests' harness: the real build/agnes on a free port with its own DATA_DIR, a real
// PostgreSQL (initdb + pg_ctl from Debian's postgresql-15, as tests/blackbox/pg_server.py does),
// and Debian's chromium driven by playwright-core.  Everything is started by the tests and stopped
// after them; nothing reaches the network.
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, chownSync, existsSync, writeFileSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, "../..");
export const AGNES_BIN = process.env.AGNES_BIN || join(ROOT, "build", "agnes");
export const ARTIFACTS = join(here, "artifacts");
const AXE_SOURCE = readFileSync(join(here, "node_modules", "axe-core", "axe.min.js"), "utf8");

export async function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- PostgreSQL ---------------------------------------------------------------------------------

function pgBindir() {
  const candidates = [];
  const config = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" });
  if (config.status === 0) candidates.push(config.stdout.trim());
  for (const v of [17, 16, 15]) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  const found = candidates.find((d) => d && existsSync(join(d, "initdb")) && existsSync(join(d, "pg_ctl")));
  if (!found) throw new Error("PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/bootstrap (postgresql-15)");
  return found;
}

export class Postgres {
  async start() {
    this.bindir = pgBindir();
    this.port = await freePort();
    this.root = mkdtempSync(join(tmpdir(), "agnes-browser-pg-"));
    this.data = join(this.root, "data");
    this.asUser = [];
    if (process.getuid() === 0) { // initdb refuses root: run the server as the package's postgres user
      const id = (flag) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim());
      chownSync(this.root, id("-u"), id("-g"));
      this.asUser = ["runuser", "-u", "postgres", "--"];
    }
    this.run("initdb", "-D", this.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8");
    this.run("pg_ctl", "-D", this.data, "-o",
      `-p ${this.port} -k ${this.root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
      "-l", join(this.root, "log"), "-w", "start");
    return this;
  }

  run(program, ...args) {
    const [cmd, ...rest] = [...this.asUser, join(this.bindir, program), ...args];
    const out = spawnSync(cmd, rest, { encoding: "utf8", timeout: 120000 });
    if (out.status !== 0) throw new Error(`${program} failed: ${out.stdout}\n${out.stderr}`);
    return out.stdout;
  }

  sql(text) {
    const out = spawnSync("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(this.port),
      "-U", "postgres", "-d", "postgres", "-c", text], { encoding: "utf8", timeout: 120000 });
    if (out.status !== 0) throw new Error(`psql: ${out.stderr}`);
    return out.stdout.trim();
  }

  stop() {
    if (!this.data) return;
    const [cmd, ...rest] = [...this.asUser, join(this.bindir, "pg_ctl"), "-D", this.data, "-m", "immediate", "-w", "stop"];
    spawnSync(cmd, rest, { encoding: "utf8" });
    rmSync(this.root, { recursive: true, force: true });
  }
}

// ---- agnes --------------------------------------------------------------------------------------

const SCRUBBED = (key) => (key.startsWith("AGNES_") && key !== "AGNES_BIN") ||
  ["DATA_DIR", "STATE_DIR", "CONFIG_DIR", "CONNECTORS_DIR", "JWT_SECRET_KEY", "SESSION_SECRET", "RELEASE_CHANNEL",
    "LOG_LEVEL", "DOMAIN", "SEED_ADMIN_EMAIL", "SEED_ADMIN_PASSWORD", "DATA_SOURCE", "POSTGRES_DSN"].includes(key);

export class Agnes {
  constructor(env = {}) {
    this.extraEnv = env;
  }

  async start() {
    this.dir = mkdtempSync(join(tmpdir(), "agnes-browser-"));
    mkdirSync(join(this.dir, "config"));
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !SCRUBBED(k)));
    Object.assign(env, {
      DATA_DIR: join(this.dir, "data"), STATE_DIR: join(this.dir, "state"), CONFIG_DIR: join(this.dir, "config"),
      CONNECTORS_DIR: join(this.dir, "connectors"), AGNES_LISTEN: `127.0.0.1:${this.port}`, AGNES_MIN_FREE_BYTES: "1",
      AGNES_THREADS: "4", AGNES_AUTH_RATE_LIMIT: "1000", AGNES_SCHEDULER: "off", AGNES_ALLOW_PRIVATE_SOURCES: "1",
    }, this.extraEnv);
    this.logPath = join(this.dir, "agnes.log");
    const log = openSync(this.logPath, "w");
    this.proc = spawn(AGNES_BIN, ["serve"], { env, stdio: ["ignore", log, log] });
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`agnes exited with ${this.proc.exitCode}:\n${this.log()}`);
      try {
        const r = await fetch(`${this.url}/api/version`);
        if (r.ok) return this;
      } catch { /* not listening yet */ }
      await sleep(50);
    }
    throw new Error(`agnes did not start:\n${this.log()}`);
  }

  log() {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  // SIGTERM, wait, clean up.  Resolves to {code, log}: the exit code (0 after a clean drain) and
  // the server's log, where a sanitizer build (make asan) writes its reports.
  async stop() {
    let code = this.proc ? this.proc.exitCode : null;
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once("exit", (c) => r(c)));
      this.proc.kill("SIGTERM");
      code = await Promise.race([exited, sleep(60000).then(() => null)]);
      if (code === null) this.proc.kill("SIGKILL");
    }
    const log = this.log();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
    return { code, log };
  }

  // Stop, and fail unless the server exited 0 with no sanitizer report in its log.
  async stopCleanly() {
    const { code, log } = await this.stop();
    const report = log.split("\n").findIndex((l) => /ERROR: (Address|Leak)Sanitizer|runtime error:/.test(l));
    if (report >= 0) throw new Error(`sanitizer report in the server's log:\n${log.split("\n").slice(report, report + 40).join("\n")}`);
    if (code !== 0) throw new Error(`agnes exited with ${code} after SIGTERM:\n${log.slice(-3000)}`);
  }

  // The JSON API as a bearer client (the way an agent would prepare state for a test).
  async call(method, path, body, token = this.token) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let payload;
    if (body instanceof FormData) payload = body;
    else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    const r = await fetch(this.url + path, { method, headers, body: payload });
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = text; }
    if (!r.ok) throw new Error(`${method} ${path} -> ${r.status}: ${text}`);
    return json;
  }

  async bootstrap(email = "admin@example.com", password = "correct horse battery") {
    const answer = await this.call("POST", "/auth/bootstrap", { email, password }, null);
    this.token = answer.access_token;
    this.admin = { email, password };
    return answer;
  }

  async createUser(email, password = "analyst password 1") {
    return this.call("POST", "/api/users", { email, password });
  }
}

// ---- chromium -----------------------------------------------------------------------------------

// Flags: headless and sandbox-free for CI; the background-networking ones keep Chromium from
// calling home, which this closed network refuses.
// playwright-core gives every launch a fresh temporary profile (its own --user-data-dir).
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  return browser;
}

// A page that records what the browser complains about: console errors (CSP violations are
// reported there), uncaught exceptions, failed requests to the server.
export async function newPage(browser, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({ viewport: { width, height }, acceptDownloads: true });
  // A CSP violation says where it happened (the console message alone does not).
  await context.addInitScript(() => document.addEventListener("securitypolicyviolation", (e) =>
    console.error(`CSP violation: ${e.violatedDirective} at ${e.sourceFile}:${e.lineNumber} sample=${e.sample}`)));
  const page = await context.newPage();
  page.problems = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") page.problems.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (error) => page.problems.push(`exception: ${error.message}`));
  page.expectedProblems = [];
  return page;
}

// Forget the problems matching re: the ones a test has just provoked and checked (a 4xx it wanted).
export function forgive(page, re) {
  page.problems = page.problems.filter((p) => !re.test(p));
}

// The problems a page has reported, minus the ones a test provoked on purpose (regexps).
export function unexpectedProblems(page) {
  return page.problems.filter((p) => !page.expectedProblems.some((re) => re.test(p)));
}

// Sign in through the login form, as a person would.
export async function login(page, agnes, email, password) {
  await page.goto(`${agnes.url}/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith("/login")), page.getByRole("button", { name: "Log in" }).click()]);
}

// axe-core on the page as it is now: the serious and critical violations (an empty list is a pass).
export async function axeViolations(page) {
  await page.evaluate(AXE_SOURCE); // evaluated over the DevTools protocol: not subject to the page's CSP
  const result = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

// Run body(page-holder); on failure, save a screenshot of each open page under tests/browser/artifacts/.
export async function withScreenshots(name, pages, body) {
  try {
    await body();
  } catch (error) {
    mkdirSync(ARTIFACTS, { recursive: true });
    const safe = name.replace(/[^A-Za-z0-9_-]+/g, "_");
    let i = 0;
    for (const page of pages()) {
      if (!page || page.isClosed()) continue;
      const path = join(ARTIFACTS, `${safe}${i ? `-${i}` : ""}.png`);
      try {
        await page.screenshot({ path, fullPage: true });
        error.message += `\n  screenshot: ${path} (at ${page.url()})`;
      } catch { /* the page may be gone */ }
      i++;
    }
    throw error;
  }
}

export function writeFile(path, text) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}
