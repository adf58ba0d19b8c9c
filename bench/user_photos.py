"""What a user sees on a photo of their own, clean or degraded: msvar beside bicubic, per class (chapter 11).

    python bench/user_photos.py VAL_DIR --classes 0 1 2 --out runs/user_photos.csv
    python bench/user_photos.py VAL_DIR --snapshots SNAP_DIR --tokenizer HIT.pt --cls 1 --degraded-cls 0
    python bench/user_photos.py DATA/train/BSD200 --last 20 -n 8 --classes 1 --scales 2 --x2-from 2 4 --out X2.csv
    python bench/user_photos.py DATA/train/BSD200 --last 20 -n 8 --classes 1 --x2-from 4 --precision bf16 --out B.csv

Two protocols on the images of one folder (a validation split: never a reported test set):
- clean: each whole image, HR resized (area) to a long side of --long-side px (default 256, the short side to a multiple
  of 4), LR = HR ÷ 2 and HR ÷ 4 by bicubic (antialiased); the ×2 output of the ÷2 input and the ×4 output of the ÷4
  input, each against the HR;
- degraded: --crops 64-px crops of the same images, degraded by the Real-ESRGAN pipeline at --seed (`make_testset`,
  the protocol of `msvar_make_testset` and `msvar_eval`); the ×2 and ×4 outputs of each 16-px LR crop against the HR
  crop resized to the output's size.
Each output twice: with the colour fix at COLOUR_SIGMA (chapter 11 §5's one fix for every input) and the
model's own (no colour fix), decoded as the model file says; --fixes adds a row per input fix (`auto`, msvar_sr's
default, or an InputFix SIGMAxSTEPS: σ and back-projection steps, chapter 08); with --x2-from 2 4, the ×2 rows
twice: from the ×2 stage (`x2_from=2`, the rows' plain names) and from the ×4 stage's output resized ÷2
(`x2_from=4`, "×2 from ×4" in the name; `OutputSettings.x2_from`, chapter 08). --last N: only the folder's last N
images by name (a validation split held in a training folder).
Scores: PSNR-RGB, LPIPS (alex) and the flat-region high-frequency energy (`flat_hf_energy`, chapter 09), each beside
bicubic's: PSNR in dB against bicubic, LPIPS and flat-HF as ratios to bicubic's (flat-HF: ratio of the means over the
images that have a flat region).
`auto` picks class 0 or 1 per input by the kind it looks (`input_kind`, chapter 08: the line between the kinds in
chroma detail and fine detail, fitted on training images by `bench/input_kind.py`) and is scored with the outputs of the
class it picked; the accuracy line says how often it picks the input's kind (--kinds-only: that line alone).
--snapshots: the training curve instead, rows per VAR checkpoint (step_N.pt) of a folder, the shipped model as step 0:
degraded crops (classes --degraded-cls) and clean ×4 (class --cls), with and without the colour fix.
"""

import argparse
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from msvar.core import MsvarError, resize
from msvar.files import list_images, load_image
from msvar.data import make_testset
from msvar.evaluate import load_pairs, model_outputs
from msvar.inference import (
    COLOUR_SIGMA,
    OutputSettings,
    input_kind,
    kind_score,
    colour_fix_scales,
    finish,
    load_sr_model,
    sr_model_from_checkpoint,
)
from msvar.inference import default_model_path, upscale, x2_from_x4
from msvar.lpips import get_lpips
from msvar.metrics import flat_hf_energy, lpips_distance, psnr
from msvar.quality import parse_fix
from msvar.train import load_checkpoint
from msvar.var import Decoding


def kind_row(protocol: str, scale: int, image: str, x: torch.Tensor) -> dict:
    "What `input_kind` makes of one input of a protocol."
    return dict(protocol=protocol, scale=scale, image=image, kind=input_kind(x), score=kind_score(x))


