"""Throughput of the whole VAR training step (data + degradations + frozen HIT tokenizer + VAR forward/backward + AdamW)
per preset: a torch.profiler table grouped by stage, tokens/s, images/s, achieved GFLOP/s against this machine's matmul
speed measured in the same run, and A/B ratios of the optimisations against the eager baseline.

Every ratio is taken in one run, A and B interleaved step by step, over several repetitions (median), and timed in CPU
seconds of this process (time.process_time), not wall time: on a shared machine other jobs stretch the wall time of a
step by factors that change by the minute, while the CPU time of a 1-thread step barely moves. Absolute numbers from
different runs or machines are still not comparable; ratios are. A DataLoader worker's CPU time is not counted (that
variant shows what a worker takes off the main process, which helps only where a core is free).

FLOPs are the VAR's useful matrix work only (msvar.devtools's `forward_flops` × 3 for forward + backward: linear layers
≈ 6·N_params·tokens, attention over the allowed block-causal pairs, the head and AdaLN); the frozen tokenizer's work,
the data preparation and the optimizer are counted as time, not as FLOPs. "% of matmul" divides the achieved rate by the
best 1024³ fp32 matmul rate measured in the same run with the same threads. With --bf16 --compile, one more VAR-only
row runs the bf16 + compile step as it was before the fused AdamW, the one-pass loss and the matrix-product attention
(the for-each AdamW, a log-softmax each for CE and the two DPO log-probabilities, SDPA, the tanh GELU), one the step
with SDPA's attention only, one with the tanh GELU only, and one whole step with the encoder under bf16 (--amp-encoder), for their ratios in the same run; the
bf16 VAR-only rows are also given against the bf16 rate of the step's own GEMM shapes (its ceiling), and the bf16 +
compile whole steps against the eager fp32 step. --var-only times only the VAR-only rows (a quick A/B).
With --bf16 --compile and --profile-steps > 0 it also profiles the compiled bf16 VAR-only step by kind of work (GEMMs,
the attention softmax, GELU, normalisation, optimizer, other fused kernels; inductor's C++ kernels named by their ops)
beside the time its GEMMs would take at their own bf16 rate: what keeps the step from that ceiling.

    python bench/train_throughput.py --data FOLDER                 # test and small, 1 thread, profile of small
    python bench/train_throughput.py --data FOLDER --presets small --threads 2 --reps 5
    python bench/train_throughput.py --data FOLDER --paper          # also the paper preset at batch 1 (slow)
    python bench/train_throughput.py --presets small --bf16 --compile --cold   # bf16 and compile rows, compiled from an empty cache

Without --data it uses the data cache's train/ folder (`msvar_fetch_data bsds300`), else 32 random 480×320 images.
"""
import argparse, os, tempfile, time
import torch
import torch.nn as nn
from torch.profiler import profile, record_function, ProfilerActivity
import msvar.hit as mhit
import msvar.losses as mloss
import msvar.train as mtrain
from msvar.core import get_preset, to_signed
from msvar.data import HRFolder, DegradeCollate, DegradationConfig
from msvar.devtools import (CLOCK, bench_images, bench_run, counted_flops, forward_flops, gemm_gflops, interleaved,
                            matmul_gflops, random_tokens)
from msvar.hit import HITTokenizer, hit_tokenize, encode_any, stage_grids
from msvar.quantize import MultiScaleQuantizer
from msvar.losses import (SRLoss, SRTokens, sr_loss, token_preset, upsample_lr,
                          token_ce, sequence_logprob, dpo_loss)
from msvar.tokenizer import Tokenizer
from msvar.train import StepSampler, WarmupCosine, param_groups
from msvar.var import SRVAR, count_params


