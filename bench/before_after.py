"""Chapter 11's before/after picture: two model files on the same degraded crops, beside bicubic and the HR crop.

    python bench/before_after.py --before FIRST.pt --after data/msvar_small.safetensors --data TEST/Set14 --idx 0 2 5 9 12 -o picture.jpg
Rows: LR input (nearest), bicubic ×4, BEFORE ×4, AFTER ×1, ×2, ×4 (each shown at 64 px), HR. Each model decodes as
--before-decode / --after-decode say (chapter 11's setting strings; default: greedy before, msvar_sr's default after).
"""
import argparse
from pathlib import Path
import torch
from PIL import Image
from msvar.core import resize, to_uint8
from msvar.evaluate import load_pairs
from msvar.inference import load_sr_model, SOFT_TAU
from msvar.quality import parse_decode

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--before", required=True); ap.add_argument("--after", required=True)
ap.add_argument("--data", required=True); ap.add_argument("--idx", type=int, nargs="+", default=[0, 2, 5, 9, 12])
ap.add_argument("--seed", type=int, default=0); ap.add_argument("--zoom", type=int, default=2)
ap.add_argument("--before-decode", default="greedy"); ap.add_argument("--after-decode", default=f"soft{SOFT_TAU}")
ap.add_argument("-o", "--out", required=True)
a = ap.parse_args()
before, after = load_sr_model(a.before), load_sr_model(a.after)
p = after.preset
pairs = load_pairs(a.data, p, None, a.seed)
sel = torch.tensor(a.idx)
lr, hr, cls = pairs["lr"][sel], pairs["hr"][sel], pairs["cls"][sel]
with torch.no_grad():
    b4 = before.sr_batch(lr, cls=int(cls[0]), decoding=parse_decode(a.before_decode)["decoding"])[-1]
    a1, a2, a4 = after.sr_batch(lr, cls=int(cls[0]), decoding=parse_decode(a.after_decode)["decoding"])
up = lambda x, mode="nearest": resize(x, p.hr_size, mode, antialias=False).clamp(0, 1)
rows = [up(lr), up(lr, "bicubic"), b4, up(a1), up(a2), a4, hr]
S, Z = p.hr_size, a.zoom
canvas = Image.new("RGB", (len(a.idx) * (S + 4) * Z, len(rows) * (S + 4) * Z), "white")
for r, batch in enumerate(rows):
    for c in range(len(a.idx)):
        tile = Image.fromarray(to_uint8(batch[c])).resize((S * Z, S * Z), Image.NEAREST)
        canvas.paste(tile, (c * (S + 4) * Z, r * (S + 4) * Z))
Path(a.out).parent.mkdir(parents=True, exist_ok=True)
canvas.save(a.out, quality=88)
print(f"wrote {a.out}: rows LR, bicubic x4, before x4, after x1, x2, x4, HR; images {[pairs['names'][i] for i in a.idx]}")
