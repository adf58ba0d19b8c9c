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
    with pytest.raises(MsvarError): q.idx_to_fhat([idx[1]])


def test_train_cli_writes_and_resumes(tmp_path):
    exe = Path(sys.executable).parent / "msvar_train_tokenizer"
    assert subprocess.run([str(exe), "--help"], capture_output=True).returncode == 0
    args = [str(exe), "--preset", "test", "--data", str(DATA / "train" / "T91"), "--out", str(tmp_path), "--batch-size", "2", "--lpips-weight", "0", "--threads", "1"]
    r = subprocess.run(args + ["--steps", "3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "last.pt").exists() and (tmp_path / "loss.png").exists()
    r = subprocess.run(args + ["--steps", "4"], capture_output=True, text=True)
    assert r.returncode == 0 and "resuming" in r.stdout, r.stdout + r.stderr
    _, _, ck = load_tokenizer(tmp_path / "last.pt", return_extra=True)
    assert ck["step"] == 4
    r = subprocess.run([str(exe), "--preset", "test", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 1 and "error:" in r.stderr
