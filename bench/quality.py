"""What a user sees: PSNR-Y / LPIPS at ×1, ×2, ×4 of a model's outputs beside bicubic, on any image folders.

    python bench/quality.py --model data/msvar_small.pt --data TEST/Set14 TEST/BSD100
    python bench/quality.py --var runs/x/last.pt --tokenizer hit.pt --data ... --decode greedy topk50 cfg1.5
    python bench/quality.py --data ... --ceiling            # + the tokenizer's own ceiling (HR → HIT tokens → image)

Each `--data` folder is either a paired folder (`hr/` + `lr/`) or an HR folder whose centre crops are degraded at `--seed`
(the protocol of `msvar_eval`). The table's rows: bicubic and bilinear upsampling (at ×1 both are the degraded input
itself), the tokenizer ceiling, and the model under each decoding setting; its last columns say whether the model meets
issue 14's goal (×2/×4: LPIPS ≤ 0.8 × bicubic's and PSNR ≥ bicubic − 1 dB; ×1: PSNR ≥ input − 1 dB and LPIPS ≤ input's).
`--tf` adds the teacher-forced test cross-entropy, token accuracy and the "prefix worth" (CE with another crop's LR − CE
with its own) of a HIT model: how much the model reads its input.
"""
import argparse, json, sys, time
from pathlib import Path
import torch
import pandas as pd
from msvar.core import MsvarError, get_preset
from msvar.evaluate import load_pairs, baseline_outputs, evaluate_outputs
from msvar.hit import reconstruct_scales


def load_model(args):
    "An SRModel from a model file, or from a VAR training checkpoint plus its tokenizer."
    from msvar.inference import load_sr_model, SRModel, LEGACY_VAR_OPTIONS
    if args.model: return load_sr_model(args.model, device="cpu")
    if not (args.var and args.tokenizer): return None
    from msvar.train import load_sr_tokenizer, load_checkpoint
    from msvar.var import SRVAR
    tk = load_sr_tokenizer(args.tokenizer)
    ck = load_checkpoint(args.var)
    meta = ck["meta"]
    var = SRVAR.from_preset(tk.preset, init=False, **meta.get("var_options", LEGACY_VAR_OPTIONS))
    var.load_state_dict(ck["model"])
    return SRModel(tk, var.eval(), tokens="hit" if meta.get("hit", True) else "plain").eval()


def parse_decode(s: str) -> dict:
    "greedy | sample | topkK | toppP | cfgT (combinable with '+', e.g. topk50+cfg1.5)."
    kw = dict(greedy=False)
    for part in s.split("+"):
        if part == "greedy": kw["greedy"] = True
        elif part == "sample": pass
        elif part.startswith("topk"): kw["top_k"] = int(part[4:])
        elif part.startswith("topp"): kw["top_p"] = float(part[4:])
        elif part.startswith("cfg"): kw["cfg"] = float(part[3:])
        else: raise MsvarError(f"unknown decoding {part!r}: use greedy, sample, topkK, toppP, cfgT")
    return kw


@torch.no_grad()
def model_outputs(model, lr, cls, batch_size: int, seed: int, **kw) -> list:
    g = torch.Generator().manual_seed(seed)
    outs = [[] for _ in model.preset.stages]
    for i in range(0, len(lr), batch_size):
        for n, y in enumerate(model.sr_batch(lr[i:i + batch_size], cls=int(cls[i]), generator=g, **kw)): outs[n].append(y)
    return [torch.cat(o) for o in outs]


@torch.no_grad()
def ceiling_outputs(model, hr, batch_size: int) -> list:
    "The best any VAR could do with this tokenizer: the HR image's own HIT tokens, decoded at each stage."
    outs = [[] for _ in model.preset.stages]
    for i in range(0, len(hr), batch_size):
        for n, y in enumerate(reconstruct_scales(model.hit, hr[i:i + batch_size], "hit")): outs[n].append(y)
    return [torch.cat(o) for o in outs]


@torch.no_grad()
def teacher_forced(model, pairs, batch_size: int) -> dict:
    "Test CE, accuracy, and prefix worth (CE with the LR of another crop − CE with its own), teacher-forced on z_HR."
    from msvar.losses import sr_tokens, sr_loss
    ce, ce_other, acc, n = 0.0, 0.0, 0.0, 0
    for i in range(0, len(pairs["hr"]), batch_size):
        b = {k: pairs[k][i:i + batch_size] for k in ("hr", "lr", "cls")}
        if len(b["hr"]) < 2: continue
        t = sr_tokens(model.hit, b, hit=model.tokens == "hit")
        _, logs = sr_loss(model.var, t, dpo=False)
        t.prefix = t.prefix.roll(1, 0)                                   # every crop gets its neighbour's LR
        _, logs2 = sr_loss(model.var, t, dpo=False)
        k = len(b["hr"]); n += k
        ce += logs["ce"] * k; ce_other += logs2["ce"] * k; acc += logs["acc"] * k
    return dict(test_ce=ce / n, test_acc=acc / n, prefix_worth=(ce_other - ce) / n)


