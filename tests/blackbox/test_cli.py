"""The analyst CLI against a real server on loopback (SPEC §10; issue 6): login, pull, query, init, push -
and the original's distribution bugs (reference original-connectors-cli.md §4.3, §8), each in a test."""
import json
import os
import random
import signal
import subprocess
import time

import pytest

from conftest import AGNES_BIN, check_no_sanitizer_report
from test_catalog import everyone_id
from test_upload import upload_raw
from test_users import ANALYST, call, setup_admin_and_analyst

ORDERS = b"id,item,amount\n" + b"".join(b"%d,item %d,%d.5\n" % (i, i, i) for i in range(500))
CUSTOMERS = b"id,name\n1,Ada\n2,Bob\n"
ORDERS_WITH_REGION = b"id,item,amount,region\n1,item 1,1.5,EU\n"


def agnes(home, *args, stdin=None, env=None, cwd=None, timeout=60):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AGNES_")}
    e.update({"XDG_CONFIG_HOME": str(home / "xdg"), "HOME": str(home)}, **(env or {}))
    out = subprocess.run([AGNES_BIN, *args], input=stdin, capture_output=True, text=True, env=e,
                         cwd=str(cwd or home / "ws"), timeout=timeout)
    check_no_sanitizer_report(f"agnes {' '.join(args)}", out.stderr)
    return out


@pytest.fixture
def world(server_factory, env, workdir):
    server = server_factory(env)
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    for name, content in (("orders", ORDERS), ("customers", CUSTOMERS)):
        assert upload_raw(server, token, content, name=name).status_code in (200, 201)
    grant = call(server, "POST", "/api/admin/grants", token,
                 json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    home = workdir / "analyst"
    (home / "ws").mkdir(parents=True)
    login = agnes(home, "login", "--server", server.url, "--email", ANALYST["email"], stdin=ANALYST["password"] + "\n")
    assert login.returncode == 0, login.stderr
    return server, token, home, grant.json()["id"]


def pull_json(home, *args, **kw):
    r = agnes(home, "pull", "--json", *args, **kw)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_login_pull_and_a_second_pull_that_moves_nothing(world):
    server, _, home, _ = world
    creds = home / "xdg" / "agnes" / "credentials.json"
    assert oct(creds.stat().st_mode & 0o777) == "0o600" and ANALYST["password"] not in creds.read_text()
    # A personal access token is kept (months), not the session token (hours): hooks keep working.
    tokens = call(server, "GET", "/auth/admin/tokens", world[1]).json()
    assert [t["name"].startswith("agnes CLI on ") for t in tokens] == [True]
    assert tokens[0]["user_email"] == ANALYST["email"].lower() and tokens[0]["expires_at"] > "2027"
    first = pull_json(home)
    assert first["downloaded"] == ["orders"] and first["bytes_downloaded"] > 0 and first["failed"] == []
    assert (home / "ws" / "data" / "orders.parquet").exists() and not (home / "ws" / "data" / "customers.parquet").exists()
    second = pull_json(home)
    assert second["downloaded"] == [] and second["unchanged"] == ["orders"] and second["bytes_downloaded"] == 0
    plain = agnes(home, "pull")
    assert plain.returncode == 0 and plain.stdout.startswith("Up to date: 1 table, nothing downloaded")
    local = agnes(home, "query", "--local", "--format", "json", "SELECT count(*) AS n, sum(amount) AS s FROM orders")
    remote = agnes(home, "query", "--format", "json", "SELECT count(*) AS n, sum(amount) AS s FROM orders")
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    mine, theirs = json.loads(local.stdout), json.loads(remote.stdout)
    assert mine["rows"] == theirs["rows"] == [[500, 125000]] and mine["types"] == theirs["types"]
    status = json.loads(agnes(home, "status", "--json").stdout)
    assert status["user"] == ANALYST["email"].lower() and status["tables"] == 1 and status["last_pull"].endswith("Z")


def test_only_a_changed_table_is_downloaded_and_a_revoked_one_disappears(world):
    server, token, home, grant_id = world
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "customers"})
    assert sorted(pull_json(home)["downloaded"]) == ["customers", "orders"]
    assert upload_raw(server, token, CUSTOMERS + b"3,Cyd\n", name="customers").status_code in (200, 201)
    changed = pull_json(home)
    assert changed["downloaded"] == ["customers"] and changed["unchanged"] == ["orders"]
    assert call(server, "DELETE", f"/api/admin/grants/{grant_id}", token).status_code in (200, 204)
    revoked = pull_json(home)
    assert revoked["removed"] == ["orders"] and not (home / "ws" / "data" / "orders.parquet").exists()
    gone = agnes(home, "query", "--local", "SELECT * FROM orders")
    assert gone.returncode != 0 and "orders" in gone.stderr


