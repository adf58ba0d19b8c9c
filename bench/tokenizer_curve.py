"""The tokenizer's curve: what each kept checkpoint of a tokenizer run reconstructs of held-out crops (chapter 11).

    python bench/tokenizer_curve.py --snaps runs/ship/tokenizer_snaps --data VAL_DIR --log runs/ship/tokenizer/log.jsonl \\
        --json data/msvar_small_train/quality/tokenizer_curve.json

Each `step_N.pt` in --snaps (a tokenizer checkpoint) is scored by `autoencoder_table` on the centre crops of --data:
its own tokens decoded at full size (PSNR-RGB, PSNR-Y, LPIPS, ΔE, chroma kept, fixed pattern). With --log, the
training losses (l2, LPIPS) are thinned to one mean per --every steps and stored beside them, for the plot.
"""
import argparse, json, re, sys
from pathlib import Path
import torch
from msvar.core import MsvarError
from msvar.files import list_images
from msvar.hit import center_crops
from msvar.tokenizer import load_tokenizer
from msvar.quality import autoencoder_table
from msvar.train import read_log


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snaps", required=True, help="folder of step_N.pt tokenizer checkpoints")
    ap.add_argument("--data", nargs="+", required=True, help="HR folders; their centre crops are scored")
    ap.add_argument("--log", default=None, help="the run's log.jsonl")
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    snaps = sorted(Path(a.snaps).glob("step_*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[0]))
    if not snaps: raise MsvarError(f"no step_N.pt files in {a.snaps!r}")
    preset = load_tokenizer(snaps[0])[1]
    hr = center_crops(list_images([Path(d) for d in a.data]), preset.hr_size)
    points = []
    for p in snaps:
        tok, pr = load_tokenizer(p)
        row = autoencoder_table({"t": (tok, pr)}, hr).loc["t: own tokens"].to_dict()
        points.append(dict(step=int(re.findall(r"\d+", p.stem)[0]), **row))
        print(points[-1], flush=True)
    out = dict(n=len(hr), data=[Path(d).name for d in a.data], points=points)
    if a.log:
        rows = read_log(a.log)
        out["train"] = [dict(step=rows[i]["step"], l2=sum(r["l2"] for r in rows[i:i + a.every]) / len(rows[i:i + a.every]),
                             lpips=sum(r["lpips"] for r in rows[i:i + a.every]) / len(rows[i:i + a.every]))
                        for i in range(0, len(rows), a.every)]
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    try: main()
    except MsvarError as e: print(f"tokenizer_curve: error: {e}", file=sys.stderr); sys.exit(2)
