"""The image itself (SPEC §13; issue 16 item 1): built here from this tree, run on a real daemon."""
import json
import time

import pytest
import requests

import harness


@pytest.fixture(scope="module")
def running(daemon, image, tmp_path_factory):
    """The image as `docker run` starts it: its own HEALTHCHECK, /data bound from the host."""
    data = tmp_path_factory.mktemp("data")
    harness.chown_tree(data)
    port = harness.free_port()
    name = "agnes-test-image"
    daemon.docker("rm", "-f", name, check=False)
    daemon.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-v", f"{data}:/data", image)
    try:
        yield name, f"http://127.0.0.1:{port}", data
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_runs_as_uid_999_and_the_healthcheck_turns_healthy(daemon, running):
    name, url, data = running
    assert daemon.docker("exec", name, "id", "-u").stdout.strip() == "999"
    assert daemon.docker("exec", name, "id", "-g").stdout.strip() == "999"
    # The image's own HEALTHCHECK (no override): starting, then healthy.
    healthcheck = json.loads(harness.inspect(daemon, name, "{{json .Config.Healthcheck}}"))
    assert "/api/health" in " ".join(healthcheck["Test"])
    started = time.time()
    harness.wait_health(daemon, name, "healthy", timeout=90)
    harness.TIMINGS["container healthy after"] = round(time.time() - started, 1)
    assert requests.get(f"{url}/api/health", timeout=5).json()["status"] == "ok"
    # What the server wrote on the host belongs to 999 (a host chown depends on that number).
    assert {(p.stat().st_uid, p.stat().st_gid) for p in (data / "state").iterdir()} == {(999, 999)}


def test_version_shows_the_build_args(daemon, running):
    name, url, _ = running
    harness.wait_health(daemon, name, "healthy", timeout=90)
    version = requests.get(f"{url}/api/version", timeout=5).json()
    args = harness.build_args()
    assert version["version"] == args["AGNES_VERSION"]
    assert version["channel"] == args["RELEASE_CHANNEL"]
    assert version["commit_sha"] == args["AGNES_COMMIT_SHA"]
    assert version["tag"] == args["AGNES_TAG"]
    health = requests.get(f"{url}/api/health", timeout=5).json()
    assert health["version"] == args["AGNES_VERSION"] and health["channel"] == args["RELEASE_CHANNEL"]


def test_sigterm_exits_0_within_the_grace_period_with_the_wal_checkpointed(daemon, image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    harness.chown_tree(data)
    port = harness.free_port()
    name = "agnes-test-sigterm"
    daemon.docker("rm", "-f", name, check=False)
    daemon.docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", "-v", f"{data}:/data",
                  "-e", "AGNES_SHUTDOWN_GRACE=20", image)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                requests.get(f"{url}/api/version", timeout=1)
                break
            except requests.ConnectionError:
                assert time.time() < deadline, daemon.docker("logs", name, check=False).stderr
                time.sleep(0.2)
        r = requests.post(f"{url}/auth/bootstrap", json={"email": "admin@example.com", "password": "a long passphrase"},
                          timeout=10)
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        for i in range(5):
            assert requests.post(f"{url}/api/users", headers={"Authorization": f"Bearer {token}"},
                                 json={"email": f"u{i}@example.com"}, timeout=10).status_code == 201
        wal = data / "state" / "system.duckdb.wal"
        assert wal.exists() and wal.stat().st_size > 0  # committed, not yet checkpointed
        started = time.time()
        daemon.docker("stop", "-t", "30", name)  # SIGTERM (the image's STOPSIGNAL), SIGKILL after 30 s
        took = time.time() - started
        assert harness.inspect(daemon, name, "{{.State.ExitCode}} {{.State.OOMKilled}}") == "0 false"
        assert took < 20, f"stopping took {took:.1f}s"
        assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed into system.duckdb"
        logs = daemon.docker("logs", name).stderr + daemon.docker("logs", name).stdout
        assert "shutting down" in logs and "stopped cleanly" in logs
        # The file alone holds everything: a fresh container on it sees the users.
        daemon.docker("start", name)
        harness.wait_health(daemon, name, "healthy", timeout=90)
        users = requests.get(f"{url}/api/users", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        users = users["users"] if isinstance(users, dict) else users
        assert len(users) == 6
    finally:
        daemon.docker("rm", "-f", name, check=False)


def test_the_image_holds_no_compiler_no_npm_and_no_build_ca(daemon, image):
    found = daemon.docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                          "for c in gcc cc c++ make ld as npm node nodejs pkg-config; do command -v $c; done; "
                          "dpkg-query -W -f '${Package}\\n' | grep -E '^(gcc|g\\+\\+|build-essential|npm|nodejs|"
                          "libc6-dev|.*-dev)$' || true", check=False)
    assert found.stdout.strip() == "", found.stdout
    assert daemon.docker("run", "--rm", "--entrypoint", "ls", image, "-A", "/usr/local/share/ca-certificates").stdout \
        .strip() == ""
    # The CA the build was given (this machine's own and the marker made for this check) is nowhere in the image.
    bundle = daemon.docker("run", "--rm", "--entrypoint", "cat", image, "/etc/ssl/certs/ca-certificates.crt").stdout
    marker = harness.marker_ca()
    body = "".join(line for line in marker.splitlines() if not line.startswith("-----"))
    assert body[:60] and body[:60] not in bundle.replace("\n", "")
    grep = daemon.docker("run", "--rm", "--entrypoint", "grep", image, "-rlF", body[20:60], "/etc", "/usr/local",
                         "/app", "/opt", check=False)
    assert grep.stdout.strip() == "", grep.stdout
    history = daemon.docker("history", "--no-trunc", image).stdout
    assert "BEGIN CERTIFICATE" not in history and "EXTRA_CA_CERT" not in history
    config = json.loads(daemon.docker("image", "inspect", image).stdout)[0]["Config"]
    assert not any(e.startswith("EXTRA_CA_CERT") or e.startswith("NODE_EXTRA_CA_CERTS") for e in config["Env"])
    assert config["User"] == "agnes" and config["StopSignal"] == "SIGTERM"
    # The label the upgrade script prunes by (it never touches other images or build cache).
    assert config["Labels"]["org.opencontainers.image.title"] == "agnes"
    assert config["Labels"]["org.opencontainers.image.version"] == harness.build_args()["AGNES_VERSION"]
    # The host files that must match this image are in it.
    listing = daemon.docker("run", "--rm", "--entrypoint", "find", image, "/opt/agnes-host", "-type", "f").stdout
    for name in ("docker-compose.yml", "docker-compose.flat-mount.yml", "Caddyfile", "scripts/ops/agnes-auto-upgrade.sh",
                 "scripts/smoke-test.sh"):
        assert f"/opt/agnes-host/{name}" in listing, name
