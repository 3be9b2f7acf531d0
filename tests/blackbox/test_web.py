"""The web application's server side (SPEC §11, issue 14): embedded assets and their caching,
page access, security headers, cross-site request refusal, and the endpoints the wizard reads.
What the pages do in a browser is tested in tests/browser/."""
import gzip
import os
import re
import stat

import pytest
import requests

from pg_server import PostgresServer
from test_sync import trigger_and_wait
from test_users import call, setup_admin_and_analyst, ANALYST

PAGES = ["/dashboard", "/catalog", "/catalog/orders", "/query", "/tokens", "/admin/sources", "/admin/tables",
         "/admin/sync", "/admin/users", "/admin/users/x", "/admin/access", "/admin/audit", "/setup", "/login"]


def get(server, path, **kw):
    return requests.get(server.url + path, allow_redirects=False, timeout=10, **kw)


def session_cookie(server, email, password):
    r = requests.post(server.url + "/auth/login", data={"email": email, "password": password},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    return {"access_token": r.cookies["access_token"]}


def claim(server):
    admin, _, _ = setup_admin_and_analyst(server)
    return server, admin["access_token"], session_cookie(server, "admin@example.com", "correct horse battery")


@pytest.fixture
def claimed(server_factory, env):
    """A claimed instance with the demo tables, the admin's token and browser session cookie."""
    return claim(server_factory(dict(env, AGNES_DEMO="1")))


@pytest.fixture
def signed_in(server, env):
    """The same without the demo (quicker to start: the tests that need no table)."""
    return claim(server)


def asset_urls(text):
    return set(re.findall(r'/assets/[A-Za-z0-9._-]+\?v=[0-9a-f]{16}', text))


def test_every_page_and_everything_it_loads_is_served_with_headers_that_keep_it_safe(claimed):
    server, _, cookie = claimed
    seen, queue = set(), []
    for path in PAGES:
        r = get(server, path, cookies=cookie)
        assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8", (path, r.status_code)
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, csp
        assert "require-trusted-types-for 'script'" in csp
        # A page carries a fresh style nonce per response, so it is never cached or revalidated.
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Cache-Control"] == "no-store"
        assert re.search(r"style-src 'self' 'nonce-[0-9a-f]{32}';", csp), csp
        # No inline script or style, no event-handler attributes: the policy would block them anyway.
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), path
        assert not re.search(r"\s(on[a-z]+|style)=", r.text), path
        queue += asset_urls(r.text)
    # Follow every module import: nothing a page needs is missing from the build.
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        r = get(server, url)
        assert r.status_code == 200, url
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable", url
        if url.split("?")[0].endswith(".js"):
            assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
            bare = re.search(r'^\s*(?:import|export)\b[^;]*?\bfrom\s*["\'](?!/assets/)|\bimport\(\s*["\'](?!/assets/)', r.text, re.M)
            assert not bare, f"{url} has an import the browser cannot resolve: {bare and bare.group(0)}"
            queue += asset_urls(r.text)
    assert any("lib.codemirror.view" in u for u in seen) and any("lib.chart.js" in u for u in seen)


def test_the_query_page_hands_codemirror_a_fresh_style_nonce(claimed):
    """/query logged a CSP violation for CodeMirror's inline style; the fix is a per-response nonce in style-src
    that the page passes to EditorView.cspNonce - never 'unsafe-inline'."""
    server, _, cookie = claimed
    nonces = []
    for _ in range(2):
        r = get(server, "/query", cookies=cookie)
        header = re.search(r"style-src 'self' 'nonce-([0-9a-f]{32})'", r.headers["Content-Security-Policy"]).group(1)
        meta = re.search(r'<meta name="csp-nonce" content="([0-9a-f]{32})">', r.text).group(1)
        assert meta == header and "unsafe-inline" not in r.headers["Content-Security-Policy"]
        nonces.append(header)
    assert nonces[0] != nonces[1]


