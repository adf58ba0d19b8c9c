"""Large images without a grid: tile overlap and the colour fix, measured on whole images (chapter 08, chapter 11).

    python bench/tiling.py --model data/msvar_small.safetensors --data VAL_HR_FOLDER -n 20 --json out.json
    python bench/tiling.py --model data/msvar_small.safetensors --data VAL_HR_FOLDER -n 12 --overlap 2 4 6 8 \
        --sigma 0 0.5 1 2 4 --json out.json --per-image out.csv

Each HR image's centre crop of --hr-size pixels is degraded (Real-ESRGAN, seeded) to a quarter of its side, so that
the LR input is several tiles wide, and super-resolved by `upscale` with each --overlap; every colour-fix σ
(input pixels; 0: none) is then applied as `upscale` applies it. Scores against the HR crop resized to each scale:
PSNR-RGB, PSNR-Y, ΔE (CIEDE2000), chroma kept, LPIPS, and the seam ratio (gradient energy on the lines where tiles
meet ÷ that of the whole image; bicubic on the same lines is the reference: tiling should add nothing to it).
"""

import argparse, json, sys, time
from pathlib import Path
import pandas as pd
import torch
from msvar.core import MsvarError, resize
from msvar.files import list_images
from msvar.data import degrade
from msvar.hit import center_crops
from msvar.inference import (
    load_sr_model,
    upscale,
    colour_fix,
    seam_ratio,
    tile_grid,
    SOFT_TAU,
    OutputSettings,
)
from msvar.var import Decoding
from msvar.metrics import psnr, delta_e, chroma, lpips_distance


def score(out, target, lr_hw, tile, overlap, s, step):
    "One output image against its target: a dict of scores."
    sh, sw = tile_grid(*lr_hw, tile, overlap, step)  # upscale's tiles
    return dict(
        psnr_rgb=psnr(out, target, y_channel=False).item(),
        psnr_y=psnr(out, target).item(),
        delta_e=delta_e(out, target).item(),
        chroma=chroma(out).item(),
        chroma_ref=chroma(target).item(),
        lpips=lpips_distance(out, target).item(),
        seam=seam_ratio(out, sh, sw, tile, s),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", nargs="+", required=True, help="HR image folders")
    ap.add_argument("-n", type=int, default=20, help="images (the first n)")
    ap.add_argument("--hr-size", type=int, default=256)
    ap.add_argument(
        "--overlap", type=int, nargs="+", default=[4, 8], help="tile overlaps to compare (LR pixels)"
    )
    ap.add_argument(
        "--sigma", type=float, nargs="+", default=[0, 0.5, 1, 2], help="colour-fix σ in LR pixels (0: none)"
    )
    ap.add_argument(
        "--soft", type=float, default=SOFT_TAU, help="soft decoding temperature (default: msvar_sr's)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--per-image", default=None, help="also write every image's scores to this CSV file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_sr_model(a.model, device="cpu")
    tile, lr_side = model.preset.lr_size, a.hr_size // 4
    files = list_images([Path(d) for d in a.data])[: a.n]
    hr = center_crops(files, a.hr_size)
    lr, _ = degrade(hr, lr_size=lr_side, generator=torch.Generator().manual_seed(a.seed), p_bilinear=0.0)
    rows, t0 = [], time.perf_counter()
    for i in range(len(hr)):
        targets = {
            s: resize(hr[i], a.hr_size * s // 4, "bicubic").clamp(0, 1) if s != 4 else hr[i]
            for s in (1, 2, 4)
        }
        bic = {s: lr[i] if s == 1 else resize(lr[i], lr_side * s, "bicubic").clamp(0, 1) for s in (1, 2, 4)}
        for ov in a.overlap:
            for s in (1, 2, 4):  # bicubic, its seams on the lines of each overlap's tiles
                rows.append(
                    dict(
                        image=i,
                        method="bicubic",
                        overlap=ov,
                        sigma=0,
                        scale=s,
                        **score(bic[s], targets[s], (lr_side, lr_side), tile, ov, s, model.tile_step),
                    )
                )
        for ov in a.overlap:
            raw = upscale(
                lr[i], model, OutputSettings((1, 2, 4), fix="none", overlap=ov), Decoding(tau=a.soft)
            )
            for sg in a.sigma:
                for s in (1, 2, 4):
                    out = raw[s] if sg == 0 else colour_fix(raw[s], bic[s], sg * s)
                    rows.append(
                        dict(
                            image=i,
                            method="msvar",
                            overlap=ov,
                            sigma=sg,
                            scale=s,
                            **score(out, targets[s], (lr_side, lr_side), tile, ov, s, model.tile_step),
                        )
                    )
        print(f"image {i + 1}/{len(hr)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    if a.per_image:
        df.to_csv(a.per_image, index=False)
    g = df.groupby(["method", "overlap", "sigma", "scale"])
    t = g[["psnr_rgb", "psnr_y", "delta_e", "lpips", "seam"]].mean()
    t["chroma_kept"] = g.chroma.mean() / g.chroma_ref.mean()
    t = t.round(3)
    print(f"{len(hr)} images, {a.hr_size}-px HR crops, LR {lr_side} px = tiles of {tile}; soft τ = {a.soft}")
    print(t.to_string())
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                dict(
                    n=len(hr),
                    data=[str(Path(d).name) for d in a.data],
                    hr_size=a.hr_size,
                    soft=a.soft,
                    table=t.reset_index().to_dict("records"),
                ),
                indent=1,
            )
        )
    return t


if __name__ == "__main__":
    try:
        main()
    except MsvarError as e:
        print(f"tiling: error: {e}", file=sys.stderr)
        sys.exit(2)
