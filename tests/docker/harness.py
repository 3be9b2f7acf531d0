"""The Docker test harness: a real daemon, images built here, real mounts, a local registry, PostgreSQL.

Nothing is pulled from a public registry.  What this module sets up, in order, once per pytest session:
  - a Docker daemon: the one already running (DOCKER_HOST or /var/run/docker.sock), else its own dockerd
    (Debian's docker.io) with its data in the cache directory, so images and build layers survive between
    runs; overlay2 when the filesystem allows it, else vfs.  The daemon it started is stopped at the end,
    with every container it ran.
  - debian:bookworm and debian:bookworm-slim, made with debootstrap from the machine's own Debian mirror
    and `docker import` when the daemon does not have them (kept in the daemon's cache);
  - the agnes image, built once from a copy of this working tree (committed, uncommitted and untracked
    files alike) with the build args the tests check; a CA certificate the build must trust (this
    machine's own, from /usr/local/share/ca-certificates, plus a marker CA made here so the "never in
    the final image" check has something to look for) goes in as EXTRA_CA_CERT.
AGNES_DOCKER_CACHE moves the cache (default ~/.cache/agnes-tests/docker).  Timings go to build/docker-timings.json.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AGNES_DOCKER_CACHE", Path.home() / ".cache" / "agnes-tests" / "docker"))
EXEC_ROOT = Path("/run/agnes-test-docker")  # short: containerd's socket paths must fit in sun_path
IMAGE = "agnes-test/agnes"
IMAGE_TAG = "test-16"  # = the AGNES_TAG build arg: compose tags the image ${AGNES_IMAGE}:${AGNES_TAG}
CADDY_IMAGE = "agnes-test/caddy:debian"
BUILD_ARGS = {"AGNES_VERSION": "2026.11.16", "RELEASE_CHANNEL": "dev", "AGNES_TAG": "test-16"}
TIMINGS = {}


def log(message):
    print(f"[docker harness] {message}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(name):
    class Timer:
        def __enter__(self):
            self.start = time.monotonic()

        def __exit__(self, *exc):
            TIMINGS[name] = round(time.monotonic() - self.start, 1)
            log(f"{name}: {TIMINGS[name]} s")
    return Timer()


def write_timings():
    out = ROOT / "build" / "docker-timings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(TIMINGS, indent=2) + "\n")


def docker_binary():
    # Debian's client (installed by scripts/bootstrap with its daemon): the classic builder by default,
    # the same version as the daemon.
    return "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")


class Daemon:
    """A Docker daemon the tests may use, and the environment every docker command runs with."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.proc = None
        self.owned = False
        self.pidfile = EXEC_ROOT / "dockerd.pid"
        bindir = self.workdir / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        # `docker compose ...` as the docs write it, with Debian's docker-compose 1.29 behind it.
        shim = bindir / "docker"
        shim.write_text(f"""#!/bin/sh
if [ "$1" = compose ]; then shift; exec docker-compose "$@"; fi
exec {docker_binary()} "$@"
""")
        shim.chmod(0o755)
        self.env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", DOCKER_BUILDKIT="0",
                        COMPOSE_DOCKER_CLI_BUILD="0", COMPOSE_HTTP_TIMEOUT="300")

    def docker(self, *args, check=True, timeout=600, input=None, capture=True, env=None):
        out = subprocess.run(["docker", *args], env=env or self.env, capture_output=capture, text=True,
                             timeout=timeout, input=input)
        if check and out.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def answers(self):
        try:
            return self.docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def start(self):
        if os.environ.get("DOCKER_HOST") or os.path.exists("/var/run/docker.sock"):
            if self.answers():
                log("using the Docker daemon that is already running")
                return self
        if os.geteuid() != 0:
            raise AssertionError("the Docker tests start their own dockerd and need root (or a running daemon: set "
                                 "DOCKER_HOST)")
        if shutil.which("dockerd") is None:
            raise AssertionError("dockerd is missing: run scripts/bootstrap (it installs Debian's docker.io)")
        sock = EXEC_ROOT / "docker.sock"
        self.env["DOCKER_HOST"] = f"unix://{sock}"
        if self.pidfile.exists() and self.answers():  # left by a run that was killed: ours to use and stop
            self.owned = True
            log("using the dockerd a previous run left behind")
            return self
        EXEC_ROOT.mkdir(parents=True, exist_ok=True)
        (CACHE / "root").mkdir(parents=True, exist_ok=True)
        for driver in ("overlay2", "vfs"):
            logfile = open(self.workdir / f"dockerd-{driver}.log", "w")
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(CACHE / "root"), "--exec-root", str(EXEC_ROOT), "--pidfile",
                 str(self.pidfile), "-H", f"unix://{sock}", "--storage-driver", driver, "--log-level", "warn"],
                stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.time() + 60
            while time.time() < deadline and self.proc.poll() is None and not self.answers():
                time.sleep(0.5)
            if self.proc.poll() is None and self.answers():
                self.owned = True
                log(f"started dockerd (storage driver {driver}, data in {CACHE / 'root'})")
                self.reset()
                return self
            self._kill()
            log(f"dockerd with {driver} did not start: {(self.workdir / f'dockerd-{driver}.log').read_text()[-800:]}")
        raise AssertionError("dockerd did not start with overlay2 or vfs; see the logs in " + str(self.workdir))

    def reset(self):
        """Containers left by a killed earlier run on the daemon this harness owns."""
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", "-v", *ids, check=False)
        self.docker("network", "prune", "-f", check=False)
        self.docker("volume", "prune", "-f", check=False)

    def _kill(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def stop(self):
        if not self.owned:
            return
        try:
            self.reset()
        finally:
            if self.proc is not None:
                self._kill()
            elif self.pidfile.exists():  # adopted from an earlier run
                try:
                    pid = int(self.pidfile.read_text().strip())
                    os.kill(pid, signal.SIGTERM)
                    for _ in range(60):
                        os.kill(pid, 0)
                        time.sleep(0.5)
                except (OSError, ValueError):
                    pass
            log("stopped dockerd and every container it ran")

    def image_exists(self, name):
        return self.docker("image", "inspect", name, check=False).returncode == 0


def debian_mirror():
    """The machine's Debian mirror (deb822 .sources first, then one-line lists)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "debian" in line and "security" not in line:
                return line.split()[1]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and "debian" in parts[1] and "security" not in parts[1]:
                    return parts[1]
    return "http://deb.debian.org/debian"


def ensure_base_images(daemon):
    if daemon.image_exists("debian:bookworm") and daemon.image_exists("debian:bookworm-slim"):
        return
    if shutil.which("debootstrap") is None:
        raise AssertionError("debootstrap is missing: run scripts/bootstrap")
    mirror = debian_mirror()
    with timed("base image (debootstrap + import)"), tempfile.TemporaryDirectory(prefix="agnes-rootfs-",
                                                                                dir="/var/tmp") as rootfs:
        log(f"making debian:bookworm with debootstrap from {mirror}")
        out = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror], capture_output=True,
                             text=True, timeout=1800)
        if out.returncode != 0:
            raise AssertionError(f"debootstrap failed: {out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        # The same mirrors apt uses on this machine (updates and security included), and no caches.
        sources = Path("/etc/apt/sources.list.d/debian.sources")
        if sources.exists():
            (Path(rootfs) / "etc/apt/sources.list").unlink(missing_ok=True)
            shutil.copy(sources, Path(rootfs) / "etc/apt/sources.list.d/debian.sources")
        for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (Path(rootfs) / d).glob("*"):
                if p.is_file():
                    p.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "--change", 'CMD ["bash"]', "-", "debian:bookworm"],
                                  stdin=tar.stdout, env=daemon.env, capture_output=True, text=True, timeout=600)
        tar.wait()
        assert imported.returncode == 0, imported.stderr
        daemon.docker("tag", "debian:bookworm", "debian:bookworm-slim")


def marker_ca():
    """A CA made once per cache: handed to every build, so the test can prove it never reaches the image."""
    CACHE.mkdir(parents=True, exist_ok=True)
    pem = CACHE / "build-marker-ca.pem"
    if not pem.exists():
        key = CACHE / "build-marker-ca.key"
        out = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj",
                              "/CN=Agnes build-only marker CA", "-keyout", str(key), "-out", str(pem) + ".tmp"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        os.replace(str(pem) + ".tmp", pem)
    return pem.read_text()


def build_ca_text():
    """What EXTRA_CA_CERT carries: AGNES_BUILD_CA_FILE, or the CAs this machine added to its trust store
    (Debian keeps local ones in /usr/local/share/ca-certificates), then the marker CA."""
    parts = []
    given = os.environ.get("AGNES_BUILD_CA_FILE")
    if given:
        parts.append(Path(given).read_text())
    else:
        for path in sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt")):
            parts.append(path.read_text())
    parts.append(marker_ca())
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def git(*args, cwd, check=True, input=None):
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, input=input,
                         env=dict(os.environ, GIT_AUTHOR_NAME="agnes tests", GIT_AUTHOR_EMAIL="tests@agnes.invalid",
                                  GIT_COMMITTER_NAME="agnes tests", GIT_COMMITTER_EMAIL="tests@agnes.invalid"))
    if check and out.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {out.stderr.decode(errors='replace')}")
    return out


def source_repository(dest):
    """A git repository whose HEAD is this working tree as it is now: what `git clone` gives a user
    (and the build context the image is made from)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", "--no-hardlinks", str(ROOT), str(dest), cwd=ROOT)
    diff = git("diff", "HEAD", "--binary", cwd=ROOT).stdout
    if diff:
        git("apply", "--index", "-", cwd=dest, input=diff)
    untracked = git("ls-files", "--others", "--exclude-standard", "-z", cwd=ROOT).stdout.decode().split("\0")
    for name in filter(None, untracked):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    git("add", "-A", cwd=dest)
    if git("diff", "--cached", "--quiet", cwd=dest, check=False).returncode != 0:
        git("commit", "-q", "-m", "the working tree the tests run on", cwd=dest)
    return dest


_build_args = {}


def build_args():
    """The build args of this session's image, computed once (HEAD may move while the tests run)."""
    if not _build_args:
        described = git("describe", "--always", "--dirty", cwd=ROOT).stdout.decode().strip()
        _build_args.update(BUILD_ARGS, AGNES_COMMIT_SHA=described, EXTRA_CA_CERT=build_ca_text())
    return dict(_build_args)


def build_image(daemon, source):
    """The image as `docker compose up` builds it from a checkout (docker-compose reads the context itself;
    building the same way makes the quickstart's build of a fresh clone a cache hit, the very same image)."""
    env = dict(daemon.env, AGNES_IMAGE=IMAGE, **build_args())
    with timed("agnes image build"):
        out = subprocess.run(["docker-compose", "-f", str(Path(source) / "docker-compose.yml"), "build", "app"],
                             cwd=source, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise AssertionError(f"docker-compose build failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return f"{IMAGE}:{IMAGE_TAG}"


def build_caddy_image(daemon):
    with timed("caddy image build"):
        daemon.docker("build", "-t", CADDY_IMAGE, str(ROOT / "tests" / "docker" / "caddy"), timeout=1800)
    return CADDY_IMAGE


def host_nofile_limit():
    out = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True)
    value = out.stdout.strip()
    return 65536 if value == "unlimited" else min(65536, int(value))


class Compose:
    """docker-compose on one project, with the environment a host's .env would give it."""

    def __init__(self, daemon, directory, files, project, env=None):
        self.daemon = daemon
        self.directory = Path(directory)
        self.files = files
        self.project = project
        self.env = dict(daemon.env, **(env or {}))

    def __call__(self, *args, check=True, timeout=900):
        cmd = ["docker-compose", "-p", self.project]
        for f in self.files:
            cmd += ["-f", str(self.directory / f)]
        out = subprocess.run([*cmd, *args], cwd=self.directory, env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[1:])} {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    def container(self, service="app"):
        ids = self("ps", "-q", service).stdout.split()
        return ids[0] if ids else None

    def logs(self, service="app"):
        return self("logs", "--no-color", service, check=False).stdout

    def down(self):
        self("down", "-v", "--remove-orphans", check=False, timeout=300)


def inspect(daemon, container, fmt):
    return daemon.docker("inspect", "--format", fmt, container).stdout.strip()


def wait_health(daemon, container, want="healthy", timeout=120):
    deadline = time.time() + timeout
    status = None
    while time.time() < deadline:
        status = inspect(daemon, container, "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}")
        if status.endswith(want):
            return status
        time.sleep(1)
    logs = daemon.docker("logs", "--tail", "40", container, check=False)
    raise AssertionError(f"{container} is '{status}', not {want}, after {timeout}s:\n{logs.stdout}{logs.stderr}")


class Mounts:
    """Filesystems made for a test (tmpfs or a loop-mounted ext4 image), unmounted at the end."""

    def __init__(self):
        self.points = []

    def tmpfs(self, path, size="256m"):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
        self.points.append(path)
        return self._shared(path)

    @staticmethod
    def _shared(path):
        # As systemd leaves every mount of a host: the host-mount overlay's rslave bind needs a shared source.
        subprocess.run(["mount", "--make-rshared", str(path)], check=True)
        return path

    def ext4(self, path, size_mb=64, label="agnes-state"):
        """A disk of its own: an ext4 image, formatted and loop-mounted at path."""
        path = Path(path)
        image = path.parent / f".{path.name}.img"
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, str(image)], check=True)
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(path)], check=True)
        self.points.append(path)
        return self._shared(path)

    def unmount(self, path):
        path = Path(path)
        subprocess.run(["umount", str(path)], check=False)
        if path in self.points:
            self.points.remove(path)

    def cleanup(self):
        for path in reversed(self.points):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)
        self.points = []


