"""The Keboola connector (SPEC §9; issue 15) against tests/fakes/keboola_storage.py, a local fake of the Storage
API and of its three clouds' file storage that follows the documented JSON and records every request, so each
test can assert what the client asked. The client is the real one: agnes reaches the fake over TLS (the fake's
CA in AGNES_CA_BUNDLE) with the cloud hosts sent to it by AGNES_CONNECT_TO."""
import datetime
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AGNES_TOOLS, ROOT
from test_users import call, setup_admin_and_analyst

sys.path.insert(0, str(ROOT / "tests" / "fakes"))
from keboola_storage import FakeKeboola, make_pki  # noqa: E402

DUCKDB_EXEC = os.path.join(AGNES_TOOLS, "duckdb_exec")

ORDERS_COLUMNS = ["id", "amount", "ratio", "paid", "day", "created", "status"]
ORDERS_TYPES = {"id": "INTEGER", "amount": "NUMERIC", "ratio": "FLOAT", "paid": "BOOLEAN", "day": "DATE",
                "created": "TIMESTAMP"}


def order(i):
    return (i, f"{i * 1.25:.2f}", i / 8, "true" if i % 2 else "false", f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
            f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d} 10:{i % 60:02d}:00", ["open", "paid", 'say "hi", ok'][i % 3])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("keboola-pki"))


def new_fake(workdir, pki, provider="aws"):
    fake = FakeKeboola(workdir / "fake", provider=provider).start(pki=pki)

    def parquet(columns, rows):  # Snowflake unloads every column as text
        src = workdir / f"pq-{time.monotonic_ns()}.json"
        src.write_text(json.dumps([dict(zip(columns, [None if v is None else str(v) for v in r])) for r in rows]))
        out = src.with_suffix(".parquet")
        cols = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
        subprocess.run([DUCKDB_EXEC, ":memory:", f"COPY (SELECT * FROM read_json('{src}', columns={{{cols}}})) "
                        f"TO '{out}' (FORMAT parquet)"], check=True, capture_output=True)
        return out.read_bytes()

    fake.parquet_writer = parquet
    return fake


@pytest.fixture
def fake(workdir, pki):
    f = new_fake(workdir, pki)
    yield f
    f.stop()


def seed(fake, orders=40):
    fake.add_table("in.c-crm.orders", ORDERS_COLUMNS, [order(i) for i in range(1, orders + 1)], types=ORDERS_TYPES,
                   lengths={"amount": "12,2"}, primary_key=["id"], description="Orders from the shop",
                   descriptions={"amount": "Gross amount in EUR"})
    fake.add_table("in.c-sales.customers", ["id", "name", "note"],
                   [(1, "Ada", ""), (2, "Bob", None), (3, "Cyril, Jr.", "line\nbreak")], types={"id": "INTEGER"},
                   primary_key=["id"])
    fake.add_table("out.c-report.daily", ["day", "total"], [("2024-01-01", "10.5"), ("2024-01-02", "7")],
                   typed=True, types={"day": "DATE", "total": "NUMERIC"}, native={"day": "DATE", "total": "NUMBER"},
                   lengths={"total": "38,2"})


def agnes_env(env, fake, **extra):
    return dict(env, KEBOOLA_STACK_URL=fake.url + "/", KEBOOLA_STORAGE_TOKEN=fake.token, **fake.agnes_env(), **extra)


STARTED = []


@pytest.fixture(autouse=True)
def no_crash():
    """A server that died on its own is a product bug: show its log."""
    STARTED.clear()
    yield
    for server in STARTED:
        code = server.proc.poll()
        assert code is None or code in (0, -signal.SIGKILL, -signal.SIGTERM), \
            f"agnes died with {code}:\n{server.output()[-6000:]}"


def start(server_factory, env, fake, **extra):
    server = server_factory(agnes_env(env, fake, **extra))
    STARTED.append(server)
    admin, _, analyst = setup_admin_and_analyst(server)
    return server, admin["access_token"], analyst["access_token"]


def query(server, token, sql):
    r = call(server, "POST", "/api/query", token, json={"sql": sql})
    assert r.status_code == 200, r.text
    return r.json()


