"""Integration tests of msvar.data that a notebook cannot show: loader workers, the msvar_make_testset console command."""
import hashlib, shutil, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from msvar.core import bundled_images, resize
from msvar.files import load_image, save_image
from msvar.data import HRFolder, make_loader
from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "msvar_make_testset")
IMAGES = bundled_images()[0].parent


def _hashes(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(d.rglob("*")) if p.is_file()}


class _Result:
    def __init__(self, returncode, stdout, stderr): self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(*args):
    "Run msvar_make_testset in this process (fast); `test_cli_help` checks the installed console script itself."
    import contextlib, io, warnings
    from msvar.cli_data import make_testset_cli
    out, err, rc = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, c, f, l, file=None, line=None: print(f"{c.__name__}: {m}", file=sys.stderr)
        try: make_testset_cli([str(a) for a in args])
        except SystemExit as e: rc = e.code or 0
    return _Result(rc, out.getvalue(), err.getvalue())


def test_loader_same_batches_with_0_and_2_workers():
    ds = HRFolder(IMAGES, 32)
    runs = [[b for _, b in zip(range(2), make_loader(ds, 2, seed=3, num_workers=w, lr_size=8))] for w in (0, 2)]
    for b0, b2 in zip(*runs):
        for k in ("hr", "lr", "cls", "index"): assert torch.equal(b0[k], b2[k]), k


