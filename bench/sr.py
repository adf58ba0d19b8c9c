"""Benchmark: super-resolution speed of the `small` preset with `upscale` (tiling + KV-cache sampling).

Reports seconds per 128→512 image (a 128-px input is tiled into 16-px LR tiles) and tiles/s for a
1024×768 input, in one run. Weights are random (speed does not depend on training) unless --model
points to a trained bundle.

    python bench/sr.py [--model data/msvar_small.safetensors] [--batch-size 32] [--skip-large] [--decode soft1 greedy]

Each decoding setting (chapter 11's strings; default: msvar_sr's soft decoding, then greedy) is timed on the same input.
"""
import argparse, time
import torch
from msvar.core import get_preset
from msvar.inference import SRModel, upscale, tile_starts, load_sr_model, SOFT_TAU, OutputSettings, DEFAULT_OUTPUT
from msvar.quality import parse_decode

def build(model_path):
    if model_path: return load_sr_model(model_path, device="cpu")
    from msvar.tokenizer import Tokenizer
    from msvar.var import SRVAR
    from msvar.hit import HITTokenizer
    p = get_preset("small"); torch.manual_seed(0)
    return SRModel(HITTokenizer(Tokenizer.from_preset(p), p), SRVAR.from_preset(p)).eval()

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--skip-large", action="store_true", help="skip the 1024×768 input")
    ap.add_argument("--decode", nargs="+", default=[f"soft{SOFT_TAU}", "greedy"], help="decoding settings to time")
    a = ap.parse_args()
    m = build(a.model); tile = m.preset.lr_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {m.preset.name} (LR tile {tile}px), batch {a.batch_size}")
    for (h, w) in [(128, 128)] + ([] if a.skip_large else [(768, 1024)]):
        ov = DEFAULT_OUTPUT.tile_overlap(tile)
        n = len(tile_starts(h, tile, ov)) * len(tile_starts(w, tile, ov))
        x = torch.rand(3, h, w)
        for d in a.decode:
            t0 = time.perf_counter()
            upscale(x, m, OutputSettings(batch_size=a.batch_size), parse_decode(d, seed=0)["decoding"])
            dt = time.perf_counter() - t0
            print(f"{w}×{h} input → {4 * w}×{4 * h}, {d}: {n} tiles, {dt:.1f} s per image, {n / dt:.1f} tiles/s")

if __name__ == "__main__":
    main()
