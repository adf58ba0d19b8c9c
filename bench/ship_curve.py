"""Teacher-forced test CE, accuracy and prefix worth of the snapshots kept by bench/keep_snapshots.sh (chapter 11's curve).

    python bench/ship_curve.py --snaps runs/ship/snaps --tokenizer runs/ship/hit.pt --data TEST/Set14 TEST/BSD100 --json curve.json
"""
import argparse, json, re
from pathlib import Path
import torch
from msvar.evaluate import load_pairs
from msvar.inference import sr_model_from_checkpoint
from msvar.quality import teacher_forced
from msvar.hit import load_sr_tokenizer

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--snaps", required=True); ap.add_argument("--tokenizer", required=True)
ap.add_argument("--data", nargs="+", required=True); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--json", required=True); ap.add_argument("--threads", type=int, default=None)
a = ap.parse_args()
if a.threads: torch.set_num_threads(a.threads)
tk = load_sr_tokenizer(a.tokenizer)
parts = [load_pairs(d, tk.preset, None, a.seed) for d in a.data]
pairs = {k: torch.cat([p[k] for p in parts]) for k in ("hr", "lr", "cls")}
rows = []
for f in sorted(Path(a.snaps).glob("step_*.pt"), key=lambda f: int(re.findall(r"\d+", f.stem)[0])):
    ck = torch.load(f, map_location="cpu", weights_only=True)
    r = dict(step=ck["step"], **teacher_forced(sr_model_from_checkpoint(ck, tk), pairs))
    print(r, flush=True); rows.append(r)
Path(a.json).write_text(json.dumps(rows, indent=1))