@torch.no_grad()
def sr_tokens_v0(tokenizer, batch, tokens="hit"):
    "The eager baseline: sr_tokens encoding the upsampled LR twice, no_grad."
    p = token_preset(tokenizer, tokens)
    hr, lr, cls = batch["hr"].float(), batch["lr"], batch["cls"].long()
    lr_up = upsample_lr(lr, p)
    prefix = encode_any(tokenizer.tok, to_signed(lr_up))
    t_hr, t_lr = hit_tokenize(tokenizer.tok, hr, p), hit_tokenize(tokenizer.tok, lr_up, p)
    q = tokenizer.quantize
    x_hr, x_lr = q.teacher_inputs(t_hr.idx, stage_grids(p)), q.teacher_inputs(t_lr.idx, stage_grids(p))
    flat = lambda idx: torch.cat([z.flatten(1) for z in idx], 1)
    return SRTokens(prefix, cls, x_hr, flat(t_hr.idx), x_lr, flat(t_lr.idx), t_hr.idx, t_lr.idx)


def linear_gemms(rows: int, d_in: int, d_out: int) -> list:
    "The three products of a Linear layer's training step on `rows` rows: forward, input gradient, weight gradient."
    return [(rows, d_in, d_out), (rows, d_out, d_in), (d_out, rows, d_in)]


def var_gemms(m, B: int) -> list:
    "The GEMM shapes of one VAR training step at batch B: every block's Linear layers and the head, each three times."
    M, C, hidden = B * (m.n_prefix + m.n_image), m.C, m.blocks[0].ffn.fc1.out_features
    block = linear_gemms(M, C, 3 * C) + linear_gemms(M, C, C) + linear_gemms(M, C, hidden) + linear_gemms(M, hidden, C)
    return block * m.depth + linear_gemms(B * m.n_image, C, m.V)


def sr_loss_v0(model, t: SRTokens, beta=1.0):
    "The loss before one log-softmax served CE and both DPO log-probabilities: CE + DPO, each from its own log-softmax."
    logits = model(t.prefix, t.cls, t.x_hr)
    ce = token_ce(logits, t.z_hr)
    return ce + dpo_loss(sequence_logprob(logits, t.z_hr, "mean"), sequence_logprob(logits, t.z_lr, "mean"), beta), {}


class LossV0(SRLoss):
    "SRLoss with the baseline tokenization."
    def __call__(self, model, batch):
        return sr_loss(model, sr_tokens_v0(self.tokenizer, batch, self.tokens), self.dpo, self.beta, self.weight, self.second_pass, self.reduce)


class Setup:
    "Data, frozen random-weight HIT tokenizer, SRVAR and AdamW of one preset (the pieces of msvar.train.train_var)."
    def __init__(self, preset, B, data, dpo_beta=None, seed=0):
        self.p = p = get_preset(preset)
        self.B = B
        torch.manual_seed(seed)
        self.tk = HITTokenizer(Tokenizer.from_preset(p), p).eval().requires_grad_(False)
        self.ds = HRFolder(data, p.hr_size)                           # the baseline decoded every image file at every step
        self.ds_cached = HRFolder(data, p.hr_size, cache=True)        # train_var caches when the images fit
        self.collate = DegradeCollate(DegradationConfig(), p.lr_size, 0.25)
        self.sampler = StepSampler(len(self.ds), B, seed=seed)
        beta = p.train.dpo_beta if dpo_beta is None else dpo_beta
        self.loss_new, self.loss_v0 = SRLoss(self.tk, beta=beta), LossV0(self.tk, beta=beta)
        self.loss_amp = SRLoss(self.tk, beta=beta, amp_encoder=True)      # msvar_train --amp-encoder (tokens can change)
        self.models = {}

    def run(self, key="var", compile=False, precision="fp32", foreach=False, sdpa=False, tanh=False):
        """One SRVAR in a training Run of chapter 07 per key (msvar.train's AdamW, or with `foreach` the for-each one), all
        with the same initial weights."""
        if key not in self.models:
            torch.manual_seed(1)
            m = SRVAR.from_preset(self.p).train()
            for b in m.blocks:                        # sdpa: bf16 attention by SDPA's kernel, as before the matmul path
                b.attn.cpu_bf16_matmul = not sdpa
                b.ffn.cpu_bf16_sigmoid = not tanh     # tanh: bf16 GELU as nn.GELU's tanh, as before the sigmoid form
            run = bench_run(m, precision, compile, weight_decay=self.p.train.weight_decay)
            if foreach:
                run.opt = torch.optim.AdamW(param_groups(m, self.p.train.weight_decay), lr=1e-4, betas=(0.9, 0.95), foreach=True)
                run.sched = WarmupCosine(run.opt, run.cfg.steps, 0, 1.0)
            self.models[key] = run
        return self.models[key]

    def model(self, key="var"):
        "(model, what the loss sees, optimizer) of a key's run."
        run = self.run(key)
        return run.model, run.net, run.opt

    def batch(self, step, cached=False):
        "The collated, degraded batch of `step` (as fit's StepLoader makes it)."
        with record_function("data.load_crop"):
            ds = self.ds_cached if cached else self.ds
            items = [ds[k] for k in self.sampler.keys(step)]
        with record_function("data.degrade"):
            return self.collate(items)

    @property
    def tokens(self): return self.p.n_image_tokens + self.p.n_prefix_tokens

    def flops(self):
        m, *_ = self.model()
        return 3 * forward_flops(m, self.B)


