"""The `paper` preset's commands, end to end on the CPU, for one training step: VAR's tokenizer file → msvar_import_tokenizer →
msvar_train --preset paper --init-var var_d16.pth --steps 1. It proves that the GPU recipe in the README runs as written
(with the real key names and shapes of the public checkpoints), not that it trains well.

No checkpoint is downloaded: both files are built by `msvar.devtools.write_fake_public_checkpoints` with the exact keys and shapes that
`data/var_keys.json` lists for `vae_ch160v4096z32.pth` and `var_d16.pth`, and random values.

Slow (measured with `/usr/bin/time -v` around the command below: 11.5 min of CPU time, 14.1 GB peak RSS; 314M parameters with AdamW, a 4476-token sequence,
then sampling 4 images at 512 px), so it only runs with
MSVAR_SLOW=1:

    MSVAR_SLOW=1 pytest -q tests/test_paper_step.py -s
"""
import json, math, os, subprocess, sys, time
from pathlib import Path
import pytest
import torch

slow = pytest.mark.skipif(os.environ.get("MSVAR_SLOW") != "1", reason="slow (paper-preset step on CPU): set MSVAR_SLOW=1")

REPO = Path(__file__).resolve().parents[1]
from msvar.core import data_dir
KEYS = data_dir() / "var_keys.json"                                # the bundled key manifest (data/README.md)


def test_manifest_is_bundled():
    "Fast: the slow test below reads its key manifest from the repository itself."
    shapes = json.loads(KEYS.read_text())
    assert KEYS.is_relative_to(REPO) and {len(shapes["vae_ch160v4096z32.pth"]), len(shapes["var_d16.pth"])} == {324, 220}


from msvar.devtools import write_fake_public_checkpoints     # builds both files from the same manifest


def _run(args, **kw):
    t0 = time.time()
    r = subprocess.run(args, capture_output=True, text=True, cwd=REPO, **kw)
    print(f"$ {' '.join(map(str, args))}\n  rc {r.returncode} in {time.time() - t0:.0f} s\n{r.stdout[-2000:]}{r.stderr[-3000:]}")
    return r


@slow
def test_paper_preset_one_step(tmp_path):
    # VAR's tokenizer file (our paper tokenizer's state dict, checked against VAR's keys and shapes) and VAR-d16's (random values)
    write_fake_public_checkpoints(tmp_path)
    r = _run(["msvar_import_tokenizer", tmp_path / "vae_ch160v4096z32.pth", "-o", tmp_path / "tokenizer.pt"])
    assert r.returncode == 0
    out = tmp_path / "var"
    r = _run(["msvar_train", "--preset", "paper", "--data", REPO / "data" / "images", "--tokenizer", tmp_path / "tokenizer.pt",
              "--init-var", tmp_path / "var_d16.pth", "--out", out, "--steps", "1", "--batch-size", "1", "--ckpt-every", "1",
              "--no-progress"], env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert r.returncode == 0
    assert "initialised from" in r.stdout and "preset 'paper'" in r.stdout
    rows = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and math.isfinite(rows[0]["loss"]) and math.isfinite(rows[0]["dpo"])
    assert 0 < rows[0]["ce"] < 2 * math.log(4096)
    assert (out / "last.pt").exists() and (out / "samples" / "step_000001.png").exists()
