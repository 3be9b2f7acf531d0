"""The TLS overlay for real (SPEC §13; issue 16 item 5): docker-compose.tls.yml starts Caddy in front of the app,
serving HTTPS with the certificates in ${STATE_DIR}/certs (made here by a test CA), and
scripts/ops/agnes-tls-rotate.sh swaps in a new one and reloads Caddy in its container.  Caddy's image is
built from Debian's caddy package (tests/docker/caddy): CADDY_IMAGE names it, as a host that cannot pull
caddy:2 would."""
import json
import os
import socket
import ssl
import subprocess
import time

import requests

import harness


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def make_cert(pki, out_dir, serial):
    out_dir.mkdir(parents=True, exist_ok=True)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(out_dir / "privkey.pem"),
            "-out", "req.csr", cwd=pki)
    (pki / "ext.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "req.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", str(serial),
            "-days", "2", "-extfile", "ext.cnf", "-out", str(out_dir / "fullchain.pem"), cwd=pki)


def served(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
            version = tls.version()
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der, capture_output=True)
    return int(out.stdout.decode().strip().split("=")[1], 16), version


def test_caddy_serves_https_with_the_state_tiers_certificates(daemon, image, caddy_image, registry, mounts, workdir):
    repo = harness.publish(daemon, image, f"{registry.address}/agnes-tls", "stable")
    data = mounts.tmpfs(workdir / "data")
    state = mounts.ext4(workdir / "data-state", label="tls-state")
    harness.chown_tree(data)
    harness.chown_tree(state)
    pki = workdir / "pki"
    pki.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Agnes Test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=pki)
    make_cert(pki, state / "certs", serial=1601)
    https = harness.free_port()
    home = harness.make_host(daemon, f"{repo}:stable", workdir / "opt-agnes",
                             harness.host_env(repo, "agnes-tls", AGNES_LAYOUT="flat-mount", AGNES_TLS="1",
                                              AGNES_DATA_HOST_DIR=data, AGNES_STATE_HOST_DIR=state,
                                              CADDY_IMAGE=caddy_image, DOMAIN="localhost", AGNES_HTTP_BIND="127.0.0.1",
                                              AGNES_HTTPS_PORT=https, AGNES_HTTP_PORT=harness.free_port()))
    compose = harness.host_compose(daemon, home)
    try:
        out = harness.upgrade(daemon, home)
        assert out.returncode == 0 and "tls 1" in out.stdout, out.stdout + out.stderr
        caddy = compose.container("caddy")
        assert caddy, compose("ps").stdout
        mounted = {m["Destination"]: m for m in json.loads(
            harness.inspect(daemon, caddy, "{{json .Mounts}}"))}
        assert mounted["/certs"]["Source"] == str(state / "certs") and mounted["/certs"]["RW"] is False
        url = f"https://localhost:{https}"
        ca = str(pki / "ca.pem")
        deadline = time.time() + 60
        while True:
            try:
                health = requests.get(f"{url}/api/health", verify=ca, timeout=5)
                break
            except requests.RequestException:
                assert time.time() < deadline, compose.logs("caddy")
                time.sleep(1)
        assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded")
        assert "max-age=31536000" in health.headers["Strict-Transport-Security"]
        serial, version = served(https)
        assert serial == 1601 and version in ("TLSv1.2", "TLSv1.3")
        # A full round trip through the proxy: claim the instance, query.
        token = requests.post(f"{url}/auth/bootstrap", verify=ca, timeout=10,
                              json={"email": "admin@example.com", "password": "a long passphrase"}).json()["access_token"]
        q = requests.post(f"{url}/api/query", verify=ca, timeout=10, headers={"Authorization": f"Bearer {token}"},
                          json={"sql": "SELECT 42 AS answer"})
        assert q.status_code == 200 and q.json()["rows"] == [[42]]
        # Rotation: the script validates the new pair, swaps it into ${STATE_DIR}/certs and reloads Caddy in its
        # container (found by its compose labels).
        make_cert(pki, workdir / "incoming", serial=1602)
        rotate = subprocess.run([str(home / "scripts" / "ops" / "agnes-tls-rotate.sh")], capture_output=True, text=True,
                                timeout=120, env=dict(daemon.env, STATE_DIR=str(state), DOMAIN="localhost",
                                                      CERT_SOURCE=f"file://{workdir / 'incoming'}",
                                                      COMPOSE_PROJECT_NAME="agnes-tls"))
        assert rotate.returncode == 0 and "Caddy reloaded" in rotate.stderr, rotate.stderr
        deadline = time.time() + 20
        while served(https)[0] != 1602:
            assert time.time() < deadline, "Caddy still serves the old certificate"
            time.sleep(0.5)
        assert requests.get(f"{url}/api/health", verify=ca, timeout=5).status_code == 200
        assert oct(os.stat(state / "certs" / "privkey.pem").st_mode & 0o777) == "0o600"
    finally:
        compose.down()
