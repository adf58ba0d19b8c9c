"""Throughput of the tokenizer's two training steps (chapter 03's from-scratch training and chapter 04's HIT finetune,
phase 1) on the `small` preset: where the time goes (torch.profiler, top ops), then fp32 against bf16 autocast and
torch.compile, measured A/B in one run, the variants interleaved step by step (median CPU seconds of this process, as in
bench/train_throughput.py, with the helpers of msvar.devtools). Also the loss of one bf16 step beside the fp32 loss on the same
weights and batch, the numerics check of the mixed-precision path.

FLOPs are those FlopCounterMode counts in one fp32 step (convolutions and matrix products of forward and backward,
LPIPS's AlexNet included); "% of matmul" divides the achieved rate by the best 1024³ fp32 matmul rate of the same run,
and "% of conv" the bf16 rows' rate by the bf16 rate of the step's own convolutions (every Conv2d call of one step,
its shapes, stride, padding and groups, run forward and backward alone in bf16): the ceiling of a bf16 step.
The channels-last rows keep the model's weights and activations in channels-last memory format (NHWC convolutions).

    python bench/tokenizer_throughput.py                      # 1 thread, tokenizer + HIT phase 1, fp32 vs bf16
    python bench/tokenizer_throughput.py --compile --reps 7   # also torch.compile of the tokenizer (each first step compiles for minutes)
"""
import argparse, copy, time
import torch
from torch.profiler import profile, ProfilerActivity
from msvar.core import get_preset
from msvar.data import HRFolder
from msvar.devtools import CLOCK, bench_images, bench_run, best_rate, counted_flops, interleaved, matmul_gflops
from msvar.hit import HITTokenizer
from msvar.lpips import get_lpips
from msvar.tokenizer import Tokenizer
from msvar.train_tokenizer import TokenizerLoss, hit_finetune_loss, hit_param_groups
from msvar.train import StepSampler, train_step

AMP = {"fp32": None, "bf16": torch.bfloat16}


def matmul_peak(reps=30, dtype=torch.float32):
    "Best 1024³ matmul rate (GFLOP/s) by CPU time of this process, fp32 unless `dtype`."
    return matmul_gflops(1024, 1024, 1024, dtype, reps=reps, clock=CLOCK)


class Job:
    "One training step of a tokenizer model (a loss, its trained parameters, AdamW), copied per variant from the same weights."
    def __init__(self, model, loss, params_fn, lr, wd):
        self.base, self.loss, self.params_fn, self.lr, self.wd, self.copies = model, loss, params_fn, lr, wd, {}

    def get(self, key, amp=None, compile=False, channels_last=False):
        "The training Run of a key (chapter 07's AdamW, no clipping as in chapter 07a, autocast if amp)."
        if key not in self.copies:
            m = copy.deepcopy(self.base).train()
            if channels_last:
                m = m.to(memory_format=torch.channels_last)
            precision = "bf16" if amp is torch.bfloat16 else "fp32"
            self.copies[key] = bench_run(m, precision, compile, self.lr, self.wd, clip=0.0, params=self.params_fn(m))
        return self.copies[key]

    def step(self, key, batch, amp=None, compile=False, channels_last=False):
        "msvar.train.train_step: loss under autocast (if amp), backward, AdamW step, as fit does; returns the loss."
        if channels_last:
            batch = dict(batch, hr=batch["hr"].contiguous(memory_format=torch.channels_last))
        return train_step(self.get(key, amp, compile, channels_last), batch, self.loss)["loss"]


def jobs(preset, lpips):
    "The from-scratch tokenizer step (LPIPS weight 1, as msvar_train_tokenizer) and the HIT finetune's phase-1 step (LPIPS weight 5)."
    p = get_preset(preset)
    torch.manual_seed(0)
    tok = Tokenizer.from_preset(p)
    hit = HITTokenizer(copy.deepcopy(tok), p)
    g = torch.Generator().manual_seed(1)
    hit_loss = lambda net, b: hit_finetune_loss(net, b["hr"], 1, lpips, 5.0, 0.5, generator=g)
    return {"tokenizer": Job(tok, TokenizerLoss(lpips, 1.0), lambda m: None, p.train.tok_lr, p.train.tok_weight_decay),
            "HIT phase 1": Job(hit, hit_loss, lambda m: hit_param_groups(m, 1), 2.5e-4, 0.05)}


def step_flops(job, batch):
    "Convolution and matmul FLOPs of one fp32 step (forward + backward)."
    return counted_flops(lambda: job.step("flops", batch))


def conv_calls(job, batch, lpips) -> list:
    "(input shape, Conv2d) of every Conv2d call in one fp32 step of the job (the model's and LPIPS's)."
    calls, hooks = [], []
    run = job.get("convs")
    mods = {id(x): x for net in (run.model, lpips) for x in net.modules() if isinstance(x, torch.nn.Conv2d)}
    for mod in mods.values():
        hooks.append(mod.register_forward_pre_hook(lambda mod, args: calls.append((tuple(args[0].shape), mod))))
    try:
        job.step("convs", batch)
    finally:
        for h in hooks:
            h.remove()
    return calls


