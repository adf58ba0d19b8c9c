"""Integration tests of msvar.train that a notebook cannot show: a 2-process gloo run against a 1-process run,
SIGKILL in the middle of `msvar_train` then --resume, truncated / mismatched checkpoints, the NaN guard.

Everything uses the `test` preset, a random HIT tokenizer and a handful of tiny images (about a minute in total)."""
import json, os, signal, subprocess, sys, time
from pathlib import Path
import pytest
import torch
import torch.nn as nn
from msvar.core import MsvarError, get_preset
from msvar.files import save_image
from msvar.train import FitConfig, fit, load_checkpoint, read_log

# Tolerance of the 1-process vs 2-process comparison. The two runs compute the same global-batch mean gradient, but
# the 2-process one sums two half-batch means through an all-reduce, so float rounding differs (~1e-7 relative);
# Adam can amplify it for parameters whose gradients are tiny. Measured max |Δ| after 3 steps: 1.5e-8; we allow 1e-5.
DDP_ATOL = 1e-5


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    "A random `test`-preset HIT tokenizer and a folder of 6 images of mixed sizes and formats."
    from msvar.hit import HITTokenizer, save_hit
    from msvar.tokenizer import Tokenizer
    d = tmp_path_factory.mktemp("train")
    p = get_preset("test")
    torch.manual_seed(0)
    save_hit(HITTokenizer(Tokenizer.from_preset(p), p), d / "hit.pt")
    imgs = d / "images"; (imgs / "sub").mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i, ext in enumerate(["png", "jpg", "webp", "png", "bmp", "jpg"]):
        h, w = 36 + 5 * i, 40 + 3 * i
        base = torch.rand(3, h // 4 + 1, w // 4 + 1, generator=g)        # smooth-ish random images
        x = torch.nn.functional.interpolate(base[None], size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        save_image(x, imgs / ("sub" if i % 2 else "") / f"im{i}.{ext}")
    return d


def _cmd(setup, out, steps, extra=()):
    return ["--preset", "test", "--data", str(setup / "images"), "--tokenizer", str(setup / "hit.pt"), "--out", str(out),
            "--steps", str(steps), "--threads", "1", "--no-progress", *extra]


def _run(args, check=True, **kw):
    r = subprocess.run([sys.executable, "-m", "msvar.cli_train", *args], capture_output=True, text=True, env=_env(), **kw)
    if check: assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_two_process_gloo_matches_one_process(setup):
    "torchrun with 2 gloo processes: both ranks hold identical weights, equal (within DDP_ATOL) to a 1-process run with the same global batch."
    common = ["--batch-size", "4", "--cond-drop", "0", "--ckpt-every", "3",  # no class dropout: its draws differ per process
              "--precision", "fp32"]    # bf16 (the default where the CPU has it) rounds the two ranks' partial sums differently
    one, two = setup / "one", setup / "two"
    _run(_cmd(setup, one, 3, common))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "msvar.cli_train", *_cmd(setup, two, 3, common), "--device", "cpu"], capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-3000:]
    c1, c2 = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert c2["world_size"] == 2 and len(c2["replica_digests"]) == 2
    assert c2["replica_digests"][0] == c2["replica_digests"][1]            # the ranks are bitwise identical
    diff = max((c1["model"][k].float() - c2["model"][k].float()).abs().max().item() for k in c1["model"])
    assert diff < DDP_ATOL, diff
    l1, l2 = read_log(one / "log.jsonl"), read_log(two / "log.jsonl")
    assert [x["step"] for x in l2] == [0, 1, 2]
    for a, b in zip(l1, l2): assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1, abs(a["loss"]))


def test_sigkill_then_resume_equals_uninterrupted(setup):
    "msvar_train killed with SIGKILL mid-run, then --resume: the loss sequence equals the uninterrupted run's exactly."
    steps, common = 24, ["--batch-size", "2", "--ckpt-every", "4"]
    ref = setup / "ref"
    _run(_cmd(setup, ref, steps, common))
    killed = setup / "killed"
    p = subprocess.Popen([sys.executable, "-m", "msvar.cli_train", *_cmd(setup, killed, steps, common)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    t0 = time.time()
    while len(read_log(killed / "log.jsonl")) < 10:                        # past the checkpoint at step 8
        assert p.poll() is None, "the run ended before it could be killed: " + p.stderr.read().decode()[-2000:]
        assert time.time() - t0 < 120, "the run is too slow"
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL); p.wait(); p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    done_before = load_checkpoint(killed / "last.pt")["step"]
    assert 4 <= done_before < steps
    r = _run(_cmd(setup, killed, steps, [*common, "--resume"]))
    assert f"at step {done_before}" in r.stdout
    a, b = read_log(ref / "log.jsonl"), read_log(killed / "log.jsonl")
    assert [x["step"] for x in b] == list(range(steps))
    assert [x["loss"] for x in a] == [x["loss"] for x in b]                 # exact: same seed, CPU, 1 thread
    ca, cb = load_checkpoint(ref / "last.pt"), load_checkpoint(killed / "last.pt")
    assert all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])


