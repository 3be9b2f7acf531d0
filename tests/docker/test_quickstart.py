"""The seed's target experience (issue 16 item 2): QUICKSTART.md's commands, run as written - `git clone`,
`docker compose up -d` (Debian's docker-compose 1.29 behind `docker compose`), then the headless setup against
a real PostgreSQL - on a real daemon.  Only the clone URL and the DSN are replaced (they name the reader's own)."""
import json
import re
import subprocess
import time

import requests

import harness

CLONE_URL = "https://github.com/agnes-data/agnes.git"
DSN_PLACEHOLDER = "host=db.example.com dbname=shop user=agnes password=..."


def quickstart_block():
    text = (harness.ROOT / "QUICKSTART.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    assert blocks, "QUICKSTART.md has no ```sh block"
    return blocks[0]


def test_quickstart_as_written_against_the_container(daemon, image, source, postgres, workdir):
    postgres.sql("CREATE TABLE orders (id int PRIMARY KEY, customer text, total numeric(10,2), created_at timestamptz);"
                 "INSERT INTO orders SELECT g, 'c' || (g % 17), g * 1.25, now() - g * interval '1 hour' "
                 "FROM generate_series(1, 250) g;"
                 "CREATE TABLE customers (id int PRIMARY KEY, name text);"
                 "INSERT INTO customers SELECT g, 'name ' || g FROM generate_series(1, 17) g;"
                 "GRANT SELECT ON ALL TABLES IN SCHEMA public TO agnes")
    block = quickstart_block()
    assert CLONE_URL in block and DSN_PLACEHOLDER in block, "the quickstart changed: update this test's placeholders"
    gateway = harness.bridge_gateway(daemon)
    script = block.replace(CLONE_URL, str(source)).replace(DSN_PLACEHOLDER, postgres.dsn(gateway))
    port = harness.free_port()
    env = dict(daemon.env, AGNES_PORT=str(port), AGNES_ALLOW_PRIVATE_SOURCES="1",
               COMPOSE_PROJECT_NAME="agnes-quickstart", **harness.build_args())
    if harness.host_nofile_limit() < 65536:  # this host's hard limit is below the compose default (QUICKSTART says so)
        env["AGNES_NOFILE"] = str(harness.host_nofile_limit())
    clone = workdir / "agnes"
    # As on a fresh machine: no image under the name the compose file gives it (a daemon cache kept from an
    # earlier run would have one, and `up` runs an existing image without building).  Untagging keeps the
    # layers, so the build below is the cache hit of the one this session made.
    daemon.docker("image", "rm", f"ghcr.io/agnes-data/agnes:{harness.BUILD_ARGS['AGNES_TAG']}", check=False)
    started = time.monotonic()
    try:
        out = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=3600)
        harness.TIMINGS["quickstart (clone, compose up with a cached build, setup, sync)"] = round(
            time.monotonic() - started, 1)
        transcript = f"--- stdout\n{out.stdout}\n--- stderr\n{out.stderr[-6000:]}"
        assert out.returncode == 0, transcript
        assert '"status":"ok"' in out.stdout.replace(" ", ""), transcript
        assert '"connection":"verified"' in out.stdout.replace(" ", "") or "verified" in out.stdout, transcript
        assert re.search(r'"state": *"done"', out.stdout), transcript
        assert re.search(r'\[\[250\]\]', out.stdout.replace(" ", "")), transcript
        # What the quickstart promised, seen through the API.
        url = f"http://127.0.0.1:{port}"
        token = requests.post(f"{url}/auth/token", json={"email": "admin@example.com",
                                                           "password": "a-long-passphrase"}, timeout=10).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        tables = requests.get(f"{url}/api/catalog/tables", headers=headers, timeout=10).json()
        assert {"orders", "customers"} <= {t["id"] for t in tables["tables"]}, tables
        ana = requests.post(f"{url}/auth/token", json={"email": "ana@example.com",
                                                         "password": "another-long-passphrase"}, timeout=10).json()
        rows = requests.post(f"{url}/api/query", headers={"Authorization": f"Bearer {ana['access_token']}"},
                             json={"sql": "SELECT sum(total) FROM orders"}, timeout=30)
        assert rows.status_code == 200, rows.text
        assert float(rows.json()["rows"][0][0]) == sum(g * 1.25 for g in range(1, 251))
        # The container is the image the compose file built from the clone, healthy, with the compose limits.
        compose = harness.Compose(daemon, clone, ["docker-compose.yml"], "agnes-quickstart", env)
        container = compose.container()
        # What `docker compose up` built from the fresh clone is, layer for layer, the image every other test checks.
        assert harness.inspect(daemon, container, "{{.Image}}") == \
            daemon.docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
        harness.wait_health(daemon, container, "healthy", timeout=60)
        limits = json.loads(harness.inspect(daemon, container, "{{json .HostConfig.Ulimits}}"))
        assert limits and limits[0]["Name"] == "nofile"
    finally:
        if clone.exists():
            harness.Compose(daemon, clone, ["docker-compose.yml"], "agnes-quickstart", env).down()
