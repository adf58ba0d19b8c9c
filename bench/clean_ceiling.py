"""What limits clean photos (chapter 11, section 7): the shipped model beside its own HIT tokenizer's ceiling on the
clean protocol of `bench/user_photos.py`, and the defects that could cost PSNR (shift, tint, borders, tile seams).

    python bench/clean_ceiling.py DATA/train/BSD200 --last 20 -n 8 --out data/msvar_small_train/quality/clean_ceiling.csv

(the first 8 of the last 20 images of BSD200 by name: the validation split, `-n 8` of `bench/user_photos.py`'s clean
protocol.)

Rows, per scale (×2: the ÷2 input, ×4: the ÷4 input, each output against the HR):
- bicubic; `model` (class --cls, decoded as the model file says) as `msvar_sr` writes it (colour fix at COLOUR_SIGMA)
  and its own output (`no fix`);
- `ceiling`: the HR itself, tiled as `upscale` tiles the input (16-px LR tiles, the default overlap, the same blend),
  each tile tokenized by the model's HIT tokenizer (Algorithm 1: the stage images of the tile, the tokens of steps
  1…k_n) and decoded by the stage decoder of that scale: the best the VAR can output, with and without the colour fix;
- `autoencoder`: the same with the quantizer left out (the stage decoder of the tile's encoder latent); `autoencoder,
  whole image`: the whole HR encoded and decoded in one pass (no tiles, GroupNorm's statistics over the whole image);
- `fit`, for the raw model and the raw ceiling: the PSNR gain each defect would be worth, on the interior (a 2·s px
  margin left out): best shift of the HR over {−1, −½, 0, ½, 1}² px (bicubic resampling), per-channel mean colour
  offset removed, per-channel gain and offset fitted; the mean colour offset in 8-bit levels; PSNR of the tile-overlap
  zones minus that of the rest, of the image border (2·s px) minus the interior; PSNR of the low band alone (both
  blurred, σ = s px) and the share of the error energy in the high band; `hb_lambda`: the weight λ* that fits the HR
  best as bicubic's low band + λ·the output's high band (the colour fix's split, σ = COLOUR_SIGMA input px; the fix
  keeps λ = 1; 0: the high band is noise) and `hb_gain`, its PSNR gain over λ = 1.
- `best k DCT terms per tile (oracle)`: a reference for the token budget: each output tile's area coded by as many
  real-valued DCT coefficients as the tokens of its stage (1+4+9+16 = 30 at ×2, 155 at ×4, × (4/3)² for the tiles'
  overlap), the largest ones, chosen with the HR at hand.
- at ×2 also `x4 stage ÷2`: the ÷2 input taken to ×4 by the model (its ×4 stage: 155 tokens per tile, not 30) and
  resized to the HR's size (bicubic, antialiased); its ceiling: the HR resized ×2, tokenized and decoded at ×4, ÷2.
A last table: flat grey inputs (0.25, 0.5, 0.75) through the model (raw) and through the tokenizer.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from user_photos import bicubic_up, hr_long_side, scores  # noqa: E402

from msvar.core import resize, to_signed, to_unit  # noqa: E402
from msvar.files import list_images, load_image  # noqa: E402
from msvar.hit import encode_any  # noqa: E402
from msvar.inference import COLOUR_SIGMA, OutputSettings, blend_window, colour_fix_scales, tile_starts  # noqa: E402
from msvar.inference import DEFAULT_OUTPUT, default_model_path, gaussian_blur, load_sr_model, upscale  # noqa: E402
from msvar.lpips import get_lpips  # noqa: E402
from msvar.metrics import quantize_255  # noqa: E402

SHIFTS = (-1.0, -0.5, 0.0, 0.5, 1.0)
OPPONENT = torch.tensor([[1.0, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=torch.float64)
OPPONENT = OPPONENT / OPPONENT.norm(dim=1, keepdim=True)  # an orthonormal colour basis: its squared error is RGB's


def dct_matrix(n: int) -> torch.Tensor:
    "The orthonormal DCT-II matrix (n, n), float64."
    k, i = torch.arange(n, dtype=torch.float64)[:, None], torch.arange(n, dtype=torch.float64)[None]
    d = torch.cos(math.pi * (i + 0.5) * k / n) * math.sqrt(2 / n)
    d[0] /= math.sqrt(2)
    return d


def best_terms(hr: torch.Tensor, t: int, k: int) -> torch.Tensor:
    """An oracle code of an image (3, H, W) at a token budget: each t×t tile (no overlap, replicated past the edges)
    kept as its k largest DCT coefficients (2-D DCT of each opponent colour channel), real-valued, chosen knowing the
    HR: far more than k tokens of a 512-code vocabulary can carry, though over a fixed basis rather than a learned one."""
    H, W = hr.shape[-2:]
    x = torch.einsum("cd,dhw->chw", OPPONENT, F.pad(hr[None].double(), (0, -W % t, 0, -H % t), mode="replicate")[0])
    d = dct_matrix(t)
    c = d @ x.unfold(1, t, t).unfold(2, t, t) @ d.T  # (3, nh, nw, t, t)
    flat = c.permute(1, 2, 0, 3, 4).flatten(2)
    flat = flat * (flat.abs() >= flat.abs().topk(k, dim=-1).values[..., -1:])
    y = d.T @ flat.unflatten(2, (3, t, t)).permute(2, 0, 1, 3, 4) @ d
    y = torch.einsum("dc,dhw->chw", OPPONENT, y.permute(0, 1, 3, 2, 4).flatten(1, 2).flatten(2, 3))
    return y[:, :H, :W].float().clamp(0, 1)


@torch.no_grad()
def ceiling_tiles(hit, x: torch.Tensor, n: int) -> tuple:
    """(quantized, unquantized) stage-n decodings of HR tiles x (B, 3, S, S), S = stage n's size: Algorithm 1 on the
    tile's stage images (x resized to each earlier stage's size), then stage n's decoder."""
    p, tok, idx = hit.preset, hit.tok, []
    for m in range(n + 1):
        Z = encode_any(tok, to_signed(resize(x, p.stage_sizes[m], "bicubic"))).float()
        idx, f_hat = tok.quantize.quantize_grid(Z, given=idx, upto=p.stage_ends[m])
    return to_unit(hit.decode_stage(f_hat, n)), to_unit(hit.decode_stage(Z, n))


