"""Who can read the state tier (SPEC §3; issue 12 item 7): every file 0600 and every directory 0700,
whatever the umask or the modes the files and directories had before, and secrets a killed writer
left in temp files are swept at start."""
import os
import stat
import subprocess

import requests

from conftest import run_agnes
from test_auth import ADMIN


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def everything_under(root):
    yield root
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            yield os.path.join(directory, name)


def test_state_files_are_owner_only_whatever_the_umask_and_existing_modes(server_factory, env, workdir):
    state = workdir / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)  # an operator's pre-existing, world-readable directory
    (state / "instance.yaml").write_text("instance:\n  name: Before\n")
    (state / "system.duckdb.pre-migrate").write_bytes(b"old copy")
    (state / "certs").mkdir()
    (state / "certs" / "fullchain.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (state / "certs" / "privkey.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    for path in everything_under(state):
        os.chmod(path, 0o755 if os.path.isdir(path) else 0o644)
    killed = dead_pid()
    (state / f".env_overlay.tmp.{killed}").write_text("POSTGRES_DSN=postgresql://app:hunter2@db/app\n")
    (state / f"instance.yaml.tmp.{killed}").write_text("half")
    (state / f".env_overlay.tmp.{os.getpid()}").write_text("a live writer's file")  # not ours to take
    previous = os.umask(0)
    try:
        server = server_factory(env)
    finally:
        os.umask(previous)
    # A write, so DuckDB has made its WAL if it makes one.
    r = requests.post(server.url + "/auth/bootstrap", json={"email": ADMIN["email"], "password": ADMIN["password"]},
                      timeout=30)
    assert r.status_code == 200
    assert not (state / f".env_overlay.tmp.{killed}").exists() and not (state / f"instance.yaml.tmp.{killed}").exists()
    assert (state / f".env_overlay.tmp.{os.getpid()}").exists()
    assert f".env_overlay.tmp.{killed}" in server.output()  # the sweep is said in the log
    seen = set()
    for path in everything_under(state):
        want = 0o700 if os.path.isdir(path) else 0o600
        assert mode(path) == want, (path, oct(mode(path)))
        seen.add(os.path.relpath(path, state))
    for name in ("system.duckdb", ".jwt_secret", ".session_secret", "instance.yaml", "system.duckdb.pre-migrate",
                 "certs", "certs/privkey.pem"):
        assert name in seen, name
    # Files the server creates later are the owner's alone too (umask 0 in the parent notwithstanding).
    server.stop()
    os.remove(state / "system.duckdb")
    previous = os.umask(0)
    try:
        server = server_factory(env)
    finally:
        os.umask(previous)
    assert mode(state / "system.duckdb") == 0o600
    assert all(mode(p) == (0o700 if os.path.isdir(p) else 0o600) for p in everything_under(state))


def test_agnes_migrate_leaves_the_state_tier_owner_only(env, workdir):
    previous = os.umask(0o022)
    try:
        out = run_agnes(["migrate"], env)
    finally:
        os.umask(previous)
    assert out.returncode == 0, out.stderr
    state = workdir / "state"
    assert mode(state) == 0o700
    assert mode(state / "system.duckdb") == 0o600 and mode(state / ".jwt_secret") == 0o600
