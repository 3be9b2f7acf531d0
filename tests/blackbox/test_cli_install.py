"""The installable CLI (issue 17 item 5; SPEC §17): `make install PREFIX=` and the server's own build at
/cli/install.sh and /cli/agnes-linux-x86_64.tar.gz, installed into a fresh HOME without root."""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from conftest import AGNES_BIN, ROOT
from test_catalog import everyone_id
from test_upload import upload_raw
from test_users import ANALYST, call, setup_admin_and_analyst

ORDERS = b"id,item\n" + b"".join(b"%d,item %d\n" % (i, i) for i in range(300))


def bare_env(home, **extra):
    """What a fresh account has: a HOME, the system PATH, nothing of Agnes."""
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **extra}


def duckdb_of(binary):
    """The libduckdb.so the dynamic loader picks for binary."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
    line = next(line for line in out.splitlines() if "libduckdb.so" in line)
    assert "not found" not in line, out
    return Path(line.split("=>")[1].split("(")[0].strip()).resolve()


@pytest.fixture
def served(server_factory, env):
    server = server_factory(env)
    admin, _, _ = setup_admin_and_analyst(server)
    token = admin["access_token"]
    assert upload_raw(server, token, ORDERS, name="orders").status_code in (200, 201)
    assert upload_raw(server, token, b"id,salary\n1,100\n", name="salaries").status_code in (200, 201)
    call(server, "POST", "/api/admin/grants", token,
         json={"group_id": everyone_id(server, token), "resource_type": "table", "resource_id": "orders"})
    return server


def test_curl_install_sh_into_a_fresh_home_then_version_login_and_pull(served, workdir):
    server = served
    home = workdir / "fresh-home"
    home.mkdir()
    install = subprocess.run(["sh", "-c", f"curl -fsS {server.url}/cli/install.sh | sh"], env=bare_env(home),
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    agnes = home / ".local" / "bin" / "agnes"
    assert agnes.is_file() and os.access(agnes, os.X_OK)
    # The copied binary finds its own DuckDB next to it, not the checkout's: no libduckdb.so error.
    assert duckdb_of(agnes) == (home / ".local" / "lib" / "agnes" / "libduckdb.so").resolve()
    assert "not on your PATH" in install.stderr and f"agnes login --server {server.url}" in install.stderr
    version = subprocess.run([str(agnes), "--version"], env=bare_env(home), capture_output=True, text=True)
    served_version = requests.get(server.url + "/api/version", timeout=10).json()["version"]
    assert version.returncode == 0 and version.stdout.startswith(f"agnes {served_version} ")
    ws = home / "analysis"
    ws.mkdir()
    login = subprocess.run([str(agnes), "login", "--server", server.url, "--email", ANALYST["email"]],
                           input=ANALYST["password"] + "\n", env=bare_env(home), capture_output=True, text=True,
                           timeout=60)
    assert login.returncode == 0, login.stderr
    pull = subprocess.run([str(agnes), "pull", "--json"], cwd=ws, env=bare_env(home), capture_output=True, text=True,
                          timeout=120)
    assert pull.returncode == 0, pull.stderr
    assert (ws / "data" / "orders.parquet").is_file() and not (ws / "data" / "salaries.parquet").exists()
    count = subprocess.run([str(agnes), "query", "--local", "--format", "csv", "SELECT count(*) FROM orders"],
                           cwd=ws, env=bare_env(home), capture_output=True, text=True, timeout=60)
    assert count.stdout.splitlines() == ["count_star()", "300"], count.stderr
    # Again: an upgrade in place, still one binary and one library.
    again = subprocess.run(["sh", "-c", f"curl -fsS {server.url}/cli/install.sh | sh"], env=bare_env(home),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (home / ".local" / "bin").iterdir()) == ["agnes"]
    assert sorted(p.name for p in (home / ".local" / "lib" / "agnes").iterdir()) == ["libduckdb.so"]


def test_a_tarball_that_does_not_match_the_sha256_installs_nothing(served, workdir):
    server = served
    home = workdir / "home"
    home.mkdir()
    script = requests.get(server.url + "/cli/install.sh", timeout=300).text
    expected = requests.get(server.url + "/cli/agnes-linux-x86_64.tar.gz.sha256", timeout=300).text.split()[0]
    assert f"expected_sha256='{expected}'" in script and f"server='{server.url}'" in script
    tampered = script.replace(expected, "0" * 64)
    out = subprocess.run(["sh", "-s"], input=tampered, env=bare_env(home), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 1
    assert f"SHA-256 is {expected}, expected {'0' * 64}" in out.stderr and "nothing was installed" in out.stderr
    assert not (home / ".local").exists()


def test_the_tarball_is_this_servers_own_binary_with_its_duckdb(served, workdir):
    server = served
    # Anonymous: analysts install before they have a token.
    r = requests.get(server.url + "/cli/agnes-linux-x86_64.tar.gz", timeout=300)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/gzip"
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["ETag"] == f'"{digest}"'
    assert requests.get(server.url + "/cli/agnes-linux-x86_64.tar.gz.sha256", timeout=30).text == \
        f"{digest}  agnes-linux-x86_64.tar.gz\n"
    again = requests.get(server.url + "/cli/agnes-linux-x86_64.tar.gz", headers={"If-None-Match": f'"{digest}"'},
                         timeout=30)
    assert again.status_code == 304
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["agnes", "agnes/bin", "agnes/bin/agnes", "agnes/lib", "agnes/lib/agnes",
                                   "agnes/lib/agnes/libduckdb.so"]
        assert members["agnes/bin/agnes"].mode == 0o755
        assert tar.extractfile("agnes/bin/agnes").read() == Path(AGNES_BIN).read_bytes()
        lib = tar.extractfile("agnes/lib/agnes/libduckdb.so").read()
    assert hashlib.sha256(lib).digest() == \
        hashlib.sha256((ROOT / "third_party" / "duckdb" / "lib" / "libduckdb.so").read_bytes()).digest()
    # Built once: the second request is the same file, not a rebuild.
    assert server.output().count("built the CLI tarball") == 1


def test_the_installer_is_shellcheck_clean_and_refuses_before_setup(server_factory, env):
    out = subprocess.run(["shellcheck", "--severity=warning", str(ROOT / "scripts" / "install-cli.sh")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    server = server_factory(env)
    r = requests.get(server.url + "/cli/install.sh", timeout=30)
    assert r.status_code == 503 and r.json()["setup_required"] is True


def test_make_install_works_from_any_prefix(workdir):
    build = Path(AGNES_BIN).parent
    prefix = workdir / "prefix"
    args = ["make", "-s", "--no-print-directory", "install", f"PREFIX={prefix}", f"BUILD={build.relative_to(ROOT)}"]
    if build.name == "asan":
        args.append("SANITIZE=1")
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (prefix / "bin" / "agnes").read_bytes() == Path(AGNES_BIN).read_bytes()
    moved = workdir / "elsewhere" / "opt"
    moved.parent.mkdir()
    shutil.move(str(prefix), str(moved))  # the tree works wherever it is moved to
    binary = moved / "bin" / "agnes"
    assert duckdb_of(binary) == (moved / "lib" / "agnes" / "libduckdb.so").resolve()
    version = subprocess.run([str(binary), "--version"], env=bare_env(workdir), capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("agnes "), version.stderr
