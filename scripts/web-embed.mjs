#!/usr/bin/env node
// Turn the web/ folder into one C source file the binary is linked with (make does this).
//
//   node scripts/web-embed.mjs WEB_DIR OUT.c [--report]
//
// What it embeds, and under which name (src/web/assets.h serves them):
//   WEB_DIR/pages/<file>.html   "pages/<file>.html"   the page routes of src/http/pages.c
//   WEB_DIR/assets/<file>       "<file>"              GET /assets/<file>
//   the npm modules those files import, from WEB_DIR/node_modules (pinned by WEB_DIR/package-lock.json)
//                               "lib.<package>.<path>" GET /assets/lib.<package>.<path>
//
// There is no bundler: every file is shipped as it is, one file per module.  The one change
// made to JavaScript is the one an import map would make in the browser: a bare import
// ("@codemirror/view") becomes the URL of that package's module file.  (An import map is an
// inline <script>, which the pages' Content-Security-Policy forbids.)  Only modules reachable
// from our own files are embedded, so node_modules can hold more than ships.
//
// Every asset URL a page or module refers to carries ?v=<content hash>, where the hash covers
// the asset and, through its own rewritten imports, everything it loads; the server caches
// such a URL for a year and revalidates anything else (ETag).  Each asset is also stored
// gzip-compressed when that is smaller.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync, renameSync, mkdirSync } from "node:fs";
import { dirname, join, relative, resolve, extname, posix } from "node:path";
import { gzipSync, constants as zlibConstants } from "node:zlib";

const [webDir, outFile, ...flags] = process.argv.slice(2);
if (!webDir || !outFile) {
  console.error("usage: node scripts/web-embed.mjs WEB_DIR OUT.c [--report]");
  process.exit(2);
}
const modulesDir = join(webDir, "node_modules");

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
};

function fail(message) {
  console.error(`web-embed: ${message}`);
  process.exit(1);
}

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort().flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) fail(`${path}: sub-folders are not served; keep assets flat`);
    if (name.startsWith(".")) return [];
    return [path];
  });
}

// ---- module resolution ------------------------------------------------------------------------

// The file a package's "exports" (or "module"/"main") names for `subpath` ("." or "./x").
function packageEntry(packageDir, subpath) {
  const meta = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
  const pick = (target) => {
    if (typeof target === "string") return target;
    if (Array.isArray(target)) return target.map(pick).find(Boolean);
    if (target && typeof target === "object")
      for (const condition of ["browser", "import", "module", "default"])
        if (condition in target) {
          const found = pick(target[condition]);
          if (found) return found;
        }
    return undefined;
  };
  let entry;
  if (meta.exports !== undefined) {
    const exportsMap = typeof meta.exports === "string" || Array.isArray(meta.exports) ||
      !Object.keys(meta.exports).some((k) => k.startsWith(".")) ? { ".": meta.exports } : meta.exports;
    entry = pick(exportsMap[subpath]);
  } else if (subpath === ".") {
    entry = meta.module || meta.main || "index.js";
  } else {
    entry = subpath;
  }
  if (!entry) fail(`${packageDir}: package.json exports nothing at "${subpath}"`);
  return { file: resolve(packageDir, entry), name: meta.name };
}

function resolveBare(specifier) {
  const parts = specifier.split("/");
  const nameParts = specifier.startsWith("@") ? parts.slice(0, 2) : parts.slice(0, 1);
  const packageName = nameParts.join("/");
  const rest = parts.slice(nameParts.length).join("/");
  const packageDir = join(modulesDir, packageName);
  if (!existsSync(join(packageDir, "package.json")))
    fail(`import "${specifier}": ${packageDir} is missing; add the package to web/package.json and run scripts/bootstrap`);
  return packageEntry(packageDir, rest ? `./${rest}` : ".").file;
}

