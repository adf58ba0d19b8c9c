"""The repository stands alone: no tracked file reads or names a data folder outside it.

A clone has nothing beside it, so a path that climbs out of the repository to a neighbouring data folder works only on the
machine where it was written. Bundled files are found with `msvar.core.data_dir()`, bigger data sets in the cache of
`msvar_fetch_data` (chapter 15). CI (.ci/run) also runs the test command in a copy of the clone in a fresh temporary folder."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SH = "shared"                                                      # the patterns are assembled so that this file does not match itself
PATTERNS = ("../" + SH, SH + "/data", SH + "/reference")
# verbatim logs of recorded runs: they say where that run's data lay at the time, and nothing reads a path from them
RECORDS = ("data/msvar_small_train/",)


def tracked_files() -> list:
    r = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, f"git ls-files failed: {r.stderr}"
    return [f for f in r.stdout.split("\0") if f]


def offending_lines(files) -> list:
    "(file, line number, line) for every text line holding one of PATTERNS; binary files (a NUL byte) are skipped."
    hits = []
    for f in files:
        p = REPO / f
        if f.startswith(RECORDS) or not p.is_file(): continue
        b = p.read_bytes()
        if b"\0" in b[:8192]: continue
        for i, line in enumerate(b.decode("utf-8", errors="replace").splitlines(), 1):
            if any(pat in line for pat in PATTERNS): hits.append((f, i, line.strip()[:160]))
    return hits


def test_no_path_outside_the_repository():
    files = tracked_files()
    assert "nbs/00_core.ipynb" in files and "msvar/core.py" in files             # the scan sees the sources
    hits = offending_lines(files)
    assert not hits, "tracked files name a data folder outside the repository (use msvar.core.data_dir() or msvar.fetch.fetched()):\n" + \
        "\n".join(f"{f}:{i}: {l}" for f, i, l in hits)


def test_the_scan_finds_a_planted_path(tmp_path, monkeypatch):
    "The check can fail: a file naming such a path is reported."
    import sys
    mod = sys.modules[__name__]
    monkeypatch.setattr(mod, "REPO", tmp_path)
    (tmp_path / "a.py").write_text('DATA = repo_dir().parent / "' + SH + '/data" / "train"\n')
    (tmp_path / "b.bin").write_bytes(b"\0" + (SH + "/data").encode())
    assert [(f, i) for f, i, _ in offending_lines(["a.py", "b.bin"])] == [("a.py", 1)]
