"""The demo source that `make run` seeds into an empty data dir."""
from conftest import run_agnes
from test_contract import make_extract
from test_orchestrator import catalog_query, extracts


def test_demo_is_seeded_into_an_empty_data_dir_and_passes_the_contract(server_factory, env, workdir):
    env["AGNES_DEMO"] = "1"
    server_factory(env).stop()
    extract = workdir / "data" / "extracts" / "demo" / "extract.duckdb"
    out = run_agnes(["contract", "check", str(extract)], env)
    assert out.returncode == 0 and "(3 tables, 3 local)" in out.stdout
    counts = catalog_query(workdir, ["demo"], "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM "
                                              "products), (SELECT count(*) FROM orders)")
    assert counts == "200\t50\t5000"
    # Orders point at real customers and products.
    orphans = catalog_query(workdir, ["demo"], "SELECT count(*) FROM orders o LEFT JOIN customers c USING "
                                               "(customer_id) LEFT JOIN products p USING (product_id) "
                                               "WHERE c.customer_id IS NULL OR p.product_id IS NULL")
    assert orphans == "0"


def test_no_demo_unless_asked_or_when_data_exists(server_factory, env, workdir):
    server_factory(env).stop()
    assert not (workdir / "data" / "extracts" / "demo").exists()
    make_extract(extracts(workdir), "real", rows=(("orders", "local"),))
    env["AGNES_DEMO"] = "1"
    server_factory(env).stop()
    assert not (workdir / "data" / "extracts" / "demo").exists()


def demo_dir(workdir):
    return workdir / "data" / "extracts" / "demo"


def test_the_demo_makes_way_for_the_first_real_source(server_factory, env, workdir):
    """Issue 13, item 16: with the demo on, a real source's `orders` was refused ("belongs to source 'demo'") and
    `SELECT count(*) FROM orders` returned the demo's 5,000 rows."""
    from test_upload import upload_raw
    from test_users import call, setup_admin_and_analyst
    env["AGNES_DEMO"] = "1"
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert call(server, "POST", "/api/query", token, json={"sql": "SELECT count(*) FROM orders"}).json()["rows"] == [[5000]]
    r = upload_raw(server, token, b"id,amount\n1,10\n2,20\n3,30\n", name="orders")
    assert r.status_code in (200, 201), r.text
    assert call(server, "POST", "/api/query", token, json={"sql": "SELECT count(*) FROM orders"}).json()["rows"] == [[3]]
    tables = sorted(t["id"] for t in call(server, "GET", "/api/catalog/tables", token).json()["tables"])
    assert tables == ["orders"]  # the demo's customers and products went with it: no mix of sample and real data
    assert not demo_dir(workdir).exists()
    status = call(server, "GET", "/api/sync/status", token).json()
    assert status["collisions"] == []
    # The retired demo's tables are forgotten: sync status (and /admin/sync, which counts its rows) lists
    # only what is still served.
    assert [(t["table_id"], t["state"]) for t in status["tables"]] == [("orders", "ok")], status
    server.stop()
    server.start()  # an emptied instance does not get the demo back
    assert not demo_dir(workdir).exists()


def test_the_demo_can_be_removed_through_the_api_and_stays_removed(server_factory, env, workdir):
    from test_users import call, setup_admin_and_analyst
    env["AGNES_DEMO"] = "1"
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    assert call(server, "DELETE", "/api/admin/demo", analyst["access_token"]).status_code == 403
    r = call(server, "DELETE", "/api/admin/demo", admin["access_token"])
    assert r.status_code == 200 and r.json()["tables"] == ["customers", "orders", "products"], r.text
    assert call(server, "GET", "/api/catalog/tables", admin["access_token"]).json()["count"] == 0
    again = call(server, "DELETE", "/api/admin/demo", admin["access_token"])
    assert again.status_code == 404 and "no demo source" in again.json()["detail"]
    server.stop()
    server.start()
    assert not demo_dir(workdir).exists()
    assert call(server, "GET", "/api/catalog/tables", admin["access_token"]).json()["count"] == 0


def test_a_real_source_called_demo_is_never_removed(server_factory, env, workdir):
    make_extract(extracts(workdir), "demo", rows=(("orders", "local"),))
    make_extract(extracts(workdir), "shop", rows=(("customers", "local"),))
    env["AGNES_DEMO"] = "1"
    server_factory(env).stop()
    assert (demo_dir(workdir) / "extract.duckdb").exists()


def test_uploaded_tables_whose_data_is_gone_are_reported_missing_not_ok(server_factory, env, workdir):
    """A state restore into an empty DATA_DIR: the uploaded tables left the catalog, yet /api/sync/status said
    `ok` and /api/health said ok."""
    import shutil
    from test_upload import upload_raw
    from test_users import call, setup_admin_and_analyst
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    assert upload_raw(server, token, b"id,amount\n1,10\n", name="sales").status_code in (200, 201)
    assert call(server, "GET", "/api/health", token).json()["status"] == "ok"
    server.stop()
    shutil.rmtree(workdir / "data" / "extracts")  # the state tier survives, the data does not
    server.start()
    call(server, "POST", "/api/sync/trigger", token)
    status = call(server, "GET", "/api/sync/status", token).json()
    sales = [t for t in status["tables"] if t["table_id"] == "sales"][0]
    assert sales["state"] == "missing" and not sales["published"], sales
    assert "Re-upload the file" in sales["error"] and "/api/upload/tables" in sales["error"], sales
    import time
    deadline = time.time() + 15  # the health document is refreshed every 5 s
    while (health := call(server, "GET", "/api/health", token).json())["status"] == "ok" and time.time() < deadline:
        time.sleep(0.5)
    assert health["status"] == "degraded", health
    assert health["checks"]["table_data"]["missing_tables"] == ["sales"], health
    assert any("have no data" in w for w in health["warnings"]), health
    # Re-uploading brings it back and health recovers.
    assert upload_raw(server, token, b"id,amount\n1,10\n", name="sales").status_code in (200, 201)
    sales = [t for t in call(server, "GET", "/api/sync/status", token).json()["tables"] if t["table_id"] == "sales"][0]
    assert sales["state"] == "ok" and sales["published"], sales


def test_a_table_being_published_is_never_reported_missing(server_factory, env, workdir):
    """CI caught /api/health saying `degraded` right after a successful upload: a rebuild records each table's
    sync state before readers move to the new catalog, and a status read in between took the table for one whose
    data was gone. Sync status is sampled here while tables are published; none may ever be `missing`, and health
    stays `ok` throughout."""
    import threading
    from test_upload import upload_raw
    from test_users import call, setup_admin_and_analyst
    server = server_factory(env)
    token = setup_admin_and_analyst(server)[0]["access_token"]
    seen, done = [], threading.Event()

    def sample():
        while not done.is_set():
            for t in call(server, "GET", "/api/sync/status", token).json()["tables"]:
                if t["state"] == "missing":
                    seen.append(t)
            health = call(server, "GET", "/api/health", token).json()
            if health["status"] != "ok":
                seen.append(health)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for i in range(12):
            r = upload_raw(server, token, b"id,amount\n1,10\n2,20\n", name=f"t{i}")
            assert r.status_code in (200, 201), r.text
    finally:
        done.set()
        sampler.join()
    assert seen == [], seen[:3]