def test_an_interrupted_download_resumes_where_it_stopped(world, server_factory):
    server, token, home, _ = world
    rng = random.Random(7)
    big = b"id,blob\n" + b"".join(b"%d,%032x%032x\n" % (i, rng.getrandbits(128), rng.getrandbits(128))
                                  for i in range(60000))
    assert upload_raw(server, token, big, name="big").status_code in (200, 201)
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "big"})
    size = call(server, "GET", "/api/sync/manifest", token).json()["tables"]["big"]["size_bytes"]
    assert size > 1_000_000
    e = {k: v for k, v in os.environ.items() if not k.startswith("AGNES_")}
    e.update(XDG_CONFIG_HOME=str(home / "xdg"), HOME=str(home), AGNES_PULL_MAX_BYTES_PER_SECOND="400000")
    slow = subprocess.Popen([AGNES_BIN, "pull", "--quiet", "big"], cwd=str(home / "ws"), env=e)
    part = home / "ws" / "data" / ".big.parquet.part"
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > size // 4):
        assert time.monotonic() < deadline and slow.poll() is None, "the download never got going"
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait()
    kept = part.stat().st_size
    assert 0 < kept < size
    resumed = pull_json(home, "big")
    assert resumed["downloaded"] == ["big"] and resumed["bytes_downloaded"] == size - kept  # only the rest moved
    assert not part.exists() and (home / "ws" / "data" / "big.parquet").stat().st_size == size
    assert agnes(home, "query", "--local", "--format", "csv", "SELECT count(*) FROM big").stdout.splitlines()[1] == "60000"


def test_pitfall_each_workspace_has_its_own_state(world):
    server, _, home, _ = world
    assert pull_json(home)["downloaded"] == ["orders"]
    other = home / "other"
    other.mkdir()
    second = pull_json(home, cwd=other)
    assert second["downloaded"] == ["orders"] and (other / "data" / "orders.parquet").exists()
    assert pull_json(home, "--workspace", str(other))["downloaded"] == []


def test_pitfall_a_pull_keeps_the_users_own_views(world):
    server, token, home, _ = world
    pull_json(home)
    own = subprocess.run([AGNES_BIN, "sql", str(home / "ws" / "agnes.duckdb"),
                          "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 400"],
                         capture_output=True, text=True)
    assert own.returncode == 0, own.stderr
    assert upload_raw(server, token, ORDERS + b"1000,item new,999.5\n", name="orders").status_code in (200, 201)
    assert pull_json(home)["downloaded"] == ["orders"]
    r = agnes(home, "query", "--local", "--format", "csv", "SELECT count(*) FROM big_orders")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "101", r.stderr  # the new row too