@torch.no_grad()
def ceiling(model, hr: torch.Tensor, s: int, batch: int = 16) -> tuple:
    "(quantized, unquantized) ceiling of an HR image (3, H, W) at ×s, tiled and blended as `upscale` does (H, W ≥ tile)."
    lt = model.preset.lr_size
    t, ov, n = lt * s, DEFAULT_OUTPUT.tile_overlap(lt), model.scales.index(s)
    h, w = hr.shape[-2] // s, hr.shape[-1] // s
    boxes = [(i, j) for i in tile_starts(h, lt, ov) for j in tile_starts(w, lt, ov)]
    acc = [torch.zeros_like(hr), torch.zeros_like(hr)]
    den, win = torch.zeros(1, *hr.shape[-2:]), blend_window(t, ov * s)
    for b in range(0, len(boxes), batch):
        chunk = boxes[b : b + batch]
        outs = ceiling_tiles(model.hit, torch.stack([hr[:, i * s : i * s + t, j * s : j * s + t] for i, j in chunk]), n)
        for k, (i, j) in enumerate(chunk):
            for a, y in zip(acc, outs):
                a[:, i * s : i * s + t, j * s : j * s + t] += y[k] * win
            den[:, i * s : i * s + t, j * s : j * s + t] += win
    return tuple((a / den).clamp(0, 1) for a in acc)