def rows_of(server, token, table, columns):
    return query(server, token, f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")["rows"]


def register(server, token, expect=201, **row):
    r = call(server, "POST", "/api/admin/register-table", token, json={"source_type": "keboola", **row})
    assert r.status_code == expect, r.text
    return r


def trigger_and_wait(server, token, body=None, timeout=180):
    """A run to its end. Generous: TLS, several export jobs and the sanitizer build on a busy CI machine."""
    r = call(server, "POST", "/api/sync/trigger", token, **({} if body is None else {"json": body}))
    assert r.status_code == 200, r.text
    run_id = r.json()["run_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = call(server, "GET", f"/api/sync/status/{run_id}", token).json()
        if run["state"] != "running":
            return r.json(), run
        time.sleep(0.1)
    raise AssertionError(f"the run did not finish: {run}")


def states(run):
    return {t["table_id"]: t for t in run["tables"]}


def test_a_server_with_only_the_token_registers_and_syncs_every_table_at_its_first_trigger(
        server_factory, env, fake):
    seed(fake)
    fake.add_table("in.c-sales.empty", ["id", "label"], [], types={"id": "INTEGER"})
    server, token, _ = start(server_factory, env, fake)
    answer, run = trigger_and_wait(server, token)
    assert answer["discovering"] == "keboola"
    assert run["state"] == "done", json.dumps(run["tables"])
    assert sorted(run["discovered"]["tables"]) == ["in_crm_orders", "in_sales_customers", "in_sales_empty",
                                                   "out_report_daily"]
    assert "auto-discovery" in run["message"] and "keboola" in run["message"]
    assert {t: s["rows"] for t, s in states(run).items()} == {"in_crm_orders": 40, "in_sales_customers": 3,
                                                             "in_sales_empty": 0, "out_report_daily": 2}
    result = query(server, token, "SELECT * FROM in_crm_orders ORDER BY id")
    assert result["columns"] == ORDERS_COLUMNS
    assert result["types"] == ["BIGINT", "DECIMAL(12,2)", "DOUBLE", "BOOLEAN", "DATE", "TIMESTAMP", "VARCHAR"]
    assert result["rows"][:2] == [[1, "1.25", 0.125, True, "2024-02-02", "2024-02-02T10:01:00", "paid"],
                                  [2, "2.50", 0.25, False, "2024-03-03", "2024-03-03T10:02:00", 'say "hi", ok']]
    assert len(result["rows"]) == 40
    # Storage has no NULL for text: "" stays "", a missing number is NULL; quotes, commas, newlines survive
    assert query(server, token, "SELECT id, name, note FROM in_sales_customers ORDER BY id")["rows"] == \
        [[1, "Ada", ""], [2, "Bob", ""], [3, "Cyril, Jr.", "line\nbreak"]]
    typed = query(server, token, "SELECT * FROM out_report_daily ORDER BY day")
    assert typed["types"] == ["DATE", "DECIMAL(38,2)"] and typed["rows"][0] == ["2024-01-01", "10.50"]
    assert query(server, token, "SELECT count(*) FROM in_sales_empty")["rows"] == [[0]]
    registry = {r["id"]: r for r in call(server, "GET", "/api/admin/registry", token).json()["tables"]}
    orders = registry["in_crm_orders"]
    assert (orders["bucket"], orders["source_table"], orders["primary_key"]) == ("in.c-crm", "orders", ["id"])
    assert orders["description"] == "Orders from the shop"
    detail = call(server, "GET", "/api/catalog/tables/in_crm_orders", token).json()
    amount = [c for c in detail["columns"] if c["name"] == "amount"][0]
    assert amount["type"] == "DECIMAL(12,2)"
    # the slices were fetched from S3 with the file's STS credentials, signed (the fake checked the signature)
    slices = [r for r in fake.cloud_calls() if ".s3." in r["raw_host"]]
    assert slices and all(r["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=ASIA")
                          and r["headers"]["x-amz-security-token"] for r in slices)
    exports = fake.storage_calls("/export-async", "POST")
    assert all(e["body"]["gzip"] is True and e["body"]["fileType"] == "csv" for e in exports)
    assert all(r["headers"]["x-storageapi-token"] == fake.token for r in fake.storage_calls())
    # a second trigger does not discover again
    answer, run = trigger_and_wait(server, token)
    assert "discovering" not in answer and run["state"] == "done"


def test_an_incremental_sync_asks_for_changed_rows_and_merges_them_by_primary_key(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    register(server, token, name="orders", bucket="in.c-crm", source_table="orders", sync_strategy="incremental",
             incremental_window_days=0)
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done" and states(run)["orders"]["rows"] == 40, run
    first = fake.storage_calls("/export-async", "POST")[-1]
    assert "changedSince" not in first["body"]  # the first sync takes everything
    first_started = job_started(fake)
    time.sleep(1.1)
    changed = [order(i)[:6] + ("changed",) for i in range(1, 9)] + [order(i) for i in (41, 42)]
    fake.upsert_rows("in.c-crm.orders", changed)
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done", run
    second = fake.storage_calls("/export-async", "POST")[-1]
    # changedSince: the last good export's start on Storage's clock (window 0 days)
    assert int(second["body"]["changedSince"]) == first_started, second["body"]
    assert states(run)["orders"]["rows"] == 42
    got = query(server, token, f"SELECT {', '.join(ORDERS_COLUMNS)} FROM orders ORDER BY id")["rows"]
    assert got == [typed_order(w) for w in sorted(fake.table_rows("in.c-crm.orders"), key=lambda r: r[0])]
    assert sum(1 for r in got if r[6] == "changed") == 8
    # nothing changed, a 2-day window: asked again from the second export's start minus two days
    second_started = job_started(fake)
    assert call(server, "PUT", "/api/admin/registry/orders", token,
                json={"incremental_window_days": 2}).status_code == 200
    _, run = trigger_and_wait(server, token, ["orders"])
    third = fake.storage_calls("/export-async", "POST")[-1]
    assert int(third["body"]["changedSince"]) == second_started - 2 * 86400 and run["state"] == "done", run
    assert query(server, token, "SELECT count(*), count(*) FILTER (status = 'changed') FROM orders")["rows"] == \
        [[42, 8]]


def typed_order(row):
    """A fake orders row (Storage's text) as /api/query answers it with the Storage types: row for row, every column."""
    i, amount, ratio, paid, day, created, status = row
    return [int(i), amount, float(ratio), paid == "true", day, created.replace(" ", "T"), status]


def job_started(fake):
    """Unix seconds of the newest export job's createdTime, as Storage printed it ("...+0100")."""
    newest = fake.jobs[max(fake.jobs)]
    return int(datetime.datetime.strptime(newest["createdTime"], "%Y-%m-%dT%H:%M:%S%z").timestamp())


def test_incremental_needs_a_primary_key_and_says_so(server_factory, env, fake):
    fake.add_table("in.c-logs.events", ["at", "what"], [("2024-01-01", "x")])
    server, token, _ = start(server_factory, env, fake)
    register(server, token, name="events", bucket="in.c-logs", source_table="events", sync_strategy="incremental")
    _, run = trigger_and_wait(server, token, ["events"])
    error = states(run)["events"]["error"]
    assert run["state"] == "failed" and "no primary key" in error and "primary_key" in error, run
    assert not fake.storage_calls("/export-async")  # refused before asking Storage for anything
    call(server, "PUT", "/api/admin/registry/events", token, json={"primary_key": ["at"]})
    _, run = trigger_and_wait(server, token, ["events"])
    assert run["state"] == "done", run


def test_a_revoked_token_fails_the_sync_with_the_fix_and_keeps_the_last_good_data(server_factory, env, fake, workdir):
    seed(fake)
    server, token, analyst = start(server_factory, env, fake)
    texts = []
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done"
    texts.append(json.dumps(run))
    fake.revoke()
    answer, run = trigger_and_wait(server, token)
    texts.append(json.dumps(run))
    assert run["state"] == "failed", run
    error = states(run)["in_crm_orders"]["error"]
    assert "rejected the Storage API token" in error and "configure it again" in error, error
    assert query(server, token, "SELECT count(*) FROM in_crm_orders")["rows"] == [[40]]  # the last good data
    status = call(server, "GET", "/api/sync/status", token)
    registry = call(server, "GET", "/api/admin/registry", token)
    discover = call(server, "POST", "/api/admin/discover-and-register", token)
    assert discover.status_code == 400 and "rejected the Storage API token" in discover.json()["detail"]
    listing = call(server, "GET", "/api/admin/discover-tables", token)
    assert listing.status_code == 400
    settings = call(server, "GET", "/api/admin/configure", token)
    assert settings.json()["sources"][2]["current"]["secret_set"] is True
    texts += [status.text, registry.text, discover.text, listing.text, settings.text,
              call(server, "GET", "/api/health/detailed", token).text]
    secret = fake.token.rsplit("-", 1)[1]
    for text in texts:
        assert fake.token not in text and secret not in text
    log = server.output()
    assert fake.token not in log and secret not in log


def test_configure_keboola_verifies_the_token_and_keeps_it_only_in_env_overlay(server_factory, env, fake, workdir):
    seed(fake)
    server = server_factory(dict(env, **fake.agnes_env()))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    offered = call(server, "GET", "/api/admin/configure", token).json()
    assert "keboola" in offered["configurable"] and offered["data_source"] == "local"
    keboola = [s for s in offered["sources"] if s["type"] == "keboola"][0]
    assert keboola["fields"] == ["keboola_url", "keboola_token"] and keboola["current"]["secret_set"] is False
    secret = fake.token.rsplit("-", 1)[1]
    state = workdir / "state"
    bad = [
        ({"keboola_url": fake.url.replace("https", "http"), "keboola_token": fake.token}, 422, "keboola_url_not_https",
         "https"),
        ({"keboola_url": fake.url + "/v2/storage", "keboola_token": fake.token}, 422, "keboola_url_invalid",
         "without a path"),
        ({"keboola_url": fake.url}, 422, "keboola_fields_missing", "keboola_token"),
        ({"keboola_url": "https://", "keboola_token": fake.token}, 422, "keboola_url_invalid", "not a URL"),
        ({"keboola_url": "ftp://connection.keboola.com", "keboola_token": fake.token}, 422, "keboola_url_not_https",
         "use https://connection.keboola.com"),
        ({"keboola_url": fake.url, "keboola_token": "8625-373115-" + "0" * 40}, 400, "keboola_token_rejected",
         "Wrong token"),
        ({"keboola_url": "https://localhost:1", "keboola_token": fake.token}, 400, "keboola_stack_unreachable",
         "Wrong stack URL"),
        ({"keboola_url": "https://storage.googleapis.com", "keboola_token": fake.token}, 400,
         "keboola_stack_unreachable", "not a Keboola Storage API"),
    ]
    for fields, status, reason, words in bad:
        r = call(server, "POST", "/api/admin/configure", token, json={"data_source": "keboola", **fields})
        assert r.status_code == status and r.json()["reason"] == reason and words in r.json()["detail"], \
            (fields, r.text)
        assert fake.token not in r.text and secret not in r.text
    fake.tokens["8625-1-" + "r" * 40] = dict(fake.tokens[fake.token], bucketPermissions={})
    r = call(server, "POST", "/api/admin/configure", token,
             json={"data_source": "keboola", "keboola_url": fake.url, "keboola_token": "8625-1-" + "r" * 40})
    assert r.status_code == 400 and r.json()["reason"] == "keboola_no_read_access", r.text
    assert "read access" in r.json()["detail"] and "r" * 40 not in r.text
    assert not (state / "instance.yaml").exists() and not (state / ".env_overlay").exists()
    r = call(server, "POST", "/api/admin/configure", token,
             json={"data_source": "keboola", "keboola_url": fake.url + "/", "keboola_token": fake.token})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["verified"]["project_id"] == "8625" and body["verified"]["project_name"] == "Acme analytics"
    assert body["verified"]["file_storage_provider"] == "aws" and body["verified"]["readable_buckets"] == 3
    assert fake.token not in r.text and secret not in r.text
    overlay = state / ".env_overlay"
    assert stat.S_IMODE(overlay.stat().st_mode) == 0o600 and f'KEBOOLA_STORAGE_TOKEN="{fake.token}"' in \
        overlay.read_text()
    settings = (state / "instance.yaml").read_text()
    assert "type: keboola" in settings and f"stack_url: {fake.url}\n" in settings and secret not in settings
    now = call(server, "GET", "/api/admin/configure", token).json()
    assert now["data_source"] == "keboola" and now["sources"][2]["current"]["secret_set"] is True
    assert now["sources"][2]["current"]["stack_url"] == fake.url and secret not in json.dumps(now)
    found = call(server, "POST", "/api/admin/discover-and-register", token).json()
    assert found["registered"] == 3, found
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run
    log = server.output()
    assert fake.token not in log and secret not in log
    verify = fake.storage_calls("/tokens/verify")
    assert verify and all(r["raw_host"].startswith("localhost") for r in verify)


def test_configure_uses_the_environment_and_refuses_what_it_would_override(server_factory, env, fake, workdir):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    other = "8625-9-" + "o" * 40
    fake.tokens[other] = dict(fake.tokens[fake.token])
    for fields, words in [({"keboola_url": "https://connection.keboola.com"}, "KEBOOLA_STACK_URL is set"),
                          ({"keboola_token": other}, "KEBOOLA_STORAGE_TOKEN is set")]:
        r = call(server, "POST", "/api/admin/configure", token, json={"data_source": "keboola", **fields})
        assert r.status_code == 409 and r.json()["reason"] == "keboola_environment_conflict", r.text
        assert words in r.json()["detail"] and other not in r.text
    r = call(server, "POST", "/api/admin/configure", token, json={"data_source": "keboola", "keboola_url": fake.url})
    assert r.status_code == 200, r.text
    assert r.json()["saved"]["secret"] == "the server's environment (KEBOOLA_STORAGE_TOKEN, not copied)"
    assert not (workdir / "state" / ".env_overlay").exists()  # the secret stays where the operator put it
    assert "type: keboola" in (workdir / "state" / "instance.yaml").read_text()


def test_configure_refuses_private_stacks_unless_allowed(server_factory, env, fake, workdir):
    server = server_factory(dict(env, AGNES_CA_BUNDLE=fake.ca))  # no AGNES_ALLOW_PRIVATE_SOURCES
    token = setup_admin_and_analyst(server)[0]["access_token"]
    for url in (fake.url, "https://127.0.0.1:8443", "https://169.254.169.254"):
        r = call(server, "POST", "/api/admin/configure", token,
                 json={"data_source": "keboola", "keboola_url": url, "keboola_token": fake.token})
        assert r.status_code == 400 and "AGNES_ALLOW_PRIVATE_SOURCES=1" in r.json()["detail"], (url, r.text)
    assert not fake.storage_calls() and not (workdir / "state" / ".env_overlay").exists()


def test_a_manifest_entry_pointing_at_a_private_address_is_refused_at_connect_time(server_factory, env, fake):
    """The socket guard: with private addresses not allowed, even a host the operator mapped with connect-to
    (here: the cloud storage) is refused once it resolves to loopback; the stack itself is reached by a proxy-free
    public-looking name only in production, so this test configures nothing and syncs with env settings."""
    seed(fake)
    server = server_factory(dict(env, KEBOOLA_STACK_URL=fake.url, KEBOOLA_STORAGE_TOKEN=fake.token,
                                 AGNES_CA_BUNDLE=fake.ca, AGNES_CONNECT_TO=fake.connect_to))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    listing = call(server, "GET", "/api/admin/discover-tables", token)
    assert listing.status_code == 400 and "AGNES_ALLOW_PRIVATE_SOURCES=1" in listing.json()["detail"], listing.text
    assert not fake.requests  # refused before a byte left


def test_discovery_lists_storage_metadata_and_reports_id_collisions(server_factory, env, fake):
    seed(fake)
    fake.add_table("in.crm.orders", ["id"], [(1,)])  # a newer bucket without "c-": the same view name
    fake.add_table("in.c-shared.mirror", ["k", "amount"], [("a", "1.5")], alias=True, types={"amount": "FLOAT"},
                   descriptions={"amount": "from the source project"})
    server, token, _ = start(server_factory, env, fake)
    listing = call(server, "GET", "/api/admin/discover-tables", token).json()
    tables = {t["keboola_id"]: t for t in listing["tables"]}
    assert listing["source"] == "keboola" and listing["count"] == 5
    orders = tables["in.c-crm.orders"]
    assert orders["id"] == "in_crm_orders" and orders["registration"] == "collision"
    assert tables["in.crm.orders"]["registration"] == "collision"
    # the wizard's words for the same: unchecked with a sentence, suggested as a local copy
    assert "would also be named 'in_crm_orders'" in orders["conflict"] and orders["registered_as"] is None
    assert (orders["bucket"], orders["source_table"]) == ("in.c-crm", "orders")
    assert {t["suggested_query_mode"] for t in listing["tables"]} == {"local"}
    assert "conflict" not in tables["in.c-sales.customers"]
    assert (orders["rows_estimate"], orders["primary_key"], orders["description"]) == (40, ["id"],
                                                                                      "Orders from the shop")
    assert orders["size_bytes"] > 0 and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0100", orders["last_change"])
    assert {c["name"]: c["type"] for c in orders["columns"]} == {
        "id": "BIGINT", "amount": "DECIMAL(12,2)", "ratio": "DOUBLE", "paid": "BOOLEAN", "day": "DATE",
        "created": "TIMESTAMP", "status": "VARCHAR"}
    assert [c["description"] for c in orders["columns"] if c["name"] == "amount"] == ["Gross amount in EUR"]
    mirror = tables["in.c-shared.mirror"]  # alias: metadata under sourceTable
    assert mirror["kind"] == "alias table" and mirror["columns"][1] == {"name": "amount", "type": "DOUBLE",
                                                                         "description": "from the source project"}
    assert tables["out.c-report.daily"]["columns"][1]["type"] == "DECIMAL(38,2)"  # typed table's definition
    found = call(server, "POST", "/api/admin/discover-and-register", token).json()
    assert sorted(found["tables"]) == ["in_sales_customers", "in_shared_mirror", "out_report_daily"]
    collided = {e["table"] for e in found["error_details"]}
    assert collided == {"in.c-crm.orders", "in.crm.orders"} and found["errors"] == 2
    assert "register each by hand" in found["error_details"][0]["error"]
    # choosing tables (the wizard's step 4)
    register(server, token, name="crm orders", bucket="in.c-crm", source_table="orders")
    listing = call(server, "GET", "/api/admin/discover-tables", token).json()
    assert {t["id"]: t["registration"] for t in listing["tables"]}["in_sales_customers"] == "registered"
    now = {t["keboola_id"]: t for t in listing["tables"]}
    assert now["in.c-sales.customers"]["registered_as"] == "in_sales_customers"
    assert "would also be named" in now["in.crm.orders"]["conflict"]  # still reported, never dropped
    assert call(server, "DELETE", "/api/admin/registry/out_report_daily", token).status_code in (200, 204)
    register(server, token, name="out_report_daily", bucket="in.c-crm", source_table="orders")  # takes daily's id
    daily = {t["keboola_id"]: t for t in call(server, "GET", "/api/admin/discover-tables", token).json()["tables"]}
    assert daily["out.c-report.daily"]["registration"] == "id_taken"
    assert "already registered for another table" in daily["out.c-report.daily"]["conflict"]


def test_discover_and_register_takes_the_tables_the_admin_chose(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    found = call(server, "POST", "/api/admin/discover-and-register", token,
                 json={"tables": ["in_crm_orders", "out.c-report.daily"], "sync_schedule": "every 1h"}).json()
    assert sorted(found["tables"]) == ["in_crm_orders", "out_report_daily"], found
    rows = call(server, "GET", "/api/admin/registry", token).json()["tables"]
    assert {r["id"] for r in rows} == {"in_crm_orders", "out_report_daily"}
    assert all(r["sync_schedule"] == "every 1h" for r in rows)


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_each_cloud_s_slices_are_fetched_its_own_way(server_factory, env, workdir, pki, provider):
    fake = new_fake(workdir, pki, provider)
    try:
        seed(fake)
        server, token, _ = start(server_factory, env, fake)
        _, run = trigger_and_wait(server, token)
        assert run["state"] == "done", run
        assert query(server, token, "SELECT count(*), sum(id) FROM in_crm_orders")["rows"] == [[40, 820]]
        slices = [r for r in fake.cloud_calls() if re.search(r"_0_0_\d+\.csv", r["path"])]
        assert len(slices) == 9  # three tables, three slices each
        for r in slices:
            if provider == "aws":
                assert r["raw_host"].startswith("kbc-sapi-files.s3.us-east-1.amazonaws.com")
                assert "x-amz-security-token" in r["headers"]["authorization"]
            elif provider == "gcp":
                assert r["raw_host"].startswith("storage.googleapis.com") and r["query"] == {"alt": "media"}
                assert r["raw_path"].startswith("/storage/v1/b/kbc-sapi-files-gcs/o/exp-15%2F578%2F")
                assert r["headers"]["authorization"].startswith("Bearer ya29.")
            else:
                assert r["raw_host"].startswith("kbcfiles.blob.core.windows.net") and r["query"]["sig"]
                assert "authorization" not in r["headers"]
        assert all("x-storageapi-token" not in r["headers"] for r in fake.cloud_calls())  # the token stays home
    finally:
        fake.stop()


def test_a_single_file_export_is_read_from_its_signed_url(server_factory, env, fake):
    fake.add_table("in.c-small.codes", ["code", "n"], [("a", 1), ("b", 2)], types={"n": "INTEGER"}, sliced=False)
    server, token, _ = start(server_factory, env, fake)
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run
    assert query(server, token, "SELECT * FROM in_small_codes ORDER BY n")["rows"] == [["a", 1], ["b", 2]]


def test_429_and_503_are_retried_after_retry_after(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    register(server, token, name="orders", bucket="in.c-crm", source_table="orders")
    fake.fail("POST", r"/export-async$", 503, body={"status": "maintenance", "reason": "Upgrading Storage",
                                                    "estimatedEndTime": "2026-11-30T16:00:00+0100"},
              headers={"Retry-After": "1"})
    fake.fail("GET", r"/jobs/", 429, body={"error": "Too many requests", "code": "tooManyRequests"},
              headers={"Retry-After": "1"})
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done", run
    exports = fake.storage_calls("/export-async", "POST")
    assert len(exports) == 2 and exports[1]["time"] - exports[0]["time"] >= 0.9
    jobs = fake.storage_calls("/jobs/")
    assert jobs[1]["time"] - jobs[0]["time"] >= 0.9
    assert "Upgrading Storage" in server.output()  # the retry is logged with Storage's reason


def test_a_failed_export_job_fails_its_table_with_keboolas_message(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done"
    fake.job_errors["in.c-crm.orders"] = ("Snowflake ran out of memory while unloading", "storage.tableExport")
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "partial", run
    error = states(run)["in_crm_orders"]["error"]
    assert "export job" in error and "Snowflake ran out of memory while unloading" in error, error
    assert states(run)["in_sales_customers"]["state"] == "done"
    assert query(server, token, "SELECT count(*) FROM in_crm_orders")["rows"] == [[40]]
    registry = {r["id"]: r for r in call(server, "GET", "/api/admin/registry", token).json()["tables"]}
    assert "Snowflake ran out of memory" in registry["in_crm_orders"]["last_sync_error"]


def test_keboola_4xx_is_the_admins_problem_400_not_502(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    r = call(server, "POST", "/api/admin/register-table/precheck", token,
             json={"name": "nope", "source_type": "keboola", "bucket": "in.c-crm", "source_table": "missing"})
    assert r.status_code == 400 and "no table in.c-crm.missing" in r.json()["detail"], r.text
    r = call(server, "POST", "/api/admin/register-table/precheck", token,
             json={"name": "orders", "source_type": "keboola", "bucket": "in.c-crm", "source_table": "orders"})
    assert r.status_code == 200 and r.json()["table"]["column_count"] == 7, r.text
    fake.fail("GET", r"/v2/storage/tables$", 400, body={"error": "Invalid include", "code": 400})
    fake.fail("GET", r"/v2/storage/buckets$", 400, body={"error": "Invalid include", "code": 400})
    r = call(server, "GET", "/api/admin/discover-tables", token)
    assert r.status_code == 400 and "Invalid include" in r.json()["detail"], r.text


def test_slow_failing_and_expiring_slices_are_fetched_again(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake, AGNES_KEBOOLA_STALL_SECONDS="1")
    register(server, token, name="orders", bucket="in.c-crm", source_table="orders")
    fake.slice_fault("status", status=503, index=0)
    fake.slice_fault("stall", seconds=4, index=1)
    fake.slice_fault("drop", index=2)
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done", run
    assert query(server, token, "SELECT count(*), count(DISTINCT id) FROM orders")["rows"] == [[40, 40]]
    fetched = [r["path"] for r in fake.cloud_calls() if ".s3." in r["raw_host"]]
    for i in range(3):
        assert sum(p.endswith(f"_0_0_{i}.csv.gz") for p in fetched) == 2, fetched
    # the signed URLs and STS credentials expire mid-download: the file detail is read again
    fake.expire_after_slices = fake.slice_fetches + 1
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done", run
    file_reads = fake.storage_calls("/files/")
    assert len(file_reads) == 3 and all(r["query"] == {"federationToken": "1"} for r in file_reads)
    assert query(server, token, "SELECT count(*) FROM orders")["rows"] == [[40]]
    assert "credentials expired" in server.output()


@pytest.mark.parametrize("parallel", [3, 1])
def test_the_slices_of_one_export_download_in_parallel(server_factory, env, fake, parallel):
    """Every slice of the first attempt stalls for two seconds: with three downloads at once the three requests
    reach the fake together; with AGNES_KEBOOLA_PARALLEL_DOWNLOADS=1 each waits for the one before to give up."""
    seed(fake)
    server, token, _ = start(server_factory, env, fake, AGNES_KEBOOLA_STALL_SECONDS="1",
                             AGNES_KEBOOLA_PARALLEL_DOWNLOADS=str(parallel))
    register(server, token, name="orders", bucket="in.c-crm", source_table="orders")
    for index in range(3):
        fake.slice_fault("stall", seconds=2, index=index)
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done", run
    assert query(server, token, "SELECT count(*), count(DISTINCT id) FROM orders")["rows"] == [[40, 40]]
    first = {}
    for r in fake.cloud_calls():
        m = re.search(r"_0_0_(\d+)\.csv", r["path"])
        if m:
            first.setdefault(m.group(1), r["time"])
    assert sorted(first) == ["0", "1", "2"], first
    spread = max(first.values()) - min(first.values())
    if parallel == 3:
        assert spread < 0.9, first
    else:
        assert spread >= 1.5, first  # two stalls of at least a second each, one after the other


def test_where_filters_resolve_date_placeholders_and_unknown_ones_are_refused(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    r = register(server, token, expect=422, name="bad", bucket="in.c-crm", source_table="orders",
                 where_filters=[{"column": "day", "operator": "ge", "values": ["{{last_fortnight}}"]}])
    assert "unknown placeholder {{last_fortnight}}" in r.json()["detail"] and "{{last_month}}" in r.json()["detail"]
    for bad, words in [([{"column": "status", "operator": "like", "values": ["x"]}], "operator 'like'"),
                       ([{"column": "status", "values": []}], "non-empty list"),
                       ({"column": "status"}, "must be a list")]:
        r = register(server, token, expect=422, name="bad", bucket="in.c-crm", source_table="orders",
                     where_filters=bad)
        assert words in r.json()["detail"], r.text
    register(server, token, name="paid_orders", bucket="in.c-crm", source_table="orders",
             where_filters=[{"column": "status", "operator": "eq", "values": ["paid", "open"]},
                            {"column": "day", "operator": "le", "values": ["{{today}}"]}])
    _, run = trigger_and_wait(server, token, ["paid_orders"])
    assert run["state"] == "done", run
    body = fake.storage_calls("/export-async", "POST")[-1]["body"]
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert body["whereFilters"] == [{"column": "status", "operator": "eq", "values": ["paid", "open"]},
                                    {"column": "day", "operator": "le", "values": [today]}]
    assert query(server, token, "SELECT count(*), count(*) FILTER (status LIKE 'say%') FROM paid_orders")["rows"] == \
        [[27, 0]]
    r = register(server, token, expect=422, name="inc", bucket="in.c-crm", source_table="orders",
                 sync_strategy="incremental", where_filters=[{"column": "status", "values": ["paid"]}])
    assert "cannot be combined" in r.json()["detail"]


def test_materialized_tables_take_a_json_export_spec_not_sql(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    r = register(server, token, expect=422, name="big_orders", bucket="in.c-crm", source_table="orders",
                 query_mode="materialized", source_query="SELECT * FROM orders WHERE amount > 10")
    assert "JSON export spec, not SQL" in r.json()["detail"] and "whereFilters" in r.json()["detail"]
    r = register(server, token, expect=422, name="big_orders", bucket="in.c-crm", source_table="orders",
                 query_mode="materialized", source_query='{"colums": ["id"]}')
    assert 'unknown key "colums"' in r.json()["detail"]
    r = register(server, token, expect=422, name="remote_orders", bucket="in.c-crm", source_table="orders",
                 query_mode="remote")
    assert "local or materialized" in r.json()["detail"]
    register(server, token, name="big_orders", bucket="in.c-crm", source_table="orders", query_mode="materialized",
             source_query=json.dumps({"columns": ["id", "amount", "status"], "whereFilters": [
                 {"column": "amount", "operator": "gt", "values": [40], "dataType": "DOUBLE"}]}))
    register(server, token, name="orders_pq", bucket="in.c-crm", source_table="orders", query_mode="materialized",
             source_query=json.dumps({"file_type": "parquet", "columns": ["id", "paid", "created"]}))
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done", run
    big = query(server, token, "SELECT * FROM big_orders ORDER BY id")
    assert big["columns"] == ["id", "amount", "status"] and big["types"] == ["BIGINT", "DECIMAL(12,2)", "VARCHAR"]
    assert [r[0] for r in big["rows"]] == [33, 34, 35, 36, 37, 38, 39, 40]
    exports = {e["path"]: e["body"] for e in fake.storage_calls("/export-async", "POST")}
    assert exports["/v2/storage/tables/in.c-crm.orders/export-async"]  # both asked Storage, not SQL
    pq = query(server, token, "SELECT * FROM orders_pq ORDER BY id LIMIT 1")
    assert pq["types"] == ["BIGINT", "BOOLEAN", "TIMESTAMP"] and pq["rows"] == [[1, True, "2024-02-02T10:01:00"]]
    assert any(e["body"].get("fileType") == "parquet" and "gzip" not in e["body"]
               for e in fake.storage_calls("/export-async", "POST"))


def test_partitioned_tables_load_in_chunks_and_merge_into_their_partitions(server_factory, env, fake, workdir):
    seed(fake)
    fake.tables["in.c-crm.orders"].created = time.time() - 70 * 86400
    fake.age_rows("in.c-crm.orders", 40 * 86400)  # imported 40 days ago
    server, token, _ = start(server_factory, env, fake)
    register(server, token, name="orders", bucket="in.c-crm", source_table="orders", sync_strategy="partitioned",
             partition_by="day", partition_granularity="month", initial_load_chunk_days=30,
             incremental_window_days=0)
    r = register(server, token, expect=422, name="p2", bucket="in.c-crm", source_table="orders",
                 sync_strategy="partitioned")
    assert "partition_by" in r.json()["detail"]
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done" and states(run)["orders"]["rows"] == 40, run
    chunks = [e["body"] for e in fake.storage_calls("/export-async", "POST")]
    assert len(chunks) == 3, chunks  # now-31d.., now-61d..now-30d, then everything older
    assert "changedSince" in chunks[0] and "changedUntil" not in chunks[0]
    assert "changedSince" in chunks[1] and "changedUntil" in chunks[1]
    assert "changedSince" not in chunks[2] and "changedUntil" in chunks[2]
    parts = workdir / "data" / "extracts" / "keboola" / "data" / "orders.partitions"
    assert sorted(p.name for p in parts.iterdir()) == [f"2024_{m:02d}.parquet" for m in range(1, 13)]
    assert rows_of(server, token, "orders", ["id", "status"]) == [[r[0], r[6]] for r in
                                                                  sorted(fake.table_rows("in.c-crm.orders"))]
    time.sleep(1.1)
    moved = list(order(5))
    moved[4], moved[6] = "2025-06-01", "moved"  # a new month: its row leaves 2024_06
    fake.upsert_rows("in.c-crm.orders", [tuple(moved), order(6)[:6] + ("touched",)])
    _, run = trigger_and_wait(server, token, ["orders"])
    assert run["state"] == "done" and states(run)["orders"]["rows"] == 40, run
    assert "changedSince" in fake.storage_calls("/export-async", "POST")[-1]["body"]
    assert (parts / "2025_06.parquet").exists()
    got = query(server, token, "SELECT id, CAST(day AS VARCHAR), status FROM orders ORDER BY id")["rows"]
    want = sorted([r[0], r[4], r[6]] for r in fake.table_rows("in.c-crm.orders"))
    assert got == want
    # the union is what analysts download
    manifest = call(server, "GET", "/api/sync/manifest", token).json()["tables"]
    assert manifest["orders"]["rows"] == 40


def test_kill_9_mid_download_keeps_the_last_extract_and_the_next_start_sweeps(server_factory, env, fake, workdir):
    seed(fake)
    server, token, _ = start(server_factory, env, fake)
    _, run = trigger_and_wait(server, token)
    assert run["state"] == "done"
    fake.slice_fault("stall", seconds=20, times=50)
    r = call(server, "POST", "/api/sync/trigger", token)
    assert r.status_code == 200
    tmp = workdir / "data" / "tmp"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp.glob("sync-keboola-run_*/*.export/slice_*")):
        time.sleep(0.1)
    assert list(tmp.glob("sync-keboola-run_*/*.export/slice_*")), "the download never started"
    server.stop(sig=signal.SIGKILL)
    fake.slice_rules.clear()
    again = server_factory(server.env)
    assert not list(tmp.glob("sync-keboola-run_*")), "a killed run's work dir was not swept at start"
    assert "swept a killed sync" in again.output()
    assert query(again, token, "SELECT count(*) FROM in_crm_orders")["rows"] == [[40]]
    _, run = trigger_and_wait(again, token)
    assert run["state"] == "done", run


def test_the_scheduler_discovers_and_syncs_without_a_trigger(server_factory, env, fake):
    seed(fake)
    server, token, _ = start(server_factory, env, fake, AGNES_SCHEDULER="on", AGNES_SYNC_DEFAULT_SCHEDULE="every 1h")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = call(server, "GET", "/api/sync/status", token).json()["runs"]
        if runs and runs[-1]["state"] != "running":
            break
        time.sleep(0.2)
    # every run in the message: under ASan one run in three ended with a done run without the discovery note
    assert runs and runs[-1]["state"] == "done" and "auto-discovery" in runs[-1].get("message", ""), \
        json.dumps(runs)[:8000]
    assert query(server, token, "SELECT count(*) FROM in_sales_customers")["rows"] == [[3]]