def test_init_writes_claude_md_and_hooks_and_is_idempotent(world):
    server, _, home, _ = world
    ws = home / "ws"
    (ws / "CLAUDE.md").write_text("# My project\n\nMy own notes stay.\n")
    (ws / ".claude").mkdir()
    (ws / ".claude" / "settings.json").write_text(json.dumps(
        {"model": "x", "hooks": {"SessionStart": [{"hooks": [{"type": "command", "command": "echo hi"}]}]}}))
    first = agnes(home, "init")
    assert first.returncode == 0, first.stderr
    text = (ws / "CLAUDE.md").read_text()
    assert text.startswith("# My project\n\nMy own notes stay.\n") and "### `orders`" in text
    assert "| `amount` | DOUBLE |" in text and "customers" not in text  # only what the analyst may read
    settings = json.loads((ws / ".claude" / "settings.json").read_text())
    starts = [h["command"] for e in settings["hooks"]["SessionStart"] for h in e["hooks"]]
    # The hooks name this agnes by absolute path (issue 17; test_agent_workspace.py has the details).
    binary = os.path.realpath(AGNES_BIN)
    assert starts == ["echo hi", f"a='{binary}'; [ -x \"$a\" ] || a=agnes; \"$a\" pull --quiet --print-changes"]
    assert settings["model"] == "x"
    assert [h["command"] for e in settings["hooks"]["SessionEnd"] for h in e["hooks"]] == \
        [f"a='{binary}'; [ -x \"$a\" ] || a=agnes; \"$a\" push --quiet"]
    assert agnes(home, "init").returncode == 0
    assert (ws / "CLAUDE.md").read_text() == text
    assert json.loads((ws / ".claude" / "settings.json").read_text()) == settings
    # The hooks run: the commands Claude Code would run, in the workspace.
    path = os.path.dirname(AGNES_BIN) + os.pathsep + os.environ["PATH"]
    for command in starts[1:]:
        r = subprocess.run(command, shell=True, cwd=str(ws), capture_output=True, text=True,
                           env={"PATH": path, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg")})
        assert r.returncode == 0 and r.stdout.startswith("# Agnes: first pull of this workspace"), r.stderr
    assert (ws / "data" / "orders.parquet").exists()


def test_pull_refreshes_the_block_init_wrote_and_nothing_else(world):
    """`agnes pull` left CLAUDE.md's agnes block stale: a table the analyst lost stayed listed, a new column
    never appeared."""
    server, token, home, grant_id = world
    ws = home / "ws"
    (ws / "CLAUDE.md").write_text("# Mine\n\nKeep me.\n")
    assert agnes(home, "init").returncode == 0
    (ws / "CLAUDE.md").write_text((ws / "CLAUDE.md").read_text() + "\nMy trailing notes.\n")
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "customers"})
    assert upload_raw(server, token, ORDERS_WITH_REGION, name="orders").status_code in (200, 201)
    pull_json(home)
    text = (ws / "CLAUDE.md").read_text()
    assert text.startswith("# Mine\n\nKeep me.\n") and text.endswith("\nMy trailing notes.\n"), text
    assert "### `customers`" in text and "| `region` |" in text and "## Tables (2)" in text, text
    assert text.count("<!-- agnes:begin") == 1
    assert call(server, "DELETE", f"/api/admin/grants/{grant_id}", token).status_code in (200, 204)
    pull_json(home)
    text = (ws / "CLAUDE.md").read_text()
    assert "### `orders`" not in text and "## Tables (1)" in text and "Keep me." in text, text
    # A workspace where `agnes init` never ran gets no block from a pull.
    (ws / "CLAUDE.md").write_text("# Only mine\n")
    pull_json(home)
    assert (ws / "CLAUDE.md").read_text() == "# Only mine\n"


def test_push_sends_the_hook_transcript_and_the_outbox(world, workdir):
    server, token, home, _ = world
    transcript = home / "transcript.jsonl"
    transcript.write_text('{"role": "user", "content": "hi"}\n')
    outbox = home / "ws" / ".agnes" / "outbox"
    outbox.mkdir(parents=True)
    (outbox / "notes.md").write_text("orders.amount is in EUR\n")
    r = agnes(home, "push", stdin=json.dumps({"session_id": "s1", "transcript_path": str(transcript)}))
    assert r.returncode == 0 and "Pushed 2 files" in r.stdout, r.stderr
    assert not (outbox / "notes.md").exists() and (outbox / "sent" / "notes.md").exists()
    me = call(server, "GET", "/api/users", token).json()
    analyst_id = next(u["id"] for u in me if u["email"] == ANALYST["email"].lower())
    stored = sorted(p.name.split("-", 1)[1] for p in (workdir / "data" / "user_sessions" / analyst_id).iterdir())
    assert stored == ["notes.md", "transcript.jsonl"]


