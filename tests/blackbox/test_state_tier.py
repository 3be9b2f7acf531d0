"""The state tier (SPEC §3): where files go, secrets, the shadow-mount guard."""
import os
import shutil
import stat
import subprocess
import time

import pytest

from conftest import run_agnes
from health_view import full_health, with_service_token


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_flat_layout_puts_state_only_under_state_dir(server, workdir):
    state, data = workdir / "state", workdir / "data"
    for name in ("system.duckdb", ".jwt_secret", ".session_secret"):
        assert (state / name).is_file(), name
    assert _mode(state / ".jwt_secret") == 0o600
    assert _mode(state / ".session_secret") == 0o600
    assert len((state / ".jwt_secret").read_text()) == 64
    leaked = [p for p in data.rglob("*") if p.name in ("system.duckdb", ".jwt_secret", ".session_secret", "state")]
    assert leaked == []
    assert (data / "extracts").is_dir() and (data / "analytics").is_dir()


def test_nested_layout_is_the_default(server_factory, env, workdir):
    del env["STATE_DIR"]
    server_factory(env)
    assert (workdir / "data" / "state" / "system.duckdb").is_file()
    assert (workdir / "data" / "state" / ".jwt_secret").is_file()


def test_secrets_survive_restarts(server_factory, env, workdir):
    server = server_factory(env)
    first = (workdir / "state" / ".jwt_secret").read_text()
    assert server.stop() == 0
    server_factory(env)
    assert (workdir / "state" / ".jwt_secret").read_text() == first


def test_empty_secret_file_stops_the_start_and_names_the_file(env, workdir):
    (workdir / "state").mkdir(mode=0o700)
    (workdir / "state" / ".session_secret").write_text("")
    out = run_agnes(["serve"], dict(env, AGNES_LISTEN="127.0.0.1:0"))
    assert out.returncode == 1
    assert str(workdir / "state" / ".session_secret") in out.stderr
    assert "empty" in out.stderr
    assert (workdir / "state" / ".session_secret").read_text() == ""


def test_state_mount_required_refuses_a_plain_directory(env, workdir):
    env.update(AGNES_STATE_MOUNT="required", STATE_DIR=str(workdir / "plain-state"))
    (workdir / "plain-state").mkdir()
    out = run_agnes(["serve"], dict(env, AGNES_LISTEN="127.0.0.1:0"))
    assert out.returncode == 1
    assert "not a mount point" in out.stderr
    assert "docker-compose.flat-mount.yml" in out.stderr
    assert str(workdir / "plain-state") in out.stderr
    assert list((workdir / "plain-state").iterdir()) == []  # nothing written
    assert not (workdir / "data").exists()


def test_state_mount_required_with_a_missing_directory_writes_nothing(env, workdir):
    env.update(AGNES_STATE_MOUNT="required", STATE_DIR=str(workdir / "never-mounted"))
    out = run_agnes(["serve"], dict(env, AGNES_LISTEN="127.0.0.1:0"))
    assert out.returncode == 1 and "not a mount point" in out.stderr
    assert not (workdir / "never-mounted").exists()


def test_env_overlay_is_read_and_the_real_environment_wins(server_factory, env, workdir):
    (workdir / "state").mkdir(mode=0o700)
    (workdir / "state" / ".env_overlay").write_text(
        "# written by the admin API\nAGNES_VERSION=2026.01.1\nRELEASE_CHANNEL=\"from-overlay\"\n"
        "JWT_SECRET_KEY=overlay-secret-0123456789abcdef0123456789\n")
    env["RELEASE_CHANNEL"] = "from-env"
    server = server_factory(with_service_token(env))
    v = server.get("/api/version").json()
    assert v["version"] == "2026.01.1"
    assert v["channel"] == "from-env"
    assert full_health(server).json()["checks"]["secrets"]["jwt"] == "env_overlay"
    assert not (workdir / "state" / ".jwt_secret").exists()  # overlay supplied it: nothing generated


def test_second_server_on_the_same_state_dir_is_refused(server, env):
    out = run_agnes(["serve"], dict(env, AGNES_LISTEN="127.0.0.1:0"))
    assert out.returncode == 1
    assert "Another agnes process" in out.stderr
    assert server.get("/api/health").status_code == 200


def _can_mount_privately():
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_privately(), reason="needs root and mount namespaces (unshare -m)")
def test_state_mount_required_accepts_a_real_mount_point(server_factory, env, workdir):
    state = workdir / "mounted-state"
    state.mkdir()
    env.update(AGNES_STATE_MOUNT="required", STATE_DIR=str(state))
    # A private mount namespace: the tmpfs exists only for this server process.
    wrapper = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs tmpfs "{state}" && exec "$0" "$@"']
    server = server_factory(with_service_token(env), wrapper=wrapper)
    body = full_health(server).json()
    assert body["status"] == "ok"
    assert body["checks"]["state_dir"]["is_mount_point"] is True
    assert body["checks"]["state_dir"]["mount_required"] is True


def test_losing_the_state_dir_makes_health_unhealthy_503(server_factory, env):
    server = server_factory(with_service_token(env))
    shutil.rmtree(server.env["STATE_DIR"])
    deadline = time.time() + 15  # health is recomputed every few seconds
    while time.time() < deadline:
        r = full_health(server)
        if r.status_code == 503:
            break
        time.sleep(0.25)
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unhealthy"
    assert body["checks"]["state_dir"]["status"] == "error"
    assert any("STATE_DIR" in w for w in body["warnings"])
    anonymous = server.get("/api/health")  # a load balancer still sees 503, and nothing of the layout
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unhealthy", "version": body["version"],
                                                                 "channel": body["channel"]}
