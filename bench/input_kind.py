"""The line between clean and degraded inputs (`input_kind`, chapter 08), fitted on training images (chapter 11 §7).

    python bench/input_kind.py --train TRAIN/T91 TRAIN/BSD200 --val VAL/BSD200 --csv QUALITY/input_kind.csv

For every image of the folders: the HR resized (area) to a long side of 256 px, as `bench/user_photos.py`'s clean
protocol makes it (`hr_long_side`), and from it inputs of both kinds and both forms: clean whole images (bicubic ÷ 2
and ÷ 4), a degraded whole image (the Real-ESRGAN pipeline of chapter 01 to ÷ 4), and 64-px crops, each to a clean
(bicubic ÷ 4) and a degraded 16-px input (--crops per training image, --val-crops per validation image); and the same
of made-up drawings (`drawing`: flat-coloured shapes, lines and text; --drawings of them per split, seeded apart), the
kind of picture whose flat background a photo-trained test would misread. Each input's chroma detail, fine detail (to
five digits) and whether it has colour are written to --csv. The line (`fit_kind_line`, logistic regression on
ln(chroma detail + 0.01) and ln(fine detail + 0.1), each kind × form weighted alike) is fitted on the training photos
in colour only (the drawings are a check, not fitted), and printed with how often it is right on each split, kind and
form, beside the chroma-detail test alone and the line for inputs without colour (fine detail alone), which
`input_kind` uses for those.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from msvar.core import resize
from msvar.data import degrade
from msvar.files import list_images, load_image
from msvar.inference import chroma_detail, fine_detail, is_grey, kind_logs
from msvar.quality import fit_kind_line, kind_weights

sys.path.insert(0, str(Path(__file__).parent))
from user_photos import hr_long_side  # noqa: E402  the clean protocol's HR

LONG_SIDE = 256  # bench/user_photos.py's clean protocol


def stored(x: torch.Tensor) -> torch.Tensor:
    "An input as an 8-bit file holds it."
    return (x.clamp(0, 1) * 255).round() / 255


def drawing(seed: int, size: int = 256) -> torch.Tensor:
    "A made-up drawing (3, size, size): a flat background, flat-coloured rectangles and ellipses, lines and text."
    rng = np.random.default_rng(seed)
    colour = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))
    point = lambda: tuple(int(v) for v in rng.integers(0, size, 2))
    im = Image.new("RGB", (size, size), colour())
    d = ImageDraw.Draw(im)
    for _ in range(rng.integers(3, 12)):
        (x0, x1), (y0, y1) = sorted(rng.integers(0, size, 2)), sorted(rng.integers(0, size, 2))
        (d.rectangle if rng.integers(0, 2) else d.ellipse)([int(x0), int(y0), int(x1), int(y1)], fill=colour())
    for _ in range(rng.integers(0, 6)):
        d.line([point(), point()], fill=colour(), width=int(rng.integers(1, 4)))
    for _ in range(rng.integers(0, 4)):
        d.text(tuple(int(v) for v in rng.integers(0, size - 40, 2)), "msvar text", fill=(0, 0, 0))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255


def inputs_of(hr: torch.Tensor, crops: int, g: torch.Generator) -> list:
    "(kind, form, scale, input) of one HR image: clean ÷2 and ÷4 and degraded ÷4 whole, and `crops` crop pairs."
    H, W = hr.shape[-2:]
    out = [("clean", "whole", s, stored(resize(hr, (H // s, W // s), "bicubic"))) for s in (2, 4)]
    out.append(("degraded", "whole", 4, degrade(hr[None], None, (H // 4, W // 4), g, 0.0)[0][0]))
    for _ in range(crops):
        i, j = (int(torch.randint(0, n - 63, (1,), generator=g)) for n in (H, W))
        crop = hr[:, i : i + 64, j : j + 64]
        out.append(("clean", "crop", 4, stored(resize(crop, 16, "bicubic"))))
        out.append(("degraded", "crop", 4, degrade(crop[None], None, 16, g, 0.0)[0][0]))
    return out


def feature_rows(folders, split: str, crops: int, drawings: int, seed: int) -> list:
    "One row per input of every image of `folders`, and of `drawings` made-up drawings (forms 'drawing …')."
    g, rows = torch.Generator().manual_seed(seed), []
    pictures = [(Path(f).stem, "", hr_long_side(load_image(f), LONG_SIDE), crops) for f in list_images(folders)]
    pictures += [(f"drawing{k}", "drawing ", drawing(1000 * seed + k), 1) for k in range(drawings)]
    for name, prefix, hr, n in pictures:
        for kind, form, s, x in inputs_of(hr, n, g):
            d = dict(chroma=chroma_detail(x), fine=fine_detail(x), grey=is_grey(x))
            rows.append(dict(split=split, kind=kind, form=prefix + form, scale=s, image=name, **d))
    return rows


def right_share(t: pd.DataFrame, clean: np.ndarray) -> pd.Series:
    "How often `clean` (one bool per row) is the row's kind, per split, kind and form."
    return t.assign(right=clean == (t.kind == "clean")).groupby(["split", "kind", "form"]).right.mean()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", nargs="+", required=True, help="folders of training HR images")
    ap.add_argument("--val", nargs="+", required=True, help="folders of validation HR images")
    ap.add_argument("--crops", type=int, default=3, help="crop pairs per training image (3)")
    ap.add_argument("--val-crops", type=int, default=5, help="crop pairs per validation image (5)")
    ap.add_argument("--drawings", type=int, default=60, help="made-up drawings per split (60)")
    ap.add_argument("--csv", required=True, help="write every input's features here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = feature_rows(a.train, "train", a.crops, a.drawings, 0)
    rows += feature_rows(a.val, "val", a.val_crops, a.drawings, 1)
    t = pd.DataFrame(rows)
    t[["split", "kind", "form", "chroma", "fine", "grey"]].to_csv(a.csv, index=False, float_format="%.5g")
    train = t[(t.split == "train") & ~t.form.str.startswith("drawing")]  # the photos
    X = lambda d: np.column_stack(kind_logs(d.chroma, d.fine))
    colour = train[~train.grey]  # inputs without colour are judged by the second line only
    line = fit_kind_line(X(colour), (colour.kind == "clean").values, kind_weights(colour))
    grey = fit_kind_line(X(train)[:, 1:], (train.kind == "clean").values, kind_weights(train))
    print(f"{len(train)} training inputs from photos; {len(t) - len(train)} validation inputs and drawings")
    print(f"KIND_LINE = {tuple(round(v, 2) for v in line)}; GREY_LINE = {tuple(round(v, 2) for v in grey)}")
    by_fine = X(t)[:, 1] * grey[0] + grey[1] > 0
    table = pd.DataFrame(
        {
            "the lines": right_share(t, np.where(t.grey, by_fine, X(t) @ np.array(line[:2]) + line[2] > 0)),
            "fine detail alone": right_share(t, by_fine),
            "chroma detail > 0.3": right_share(t, (t.chroma > 0.3).values),
        }
    )
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