def test_cli_help():
    r = subprocess.run([CLI, "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "msvar_make_testset" in r.stdout and "--seed" in r.stdout


def test_cli_synthetic_is_deterministic(tmp_path):
    for name in ("a", "b"):
        r = _cli(IMAGES, "-o", tmp_path / name, "-n", 6, "--preset", "test", "--seed", 7)
        assert r.returncode == 0, r.stderr
        assert "wrote 6 LR/HR pairs" in r.stdout
    ha, hb = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert len(ha) == 13 and ha == hb
    assert load_image(tmp_path / "a" / "lr" / "00005.png").shape == (3, 8, 8)
    assert load_image(tmp_path / "a" / "hr" / "00005.png").shape == (3, 32, 32)
    r = _cli(IMAGES, "-o", tmp_path / "c", "-n", 6, "--preset", "test", "--seed", 8)
    assert _hashes(tmp_path / "c") != ha


def test_cli_refuses_to_overwrite(tmp_path):
    assert _cli(IMAGES, "-o", tmp_path, "-n", 2, "--preset", "test").returncode == 0
    before = _hashes(tmp_path)
    r = _cli(IMAGES, "-o", tmp_path, "-n", 2, "--preset", "test", "--seed", 1)
    assert r.returncode == 2 and "not empty" in r.stderr  # a usage error: exit code 2
    assert _hashes(tmp_path) == before
    assert _cli(IMAGES, "-o", tmp_path, "-n", 2, "--preset", "test", "--seed", 1, "--overwrite").returncode == 0


@pytest.mark.parametrize("setup,msg,code", [("missing", "does not exist", 2), ("empty", "no image files", 1)])
def test_cli_bad_folders(tmp_path, setup, msg, code):
    "A missing folder is a usage error (exit code 2, checked before any work); a folder without images is a data failure (1)."
    src = tmp_path / "src"
    if setup == "empty": src.mkdir()
    r = _cli(src, "-o", tmp_path / "out")
    assert r.returncode == code and msg in r.stderr and "Traceback" not in r.stderr


def test_cli_warns_about_unreadable_files(tmp_path):
    src = tmp_path / "src"; src.mkdir()
    for p in bundled_images(): shutil.copy(p, src / p.name)
    (src / "broken.png").write_bytes((src / "bird.png").read_bytes()[:500])
    r = _cli(src, "-o", tmp_path / "out", "-n", 2, "--preset", "test")
    assert r.returncode == 0 and "skipped 1 unreadable" in r.stderr and "broken.png" in r.stderr


def test_cli_real_pairs_centre_crops(tmp_path):
    hr_dir, lr_dir = tmp_path / "test_HR", tmp_path / "test_LR"
    for p in bundled_images():
        im = load_image(p); h, w = im.shape[-2] // 4 * 4, im.shape[-1] // 4 * 4
        save_image(im[:, :h, :w], hr_dir / p.name); save_image(resize(im[:, :h, :w], (h // 4, w // 4)), lr_dir / p.name)
    r = _cli(hr_dir, "--lr", lr_dir, "-o", tmp_path / "out", "-n", 0, "--hr-size", 64, "--lr-size", 16)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out" / "lr").glob("*.png"))) == 4
    (lr_dir / "bird.png").unlink()
    r = _cli(hr_dir, "--lr", lr_dir, "-o", tmp_path / "out2", "-n", 0, "--hr-size", 64, "--lr-size", 16)
    assert r.returncode == 1 and "HR without LR [bird]" in r.stderr
    assert "strict=False" not in r.stderr and "remove or rename" in r.stderr      # words for a command-line user


def _load_degrade_ref():
    return load_script("tests/ref/make_degrade_ref.py")


def _rounded(x):
    "Floats rounded to 9 significant digits and tuples as lists, in nested dicts and lists (as a JSON round trip)."
    if isinstance(x, float): return float(f"{x:.9g}")
    if isinstance(x, dict): return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)): return [_rounded(v) for v in x]
    return x


def test_degrade_matches_its_golden_lr():
    "Seeded degrade (a config whose every range differs from the published one) draws and writes what tests/ref holds."
    import json
    ref_mod = _load_degrade_ref()
    ref = json.loads(ref_mod.JSON.read_text())
    assert _rounded(ref_mod.CONFIG) == ref["config"], "the config changed: rerun tests/ref/make_degrade_ref.py"
    assert list(ref_mod.SEEDS) == ref["seeds"], "the seeds changed: rerun tests/ref/make_degrade_ref.py"
    tile, params = ref_mod.run()
    assert _rounded(params) == _rounded(ref["params"])                  # every value drawn, stage by stage
    gold = load_image(ref_mod.PNG)
    assert tile.shape == gold.shape
    levels = (tile - gold).abs() * 255
    # bit-identical here; another CPU may round a few pixels differently; a dropped or changed step moves many
    assert levels.mean() < 0.25, f"degraded LRs differ from the golden ones by {levels.mean():.2f} levels on average"


# ---------------------------------------------------------------- one run per folder; folders of links
RACE = """
import os, sys, time
from pathlib import Path
import msvar.data as data
from msvar.cli_data import make_testset_cli
save = data.save_image
def held_save(*a, **k):  # the run that holds the folder waits here until the test has seen the other refused
    while not Path(sys.argv[1] + ".release").exists():
        time.sleep(0.01)
    return save(*a, **k)
data.save_image = held_save
Path(f"{sys.argv[1]}.ready.{os.getpid()}").touch()  # imports done
while not Path(sys.argv[1]).exists():  # both processes have imported everything: start together
    time.sleep(0.005)
make_testset_cli(sys.argv[2:])
"""


def test_two_testsets_into_one_folder_at_once(tmp_path):
    "Seeds 1 and 2 started together into one folder: one is refused in one line naming the holder; the folder is one seed's set."
    refs = {}
    for seed in (1, 2):
        assert _cli(IMAGES, "-o", tmp_path / f"ref{seed}", "-n", 8, "--preset", "test", "--seed", seed).returncode == 0
        refs[seed] = _hashes(tmp_path / f"ref{seed}")
    go, out = tmp_path / "go", tmp_path / "out"
    procs = {seed: subprocess.Popen([sys.executable, "-c", RACE, str(go), str(IMAGES), "-o", str(out), "-n", "8", "--preset", "test",
                                     "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)}
    deadline = time.time() + 240
    while len(list(tmp_path.glob("go.ready.*"))) < 2 and time.time() < deadline:  # both have imported torch and msvar
        time.sleep(0.05)
    go.touch()
    while all(p.poll() is None for p in procs.values()) and time.time() < deadline:  # one of them is refused...
        time.sleep(0.05)
    Path(f"{go}.release").touch()                                # ...then the one holding the folder writes its set
    res = {seed: (p.wait(timeout=300), *p.communicate()) for seed, p in procs.items()}
    winner = [s for s, r in res.items() if r[0] == 0]
    assert len(winner) == 1, "\n".join(f"seed {s}: exit {c}, stderr {e.strip()!r}" for s, (c, _, e) in res.items())
    loser = 3 - winner[0]
    code, _, err = res[loser]
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "in use by another msvar run" in err and f"pid {procs[winner[0]].pid}" in err, err
    assert _hashes(out) == refs[winner[0]]                       # every file from the winner's seed, nothing else


def test_scan_images_follows_links(tmp_path):
    "A folder of links (to folders and to a file) reads like the folders themselves; a link back up ends the walk."
    from msvar.data import scan_images
    real, links = tmp_path / "real", tmp_path / "links"
    for sub, p in zip(("a", "a", "b"), bundled_images()):
        (real / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, real / sub / p.name)
    links.mkdir()
    (links / "a").symlink_to(real / "a")
    (links / "b").symlink_to(real / "b")
    (links / "single.png").symlink_to(bundled_images()[3])
    (real / "a" / "up").symlink_to(links)                        # a loop: links/a/up is links again
    (links / "gone.png").symlink_to(tmp_path / "nothing.png")   # a broken link is listed, not dropped
    ok, bad = scan_images(links)
    names = sorted(p.relative_to(links).as_posix() for p, _ in ok)
    want = sorted([f"a/{p.name}" for p in bundled_images()[:2]] + [f"b/{bundled_images()[2].name}", "single.png"])
    assert names == want
    assert [p.name for p, _ in bad] == ["gone.png"]
    assert len(HRFolder(links, 32)) == 4


def test_another_runs_probe_is_not_content(tmp_path):
    """Another run's writability probe (removed at once) and the lock file do not make a folder 'not empty': the loser
    of a race probes the folder while the winner checks it."""
    from msvar.data import check_empty
    from msvar.core import MsvarError
    from msvar.files import PROBE_PREFIX, LOCK_NAME
    (tmp_path / f"{PROBE_PREFIX}k2x9_q.tmp").touch()
    (tmp_path / LOCK_NAME).touch()
    check_empty(tmp_path, overwrite=False)
    (tmp_path / "0001.png").touch()
    with pytest.raises(MsvarError, match="not empty"):
        check_empty(tmp_path, overwrite=False)
