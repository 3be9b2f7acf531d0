"""Configuration as an operator meets it: `agnes doctor` and bad values (SPEC §4)."""
import json

from conftest import run_agnes


def _doctor(env):
    out = run_agnes(["doctor", "--json"], env)
    return out, json.loads(out.stdout)


def _entry(doc, key):
    return next(item for item in doc["config"] if item["key"] == key)


def test_doctor_shows_each_value_and_where_it_came_from(env, workdir):
    (workdir / "config" / "instance.yaml").write_text("instance:\n  name: Team Data\nserver:\n  threads: 3\n")
    (workdir / "state").mkdir(mode=0o700)
    (workdir / "state" / "instance.yaml").write_text("server:\n  threads: 5\n")
    (workdir / "state" / ".env_overlay").write_text("AGNES_SHUTDOWN_GRACE=12\n")
    env["AGNES_LISTEN"] = "127.0.0.1:9999"
    env.pop("AGNES_THREADS")
    out, doc = _doctor(env)
    assert _entry(doc, "instance.name")["value"] == "Team Data"
    assert _entry(doc, "instance.name")["source"] == "config_file"
    assert _entry(doc, "server.threads") == {**_entry(doc, "server.threads"), "value": "5", "source": "state_file"}
    assert "line 2" in _entry(doc, "server.threads")["origin"]
    assert _entry(doc, "server.shutdown_grace_seconds")["source"] == "env_overlay"
    assert _entry(doc, "server.listen")["source"] == "env"
    assert _entry(doc, "server.log_level")["source"] == "default"
    assert doc["paths"]["STATE_DIR"]["path"] == str(workdir / "state")


def test_doctor_redacts_secrets(env):
    env["JWT_SECRET_KEY"] = "super-secret-value-0123456789abcdef0123"
    out = run_agnes(["doctor"], env)
    assert "super-secret-value" not in out.stdout
    out, doc = _doctor(env)
    assert "super-secret-value" not in out.stdout
    assert _entry(doc, "auth.jwt_secret_key")["value"] == "********"


def test_doctor_is_read_only_and_explains_a_first_start(env, workdir):
    out, doc = _doctor(env)
    assert out.returncode == 0
    assert not (workdir / "state").exists() and not (workdir / "data").exists()
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["system_db"]["status"] == "warn" and "first start" in checks["system_db"]["detail"]


def test_doctor_fails_on_an_empty_secret_and_a_refused_mount(env, workdir):
    (workdir / "state").mkdir(mode=0o700)
    (workdir / "state" / ".jwt_secret").write_text("")
    env["AGNES_STATE_MOUNT"] = "required"
    out, doc = _doctor(env)
    assert out.returncode == 1
    failing = {c["name"] for c in doc["checks"] if c["status"] == "fail"}
    assert failing == {"jwt_secret", "state_mount"}
    human = run_agnes(["doctor"], env)
    assert "[fail]" in human.stdout and "State tier" in human.stdout


def test_wrong_type_stops_the_start_naming_key_file_and_line(env, workdir):
    path = workdir / "config" / "instance.yaml"
    path.write_text("server:\n  listen: 127.0.0.1:0\n  shutdown_grace_seconds: soon\n")
    out = run_agnes(["serve"], env)
    assert out.returncode == 1
    assert "server.shutdown_grace_seconds" in out.stderr
    assert f"{path} line 3" in out.stderr
    assert "soon" in out.stderr


def test_bad_listen_address_is_explained(env):
    out = run_agnes(["serve"], dict(env, AGNES_LISTEN="localhost"))
    assert out.returncode == 1 and "HOST:PORT" in out.stderr


def test_unknown_keys_warn_but_start(server_factory, env, workdir):
    (workdir / "config" / "instance.yaml").write_text("server:\n  colour: blue\n")
    server = server_factory(env)
    assert server.get("/api/health").status_code == 200
    assert "server.colour" in server.wait_for_log("server.colour")
    out, doc = _doctor(env)
    assert any("server.colour" in w for w in doc["warnings"])


def test_invalid_choice_lists_the_valid_ones(env):
    out = run_agnes(["serve"], dict(env, AGNES_STATE_MOUNT="yes"))
    assert out.returncode == 1
    assert "storage.state_mount must be one of empty, optional, required" in out.stderr
    assert "environment variable AGNES_STATE_MOUNT" in out.stderr


def test_data_dir_that_is_a_file_is_named(env, workdir):
    (workdir / "not-a-dir").write_text("")
    out = run_agnes(["serve"], dict(env, DATA_DIR=str(workdir / "not-a-dir")))
    assert out.returncode == 1
    assert "DATA_DIR" in out.stderr and "not a directory" in out.stderr


def test_port_already_in_use_is_refused_not_shared(server, env, workdir):
    other = dict(env, DATA_DIR=str(workdir / "other-data"), STATE_DIR=str(workdir / "other-state"),
                 AGNES_LISTEN=f"127.0.0.1:{server.port}")
    out = run_agnes(["serve"], other, timeout=20)
    assert out.returncode == 1
    assert "cannot listen" in out.stderr and "AGNES_LISTEN" in out.stderr
