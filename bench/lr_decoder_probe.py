"""Can the model itself, not the colour fix, hold a clean photo to bicubic's fidelity? A probe: the ×4 output of the
shipped model corrected by a small network that also reads the LR input, trained on the model's own outputs, then
scored on both validation protocols of `bench/user_photos.py` with no input fix (chapter 11, section 8).

    python bench/lr_decoder_probe.py TRAIN_DIR... --val VAL_DIR [--kinds lr hr both res] [--lpips-weight W]
        [--flat-weight W] [--clean-share S] [--fixes SPEC...] [--picture OUT.png] [--json OUT.json]

The tokenizer's stage decoders see only the tokens, and the tokens of a 64-px tile cannot carry a clean photo's detail
(`bench/clean_ceiling.py`: its decoder, given the HR's own latent with no quantizer at all, is several dB under bicubic):
the input itself is the one place that detail is left. Four kinds of correction (--kinds, default lr), each a few 3 × 3
convolutions whose last layer starts at zero (so that training starts from the shipped model's output), the first three
added to the ×4 output y of an LR tile x:
- `lr`: at the input's resolution, from [x, y ÷ 4] (area), upsampled ×4 (bicubic): a learned colour fix;
- `hr`: at the output's resolution, from [x ×4 (bicubic), y];
- `both`: the two added;
- `res`: at the output's resolution, from [x ×4 (bicubic), y], added to x ×4 instead: training starts from bicubic and
  learns what of the model's output to keep.
Training: random 64-px crops of the training images (never the validation images), half of them clean (--clean-share)
— bicubic ÷4 as the clean protocol makes its inputs (--clean bicubic, the default) or bilinear as chapter 01's `degrade`
makes class 1 (--clean bilinear) — and the rest degraded by `degrade`'s Real-ESRGAN pipeline; the model's own ×4 output
of each (class 1, the model file's decoding, computed once); ℓ2 + 0.1 · LPIPS (--lpips-weight) against the HR crop, and
optionally the output's high frequency where the HR is flat (--flat-weight; `flat_penalty`); Adam, batches of 32.
Scored: the clean protocol (whole images, ×2 made from ×4) and the degraded one (64-px crops), each tile corrected
before blending, beside bicubic and the shipped model without and with msvar_sr's input fix (`auto`); --fixes scores
each correction with more input fixes; --picture shows the first clean photo's ×4 outputs side by side at 100 %;
--json writes the settings, each correction's weights and training time, and the per-image scores.
A probe, not a recipe: the corrections it trains are thrown away.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from decoder_probe import random_crops  # noqa: E402
from user_photos import bicubic_up, clean_inputs, degraded_pairs, rows_of, scores, summary  # noqa: E402

from msvar.core import resize, to_signed  # noqa: E402
from msvar.data import degrade  # noqa: E402
from msvar.evaluate import model_outputs  # noqa: E402
from msvar.files import atomic_write, list_images, save_image  # noqa: E402
from msvar.inference import OutputSettings, default_model_path, load_sr_model, upscale  # noqa: E402
from msvar.lpips import get_lpips  # noqa: E402
from msvar.metrics import box_filter, flat_mask  # noqa: E402
from msvar.quality import parse_fix  # noqa: E402


STEPS, WIDTH, DEPTH = 1500, 32, 4  # the probe's defaults


class Correction(nn.Module):
    "A few 3 × 3 convolutions on 6 channels → 3, the last one zero at the start."

    def __init__(self, width: int = WIDTH, depth: int = DEPTH):
        super().__init__()
        chans = [6] + [width] * (depth - 1) + [3]
        layers = []
        for i, (a, b) in enumerate(zip(chans, chans[1:])):
            layers += [nn.Conv2d(a, b, 3, padding=1, padding_mode="replicate")] + (
                [nn.SiLU()] if i < depth - 1 else []
            )
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)

    def forward(self, a, b):
        return self.net(torch.cat((a, b), 1))


def upsampled(d: torch.Tensor, size) -> torch.Tensor:
    "A signed correction (B, 3, h, w) upsampled to `size` (bicubic, not clamped)."
    return F.interpolate(d, size=size, mode="bicubic", align_corners=False)


def corrected(kind: str, net: nn.ModuleDict, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    "The ×4 outputs y (B, 3, 4h, 4w) of inputs x (B, 3, h, w) corrected by the nets of `kind` (lr, hr, both, res)."
    if "res" in net:
        b = bicubic_up(x, y.shape[-2:])
        return (b + net["res"](b, y)).clamp(0, 1)
    out = y
    if "lr" in net:
        out = out + upsampled(net["lr"](x, resize(y, x.shape[-2:], "area")), y.shape[-2:])
    if "hr" in net:
        out = out + net["hr"](bicubic_up(x, y.shape[-2:]), y)
    return out.clamp(0, 1)


def corrections(kind: str, width: int, depth: int) -> nn.ModuleDict:
    "The nets of a correction of `kind`: 'lr', 'hr', both, or 'res'."
    if kind == "res":
        return nn.ModuleDict({"res": Correction(width, depth)})
    return nn.ModuleDict({k: Correction(width, depth) for k in ("lr", "hr") if kind in (k, "both")})


class Corrected:
    "The shipped model's tiles with the correction: what `upscale` calls for a plain function (its tile and step)."

    def __init__(self, model, kind: str, net: nn.ModuleDict, cls: int = 1):
        self.model, self.kind, self.net, self.cls = model, kind, net, cls
        self.tile, self.step, self.scales = model.preset.lr_size, model.tile_step, model.scales

    def __call__(self, x):
        y4 = self.model.sr_batch(x, cls=self.cls, stages=[2])[2].float()
        return [None, None, corrected(self.kind, self.net, y4, x.float())]


def training_set(model, files, n: int, seed: int, clean: str, clean_share: float = 0.5) -> dict:
    """HR crops, their inputs (a share `clean_share` clean: `degrade`'s bilinear, or bicubic as the clean protocol makes
    them; the rest degraded) and the model's own ×4 output of each (class 1)."""
    p = model.preset
    hr = random_crops(files, n, p.hr_size, seed)
    lr, cls = degrade(
        hr, lr_size=p.lr_size, generator=torch.Generator().manual_seed(seed), p_bilinear=clean_share
    )
    if clean == "bicubic":
        lr[cls == 1] = resize(hr[cls == 1], p.lr_size, "bicubic")
    y4 = model_outputs(model, lr, OutputSettings(cls=1, fix="none", x2_from=2))[2]
    return dict(hr=hr, lr=lr, y4=y4)


