"""Mean signed error maps: where a model draws the same thing in every output (chapter 11).

    python bench/error_maps.py --model before=OLD.pt after=data/msvar_small.safetensors --data TEST/Set14 TEST/BSD100 \\
        -o data/msvar_small_train/error_maps.png --json data/msvar_small_train/quality/error_maps.json

For each model (decoded as msvar_sr decodes, with and without its colour fix) and bicubic, the signed error
(output − target, grey levels) is averaged over all crops at ×1, ×2 and ×4. Random errors cancel; an error drawn at
the same place in every output (a fleck, a frame) stays. Each map is shown as mid-grey ± 24 grey levels per channel
(so a colour in the map is a colour cast at that place); its spatial std (RMS over channels) is the fixed pattern.
"""
import argparse, json, sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from msvar.core import MsvarError, get_preset
from msvar.evaluate import load_pairs, baseline_outputs, model_outputs
from msvar.hit import stage_image
from msvar.inference import load_sr_model, COLOUR_SIGMA, SOFT_TAU, OutputSettings, InputFix
from msvar.var import Decoding
from dataclasses import replace
from msvar.metrics import mean_error_map, fixed_pattern

RANGE = 24.0


def to_tile(m: torch.Tensor, side: int) -> np.ndarray:
    "(3, h, w) mean error in grey levels → (side, side, 3) uint8 picture, mid-grey ± RANGE, nearest-neighbour enlarged."
    x = (0.5 + m / (2 * RANGE)).clamp(0, 1)
    x = torch.nn.functional.interpolate(x[None], size=(side, side), mode="nearest")[0]
    return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", required=True, help="NAME=PATH of model files")
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("-n", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("-o", "--out", required=True, help="PNG figure")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    preset = get_preset("small")
    parts = [load_pairs(d, preset, a.n, a.seed) for d in a.data]
    lr, hr, cls = (torch.cat([p[k] for p in parts]) for k in ("lr", "hr", "cls"))
    targets = [stage_image(hr, preset, n) for n in range(3)]
    rows = {"bicubic": baseline_outputs(lr, preset, "bicubic")}
    for spec in a.model:
        name, _, path = spec.partition("=")
        model = load_sr_model(path, device="cpu").float()
        out = OutputSettings(cls=int(cls[0]), batch_size=16)
        rows[f"{name}, no colour fix"] = model_outputs(model, lr, replace(out, fix="none"), Decoding(tau=SOFT_TAU))
        rows[name] = model_outputs(model, lr, replace(out, fix=InputFix(COLOUR_SIGMA)), Decoding(tau=SOFT_TAU))
    side, pad = 128, 4
    canvas, numbers = [], {}
    for name, outs in rows.items():
        numbers[name] = [fixed_pattern(y.clamp(0, 1), t) for y, t in zip(outs, targets)]
        tiles = [to_tile(mean_error_map(y.clamp(0, 1), t), side) for y, t in zip(outs, targets)]
        canvas.append(np.concatenate([np.pad(t, ((pad, pad), (pad, pad), (0, 0)), constant_values=255) for t in tiles], 1))
        print(f"{name:28s} fixed pattern ×1 / ×2 / ×4: " + " / ".join(f"{v:.1f}" for v in numbers[name]))
    Image.fromarray(np.concatenate(canvas, 0)).save(a.out)
    print(f"wrote {a.out}: rows {list(rows)}; columns ×1, ×2, ×4; mid-grey ± {RANGE:g} grey levels")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(n=len(hr), data=[Path(d).name for d in a.data], rows=list(rows),
                                                fixed_pattern=numbers, range=RANGE), indent=1))


if __name__ == "__main__":
    try: main()
    except MsvarError as e: print(f"error_maps: error: {e}", file=sys.stderr); sys.exit(2)