def train_step(s: Setup, batch, loss_fn, key="var", compile=False, amp=None, foreach=False, sdpa=False, tanh=False):
    "One optimizer step of msvar.train.train_step (loss under autocast, backward, clip 2.0, AdamW step); its log row."
    precision = {None: "fp32", torch.bfloat16: "bf16"}[amp]
    return mtrain.train_step(s.run(key, compile, precision, foreach, sdpa, tanh), batch, loss_fn)


# ---------------------------------------------------------------- profile
STAGES = ("data.load_crop", "data.degrade", "tok.prefix_encode", "tok.encode", "tok.quantize", "tok.teacher_inputs", "var.forward",
          "loss.logsoftmax_dpo", "backward", "optimizer")


def _labelled(name, f):
    def g(*a, **k):
        with record_function(name): return f(*a, **k)
    return g


class Labelled(nn.Module):
    "The VAR under a 'var.forward' label (SRLoss calls model(...) and next(model.parameters()))."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, *a):
        with record_function("var.forward"): return self.m(*a)


def profile_step(s: Setup, loss_fn, steps=2, cached=False):
    "torch.profiler over `steps` steps (after a warm-up step): self CPU time per (stage, op)."
    m, _, opt = s.model("prof")
    patches = [(mloss, "encode_any", "tok.prefix_encode"), (mloss, "hit_tokenize", "tok.quantize"), (mhit, "encode_any", "tok.encode"),
               (MultiScaleQuantizer, "teacher_inputs", "tok.teacher_inputs")]
    saved = [(mod, n, getattr(mod, n)) for mod, n, _ in patches]
    sr_tok_old = globals()["hit_tokenize"], globals()["encode_any"]
    try:
        for mod, n, lab in patches: setattr(mod, n, _labelled(lab, getattr(mod, n)))
        globals()["hit_tokenize"] = mloss.hit_tokenize; globals()["encode_any"] = mloss.encode_any
        net = Labelled(m)

        def one(step):
            b = s.batch(step, cached)
            with record_function("loss.logsoftmax_dpo"): loss, _ = loss_fn(net, b)
            with record_function("backward"): loss.backward()
            with record_function("optimizer"):
                torch.nn.utils.clip_grad_norm_(m.parameters(), 2.0); opt.step(); opt.zero_grad(set_to_none=True)
        one(0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(steps): one(1 + i)
    finally:
        for mod, n, f in saved: setattr(mod, n, f)
        globals()["hit_tokenize"], globals()["encode_any"] = sr_tok_old
    return group_by_stage(prof.events(), steps)


def _stage_of(e):
    "Innermost stage label enclosing event e (None if none)."
    par = e.cpu_parent
    while par is not None:
        if par.name in STAGES: return par.name
        par = par.cpu_parent
    return None


def group_by_stage(events, steps):
    "({stage: {op: self CPU µs per step}}, {stage: wall µs per step excluding nested stages}): ops charged to their innermost stage."
    table, wall = {}, {}
    for e in events:
        if e.name.startswith("ProfilerStep"): continue
        st = _stage_of(e) or "other"
        if e.name in STAGES:                                   # a label: its wall time goes to it, and is removed from its parent
            wall[e.name] = wall.get(e.name, 0.0) + e.cpu_time_total / steps
            if st != "other": wall[st] = wall.get(st, 0.0) - e.cpu_time_total / steps
            continue
        table.setdefault(st, {}).setdefault(e.name, 0.0)
        table[st][e.name] += e.self_cpu_time_total / steps
    return table, wall


def print_profile(res, top=6):
    table, wall = res
    total, wtotal = sum(sum(d.values()) for d in table.values()), sum(wall.values())
    print(f"\nprofile of one step (mean of the profiled steps): wall {wtotal / 1e3:.0f} ms inside the stage labels, "
          f"{total / 1e3:.0f} ms self CPU time in ops (the rest is Python and dispatch)")
    print(f"{'stage':22s} {'wall ms':>8s} {'share':>6s} {'ops ms':>7s}   top ops by self CPU time (ms)")
    order = [s_ for s_ in STAGES if s_ in table or s_ in wall] + [s_ for s_ in table if s_ not in STAGES]
    for st in order:
        d = table.get(st, {}); t = sum(d.values()); w = wall.get(st, 0.0)
        ops = ", ".join(f"{k.replace('aten::', '')} {v / 1e3:.1f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top])
        print(f"{st:22s} {w / 1e3:8.1f} {w / wtotal:6.1%} {t / 1e3:7.1f}   {ops}")
    allops = {}
    for d in table.values():
        for k, v in d.items(): allops[k] = allops.get(k, 0.0) + v
    print("top ops over the whole step (share of op time): " + ", ".join(f"{k.replace('aten::', '')} {v / total:.1%}"
                                                     for k, v in sorted(allops.items(), key=lambda kv: -kv[1])[:12]))


KERNEL_KINDS = (  # (kind, words in an op or inductor kernel name), first match wins
    ("GEMM", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "_linear_pointwise", "aten::_addmm_activation")),
    ("loss (log-softmax, DPO)", ("log_softmax", "nll", "gather")),
    ("attention softmax", ("softmax",)),
    ("GELU", ("gelu", "tanh", "sigmoid")),
    ("normalisation (LayerNorm, AdaLN, q/k)", ("layer_norm", "norm", "rsqrt", "var_mean")),
    ("optimizer", ("adamw", "foreach", "vector_norm")),
)


def kernel_kind(name: str) -> str:
    "The kind of work an op or an inductor C++ kernel (cpp_fused_<ops>) does, from its name."
    low = name.lower()
    for kind, words in KERNEL_KINDS:
        if any(w in low for w in words):
            return kind
    if "cpp_fused" in low:
        return "fused elementwise, other"
    if "compiledfxgraph" in low:
        return "compiled graph, outside named kernels"
    return "other ops, copies"


def profile_compiled_var(s: Setup, steps=3):
    """Self CPU time per kind of work in the VAR-only bf16 + compile step (inductor's fused kernels named by their
    ops): where the time goes besides the GEMMs. Compiles its own copy of the model with kernel profiling on."""
    import torch._inductor.config as inductor_config
    inductor_config.cpp.enable_kernel_profile = True
    torch._dynamo.reset()  # compile afresh: a graph compiled earlier (for another copy of the model) has no kernel names
    try:
        t = mloss.sr_tokens(s.tk, s.batch(0))
        loss = lambda net, t: sr_loss(net, t, True, s.loss_new.beta)
        for _ in range(2):  # compile, then one warm step
            train_step(s, t, loss, "prof16c", compile=True, amp=torch.bfloat16)
        c0 = CLOCK()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                train_step(s, t, loss, "prof16c", compile=True, amp=torch.bfloat16)
        per_step = (CLOCK() - c0) / steps
    finally:
        inductor_config.cpp.enable_kernel_profile = False
    kinds, names = {}, {}
    for e in prof.events():
        if e.name.startswith("ProfilerStep") or e.self_cpu_time_total <= 0:
            continue
        k = kernel_kind(e.name)
        kinds[k] = kinds.get(k, 0.0) + e.self_cpu_time_total / steps / 1e6
        names.setdefault(k, {}).setdefault(e.name, 0.0)
        names[k][e.name] += e.self_cpu_time_total / steps / 1e6
    return per_step, kinds, names


def print_compiled_profile(res, gemm_seconds):
    per_step, kinds, names = res
    total = sum(kinds.values())
    print(f"\nprofile of the VAR-only bf16 + compile step: {per_step:.3f} CPU s per step (with the profiler on), "
          f"{total:.3f} s self time in ops and kernels; the step's GEMMs at their own bf16 rate would take "
          f"{gemm_seconds:.3f} s")
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        top = sorted(names[k].items(), key=lambda kv: -kv[1])[:3]
        tops = ", ".join(f"{n.replace('aten::', '')[:48]} {t * 1e3:.0f}" for n, t in top)
        print(f"  {k:40s} {v * 1e3:7.1f} ms {v / total:6.1%}   {tops}")


# ---------------------------------------------------------------- A/B ratios
def matmul_peak(reps=30, dtype=torch.float32):
    "Best 1024³ matmul rate (GFLOP/s) by CPU time of this process, fp32 unless `dtype`."
    return matmul_gflops(1024, 1024, 1024, dtype, reps=reps, clock=CLOCK)


def tokenizer_variants(s: Setup, reps):
    "Seconds of sr_tokens per batch: the baseline vs msvar's current one (same batch), and whether they agree."
    b = s.batch(0)
    a, n = sr_tokens_v0(s.tk, b), mloss.sr_tokens(s.tk, b)
    same = all(torch.equal(getattr(a, f), getattr(n, f)) for f in ("prefix", "x_hr", "z_hr", "x_lr", "z_lr"))
    t = interleaved({"v0": lambda r: sr_tokens_v0(s.tk, b), "new": lambda r: mloss.sr_tokens(s.tk, b)}, reps)
    fl = {k: counted_flops(lambda f=f: f(s.tk, b)) for k, f in (("v0", sr_tokens_v0), ("new", mloss.sr_tokens))}
    return t, same, fl


def step_variants(s: Setup, reps, extra=()):
    "Median seconds of the whole step (data included) for each variant, interleaved; the first is the eager baseline."
    fns = {"eager baseline": lambda r: train_step(s, s.batch(r), s.loss_v0, "v0"),
           "+ sr_tokens: 1 batched pass": lambda r: train_step(s, s.batch(r), s.loss_new, "new"),
           "+ images cached (= default in fp32)": lambda r: train_step(s, s.batch(r, True), s.loss_new, "cached")}
    if "bf16" in extra: fns["+ bf16 autocast (= default, bf16 CPU)"] = lambda r: train_step(s, s.batch(r, True), s.loss_new, "bf16", amp=torch.bfloat16)
    if "workers" in extra:                                  # fit's StepLoader with one DataLoader worker: data prepared while the step runs
        from msvar.train import StepLoader
        it1 = StepLoader(s.ds_cached, s.B, s.collate, num_workers=1, seed=0).iterate(0, 10**9)
        fns["+ data in 1 worker (main CPU only)"] = lambda r: train_step(s, next(it1)[0], s.loss_new, "w1")
    if "compile" in extra: fns["+ torch.compile (fp32)"] = lambda r: train_step(s, s.batch(r, True), s.loss_new, "compiled", compile=True)
    if "compile" in extra and "bf16" in extra:
        fns["+ bf16 + compile (= default, ≥1000 steps)"] = lambda r: train_step(s, s.batch(r, True), s.loss_new, "bf16c", compile=True, amp=torch.bfloat16)
        fns["  (the same with SDPA attention)"] = lambda r: train_step(s, s.batch(r, True), s.loss_new, "bf16cs", compile=True, amp=torch.bfloat16, sdpa=True)
        fns["  (the same with tanh GELU)"] = lambda r: train_step(s, s.batch(r, True), s.loss_new, "bf16ct", compile=True, amp=torch.bfloat16, tanh=True)
        fns["  (the same with --amp-encoder)"] = lambda r: train_step(s, s.batch(r, True), s.loss_amp, "bf16ca", compile=True, amp=torch.bfloat16)
    return interleaved(fns, reps)


def model_only(s: Setup, reps, extra=()):
    "Median seconds of the VAR part only (fwd + loss + bwd + AdamW on pre-tokenized batches): the rate the transformer reaches."
    b = s.batch(0)
    t = mloss.sr_tokens(s.tk, b)
    loss = lambda net, t: sr_loss(net, t, True, s.loss_new.beta)
    fns = {"eager": lambda r: train_step(s, t, loss, "mo")}
    if "bf16" in extra: fns["bf16"] = lambda r: train_step(s, t, loss, "mo16", amp=torch.bfloat16)
    if "bf16" in extra and "compile" in extra:
        fns["bf16 + compile"] = lambda r: train_step(s, t, loss, "mo16c", compile=True, amp=torch.bfloat16)
        loss_v0 = lambda net, t: sr_loss_v0(net, t, s.loss_new.beta)
        fns["bf16 + compile, before: 3 log-softmax, for-each AdamW, SDPA, tanh GELU"] = lambda r: train_step(
            s, t, loss_v0, "mo16c0", compile=True, amp=torch.bfloat16, foreach=True, sdpa=True, tanh=True)
        fns["bf16 + compile, SDPA attention"] = lambda r: train_step(s, t, loss, "mo16cs", compile=True, amp=torch.bfloat16, sdpa=True)
        fns["bf16 + compile, tanh GELU"] = lambda r: train_step(s, t, loss, "mo16ct", compile=True, amp=torch.bfloat16, tanh=True)
    if "compile" in extra: fns["compile"] = lambda r: train_step(s, t, loss, "moc", compile=True)
    return interleaved(fns, reps)


def stage_times(s: Setup, reps):
    "Median seconds per stage of one step, by timing the stages separately (interleaved)."
    b = s.batch(0); t = mloss.sr_tokens(s.tk, b)
    var_part = lambda r: train_step(s, t, lambda net, t: sr_loss(net, t, True, s.loss_new.beta), "st")
    return interleaved({"data": lambda r: s.batch(r), "data (cached images)": lambda r: s.batch(r, True), "tokenizer": lambda r: mloss.sr_tokens(s.tk, b), "var+opt": var_part}, reps)


def gemm_rate(s: Setup, dtype=torch.float32):
    "GFLOP/s of the step's own matrix products (every Linear's forward, input-grad and weight-grad GEMM at batch B, in `dtype`)."
    m, *_ = s.model()
    return gemm_gflops(var_gemms(m, s.B), dtype, reps=3, clock=CLOCK)


def compile_seconds(s: Setup, amp=None, key="compiled"):
    "WALL seconds of the first call of a torch.compile'd VAR step (compile + one step; inductor compiles in worker processes,\n    whose CPU time process_time misses; a warm inductor cache makes it much shorter) and CPU seconds of a second call."
    b = s.batch(0, True)
    t0 = time.perf_counter(); train_step(s, b, s.loss_new, key, compile=True, amp=amp); t1 = time.perf_counter()
    c0 = CLOCK(); train_step(s, b, s.loss_new, key, compile=True, amp=amp)
    return t1 - t0, CLOCK() - c0


def var_only_rows(s: Setup, a, extra, peak):
    "Only the VAR-only rows and their ceilings (--var-only): a quicker A/B of a change to the transformer's step."
    mo = model_only(s, a.reps, extra)
    fl, g16 = s.flops(), gemm_rate(s, torch.bfloat16)
    print(f"{'variant':52s} {'CPU s':>7s} {'GFLOP/s':>8s} {'%GEMM16':>8s} {'speed-up':>8s}")
    for k, v in mo.items():
        print(f"VAR only ({k}){'':{max(0, 41 - len(k))}s} {v:7.3f} {fl / v / 1e9:8.1f} {fl / v / 1e9 / g16:8.1%} {mo['eager'] / v:7.2f}×")
    print(f"(%GEMM16: the rate against the step's own GEMM shapes in bf16, {g16:.1f} GFLOP/s in this run)")
    if "bf16" in extra and "compile" in extra and a.profile_steps:
        print_compiled_profile(profile_compiled_var(s, max(a.profile_steps, 2)), fl / g16 / 1e9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="training images (default: the data cache's train/, else random images)")
    ap.add_argument("--presets", nargs="+", default=["test", "small"], choices=["test", "small"])
    ap.add_argument("--paper", action="store_true", help="also the paper preset's VAR step at batch 1 (model only; minutes on a CPU)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions per variant (median)")
    ap.add_argument("--profile-steps", type=int, default=2, help="steps profiled (0: no profile)")
    ap.add_argument("--var-only", action="store_true", help="only the VAR-only rows (no data, tokenizer or whole steps)")
    ap.add_argument("--bf16", action="store_true", help="also measure bf16 autocast (changes numerics; an option of msvar_train)")
    ap.add_argument("--workers", action="store_true", help="also measure a DataLoader worker process preparing the data (--workers 1)")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile of the VAR (compile time printed)")
    ap.add_argument("--cold", action="store_true", help="compile with an empty inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR): the first run's cost")
    a = ap.parse_args(argv)
    if a.cold: os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="msvar_inductor_")
    torch.set_num_threads(a.threads)
    data = bench_images(a.data)
    extra = (("bf16",) if a.bf16 else ()) + (("compile",) if a.compile else ()) + (("workers",) if a.workers else ())
    peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); fp32 matmul 1024³: {peak:.1f} GFLOP/s; data {data}")
    print("all times are CPU seconds of this process (time.process_time), medians of interleaved repetitions; with more than "
          "1 thread they add up the threads' time, so use --threads 1 for ratios on a shared machine")
    rows = []
    for name in a.presets:
        p = get_preset(name)
        B = a.batch or p.train.batch_size
        s = Setup(name, B, data)
        m, *_ = s.model()
        print(f"\n== {name}: SRVAR {count_params(m) / 1e6:.2f}M params, {s.tokens} tokens/image ({p.n_prefix_tokens} prefix), batch {B}, "
              f"VAR fwd+bwd {s.flops() / 1e9:.2f} GFLOP/step")
        if name == "small" and a.profile_steps and not a.var_only:
            print("\n-- eager baseline --", end=""); print_profile(profile_step(s, s.loss_v0, a.profile_steps))
            print("\n-- current msvar (sr_tokens: one batched pass; images cached) --", end=""); print_profile(profile_step(s, s.loss_new, a.profile_steps, cached=True))
        if a.var_only:
            var_only_rows(s, a, extra, peak)
            continue
        st = stage_times(s, a.reps)
        tot = st["data"] + st["tokenizer"] + st["var+opt"]
        print("stages timed apart (median s): " + ", ".join(f"{k} {v:.3f} ({v / tot:.0%})" for k, v in st.items()))
        tt, same, tfl = tokenizer_variants(s, a.reps)
        print(f"sr_tokens work per batch (FlopCounterMode: convolutions and matmuls): baseline {tfl['v0'] / 1e9:.2f} GFLOP, "
              f"now {tfl['new'] / 1e9:.2f} GFLOP ({tfl['v0'] / tfl['new']:.2f}× less)")
        print(f"sr_tokens: baseline {tt['v0']:.3f} s, one batched pass without re-encoding the prefix {tt['new']:.3f} s → {tt['v0'] / tt['new']:.2f}× (identical outputs: {same})")
        if "compile" in extra:
            c1, c2 = compile_seconds(s, torch.bfloat16, "bf16c") if "bf16" in extra else compile_seconds(s)   # the step msvar_train compiles
            print(f"torch.compile ({'bf16' if 'bf16' in extra else 'fp32'}): first step (compile) {c1:.1f} s wall ({'cold' if a.cold else 'maybe warm'} inductor cache), next step {c2:.3f} CPU s")
        mo = model_only(s, a.reps, extra)
        peak = max(peak, matmul_peak(15))
        sv = step_variants(s, a.reps, extra)
        peak = max(peak, matmul_peak(15))
        fl = s.flops()
        print(f"{'variant':36s} {'CPU s':>7s} {'img/s':>7s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'%matmul':>8s} {'speed-up':>8s}")
        base = sv["eager baseline"]
        print("(variants marked + add up from top to bottom up to the fp32 default; bf16 (msvar_train's default where the CPU computes bf16 "
              "natively), worker and compile are each added to the fp32 default alone, and bf16 + compile together: msvar_train's "
              "default for runs of at least 1000 steps)")
        for k, v in list(sv.items()) + [(f"VAR only ({k2}, no data/tokenizer)", v2) for k2, v2 in mo.items()]:
            print(f"{k:36s} {v:7.3f} {B / v:7.1f} {B * s.tokens / v:9.0f} {fl / v / 1e9:8.1f} {fl / v / 1e9 / peak:8.1%} {base / v:7.2f}×")
            rows.append(dict(preset=name, variant=k, s=v))
        g = gemm_rate(s)
        print(f"(matmul peak for the % column: {peak:.1f} GFLOP/s, best of the measurements before/after; the step's own GEMM shapes "
              f"alone reach {g:.1f} GFLOP/s = {g / peak:.0%} of it: the ceiling of an eager fp32 step)")
        if "bf16" in extra:
            p16 = matmul_peak(15, torch.bfloat16)
            best16 = min(v for k, v in mo.items() if "bf16" in k)
            g16 = gemm_rate(s, dtype=torch.bfloat16)
            print(f"(bf16 1024³ matmul: {p16:.1f} GFLOP/s = {p16 / peak:.1f}× the fp32 rate; against it the fastest bf16 VAR-only row "
                  f"reaches {fl / best16 / 1e9 / p16:.0%}; the step's own GEMM shapes in bf16 reach {g16:.1f} GFLOP/s = {g16 / p16:.0%} of it)")
            for k, v in mo.items():
                if "bf16" in k:
                    print(f"VAR only ({k}): {fl / v / 1e9:.1f} GFLOP/s = {fl / v / 1e9 / g16:.0%} of its own GEMM shapes' bf16 rate")
            for k in [k for k in sv if "bf16 + compile" in k or "(the same" in k]:
                print(f"whole step {k.strip()}: {sv['+ images cached (= default in fp32)'] / sv[k]:.2f}× the eager fp32 default step, "
                      f"{sv['eager baseline'] / sv[k]:.2f}× the eager baseline")
            if "compile" in extra and a.profile_steps:
                print_compiled_profile(profile_compiled_var(s, max(a.profile_steps, 2)), fl / g16 / 1e9)
    if a.paper:
        s = Setup("paper", 1, data)
        m, *_ = s.model()
        t = torch.Generator().manual_seed(0)
        tk = random_tokens(s.p, 1, torch.device("cpu"), t)
        mo = interleaved({"eager": lambda r: train_step(s, tk, lambda net, t: sr_loss(net, t, True), "var")}, 1)
        fl = s.flops()
        print(f"\n== paper (VAR only, random tokens, batch 1): {mo['eager']:.1f} s/step, {s.tokens / mo['eager']:.0f} tokens/s, "
              f"{fl / mo['eager'] / 1e9:.1f} GFLOP/s ({fl / mo['eager'] / 1e9 / peak:.0%} of matmul)")
    return rows


if __name__ == "__main__":
    main()
