"""An extract is untrusted input (issue 12 item 10): a file whose bytes are damaged behind valid
block checksums crashes DuckDB 1.4 when opened. It must not crash `agnes contract check`,
`agnes rebuild` or `agnes serve`: it is checked in a child process, quarantined, reported, and every
other source keeps serving - at start-up too, so a start never becomes a restart loop."""
import json
import os
import shutil
import struct
import subprocess
import time

import requests

from conftest import AGNES_TOOLS, run_agnes
from health_view import full_health, with_service_token
from test_contract import make_extract
from test_orchestrator import extracts

BLOCK_SIZE = 262144
FIRST_BLOCK = 3 * 4096  # the main header and two database headers come first


def _checksum(block_body):
    """DuckDB 1.4's block checksum: 5381 XOR, over 8-byte words, of word * 0xbf58476d1ce4e5b9 (mod 2^64)."""
    result = 5381
    for (word,) in struct.iter_unpack("<Q", block_body):
        result ^= (word * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    return result


def damage(path, block=1):
    """Flip the first 64 bytes of a block's data and write a checksum that matches them again."""
    data = bytearray(path.read_bytes())
    start = FIRST_BLOCK + block * BLOCK_SIZE
    assert struct.unpack_from("<Q", data, start)[0] == _checksum(bytes(data[start + 8:start + BLOCK_SIZE])), \
        "the checksum formula no longer matches this DuckDB's files"
    for i in range(64):
        data[start + 8 + i] ^= 0x5A
    struct.pack_into("<Q", data, start, _checksum(bytes(data[start + 8:start + BLOCK_SIZE])))
    path.write_bytes(bytes(data))


def damaged_extract(base, source):
    path = make_extract(base, source, rows=(("damaged_t", "local"),))
    damage(path)
    # The premise: opening this file in-process really kills the process.
    raw = subprocess.run([os.path.join(AGNES_TOOLS, "duckdb_exec"), str(path), "SELECT * FROM _meta"],
                         capture_output=True, timeout=60)
    # A signal; or, under make asan, ASan's report (on stderr, or in its log_path file: an exit with nothing said).
    crashed = raw.returncode < 0 or b"AddressSanitizer" in raw.stderr or (raw.returncode != 0 and not raw.stderr)
    assert crashed, f"the damaged file did not crash DuckDB (exit {raw.returncode}): no test"
    return path


def test_contract_check_reports_a_file_that_crashes_the_engine(env, workdir):
    path = damaged_extract(workdir, "broken")
    out = run_agnes(["contract", "check", str(path)], env)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "[engine_crash]" in out.stdout and "the DuckDB engine" in out.stdout
    assert "rebuild it from its source" in out.stdout
    doc = json.loads(run_agnes(["contract", "check", str(path), "--json"], env).stdout)
    assert doc["ok"] is False and [v["rule"] for v in doc["violations"]] == ["engine_crash"]


def test_rebuild_quarantines_the_damaged_extract_and_publishes_the_rest(env, workdir):
    make_extract(extracts(workdir), "good", rows=(("orders", "local"),))
    path = damaged_extract(extracts(workdir), "broken")
    out = run_agnes(["rebuild", "--json"], env, timeout=120)
    assert out.returncode in (0, 1), (out.returncode, out.stderr)  # the command itself survives
    report = json.loads(out.stdout)
    sources = {s["name"]: s for s in report["sources"]}
    assert sources["good"]["status"] == "ok" and sources["good"]["views"] == ["orders"]
    assert sources["broken"]["status"] == "quarantined"
    assert "the DuckDB engine" in sources["broken"]["errors"][0]
    assert not path.exists() and path.with_name("extract.duckdb.quarantined").exists()
    again = json.loads(run_agnes(["rebuild", "--json"], env, timeout=120).stdout)  # reported until replaced
    assert {s["name"]: s["status"] for s in again["sources"]} == {"good": "ok", "broken": "quarantined"}


def test_serve_starts_with_a_damaged_extract_reports_it_and_serves_the_others(server_factory, env, workdir):
    make_extract(extracts(workdir), "good", rows=(("orders", "local"),))
    damaged_extract(extracts(workdir), "broken")
    env = with_service_token(env)
    server = server_factory(env, wait=False)  # before: SIGSEGV at start, every start
    server.wait_ready(timeout=180)  # the damaged file is checked twice (under ASan, seconds each)
    token = requests.post(server.url + "/auth/bootstrap", json={"email": "admin@example.com",
                                                                "password": "long enough password"},
                          timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert [t["id"] for t in requests.get(server.url + "/api/catalog/tables", headers=headers,
                                          timeout=30).json()["tables"]] == ["orders"]
    sample = requests.get(server.url + "/api/catalog/tables/orders/sample?n=2", headers=headers, timeout=60)
    assert sample.status_code == 200 and sample.json()["row_count"] == 2
    detailed = requests.get(server.url + "/api/health/detailed", headers=headers, timeout=30).json()
    broken = [s for s in detailed["catalog"]["sources"] if s["name"] == "broken"]
    assert broken and broken[0]["status"] == "quarantined"
    assert any("Source 'broken' is quarantined" in w for w in detailed["warnings"])
    assert full_health(server).status_code == 200
    # A restart neither crashes nor forgets the quarantine.
    server.stop()
    server.start(wait=False)
    server.wait_ready(timeout=180)
    detailed = requests.get(server.url + "/api/health/detailed", headers=headers, timeout=30).json()
    assert {s["name"]: s["status"] for s in detailed["catalog"]["sources"]}["broken"] == "quarantined"


def test_a_damaged_extract_written_while_serving_is_quarantined_then_a_good_one_replaces_it(
        server_factory, env, workdir):
    env.update(AGNES_CATALOG_WATCH="1")
    make_extract(extracts(workdir), "good", rows=(("orders", "local"),))
    server = server_factory(env)
    token = requests.post(server.url + "/auth/bootstrap", json={"email": "admin@example.com",
                                                                "password": "long enough password"},
                          timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    staging = workdir / "staging"
    damaged = damaged_extract(staging, "late")
    target = extracts(workdir) / "late"
    target.mkdir()
    shutil.copytree(damaged.parent / "data", target / "data")
    os.rename(damaged, target / "extract.duckdb")  # as a connector publishes: one rename

    def statuses():
        doc = requests.get(server.url + "/api/health/detailed", headers=headers, timeout=30).json()
        return {s["name"]: s["status"] for s in doc["catalog"].get("sources", [])}

    deadline = time.time() + 30
    while statuses().get("late") != "quarantined" and time.time() < deadline:
        time.sleep(0.3)
    assert statuses() == {"good": "ok", "late": "quarantined"}
    assert server.proc.poll() is None
    # The connector's next, good extract replaces the quarantined one and is served.
    good = make_extract(staging, "late_fixed", rows=(("late_t", "local"),))
    shutil.rmtree(target / "data")
    shutil.copytree(good.parent / "data", target / "data")
    os.rename(good, target / "extract.duckdb")
    deadline = time.time() + 30
    while statuses().get("late") != "ok" and time.time() < deadline:
        time.sleep(0.3)
    assert statuses() == {"good": "ok", "late": "ok"}
    tables = requests.get(server.url + "/api/catalog/tables", headers=headers, timeout=30).json()["tables"]
    assert sorted(t["id"] for t in tables) == ["late_t", "orders"]


def test_a_connector_publishing_a_damaged_extract_fails_its_run_and_the_last_good_data_stays(
        server_factory, env, workdir):
    from test_sync import count, good_connector, write_connector
    from test_users import call, setup_admin_and_analyst

    def trigger_and_wait(server, token):  # generous: under make asan a run and its check take seconds each
        run_id = call(server, "POST", "/api/sync/trigger", token).json()["run_id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            run = call(server, "GET", f"/api/sync/status/{run_id}", token).json()
            if run["state"] != "running":
                return None, run
            time.sleep(0.2)
        raise AssertionError("the run did not finish")

    connectors = workdir / "connectors"
    good_connector(connectors, workdir)
    server = server_factory(dict(env, CONNECTORS_DIR=str(connectors), AGNES_SYNC_TIMEOUT="120"))
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert call(server, "POST", "/api/admin/register-table", token,
                json={"name": "accounts", "source_type": "crm"}).status_code == 201
    assert trigger_and_wait(server, token)[1]["state"] == "done" and count(server, token) == 25
    damaged = damaged_extract(workdir / "staging", "crm_damaged")
    write_connector(connectors, f"#!/bin/sh\ncat > /dev/null\ncp '{damaged}' \"$OUTPUT_DIR/extract.duckdb\"\n")
    _, run = trigger_and_wait(server, token)
    error = run["tables"][0]["error"]
    assert run["state"] == "failed" and "engine_crash" in error and "the DuckDB engine" in error, run
    assert server.proc.poll() is None
    assert count(server, token) == 25  # the last good extract keeps serving
