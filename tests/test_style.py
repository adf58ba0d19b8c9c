"""One statement per line and lines of at most 120 characters, in the notebooks and in the package they export.

The notebooks are formatted with ruff (`ruff format nbs`, settings in ruff.toml); the package's numbers are
bench/code_stats.py's, which prints them per module.
"""

import json
import subprocess
import sys
from pathlib import Path

from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
code_stats = load_script("bench/code_stats.py")
MODULES = sorted(p for p in (ROOT / "msvar").glob("*.py") if p.name not in ("_modidx.py", "__init__.py"))


def code_lines(nb_path: Path):
    "(cell index, line) of every code line of a notebook, shell escapes and magics (`!cmd`, `%cmd`) aside."
    for i, cell in enumerate(json.loads(nb_path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            for line in "".join(cell["source"]).splitlines():
                if not line.lstrip().startswith(("!", "%")):
                    yield i, line


def test_density_counts_what_it_must(tmp_path):
    "The counter sees a `;` join, a one-line `if`, a long hand-written line, and leaves nbdev's `__all__` alone."
    f = tmp_path / "m.py"
    f.write_text("__all__ = [" + "'a', " * 40 + "]\nx = 1; y = 2\nif x: y = 3\ns = '" + "a" * 130 + "'\n")
    d = code_stats.density(f)
    assert (d["semicolon"], d["compound"], d["over120"]) == (1, 1, 1)


def test_package_has_one_statement_per_line_and_short_lines():
    bad = {p.stem: code_stats.density(p) for p in MODULES}
    bad = {m: {k: d[k] for k in ("over120", "semicolon", "compound") if d[k]} for m, d in bad.items()}
    assert not {m: d for m, d in bad.items() if d}, f"lines over 120 or with several statements: {bad}"


def test_notebook_code_lines_at_most_120():
    long = [
        f"{p.name} cell {i}: {line[:60]}…"
        for p in sorted((ROOT / "nbs").glob("*.ipynb"))
        for i, line in code_lines(p)
        if len(line) > 120
    ]
    assert not long, "code lines over 120 characters:\n" + "\n".join(long)


def test_notebooks_are_formatted():
    "`ruff format --check` and `ruff check` (one statement per line, no unused imports) pass on the notebooks."
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "nbs"], cwd=ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, f"run `ruff format nbs`, then `nbdev_export`:\n{fmt.stdout}{fmt.stderr}"
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "nbs"], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_package_imports_what_it_uses():
    "The exported modules have no unused or repeated imports (a chapter's demo imports stay in its non-exported cells)."
    rules = "--select=F401,F811,F841"
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", rules, *map(str, MODULES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