def test_errors_say_what_to_do_with_distinct_exit_codes(world, workdir):
    server, _, home, _ = world
    stranger = workdir / "stranger"
    (stranger / "ws").mkdir(parents=True)
    r = agnes(stranger, "pull")
    assert r.returncode == 2 or r.returncode == 3
    assert "agnes login" in r.stderr
    r = agnes(home, "pull", env={"AGNES_TOKEN": "not-a-token"})
    assert r.returncode == 3 and "agnes login" in r.stderr
    r = agnes(home, "pull", env={"AGNES_SERVER": "http://127.0.0.1:9", "AGNES_TOKEN": "x"})
    assert r.returncode == 4 and "cannot reach" in r.stderr
    r = agnes(home, "query", "SELECT * FROM customers")
    assert r.returncode == 3 and "customers" in r.stderr
    r = agnes(home, "query", "SELEC 1")  # the user's mistake: exit 1 (docs/cli.md), not 5 (a server failure)
    assert r.returncode == 1 and "syntax" in r.stderr.lower(), r.stderr
    r = agnes(home, "query", "SELECT * FROM eu")  # hints name commands, not HTTP routes
    assert "`agnes catalog`" in r.stderr and "/api/" not in r.stderr, r.stderr
    r = agnes(workdir / "stranger", "login", "--server", server.url, "--email", ANALYST["email"],
              stdin="wrong-password\n")
    assert r.returncode == 3 and "refused the token" not in r.stderr, r.stderr
    assert "password" in r.stderr.lower() and "Check the email and password" in r.stderr, r.stderr
    r = agnes(home, "pull", "customers")
    assert r.returncode == 3 and "customers" in r.stderr
    assert agnes(home, "pull", "--bogus").returncode == 2
    assert agnes(home, "pull", "--help").returncode == 0
    assert agnes(home, "logout").returncode == 0
    assert agnes(home, "status").returncode == 3


