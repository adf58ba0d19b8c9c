"""Writes tests/ref/degrade_golden.png and tests/ref/degrade_golden.json: the LRs that `msvar.data.degrade` makes from
four fixed 64-px HR crops of the bundled images under two seeds, with a config whose every range differs from the
published one, and every value it drew (`return_info=True`). tests/test_data.py checks a fresh run against them, so a
pipeline step that ignores its config, or computes a result and drops it, fails. Rerun this only when the degradation
is *meant* to change:

    python tests/ref/make_degrade_ref.py
"""
import json, sys
from pathlib import Path
import torch

HERE = Path(__file__).parent
PNG, JSON = HERE / "degrade_golden.png", HERE / "degrade_golden.json"
SEEDS = (0, 1)
CONFIG = dict(sinc_prob=0.3, blur_sigma=(1.0, 1.2), blur_sigma2=(0.4, 0.5), resize_range=(0.5, 1.2),
              resize_range2=(0.6, 1.1), noise_range=(3.0, 5.0), noise_range2=(8.0, 10.0),
              poisson_scale_range=(0.5, 0.6), poisson_scale_range2=(1.1, 1.2),
              jpeg_range=(50, 60), jpeg_range2=(70, 80))


def hr_batch() -> torch.Tensor:
    "(4, 3, 64, 64): the 64-px crop at (64, 64) of each bundled image."
    from msvar.core import bundled_images
    from msvar.files import load_image
    return torch.stack([load_image(p)[:, 64:128, 64:128] for p in bundled_images()])


def run() -> tuple:
    "(LR tile (3, 16·len(SEEDS), 64): a row of four 16-px LRs per seed, [params of each LR]) from this checkout."
    from msvar.data import DegradationConfig, degrade
    rows, params = [], []
    for s in SEEDS:
        g = torch.Generator().manual_seed(s)
        lr, _, info = degrade(hr_batch(), DegradationConfig(**CONFIG), 16, g, p_bilinear=0.0, return_info=True)
        rows.append(torch.cat(list(lr), dim=-1))
        params += [i["params"] for i in info]
    return torch.cat(rows, dim=-2), params


if __name__ == "__main__":
    from msvar.files import save_image
    tile, params = run()
    save_image(tile, PNG, overwrite=True)
    JSON.write_text(json.dumps(dict(seeds=SEEDS, config=CONFIG, params=params), indent=1) + "\n")
    print(f"wrote {PNG.name} {tuple(tile.shape)} and {JSON.name} ({len(params)} LRs)", file=sys.stderr)
