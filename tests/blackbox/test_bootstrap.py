"""scripts/bootstrap's install step (issue 13, item 25): a fresh clone once stopped with "duckdb.h is missing after
npm ci" while another `npm ci` ran on the machine. The install is verified, retried once from a clean state, says what
happened, and two bootstraps of one checkout do not race. Run against a copy of the script with a stand-in `npm`."""
import os
import shutil
import subprocess

from conftest import ROOT

FAKE_NPM = r'''#!/bin/sh
# A stand-in npm: `npm ci` writes the files the real packages hold; FAKE_NPM_MODE makes the first (flaky) or every
# (broken) install of the DuckDB pin come out incomplete. Each call is logged with its arguments.
echo "$PWD $*" >> "$FAKE_NPM_LOG"
[ -n "$FAKE_NPM_SLEEP" ] && sleep "$FAKE_NPM_SLEEP"
case "$PWD" in
  */tests/js)
    mkdir -p node_modules/apache-arrow && echo '{}' > node_modules/apache-arrow/package.json; exit 0 ;;
esac
calls=$(grep -c "/third_party/duckdb " "$FAKE_NPM_LOG")
mkdir -p node_modules/duckdb/src/duckdb/src/include node_modules/@duckdb/node-bindings-linux-x64
printf '\177ELF fake library' > node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so
if [ "$FAKE_NPM_MODE" = broken ] || { [ "$FAKE_NPM_MODE" = flaky ] && [ "$calls" = 1 ]; }; then
  exit 0  # "added 119 packages", yet the header is not there
fi
printf '#define DUCKDB_VERSION "v1.4.4"\nduckdb_state duckdb_open(const char *path, void *out);\n' \
  > node_modules/duckdb/src/duckdb/src/include/duckdb.h
'''


def fake_checkout(workdir):
    repo = workdir / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap", repo / "scripts" / "bootstrap")
    for d in ("third_party/duckdb", "tests/js"):
        (repo / d).mkdir(parents=True)
        for f in ("package.json", "package-lock.json"):
            shutil.copy(ROOT / d / f, repo / d / f)
    tools = workdir / "tools"
    tools.mkdir()
    for name, body in (("npm", FAKE_NPM), ("node", "#!/bin/sh\nexit 0\n"),
                       ("dpkg-query", "#!/bin/sh\nprintf 'install ok installed'\n")):
        (tools / name).write_text(body)
        (tools / name).chmod(0o755)
    return repo, tools


def bootstrap(repo, tools, workdir, mode, sleep="", background=False):
    env = {"PATH": f"{tools}:/usr/bin:/bin", "HOME": str(workdir), "FAKE_NPM_MODE": mode,
           "FAKE_NPM_LOG": str(workdir / "npm.log"), "FAKE_NPM_SLEEP": sleep}
    args = dict(env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if background:
        return subprocess.Popen([str(repo / "scripts" / "bootstrap")], **args)
    return subprocess.run([str(repo / "scripts" / "bootstrap")], timeout=60, **args)


def npm_calls(workdir):
    return [line for line in (workdir / "npm.log").read_text().splitlines() if "/third_party/duckdb " in line]


def test_an_incomplete_install_is_retried_once_from_a_clean_state(workdir):
    repo, tools = fake_checkout(workdir)
    out = bootstrap(repo, tools, workdir, "flaky")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "these are missing: node_modules/duckdb/src/duckdb/src/include/duckdb.h" in out.stderr
    assert "retrying once from a clean state" in out.stderr and "the clean retry worked" in out.stdout
    calls = npm_calls(workdir)
    assert len(calls) == 2 and "--cache" not in calls[0] and "--cache" in calls[1]  # the retry has its own cache
    assert "duckdb_open" in (repo / "third_party" / "duckdb" / "include" / "duckdb.h").read_text()
    again = bootstrap(repo, tools, workdir, "flaky")
    assert again.returncode == 0 and "DuckDB C API present" in again.stdout and len(npm_calls(workdir)) == 2


def test_a_layout_that_stays_wrong_stops_with_what_to_do(workdir):
    repo, tools = fake_checkout(workdir)
    out = bootstrap(repo, tools, workdir, "broken")
    assert out.returncode == 1
    assert "still incomplete after a clean retry" in out.stderr and "third_party/duckdb/package.json" in out.stderr
    assert not (repo / "third_party" / "duckdb" / "include" / "duckdb.h").exists()


def test_two_bootstraps_of_one_checkout_do_not_race(workdir):
    repo, tools = fake_checkout(workdir)
    first = bootstrap(repo, tools, workdir, "ok", sleep="1", background=True)
    second = bootstrap(repo, tools, workdir, "ok", sleep="1", background=True)
    outputs = [p.communicate(timeout=60) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    assert len(npm_calls(workdir)) == 1  # the second waited, then found the work done
    assert any("waiting for it" in o[0] for o in outputs), outputs
