"""GitHub workflows (SPEC §14; issue 7): Actions cannot run here, so their YAML is parsed and the keys
that make them do their job are checked."""
import yaml

from conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"


def load(name):
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    assert doc["on"] and doc["jobs"], name
    for job_name, job in doc["jobs"].items():
        assert "runs-on" in job or "uses" in job, f"{name}:{job_name}"
        assert "uses" in job or job["steps"], f"{name}:{job_name}"
    return doc


def commands(job):
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def test_ci_runs_the_tests_the_sanitizer_and_the_breaking_check():
    ci = load("ci.yml")
    assert "pull_request" in ci["on"] and "push" in ci["on"]
    assert "make test" in commands(ci["jobs"]["test"]) and "scripts/bootstrap" in commands(ci["jobs"]["test"])
    assert "make asan" in commands(ci["jobs"]["asan"])
    assert "scripts/breaking-check" in commands(ci["jobs"]["breaking-check"])


def test_release_claims_a_tag_and_pushes_the_three_image_tags():
    release = load("release.yml")
    job = release["jobs"]["release"]
    assert "scripts/release/next-version" in commands(job) and "--tag" in commands(job)
    build = [s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action")][0]["with"]
    for arg in ("AGNES_VERSION=", "RELEASE_CHANNEL=", "AGNES_COMMIT_SHA=", "AGNES_TAG="):
        assert arg in build["build-args"]
    tags = build["tags"]
    assert ":${{ steps.tag.outputs.channel }}\n" in tags and "-${{ steps.tag.outputs.version }}" in tags
    assert ":sha-${{ github.sha }}" in tags and build["push"] is True
    assert release["jobs"]["smoke"]["uses"] == "./.github/workflows/smoke.yml"


def test_smoke_runs_the_smoke_test_and_withdraws_a_failed_release():
    smoke = load("smoke.yml")
    assert set(smoke["on"]["workflow_call"]["inputs"]) == {"image", "channel", "version"}
    job = smoke["jobs"]["smoke"]
    assert "scripts/smoke-test.sh" in commands(job)
    withdraw = [s for s in job["steps"] if s.get("if") == "failure()"][0]["run"]
    assert ":deprecated-$version" in withdraw and 'docker push "$image:$channel"' in withdraw
    assert "releases/index.json" in withdraw


def test_ci_keeps_the_logs_of_failed_tests():
    ci = load("ci.yml")
    for job, path in (("test", "build/test-logs"), ("asan", "build/asan/test-logs")):
        kept = [s for s in ci["jobs"][job]["steps"] if s.get("if") == "failure()"]
        assert kept and kept[0]["uses"].startswith("actions/upload-artifact") and kept[0]["with"]["path"] == path
