"""What `agnes init` and `agnes pull` leave for an AI agent (issue 17 items 4 and 5; SPEC §17): .mcp.json,
hooks that work without `agnes` on PATH, the DuckDB dialect in CLAUDE.md, and .agnes/changes.md - what
changed on the server since the previous pull, printed by the SessionStart hook."""
import json
import os
import re
import subprocess
import time

import pytest

import shutil

from conftest import AGNES_BIN, duckdb_exec
from test_catalog import everyone_id
from test_upload import upload_raw
from test_users import ANALYST, call, setup_admin_and_analyst

ORDERS = b"id,item,amount\n" + b"".join(b"%d,item %d,%d\n" % (i, i, i) for i in range(100))
CUSTOMERS = b"id,name\n1,Ada\n2,Bob\n"
SYSTEM_PATH = "/usr/bin:/bin"


def agnes(home, *args, cwd=None, path=None, stdin=None, timeout=120):
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg"), "PATH": path or SYSTEM_PATH}
    return subprocess.run([AGNES_BIN, *args], input=stdin, capture_output=True, text=True, env=env,
                          cwd=str(cwd or home / "ws"), timeout=timeout)


def grant(server, token, table):
    r = call(server, "POST", "/api/admin/grants", token,
             json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": table})
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


@pytest.fixture
def world(server_factory, env, workdir):
    server = server_factory(env)
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    for name, content in (("orders", ORDERS), ("customers", CUSTOMERS)):
        assert upload_raw(server, token, content, name=name).status_code in (200, 201)
    grant_id = grant(server, token, "orders")
    home = workdir / "analyst"
    (home / "ws").mkdir(parents=True)
    login = agnes(home, "login", "--server", server.url, "--email", ANALYST["email"], stdin=ANALYST["password"] + "\n")
    assert login.returncode == 0, login.stderr
    return server, token, home, grant_id


def hook_commands(ws, event):
    settings = json.loads((ws / ".claude" / "settings.json").read_text())
    return [h["command"] for e in settings["hooks"][event] for h in e["hooks"]]


def run_hook(command, ws, home, path=SYSTEM_PATH):
    """As Claude Code runs a hook: through a shell, in the project directory."""
    return subprocess.run(command, shell=True, cwd=str(ws), capture_output=True, text=True, timeout=120,
                          env={"PATH": path, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg")})


def test_init_writes_mcp_json_and_hooks_that_work_without_agnes_on_path(world):
    server, _, home, _ = world
    ws = home / "ws"
    (ws / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "other-server"}}, "x": 1}))
    # A hook from an earlier `agnes init` (before absolute paths) is replaced, not kept beside ours.
    (ws / ".claude").mkdir()
    (ws / ".claude" / "settings.json").write_text(json.dumps(
        {"hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "agnes pull --quiet"}]}]}}))
    r = agnes(home, "init")
    assert r.returncode == 0, r.stderr
    binary = os.path.realpath(AGNES_BIN)
    mcp = json.loads((ws / ".mcp.json").read_text())
    assert mcp["x"] == 1 and mcp["mcpServers"]["other"] == {"command": "other-server"}
    assert mcp["mcpServers"]["agnes"] == {"type": "stdio", "command": binary,
                                          "args": ["mcp", "--workspace", str(ws.resolve())]}
    starts, ends = hook_commands(ws, "SessionStart"), hook_commands(ws, "SessionEnd")
    assert len(starts) == 1 and len(ends) == 1 and binary in starts[0] and "pull --quiet --print-changes" in starts[0]
    claude_md = (ws / "CLAUDE.md").read_text()
    assert "The SQL dialect is **DuckDB's**" in claude_md and "fetch_result" in claude_md
    assert "changes.md" in claude_md
    # Again: nothing doubled, nothing lost.
    assert agnes(home, "init").returncode == 0
    assert hook_commands(ws, "SessionStart") == starts and json.loads((ws / ".mcp.json").read_text()) == mcp
    # The hook runs with agnes nowhere on PATH (a ~/.local install, a checkout's build/agnes) ...
    assert subprocess.run(["sh", "-c", "command -v agnes"], env={"PATH": SYSTEM_PATH}).returncode != 0
    start = run_hook(starts[0], ws, home)
    assert start.returncode == 0, start.stderr
    assert start.stdout.startswith("# Agnes: first pull of this workspace") and (ws / "data" / "orders.parquet").exists()
    assert run_hook(ends[0], ws, home).returncode == 0
    # ... and falls back to the agnes on PATH when the recorded one is gone (reinstalled elsewhere).
    moved = starts[0].replace(binary, str(home / "gone" / "agnes"))
    fallback = run_hook(moved, ws, home, path=os.path.dirname(binary) + ":" + SYSTEM_PATH)
    assert fallback.returncode == 0 and "No changes" in fallback.stdout, fallback.stderr


def test_init_refuses_a_broken_mcp_json_and_names_it(world):
    _, _, home, _ = world
    (home / "ws" / ".mcp.json").write_text("{not json")
    r = agnes(home, "init")
    assert r.returncode != 0 and ".mcp.json is not a JSON object" in r.stderr
    assert (home / "ws" / ".mcp.json").read_text() == "{not json"


def settled_requests(server):
    """The paths of every request the server has logged, once its log stops growing: a request is
    logged when libmicrohttpd reports it complete, which can be a moment after the client has its
    answer, so counting at once can miss the last requests of the previous command."""
    seen, stable_since = None, time.monotonic()
    while True:
        paths = re.findall(r'msg=request .*?path="([^"]+)"', server.output())
        if paths != seen:
            seen, stable_since = paths, time.monotonic()
        elif time.monotonic() - stable_since > 0.5:
            return paths
        time.sleep(0.05)


def changes(home):
    return (home / "ws" / ".agnes" / "changes.md").read_text()


def test_the_change_digest_lists_tables_columns_rows_and_access(world):
    server, token, home, grant_id = world
    assert agnes(home, "pull").returncode == 0
    first = changes(home)
    assert first.startswith("# Agnes: first pull of this workspace") and "1 tables you may read" in first
    # Nothing changed: says so, and only the manifest moved (SPEC §16).
    before = len(settled_requests(server))
    again = agnes(home, "pull", "--quiet", "--print-changes")
    assert again.returncode == 0 and again.stdout == changes(home)
    assert "No changes: the same 1 tables, columns, row counts and access." in again.stdout
    assert settled_requests(server)[before:] == ["/api/sync/manifest"]
    # Server-side changes of every kind the digest names.
    wider = b"id,item,amount,discount\n" + b"".join(b"%d,item %d,%d.5,%d\n" % (i, i, i, i % 3) for i in range(120))
    assert upload_raw(server, token, wider, name="orders").status_code in (200, 201)  # +column, retype, +20 rows
    grant(server, token, "customers")  # access gained
    assert agnes(home, "pull").returncode == 0
    digest = changes(home)
    assert "## Access gained\n\n- `customers` (2 rows, through Everyone)" in digest
    assert "## Columns changed\n\n- `orders`: `amount` BIGINT → DOUBLE; added `discount` (BIGINT)" in digest
    assert "## Row counts changed\n\n- `orders`: 100 → 120 (+20)" in digest
    assert "No changes" not in digest and "Tables added" not in digest
    # Access lost: the table and its local copy go.
    assert call(server, "DELETE", f"/api/admin/grants/{grant_id}", token).status_code in (200, 204)
    assert agnes(home, "pull").returncode == 0
    digest = changes(home)
    assert "## Access lost\n\n- `orders` (its local copy was removed)" in digest and "Columns" not in digest


def test_an_admin_sees_tables_added_and_removed(world, workdir):
    server, token, _, _ = world
    # A source written from outside (tier B), so it can disappear again.
    extract = workdir / "data" / "extracts" / "legacy"
    extract.mkdir(parents=True)
    duckdb_exec(extract / "extract.duckdb",
                "CREATE TABLE _meta(table_name VARCHAR NOT NULL, description VARCHAR, rows BIGINT, size_bytes BIGINT,"
                " extracted_at TIMESTAMP, query_mode VARCHAR);"
                "INSERT INTO _meta VALUES ('old_stuff', NULL, 5, 0, now(), 'local');"
                "CREATE TABLE old_stuff AS SELECT range AS id FROM range(5);")
    assert call(server, "POST", "/api/admin/rebuild", token).status_code == 200
    home = workdir / "admin"
    (home / "ws").mkdir(parents=True)
    assert agnes(home, "login", "--server", server.url, "--token", token).returncode == 0
    assert agnes(home, "pull").returncode == 0
    assert upload_raw(server, token, b"sku,price\nA,1\nB,2\nC,3\n", name="products").status_code in (200, 201)
    shutil.rmtree(extract)
    assert call(server, "POST", "/api/admin/rebuild", token).status_code == 200
    assert agnes(home, "pull").returncode == 0
    digest = changes(home)
    assert "## Tables added\n\n- `products` (3 rows, local)" in digest
    assert "## Tables removed\n\n- `old_stuff` (no longer on the server; its local copy was removed)" in digest
    assert "Access" not in digest


def test_a_failed_pull_still_shows_the_last_digest_with_a_note(world):
    server, _, home, _ = world
    assert agnes(home, "pull").returncode == 0
    r = subprocess.run([AGNES_BIN, "pull", "--quiet", "--print-changes"], cwd=str(home / "ws"), capture_output=True,
                       text=True, timeout=60, env={"HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg"),
                                                   "PATH": SYSTEM_PATH, "AGNES_SERVER": "http://127.0.0.1:9",
                                                   "AGNES_TOKEN": "x"})
    assert r.returncode == 4 and "cannot reach" in r.stderr
    assert r.stdout.startswith("(The pull at the start of this session failed") and "first pull" in r.stdout