def wide(per: pd.DataFrame) -> pd.DataFrame:
    t = per.groupby(["method", "scale"], sort=False)[["psnr", "lpips"]].mean().unstack("scale")
    t.columns = [f"{m}_{s}" for m, s in t.columns]
    return t.loc[list(dict.fromkeys(per.method))]


def meets_goal(t: pd.DataFrame, name: str) -> dict:
    b, m = t.loc["bicubic"], t.loc[name]
    return {"x1_ok": bool(m.psnr_x1 >= b.psnr_x1 - 1 and m.lpips_x1 <= b.lpips_x1),
            "x2_ok": bool(m.lpips_x2 <= 0.8 * b.lpips_x2 and m.psnr_x2 >= b.psnr_x2 - 1),
            "x4_ok": bool(m.lpips_x4 <= 0.8 * b.lpips_x4 and m.psnr_x4 >= b.psnr_x4 - 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="an msvar model file (msvar_sr --model)")
    ap.add_argument("--var", help="a VAR training checkpoint (msvar_train's last.pt); needs --tokenizer")
    ap.add_argument("--tokenizer", help="the HIT tokenizer the VAR was trained with")
    ap.add_argument("--data", nargs="+", required=True, help="HR folders (degraded at --seed) or paired folders (hr/ + lr/)")
    ap.add_argument("--preset", default="small", help="crop sizes when no model is given")
    ap.add_argument("-n", type=int, default=None, help="at most n images per folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decode", nargs="+", default=["greedy"], help="decoding settings: greedy, sample, topkK, toppP, cfgT, joined by +")
    ap.add_argument("--ceiling", action="store_true", help="also the tokenizer ceiling (HR → HIT tokens → image)")
    ap.add_argument("--tf", action="store_true", help="also the teacher-forced test CE, accuracy and prefix worth")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--name", default="msvar", help="row label of the model")
    ap.add_argument("--json", help="also write the table (and settings) to this JSON file")
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    model = load_model(a)
    preset = model.preset if model is not None else get_preset(a.preset)
    parts = [load_pairs(d, preset, a.n, a.seed) for d in a.data]
    pairs = {k: torch.cat([p[k] for p in parts]) for k in ("hr", "lr", "cls")}
    pairs["names"] = [f"{Path(d).name}/{nm}" for d, p in zip(a.data, parts) for nm in p["names"]]
    lr, hr = pairs["lr"], pairs["hr"]
    methods = {"bicubic": baseline_outputs(lr, preset, "bicubic"), "bilinear": baseline_outputs(lr, preset, "bilinear")}
    seconds = {}
    if model is not None:
        if a.ceiling: methods["tokenizer ceiling"] = ceiling_outputs(model, hr, a.batch_size)
        for d in a.decode:
            t0 = time.perf_counter()
            methods[f"{a.name} [{d}]"] = model_outputs(model, lr, pairs["cls"], a.batch_size, a.seed, **parse_decode(d))
            seconds[d] = time.perf_counter() - t0
    per = evaluate_outputs(methods, hr, preset, pairs["names"])
    t = wide(per)
    print(f"{len(hr)} crops ({preset.lr_size} → {preset.hr_size} px) from {', '.join(a.data)}, degradation seed {a.seed}; "
          f"PSNR on Y (dB, border 0), LPIPS-alex (lower is better); ×1 of bicubic/bilinear = the degraded input")
    goals = {m: meets_goal(t, m) for m in t.index if m.startswith(a.name)}
    out = t.round(3)
    for m, g in goals.items():
        for k, v in g.items(): out.loc[m, k] = "yes" if v else "no"
    print(out.to_string())
    extra = {}
    if model is not None and a.tf:
        extra = teacher_forced(model, pairs, a.batch_size)
        print("teacher-forced: " + ", ".join(f"{k} {v:.4f}" for k, v in extra.items()))
    if seconds: print("decoding time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    if a.json:
        Path(a.json).write_text(json.dumps(dict(data=a.data, n=len(hr), seed=a.seed, table=t.reset_index().to_dict("records"),
                                                goals=goals, teacher_forced=extra, seconds=seconds), indent=1))
    return t


if __name__ == "__main__":
    try: main()
    except MsvarError as e: print(f"quality: error: {e}", file=sys.stderr); sys.exit(2)
