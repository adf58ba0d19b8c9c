"""The tokenizer lever (chapter 11): what base tokenizers reconstruct of 64-px test crops at full size, without
the quantizer and from their own tokens, beside bicubic upsampling of the clean 16-px crop.

    python bench/tokenizer_ceiling.py --tok lambda1=runs/repro_small/tokenizer/last.pt lambda0.1=runs/tok_lp01b/last.pt \\
        --data TEST/Set14 TEST/BSD100 --json data/msvar_small_train/quality/tokenizers.json
"""
import argparse, json, time
from pathlib import Path
import torch
from msvar.files import list_images
from msvar.hit import center_crops
from msvar.tokenizer import load_tokenizer
from msvar.quality import autoencoder_table

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--tok", nargs="+", required=True, help="NAME=PATH of tokenizer checkpoints (msvar_train_tokenizer's last.pt)")
ap.add_argument("--data", nargs="+", required=True, help="HR image folders; their centre crops at the preset's HR size are scored")
ap.add_argument("--threads", type=int, default=None); ap.add_argument("--json", default=None)
a = ap.parse_args()
if a.threads: torch.set_num_threads(a.threads)
toks = {}
for spec in a.tok:
    name, _, path = spec.rpartition("=")
    if not path: raise SystemExit(f"--tok takes NAME=PATH, got {spec!r}")
    tok, preset = load_tokenizer(path)
    toks[name] = (tok, preset)
p = next(iter(toks.values()))[1]
hr = center_crops(list_images([Path(d) for d in a.data]), p.hr_size)
t0 = time.perf_counter()
t = autoencoder_table(toks, hr, lr_size=p.lr_size)
print(f"{len(hr)} crops of {p.hr_size} px from {', '.join(Path(d).name for d in a.data)}; PSNR-Y / PSNR-RGB in dB, LPIPS-alex")
print(t.round(3).to_string()); print(f"{time.perf_counter() - t0:.0f} s")
if a.json:
    Path(a.json).write_text(json.dumps(dict(n=len(hr), data=[Path(d).name for d in a.data], tokenizers={k: v for k, v in (s.rpartition("=")[::2] for s in a.tok)},
                                            table=t.reset_index(names="row").to_dict("records")), indent=1))
