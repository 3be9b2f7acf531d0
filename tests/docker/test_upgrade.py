"""Upgrade and rollback for real (SPEC §13; issue 16 item 4): scripts/ops/agnes-auto-upgrade.sh on a host set
up as docs/deploy.md says, against the real daemon and a local registry (Debian's docker-registry) whose tag
moves from N to N+1, to an N+1 that does not start, and on; state survives every step; the smoke test passes
against the upgraded container."""
import subprocess
import threading
import time

import pytest

import harness


@pytest.fixture
def releases(daemon, image):
    """N is the image built here; the others derive from it with a newer version in the environment (what
    the image's AGNES_VERSION override is for), so they differ in digest and in what /api/version says."""
    def derive(tag, env_line):
        daemon.docker("build", "-t", f"agnes-test/agnes:{tag}", "-", input=f"FROM {image}\nENV {env_line}\n")
        return f"agnes-test/agnes:{tag}"
    return {
        "n": image,
        "n+1": derive("n1", "AGNES_VERSION=2026.11.17"),
        # A release that cannot start: its configuration is invalid, the server exits at once.
        "broken": derive("broken", "AGNES_VERSION=2026.11.18 AGNES_SHUTDOWN_GRACE=0"),
        "n+2": derive("n2", "AGNES_VERSION=2026.11.19"),
    }


def image_id(daemon, name):
    return daemon.docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def running_version(api):
    return api("GET", "/api/version").json()["version"]


def smoke(home, api, token):
    out = subprocess.run([str(home / "scripts" / "smoke-test.sh"), api.url], capture_output=True, text=True,
                         timeout=600, env={"PATH": "/usr/bin:/bin", "SMOKE_TOKEN": token})
    assert out.returncode == 0 and "smoke test PASSED" in out.stdout, out.stdout + out.stderr


def test_upgrade_rollback_overlapping_runs_and_a_deferring_sync(daemon, releases, registry, postgres, workdir):
    repo = f"{registry.address}/agnes-upgrade"
    harness.publish(daemon, releases["n"], repo, "stable")
    home = harness.make_host(daemon, releases["n"], workdir / "opt-agnes",
                             harness.host_env(repo, "agnes-upgrade", AGNES_ALLOW_PRIVATE_SOURCES="1"))
    api = harness.Api(f"http://127.0.0.1:{harness.read_env(home)['AGNES_PORT']}")
    try:
        # The first run installs N.
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "recreated with" in out.stdout and "healthy" in out.stdout, out.stdout + out.stderr
        api.wait_up()
        assert running_version(api) == harness.BUILD_ARGS["AGNES_VERSION"]
        pat = api.populate()
        db = postgres.database("upgrade")
        postgres.sql("CREATE TABLE orders (id int PRIMARY KEY, total int); INSERT INTO orders SELECT g, g FROM "
                     "generate_series(1, 100) g; GRANT SELECT ON ALL TABLES IN SCHEMA public TO agnes", db=db)
        configured = api("POST", "/api/admin/configure",
                         json={"data_source": "postgres", "postgres_dsn": postgres.dsn(harness.bridge_gateway(daemon), db)})
        assert configured.status_code == 200, configured.text
        api.sync_now()  # 'orders' is registered with a schedule: synced now, it is not due during the test
        before = api.state()

        # N -> N+1: recreated, healthy, the same state, N kept as :previous; the smoke test passes.
        harness.publish(daemon, releases["n+1"], repo, "stable")
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "recreated with" in out.stdout, out.stdout + out.stderr
        api.wait_up()
        assert running_version(api) == "2026.11.17"
        api.check_survived(before, pat)
        assert image_id(daemon, f"{repo}:previous") == image_id(daemon, releases["n"])
        smoke(home, api, api.token)
        api.wait_syncs_idle()
        before = api.state()  # the smoke test's sync brought the registered PostgreSQL table into the catalog
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "up to date" in out.stdout, out.stdout

        # A broken N+1 published under the tag, and two runs at once (a timer firing twice): the first
        # recreates, sees the app never get healthy and rolls back to what ran; the second waits for the
        # lock, then finds the tag still on the image that failed and stays where it is.
        harness.publish(daemon, releases["broken"], repo, "stable")
        results = {}

        def run(name):
            results[name] = harness.upgrade(daemon, home)
            results[name + "_done"] = time.monotonic()
        first = threading.Thread(target=run, args=("first",))
        first.start()
        time.sleep(1.5)
        second = threading.Thread(target=run, args=("second",))
        second.start()
        first.join()
        second.join()
        a, b = results["first"], results["second"]
        assert a.returncode == 1 and "did not get healthy" in a.stdout and "rolled back to" in a.stdout, a.stdout + a.stderr
        assert "AGNES_SHUTDOWN_GRACE" in a.stdout  # the broken container's own last words are in the log line
        assert b.returncode == 0 and "another upgrade is running; waiting for it" in b.stdout, b.stdout + b.stderr
        assert "which did not get healthy here; staying on" in b.stdout, b.stdout
        assert results["second_done"] >= results["first_done"]
        api.wait_up()
        assert running_version(api) == "2026.11.17"
        api.check_survived(before, pat)
        assert image_id(daemon, f"{repo}:failed") == image_id(daemon, releases["broken"])
        container = harness.host_compose(daemon, home).container()
        harness.wait_health(daemon, container, "healthy", timeout=60)

        # A sync in progress defers the upgrade; once it is over the next run upgrades.
        postgres.sql("CREATE VIEW slow AS SELECT g, length(pg_sleep(0.05)::text) AS pause FROM generate_series(1, 400) g;"
                     "GRANT SELECT ON slow TO agnes", db=db)
        assert api("POST", "/api/admin/register-table", json={"name": "slow", "source_type": "postgres"}) \
            .status_code == 201
        run_id = api("POST", "/api/sync/trigger", json=["slow"]).json()["run_id"]
        harness.publish(daemon, releases["n+2"], repo, "stable")
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "a sync is running; upgrade deferred" in out.stdout, out.stdout + out.stderr
        assert running_version(api) == "2026.11.17"
        deadline = time.time() + 300
        while api("GET", f"/api/sync/status/{run_id}").json()["state"] == "running":
            assert time.time() < deadline, "the slow sync did not finish"
            time.sleep(2)
        assert api("DELETE", "/api/admin/registry/slow").status_code == 204
        api.wait_syncs_idle()
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "recreated with" in out.stdout, out.stdout + out.stderr
        api.wait_up()
        assert running_version(api) == "2026.11.19"
        api.check_survived(before, pat)
        smoke(home, api, pat)
    finally:
        harness.host_compose(daemon, home).down()