def hr_long_side(x: torch.Tensor, side: int) -> torch.Tensor:
    "An image resized (area) to a long side of `side` px, its short side rounded to a multiple of 4."
    h, w = x.shape[-2:]
    k = side / max(h, w)
    size = (max(4, round(h * k / 4) * 4), max(4, round(w * k / 4) * 4))
    return resize(x, size, "area").clamp(0, 1)


def bicubic_up(lr: torch.Tensor, size) -> torch.Tensor:
    "Bicubic upsampling of (…, 3, h, w) to `size` (H, W), in [0, 1]."
    return resize(lr, size, "bicubic", antialias=False).clamp(0, 1)


def scores(out: torch.Tensor, ref: torch.Tensor, alex) -> dict:
    "PSNR-RGB, LPIPS and flat-HF energy of (B, 3, H, W) outputs against their references: lists, one value per image."
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # an image without a flat region: NaN, skipped in the ratios
        hf = flat_hf_energy(out, ref)
    return dict(
        psnr_rgb=psnr(out, ref, y_channel=False).tolist(),
        lpips=lpips_distance(out, ref, alex, min_side=64).tolist(),
        flat_hf=hf.tolist(),
    )


def rows_of(protocol: str, scale: int, method: str, names: list, s: dict, **setting) -> list:
    "Per-image rows of one protocol, scale and method; `setting` (σ, overlap) as columns of their own."
    keys = ("psnr_rgb", "lpips", "flat_hf")
    return [
        dict(protocol=protocol, scale=scale, method=method, image=n, **setting, **{k: s[k][i] for k in keys})
        for i, n in enumerate(names)
    ]


def model_pair(
    model, lr, scale: int, cls: int, x2_from=2, precision="fp32", sigmas=(COLOUR_SIGMA,), overlap=None
):
    "({σ: fixed at σ}, the model's own) ×`scale` output of one LR image (3, h, w) for class `cls`."
    output = OutputSettings(
        scales=(scale,), cls=cls, fix="none", x2_from=x2_from, precision=precision, overlap=overlap
    )
    raw = upscale(lr, model, output)  # the model's decoding
    return {sg: colour_fix_scales(raw, lr, sg)[scale] for sg in sigmas}, raw[scale]


def fixed_by(raw: torch.Tensor, lr: torch.Tensor, s: int, spec: str) -> torch.Tensor:
    "The ×s output(s) `raw` of the input(s) `lr` with the input fix `spec`, as `upscale` and `model_outputs` fix them."
    return finish({s: raw}, lr, OutputSettings(fix=parse_fix(spec)))[s]


def named(c: int, x2_from: int, fix: bool = True, sigma: float = COLOUR_SIGMA, overlap=None, spec=None) -> str:
    """A row's method name: class c, ', ×2 from ×4' when made with x2_from=4, ', no fix' for the model's own,
    ', σ s' when fixed at another σ than COLOUR_SIGMA, ', fix SPEC' for a --fixes entry, ', overlap k' when tiled
    with a given overlap."""
    name = f"class {c}" + (", ×2 from ×4" if x2_from == 4 else "") + ("" if fix else ", no fix")
    name += f", fix {spec}" if spec else ""
    name += f", σ {sigma:g}" if fix and sigma != COLOUR_SIGMA else ""
    return name + (f", overlap {overlap}" if overlap is not None else "")


def clean_inputs(folder, n: int | None, long_side: int) -> list:
    "(name, HR) of the first n images of a folder, resized to the clean protocol's long side."
    files = list_images([folder])[:n] if n else list_images([folder])
    return [(Path(f).stem, hr_long_side(load_image(f), long_side)) for f in files]


