"""What `agnes pull` and `agnes push` talk to (SPEC §10; issue 6): the manifest, table downloads with
ETag / 304 / Range / HEAD, and session uploads - as analysts with and without grants see them."""
import hashlib

import requests

from test_catalog import everyone_id
from test_upload import upload_raw
from test_users import call, setup_admin_and_analyst

ORDERS = b"id,item\n" + b"".join(b"%d,item %d\n" % (i, i) for i in range(2000))
SECRET = b"id,salary\n1,100\n"


def prepare(server_factory, env):
    server = server_factory(env)
    admin, _, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    assert upload_raw(server, token, ORDERS, name="orders").status_code in (200, 201)
    assert upload_raw(server, token, SECRET, name="salaries").status_code in (200, 201)
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    return server, token, analyst["access_token"]


def download(server, token, table, **headers):
    return requests.get(f"{server.url}/api/data/{table}/download", headers={"Authorization": f"Bearer {token}",
                                                                           **headers}, timeout=30)


def test_the_manifest_lists_what_the_caller_may_read_with_content_hashes(server_factory, env, workdir):
    server, admin, analyst = prepare(server_factory, env)
    mine = call(server, "GET", "/api/sync/manifest", analyst).json()
    assert list(mine["tables"]) == ["orders"] and mine["count"] == 1 and mine["server_time"].endswith("Z")
    orders = mine["tables"]["orders"]
    assert orders["rows"] == 2000 and orders["query_mode"] == "local" and orders["source_type"] == "local"
    assert orders["downloadable"] is True and orders["updated"].endswith("Z")
    body = download(server, analyst, "orders").content
    assert hashlib.sha256(body).hexdigest() == orders["hash"] and len(body) == orders["size_bytes"]
    assert sorted(call(server, "GET", "/api/sync/manifest", admin).json()["tables"]) == ["orders", "salaries"]
    # The same content uploaded again keeps its hash: a client's next pull moves nothing.
    assert upload_raw(server, admin, ORDERS, name="orders").status_code in (200, 201)
    assert call(server, "GET", "/api/sync/manifest", analyst).json()["tables"]["orders"]["hash"] == orders["hash"]
    changed = ORDERS + b"9999,item new\n"
    assert upload_raw(server, admin, changed, name="orders").status_code in (200, 201)
    after = call(server, "GET", "/api/sync/manifest", analyst).json()["tables"]["orders"]
    assert after["hash"] != orders["hash"] and after["rows"] == 2001


def test_downloads_use_etags_ranges_and_head(server_factory, env):
    server, _, analyst = prepare(server_factory, env)
    full = download(server, analyst, "orders")
    assert full.status_code == 200 and full.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert full.content[:4] == b"PAR1" and full.headers["Accept-Ranges"] == "bytes"
    etag = full.headers["ETag"]
    assert etag == '"%s"' % hashlib.sha256(full.content).hexdigest()
    assert 'filename="orders.parquet"' in full.headers["Content-Disposition"]
    assert download(server, analyst, "orders", **{"If-None-Match": etag}).status_code == 304
    assert download(server, analyst, "orders", **{"If-None-Match": '"other"'}).status_code == 200
    part = download(server, analyst, "orders", Range="bytes=100-")
    size = len(full.content)
    assert part.status_code == 206 and part.content == full.content[100:]
    assert part.headers["Content-Range"] == f"bytes 100-{size - 1}/{size}"
    assert download(server, analyst, "orders", Range="bytes=0-9").content == full.content[:10]
    assert download(server, analyst, "orders", Range="bytes=-8").content == full.content[-8:]
    # A resume against a file that changed meanwhile gets the whole new file, never a mix.
    stale = download(server, analyst, "orders", Range="bytes=100-", **{"If-Range": '"old-version"'})
    assert stale.status_code == 200 and stale.content == full.content
    beyond = download(server, analyst, "orders", Range=f"bytes={size}-")
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    head = requests.head(f"{server.url}/api/data/orders/download", headers={"Authorization": f"Bearer {analyst}"})
    assert head.status_code == 200 and head.headers["ETag"] == etag and int(head.headers["Content-Length"]) == size
    assert head.content == b""


def test_downloads_check_grants_on_the_table_id_and_never_take_paths(server_factory, env, workdir):
    server, admin, analyst = prepare(server_factory, env)
    # An ungranted table is answered exactly as one that does not exist: no oracle for names.
    denied, missing = download(server, analyst, "salaries"), download(server, analyst, "salaries_x")
    assert denied.status_code == missing.status_code == 404
    assert denied.json()["detail"] == missing.json()["detail"].replace("salaries_x", "salaries")
    assert download(server, admin, "salaries").status_code == 200
    assert requests.get(f"{server.url}/api/data/orders/download").status_code == 401
    for attempt in ("..%2F..%2Fstate%2Fsystem.duckdb", "%2Fetc%2Fpasswd", "orders.parquet", "..", "ORDERS%00",
                    "local%2Fextract.duckdb"):
        r = requests.get(f"{server.url}/api/data/{attempt}/download", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == (400 if "%00" in attempt else 404), (attempt, r.status_code)  # %00: refused, never cut
        assert b"PAR1" not in r.content and b"DUCK" not in r.content
    missing = download(server, admin, "nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_session_logs_are_kept_per_user_and_capped(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_UPLOAD_SESSION_MAX_BYTES="1000"))
    _, created, analyst = setup_admin_and_analyst(server)
    token = analyst["access_token"]
    r = requests.post(f"{server.url}/api/upload/sessions", headers={"Authorization": f"Bearer {token}"},
                      files={"file": ("../../etc/cron.d/evil", b"session transcript\n")}, timeout=30)
    assert r.status_code == 201, r.text
    stored = r.json()["file"]
    assert stored.endswith("-evil") and "/" not in stored and r.json()["size_bytes"] == 19
    folder = workdir / "data" / "user_sessions" / created["id"]
    assert (folder / stored).read_bytes() == b"session transcript\n"
    assert oct((folder / stored).stat().st_mode & 0o777) == "0o600"
    raw = requests.post(f"{server.url}/api/upload/sessions", params={"name": "notes.md"}, data=b"# notes\n",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert raw.status_code == 201 and raw.json()["file"].endswith("-notes.md")
    big = requests.post(f"{server.url}/api/upload/sessions", params={"name": "huge.log"}, data=b"x" * 5000,
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert big.status_code == 413 and "upload.max_session_bytes" in big.json()["detail"]
    assert len(list(folder.iterdir())) == 2
    assert requests.post(f"{server.url}/api/upload/sessions", data=b"x").status_code == 401
