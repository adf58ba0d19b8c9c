"""What a user sees: PSNR-Y / LPIPS at ×1, ×2, ×4 of a model's outputs beside bicubic, on any image folders (chapter 11).

    python bench/quality.py --model data/msvar_small.safetensors --data TEST/Set14 TEST/BSD100
    python bench/quality.py --var runs/x/last.pt --tokenizer hit.pt --data ... --decode greedy topk50 soft1+colour0.5 --class 2
    python bench/quality.py --model data/msvar_small.safetensors --data ... --ceiling --tf --json out.json

Each `--data` folder is a paired folder (`hr/` + `lr/`) or an HR folder whose centre crops are degraded at `--seed`
(the protocol of `msvar_eval`). Rows: bicubic and bilinear upsampling (at ×1 both are the degraded input itself), the
tokenizer ceiling (`--ceiling`: the HR crops' own HIT tokens, decoded), and the model under each decoding setting; the
goal_x1/x2/x4 columns say whether the model meets every criterion of the goal (chapter 11). `--tf` adds the teacher-forced test cross-entropy, token
accuracy and prefix worth (CE with another crop's LR − CE with its own).
"""
import argparse, sys, time
from pathlib import Path
import torch
from msvar.core import MsvarError, get_preset
from msvar.evaluate import load_pairs
from msvar.inference import sr_model_from_checkpoint, DEFAULT_OUTPUT, DEFAULT_CLASS, CLASSES
from msvar.var import DEFAULT_DECODING
from msvar.quality import quality_table, save_quality


DEFAULT_SETTING = f"{DEFAULT_DECODING}+fix{DEFAULT_OUTPUT.fix}"  # what msvar_sr writes by default


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an msvar model file (msvar_sr --model)")
    ap.add_argument("--var", help="a VAR training checkpoint (msvar_train's last.pt); needs --tokenizer")
    ap.add_argument("--tokenizer", help="the HIT tokenizer the VAR was trained with")
    ap.add_argument("--data", nargs="+", required=True, help="HR folders (degraded at --seed) or paired folders (hr/ + lr/)")
    ap.add_argument("--preset", default="small", help="crop sizes when no model is given")
    ap.add_argument("-n", type=int, default=None, help="at most n images per folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decode", nargs="+", default=[DEFAULT_SETTING],
                    help=f"greedy, sample, softT, topkK, toppP, cfgT and colourS (the colour fix), joined by + (default {DEFAULT_SETTING}: msvar_sr's)")
    ap.add_argument("--class", dest="cls", type=int, default=DEFAULT_CLASS, choices=list(CLASSES), help=f"the class every crop is decoded as (default {DEFAULT_CLASS}, as msvar_sr)")
    ap.add_argument("--ceiling", action="store_true", help="also the tokenizer ceiling (HR → HIT tokens → image)")
    ap.add_argument("--tf", action="store_true", help="also the teacher-forced test CE, accuracy and prefix worth")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--name", default="msvar", help="row label of the model")
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    if a.model: from msvar.inference import load_sr_model; model = load_sr_model(a.model, device="cpu")
    elif a.var and a.tokenizer: model = sr_model_from_checkpoint(a.var, a.tokenizer)
    elif a.var or a.tokenizer: raise MsvarError("--var and --tokenizer go together")
    else: model = None
    preset = model.preset if model is not None else get_preset(a.preset)
    parts = [load_pairs(d, preset, a.n, a.seed) for d in a.data]
    pairs = {k: torch.cat([p[k] for p in parts]) for k in ("hr", "lr", "cls")}
    pairs["cls"] = torch.full_like(pairs["cls"], a.cls)                      # the class asked for, as msvar_sr --class
    pairs["names"] = [f"{Path(d).name}/{nm}" for d, p in zip(a.data, parts) for nm in p["names"]]
    pairs["preset"] = preset
    t0 = time.perf_counter()
    res = quality_table(model, pairs, a.decode, a.ceiling, a.tf, a.name, a.batch_size, a.seed)
    print(f"{res['n']} crops ({preset.lr_size} → {preset.hr_size} px) of {', '.join(Path(d).name for d in a.data)}, degradation seed {a.seed}; "
          "PSNR on Y (dB, border 0), LPIPS-alex; ×1 of bicubic/bilinear = the degraded input")
    out = res["table"].round(3).astype(object)
    for m, g in res["goals"].items():
        for k, v in g.items(): out.loc[m, f"goal_{k}"] = "yes" if v else "no"
    print(out.fillna("").to_string())
    if res["teacher_forced"]: print("teacher-forced: " + ", ".join(f"{k} {v:.4f}" for k, v in res["teacher_forced"].items()))
    print(f"{time.perf_counter() - t0:.0f} s")
    if a.json: save_quality(res, a.json, data=[Path(d).name for d in a.data], seed=a.seed, decodes=a.decode,
                            model=a.model or f"{a.var} + {a.tokenizer}")
    return res


if __name__ == "__main__":
    try: main()
    except MsvarError as e: print(f"quality: error: {e}", file=sys.stderr); sys.exit(2)