// Import and export specifiers of an ES module: static, side-effect and dynamic ones.
const SPECIFIER_PATTERNS = [
  /(\bimport\s*(?:[\w*${}\s,]+?\s*from\s*)?)(["'])([^"'\n]+)\2/g,
  /(\bexport\s*(?:\*|\{[^}]*\}|\*\s+as\s+\w+)\s*from\s*)(["'])([^"'\n]+)\2/g,
  /(\bimport\s*\(\s*)(["'])([^"'\n]+)\2(?=\s*\))/g,
];

function specifiersOf(source) {
  const found = new Set();
  for (const pattern of SPECIFIER_PATTERNS)
    for (const match of source.matchAll(pattern)) found.add(match[3]);
  return [...found];
}

function rewriteSpecifiers(source, mapping) {
  for (const pattern of SPECIFIER_PATTERNS)
    source = source.replace(pattern, (all, head, quote, specifier) =>
      mapping.has(specifier) ? `${head}${quote}${mapping.get(specifier)}${quote}` : all);
  return source;
}

// ---- the asset graph ----------------------------------------------------------------------------

const assets = new Map(); // absolute path -> {name, path, type, deps: Map(specifier -> path)}
const byName = new Map();

function addAsset(path, name) {
  if (assets.has(path)) return assets.get(path);
  if (byName.has(name)) fail(`two files would be served as ${name}: ${byName.get(name)} and ${path}`);
  const type = CONTENT_TYPES[extname(path)];
  if (!type) fail(`${path}: unknown file type (known: ${Object.keys(CONTENT_TYPES).join(" ")})`);
  const asset = { name, path, type, deps: new Map() };
  assets.set(path, asset);
  byName.set(name, path);
  return asset;
}

function vendorName(path) {
  const rel = relative(modulesDir, path).split(/[\\/]/).join("/");
  return "lib." + rel.replace(/^@/, "").replace(/\/(dist|src)\//, "/").replace(/\//g, ".");
}

function followImports(asset, isVendor) {
  if (!/\.m?js$/.test(asset.path)) return;
  let source = readFileSync(asset.path, "utf8");
  for (const specifier of specifiersOf(source)) {
    let target;
    if (specifier.startsWith("./") || specifier.startsWith("../")) {
      target = resolve(dirname(asset.path), specifier);
      if (!existsSync(target) && existsSync(target + ".js")) target += ".js";
    } else if (specifier.startsWith("/")) {
      continue; // already a URL
    } else {
      target = resolveBare(specifier);
    }
    if (!existsSync(target)) fail(`${asset.path}: import "${specifier}" does not resolve (${target})`);
    const vendor = isVendor || target.startsWith(resolve(modulesDir));
    const dep = assets.get(target) || addAsset(target, vendor ? vendorName(target) : posix.basename(target));
    asset.deps.set(specifier, target);
    if (!dep.followed) {
      dep.followed = true;
      followImports(dep, vendor);
    }
  }
}

const pageFiles = listFiles(join(webDir, "pages"));
const ownFiles = listFiles(join(webDir, "assets"));
for (const path of pageFiles) addAsset(resolve(path), `pages/${posix.basename(path)}`);
for (const path of ownFiles) addAsset(resolve(path), posix.basename(path));
for (const path of ownFiles) {
  const asset = assets.get(resolve(path));
  asset.followed = true;
  followImports(asset, false);
}

// ---- final contents, in dependency order (a hash covers what a module imports) -----------------

const STATE = { visiting: 1, done: 2 };
function finish(asset, stack = []) {
  if (asset.state === STATE.done) return;
  if (asset.state === STATE.visiting)
    fail(`import cycle: ${[...stack, asset.name].join(" -> ")} (the content hashes need an acyclic graph)`);
  asset.state = STATE.visiting;
  for (const target of asset.deps.values()) finish(assets.get(target), [...stack, asset.name]);
  let content = readFileSync(asset.path);
  if (/\.m?js$/.test(asset.path)) {
    const mapping = new Map();
    for (const [specifier, target] of asset.deps) mapping.set(specifier, urlOf(assets.get(target)));
    let text = rewriteSpecifiers(content.toString("utf8"), mapping);
    text = text.replace(/^\/\/# sourceMappingURL=.*$/gm, ""); // the maps are not shipped
    content = Buffer.from(text, "utf8");
  }
  asset.content = content;
  asset.hash = createHash("sha256").update(content).digest("hex").slice(0, 16);
  asset.state = STATE.done;
}
function urlOf(asset) {
  return `/assets/${asset.name}?v=${asset.hash}`;
}

// Pages and stylesheets refer to assets by "/assets/<name>"; give those references their version.
function versionReferences(asset) {
  let text = readFileSync(asset.path, "utf8");
  text = text.replace(/(["'(])\/assets\/([A-Za-z0-9._-]+)(["')])/g, (all, open, name, close) => {
    const path = byName.get(name);
    if (!path) fail(`${asset.path}: refers to /assets/${name}, which is not in web/assets`);
    const target = assets.get(path);
    finish(target);
    return `${open}${urlOf(target)}${close}`;
  });
  asset.content = Buffer.from(text, "utf8");
  asset.hash = createHash("sha256").update(asset.content).digest("hex").slice(0, 16);
  asset.state = STATE.done;
}

for (const asset of assets.values()) if (/\.css$/.test(asset.path)) versionReferences(asset);
for (const asset of assets.values()) if (/\.m?js$/.test(asset.path)) finish(asset);
for (const asset of assets.values()) if (/\.html$/.test(asset.path)) versionReferences(asset);
for (const asset of assets.values()) if (asset.state !== STATE.done) finish(asset);

// ---- the C file -------------------------------------------------------------------------------

// A byte string as C string literals: printable ASCII as is, the rest (and \ " ?) as 3-digit
// octal, so no escape can swallow the next character and no trigraph can form.
function cString(buffer) {
  const lines = [];
  let line = "";
  for (const byte of buffer) {
    const printable = byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x22 && byte !== 0x3f;
    line += printable ? String.fromCharCode(byte) : "\\" + byte.toString(8).padStart(3, "0");
    if (line.length >= 110) {
      lines.push(`"${line}"`);
      line = "";
    }
  }
  if (line || lines.length === 0) lines.push(`"${line}"`);
  return lines.join("\n    ");
}

const ordered = [...assets.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
let c = `/* Generated by scripts/web-embed.mjs from web/ - do not edit; edit web/ and run make. */\n`;
c += `#include "web/assets.h"\n\n`;
let rawTotal = 0, gzipTotal = 0;
const rows = [];
ordered.forEach((asset, i) => {
  const gzip = gzipSync(asset.content, { level: zlibConstants.Z_BEST_COMPRESSION });
  const useGzip = gzip.length < asset.content.length * 0.95;
  rawTotal += asset.content.length;
  gzipTotal += useGzip ? gzip.length : asset.content.length;
  c += `static const char asset_${i}[] =\n    ${cString(asset.content)};\n`;
  if (useGzip) c += `static const char asset_${i}_gzip[] =\n    ${cString(gzip)};\n`;
  rows.push(`    {"${asset.name}", "${asset.type}", "\\"${asset.hash}\\"", "${asset.hash}", asset_${i}, ` +
    `${asset.content.length}, ${useGzip ? `asset_${i}_gzip` : "NULL"}, ${useGzip ? gzip.length : 0}},`);
});
c += `\nconst web_asset web_assets[] = {\n${rows.join("\n")}\n};\n`;
c += `const size_t web_asset_count = ${ordered.length};\n`;
c += `const unsigned long long web_assets_raw_bytes = ${rawTotal}ULL;\n`;
c += `const unsigned long long web_assets_gzip_bytes = ${gzipTotal}ULL;\n`;

mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile + ".tmp", c);
renameSync(outFile + ".tmp", outFile);
if (flags.includes("--report")) {
  for (const asset of ordered) console.log(`${asset.content.length}\t${asset.name}`);
  console.log(`${ordered.length} files, ${rawTotal} bytes, ${gzipTotal} bytes as served gzip-compressed`);
}
