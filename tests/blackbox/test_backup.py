"""Backup and restore of the state tier (SPEC §18; issue 16): `agnes backup` beside a running server,
`--verify`, `agnes restore` onto a wiped state directory, scheduled backups with retention and their health."""
import gzip
import hashlib
import io
import json
import os
import random
import signal
import stat
import subprocess
import tarfile
import threading
import time

import pytest
import requests

from conftest import AGNES_BIN, duckdb_exec, run_agnes

PASSWORD = "a long admin passphrase"


def call(server, method, path, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, server.url + path, headers=headers, timeout=30, **kw)


def populate(server):
    """Users, a group with a member and a grant, tokens, registered tables with schedules: everything a
    restore must bring back.  Returns the admin's session token and the tokens minted."""
    admin = call(server, "POST", "/auth/bootstrap", json={"email": "admin@example.com", "password": PASSWORD})
    assert admin.status_code == 200, admin.text
    token = admin.json()["access_token"]
    for email in ("ana@example.com", "bo@example.com"):
        r = call(server, "POST", "/api/users", token, json={"email": email, "name": email[:3], "password": PASSWORD})
        assert r.status_code == 201, r.text
    group = call(server, "POST", "/api/admin/groups", token, json={"name": "Finance", "description": "money"})
    assert group.status_code in (200, 201), group.text
    gid = group.json()["id"]
    assert call(server, "POST", f"/api/admin/groups/{gid}/members", token,
                json={"email": "ana@example.com"}).status_code in (200, 201)
    for name, schedule in (("orders", "every 15m"), ("customers", "daily 02:30")):
        r = call(server, "POST", "/api/admin/register-table", token,
                 json={"name": name, "source_type": "postgres", "sync_schedule": schedule})
        assert r.status_code == 201, r.text
    grant = call(server, "POST", "/api/admin/grants", token,
                 json={"group_id": gid, "resource_type": "table", "resource_id": "orders"})
    assert grant.status_code in (200, 201), grant.text
    pat = call(server, "POST", "/auth/tokens", token, json={"name": "ci", "expires_in_days": 30})
    assert pat.status_code in (200, 201), pat.text
    ana = call(server, "POST", "/auth/token", json={"email": "ana@example.com", "password": PASSWORD}).json()
    return token, pat.json()["token"], ana["access_token"]


def api_view(server, token):
    """What an admin sees of users, groups, members, grants, tokens and the registry."""
    groups = call(server, "GET", "/api/admin/groups", token).json()
    group_list = groups["groups"] if isinstance(groups, dict) else groups
    members = {g["name"]: sorted(m["email"] for m in _items(call(server, "GET", f"/api/admin/groups/{g['id']}/members",
                                                                 token).json(), "members"))
               for g in group_list}
    registry = call(server, "GET", "/api/admin/registry", token).json()["tables"]
    return {
        "users": _items(call(server, "GET", "/api/users", token).json(), "users"),
        "groups": group_list,
        "members": members,
        "grants": _items(call(server, "GET", "/api/admin/grants", token).json(), "grants"),
        "tokens": _items(call(server, "GET", "/auth/admin/tokens", token).json(), "tokens"),
        "registry": sorted(({k: v for k, v in t.items() if k != "last_sync_error"} for t in registry),
                           key=lambda t: t["id"]),
    }


def _items(body, key):
    return body[key] if isinstance(body, dict) else body


def _strip_last_use(view):
    """A token's last_used_at moves whenever it is used (the comparison itself uses them)."""
    out = dict(view)
    out["tokens"] = [{k: v for k, v in t.items() if k not in ("last_used_at", "last_used_ip")} for t in view["tokens"]]
    out["users"] = [{k: v for k, v in u.items() if k not in ("last_login_at", "last_login")} for u in view["users"]]
    return out


