// A real MCP client - the official TypeScript SDK, pinned in package.json - that the black-box tests
// (tests/blackbox/test_mcp.py) drive: it connects over stdio (launching the server exactly as a
// project's .mcp.json says, the way Claude Code does) or over streamable HTTP with a bearer token,
// runs a plan of steps and prints what it saw as one JSON document on stdout.
//
//   node tests/mcp/client.mjs PLAN.json
//
// PLAN: {"transport": "stdio", "mcp_json": ".../.mcp.json", "server": "agnes", "cwd": "..."}
//    or {"transport": "http", "url": "http://.../mcp", "token": "..."}
//   plus "steps": [
//     {"op": "tools"}                                       tools/list
//     {"op": "call", "name": "query", "arguments": {...}}   tools/call
//     {"op": "page_all", "handle": "...", "limit": N, "max_chars": N}
//         every page of a result through fetch_result, as CSV (RFC 4180, the header first):
//         {pages, rows, sha256, first_offsets}
//     {"op": "terminate"}                                   end the HTTP session (DELETE)
//   ]
// Output: {protocol_version, server, instructions, steps: [{ok: true, value} | {ok: false, error: {code, message}}]}
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const timeout = plan.timeout_ms ?? 600000; // a 5 M-row query under ASan takes a while
let stderr = '';

function transportFor(plan) {
  if (plan.transport === 'stdio') {
    const config = JSON.parse(readFileSync(plan.mcp_json, 'utf8'));
    const server = config.mcpServers[plan.server ?? 'agnes'];
    if (!server) throw new Error(`no server ${plan.server} in ${plan.mcp_json}`);
    const transport = new StdioClientTransport({
      command: server.command,
      args: server.args ?? [],
      env: server.env ?? {},
      cwd: plan.cwd,
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (chunk) => { stderr += chunk; });
    return transport;
  }
  return new StreamableHTTPClientTransport(new URL(plan.url), {
    requestInit: { headers: plan.token ? { Authorization: `Bearer ${plan.token}` } : {} },
  });
}

function csvField(value) {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

async function pageAll(client, step) {
  const hash = createHash('sha256');
  let offset = 0;
  let pages = 0;
  let rows = 0;
  const offsets = [];
  for (;;) {
    const result = await client.callTool(
      { name: 'fetch_result', arguments: { handle: step.handle, offset, limit: step.limit, max_chars: step.max_chars } },
      undefined, { timeout });
    if (result.isError) throw new Error(`page at ${offset}: ${result.content[0].text}`);
    const page = result.structuredContent;
    if (pages === 0) hash.update(page.columns.map(csvField).join(',') + '\n');
    for (const row of page.rows) hash.update(row.map(csvField).join(',') + '\n');
    offsets.push(offset);
    pages += 1;
    rows += page.rows.length;
    if (page.next_offset === null) return { pages, rows, sha256: hash.digest('hex'), first_offsets: offsets.slice(0, 3), total_rows: page.total_rows };
    if (page.next_offset <= offset) throw new Error(`paging did not advance at ${offset}`);
    offset = page.next_offset;
  }
}

async function run() {
  const transport = transportFor(plan);
  const client = new Client({ name: 'agnes-tests', version: '1.0.0' });
  const out = { steps: [] };
  try {
    await client.connect(transport, { timeout });
  } catch (error) {
    out.connect_error = { code: error.code ?? null, message: String(error.message ?? error) };
    out.stderr = stderr;
    return out;
  }
  out.protocol_version = transport.protocolVersion ?? null;
  out.server = client.getServerVersion();
  out.instructions = client.getInstructions();
  for (const step of plan.steps ?? []) {
    try {
      let value;
      if (step.op === 'tools') value = await client.listTools(undefined, { timeout });
      else if (step.op === 'call') value = await client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined, { timeout });
      else if (step.op === 'page_all') value = await pageAll(client, step);
      else if (step.op === 'terminate') value = await transport.terminateSession();
      else throw new Error(`unknown op ${step.op}`);
      out.steps.push({ ok: true, value: value ?? null });
    } catch (error) {
      out.steps.push({ ok: false, error: { code: error.code ?? null, message: String(error.message ?? error) } });
    }
  }
  out.session_id = transport.sessionId ?? null;
  await client.close();
  out.stderr = stderr;
  return out;
}

run().then(
  (out) => { process.stdout.write(JSON.stringify(out)); process.exit(0); },
  (error) => { process.stderr.write(String(error.stack ?? error)); process.exit(1); },
);
