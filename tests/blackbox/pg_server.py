"""A real PostgreSQL server for the tests: initdb + pg_ctl on a temp dir and a free port, stopped after.

Uses the Debian package's binaries (scripts/bootstrap installs postgresql-15). initdb refuses to run as
root, so under root the server runs as the package's `postgres` user."""
import os
import pwd
import shutil
import subprocess
import tempfile

from conftest import free_port


def _bindir():
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(out.stdout.strip())
    candidates += [f"/usr/lib/postgresql/{v}/bin" for v in (17, 16, 15)]
    for d in candidates:
        if d and os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    raise AssertionError("PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/bootstrap, which "
                         "installs Debian's postgresql-15")


class PostgresServer:
    def __init__(self):
        self.bindir = _bindir()
        self.port = free_port()
        self.root = tempfile.mkdtemp(prefix="agnes-pg-")
        self.data = os.path.join(self.root, "data")
        self.as_user = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.dsn = f"host=127.0.0.1 port={self.port} dbname=postgres user=postgres"

    def _run(self, *args, check=True):
        out = subprocess.run([*self.as_user, os.path.join(self.bindir, args[0]), *args[1:]], capture_output=True,
                             text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {out.stdout}\n{out.stderr}")
        return out

    def start(self):
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", os.path.join(self.root, "log"), "-w", "start")
        return self

    def stop(self):
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, text):
        """Run SQL with psql; returns its unaligned output."""
        out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                              str(self.port), "-U", "postgres", "-d", "postgres", "-c", text],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()
