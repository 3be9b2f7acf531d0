"""The breaking-change gate (SPEC §14; issue 7): the committed interface snapshots match the code, and
scripts/breaking-check finds each kind of breaking change in scratch git repositories."""
import json
import shutil
import subprocess

import pytest

from conftest import AGNES_BIN, ROOT

CHECK = str(ROOT / "scripts" / "breaking-check")
SNAPSHOTS = {"openapi.json": ["openapi"], "contracts/system_schema.json": ["schema", "dump"],
             "contracts/cli.json": ["help", "--json"]}


@pytest.mark.parametrize("path", sorted(SNAPSHOTS))
def test_committed_snapshots_match_the_code(path):
    out = subprocess.run([AGNES_BIN, *SNAPSHOTS[path]], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    committed = json.loads((ROOT / path).read_text())
    assert json.loads(out.stdout) == committed, f"{path} is stale: run `make interfaces` and commit it"


def test_the_openapi_document_covers_every_route():
    doc = json.loads((ROOT / "openapi.json").read_text())
    routes = json.loads(subprocess.run([AGNES_BIN, "routes", "--json"], capture_output=True, text=True).stdout)
    for r in routes:
        op = doc["paths"][r["path"]][r["method"].lower()]
        assert op["x-access"] == r["access"] and op["summary"] == r["summary"]
    assert doc["paths"]["/api/query"]["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["sql"]


def test_every_listed_flag_is_in_the_commands_own_help():
    interface = json.loads(subprocess.run([AGNES_BIN, "help", "--json"], capture_output=True, text=True).stdout)
    for command, spec in interface["commands"].items():
        usage = subprocess.run([AGNES_BIN, command, "--help"], capture_output=True, text=True, timeout=30,
                               env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "DATA_DIR": "/nonexistent"})
        text = usage.stdout + usage.stderr
        for flag in spec["flags"]:
            assert flag in text, f"agnes {command} --help does not mention {flag}"


def git(cwd, *args):
    out = subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=cwd,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.fixture
def scratch(tmp_path):
    repo = tmp_path / "repo"
    for path in [*SNAPSHOTS, "contracts/extract_contract.json", "config/instance.yaml.example", "CHANGELOG.md"]:
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, repo / path)
    changelog = repo / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\n## [Unreleased]\n\n### Added\n- things\n\n## [2026.11.1]\n- **BREAKING** old\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def edit_json(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc, indent=2))


def check(repo, base="HEAD~1"):
    return subprocess.run([CHECK, base], cwd=repo, capture_output=True, text=True, timeout=60)


CHANGES = {
    "response field removed": ("openapi.json", lambda d: d["paths"]["/api/health"]["get"]["responses"]["200"]["content"]
                               ["application/json"]["schema"]["properties"].pop("version"),
                               "response field removed: GET /api/health .version"),
    "list item field removed": ("openapi.json", lambda d: d["paths"]["/api/users"]["get"]["responses"]["200"]["content"]
                                ["application/json"]["schema"]["items"]["properties"].pop("email"),
                                "response field removed: GET /api/users .email"),
    "endpoint removed": ("openapi.json", lambda d: d["paths"].pop("/api/sync/manifest"),
                         "endpoint removed: GET /api/sync/manifest"),
    "new required request field": ("openapi.json", lambda d: d["paths"]["/api/query"]["post"]["requestBody"]["content"]
                                   ["application/json"]["schema"]["required"].append("limit"),
                                   "new required request field: POST /api/query .limit"),
    "contract column removed": ("contracts/extract_contract.json",
                                lambda d: d["tables"]["_meta"]["columns"].pop(1),
                                "extract contract: column _meta.description removed"),
    "system column dropped": ("contracts/system_schema.json", lambda d: d["tables"]["users"].pop(1),
                              "system.duckdb: column users."),
    "cli flag removed": ("contracts/cli.json", lambda d: d["commands"]["pull"]["flags"].remove("--quiet"),
                         "CLI: flag `agnes pull --quiet` removed"),
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_each_kind_of_breaking_change_is_found_until_the_changelog_says_breaking(scratch, kind):
    path, change, words = CHANGES[kind]
    edit_json(scratch / path, change)
    git(scratch, "commit", "-q", "-am", f"scratch: {kind}")
    out = check(scratch)
    assert out.returncode == 1 and words in out.stdout, out.stdout + out.stderr
    assert "**BREAKING**" in out.stderr and "CHANGELOG.md" in out.stderr
    changelog = scratch / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace("- things\n", "- things\n- **BREAKING** says how to adapt\n"))
    assert check(scratch).returncode == 0


def test_removed_config_keys_and_harmless_changes(scratch):
    example = scratch / "config" / "instance.yaml.example"
    text = example.read_text()
    assert check(scratch, "HEAD").returncode == 0  # nothing changed
    edit_json(scratch / "openapi.json", lambda d: d["paths"]["/api/health"]["get"]["responses"]["200"]["content"]
              ["application/json"]["schema"]["properties"].update({"uptime": {"type": "integer"}}))
    assert check(scratch, "HEAD").returncode == 0  # an added field breaks nobody
    example.write_text(text.replace("  memory_limit:", "  # memory_limit:", 1))
    out = check(scratch, "HEAD")
    assert out.returncode == 1 and "configuration key removed" in out.stdout and "memory_limit" in out.stdout
    assert check(scratch, "no-such-ref").returncode == 2