def _cli(capsys, args):
    "Run msvar_train in this process; returns (exit status, stdout, stderr)."
    from msvar.cli_train import train_cli
    try: train_cli(args); code = 0
    except SystemExit as e: code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_errors(setup, capsys):
    "Clear one-line errors with exit status 1: existing run without --resume, other options, truncated checkpoint, other preset, no data."
    out = setup / "cli"
    assert _cli(capsys, _cmd(setup, out, 2, ["--batch-size", "2"]))[0] == 0
    code, _, err = _cli(capsys, _cmd(setup, out, 2, ["--batch-size", "2"]))
    assert code == 1 and "--resume" in err
    code, _, err = _cli(capsys, _cmd(setup, out, 4, ["--batch-size", "4", "--resume"]))
    assert code == 1 and "global_batch: checkpoint 2 vs now 4" in err
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 3])
    code, _, err = _cli(capsys, _cmd(setup, out, 4, ["--batch-size", "2", "--resume"]))
    assert code == 1 and "truncated or corrupt" in err and "Traceback" not in err
    code, _, err = _cli(capsys, ["--preset", "small", "--data", str(setup / "images"), "--tokenizer", str(setup / "hit.pt"), "--out", str(setup / "x")])
    assert code == 1 and "was made for preset 'test'" in err
    code, _, err = _cli(capsys, ["--preset", "test", "--data", str(setup / "nope"), "--tokenizer", str(setup / "hit.pt"), "--out", str(setup / "x")])
    assert code == 1 and "does not exist" in err


def _toy(tmp, steps=8, nan_at=(), width=2, **kw):
    torch.manual_seed(0)
    m = nn.Linear(4, width)
    def batches(step):
        g = torch.Generator().manual_seed(step)
        return dict(x=torch.randn(8, 4, generator=g), nan=torch.tensor(float("nan") if step in nan_at else 1.0))
    def loss_fn(model, b):
        loss = model(b["x"]).square().mean() * b["nan"]
        return loss, dict(loss=loss.item())
    cfg = FitConfig(steps=steps, lr=0.01, ckpt_every=2, progress=False, max_nan_in_row=3)
    return fit(m, loss_fn, batches, cfg, tmp, **kw)


def test_mismatched_checkpoint(tmp_path):
    "Resuming a model of another shape, or with other run options, fails with a message naming the problem."
    _toy(tmp_path / "a", steps=4)
    with pytest.raises(MsvarError, match=r"does not fit this model[\s\S]*shape mismatch weight"):
        _toy(tmp_path / "a", steps=8, width=3, resume=True)
    _toy(tmp_path / "b", steps=4, meta=dict(preset="test"))
    with pytest.raises(MsvarError, match="preset: checkpoint 'test' vs now 'small'"):
        _toy(tmp_path / "b", steps=8, meta=dict(preset="small"), resume=True)
    (tmp_path / "c").mkdir(); torch.save(dict(format="msvar-tokenizer-v1"), tmp_path / "c" / "last.pt")
    with pytest.raises(MsvarError, match="not an msvar training checkpoint"):
        _toy(tmp_path / "c", resume=True)


def test_nan_skipped_and_counted(tmp_path):
    "A NaN loss skips its step (weights unchanged), is counted in the log and checkpoint; K in a row stop the run."
    seen = {}
    r = _toy(tmp_path / "n", steps=8, nan_at=(3,), after_step=lambda m, s: seen.__setitem__(s, m.weight.detach().clone()))
    assert [x["skipped"] for x in r.rows] == [0, 0, 0, 1, 0, 0, 0, 0] and r.nan_skipped == 1
    assert torch.equal(seen[2], seen[3]) and not torch.equal(seen[3], seen[4])
    assert load_checkpoint(tmp_path / "n" / "last.pt")["nan_total"] == 1
    assert [x["nan_total"] for x in read_log(tmp_path / "n" / "log.jsonl")][-1] == 1
    with pytest.raises(MsvarError, match="3 steps in a row had a non-finite loss"):
        _toy(tmp_path / "m", steps=8, nan_at=(4, 5, 6))


def test_training_defaults_live_in_the_recipe():
    "β, precision, compile, warm-up and clipping have one default, the recipe's; the configs take None for it."
    from msvar.core import TrainRecipe
    from msvar.train_var import VarTrainConfig, _dpo_params, _var_fit_config
    from types import SimpleNamespace
    r = TrainRecipe()
    assert (r.dpo_beta, r.precision, r.compile, r.warmup, r.clip) == (0.1, "auto", "auto", 0.02, 2.0)
    o = VarTrainConfig()
    assert (o.dpo_beta, o.precision, o.compile, o.warmup, o.clip) == (None,) * 5
    assert (FitConfig().precision, FitConfig().compile, FitConfig().lr) == (None, None, None)
    p = get_preset("small")
    cfg = _var_fit_config(p, o, SimpleNamespace(is_main=True), 10, 1)
    assert (cfg.lr, cfg.precision, cfg.compile, cfg.clip, cfg.warmup) == (p.train.lr, "auto", "auto", 2.0, 0.02)
    assert _dpo_params(o, p.train)[0] == 0.1                              # msvar_train's β is the recipe's


def test_library_takes_a_config_not_keywords(setup, tmp_path):
    "train_var takes a VarTrainConfig: the older `hit=` keyword and free keywords are gone; bad values fail at once."
    from msvar.train_var import train_var, VarTrainConfig
    with pytest.raises(TypeError):
        train_var("test", setup / "images", setup / "hit.pt", tmp_path / "k", steps=2, hit=False)
    with pytest.raises(MsvarError, match="tokens must be one of"):
        train_var("test", setup / "images", setup / "hit.pt", tmp_path / "t", VarTrainConfig(tokens="yes"))
    assert not (tmp_path / "t" / "last.pt").exists()


def test_cli_has_no_hit_switch(setup, capsys):
    "One switch for the tokens (--tokens); --hit/--no-hit are usage errors."
    for flag in ("--hit", "--no-hit"):
        assert _cli(capsys, _cmd(setup, setup / "never", 1, [flag]))[0] == 2
