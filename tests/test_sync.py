"""The notebooks are the source: exported modules and README.md must match them exactly."""
import shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def _run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout

@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    "A throwaway git repo holding the notebooks, modules and settings, so the checks never touch the working tree."
    d = tmp_path_factory.mktemp("repo")
    for name in ("nbs", "msvar"): shutil.copytree(ROOT / name, d / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    for name in ("settings.ini", "setup.py", "README.md"): shutil.copy(ROOT / name, d / name)
    _run(["git", "init", "-q"], d)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], d)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "snapshot"], d)
    return d

def test_clean_and_export_change_nothing(copy):
    bindir = Path(sys.executable).parent
    _run([str(bindir / "nbdev_clean")], copy)
    _run([str(bindir / "nbdev_export")], copy)
    status = _run(["git", "status", "--porcelain", "--", "msvar", "nbs"], copy)
    assert status == "", f"nbdev_clean && nbdev_export changed files (run both and commit):\n{status}"

def test_readme_matches_index_notebook():
    from msvar.devtools import make_readme
    assert make_readme(ROOT, check=True), "README.md is out of date with nbs/index.ipynb: run `msvar_readme`"

def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in readme and "test-command" in ci
