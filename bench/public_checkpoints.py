"""Stand-ins for the public VAR checkpoints: files with exactly the keys and shapes of `vae_ch160v4096z32.pth` (VAR's
tokenizer) and `var_d16.pth` (VAR-d16), with random values. Nothing is downloaded: the key names and shapes come from
`data/var_keys.json` (generated from the reference modules; no weights). Used by `tests/test_paper_step.py` and
`bench/gpu_check.py` to run the README's `paper`-preset recipe (`msvar_import_tokenizer`, `msvar_train --init-var`).
"""
import json
from pathlib import Path
import torch

REPO = Path(__file__).resolve().parents[1]
KEYS = REPO / "data" / "var_keys.json"
VAE_FILE, VAR_FILE = "vae_ch160v4096z32.pth", "var_d16.pth"


def public_shapes() -> dict:
    "{file name: {key: shape}} of the two public checkpoints."
    return {k: v for k, v in json.loads(KEYS.read_text()).items() if not k.startswith("_")}


def write_fake_public_checkpoints(out_dir, seed: int = 0) -> tuple:
    "Write OUT/vae_ch160v4096z32.pth (our `paper` tokenizer's state dict, checked key by key against VAR's) and OUT/var_d16.pth (random)."
    from msvar.tokenizer import Tokenizer
    shapes, out = public_shapes(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    sd = Tokenizer.from_preset("paper").state_dict()
    got, want = {k: list(v.shape) for k, v in sd.items()}, {k: list(s) for k, s in shapes[VAE_FILE].items()}
    if got != want:
        bad = sorted(set(got) ^ set(want)) + [k for k in got if k in want and got[k] != want[k]]
        raise AssertionError(f"the paper tokenizer's state dict differs from {VAE_FILE}'s keys/shapes: {bad[:8]}")
    torch.save(sd, out / VAE_FILE); del sd
    g = torch.Generator().manual_seed(seed)
    torch.save({k: torch.randn(s, generator=g) * 0.02 for k, s in shapes[VAR_FILE].items()}, out / VAR_FILE)
    return out / VAE_FILE, out / VAR_FILE