def overlap_mask(H: int, W: int, s: int, lt: int = 16) -> torch.Tensor:
    "(H, W) bool: the output pixels that two tiles share (the blend zones of `upscale`'s tiling)."
    cover = torch.zeros(H, W)
    ov = DEFAULT_OUTPUT.tile_overlap(lt)
    for i in tile_starts(H // s, lt, ov):
        for j in tile_starts(W // s, lt, ov):
            cover[i * s : (i + lt) * s, j * s : (j + lt) * s] += 1
    return cover > 1


def shifted(x: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    "x (3, H, W) sampled at (y + dy, x + dx), bicubic, borders replicated (exact at integer shifts)."
    H, W = x.shape[-2:]
    ys = (torch.arange(H) + dy + 0.5) / H * 2 - 1
    xs = (torch.arange(W) + dx + 0.5) / W * 2 - 1
    grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], -1)[None]
    return F.grid_sample(x[None], grid, mode="bicubic", padding_mode="border", align_corners=False)[0].clamp(0, 1)


def mse_db(a: torch.Tensor, b: torch.Tensor, mask=None) -> float:
    "PSNR in dB of 8-bit-quantized images (3, H, W), over `mask` (H, W) if given."
    d = ((quantize_255(a) - quantize_255(b)) ** 2).mean(0)
    m = d[mask].mean() if mask is not None else d.mean()
    return (10 * torch.log10(255.0**2 / m)).item()


def defects(out: torch.Tensor, hr: torch.Tensor, s: int, bic: torch.Tensor) -> dict:
    """What each defect would be worth in PSNR (dB) on the interior, where the error sits, and what the output's high
    band (above the colour fix's σ) adds to bicubic's low band: its best weight λ* (0: noise, 1: as the fix keeps it)."""
    H, W = hr.shape[-2:]
    m = 2 * s
    inner = torch.zeros(H, W, dtype=torch.bool)
    inner[m:-m, m:-m] = True
    base = mse_db(out, hr, inner)
    by_shift = {(dy, dx): mse_db(out, shifted(hr, dy, dx), inner) for dy in SHIFTS for dx in SHIFTS}
    (dy, dx), best = max(by_shift.items(), key=lambda kv: kv[1])
    off = (out - hr)[:, inner].mean(1)  # per-channel mean offset
    o, r = out[:, inner], hr[:, inner]
    gain = ((o - o.mean(1, keepdim=True)) * (r - r.mean(1, keepdim=True))).sum(1) / (o - o.mean(1, True)).pow(2).sum(1)
    affine = (gain[:, None, None] * (out - o.mean(1)[:, None, None]) + r.mean(1)[:, None, None]).clamp(0, 1)
    low = lambda x: gaussian_blur(x, s)
    e, el = (out - hr).pow(2).sum(), (low(out) - low(hr)).pow(2).sum()
    ovm = overlap_mask(H, W, s)
    lo, hi = gaussian_blur(bic, COLOUR_SIGMA * s), out - gaussian_blur(out, COLOUR_SIGMA * s)
    lam = ((hr - lo) * hi)[:, inner].sum() / hi[:, inner].pow(2).sum()
    return dict(
        shift_dy=dy,
        shift_dx=dx,
        shift_gain=best - base,
        tint_r=off[0].item() * 255,
        tint_g=off[1].item() * 255,
        tint_b=off[2].item() * 255,
        detint_gain=mse_db((out - off[:, None, None]).clamp(0, 1), hr, inner) - base,
        affine_gain=mse_db(affine, hr, inner) - base,
        gain_r=gain[0].item(),
        gain_g=gain[1].item(),
        gain_b=gain[2].item(),
        seam_minus_rest=mse_db(out, hr, ovm & inner) - mse_db(out, hr, ~ovm & inner),
        border_minus_inner=mse_db(out, hr, ~inner) - base,
        psnr_low=mse_db(low(out), low(hr)),
        high_band_share=((e - el) / e).item() if e > 0 else float("nan"),
        hb_lambda=lam.item(),
        hb_gain=mse_db((lo + lam * hi).clamp(0, 1), hr, inner) - mse_db((lo + hi).clamp(0, 1), hr, inner),
    )


def outputs(model, hr: torch.Tensor, s: int, cls: int) -> dict:
    "{name: ×s output (3, H, W)} of one HR image's ÷s input: bicubic, model, ceiling, autoencoder, with/without fix."
    lr = resize(hr, (hr.shape[-2] // s, hr.shape[-1] // s), "bicubic").clamp(0, 1)
    raw = upscale(lr, model, OutputSettings(scales=(s,), cls=cls, fix="none"))[s]
    q, u = ceiling(model, hr, s)
    H, W = hr.shape[-2:]
    x = F.pad(hr[None], (0, -W % 8, 0, -H % 8), mode="replicate")  # the whole image: one latent map, one decoding
    with torch.no_grad():
        whole = to_unit(model.hit.stage_decoders[model.scales.index(s)](encode_any(model.hit.tok, to_signed(x))))
    fix = lambda y: colour_fix_scales({s: y}, lr, COLOUR_SIGMA)[s]
    p, n = model.preset, model.scales.index(s)
    k = round(sum(r * r for r in p.patch_nums[: p.stage_ends[n]]) * (4 / 3) ** 2)  # tokens per tile area (stride ¾)
    four = {}
    if s == 2:  # ×2 from the ×4 stage: the ÷2 input to ×4 by the model (its tokenizer), then resized (antialiased) ÷2
        down = lambda y: resize(y, (H, W), "bicubic").clamp(0, 1)
        r4 = down(upscale(lr, model, OutputSettings(scales=(4,), cls=cls, fix="none"))[4])
        q4 = down(ceiling(model, resize(hr, (2 * H, 2 * W), "bicubic").clamp(0, 1), 4)[0])
        four = {
            f"model class {cls}, x4 stage ÷2": fix(r4),
            f"model class {cls}, x4 stage ÷2, no fix": r4,
            "ceiling, x4 stage ÷2": fix(q4),
            "ceiling, x4 stage ÷2, no fix": q4,
        }
    return {
        "bicubic": bicubic_up(lr, hr.shape[-2:]),
        f"model class {cls}": fix(raw),
        f"model class {cls}, no fix": raw,
        "ceiling": fix(q),
        "ceiling, no fix": q,
        "autoencoder, no fix": u,
        "autoencoder, whole image, no fix": whole[0, :, :H, :W],
        f"best {k} DCT terms per tile (oracle), no fix": best_terms(hr, p.lr_size * s, k),
    } | four


def grey_table(model, cls: int) -> pd.DataFrame:
    "Mean output level of flat grey inputs: the model's raw ×2/×4 of a 32-px grey LR, the tokenizer's of grey HR."
    rows = []
    for v in (0.25, 0.5, 0.75):
        lr = torch.full((3, 32, 32), v)
        for s in (2, 4):
            raw = upscale(lr, model, OutputSettings(scales=(s,), cls=cls, fix="none"))[s]
            q, u = ceiling(model, torch.full((3, 32 * s, 32 * s), v), s)
            rows += [
                dict(grey=v, scale=f"x{s}", what=k, mean=y.mean().item())
                for k, y in (("model, no fix", raw), ("ceiling, no fix", q), ("autoencoder, no fix", u))
            ]
    return pd.DataFrame(rows).pivot_table(index=["what", "scale"], columns="grey", values="mean")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a folder of HR images (a validation split)")
    ap.add_argument("-n", type=int, default=8, help="the first n images of the folder (8)")
    ap.add_argument(
        "--last", type=int, default=None, help="only the folder's last N images by name (a validation split)"
    )
    ap.add_argument("--long-side", type=int, default=256, help="the clean protocol's HR long side in px (256)")
    ap.add_argument("--cls", type=int, default=1, help="the model's class (1, clean)")
    ap.add_argument("--model", default=None, help="an msvar model file (default: the shipped one)")
    ap.add_argument("--out", default=None, help="write the per-image rows to this CSV file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = load_sr_model(a.model or default_model_path(), device="cpu").float()
    alex = get_lpips("alex")
    rows = []
    files = list_images([a.data])[-a.last if a.last else 0 :][: a.n]
    for name, hr in ((Path(f).stem, hr_long_side(load_image(f), a.long_side)) for f in files):
        for s in (2, 4):
            outs = outputs(model, hr, s, a.cls)
            for k, y in outs.items():
                assert y.shape == hr.shape, (k, y.shape, hr.shape)
                sc = {m: v[0] for m, v in scores(y[None], hr[None], alex).items()}
                d = defects(y, hr, s, outs["bicubic"]) if k == "bicubic" or k.endswith("no fix") else {}
                rows.append(dict(image=name, scale=f"x{s}", method=k, **sc, **d))
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    df = pd.DataFrame(rows)
    if a.out:
        df.to_csv(a.out, index=False)
    mean = df.groupby(["scale", "method"], sort=False).mean(numeric_only=True)
    b = mean.xs("bicubic", level="method")
    mean.insert(1, "d_psnr_rgb", mean.psnr_rgb - b.psnr_rgb.reindex(mean.index, level="scale").values)
    mean.insert(3, "lpips_ratio", mean.lpips / b.lpips.reindex(mean.index, level="scale").values)
    pd.set_option("display.width", 250)
    print(f"\n{df.image.nunique()} clean images, long side {a.long_side} px, class {a.cls}, decoding {model.decoding}")
    print(mean[["psnr_rgb", "d_psnr_rgb", "lpips", "lpips_ratio"]].round(3).to_string())
    diag = [c for c in mean.columns if c not in ("psnr_rgb", "d_psnr_rgb", "lpips", "lpips_ratio", "flat_hf")]
    print("\ndefects (dB gains on the interior, tints in 8-bit levels)")
    print(mean[diag].dropna(how="all").round(2).to_string())
    print("\nflat grey: mean output level")
    print(grey_table(model, a.cls).round(3).to_string())
    print(f"{time.perf_counter() - t0:.0f} s")
    return df


if __name__ == "__main__":
    main()
