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
