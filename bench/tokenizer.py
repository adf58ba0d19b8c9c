"""Tokenizer throughput: encode + multi-scale quantization (image → L token maps) in images/s for the
`small` and `paper` presets, and the share of that time spent in quantization. Randomly initialised
weights (speed does not depend on them). One run; the machine is noisy, so compare the ratios printed
in the same run, not numbers across runs.

    python bench/tokenizer.py [--threads N] [--repeats R]
"""
import argparse, time
import torch
from msvar.tokenizer import Tokenizer
from msvar.core import get_preset


def timed(fn, repeats, warmup=True):
    "Best-of-`repeats` wall time of fn() in seconds (after one warm-up call if `warmup`)."
    if warmup: fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best


def bench(preset_name, batch, repeats, warmup=True):
    p = get_preset(preset_name)
    tok = Tokenizer.from_preset(p).eval()
    x = torch.rand(batch, 3, p.hr_size, p.hr_size) * 2 - 1
    with torch.inference_mode():
        f = tok.encode(x)
        t_enc = timed(lambda: tok.encode(x), repeats, warmup)           # encoder + quant_conv
        t_q = timed(lambda: tok.quantize.f_to_idx(f), repeats, warmup)  # multi-scale quantization (L steps)
    t_all = t_enc + t_q
    return dict(preset=preset_name, hr=p.hr_size, batch=batch, enc_s=t_enc, quant_s=t_q, total_s=t_all,
                img_per_s=batch / t_all, quant_share=t_q / t_all)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {dev}, torch threads {torch.get_num_threads()}")
    rows = [bench("small", 16, a.repeats), bench("paper", 1, 1, warmup=False)]   # paper: one 512-px image, one timed call
    print(f"{'preset':8} {'HR px':>6} {'batch':>6} {'encode s':>9} {'quantize s':>11} {'enc+quant s':>11} {'images/s':>9} {'quant share':>12}")
    for r in rows:
        print(f"{r['preset']:8} {r['hr']:>6} {r['batch']:>6} {r['enc_s']:>9.3f} {r['quant_s']:>11.3f} {r['total_s']:>11.3f} {r['img_per_s']:>9.2f} {r['quant_share']:>11.1%}")
    s, pp = rows
    print(f"small/paper throughput ratio: {s['img_per_s'] / pp['img_per_s']:.0f}×")


if __name__ == "__main__":
    main()
