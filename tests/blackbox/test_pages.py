"""/setup, /login and the web form login (SPEC §6, §11).  The pages themselves: tests/browser/."""
import requests

from test_auth import ADMIN, bootstrap, me


def get(server, path):
    return requests.get(server.url + path, allow_redirects=False, timeout=10)


def form_login(server, **fields):
    return requests.post(server.url + "/auth/login", data=fields, allow_redirects=False, timeout=30)


def test_setup_page_until_claimed_then_redirects_to_login(server):
    r = get(server, "/setup")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert 'src="/assets/page-setup.js?v=' in r.text and "<title>Set up" in r.text
    r = get(server, "/login")
    assert r.status_code == 302 and r.headers["Location"] == "/setup"  # pages redirect in setup mode
    bootstrap(server)
    r = get(server, "/setup")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/setup"
    r = get(server, "/login")
    assert r.status_code == 200 and 'action="/auth/login"' in r.text


def test_form_login_sets_an_httponly_cookie_and_redirects(server):
    bootstrap(server)
    r = form_login(server, email="ADMIN@example.com", password=ADMIN["password"], next="/api/me")
    assert r.status_code == 303 and r.headers["Location"] == "/api/me"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("access_token=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # no DOMAIN set
    token = cookie.split(";")[0].split("=", 1)[1]
    assert server.get("/api/me", cookies={"access_token": token}).json()["email"] == "admin@example.com"


def test_form_login_failures_and_unsafe_next(server):
    bootstrap(server)
    r = form_login(server, email="admin@example.com", password="wrong password!!")
    assert r.status_code == 303 and r.headers["Location"] == "/login?error=invalid" and "Set-Cookie" not in r.headers
    assert form_login(server).headers["Location"] == "/login?error=invalid"
    for evil in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        r = form_login(server, email="admin@example.com", password=ADMIN["password"], next=evil)
        assert r.headers["Location"] == "/dashboard", evil


def test_form_values_are_decoded(server):
    password = "p@ss w+rd & more!"
    bootstrap(server, {"email": "a+b@example.com", "password": password})
    r = form_login(server, email="a+b@example.com", password=password)
    assert r.status_code == 303 and r.headers["Location"] == "/dashboard"