def flat_penalty(out: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean |Y − box₅(Y)| of `out` (Y in [0, 1]) where `hr` is flat (chapter 09's `flat_mask`): `flat_hf_energy`
    without the rounding to grey levels, so that it has a gradient."""
    y = (out * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    mask = flat_mask(hr).float()
    return ((y - box_filter(y)).abs() * mask).sum() / mask.sum().clamp_min(1)


def train(
    kind: str,
    data: dict,
    steps: int,
    lr: float,
    alex,
    width: int,
    depth: int,
    lpips_weight: float = 0.1,
    flat_weight: float = 0.0,
) -> nn.ModuleDict:
    """A correction of `kind` trained on `data` for `steps` batches of 32, ℓ2 + `lpips_weight` · LPIPS +
    `flat_weight` · `flat_penalty`; the loss averaged over every 250 steps."""
    net, g, seen = corrections(kind, width, depth), torch.Generator().manual_seed(0), []
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(1, steps + 1):
        i = torch.randint(0, len(data["hr"]), (32,), generator=g)
        out, hr = corrected(kind, net, data["y4"][i], data["lr"][i]), data["hr"][i]
        loss = F.mse_loss(out, hr) + lpips_weight * alex(to_signed(out), to_signed(hr)).mean()
        if flat_weight:
            loss = loss + flat_weight * flat_penalty(out, hr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(loss.item())
        if step % 250 == 0:
            print(f"  {kind}: step {step}, loss {sum(seen) / len(seen):.4f}", flush=True)
            seen = []
    return net.eval()


def clean_rows(runs: dict, images, alex) -> list:
    "Per-image rows of the clean protocol for each run {method: (model-like, input fix)}."
    rows = []
    for name, hr in images:
        for s in (2, 4):
            lr = resize(hr, (hr.shape[-2] // s, hr.shape[-1] // s), "bicubic").clamp(0, 1)
            outs = {"bicubic": bicubic_up(lr, hr.shape[-2:])}
            for method, (m, fix) in runs.items():
                outs[method] = upscale(lr, m, OutputSettings(scales=(s,), cls=1, fix=fix, x2_from=4))[s]
            for method, y in outs.items():
                rows += rows_of("clean", s, method, [name], scores(y[None], hr[None], alex))
    return rows


def degraded_rows(runs: dict, pairs: dict, alex) -> list:
    "Per-crop rows of the degraded protocol: every 16-px input is one tile."
    lr, hr, rows = pairs["lr"], pairs["hr"], []
    for s in (2, 4):
        ref = resize(hr, lr.shape[-1] * s, "bicubic").clamp(0, 1)
        outs = {"bicubic": bicubic_up(lr, ref.shape[-2:])}
        for method, (m, fix) in runs.items():
            outs[method] = torch.stack(
                [upscale(x, m, OutputSettings(scales=(s,), cls=1, fix=fix, x2_from=4))[s] for x in lr]
            )
        for method, y in outs.items():
            rows += rows_of("degraded", s, method, pairs["names"], scores(y, ref, alex))
    return rows


def picture(runs: dict, name: str, hr: torch.Tensor, path, crop: int = 160):
    """The ×4 outputs of a clean photo side by side at 100 %, a `crop`-px square of its centre: the HR, bicubic, then
    each run; written to `path`."""
    lr = resize(hr, (hr.shape[-2] // 4, hr.shape[-1] // 4), "bicubic").clamp(0, 1)
    outs = {"HR": hr, "bicubic": bicubic_up(lr, hr.shape[-2:])}
    outs |= {
        m: upscale(lr, r, OutputSettings(scales=(4,), cls=1, fix=fix))[4] for m, (r, fix) in runs.items()
    }
    i, j = (hr.shape[-2] - crop) // 2, (hr.shape[-1] - crop) // 2
    gap = torch.ones(3, crop, 4)
    row = torch.cat([torch.cat((y[:, i : i + crop, j : j + crop], gap), -1) for y in outs.values()], -1)
    save_image(row, path, overwrite=True)
    print(f"{path}: {name} ×4, left to right: {', '.join(outs)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", nargs="+", help="training image folders (never the validation images)")
    ap.add_argument("--val", required=True, help="the validation folder (both protocols)")
    ap.add_argument("-n", type=int, default=8, help="clean validation images (8)")
    ap.add_argument("--val-crops", type=int, default=100, help="degraded validation crops (100)")
    ap.add_argument("--crops", type=int, default=2048, help="training crops (2048)")
    ap.add_argument(
        "--steps", type=int, default=STEPS, help=f"training steps of 32 crops per correction ({STEPS})"
    )
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (1e-3)")
    ap.add_argument(
        "--lpips-weight", type=float, default=0.1, help="the LPIPS term's weight in the loss (0.1)"
    )
    ap.add_argument(
        "--flat-weight", type=float, default=0.0, help="the weight of the high frequency in flat regions (0)"
    )
    ap.add_argument(
        "--kinds", nargs="+", default=["lr"], choices=["lr", "hr", "both", "res"], help="the corrections (lr)"
    )
    ap.add_argument(
        "--clean",
        default="bicubic",
        choices=["bilinear", "bicubic"],
        help="the clean inputs' resize (bicubic)",
    )
    ap.add_argument(
        "--clean-share",
        type=float,
        default=0.5,
        help="the share of clean training crops, the rest degraded (0.5)",
    )
    ap.add_argument("--width", type=int, default=WIDTH, help=f"the correction's channels ({WIDTH})")
    ap.add_argument("--depth", type=int, default=DEPTH, help=f"the correction's 3 × 3 convolutions ({DEPTH})")
    ap.add_argument(
        "--fixes",
        nargs="*",
        default=[],
        help="more input fixes (SIGMAxSTEPS or a name) to score each correction with",
    )
    ap.add_argument(
        "--picture", default=None, help="write the first clean photo's ×4 outputs side by side (PNG)"
    )
    ap.add_argument(
        "--json", default=None, help="write the settings and the per-image scores to this JSON file"
    )
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = load_sr_model(default_model_path(), device="cpu").float()
    val = {Path(f).resolve() for f in list_images([a.val])}
    files = [f for f in list_images(a.train) if Path(f).resolve() not in val]
    data = training_set(model, files, a.crops, 0, a.clean, a.clean_share)
    alex = get_lpips("alex")
    print(
        f"{len(files)} training images, {a.crops} crops and the model's outputs: {time.perf_counter() - t0:.0f} s"
    )
    runs, trained = {"model, no fix": (model, "none"), "model, fix auto": (model, "auto")}, {}
    for kind in a.kinds:
        t1 = time.perf_counter()
        net = train(kind, data, a.steps, a.lr, alex, a.width, a.depth, a.lpips_weight, a.flat_weight)
        trained[kind] = dict(
            weights=sum(p.numel() for p in net.parameters()), seconds=time.perf_counter() - t1
        )
        runs[f"model + {kind} correction, no fix"] = (Corrected(model, kind, net), "none")
        runs[f"model + {kind} correction, fix auto"] = (Corrected(model, kind, net), "auto")
        for spec in a.fixes:
            runs[f"model + {kind} correction, fix {spec}"] = (Corrected(model, kind, net), parse_fix(spec))
        print(f"{kind} trained: {trained[kind]}", flush=True)
    with torch.no_grad():
        rows = clean_rows(runs, clean_inputs(a.val, a.n, 256), alex)
        rows += degraded_rows(runs, degraded_pairs(a.val, a.val_crops, 0, model.preset), alex)
    if a.picture:
        with torch.no_grad():
            picture(runs, *clean_inputs(a.val, 1, 256)[0], a.picture)
    if a.json:
        settings = {
            k: getattr(a, k)
            for k in (
                "n",
                "val_crops",
                "crops",
                "steps",
                "lr",
                "lpips_weight",
                "flat_weight",
                "clean",
                "clean_share",
                "width",
                "depth",
            )
        }
        meta = dict(settings=settings, batch=32, threads=torch.get_num_threads(), trained=trained)
        atomic_write(
            Path(a.json), lambda tmp: Path(tmp).write_text(json.dumps({**meta, "rows": rows}, indent=0))
        )
    table = summary(pd.DataFrame(rows))[["d_psnr_rgb", "lpips_ratio", "flat_hf_ratio"]]
    print(table.round(3).to_string())
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
