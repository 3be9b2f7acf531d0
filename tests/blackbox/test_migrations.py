"""system.duckdb schema versions as an operator meets them (SPEC §5)."""
import hashlib

from conftest import duckdb_exec, run_agnes
from health_view import full_health, with_service_token


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_migrate_without_serving_then_nothing_to_do(env, workdir):
    out = run_agnes(["migrate"], env)
    assert out.returncode == 0, out.stderr
    assert "migrated from version 0" in out.stdout
    assert (workdir / "state" / "system.duckdb").is_file()
    again = run_agnes(["migrate"], env)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_older_file_is_migrated_and_a_pre_migrate_copy_kept(server_factory, env, workdir):
    assert run_agnes(["migrate", "--to", "1"], env).returncode == 0
    db = workdir / "state" / "system.duckdb"
    duckdb_exec(db, "INSERT INTO users (id, email) VALUES ('u1', 'old@example.com')")
    server = server_factory(with_service_token(env))
    health = full_health(server).json()
    assert health["schema"]["current"] == health["schema"]["expected"]
    backup = workdir / "state" / "system.duckdb.pre-migrate"
    assert backup.is_file()
    server.stop()
    assert duckdb_exec(backup, "SELECT max(version) FROM schema_version").strip() == "1"
    assert duckdb_exec(db, "SELECT email FROM users WHERE id = 'u1'").strip() == "old@example.com"
    groups = duckdb_exec(db, "SELECT name FROM user_groups WHERE is_system ORDER BY name").split()
    assert groups == ["Admin", "Everyone"]


def test_newer_file_refuses_to_start_and_stays_untouched(env, workdir):
    assert run_agnes(["migrate"], env).returncode == 0
    db = workdir / "state" / "system.duckdb"
    duckdb_exec(db, "INSERT INTO schema_version (version, name) VALUES (900, 'future')")
    before = _sha(db)
    out = run_agnes(["serve"], dict(env, AGNES_LISTEN="127.0.0.1:0"))
    assert out.returncode == 1
    assert "schema version 900" in out.stderr and "newer release" in out.stderr
    assert _sha(db) == before
    assert not (workdir / "state" / "system.duckdb.pre-migrate").exists()


def test_migrate_rejects_bad_arguments(env):
    out = run_agnes(["migrate", "--to", "banana"], env)
    assert out.returncode == 2 and "usage" in out.stderr
    out = run_agnes(["migrate", "--to", "999"], env)
    assert out.returncode == 1 and "this build knows versions" in out.stderr
