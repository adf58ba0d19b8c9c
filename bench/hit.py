"""Benchmark: Hierarchical Image Tokenization vs plain multi-scale tokenization of the same images.

HIT encodes the image once per stage (at s_n × its size) and re-applies earlier steps on every
stage grid, so it costs more than VAR's single pass. This script measures the ratio, in one run,
for the `small` and `paper` presets (random weights: the cost does not depend on training).

    python bench/hit.py [--reps 3] [--batch 4] [--threads N]
"""
import argparse, time
import torch
from msvar.core import get_preset
from msvar.tokenizer import Tokenizer
from msvar.hit import hit_tokenize, plain_tokenize

def best_of(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
    return min(ts)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, best of {a.reps}")
    print(f"{'preset':8s} {'plain s/img':>12s} {'HIT s/img':>12s} {'HIT/plain':>10s}")
    for name in a.presets:
        p = get_preset(name); torch.manual_seed(0)
        tok = Tokenizer.from_preset(p).eval()
        x = torch.rand(a.batch if name != "paper" else max(1, a.batch // 4), 3, p.hr_size, p.hr_size)
        with torch.no_grad():
            tp = best_of(lambda: plain_tokenize(tok, x, p), a.reps)
            th = best_of(lambda: hit_tokenize(tok, x, p), a.reps)
        n = len(x)
        print(f"{name:8s} {tp / n:12.4f} {th / n:12.4f} {th / tp:10.2f}")

if __name__ == "__main__":
    main()