def test_admin_wrappers_and_the_client_doctor(world, workdir):
    server, _, home, _ = world
    boss = workdir / "boss"
    (boss / "ws").mkdir(parents=True)
    from test_users import ADMIN
    assert agnes(boss, "login", "--server", server.url, "--email", ADMIN["email"],
                 stdin=ADMIN["password"] + "\n").returncode == 0
    assert json.loads(agnes(boss, "admin", "registry", "--json").stdout)["tables"] == []  # uploads need none
    r = agnes(boss, "admin", "register-table", "Sales EU", "--source-type", "postgres", "--schedule", "every 1h")
    assert r.returncode == 0 and "Registered sales_eu" in r.stdout, r.stderr
    registry = json.loads(agnes(boss, "admin", "registry", "--json").stdout)
    assert [(t["id"], t["sync_schedule"]) for t in registry["tables"]] == [("sales_eu", "every 1h")]
    bad = agnes(boss, "admin", "register-table", "Sales EU", "--source-type", "postgres")
    assert bad.returncode == 1 and "already registered" in bad.stderr
    users = json.loads(agnes(boss, "admin", "users", "--json").stdout)
    assert {u["email"] for u in users} == {ADMIN["email"].lower(), ANALYST["email"].lower()}
    run = agnes(boss, "admin", "sync", "--wait", "--json")  # postgres is not configured: the run fails, and says so
    assert run.returncode == 1 and json.loads(run.stdout)["state"] == "failed", run.stderr
    assert "POST /api/admin/configure" in json.loads(run.stdout)["tables"][0]["error"]
    assert agnes(home, "admin", "users").returncode == 3  # an analyst is not an admin
    # The client doctor: fine after a pull, and says what to run when a file went missing.
    pull_json(home)
    ok = agnes(home, "doctor", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["mode"] == "client", ok.stdout
    (home / "ws" / "data" / "orders.parquet").unlink()
    broken = agnes(home, "doctor")
    assert broken.returncode == 1 and "agnes pull" in broken.stdout


def test_pitfall_the_manifest_hash_is_the_one_the_cli_checks(world):
    import hashlib
    server, _, home, _ = world
    pull_json(home)
    manifest = call(server, "GET", "/api/sync/manifest",
                    json.loads((home / "xdg" / "agnes" / "credentials.json").read_text())["token"]).json()
    local = hashlib.sha256((home / "ws" / "data" / "orders.parquet").read_bytes()).hexdigest()
    state = json.loads((home / "ws" / ".agnes" / "state.json").read_text())
    assert manifest["tables"]["orders"]["hash"] == local == state["tables"]["orders"]["hash"]


# ---- issue 13: pull's promises, exit codes and what the CLI tells people and agents ----

def server_file(workdir, table):
    """The Parquet file an upload published (uploads publish versioned names: <table>.<version>.parquet)."""
    files = list((workdir / "data" / "extracts" / "local" / "data").glob(f"{table}.*parquet"))
    assert len(files) == 1, files
    return files[0]


def corrupt_in_place(path):
    """Flip bytes in the middle of a file without changing its size or inode: the server still serves it under the
    manifest's hash, so only the CLI's own check can notice."""
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        chunk = f.read(16)
        f.seek(path.stat().st_size // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))


def test_a_corrupted_download_is_refused_and_not_kept(world, workdir):
    """Issue 13, item 22: without the hash check, a corrupted download was kept and the pull said 0."""
    server, _, home, _ = world
    corrupt_in_place(server_file(workdir, "orders"))
    r = agnes(home, "pull", "--json")
    assert r.returncode == 1, (r.returncode, r.stderr)  # failed - not 4: the server was reachable (item 19)
    doc = json.loads(r.stdout)
    assert doc["downloaded"] == [] and "does not match the manifest's hash" in doc["failed"][0]["error"]
    assert "not kept" in doc["failed"][0]["error"]
    data = home / "ws" / "data"
    assert not (data / "orders.parquet").exists() and not list(data.glob(".orders.parquet.part*"))


def test_a_partial_pull_exits_6_and_keeps_what_arrived(world, workdir):
    """Issue 13, item 22: no test ever saw exit 6 (some tables failed, the others were pulled)."""
    server, token, home, _ = world
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "customers"})
    corrupt_in_place(server_file(workdir, "customers"))
    r = agnes(home, "pull", "--json")
    assert r.returncode == 6, (r.returncode, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["downloaded"] == ["orders"] and [f["table"] for f in doc["failed"]] == ["customers"]
    assert (home / "ws" / "data" / "orders.parquet").exists()
    assert not (home / "ws" / "data" / "customers.parquet").exists()


def test_a_part_file_that_already_has_every_byte_is_verified_and_renamed(world):
    """Issue 13, item 19: a pull killed after its last byte but before the rename left a complete .part; the next
    pull asked for the bytes after the end, got 416, deleted the part, exited 4 and downloaded it all again."""
    server, _, home, _ = world
    first = pull_json(home)
    data = home / "ws" / "data"
    whole = (data / "orders.parquet").read_bytes()
    (data / "orders.parquet").rename(data / ".orders.parquet.part")
    state_path = home / "ws" / ".agnes" / "state.json"
    assert first["downloaded"] == ["orders"]
    (data / ".orders.parquet.part.hash").write_text(json.loads(state_path.read_text())["tables"]["orders"]["hash"] + "\n")
    state = json.loads(state_path.read_text())
    del state["tables"]["orders"]
    state_path.write_text(json.dumps(state))
    again = pull_json(home)
    assert again["downloaded"] == ["orders"] and again["bytes_downloaded"] == 0 and again["failed"] == []
    assert (data / "orders.parquet").read_bytes() == whole and not list(data.glob(".orders.parquet.part*"))
    # A part that is whole but of another version is replaced, not trusted.
    (data / "orders.parquet").rename(data / ".orders.parquet.part")
    (data / ".orders.parquet.part.hash").write_text("0" * 64 + "\n")
    state = json.loads(state_path.read_text())
    del state["tables"]["orders"]
    state_path.write_text(json.dumps(state))
    fresh = pull_json(home)
    assert fresh["downloaded"] == ["orders"] and fresh["bytes_downloaded"] == len(whole)
    assert (data / "orders.parquet").read_bytes() == whole


def test_a_local_query_on_a_missing_table_names_the_workspace_tables(world):
    """Issue 13, item 20: exit 2 (a usage error) and `Did you mean "pg_prepared_statements"?`."""
    server, _, home, _ = world
    pull_json(home)
    r = agnes(home, "query", "--local", "SELECT * FROM customers")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "customers" in r.stderr and "these tables: orders" in r.stderr and "agnes catalog" in r.stderr
    assert "pg_" not in r.stderr and "duckdb_" not in r.stderr
    typo = agnes(home, "query", "--local", "SELECT * FROM order")
    assert typo.returncode == 1 and "pg_" not in typo.stderr
    bad = agnes(home, "query", "--local", "SELEC 1")
    assert bad.returncode == 1 and "syntax" in bad.stderr.lower()
    (home / "ws" / "agnes.duckdb").unlink()
    missing = agnes(home, "query", "--local", "SELECT 1")
    assert missing.returncode == 1 and "agnes pull" in missing.stderr
    assert agnes(home, "query").returncode == 2  # a usage error is still one


def test_doctor_says_which_mode_it_runs_and_why(world, workdir):
    """Issue 13, item 20: in a server checkout with an analyst login, doctor switched to client checks silently."""
    server, _, home, _ = world
    client_side = agnes(home, "doctor")
    assert client_side.stdout.splitlines()[0].startswith("agnes doctor: client mode - an analyst login exists")
    checkout = home / "checkout"
    (checkout / "data" / "state").mkdir(parents=True)
    assert run_agnes_migrate(checkout)
    server_side = agnes(home, "doctor", cwd=checkout)
    first = server_side.stdout.splitlines()[0]
    assert first.startswith("agnes doctor: server mode - this directory holds a server's state"), server_side.stdout
    assert "--client" in first
    doc = json.loads(agnes(home, "doctor", "--json", cwd=checkout).stdout)
    assert doc["mode"] == "server" and "data/state/system.duckdb" in doc["mode_reason"]
    forced = json.loads(agnes(home, "doctor", "--client", "--json", cwd=checkout).stdout)
    assert forced["mode"] == "client" and forced["mode_reason"] == "asked for with --client"


def run_agnes_migrate(checkout):
    out = subprocess.run([AGNES_BIN, "migrate"], cwd=str(checkout), capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "HOME": str(checkout)})
    return out.returncode == 0 and (checkout / "data" / "state" / "system.duckdb").exists()


