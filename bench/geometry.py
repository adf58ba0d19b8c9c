"""What a finer `small` geometry would cost: sequence length, the ×1 latent grid, and the VAR's training step time,
as ratios to the `small` preset measured in one run (chapter 11).

    python bench/geometry.py --threads 2

The ×1 output is decoded from a (s_1·ρ_L)² latent grid: 2 × 2 at the `small` preset (downsampling 8, 64-px HR), which
caps what any VAR can reconstruct of a 16-px image. Halving the tokenizer's downsampling (4 instead of 8) gives ×1 a
4 × 4 grid; the candidate below keeps the three stages at ρ = 4, 8, 16. The step is bench/train_step.py's `bench` (random
tokens, CE + one-pass DPO, backward, clipping, AdamW) in bf16 where the CPU has it.
"""
import argparse, dataclasses, json
from pathlib import Path
import torch
from msvar.core import get_preset
from msvar.core import resolve_precision
from train_step import bench                   # bench/ is on the path of a script run from it: the same training step

CANDIDATES = {"small (downsample 8)": dict(),
              "downsample 4": dict(downsample=4, patch_nums=(1, 2, 3, 4, 6, 8, 10, 12, 16))}


def preset_for(name: str):
    "The small preset with a candidate's geometry (for downsampling 4, a tokenizer with one downsampling level fewer)."
    over = CANDIDATES[name]
    p = get_preset("small")
    if not over: return p
    tok = dataclasses.replace(p.tokenizer, ch_mult=(1, 2, 4))      # two downsamplings: ×4
    return dataclasses.replace(p, tokenizer=tok, **over)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device("cpu")
    prec = resolve_precision("auto", dev)
    rows = []
    for name in CANDIDATES:
        p = preset_for(name)
        rows.append((name, p, bench(p, a.batch, dev, prec, a.steps)[0], p.n_image_tokens + p.n_prefix_tokens))
    base = rows[0][2]
    print(f"VAR training step, batch {a.batch}, {prec}, {torch.get_num_threads()} thread(s)")
    for name, p, sec, seq in rows:
        side1 = p.stage_sides[0]
        print(f"{name:22s} ρ = {p.patch_nums}: {seq} tokens (prefix {p.n_prefix_tokens}), ×1 from a {side1}×{side1} grid; "
              f"{sec:.2f} s/step = {sec / base:.1f}× small")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(batch=a.batch, precision=prec, threads=torch.get_num_threads(), rows=[
            dict(name=n, patch_nums=p.patch_nums, tokens=seq, x1_grid=p.stage_sides[0], seconds=sec, ratio=sec / base)
            for n, p, sec, seq in rows]), indent=1))


if __name__ == "__main__":
    main()