def chown_tree(path, uid=999, gid=999):
    for p in [Path(path), *Path(path).rglob("*")]:
        os.lchown(p, uid, gid)


class Postgres:
    """A real PostgreSQL (Debian's postgresql-15) the containers reach over the Docker bridge:
    it listens on every address, password required."""

    def __init__(self, root):
        self.root = Path(root)
        self.port = free_port()
        self.password = "agnes-test-" + os.urandom(6).hex()
        bindir = None
        for v in (17, 16, 15):
            if os.path.exists(f"/usr/lib/postgresql/{v}/bin/initdb"):
                bindir = f"/usr/lib/postgresql/{v}/bin"
                break
        if bindir is None:
            raise AssertionError("PostgreSQL server binaries not found: run scripts/bootstrap (postgresql-15)")
        self.bindir = bindir
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data = self.root / "pgdata"

    def _run(self, *args):
        out = subprocess.run([*self.as_user, f"{self.bindir}/{args[0]}", *args[1:]], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, f"{args[0]}: {out.stdout}\n{out.stderr}"

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8")
        with open(self.data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=* -c fsync=off -c synchronous_commit=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        self.sql(f"CREATE ROLE agnes LOGIN PASSWORD '{self.password}'", db="postgres")
        self.sql("CREATE DATABASE shop OWNER agnes", db="postgres")
        return self

    def sql(self, text, db="shop"):
        out = subprocess.run([*self.as_user, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h",
                              str(self.root), "-p", str(self.port), "-U", "postgres", "-d", db, "-c", text],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def dsn(self, host, db="shop"):
        return f"host={host} port={self.port} dbname={db} user=agnes password={self.password}"

    def database(self, name):
        """A database of its own for one test, owned by agnes."""
        self.sql(f"CREATE DATABASE {name} OWNER agnes", db="postgres")
        return name

    def stop(self):
        subprocess.run([*self.as_user, f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                        "stop"], capture_output=True)


def bridge_gateway(daemon):
    """The host's address on Docker's default bridge: containers on any bridge network reach the host there."""
    return daemon.docker("network", "inspect", "bridge", "--format",
                         "{{(index .IPAM.Config 0).Gateway}}").stdout.strip()


class Registry:
    """Debian's docker-registry (distribution 2.8) on a free loopback port; the daemon pulls from
    127.0.0.1 registries over plain HTTP without configuration."""

    def __init__(self, root):
        self.root = Path(root)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {self.root / 'data'}
  delete:
    enabled: true
http:
  addr: {self.address}
""")
        if shutil.which("docker-registry") is None:
            raise AssertionError("docker-registry is missing: run scripts/bootstrap (Debian's docker-registry)")
        self.log = open(self.root / "registry.log", "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                assert self.proc.poll() is None, (self.root / "registry.log").read_text()
                time.sleep(0.2)
        raise AssertionError("docker-registry did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def publish(daemon, image, repository, tag):
    """Push image to the local registry as repository:tag; returns the repository's full name."""
    daemon.docker("tag", image, f"{repository}:{tag}")
    daemon.docker("push", f"{repository}:{tag}", timeout=900)
    return repository


def make_host(daemon, image, home, env):
    """A Docker host as docs/deploy.md sets one up: the host files extracted from the image into
    AGNES_HOME, and a .env (mode 0600) with env's keys."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    tar = subprocess.Popen(["docker", "run", "--rm", "--entrypoint", "tar", image, "-C", "/opt/agnes-host", "-c", "."],
                           stdout=subprocess.PIPE, env=daemon.env)
    subprocess.run(["tar", "-x", "-C", str(home)], stdin=tar.stdout, check=True)
    assert tar.wait() == 0
    write_env(home, env)
    return home


def write_env(home, env):
    path = Path(home) / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    path.chmod(0o600)


def host_env(registry_repository, project, **extra):
    """The .env of a test host: its image from the local registry, a free port, this machine's nofile limit."""
    env = {"AGNES_IMAGE": registry_repository, "AGNES_TAG": "stable", "COMPOSE_PROJECT_NAME": project,
           "AGNES_PORT": str(free_port()), "SCHEDULER_API_TOKEN": "scheduler-token-" + "x" * 32,
           "AGNES_NOFILE": str(host_nofile_limit())}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def upgrade(daemon, home, *args, timeout=900, env=None):
    """scripts/ops/agnes-auto-upgrade.sh of that host, as cron would run it."""
    return subprocess.run([str(Path(home) / "scripts" / "ops" / "agnes-auto-upgrade.sh"), *args],
                          env=dict(daemon.env, AGNES_HOME=str(home), **(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def read_env(home):
    out = {}
    for line in (Path(home) / ".env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def host_compose(daemon, home):
    """docker-compose with the overlays the host's .env selects (the same choice the upgrade script makes)."""
    env = read_env(home)
    files = ["docker-compose.yml", "docker-compose.prod.yml"]
    layout = env.get("AGNES_LAYOUT", "volume")
    if layout != "volume":
        files.append(f"docker-compose.{layout}.yml")
    if env.get("AGNES_TLS") == "1":
        files.append("docker-compose.tls.yml")
    return Compose(daemon, home, files, env["COMPOSE_PROJECT_NAME"])


class Api:
    """The instance's HTTP API as a client sees it."""

    def __init__(self, url):
        self.url = url
        self.token = None

    def __call__(self, method, path, token=None, **kw):
        token = token or self.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def wait_up(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/api/health", timeout=2).status_code in (200, 503):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{self.url} did not answer within {timeout}s")

    def wait_syncs_idle(self, timeout=300):
        """Until no sync runs (configure starts one; a due schedule starts one after a restart): the upgrade
        script rightly defers while one does."""
        deadline = time.time() + timeout
        while '"running"' in self("GET", "/api/sync/status").text.replace(" ", ""):
            assert time.time() < deadline, f"a sync still runs after {timeout}s"
            time.sleep(1)

    def sync_now(self, timeout=300):
        """Sync every registered table now and wait for the run to end, then for every other run: tables
        with a schedule are then not due again for their interval, so no scheduled sync starts while a test
        asserts what the upgrade script decides (it rightly defers while one runs)."""
        r = self("POST", "/api/sync/trigger")
        assert r.status_code in (200, 202), r.text
        run_id = r.json()["run_id"]
        deadline = time.time() + timeout
        while self("GET", f"/api/sync/status/{run_id}").json().get("state") in ("running", "queued"):
            assert time.time() < deadline, f"sync run {run_id} still runs after {timeout}s"
            time.sleep(1)
        self.wait_syncs_idle(timeout)

    def populate(self):
        """An admin, an analyst, a personal access token, an uploaded table, a registered table with a schedule."""
        r = self("POST", "/auth/bootstrap", json={"email": "admin@example.com", "password": "a long admin passphrase"})
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]
        assert self("POST", "/api/users", json={"email": "ana@example.com", "password": "a long analyst phrase"}) \
            .status_code == 201
        pat = self("POST", "/auth/tokens", json={"name": "ci"}).json()["token"]
        csv = b"id,amount\n" + b"".join(b"%d,%d\n" % (i, i * 3) for i in range(1000))
        up = self("POST", "/api/upload/tables", files={"file": ("sales.csv", csv)})
        assert up.status_code in (200, 201), up.text
        reg = self("POST", "/api/admin/register-table", json={"name": "orders", "source_type": "postgres",
                                                               "sync_schedule": "every 30m"})
        assert reg.status_code == 201, reg.text
        return pat

    def state(self):
        """What must survive anything done to the state tier."""
        users = self("GET", "/api/users").json()
        users = users["users"] if isinstance(users, dict) else users
        tables = self("GET", "/api/catalog/tables").json()["tables"]
        registry = self("GET", "/api/admin/registry").json()["tables"]
        return {"users": sorted(u["email"] for u in users), "tables": sorted(t["id"] for t in tables),
                "registry": sorted((t["id"], t["sync_schedule"]) for t in registry)}

    def check_survived(self, before, pat):
        assert self("GET", "/api/me", token=pat).status_code == 200, "the token minted before no longer works"
        assert self("POST", "/auth/token", json={"email": "ana@example.com", "password": "a long analyst phrase"}) \
            .status_code == 200
        after = self.state()
        # A table registered with a schedule may be synced into the catalog by the restarted server (it is
        # due); what must hold is that nothing was lost.
        assert after["users"] == before["users"], (before, after)
        assert after["registry"] == before["registry"], (before, after)
        assert set(before["tables"]) <= set(after["tables"]), (before, after)
