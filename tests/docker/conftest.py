"""Fixtures of the Docker suite (see harness.py for what each one sets up and why)."""
import shutil
import tempfile
from pathlib import Path

import pytest

import harness


@pytest.fixture(scope="session")
def session_dir():
    d = Path(tempfile.mkdtemp(prefix="agnes-docker-", dir="/var/tmp"))
    d.chmod(0o755)  # PostgreSQL runs as its own user below it
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon(session_dir):
    d = harness.Daemon(session_dir)
    try:
        with harness.timed("daemon start"):
            d.start()
        yield d
    finally:
        d.stop()
        harness.write_timings()


@pytest.fixture(scope="session")
def source(session_dir):
    """This working tree as a git repository (what `git clone` gives)."""
    return harness.source_repository(session_dir / "src" / "agnes")  # cloned as "agnes", like the real URL


@pytest.fixture(scope="session")
def image(daemon, source):
    harness.ensure_base_images(daemon)
    return harness.build_image(daemon, source)


@pytest.fixture(scope="session")
def caddy_image(daemon, image):
    return harness.build_caddy_image(daemon)


@pytest.fixture(scope="session")
def postgres(session_dir):
    pg = harness.Postgres(session_dir / "postgres").start()
    yield pg
    pg.stop()


@pytest.fixture
def mounts(workdir):
    # Depends on workdir so that it is torn down first: the filesystems mounted below workdir are unmounted
    # before workdir is removed (the other order emptied them through the mount and left the mount points).
    m = harness.Mounts()
    yield m
    m.cleanup()


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="agnes-dt-", dir="/var/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(daemon, session_dir):
    reg = harness.Registry(session_dir / "registry").start()
    yield reg
    reg.stop()
