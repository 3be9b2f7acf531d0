"""Every shell script the project ships passes shellcheck (issue 7: host scripts are shellcheck-clean)."""
import glob
import subprocess

from conftest import ROOT


def test_shell_scripts_are_shellcheck_clean():
    scripts = sorted(glob.glob(str(ROOT / "scripts" / "ops" / "*.sh")) + glob.glob(str(ROOT / "bench" / "*.sh")) +
                     [str(ROOT / "scripts" / name) for name in ("bootstrap", "smoke-test.sh", "release/next-version")] +
                     [str(ROOT / "tests" / "run-all"), str(ROOT / "examples" / "connectors" / "csv_folder" / "extract")])
    out = subprocess.run(["shellcheck", "--severity=warning", *scripts], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
