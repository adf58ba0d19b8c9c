"""Training-step benchmark of the SR VAR: step time and achieved GFLOP/s against this machine's measured matmul GFLOP/s.

One step = teacher-forced forward of the VAR on random tokens, CE + DPO (one pass, as in training), backward, AdamW
step. The tokenizer is left out (it is frozen and its cost is reported separately for `small` with --with-tokenizer).
FLOPs are counted by torch.utils.flop_counter on one step (matmuls and attention; elementwise ops are not counted), so
"achieved GFLOP/s" is the rate of useful matrix work and the ratio to the matmul peak says how well the step uses it.

The `paper` preset (310M parameters, 4476 tokens per image) is very slow on a CPU: by default it is measured at a
reduced depth (--paper-depth 2 of 16, same width and sequence) and the full-depth step time is extrapolated from the
FLOP count at the same achieved rate; pass --paper-depth 16 to measure the real thing (needs ~12 GB of memory).

On a shared machine the matmul peak and the step are measured seconds apart under different loads, so the ratio is
noisy (a ratio above 1 means the peak was measured at a busier moment); --threads 1 gives the steadiest numbers.

    python bench/train_step.py                       # small (batch 8) and paper (batch 1, depth 2) on CPU
    python bench/train_step.py --device cuda --precision bf16 --batch-small 64 --batch-paper 16 --paper-depth 16
"""
import argparse, time
import torch
from msvar.core import get_preset, default_device
from msvar.devtools import bench_run, counted_flops, matmul_gflops, random_tokens
from msvar.var import SRVAR, count_params
from msvar.losses import sr_loss
from msvar.train import train_step


def sync(dev):
    if dev.type == "cuda": torch.cuda.synchronize()


def bench(preset, B, dev, precision, steps, depth=None):
    "Seconds per training step and FLOPs per step of the VAR of `preset` (optionally at a reduced depth)."
    p = get_preset(preset) if isinstance(preset, str) else preset                # a name, or a Preset (bench/geometry.py)
    torch.manual_seed(0)
    m = SRVAR.from_preset(p, **({} if depth is None else dict(depth=depth))).to(dev).train()
    run = bench_run(m, precision)                                 # AdamW (weight decay 0.005), clipping at 2.0, autocast
    t = random_tokens(p, B, dev, torch.Generator().manual_seed(0))
    step = lambda: train_step(run, t, lambda net, b: sr_loss(net, b, dpo=True))
    flops = counted_flops(step)                                   # also the warm-up
    sync(dev); t0 = time.perf_counter()
    for _ in range(steps): step()
    sync(dev)
    return (time.perf_counter() - t0) / steps if steps else float("nan"), flops, count_params(m), p.n_image_tokens + p.n_prefix_tokens, m.depth, p.var.depth


def tokenizer_seconds(B, dev):
    "Seconds to tokenize one small-preset batch (prefix, z_HR, z_LR, teacher inputs) with a random HIT tokenizer."
    from msvar.hit import HITTokenizer
    from msvar.tokenizer import Tokenizer
    from msvar.losses import sr_tokens
    p = get_preset("small")
    torch.manual_seed(0)
    tk = HITTokenizer(Tokenizer.from_preset(p), p).to(dev).eval()
    b = dict(hr=torch.rand(B, 3, 64, 64), lr=torch.rand(B, 3, 16, 16), cls=torch.zeros(B, dtype=torch.long))
    sr_tokens(tk, b); sync(dev); t0 = time.perf_counter(); sr_tokens(tk, b); sync(dev)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    ap.add_argument("--batch-small", type=int, default=8)
    ap.add_argument("--batch-paper", type=int, default=1)
    ap.add_argument("--paper-depth", type=int, default=2, help="depth at which the paper preset is measured (16 = full)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps for small (paper: 1)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--with-tokenizer", action="store_true", help="also time the frozen tokenizer's work per small batch")
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    dev = default_device(a.device)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[a.precision]
    peak = matmul_gflops(2048, 2048, 2048, dt, reps=3, device=dev)
    print(f"device {dev}, {torch.get_num_threads()} threads, precision {a.precision}: matmul {peak:.1f} GFLOP/s (2048³, best of 3)")
    print(f"{'preset':8} {'params':>9} {'tokens':>6} {'batch':>5} {'depth':>9} {'s/step':>8} {'GFLOP/step':>10} {'GFLOP/s':>8} {'ratio':>6}  note")
    for pr in a.presets:
        full = get_preset(pr).var.depth
        depth = None if pr != "paper" or a.paper_depth >= full else a.paper_depth
        B = a.batch_paper if pr == "paper" else a.batch_small
        sec, flops, n, tokens, d, dfull = bench(pr, B, dev, a.precision, 1 if pr == "paper" else a.steps, depth)
        rate = flops / sec / 1e9
        note = ""
        if d != dfull:
            with torch.device("meta"):
                m_full = SRVAR.from_preset(get_preset(pr), init=False)
            # full-depth FLOPs: per-block FLOPs are equal, so scale the block part; the rest (head, embeddings) is shared
            _, flops1, *_ = bench(pr, B, dev, a.precision, 0, depth=1)
            flops_full = flops1 + (flops - flops1) * (dfull - 1) / (d - 1) if d > 1 else flops * dfull
            note = (f"measured at depth {d}; full depth {dfull} ({count_params(m_full) / 1e6:.0f}M params): "
                    f"{flops_full / 1e9:.0f} GFLOP/step ≈ {flops_full / 1e9 / rate:.0f} s/step at the same rate")
        print(f"{pr:8} {n / 1e6:8.2f}M {tokens:6d} {B:5d} {f'{d}/{dfull}':>9} {sec:8.3f} {flops / 1e9:10.1f} {rate:8.1f} {rate / peak:6.2f}  {note}")
    if a.with_tokenizer:
        print(f"small: frozen-tokenizer work per batch of {a.batch_small} (prefix + z_HR + z_LR + teacher inputs): {tokenizer_seconds(a.batch_small, dev):.3f} s")


if __name__ == "__main__":
    main()
