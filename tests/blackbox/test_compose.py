"""Compose files (SPEC §13; issue 7): every supported combination parses with Debian's docker-compose and
has the mounts, environment and health check its layout needs; host-mount + flat-mount is refused."""
import itertools
import subprocess

import pytest
import yaml

from conftest import ROOT, base_env, run_agnes

OVERLAYS = ["docker-compose.prod.yml", "docker-compose.host-mount.yml", "docker-compose.flat-mount.yml",
            "docker-compose.tls.yml"]


def config(*overlays, env=None):
    args = ["docker-compose", "-f", "docker-compose.yml"]
    for overlay in overlays:
        args += ["-f", overlay]
    out = subprocess.run([*args, "config"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, f"{overlays}: {out.stderr}"
    return yaml.safe_load(out.stdout)


def supported():
    for n in range(len(OVERLAYS) + 1):
        for combo in itertools.combinations(OVERLAYS, n):
            if not ("docker-compose.host-mount.yml" in combo and "docker-compose.flat-mount.yml" in combo):
                yield combo


@pytest.mark.parametrize("overlays", list(supported()), ids=lambda c: "+".join(o[15:-4] for o in c) or "base")
def test_every_supported_combination_parses_and_keeps_what_it_needs(overlays):
    doc = config(*overlays)
    app = doc["services"]["app"]
    targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in app["volumes"]}
    assert "/data" in targets  # no overlay may drop the data mount
    assert app["environment"]["DATA_DIR"] == "/data"
    health = app["healthcheck"]
    assert "/api/health" in " ".join(health["test"]) and health["start_period"] == "30s"
    assert app["stop_grace_period"] == "60s" and app["stop_signal"] == "SIGTERM"
    if "docker-compose.flat-mount.yml" in overlays:
        binds = {v["target"]: v["source"] for v in app["volumes"]}
        assert binds == {"/data": "/data", "/data-state": "/data-state"}
        assert app["environment"]["STATE_DIR"] == "/data-state"
        assert app["environment"]["AGNES_STATE_MOUNT"] == "required"
    if "docker-compose.host-mount.yml" in overlays:
        bind = [v for v in app["volumes"] if v["target"] == "/data"][0]
        assert bind["type"] == "bind" and bind["source"] == "/data" and bind["bind"]["propagation"] == "rslave"
        assert "STATE_DIR" not in app["environment"]
    if "docker-compose.prod.yml" in overlays:
        assert app["image"].endswith(":stable")
        # `up` runs the local image; the upgrade script pulls, so its rollback stays rolled back.
        assert "pull_policy" not in app
    # Scheduled backups of the state tier onto the data disk, by default.
    assert app["environment"]["AGNES_BACKUP_DIR"] == "/data/backups"
    assert app["ulimits"]["nofile"] == 65536
    if "docker-compose.tls.yml" in overlays:
        caddy = doc["services"]["caddy"]
        mounts = {v["target"] if isinstance(v, dict) else v.split(":")[1]: v for v in caddy["volumes"]}
        assert "/certs" in mounts and "/etc/caddy/Caddyfile" in mounts
        certs = mounts["/certs"]
        assert (certs["read_only"] if isinstance(certs, dict) else certs.endswith(":ro"))
        assert caddy["depends_on"]["app"]["condition"] == "service_healthy"
    else:
        assert set(doc["services"]) == {"app"}


def test_limits_and_tags_come_from_the_environment():
    import os
    env = dict(os.environ, AGNES_MEM_LIMIT="1g", AGNES_CPUS="1.5", AGNES_TAG="stable-2026.11.8",
               AGNES_STATE_HOST_DIR="/disks/state", AGNES_NOFILE="20000", CADDY_IMAGE="local/caddy:debian",
               AGNES_HTTPS_PORT="8443", AGNES_HTTP_BIND="127.0.0.1", AGNES_BACKUP_DIR="/backups")
    doc = config("docker-compose.prod.yml", "docker-compose.flat-mount.yml", "docker-compose.tls.yml", env=env)
    app = doc["services"]["app"]
    assert app["mem_limit"] == "1g" and float(app["cpus"]) == 1.5
    assert app["image"].endswith(":stable-2026.11.8")
    assert app["ulimits"]["nofile"] == 20000  # hosts with a lower hard limit than 65536 set it
    assert app["environment"]["AGNES_BACKUP_DIR"] == "/backups"
    caddy = doc["services"]["caddy"]
    assert caddy["image"] == "local/caddy:debian"
    assert any("127.0.0.1:8443:443" in str(p) for p in caddy["ports"]), caddy["ports"]
    assert {v["target"]: v["source"] for v in app["volumes"]}["/data-state"] == "/disks/state"
    assert "/disks/state/certs:/certs:ro" in doc["services"]["caddy"]["volumes"]


def test_host_mount_and_flat_mount_together_are_refused(workdir):
    doc = config("docker-compose.host-mount.yml", "docker-compose.flat-mount.yml")
    env = dict(base_env(workdir), **{k: v for k, v in doc["services"]["app"]["environment"].items()
                                    if k.startswith("AGNES_COMPOSE_LAYOUT")})
    out = run_agnes(["serve"], env)
    assert out.returncode == 1 and "mutually exclusive" in out.stderr, out.stderr
    assert not (workdir / "state").exists()  # refused before anything was written
