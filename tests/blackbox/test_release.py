"""CalVer and channels (SPEC §14; issue 7): scripts/release/next-version on scratch git repositories."""
import os
import subprocess

import pytest

from conftest import ROOT

NEXT = str(ROOT / "scripts" / "release" / "next-version")


def git(cwd, *args):
    out = subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def repo(path, *tags):
    path.mkdir()
    git(path, "init", "-q")
    git(path, "commit", "-q", "--allow-empty", "-m", "start")
    for tag in tags:
        git(path, "tag", tag)
    return path


def next_version(cwd, *args, month="2026.11"):
    return subprocess.run([NEXT, *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, AGNES_RELEASE_MONTH=month))


def test_the_next_number_is_the_months_highest_across_channels_plus_one(tmp_path):
    r = repo(tmp_path / "r", "stable-2026.11.3", "dev-2026.11.7", "stable-2026.10.20", "deprecated-2026.11.5")
    out = next_version(r, "stable")
    assert out.returncode == 0 and out.stdout == "2026.11.8\n", out.stderr
    assert next_version(r, "dev", month="2026.12").stdout == "2026.12.1\n"  # a new month starts at 1
    assert next_version(r, "stable", month="2026.10").stdout == "2026.10.21\n"


def test_tag_claims_the_version_and_retries_when_a_race_is_lost(tmp_path):
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    mine = repo(tmp_path / "mine", "stable-2026.11.3")
    git(mine, "remote", "add", "origin", str(origin))
    git(mine, "push", "-q", "origin", "HEAD:refs/heads/main", "--tags")
    # Somebody else claimed .4 on origin; this clone has not seen it yet.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", "main", str(origin), str(other))
    git(other, "tag", "dev-2026.11.4")
    git(other, "push", "-q", "origin", "dev-2026.11.4")
    out = next_version(mine, "stable", "--tag")
    assert out.returncode == 0 and out.stdout == "2026.11.5\n", out.stderr
    assert "stable-2026.11.5" in git(origin, "tag", "-l")
    # A race lost at push time: the tag appears on origin between the fetch and the push.
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nwhile read old new ref; do [ \"$ref\" = refs/tags/stable-2026.11.6 ] && exit 1; done\n"
                    "exit 0\n")
    hook.chmod(0o755)
    out = next_version(mine, "stable", "--tag")
    assert out.returncode == 0 and out.stdout == "2026.11.7\n" and "was taken" in out.stderr, out.stderr
    assert "stable-2026.11.6" not in git(mine, "tag", "-l")


@pytest.mark.parametrize("args", [[], ["Stable"], ["stable", "--push"], ["a b"]])
def test_bad_arguments_are_usage_errors(tmp_path, args):
    r = repo(tmp_path / "r")
    out = next_version(r, *args)
    assert out.returncode == 2 and "next-version" in out.stderr