def conv_gflops(calls, dtype=torch.bfloat16, reps=3, channels_last=False) -> float:
    "GFLOP/s (CPU time) of the calls' convolutions alone, forward and backward (input and weight gradients), in dtype."
    work, fmt = [], torch.channels_last if channels_last else torch.contiguous_format
    for shape, mod in calls:
        x = torch.randn(shape).to(dtype).contiguous(memory_format=fmt).requires_grad_(True)
        w = mod.weight.detach().to(dtype).contiguous(memory_format=fmt).requires_grad_(True)
        work.append((x, w, mod))
    conv = lambda x, w, mod: torch.nn.functional.conv2d(x, w, None, mod.stride, mod.padding, mod.dilation, mod.groups)
    def once():
        for x, w, mod in work:
            y = conv(x, w, mod)
            torch.autograd.grad(y, (x, w), torch.ones_like(y))
    flops = counted_flops(once)
    return best_rate(once, flops, reps, clock=CLOCK)


def top_ops(job, batch, steps=2, top=10):
    "Self CPU ms per step of the `top` most expensive ops of an fp32 step, and the step's total op time."
    job.step("prof", batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps): job.step("prof", batch)
    ev = prof.key_averages()
    tot = sum(e.self_cpu_time_total for e in ev) / steps / 1e3
    ops = sorted(ev, key=lambda e: -e.self_cpu_time_total)[:top]
    return tot, [(e.key.replace("aten::", ""), e.self_cpu_time_total / steps / 1e3) for e in ops]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="training images (default: the data cache's train/, else random images)")
    ap.add_argument("--preset", default="small", choices=["test", "small"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions per variant (median)")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (fp32 and bf16); the first step compiles")
    ap.add_argument("--channels-last", action="store_true", help="also bf16 with channels-last weights and activations")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    p = get_preset(a.preset)
    data = bench_images(a.data)
    ds = HRFolder(data, p.hr_size, cache=True)
    sampler = StepSampler(len(ds), p.train.batch_size, seed=0)
    batch = lambda step: torch.utils.data.default_collate([ds[k] for k in sampler.keys(step)])   # as fit's StepLoader
    lp = get_lpips("alex")
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); fp32 matmul 1024³: {peak:.1f} GFLOP/s; preset {p.name}, "
          f"batch {p.train.batch_size} of {p.hr_size}² crops; data {data}")
    rows = []
    for name, job in jobs(a.preset, lp).items():
        b0 = batch(0)
        fl = step_flops(job, b0)
        tot, ops = top_ops(job, b0)
        print(f"\n== {name}: {fl / 1e9:.2f} GFLOP per step (fp32, conv + matmul)\nprofile (fp32, self CPU time per step, {tot:.0f} ms in ops): "
              + ", ".join(f"{k} {v:.0f} ms ({v / tot:.0%})" for k, v in ops))
        l32, l16 = job.step("n32", b0), job.step("n16", b0, torch.bfloat16)
        print(f"loss of one step on the same weights and batch: fp32 {l32:.5f}, bf16 {l16:.5f} (relative difference {abs(l16 - l32) / abs(l32):.2e})")
        fns = {v: (lambda r, v=v: job.step(v, batch(r), AMP[v])) for v in AMP}
        if a.channels_last:
            fns["bf16 channels-last"] = lambda r: job.step("bf16cl", batch(r), torch.bfloat16, channels_last=True)
        if a.compile and name == "tokenizer":          # the HIT loss calls the decoders' methods, not forward: nothing to compile
            for v in AMP:
                t0 = time.perf_counter(); job.step(v + "+compile", b0, AMP[v], compile=True)
                c0 = CLOCK(); job.step(v + "+compile", b0, AMP[v], compile=True)
                print(f"torch.compile ({v}): first step {time.perf_counter() - t0:.1f} s wall (compiles), next {CLOCK() - c0:.3f} CPU s")
                fns[v + " + compile"] = lambda r, v=v: job.step(v + "+compile", batch(r), AMP[v], compile=True)
        t = interleaved(fns, a.reps)
        peak = max(peak, matmul_peak(15))
        calls = conv_calls(job, b0, lp)
        c16n, c16l = conv_gflops(calls), conv_gflops(calls, channels_last=True)
        c16 = max(c16n, c16l)
        print(f"{'variant':22s} {'CPU s':>7s} {'img/s':>7s} {'GFLOP/s':>8s} {'%matmul':>8s} {'%conv16':>8s} {'speed-up':>8s}")
        for k, v in t.items():
            print(f"{k:22s} {v:7.3f} {p.train.batch_size / v:7.1f} {fl / v / 1e9:8.1f} {fl / v / 1e9 / peak:8.1%} "
                  f"{fl / v / 1e9 / c16:8.1%} {t['fp32'] / v:7.2f}×")
            rows.append(dict(job=name, variant=k, s=v))
        print(f"(the step's own {len(calls)} convolutions alone, forward and backward in bf16: {c16n:.1f} GFLOP/s NCHW, "
              f"{c16l:.1f} GFLOP/s channels-last; the better is the %conv16 ceiling)")
    p16 = matmul_peak(15, torch.bfloat16)
    print(f"(matmul peak for the % column: {peak:.1f} GFLOP/s fp32, best of the measurements before and after; bf16 1024³ matmul: "
          f"{p16:.1f} GFLOP/s = {p16 / peak:.1f}× fp32)")
    return rows


if __name__ == "__main__":
    main()
