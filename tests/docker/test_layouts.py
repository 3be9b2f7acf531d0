"""Both state layouts with real mounts (SPEC §3, §13; issue 16 item 3): layout A (host-mount, the state disk
nested at /data/state) and layout B (flat-mount, /data-state a disk of its own) keep their state across
down/up; B on a plain directory is refused by the shadow-mount guard; the A -> B runbook of docs/state-dir.md
runs block by block on real containers; a backup restores onto a fresh host as docs/deploy.md says."""
import os
import re
import subprocess
import time

import pytest

import harness


def doc_blocks(path, heading):
    """The ```sh blocks of one section of a document, in order."""
    text = (harness.ROOT / path).read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return re.findall(r"```sh\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def run_blocks(daemon, blocks, cwd, env=None):
    script = "set -euo pipefail\n" + "\n".join(blocks)
    out = subprocess.run(["bash", "-c", script], cwd=cwd, env=dict(daemon.env, **(env or {})), capture_output=True,
                         text=True, timeout=1800)
    assert out.returncode == 0, f"--- script\n{script}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    return out


@pytest.fixture
def layouts_repository(daemon, image, registry):
    return harness.publish(daemon, image, f"{registry.address}/agnes-layouts", "stable")


def test_layout_a_keeps_state_then_the_runbook_moves_it_to_layout_b(daemon, layouts_repository, mounts, workdir):
    data = mounts.tmpfs(workdir / "data")                 # the data disk
    nested = mounts.ext4(data / "state", label="agnes-a")  # layout A: the state disk nested inside it
    harness.chown_tree(data)
    home = harness.make_host(daemon, f"{layouts_repository}:stable", workdir / "opt-agnes",
                             harness.host_env(layouts_repository, "agnes-layouts", AGNES_LAYOUT="host-mount",
                                              AGNES_DATA_HOST_DIR=data, AGNES_STATE_MOUNT="required"))
    api = harness.Api(f"http://127.0.0.1:{harness.read_env(home)['AGNES_PORT']}")
    compose = harness.host_compose(daemon, home)
    try:
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "healthy" in out.stdout, out.stdout + out.stderr
        api.wait_up()
        pat = api.populate()
        before = api.state()
        check = api("GET", "/api/health/detailed").json()["checks"]["state_dir"]
        assert check["path"] == "/data/state" and check["is_mount_point"] is True and check["mount_required"] is True
        assert (nested / "system.duckdb").exists()  # on the state disk, not on the data disk below it
        # down and up: the state is still there, the token minted before still works.
        compose("down")
        assert harness.upgrade(daemon, home).returncode == 0
        api.wait_up()
        api.check_survived(before, pat)

        # The A -> B runbook, block by block.  The disk step is the test's: a loop-mounted ext4 image
        # (a test cannot attach a disk or edit /etc/fstab); every other block runs as written.
        blocks = doc_blocks("docs/state-dir.md", "## Migrating a host from A to B")
        assert len(blocks) == 9 and "mkfs.ext4" in blocks[2], "the runbook changed: update this test"
        state = workdir / "data-state"
        backup_path = workdir / "before-b.tar.gz"
        blocks[0] = blocks[0].replace("cd /opt/agnes", f"cd {home}").replace(
            "DATA=/data STATE=/data-state", f"DATA={data} STATE={state}")
        blocks[1] = blocks[1].replace("/root/agnes-state-before-b.tar.gz", str(backup_path))
        mounts.ext4(state, label="agnes-b")
        blocks[2] = 'chown 999:999 "$STATE" && chmod 700 "$STATE"\n'
        transcript = run_blocks(daemon, blocks, cwd=home)
        # doctor's state_mount check passes; health answers (a 256 MB test disk is below the 1 GiB free-space
        # warning, so "degraded" is what a healthy instance says here - never "unhealthy").
        compact = transcript.stdout.replace(" ", "")
        assert "[ok]state_mount" in compact and re.search(r'\{"status":"(ok|degraded)"', compact), \
            transcript.stdout
        assert not (data / "state").exists()
        env = harness.read_env(home)
        assert env["AGNES_LAYOUT"] == "flat-mount" and env["AGNES_STATE_HOST_DIR"] == str(state)
        api.check_survived(before, pat)
        check = api("GET", "/api/health/detailed").json()["checks"]["state_dir"]
        assert check["path"] == "/data-state" and check["is_mount_point"] is True
        assert (state / "system.duckdb").exists() and oct((state / ".jwt_secret").stat().st_mode & 0o777) == "0o600"
        # The backup step 1 took is a real one.
        verified = daemon.docker("run", "--rm", "--user", "0", "-v", f"{backup_path}:/b.tar.gz:ro", "--entrypoint", "agnes",
                                 f"{layouts_repository}:stable", "backup", "--verify", "/b.tar.gz")
        assert "complete backup" in verified.stdout

        # Layout B: down and up keep the state too.
        compose = harness.host_compose(daemon, home)
        compose("down")
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "flat-mount" in out.stdout, out.stdout + out.stderr
        api.wait_up()
        api.check_survived(before, pat)
    finally:
        harness.host_compose(daemon, home).down()


def test_layout_b_on_a_plain_directory_is_refused_by_the_guard(daemon, layouts_repository, mounts, workdir):
    data = mounts.tmpfs(workdir / "data")
    plain = workdir / "data-state"  # the state disk was never mounted: a plain directory of the host's disk
    plain.mkdir()
    harness.chown_tree(data)
    harness.chown_tree(plain)
    home = harness.make_host(daemon, f"{layouts_repository}:stable", workdir / "opt-agnes",
                             harness.host_env(layouts_repository, "agnes-plain", AGNES_LAYOUT="flat-mount",
                                              AGNES_DATA_HOST_DIR=data, AGNES_STATE_HOST_DIR=plain))
    compose = harness.host_compose(daemon, home)
    try:
        # The upgrade script checks the mount on the host first...
        out = harness.upgrade(daemon, home, env={"AGNES_UPGRADE_RETRIES": "2", "AGNES_UPGRADE_RETRY_SECONDS": "0"})
        assert out.returncode == 1 and f"state disk {plain} is not mounted after 2 checks" in out.stdout, out.stdout
        assert compose.container() is None
        # ...and the server itself refuses when started by hand, naming the problem and the fix.
        compose("up", "-d", "--no-build")
        container = compose.container()
        for _ in range(60):
            logs = compose.logs()
            if "AGNES_STATE_MOUNT=required" in logs:
                break
            time.sleep(1)
        assert "is the directory" in logs and "of another filesystem bound there" in logs, logs
        assert "findmnt" in logs and "docs/state-dir.md" in logs
        status = harness.inspect(daemon, container, "{{.State.Status}} {{.State.ExitCode}}")
        assert status.split()[0] in ("exited", "restarting") and status.split()[1] == "1", status
        assert os.listdir(plain) == []  # refused before anything was written there
    finally:
        compose.down()


def test_a_backup_restores_onto_a_fresh_host(daemon, layouts_repository, mounts, workdir):
    """docs/deploy.md "Restoring onto a fresh host", as written, from a backup of a running instance."""
    old_data = mounts.tmpfs(workdir / "old" / "data")
    old_state = mounts.ext4(workdir / "old" / "data-state", label="old-state")
    harness.chown_tree(old_data)
    harness.chown_tree(old_state)
    image = f"{layouts_repository}:stable"
    old_home = harness.make_host(daemon, image, workdir / "old" / "opt-agnes",
                                 harness.host_env(layouts_repository, "agnes-old", AGNES_LAYOUT="flat-mount",
                                                  AGNES_DATA_HOST_DIR=old_data, AGNES_STATE_HOST_DIR=old_state))
    new_home = None
    try:
        assert harness.upgrade(daemon, old_home).returncode == 0
        old = harness.Api(f"http://127.0.0.1:{harness.read_env(old_home)['AGNES_PORT']}")
        old.wait_up()
        pat = old.populate()
        before = old.state()
        blocks = doc_blocks("docs/deploy.md", "### Restoring onto a fresh host")
        assert len(blocks) == 2, "the restore section changed: update this test"
        archive = workdir / "state.tar.gz"
        take = blocks[0].replace("cd /opt/agnes", f"cd {old_home}").replace("/root/agnes-state.tar.gz", str(archive))
        run_blocks(daemon, [take], cwd=old_home)
        harness.host_compose(daemon, old_home).down()  # the old host is gone

        new_data = mounts.tmpfs(workdir / "new" / "data")
        new_state = mounts.ext4(workdir / "new" / "data-state", label="new-state")
        harness.chown_tree(new_data)
        harness.chown_tree(new_state)
        env = harness.read_env(old_home)
        env.update(AGNES_DATA_HOST_DIR=str(new_data), AGNES_STATE_HOST_DIR=str(new_state),
                   COMPOSE_PROJECT_NAME="agnes-new")
        new_home = harness.make_host(daemon, image, workdir / "new" / "opt-agnes", env)
        restore = blocks[1].replace("cd /opt/agnes", f"cd {new_home}").replace("/root/agnes-state.tar.gz", str(archive))
        out = run_blocks(daemon, [restore], cwd=new_home)
        assert "restored" in out.stdout and "healthy" in out.stdout, out.stdout
        new = harness.Api(old.url)
        new.token = old.token
        new.wait_up()
        # Tables live in the data tier: on a fresh host they come back with a sync; the registry, users,
        # tokens and grants come back with the state.
        after = new.state()
        assert after["users"] == before["users"] and after["registry"] == before["registry"]
        assert new("GET", "/api/me", token=pat).status_code == 200
        assert {(p.stat().st_uid) for p in new_state.iterdir() if p.name != "lost+found"} == {999}
    finally:
        harness.host_compose(daemon, old_home).down()
        if new_home is not None:
            harness.host_compose(daemon, new_home).down()