def test_init_speaks_plainly_and_knows_when_the_data_is_there(world):
    """Issue 13, item 20: "1 tables", and "run agnes pull now" right after a pull."""
    server, _, home, _ = world
    before = agnes(home, "init")
    assert "lists 1 table;" in before.stdout and "Run `agnes pull` now" in before.stdout, before.stdout
    pull_json(home)
    after = agnes(home, "init")
    assert "lists 1 table;" in after.stdout and "Run `agnes pull` now" not in after.stdout
    assert "already here" in after.stdout
    text = (home / "ws" / "CLAUDE.md").read_text()
    assert "500 rows" in text


def test_the_workspace_and_the_catalog_say_the_sql_is_duckdbs(world):
    """Issue 13, item 21: nothing said the dialect is DuckDB's; round(avg(x)::numeric, 6) gives 3 decimals."""
    server, _, home, _ = world
    assert agnes(home, "init").returncode == 0
    text = (home / "ws" / "CLAUDE.md").read_text()
    assert "SQL dialect: DuckDB's" in text and "DECIMAL(18,3)" in text and "round(avg(x)::numeric, 6)" in text
    listing = agnes(home, "catalog")
    assert listing.returncode == 0 and "SQL dialect: DuckDB's" in listing.stdout and "DECIMAL(18,3)" in listing.stdout
    one = agnes(home, "catalog", "orders")
    assert "SQL dialect: DuckDB's" in one.stdout
    doc = json.loads(agnes(home, "catalog", "--json").stdout)
    assert doc["sql_dialect"] == "duckdb" and "DECIMAL(18,3)" in doc["sql_dialect_note"]
    # The pitfall the note warns about is real (if DuckDB changes it, this note must change too).
    pull_json(home)
    r = agnes(home, "query", "--local", "--format", "csv", "SELECT round(avg(amount / 7)::numeric, 6) FROM orders")
    assert r.returncode == 0 and len(r.stdout.splitlines()[1].split(".")[1]) == 3, r.stdout


def test_admin_lists_have_a_header_and_no_nulls(world):
    """Issue 13, item 20: `agnes admin registry` printed `null` fields and no header."""
    server, token, home, _ = world
    boss = home.parent / "boss"
    (boss / "ws").mkdir(parents=True)
    env = {"AGNES_SERVER": server.url, "AGNES_TOKEN": token}
    empty = agnes(boss, "admin", "registry", env=env)
    assert empty.stdout.splitlines()[1:] == ["(none)"]  # uploads need no registration
    assert agnes(boss, "admin", "register-table", "sales", "--source-type", "postgres", env=env).returncode == 0
    registry = agnes(boss, "admin", "registry", env=env)
    assert registry.returncode == 0, registry.stderr
    lines = registry.stdout.splitlines()
    assert lines[0].split() == ["id", "source_type", "query_mode", "sync_schedule", "last_sync_error"]
    assert lines[1].split() == ["sales", "postgres", "local"] and "null" not in registry.stdout
    users = agnes(boss, "admin", "users", env=env)
    assert users.stdout.splitlines()[0].split() == ["id", "email", "role", "active"] and "null" not in users.stdout
