"""A photo to four times its size, as a user would run it: msvar beside bicubic at 100 %, with the seams measured.

    python bench/photo.py --image data/images/butterfly.png --out data/demo/photo_compare.jpg --json runs/photo.json

The photo is super-resolved by `upscale` as msvar_sr decodes it (the model file's decoding, class --cls): the model's
own output (no fix) and with msvar_sr's default input fix (`auto`: the fix of the kind `input_kind` sees, chapter 08),
as msvar_sr writes it. No ground truth exists for a
user's photo, so the numbers compare with what the user already has:
- seam ratio: gradient energy on the lines where tiles meet ÷ that of the whole output; bicubic upsampling of the
  same photo on the same lines is the reference (tiling should add nothing to it), and so is the output's own ratio on
  lines between the tiles' (`seam_between`: the tile lines moved by half a tile stride, as many lines, none a tile's:
  a pattern on every input-pixel line raises it as much as the seam ratio, a seam only the latter);
- chroma vs bicubic: mean Lab chroma of the output ÷ that of bicubic upsampling (1: the photo's colours kept);
- ΔE to bicubic after a blur of 2 input pixels: do the colours at a coarse scale stay the photo's?
- tile mark: (output − bicubic) averaged over all tiles, aligned on each tile's own corner, and its spatial std in
  grey levels: content averages away, a mark drawn at the same place in every tile stays.
The figure: the whole input, bicubic ×4 and msvar ×4, then a 100 % crop of each ×4 output (one output pixel per
screen pixel) from the centre.
"""

import argparse
import json
import sys
import time
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from msvar.core import MsvarError, resize, to_uint8, repo_dir
from msvar.files import load_image
from msvar.inference import load_sr_model, upscale, seam_ratio, tile_grid, tiled_side, gaussian_blur, default_model_path
from msvar.inference import DEFAULT_CLASS, DEFAULT_OUTPUT, OutputSettings, finish, input_kind
from msvar.metrics import chroma, delta_e


def tile_mark(out, bic, sh, sw, tile, s):
    "Spatial std (grey levels, RMS over channels) of (output − bicubic) averaged over all tiles in tile coordinates."
    d = (out - bic) * 255
    tiles = [d[:, i * s : (i + tile) * s, j * s : (j + tile) * s] for i in sh for j in sw]
    acc = torch.stack(tiles).mean(0)  # (3, ts, ts)
    return acc.flatten(1).std(1).pow(2).mean().sqrt().item()


def measure(out, bic, x, tile, overlap, s, step):
    "Seam ratio (and bicubic's), tile-locked mark, chroma ratio and coarse ΔE of one output against bicubic of the input."
    sh, sw = tile_grid(*x.shape[-2:], tile, overlap, step)  # upscale's tiles
    half = (tile - overlap) // 2  # LR px: the tile lines moved half a stride, onto lines no tile ends at
    between = lambda st, side: [min(a + half, tiled_side(side, tile, step) - tile) for a in st]
    blur = lambda t: gaussian_blur(t, 2.0 * s).clamp(0, 1)
    return dict(
        seam=seam_ratio(out, sh, sw, tile, s),
        seam_bicubic=seam_ratio(bic, sh, sw, tile, s),
        seam_between=seam_ratio(out, between(sh, x.shape[-2]), between(sw, x.shape[-1]), tile, s),
        tile_mark=tile_mark(out, bic, sh, sw, tile, s),
        chroma_vs_bicubic=(chroma(out) / chroma(bic)).item(),
        coarse_delta_e=delta_e(blur(out), blur(bic)).item(),
    )


def figure(x, bic, outs, path, crop=256):
    "Top: input (nearest ×4), bicubic ×4, msvar ×4 side by side; bottom: the central crop×crop pixels of each at 100 %."
    H4, W4 = bic.shape[-2:]
    top = [resize(x, (H4, W4), "nearest"), bic] + list(outs.values())
    i, j = (H4 - crop) // 2, (W4 - crop) // 2
    bottom = [t[:, i : i + crop, j : j + crop] for t in top]
    scale = crop / H4  # the top row shrunk to the crops' height
    top = [resize(t, (crop, round(W4 * scale)), "area").clamp(0, 1) for t in top]
    row = lambda ts: np.concatenate(
        [np.pad(to_uint8(t), ((4, 4), (4, 4), (0, 0)), constant_values=255) for t in ts], 1
    )
    Image.fromarray(np.concatenate([row(top), row(bottom)], 0)).save(path, quality=90)


def parser() -> argparse.ArgumentParser:
    "The options."
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=str(repo_dir() / "data" / "images" / "butterfly.png"))
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument(
        "--cls", type=int, default=DEFAULT_CLASS, help="the class the photo is decoded as (msvar_sr --class)"
    )
    ap.add_argument(
        "--overlap", type=int, default=None, help="the tiles' overlap in LR px (msvar_sr's default)"
    )
    ap.add_argument("--out", default=None, help="the comparison figure (JPEG)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=None)
    return ap


def main(argv=None):
    a = parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_sr_model(a.model, device="cpu")
    x = load_image(a.image)
    tile = model.preset.lr_size
    output = OutputSettings(scales=(2, 4), cls=a.cls, fix="none", overlap=a.overlap)
    overlap = output.tile_overlap(tile)
    t0 = time.perf_counter()
    raw = upscale(x, model, output)  # the model's decoding
    fixed = finish(raw, x, DEFAULT_OUTPUT)  # msvar_sr's input fix
    secs = time.perf_counter() - t0
    rows = {}
    for s in (2, 4):
        bic = resize(x, (x.shape[-2] * s, x.shape[-1] * s), "bicubic").clamp(0, 1)
        rows[f"bicubic x{s}"] = measure(bic, bic, x, tile, overlap, s, model.tile_step)
        rows[f"msvar x{s}"] = measure(fixed[s], bic, x, tile, overlap, s, model.tile_step)
        rows[f"msvar x{s}, no fix"] = measure(raw[s], bic, x, tile, overlap, s, model.tile_step)
    w, h = x.shape[-1], x.shape[-2]
    print(
        f"{Path(a.image).name} {w}×{h} → ×4 {w * 4}×{h * 4}, class {a.cls}, overlap {overlap} LR px, looks "
        f"{input_kind(x)}; one upscale run in {secs:.0f} s"
    )
    for k, v in rows.items():
        print(f"{k:28s} " + "  ".join(f"{m} {val:.3f}" for m, val in v.items()))
    if a.out:
        bic4 = resize(x, (h * 4, w * 4), "bicubic").clamp(0, 1)
        figure(x, bic4, {"msvar": fixed[4]}, a.out)
        print(f"wrote {a.out}")
    if a.json:
        Path(a.json).write_text(json.dumps(dict(image=Path(a.image).name, cls=a.cls, kind=input_kind(x), rows=rows), indent=1))
    return rows


if __name__ == "__main__":
    try:
        main()
    except MsvarError as e:
        print(f"photo: error: {e}", file=sys.stderr)
        sys.exit(2)
