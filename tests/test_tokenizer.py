"""Tokenizer integration tests: VAR checkpoint compatibility, checkpoints on disk, the training CLI, quantizer properties."""
import json, subprocess, sys
from pathlib import Path
import pytest
import torch
from msvar.core import MsvarError, get_preset, repo_dir, data_dir
from msvar.quantize import MultiScaleQuantizer, nearest_code, phi_index
from msvar.tokenizer import Tokenizer, load_var_tokenizer, save_tokenizer, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
KEYS = data_dir() / "var_keys.json"                                # bundled (data/README.md)
DATA = data_dir()


def test_paper_tokenizer_loads_var_keys_strictly(tmp_path):
    shapes = json.loads(KEYS.read_text())["vae_ch160v4096z32.pth"]
    tok = Tokenizer.from_preset("paper")
    sd = {k: torch.zeros(s) for k, s in shapes.items()}
    load_var_tokenizer(tok, sd)                                    # strict=True inside
    assert {k: tuple(v.shape) for k, v in tok.state_dict().items()} == {k: tuple(s) for k, s in shapes.items()}
    p = tmp_path / "vae.pth"; torch.save(sd, p)
    load_var_tokenizer(tok, p)                                     # from a path too
    sd.pop("quantize.embedding.weight"); sd["encoder.extra"] = torch.zeros(1)
    with pytest.raises(MsvarError, match=r"missing keys: quantize.embedding.weight[\s\S]*unexpected keys: encoder.extra"):
        load_var_tokenizer(tok, sd)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    tok = Tokenizer.from_preset("test")
    p = save_tokenizer(tok, get_preset("test"), tmp_path / "a.pt", note="x")
    tok2, pre = load_tokenizer(p)
    assert pre == get_preset("test")
    for a, b in zip(tok.state_dict().values(), tok2.state_dict().values()): assert torch.equal(a, b)
    (tmp_path / "t.pt").write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(MsvarError, match="truncated"): load_tokenizer(tmp_path / "t.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(MsvarError, match="not an msvar tokenizer checkpoint"): load_tokenizer(tmp_path / "other.pt")
    assert not list(tmp_path.glob(".*.tmp"))                      # atomic writes leave no temporaries


def test_quantizer_properties():
    torch.manual_seed(0)
    q = MultiScaleQuantizer(64, 8, (1, 2, 3, 4))
    f = torch.randn(3, 8, 4, 4)
    q.init_codebook(f)
    idx = q.f_to_idx(f)
    assert [tuple(i.shape) for i in idx] == [(3, 1, 1), (3, 2, 2), (3, 3, 3), (3, 4, 4)]
    e = q.embedding(idx[2]).permute(0, 3, 1, 2)
    assert torch.equal(nearest_code(e, q.embedding.weight), idx[2])   # codes round-trip through their embeddings
    with torch.no_grad():
        flat = [i.flatten(1) for i in idx]                            # VAR's (B, ρ²) form gives the same f̂
        assert torch.allclose(q.idx_to_fhat(idx), q.idx_to_fhat(flat))
        assert q.teacher_inputs(idx).shape == (3, 4 + 9 + 16, 8)
    f_hat, loss, usage = q.train()(f.requires_grad_())
    f_hat.sum().backward()
    assert torch.allclose(f.grad, torch.ones_like(f)) and usage.shape == (4,) and loss.item() > 0
    assert [phi_index(l, 10, 4) for l in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]


def test_train_cli_writes_and_resumes(tmp_path):
    exe = Path(sys.executable).parent / "msvar_train_tokenizer"
    assert subprocess.run([str(exe), "--help"], capture_output=True).returncode == 0
    args = [str(exe), "--preset", "test", "--data", str(DATA / "train" / "T91"), "--out", str(tmp_path), "--batch-size", "2", "--lpips-weight", "0", "--threads", "1"]
    r = subprocess.run(args + ["--steps", "3", "--precision", "bf16"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "precision bf16" in r.stdout, r.stdout                      # what it trains in is said before it starts
    assert (tmp_path / "last.pt").exists() and (tmp_path / "loss.png").exists()
    r = subprocess.run(args + ["--steps", "4", "--precision", "fp32"], capture_output=True, text=True)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stdout + r.stderr
    assert "the checkpoint was trained in bf16; steps from 3 run in fp32" in r.stdout, r.stdout
    _, _, ck = load_tokenizer(tmp_path / "last.pt", return_extra=True)
    assert ck["step"] == 4
    r = subprocess.run([str(exe), "--preset", "test", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1 and "error:" in r.stderr


def _tok_cli(out, steps, extra=(), batch_size=2):
    exe = Path(sys.executable).parent / "msvar_train_tokenizer"
    return [str(exe), "--preset", "test", "--data", str(DATA / "train" / "T91"), "--out", str(out), "--batch-size", str(batch_size),
            "--lpips-weight", "0", "--threads", "1", "--steps", str(steps), *extra]


def _env():
    import os
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def test_sigkill_then_resume_is_exact(tmp_path):
    """msvar_train_tokenizer killed with SIGKILL mid-run and run again ends with exactly the weights of an uninterrupted run.
    With batch 1 a code of the test preset's 32 stays unused for 50 steps and is restarted before step 64 (at step 49 of this
    run; at step 60 with the crops of the older sampler), so the resumed run must restore the dead-code counters and the RNGs."""
    import signal, time
    steps, every = 64, ["--save-every", "8"]
    r = subprocess.run(_tok_cli(tmp_path / "ref", steps, every, batch_size=1), capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-2000:]
    killed = tmp_path / "killed"
    p = subprocess.Popen(_tok_cli(killed, steps, every, batch_size=1), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    t0, step = time.time(), 0
    while step < 16:                                                   # let it pass a few checkpoints, then kill it
        assert p.poll() is None, "the run ended before it could be killed: " + p.stderr.read().decode()[-2000:]
        assert time.time() - t0 < 600, "the run is too slow"
        time.sleep(0.1)
        if (killed / "last.pt").exists():
            try: step = load_tokenizer(killed / "last.pt", return_extra=True)[2]["step"]
            except Exception: pass                                     # (a file being replaced)
    p.send_signal(signal.SIGKILL); p.wait(); p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    r = subprocess.run(_tok_cli(killed, steps, every, batch_size=1), capture_output=True, text=True, env=_env())
    assert r.returncode == 0 and "resuming" in r.stdout, r.stdout + r.stderr[-2000:]
    (a, _, ca), (b, _, cb) = load_tokenizer(tmp_path / "ref" / "last.pt", return_extra=True), load_tokenizer(killed / "last.pt", return_extra=True)
    assert ca["step"] == cb["step"] == steps
    sa, sb = a.state_dict(), b.state_dict()
    bad = {k: (sa[k].float() - sb[k].float()).abs().max().item() for k in sa if not torch.equal(sa[k], sb[k])}
    assert not bad, f"weights differ after resume: {bad}"


def test_new_lr_on_resume_applies_and_is_announced(tmp_path):
    "A resumed run given another --lr uses it from the resumed step and says so."
    r = subprocess.run(_tok_cli(tmp_path, 3, ["--lr", "1e-3"]), capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(_tok_cli(tmp_path, 5, ["--lr", "4e-3"]), capture_output=True, text=True, env=_env())
    assert r.returncode == 0 and "lr 0.001 → 0.004" in r.stdout, r.stdout + r.stderr[-2000:]
    from msvar.train import read_log, lr_factor
    rows = read_log(tmp_path / "log.jsonl")
    assert [x["step"] for x in rows] == list(range(5))
    assert abs(rows[3]["lr"] - 4e-3 * lr_factor(3, 5, round(0.02 * 5))) < 1e-12      # the new peak lr, on the 5-step curve


@pytest.mark.parametrize("cli", ["msvar_train_tokenizer", "msvar_finetune_hit", "msvar_train"])
@pytest.mark.parametrize("bad", [["--steps", "0"], ["--steps", "-3"], ["--batch-size", "0"], ["--lr", "nan"], ["--lr", "-1e-3"], ["--lr", "0"]])
def test_training_commands_refuse_bad_values_before_any_work(tmp_path, capsys, cli, bad):
    "Impossible values: one line naming the option, exit status 2, nothing written."
    import importlib
    mod, fn = {"msvar_train_tokenizer": ("cli_train", "train_tokenizer_cli"), "msvar_finetune_hit": ("cli_train", "finetune_hit_cli"),
               "msvar_train": ("cli_train", "train_cli")}[cli]
    if cli == "msvar_finetune_hit" and bad[0] == "--steps": bad = ["--steps1", bad[1], "--steps2", "0"]
    args = {"msvar_train_tokenizer": ["--preset", "test", "--data", str(DATA / "train" / "T91")],
            "msvar_finetune_hit": ["--tokenizer", str(DATA / "tokenizer_small.pt"), "--data", str(DATA / "train" / "T91")],
            "msvar_train": ["--preset", "test", "--tokenizer", str(DATA / "tokenizer_small.pt"), "--data", str(DATA / "train" / "T91")]}[cli]
    try: getattr(importlib.import_module(f"msvar.{mod}"), fn)([*args, "--out", str(tmp_path / "out"), *bad]); code = 0
    except SystemExit as e: code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error:" in err and "Traceback" not in err and bad[0].lstrip("-").split("1")[0] in err.replace("_", "-")
    assert not (tmp_path / "out").exists()


def test_one_checkpoint_format(tmp_path):
    "Tokenizer and HIT files are written and read in the training-checkpoint format (weights + meta with the preset) only."
    import dataclasses
    from msvar.train import load_checkpoint, CKPT_KIND
    from msvar.hit import HITTokenizer, save_hit, load_hit, load_sr_tokenizer
    p = get_preset("test"); torch.manual_seed(0)
    tok = Tokenizer.from_preset(p); hit = HITTokenizer(tok, p)
    for f, save in (("t.pt", lambda f: save_tokenizer(tok, p, f)), ("h.pt", lambda f: save_hit(hit, f))):
        save(tmp_path / f)
        ck = load_checkpoint(tmp_path / f)                                # the one reader
        assert ck["kind"] == CKPT_KIND and ck["meta"]["preset"] == "test" and ck["meta"]["preset_config"]["hr_size"] == p.hr_size
    torch.save(dict(format="msvar-tokenizer-v1", preset=dataclasses.asdict(p), state_dict=tok.state_dict(), step=3), tmp_path / "old_t.pt")
    torch.save(dict(kind="msvar-hit-tokenizer", preset="test", preset_config=dataclasses.asdict(p), model=hit.state_dict()), tmp_path / "old_h.pt")
    t2, p2 = load_tokenizer(tmp_path / "t.pt")
    assert p2 == p and all(torch.equal(a, b) for a, b in zip(tok.state_dict().values(), t2.state_dict().values()))
    h2 = load_hit(tmp_path / "h.pt")
    assert all(torch.equal(a, b) for a, b in zip(hit.state_dict().values(), h2.state_dict().values()))
    assert load_sr_tokenizer(tmp_path / "h.pt", p).preset == p
    with pytest.raises(MsvarError, match="not an msvar tokenizer checkpoint"): load_tokenizer(tmp_path / "old_t.pt")
    with pytest.raises(MsvarError, match="not a HIT tokenizer checkpoint"): load_hit(tmp_path / "old_h.pt")
    assert load_tokenizer(DATA / "tokenizer_small.pt")[1].name == "small"       # the bundled file
    assert load_checkpoint(DATA / "tokenizer_small.pt")["kind"] == CKPT_KIND    # ... in the one format