def clean_rows(
    model,
    images,
    classes,
    alex,
    scales=(2, 4),
    x2_froms=(2,),
    precision="fp32",
    sigmas=(COLOUR_SIGMA,),
    overlaps=(None,),
    fixes=(),
):
    """Per-image rows of the clean protocol (bicubic and, per class and tile overlap, fixed and raw) and each input's
    kind."""
    rows, kinds = [], []
    for name, hr in images:
        for s in scales:
            lr = resize(hr, (hr.shape[-2] // s, hr.shape[-1] // s), "bicubic").clamp(0, 1)
            kinds.append(kind_row("clean", s, name, lr))
            rows += rows_of(
                "clean", s, "bicubic", [name], scores(bicubic_up(lr, hr.shape[-2:])[None], hr[None], alex)
            )
            runs = [(c, x, o) for c in classes for x in (x2_froms if s == 2 else (2,)) for o in overlaps]
            for c, x, o in runs:
                fixed, raw = model_pair(model, lr, s, c, x, precision, sigmas, o)
                ov = OutputSettings(overlap=o).tile_overlap(model.preset.lr_size)
                for sg, f in fixed.items():
                    sc = scores(f[None], hr[None], alex)
                    rows += rows_of("clean", s, named(c, x, True, sg, o), [name], sc, sigma=sg, overlap=ov)
                for spec in fixes:
                    sc = scores(fixed_by(raw, lr, s, spec)[None], hr[None], alex)
                    rows += rows_of("clean", s, named(c, x, overlap=o, spec=spec), [name], sc, overlap=ov, fix=spec)
                sc = scores(raw[None], hr[None], alex)
                rows += rows_of("clean", s, named(c, x, False, overlap=o), [name], sc, sigma=0.0, overlap=ov)
    return rows, kinds


def degraded_pairs(folder, n: int, seed: int, preset) -> dict:
    "The degraded protocol's pairs: `n` 64-px crops of a folder's images, Real-ESRGAN-degraded at `seed`."
    with tempfile.TemporaryDirectory() as d:
        make_testset(
            folder, d, n=n, hr_size=preset.hr_size, lr_size=preset.lr_size, seed=seed, progress=False
        )
        return load_pairs(d, preset)


def crop_outputs(model, lr: torch.Tensor, cls: int, precision: str = "fp32") -> dict:
    """{scale: raw output} of the model for a set of LR crops (N, 3, 16, 16), one class, decoded as the model file says:
    `evaluate.model_outputs`, what msvar_eval scores, without the colour fix and with ×2 from the ×2 stage."""
    output = OutputSettings(cls=cls, fix="none", batch_size=16, x2_from=2, precision=precision)
    return dict(zip(model.scales, model_outputs(model, lr, output)))


def degraded_rows(
    model, pairs, classes, alex, scales=(2, 4), x2_froms=(2,), precision="fp32", sigmas=(COLOUR_SIGMA,), fixes=()
):
    "Per-image rows of the degraded protocol (bicubic and, per class, fixed and raw) and each crop's kind."
    lr, hr, names = pairs["lr"], pairs["hr"], pairs["names"]
    refs = {s: resize(hr, lr.shape[-1] * s, "bicubic").clamp(0, 1) for s in scales}
    rows = []
    for s in scales:
        rows += rows_of(
            "degraded", s, "bicubic", names, scores(bicubic_up(lr, refs[s].shape[-2:]), refs[s], alex)
        )
    for c in classes:
        raw = crop_outputs(model, lr, c, precision)
        for s in scales:
            for sg in sigmas:
                fixed = colour_fix_scales({s: raw[s]}, lr, sg)[s]
                rows += rows_of("degraded", s, named(c, 2, sigma=sg), names, scores(fixed, refs[s], alex))
            for spec in fixes:
                sc = scores(fixed_by(raw[s], lr, s, spec), refs[s], alex)
                rows += rows_of("degraded", s, named(c, 2, spec=spec), names, sc)
            rows += rows_of("degraded", s, named(c, 2, False), names, scores(raw[s], refs[s], alex))
        if 2 in scales and 4 in x2_froms:  # ×2 as upscale makes it with x2_from=4: the ×4 output resized ÷2
            r2 = x2_from_x4(raw[4])
            for sg in sigmas:
                f2 = colour_fix_scales({2: r2}, lr, sg)[2]
                rows += rows_of("degraded", 2, named(c, 4, sigma=sg), names, scores(f2, refs[2], alex))
            for spec in fixes:
                sc = scores(fixed_by(r2, lr, 2, spec), refs[2], alex)
                rows += rows_of("degraded", 2, named(c, 4, spec=spec), names, sc)
            rows += rows_of("degraded", 2, named(c, 4, False), names, scores(r2, refs[2], alex))
    return rows, [kind_row("degraded", s, n, x) for s in scales for n, x in zip(names, lr)]


def auto_rows(per_image: pd.DataFrame, kinds: pd.DataFrame) -> pd.DataFrame:
    "Rows `auto` and `auto, no fix`: each input scored with the outputs of the class of the kind it looks."
    pick = kinds.assign(cls=(kinds.kind == "clean").astype(int))
    out = []
    for suffix in ("", ", no fix"):
        m = per_image.merge(pick[["protocol", "scale", "image", "cls"]], on=["protocol", "scale", "image"])
        m = m[m.method == "class " + m.cls.astype(str) + suffix]
        out.append(m.drop(columns="cls").assign(method="auto" + suffix))
    return pd.concat(out)


def auto_accuracy(kinds: pd.DataFrame) -> dict:
    "Share of inputs `input_kind` sees as their protocol's kind."
    return (kinds.kind == kinds.protocol).groupby(kinds.protocol).mean().to_dict()


def flat_ratio(g: pd.DataFrame, b: pd.DataFrame) -> float:
    "Mean flat-HF energy of a method ÷ bicubic's, over the images where both have a flat region."
    both = (
        g.set_index("image").flat_hf.to_frame("m").join(b.set_index("image").flat_hf.to_frame("b")).dropna()
    )
    return both.m.mean() / both.b.mean() if len(both) else float("nan")


def summary(per_image: pd.DataFrame) -> pd.DataFrame:
    "Per protocol, scale and method: mean PSNR-RGB and LPIPS, and each against bicubic's (dB, ratios; flat-HF ratio)."
    rows = []
    for (proto, s), d in per_image.groupby(["protocol", "scale"], sort=False):
        b = d[d.method == "bicubic"]
        for m, g in d.groupby("method", sort=False):
            rows.append(
                dict(
                    protocol=proto,
                    scale=f"x{s}",
                    method=m,
                    psnr_rgb=g.psnr_rgb.mean(),
                    d_psnr_rgb=g.psnr_rgb.mean() - b.psnr_rgb.mean(),
                    lpips=g.lpips.mean(),
                    lpips_ratio=g.lpips.mean() / b.lpips.mean(),
                    flat_hf_ratio=flat_ratio(g, b),
                    n=len(g),
                )
            )
    return pd.DataFrame(rows).set_index(["protocol", "scale", "method"])


def snapshot_steps(folder) -> list:
    "(step, path) of the step_N.pt files of a folder, by step."
    found = [
        (int(m.group(1)), p)
        for p in Path(folder).glob("step_*.pt")
        if (m := re.fullmatch(r"step_(\d+)\.pt", p.name))
    ]
    return sorted(found)


def curve_rows(model, images: list, pairs: dict, cls: int, degraded_cls, alex) -> pd.DataFrame:
    "One point of the curve: degraded crops (classes `degraded_cls`, ×2 and ×4) and clean ×4 (class `cls`)."
    deg, _ = degraded_rows(model, pairs, degraded_cls, alex)
    cln, _ = clean_rows(model, images, (cls,), alex, scales=(4,))
    return summary(pd.DataFrame(deg + cln)).drop(index="bicubic", level="method")


def snapshot_model(path, tokenizer, decoding):
    "An SRModel from a VAR training checkpoint and its HIT tokenizer, decoded like the shipped model."
    model = sr_model_from_checkpoint(load_checkpoint(path), tokenizer)
    model.decoding = decoding
    return model


def curve(
    folder, shipped, tokenizer, images: list, pairs: dict, cls: int, degraded_cls, alex
) -> pd.DataFrame:
    "The curve over the snapshots of a folder, the shipped model as step 0 (the run continues it)."
    parts = {0: curve_rows(shipped, images, pairs, cls, degraded_cls, alex)}
    for step, path in snapshot_steps(folder):
        t0 = time.perf_counter()
        model = snapshot_model(path, tokenizer, shipped.decoding)
        parts[step] = curve_rows(model, images, pairs, cls, degraded_cls, alex)
        print(f"step {step}: {time.perf_counter() - t0:.0f} s", flush=True)
    return pd.concat(parts, names=["step"])


def input_kinds(a, preset) -> pd.DataFrame:
    "The kind `input_kind` sees in each input of both protocols (clean ÷2 and ÷4, degraded crops), without a model."
    rows = []
    for name, hr in clean_inputs(a.data, a.n, a.long_side):
        for s in (2, 4):
            lr = resize(hr, (hr.shape[-2] // s, hr.shape[-1] // s), "bicubic").clamp(0, 1)
            rows.append(kind_row("clean", s, name, lr))
    pairs = degraded_pairs(a.data, a.crops, a.seed, preset)
    return pd.DataFrame(rows + [kind_row("degraded", 4, n, x) for n, x in zip(pairs["names"], pairs["lr"])])


def kind_report(kinds: pd.DataFrame) -> pd.DataFrame:
    "Per protocol: inputs, the share `input_kind` gets right, and the quartiles of its score (printed)."
    q = kinds.groupby("protocol").score.quantile([0.25, 0.5, 0.75]).unstack().add_prefix("score_q")
    t = q.assign(right=pd.Series(auto_accuracy(kinds)), n=kinds.groupby("protocol").size())
    print(t.round(3).to_string())
    return t


def parser() -> argparse.ArgumentParser:
    "The options."
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", help="a folder of HR images (a validation split)")
    ap.add_argument("--model", default=None, help="an msvar model file (default: the shipped one)")
    ap.add_argument("--classes", type=int, nargs="+", default=[0, 1, 2], help="the classes to score (0 1 2)")
    ap.add_argument("-n", type=int, default=None, help="at most n images of the folder (default: all)")
    ap.add_argument(
        "--last", type=int, default=None, help="only the folder's last N images by name (a validation split)"
    )
    ap.add_argument("--scales", type=int, nargs="+", default=[2, 4], help="the scales to score (2 4)")
    ap.add_argument(
        "--x2-from",
        type=int,
        nargs="+",
        default=[2],
        help="×2 from the ×2 stage (2), the ×4 one (4), or both",
    )
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="the model's arithmetic (OutputSettings' field)",
    )
    ap.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[COLOUR_SIGMA],
        help="colour-fix σ values (input px) to score",
    )
    ap.add_argument(
        "--fixes",
        nargs="+",
        default=[],
        help="input fixes to score beside (`parse_fix`): auto, clean, degraded, or SIGMAxSTEPS (an InputFix: 0.25x10)",
    )
    ap.add_argument(
        "--overlaps",
        type=int,
        nargs="+",
        default=[None],
        help="the clean protocol's tile overlaps (upscale's)",
    )
    ap.add_argument(
        "--decoding", default=None, help="a decoding string (greedy, soft1.5, …): the model file's"
    )
    ap.add_argument(
        "--long-side", type=int, default=256, help="the clean protocol's HR long side in px (256)"
    )
    ap.add_argument(
        "--crops", type=int, default=100, help="the degraded protocol's number of 64-px crops (100)"
    )
    ap.add_argument("--seed", type=int, default=0, help="the degradation seed (0)")
    ap.add_argument("--protocols", nargs="+", default=["clean", "degraded"], choices=["clean", "degraded"])
    ap.add_argument(
        "--snapshots", default=None, help="a folder of VAR checkpoints step_N.pt: print the curve"
    )
    ap.add_argument("--tokenizer", default=None, help="the HIT tokenizer of the snapshots")
    ap.add_argument("--cls", type=int, default=1, help="the snapshots' class on the clean protocol (1)")
    ap.add_argument(
        "--degraded-cls",
        type=int,
        nargs="+",
        default=[0],
        help="the snapshots' classes on the degraded crops",
    )
    ap.add_argument(
        "--kinds-only", action="store_true", help="only the kind input_kind sees in each input (no model)"
    )
    ap.add_argument("--out", default=None, help="write the table (or the curve) to this CSV file")
    ap.add_argument("--per-image", default=None, help="also write the per-image scores to this CSV file")
    return ap


def class_tables(a, model, alex) -> pd.DataFrame:
    "Score the protocols per class (and auto), print one table per protocol and auto's accuracy; the summary."
    rows, kinds, t0 = [], [], time.perf_counter()
    if "clean" in a.protocols:
        images = clean_inputs(a.data, a.n, a.long_side)
        r, k = clean_rows(
            model, images, a.classes, alex, a.scales, a.x2_from, a.precision, a.sigmas, a.overlaps, a.fixes
        )
        rows, kinds = rows + r, kinds + k
        print(f"clean: {time.perf_counter() - t0:.0f} s", flush=True)
    if "degraded" in a.protocols:
        pairs = degraded_pairs(a.data, a.crops, a.seed, model.preset)
        r, k = degraded_rows(
            model, pairs, a.classes, alex, a.scales, a.x2_from, a.precision, a.sigmas, a.fixes
        )
        rows, kinds = rows + r, kinds + k
    per_image, kinds = pd.DataFrame(rows), pd.DataFrame(kinds)
    if a.per_image:
        per_image.to_csv(a.per_image, index=False)
    if {0, 1} <= set(a.classes):
        per_image = pd.concat([per_image, auto_rows(per_image, kinds)])
    t = summary(per_image)
    for proto, d in t.groupby(level="protocol", sort=False):
        print(f"\n{proto} protocol ({d.n.iloc[0]} inputs per row)")
        print(d.droplevel("protocol").drop(columns="n").round(3).to_string())
    print(f"\nauto (input_kind: clean → class 1, degraded → class 0): right on {auto_accuracy(kinds)}")
    return t


def last_images(folder, last: int, into) -> str:
    "A folder `into` of links to the last `last` images of `folder` by name (what the protocols then read)."
    for f in list_images([folder])[-last:]:
        (Path(into) / Path(f).name).symlink_to(Path(f).resolve())
    return str(into)


def main(argv=None):
    a = parser().parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    if a.last:
        a.data = last_images(a.data, a.last, tempfile.mkdtemp())
    model = load_sr_model(a.model or default_model_path(), device="cpu").float()
    if a.decoding:
        model.decoding = Decoding.parse(a.decoding)
    alex = get_lpips("alex")
    print(
        f"{Path(a.data).name}: decoding {model.decoding}, colour fix σ = {COLOUR_SIGMA:g} input px; clean HR long "
        f"side {a.long_side} px, {a.n or 'all'} images; degraded: {a.crops} crops at seed {a.seed}"
    )
    if a.kinds_only:
        t = kind_report(input_kinds(a, model.preset))
    elif a.snapshots:
        if not a.tokenizer:
            raise MsvarError("--snapshots needs --tokenizer (the HIT tokenizer of the run)")
        images = clean_inputs(a.data, a.n, a.long_side)
        pairs = degraded_pairs(a.data, a.crops, a.seed, model.preset)
        t = curve(a.snapshots, model, a.tokenizer, images, pairs, a.cls, a.degraded_cls, alex)
        print(t.drop(columns="n").round(3).to_string())
    else:
        t = class_tables(a, model, alex)
    if a.out:
        t.to_csv(a.out)
        print(f"wrote {a.out}")
    print(f"{time.perf_counter() - t0:.0f} s")
    return t


if __name__ == "__main__":
    try:
        main()
    except MsvarError as e:
        print(f"user_photos: error: {e}", file=sys.stderr)
        sys.exit(2)
