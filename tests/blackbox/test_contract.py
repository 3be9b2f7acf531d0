"""`agnes contract check`: the extract contract as a connector author meets it (SPEC §7)."""
import json
from pathlib import Path

import pytest

from conftest import duckdb_exec, run_agnes

ROOT = Path(__file__).resolve().parents[2]
META_DDL = (ROOT / "contracts" / "extract_meta.sql").read_text()
REMOTE_DDL = (ROOT / "contracts" / "remote_attach.sql").read_text()


def make_extract(base, source="mysource", meta_ddl=META_DDL, rows=(("orders", "local"),), extra_sql=""):
    """A source dir with data/<t>.parquet, _meta and a view per local row; returns the extract path."""
    directory = base / source
    (directory / "data").mkdir(parents=True, exist_ok=True)
    statements = [meta_ddl]
    for name, mode in rows:
        if mode == "local" and name.isidentifier():
            parquet = directory / "data" / f"{name}.parquet"
            statements.append(f"COPY (SELECT range AS id, 'item ' || range AS label FROM range(10)) TO '{parquet}' "
                              "(FORMAT PARQUET)")
            statements.append(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{parquet}')")
        statements.append(f"INSERT INTO _meta VALUES ('{name}', 'd', 10, 1000, now()::TIMESTAMP, '{mode}')")
    statements.append(extra_sql)
    path = directory / "extract.duckdb"
    duckdb_exec(path, ";\n".join(s for s in statements if s))
    return path


def check(env, path, *extra):
    out = run_agnes(["contract", "check", str(path), *extra], env)
    return out.returncode, out.stdout + out.stderr


def violations(env, path):
    out = run_agnes(["contract", "check", str(path), "--json"], env)
    doc = json.loads(out.stdout)
    assert (out.returncode == 0) == doc["ok"]
    return {v["rule"] for v in doc["violations"]}, doc


def test_a_good_extract_passes(env, workdir):
    path = make_extract(workdir, rows=(("orders", "local"), ("customers", "local"), ("live", "remote")))
    code, text = check(env, path)
    assert code == 0 and "satisfies the extract contract (3 tables, 2 local)" in text
    rules, doc = violations(env, path)
    assert rules == set() and doc["tables"] == 3 and doc["local_tables"] == 2


def test_reordered_meta_columns_are_rejected_with_the_fix(env, workdir):
    reordered = ("CREATE TABLE _meta (description VARCHAR, table_name VARCHAR NOT NULL, rows BIGINT, "
                 "size_bytes BIGINT, extracted_at TIMESTAMP, query_mode VARCHAR)")
    path = make_extract(workdir, meta_ddl=reordered, rows=())
    code, text = check(env, path)
    assert code == 1
    assert "[meta_columns]" in text and "found (description, table_name," in text
    assert "contracts/extract_meta.sql" in text


@pytest.mark.parametrize("ddl, rule", [
    ("CREATE TABLE other (x INT)", "meta_missing"),
    ("CREATE TABLE _meta (table_name VARCHAR, description VARCHAR, rows VARCHAR, size_bytes BIGINT, "
     "extracted_at TIMESTAMP, query_mode VARCHAR)", "meta_types"),
    ("CREATE TABLE _meta (table_name VARCHAR, description VARCHAR, rows BIGINT, size_bytes BIGINT, "
     "extracted_at TIMESTAMP)", "meta_columns"),
])
def test_meta_table_shape(env, workdir, ddl, rule):
    path = make_extract(workdir, meta_ddl=ddl, rows=())
    assert violations(env, path)[0] == {rule}


def test_row_rules(env, workdir):
    path = make_extract(workdir, rows=(("orders", "local"),), extra_sql=(
        "INSERT INTO _meta VALUES ('bad name', NULL, 0, 0, NULL, 'local'), ('orders', NULL, 0, 0, NULL, 'local'),"
        " ('odd', NULL, 0, 0, NULL, 'sideways'), ('neg', NULL, -1, 0, NULL, 'remote'),"
        " ('ghost', NULL, 0, 0, NULL, 'local')"))
    rules, _ = violations(env, path)
    assert rules == {"table_name", "table_name_duplicate", "query_mode", "meta_counts", "local_object_missing"}


def test_a_view_whose_file_is_gone_is_unreadable(env, workdir):
    path = make_extract(workdir)
    (workdir / "mysource" / "data" / "orders.parquet").unlink()
    code, text = check(env, path)
    assert code == 1 and "[local_object_unreadable]" in text and "absolute path" in text


def test_remote_attach_rules(env, workdir):
    path = make_extract(workdir, rows=(("live", "remote"),), extra_sql=REMOTE_DDL + ";" + (
        "INSERT INTO _remote_attach VALUES ('kbc', 'keboola', 'https://connection.keboola.com', "
        "'KEBOOLA_STORAGE_TOKEN')"))
    assert violations(env, path)[0] == set()
    duckdb_exec(path, "INSERT INTO _remote_attach VALUES ('x', 'httpfs', 'u', ''), "
                      "('y', 'keboola', 'u', '1234-abcdefSECRETtoken'), ('z', 'bigquery', 'u', 'HOME')")
    code, text = check(env, path)
    assert code == 1
    assert "extension 'httpfs', which is not allowed" in text
    assert "not a variable name (it may be a secret)" in text
    assert "token_env 'HOME' is not an allowed variable" in text
    # The operator's allowlists replace the defaults.
    env.update(AGNES_REMOTE_ATTACH_EXTENSIONS="keboola,bigquery,httpfs",
               AGNES_REMOTE_ATTACH_TOKEN_ENVS="KEBOOLA_STORAGE_TOKEN,HOME")
    assert violations(env, path)[0] == {"remote_attach_token_env"}  # the secret-looking value stays refused


def test_remote_attach_columns(env, workdir):
    path = make_extract(workdir, rows=(), extra_sql="CREATE TABLE _remote_attach (alias VARCHAR, url VARCHAR)")
    assert violations(env, path)[0] == {"remote_attach_columns"}


def test_source_directory_name_and_unopenable_files(env, workdir):
    (workdir / "extracts").mkdir()
    path = make_extract(workdir / "extracts", source="my-source")  # published there, the catalog skips it
    assert violations(env, path)[0] == {"source_name"}
    hand_test = make_extract(workdir, source="try-out")  # a connector author's scratch directory is nobody's source
    assert violations(env, hand_test)[0] == set()
    garbage = workdir / "junk" / "extract.duckdb"
    garbage.parent.mkdir()
    garbage.write_bytes(b"this is not a database" * 100)
    code, text = check(env, garbage)
    assert code == 1 and "[open]" in text and "extract.duckdb.tmp" in text
    code, text = check(env, workdir / "nothing" / "extract.duckdb")
    assert code == 1 and "does not exist" in text


def test_usage_errors(env):
    for args in (["contract"], ["contract", "check"], ["contract", "verify", "x"], ["contract", "check", "a", "b"]):
        out = run_agnes(args, env)
        assert out.returncode == 2 and "usage: agnes contract check" in out.stderr