def test_assets_have_etags_gzip_and_long_caching_only_for_their_version(server):
    r = get(server, "/assets/app.css", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/css; charset=utf-8"
    assert r.headers["Cache-Control"] == "no-cache" and "Content-Encoding" not in r.headers
    etag, body = r.headers["ETag"], r.content
    version = etag.strip('"')
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    again = get(server, "/assets/app.css", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag
    zipped = requests.get(server.url + f"/assets/app.css?v={version}", headers={"Accept-Encoding": "gzip"},
                          stream=True, timeout=10)
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    raw = zipped.raw.read()
    assert len(raw) < len(body) / 2 and gzip.decompress(raw) == body
    assert zipped.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    refused = get(server, "/assets/app.css", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers and refused.content == body
    stale = get(server, "/assets/app.css?v=0000000000000000")
    assert stale.headers["Cache-Control"] == "no-cache", "an old version's URL must not be cached as this content"
    r = get(server, "/assets/nope.js")
    assert r.status_code == 404 and r.json()["detail"] == "No asset /assets/nope.js in this build."
    for elsewhere in ("/assets/pages%2Flogin.html", "/assets/..%2F..%2Fetc%2Fpasswd", "/assets/"):
        assert get(server, elsewhere).status_code in (404, 503), elsewhere  # only embedded names, nothing else


def test_setup_mode_serves_the_wizard_and_its_assets_and_sends_other_pages_there(server):
    r = get(server, "/setup")
    assert r.status_code == 200
    for url in asset_urls(r.text):
        assert get(server, url).status_code == 200, url
    for path in ("/", "/dashboard", "/admin/users", "/login"):
        r = get(server, path)
        assert r.status_code == 302 and r.headers["Location"] == "/setup", path


def test_signed_out_browsers_go_to_login_and_analysts_are_kept_out_of_admin_pages(claimed):
    server, _, _ = claimed
    r = get(server, "/admin/access?x=1")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/admin/access"
    assert get(server, "/").headers["Location"] == "/login"
    assert get(server, "/catalog/a%20b").headers["Location"] == "/login?next=/catalog/a%20b"
    cookie = session_cookie(server, ANALYST["email"], ANALYST["password"])
    r = get(server, "/admin/users", cookies=cookie)
    assert r.status_code == 403 and r.headers["Content-Type"].startswith("text/html") and "for admins" in r.text
    assert get(server, "/query", cookies=cookie).status_code == 200
    assert get(server, "/", cookies=cookie).headers["Location"] == "/dashboard"
    # An expired or forged cookie is a signed-out browser, not an error page.
    assert get(server, "/query", cookies={"access_token": "x.y.z"}).headers["Location"] == "/login?next=/query"


def test_bootstrap_signs_the_browser_in(server):
    r = requests.post(server.url + "/auth/bootstrap", json={"email": "a@example.com", "password": "twelve chars!!"},
                      timeout=30)
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("access_token=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert get(server, "/dashboard", cookies={"access_token": r.cookies["access_token"]}).status_code == 200


@pytest.mark.parametrize("headers, allowed", [
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "same-site"}, False),  # a sibling subdomain or another port is another origin
    ({"Sec-Fetch-Site": "same-origin"}, True),
    ({"Origin": "http://evil.example"}, False),
    ({"Origin": "null"}, False),
    ({"Origin": "{url}"}, True),
    ({}, False),  # a cookie and nothing saying where the request comes from
])
def test_cookie_requests_that_change_state_must_come_from_this_origin(signed_in, headers, allowed):
    server, _, cookie = signed_in
    headers = {k: v.replace("{url}", server.url) for k, v in headers.items()}
    r = requests.post(server.url + "/api/admin/groups", json={"name": f"g{len(headers)}{allowed}"}, cookies=cookie,
                      headers=headers, timeout=30)
    if allowed:
        assert r.status_code == 201, r.text
    else:
        assert r.status_code == 403 and r.json()["detail"].startswith("Cross-site request refused"), r.text
    # Reading is never refused: a link from another site must still open the page.
    assert get(server, "/api/me", cookies=cookie, headers=headers).status_code == 200


def test_bearer_clients_and_cookieless_calls_are_not_affected(signed_in):
    server, token, _ = signed_in
    r = requests.post(server.url + "/api/admin/groups", json={"name": "bearer"}, timeout=30,
                      headers={"Authorization": f"Bearer {token}", "Origin": "http://elsewhere.example",
                               "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 201, r.text
    r = requests.post(server.url + "/auth/token", json={"email": "admin@example.com",
                                                        "password": "correct horse battery"}, timeout=30)
    assert r.status_code == 200
    # A login form posted from another site is refused: no one can sign a browser into their account.
    r = requests.post(server.url + "/auth/login", data={"email": "admin@example.com", "password": "x"},
                      headers={"Sec-Fetch-Site": "cross-site"}, allow_redirects=False, timeout=30)
    assert r.status_code == 403


def test_sources_lists_what_this_build_can_sync_and_the_custom_connectors(server_factory, env, workdir):
    connectors = workdir / "connectors"
    (connectors / "crm").mkdir(parents=True)
    (connectors / "crm" / "extract").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(connectors / "crm" / "extract", stat.S_IRWXU)
    (connectors / "crm" / "connector.json").write_text('{"env": ["CRM_TOKEN"]}')
    (connectors / "not_executable").mkdir()
    (connectors / "not_executable" / "extract").write_text("#!/bin/sh\n")
    server = server_factory(dict(env, CONNECTORS_DIR=str(connectors)))
    admin, _, analyst = setup_admin_and_analyst(server)
    token = admin["access_token"]
    body = call(server, "GET", "/api/admin/sources", token).json()
    by_type = {s["type"]: s for s in body["sources"]}
    assert by_type["postgres"]["available"] is True and by_type["postgres"]["can_discover"] is True
    assert {f["name"] for f in by_type["postgres"]["fields"]} >= {"postgres_host", "postgres_database", "postgres_user"}
    assert by_type["keboola"]["available"] is True  # the Keboola connector is built in
    assert {f["name"] for f in by_type["keboola"]["fields"]} >= {"keboola_url", "keboola_token"}
    assert by_type["local"]["available"] is True
    assert by_type["demo"]["available"] is False and "AGNES_DEMO" in by_type["demo"]["reason"]
    assert by_type["custom"]["connectors"] == [{"name": "crm", "path": str(connectors / "crm" / "extract"),
                                                "env": ["CRM_TOKEN"]}]
    assert body["configured"]["type"] == "local" and body["configured"]["explicit"] is False
    assert call(server, "GET", "/api/admin/sources", analyst["access_token"]).status_code == 403


def test_the_wizard_step_follows_real_state_for_files_and_the_demo(server_factory, env, workdir):
    server = server_factory(dict(env, AGNES_DEMO="1"))
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    state = call(server, "GET", "/api/admin/setup", token).json()
    assert state["step"] == "2" and state["done"] is False and state["catalog"] == {"demo": 3}
    r = call(server, "GET", "/api/admin/discover-tables", token)
    assert r.status_code == 400 and "cannot list tables" in r.json()["detail"] and "/api/admin/configure" in r.json()["detail"]
    assert call(server, "POST", "/api/admin/configure", token, json={"data_source": "local"}).status_code == 200
    state = call(server, "GET", "/api/admin/setup", token).json()
    assert state["step"] == "done" and state["source"] == "demo"
    r = call(server, "POST", "/api/upload/tables", token, files={"file": ("sales.csv", b"a,b\n1,2\n")})
    assert r.status_code in (200, 201), r.text
    state = call(server, "GET", "/api/admin/setup", token).json()
    assert state["step"] == "done" and state["source"] == "local"


def test_the_wizard_step_with_a_real_postgresql_source(server_factory, env):
    pg = PostgresServer().start()
    try:
        pg.sql("CREATE TABLE public.orders (id int); INSERT INTO orders SELECT generate_series(1, 40);"
               "CREATE SCHEMA crm; CREATE TABLE crm.people (id int); ANALYZE;")
        server = server_factory(dict(env, AGNES_ALLOW_PRIVATE_SOURCES="1"))
        admin, _, _ = setup_admin_and_analyst(server)
        token = admin["access_token"]
        r = call(server, "POST", "/api/admin/configure", token, json={"data_source": "postgres", "postgres_dsn": pg.dsn})
        assert r.status_code == 200, r.text
        state = call(server, "GET", "/api/admin/setup", token).json()
        assert state["step"] == "4" and state["source"] == "postgres"
        assert state["configured"]["secret_set"] is True and state["configured"]["settings"]["host"] == "127.0.0.1"
        listing = call(server, "GET", "/api/admin/discover-tables", token).json()
        tables = {t["id"]: t for t in listing["tables"]}
        assert set(tables) == {"orders", "crm_people"}
        assert tables["orders"]["rows_estimate"] == 40 and tables["orders"]["suggested_query_mode"] == "local"
        assert tables["crm_people"]["bucket"] == "crm" and tables["crm_people"]["registered_as"] is None
        r = call(server, "POST", "/api/admin/register-table", token,
                 json={"name": "orders", "source_type": "postgres", "bucket": "public", "source_table": "orders"})
        assert r.status_code == 201, r.text
        listing = call(server, "GET", "/api/admin/discover-tables", token).json()
        assert {t["id"]: t["registered_as"] for t in listing["tables"]} == {"orders": "orders", "crm_people": None}
        assert call(server, "GET", "/api/admin/setup", token).json()["step"] == "5"
        trigger_and_wait(server, token)
        state = call(server, "GET", "/api/admin/setup", token).json()
        assert state["step"] == "done" and state["tables"][0]["rows"] == 40
    finally:
        pg.stop()


def test_the_last_pull_is_the_last_manifest_fetch(claimed):
    server, token, _ = claimed
    assert call(server, "GET", "/api/me/activity", token).json() == {"last_pull": None}
    r = requests.get(server.url + "/api/sync/manifest", timeout=10,
                     headers={"Authorization": f"Bearer {token}", "User-Agent": "agnes-cli"})
    assert r.status_code == 200
    last = call(server, "GET", "/api/me/activity", token).json()["last_pull"]
    assert last["client"] == "agnes-cli" and last["tables"] == 3 and re.match(r"\d{4}-\d\d-\d\dT", last["at"])
    instance = call(server, "GET", "/api/instance", token).json()
    assert instance["name"] == "Agnes" and instance["version"] and instance["channel"]
