"""TLS for real (SPEC §13; issue 7): Debian's Caddy with the project's Caddyfile in front of agnes serve,
certificates made by the test, rotated with scripts/ops/agnes-tls-rotate.sh."""
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import requests

from conftest import ROOT, free_port
from test_catalog import everyone_id
from test_upload import upload_raw
from test_users import call, setup_admin_and_analyst

ROTATE = str(ROOT / "scripts" / "ops" / "agnes-tls-rotate.sh")


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def make_ca(d):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Agnes Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)


def make_cert(d, out_dir, serial):
    out_dir.mkdir(parents=True, exist_ok=True)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(out_dir / "privkey.pem"),
            "-out", "req.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(serial),
            "-days", "1", "-extfile", "ext.cnf", "-out", str(out_dir / "fullchain.pem"), cwd=d)


def served_serial(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            version = tls.version()
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True)
    return int(out.stdout.decode().strip().split("=")[1], 16), version


@pytest.fixture
def caddy_front(server_factory, env, workdir):
    if shutil.which("caddy") is None:
        raise AssertionError("caddy is missing: run scripts/bootstrap (it installs Debian's caddy)")
    pki = workdir / "pki"
    pki.mkdir()
    make_ca(pki)
    certs = workdir / "state" / "certs"
    make_cert(pki, certs, serial=1001)
    server = server_factory(env)
    https, http, admin = free_port(), free_port(), free_port()
    caddy_env = dict(os.environ, HOME=str(workdir), XDG_DATA_HOME=str(workdir / "caddy-data"),
                     XDG_CONFIG_HOME=str(workdir / "caddy-config"), DOMAIN="localhost",
                     CADDY_TLS=f"{certs}/fullchain.pem {certs}/privkey.pem", AGNES_UPSTREAM=f"127.0.0.1:{server.port}",
                     CADDY_HTTPS_PORT=str(https), CADDY_HTTP_PORT=str(http), CADDY_ADMIN_PORT=str(admin))
    log = open(workdir / "caddy.log", "w")
    caddy = subprocess.Popen(["caddy", "run", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile"],
                             env=caddy_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
        try:
            served_serial(https)
            break
        except OSError:
            assert caddy.poll() is None, (workdir / "caddy.log").read_text()
            assert time.time() < deadline, (workdir / "caddy.log").read_text()
            time.sleep(0.1)
    yield server, f"https://localhost:{https}", https, pki, certs, admin, workdir
    caddy.terminate()
    caddy.wait(timeout=10)
    log.close()


def test_https_health_streamed_download_and_certificate_rotation(caddy_front):
    server, url, port, pki, certs, admin_port, workdir = caddy_front
    ca = str(pki / "ca.pem")
    health = requests.get(f"{url}/api/health", verify=ca, timeout=10)
    assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")
    assert "max-age=31536000" in health.headers["Strict-Transport-Security"]
    assert served_serial(port) == (1001, served_serial(port)[1]) and served_serial(port)[1] in ("TLSv1.2", "TLSv1.3")
    # TLS 1.1 is refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, old.wrap_socket(raw) as tls:
            tls.do_handshake()
    # A streamed download through Caddy arrives whole.
    admin = setup_admin_and_analyst(server)[0]["access_token"]
    content = b"id,v\n" + b"".join(b"%d,%x\n" % (i, i * 7919) for i in range(200000))
    assert upload_raw(server, admin, content, name="big").status_code in (200, 201)
    manifest = call(server, "GET", "/api/sync/manifest", admin).json()["tables"]["big"]
    with requests.get(f"{url}/api/data/big/download", headers={"Authorization": f"Bearer {admin}"}, verify=ca,
                      stream=True, timeout=30) as r:
        assert r.status_code == 200
        body = b"".join(r.iter_content(65536))
    assert hashlib.sha256(body).hexdigest() == manifest["hash"]
    # Rotation: a new certificate in the source, the script swaps it in and reloads Caddy.
    source = workdir / "incoming"
    make_cert(pki, source, serial=2002)
    env = dict(os.environ, CERT_SOURCE=f"file://{source}", CERT_DIR=str(certs),
               CADDY_RELOAD_CMD=f"caddy reload --config {ROOT / 'Caddyfile'} --adapter caddyfile "
                                f"--address localhost:{admin_port}",
               DOMAIN="localhost", CADDY_TLS=f"{certs}/fullchain.pem {certs}/privkey.pem",
               AGNES_UPSTREAM=f"127.0.0.1:{server.port}", CADDY_HTTPS_PORT=str(port), CADDY_ADMIN_PORT=str(admin_port),
               HOME=str(workdir), XDG_DATA_HOME=str(workdir / "caddy-data"))
    out = subprocess.run([ROTATE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Caddy reloaded" in out.stderr, out.stderr
    deadline = time.time() + 10
    while served_serial(port)[0] != 2002:
        assert time.time() < deadline, "Caddy still serves the old certificate"
        time.sleep(0.2)
    assert oct((certs / "privkey.pem").stat().st_mode & 0o777) == "0o600"
    again = subprocess.run([ROTATE], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "unchanged" in again.stderr and "Caddy reloaded" not in again.stderr
    # A key that does not belong to the certificate is refused; the served one stays.
    other = workdir / "other"
    make_cert(pki, other, serial=3003)
    shutil.copy(other / "privkey.pem", source / "privkey.pem")
    make_cert(pki, workdir / "third", serial=3004)
    shutil.copy(workdir / "third" / "fullchain.pem", source / "fullchain.pem")
    bad = subprocess.run([ROTATE], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "does not belong" in bad.stderr
    assert served_serial(port)[0] == 2002 and requests.get(f"{url}/api/health", verify=ca, timeout=10).ok


def test_a_self_signed_certificate_when_nothing_is_available(tmp_path):
    certs = tmp_path / "certs"
    env = dict(os.environ, CERT_DIR=str(certs), DOMAIN="agnes.internal", CADDY_RELOAD_CMD="true")
    env.pop("CERT_SOURCE", None)
    out = subprocess.run([ROTATE], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "self-signed" in out.stderr, out.stderr
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(certs / "fullchain.pem")],
                             capture_output=True, text=True).stdout
    assert "agnes.internal" in subject
    # With a certificate in place and an unreachable source, nothing changes.
    before = (certs / "fullchain.pem").read_bytes()
    env["CERT_SOURCE"] = f"file://{tmp_path / 'missing'}"
    kept = subprocess.run([ROTATE], env=env, capture_output=True, text=True, timeout=60)
    assert kept.returncode == 0 and "keeping the current one" in kept.stderr
    assert (certs / "fullchain.pem").read_bytes() == before