def dump_database(path):
    """Every table's columns and rows, and the schema's constraints: the logical content of system.duckdb."""
    tables = duckdb_exec(path, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' ORDER BY 1").split()
    schema = duckdb_exec(path, "SELECT table_name, column_name, data_type, is_nullable, column_default "
                               "FROM information_schema.columns WHERE table_schema = 'main' ORDER BY ALL")
    constraints = duckdb_exec(path, "SELECT table_name, constraint_type, constraint_text FROM duckdb_constraints() "
                                    "ORDER BY ALL")
    rows = {t: duckdb_exec(path, f'SELECT * FROM "{t}" ORDER BY ALL') for t in tables}
    return {"schema": schema, "constraints": constraints, "rows": rows}


def backup(env, *args, check=True):
    out = run_agnes(["backup", *args], env, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def members(path):
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def manifest_of(path):
    with tarfile.open(path, "r:gz") as tar:
        return json.load(tar.extractfile("MANIFEST.json"))


def test_backup_of_a_running_server_restores_onto_a_wiped_state_dir(server_factory, env, workdir):
    server = server_factory(env)
    token, pat, ana = populate(server)
    before = api_view(server, token)
    archive = workdir / "state.tar.gz"
    out = backup(env, "--output", str(archive), "--json")
    report = json.loads(out.stdout)
    assert report["taken_by_server"] is True and report["path"] == str(archive)
    manifest = report["manifest"]
    assert manifest["format"] == "agnes-state-backup" and manifest["schema_version"] >= 1
    assert manifest["contents"]["users"] == 3 and manifest["contents"]["table_registry"] == 2
    assert manifest["contents"]["personal_access_tokens"] == 1
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) >= {"system.duckdb", ".jwt_secret", ".session_secret"}
    # The archive is a plain .tar.gz: any tar reads it, and each file's SHA-256 is in the manifest.
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getnames()[0] == "MANIFEST.json"
        for name, entry in listed.items():
            if entry["type"] == "file":
                assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == entry["sha256"], name
    assert oct(archive.stat().st_mode & 0o777) == "0o600"  # it holds the secrets
    assert server.stop() == 0
    original = dump_database(workdir / "state" / "system.duckdb")

    subprocess.run(["rm", "-rf", str(workdir / "state")], check=True)
    restored = run_agnes(["restore", str(archive)], env)
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout and "3 users" in restored.stdout
    state = workdir / "state"
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    for secret in (".jwt_secret", ".session_secret"):
        assert oct((state / secret).stat().st_mode & 0o777) == "0o600"
    assert dump_database(state / "system.duckdb") == original

    again = server_factory(env)
    # The tokens issued before the backup still work: same secrets, same token rows.
    assert call(again, "GET", "/api/me", pat).status_code == 200
    assert call(again, "GET", "/api/me", ana).json()["email"] == "ana@example.com"
    assert call(again, "GET", "/api/me", token).status_code == 200
    assert call(again, "POST", "/auth/token", json={"email": "bo@example.com", "password": PASSWORD}).status_code == 200
    assert _strip_last_use(api_view(again, token)) == _strip_last_use(before)
    assert again.get("/api/health").json()["status"] in ("ok", "degraded")


def test_an_archive_is_a_point_in_time_even_while_writes_go_on(server_factory, env, workdir):
    server = server_factory(env)
    token, _, _ = populate(server)
    stop = threading.Event()
    created = []

    def writer():
        n = 0
        while not stop.is_set():
            r = call(server, "POST", "/api/users", token, json={"email": f"w{n}@example.com"})
            if r.status_code == 201:
                created.append(n)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        counts = []
        for i in range(4):
            path = workdir / f"during-{i}.tar.gz"
            backup(env, "--output", str(path))
            verified = run_agnes(["backup", "--verify", str(path), "--json"], env)
            assert verified.returncode == 0, verified.stderr
            counts.append(json.loads(verified.stdout)["manifest"]["contents"]["users"])
    finally:
        stop.set()
        thread.join()
    assert counts == sorted(counts) and counts[-1] > 3  # each archive saw the writes committed before it
    assert counts[-1] <= 3 + len(created)


def test_backup_with_the_server_stopped_and_to_stdout(server_factory, env, workdir):
    server = server_factory(env)
    populate(server)
    server.stop()
    default = run_agnes(["backup"], dict(env, AGNES_BACKUP_DIR=str(workdir / "kept")))
    assert default.returncode == 0, default.stderr
    assert "no server was running" in default.stdout
    archives = list((workdir / "kept").glob("agnes-backup-*.tar.gz"))
    assert len(archives) == 1
    # Nothing in the state tier was written by a backup of a stopped server (not even a WAL replay).
    assert sorted(p.name for p in (workdir / "state").iterdir() if not p.name.startswith(".configure")) == \
        [".jwt_secret", ".session_secret", "system.duckdb"]
    piped = subprocess.run([AGNES_BIN, "backup", "--output", "-"], env=env, capture_output=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    (workdir / "piped.tar.gz").write_bytes(piped.stdout)
    assert run_agnes(["backup", "--verify", str(workdir / "piped.tar.gz")], env).returncode == 0
    exists = run_agnes(["backup", "--output", str(archives[0])], env)
    assert exists.returncode == 1 and "already exists" in exists.stderr
    usage = run_agnes(["backup", "--verify"], env)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_a_server_holding_the_database_without_answering_is_named(server_factory, env, workdir):
    server = server_factory(env)
    populate(server)
    (workdir / "state" / ".control.sock").unlink()  # as if the socket could not be made
    out = backup(env, "--output", str(workdir / "x.tar.gz"), check=False)
    assert out.returncode == 1 and "open in another process" in out.stderr and "control socket" in out.stderr
    assert not (workdir / "x.tar.gz").exists()
    assert not [p for p in workdir.iterdir() if ".partial-" in p.name]


def test_restore_refuses_a_non_empty_state_dir_a_running_server_and_a_newer_schema(server_factory, env, workdir):
    server = server_factory(env)
    populate(server)
    archive = workdir / "state.tar.gz"
    backup(env, "--output", str(archive))
    running = run_agnes(["restore", str(archive)], env)
    assert running.returncode == 1 and "a server is running" in running.stderr
    server.stop()
    occupied = run_agnes(["restore", str(archive)], env)
    assert occupied.returncode == 1 and "is not empty" in occupied.stderr and "--force" in occupied.stderr
    # --force moves what was there aside (nothing is deleted), including a WAL that must never be replayed.
    (workdir / "state" / "system.duckdb.wal").write_bytes(b"stale")
    forced = run_agnes(["restore", str(archive), "--force"], env)
    assert forced.returncode == 0, forced.stderr
    aside = [p for p in (workdir / "state").iterdir() if p.name.startswith(".pre-restore-")]
    assert len(aside) == 1 and (aside[0] / "system.duckdb.wal").read_bytes() == b"stale"
    assert not (workdir / "state" / "system.duckdb.wal").exists()
    # Into another directory, given by --state-dir.
    other = workdir / "elsewhere"
    assert run_agnes(["restore", str(archive), "--state-dir", str(other)], env).returncode == 0
    assert (other / "system.duckdb").exists()

    # An archive of a newer schema: verify says so, restore refuses before touching anything.
    newer = workdir / "newer.tar.gz"
    rewrite(archive, newer, bump_schema=True)
    verified = run_agnes(["backup", "--verify", str(newer)], env)
    assert verified.returncode == 0 and "newer than this agnes knows" in verified.stdout, verified.stdout
    empty = workdir / "fresh"
    refused = run_agnes(["restore", str(newer), "--state-dir", str(empty)], env)
    assert refused.returncode == 1 and "never downgrades" in refused.stderr, refused.stderr
    assert [p.name for p in empty.iterdir()] == []


def rewrite(src, dst, bump_schema=False, corrupt=None, extra=None, drop=None):
    """Copy an archive, changing it the way a test needs, with a manifest that matches (unless corrupt)."""
    work = dst.parent / (dst.name + ".d")
    work.mkdir()
    with tarfile.open(src, "r:gz") as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        files = {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}
    if bump_schema:
        db = work / "system.duckdb"
        db.write_bytes(files["system.duckdb"][1])
        version = manifest["schema_version"] + 1
        duckdb_exec(db, f"INSERT INTO schema_version (version, name) VALUES ({version}, 'from the future'); CHECKPOINT")
        data = db.read_bytes()
        files["system.duckdb"] = (files["system.duckdb"][0], data)
        manifest["schema_version"] = version
        for f in manifest["files"]:
            if f["name"] == "system.duckdb":
                f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    if corrupt:
        info, data = files[corrupt]
        files[corrupt] = (info, bytes([data[0] ^ 1]) + data[1:])
    if drop:
        del files[drop]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as out:
        text = json.dumps(manifest).encode()
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(text)
        out.addfile(info, io.BytesIO(text))
        for name, (info, data) in files.items():
            if name == "MANIFEST.json":
                continue
            if data is not None:
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
            else:
                out.addfile(info)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    dst.write_bytes(gzip.compress(buf.getvalue()))


def test_verify_finds_damage_and_restore_accepts_only_state_files(server, env, workdir):
    call(server, "POST", "/auth/bootstrap", json={"email": "admin@example.com", "password": PASSWORD})
    archive = workdir / "good.tar.gz"
    backup(env, "--output", str(archive))
    cases = {
        "flipped": (lambda p: rewrite(archive, p, corrupt=".jwt_secret"), "is damaged: .jwt_secret"),
        "missing": (lambda p: rewrite(archive, p, drop=".session_secret"), "is incomplete: .session_secret"),
        "traversal": (lambda p: rewrite(archive, p, extra={"../evil": b"x"}), "manifest does not list"),
        "extra": (lambda p: rewrite(archive, p, extra={"certs/../../x": b"x"}), "manifest does not list"),
        "cut": (lambda p: p.write_bytes(archive.read_bytes()[:-40]), "not a complete .tar.gz"),
        "noise": (lambda p: p.write_bytes(os.urandom(4096)), "not a complete .tar.gz"),
        "plain tar": (lambda p: subprocess.run(["tar", "-czf", str(p), "-C", str(workdir), "config"], check=True),
                      "does not start with MANIFEST.json"),
    }
    for label, (make, words) in cases.items():
        bad = workdir / f"bad-{label.replace(' ', '-')}.tar.gz"
        make(bad)
        out = run_agnes(["backup", "--verify", str(bad)], env)
        assert out.returncode == 1 and words in out.stderr, (label, out.stderr)
        target = workdir / f"restore-{label.replace(' ', '-')}"
        refused = run_agnes(["restore", str(bad), "--state-dir", str(target)], env)
        assert refused.returncode == 1, label
        assert [p.name for p in target.iterdir()] == [], (label, list(target.iterdir()))
    assert not (workdir / "evil").exists() and not (workdir.parent / "evil").exists()
    assert run_agnes(["backup", "--verify", str(workdir / "missing.tar.gz")], env).returncode == 1


def test_secrets_from_the_environment_are_named_not_archived(server_factory, env, workdir):
    env = dict(env, JWT_SECRET_KEY="k" * 64)
    server_factory(env)
    out = backup(env, "--output", str(workdir / "env.tar.gz"))
    assert "JWT_SECRET_KEY came from the environment" in out.stderr
    assert manifest_of(workdir / "env.tar.gz")["secrets_from_environment"] == ["JWT_SECRET_KEY"]
    assert ".jwt_secret" not in members(workdir / "env.tar.gz")


def test_certificates_and_overlays_travel_with_the_state(server_factory, env, workdir):
    state = workdir / "state"
    (state / "certs").mkdir(parents=True)
    (state / "certs" / "fullchain.pem").write_text("CERT\n")
    (state / "certs" / "privkey.pem").write_text("KEY\n")
    os.chmod(state / "certs" / "privkey.pem", 0o600)
    (state / "certs" / ".rotate.abc").mkdir()  # the rotate script's scratch: not state
    (state / ".env_overlay").write_text("POSTGRES_DSN=host=db password=secret\n")
    (state / "instance.yaml").write_text("instance:\n  name: Backed Up\n")
    server = server_factory(env)
    assert server.get("/api/health").status_code == 200
    archive = workdir / "all.tar.gz"
    backup(env, "--output", str(archive))
    server.stop()
    assert set(members(archive)) >= {"certs", "certs/fullchain.pem", "certs/privkey.pem", ".env_overlay",
                                     "instance.yaml"}
    assert "certs/.rotate.abc" not in members(archive)
    target = workdir / "restored"
    assert run_agnes(["restore", str(archive), "--state-dir", str(target)], env).returncode == 0
    assert (target / "certs" / "privkey.pem").read_text() == "KEY\n"
    assert oct((target / ".env_overlay").stat().st_mode & 0o777) == "0o600"
    assert (target / "instance.yaml").read_text() == "instance:\n  name: Backed Up\n"
    if os.geteuid() == 0:  # root restoring for a server that runs as someone else gives them the files
        owned = workdir / "owned"
        owned.mkdir()
        os.chown(owned, 999, 999)
        assert run_agnes(["restore", str(archive), "--state-dir", str(owned)], env).returncode == 0
        assert {(p.stat().st_uid, p.stat().st_gid) for p in owned.rglob("*")} == {(999, 999)}


def test_kill_9_at_any_moment_of_a_backup_leaves_no_archive_under_its_final_name(server_factory, env, workdir):
    server = server_factory(env)
    populate(server)
    start = time.monotonic()
    backup(env, "--output", str(workdir / "timing.tar.gz"))
    duration = time.monotonic() - start
    rng = random.Random(16)
    for i in range(12):
        final = workdir / f"killed-{i}.tar.gz"
        proc = subprocess.Popen([AGNES_BIN, "backup", "--output", str(final)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if final.exists():  # it finished before the kill: then it is whole
            assert run_agnes(["backup", "--verify", str(final)], env).returncode == 0
    # The server served every request it could and still answers the next one.
    backup(env, "--output", str(workdir / "after.tar.gz"))
    # With the server stopped, `agnes backup` stages the database beside the archive: killed, it leaves
    # only hidden files, which a server start (its own directories) or a later backup (after an hour) removes.
    server.stop()
    start = time.monotonic()
    backup(env, "--output", str(workdir / "offline-timing.tar.gz"))
    duration = time.monotonic() - start
    for i in range(8):
        final = workdir / f"offline-killed-{i}.tar.gz"
        proc = subprocess.Popen([AGNES_BIN, "backup", "--output", str(final)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, duration * 1.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if final.exists():
            assert run_agnes(["backup", "--verify", str(final)], env).returncode == 0
    for p in workdir.iterdir():
        if p.name.endswith(".tar.gz") and not p.name.startswith("."):
            assert run_agnes(["backup", "--verify", str(p)], env).returncode == 0, p
    assert all(p.name.startswith(".") for p in workdir.iterdir() if ".partial-" in p.name or "-stage-" in p.name)
    # The state tier was never touched by any of it: the server starts on it as before.
    stage = workdir / "data" / "tmp" / ".agnes-backup-stage-left"
    stage.mkdir(parents=True)
    (stage / "system.duckdb").write_bytes(b"a copy a killed server left")
    again = server_factory(env)
    assert again.get("/api/health").json()["status"] in ("ok", "degraded")
    assert not stage.exists()


def test_scheduled_backups_keep_the_newest_and_report_their_age(server_factory, env, workdir):
    backups = workdir / "backups"
    env = dict(env, AGNES_BACKUP_DIR=str(backups), AGNES_BACKUP_INTERVAL="1", AGNES_BACKUP_KEEP="2")
    backups.mkdir()
    stale_partial = backups / ".agnes-backup-20260101T000000Z.tar.gz.partial-abcdef"
    stale_partial.write_bytes(b"left by a killed run")
    os.utime(stale_partial, (time.time() - 7200, time.time() - 7200))
    manual = backups / "before-upgrade.tar.gz"  # names the schedule did not write are never pruned
    manual.write_bytes(b"kept")
    server = server_factory(env)
    token = call(server, "POST", "/auth/bootstrap", json={"email": "admin@example.com", "password": PASSWORD}).json()[
        "access_token"]
    deadline = time.time() + 30
    while server.output().count("scheduled backup written") < 4:
        assert time.time() < deadline, server.output()
        time.sleep(0.2)
    archives = sorted(p.name for p in backups.glob("agnes-backup-*.tar.gz"))
    assert len(archives) == 2, archives
    assert manual.exists() and not stale_partial.exists()
    for name in archives:
        assert run_agnes(["backup", "--verify", str(backups / name)], env).returncode == 0
    time.sleep(5.5)  # one health refresh
    check = call(server, "GET", "/api/health/detailed", token).json()["checks"]["backup"]
    assert check["status"] == "ok" and check["enabled"] is True and check["keep"] == 2
    assert check["last_backup_age_seconds"] <= 6 and check["last_backup_file"].startswith(str(backups))


def test_failing_backups_turn_health_degraded_with_the_reason(server_factory, env, workdir):
    (workdir / "not-a-dir").write_text("a file where the backup directory should be")
    env = dict(env, AGNES_BACKUP_DIR=str(workdir / "not-a-dir" / "backups"), AGNES_BACKUP_INTERVAL="1")
    server = server_factory(env)
    token = call(server, "POST", "/auth/bootstrap", json={"email": "admin@example.com", "password": PASSWORD}).json()[
        "access_token"]
    deadline = time.time() + 20
    while True:
        body = call(server, "GET", "/api/health/detailed", token).json()
        check = body["checks"]["backup"]
        if check["status"] == "warning":
            break
        assert time.time() < deadline, body
        time.sleep(0.5)
    assert body["status"] == "degraded" and check["last_backup_at"] is None
    assert any("scheduled backup of the state tier failed" in w and "not-a-dir" in w for w in body["warnings"])
    assert "scheduled backup failed" in server.output()


def test_backup_settings_are_checked(env, workdir):
    out = run_agnes(["serve"], dict(env, AGNES_BACKUP_DIR="relative/dir"))
    assert out.returncode == 1 and "AGNES_BACKUP_DIR must be an absolute path" in out.stderr
    out = run_agnes(["serve"], dict(env, AGNES_BACKUP_INTERVAL="0"))
    assert out.returncode == 1 and "AGNES_BACKUP_INTERVAL" in out.stderr
    doctor = run_agnes(["doctor", "--json"], dict(env, AGNES_BACKUP_DIR="/srv/backups"))
    assert "/srv/backups" in doctor.stdout
    assert stat.S_ISDIR(os.stat(workdir).st_mode)
