"""Benchmark of the super-resolution VAR (msvar.var): sampling with the KV cache vs. recomputing the whole
sequence (LR prefix included) at every step, beside the most the cache can save (the FLOPs of recomputing over the
FLOPs of the cached pass, kv_cache_flops below), and teacher-forced forward+backward throughput beside this
machine's measured fp32 matmul speed. With --sr, msvar_sr's own throughput on the shipped `small` model
(data/msvar_small.safetensors): images/s of `upscale` on the demo LR images with the default decoding, and the
cache's speed-up in that setting (batch of 8 tiles, soft decoding). Sampling times are CPU seconds of this process,
medians of interleaved repetitions; all ratios come from one run (the machine is noisy).

    python bench/sample.py                      # small and paper presets (paper takes several minutes on a CPU)
    python bench/sample.py --presets small      # quick
    python bench/sample.py --presets small --sr --threads 2   # also msvar_sr's images/s and cache speed-up
    python bench/sample.py --var-d6             # also VAR's reference configuration d6 (no prefix), for comparison with VAR's own code

The tokenizer side of sampling is the stand-in of chapter 05 (random codebook, φ = identity): its cost is
negligible next to the transformer's, so the timings are the transformer's.
"""
import argparse, math, sys, time
import torch
import torch.nn.functional as F
from msvar.core import data_dir, get_preset, seed_everything, MsvarError
from msvar.files import load_image
from msvar.devtools import CLOCK, forward_flops, gemm_gflops, interleaved, matmul_gflops, stand_in
from msvar.hit import HITState
from msvar.inference import load_sr_model, tile_starts, upscale
from msvar.var import DEFAULT_DECODING, SRVAR, count_params, Decoding, mask_pairs


def kv_cache_flops(m: SRVAR) -> tuple:
    """Useful FLOPs per row of sampling all L scales (cached, recomputed): with the KV cache every token passes the
    blocks once (the work of one teacher-forced forward); recomputing passes the whole sequence so far at every step.
    Their ratio is the most the cache can speed sampling up."""
    C, hidden, P = m.C, m.blocks[0].ffn.fc1.out_features, m.n_prefix
    linear = lambda n: 2 * n * m.depth * (4 * C * C + 2 * C * hidden)
    attn = lambda pns: 4 * C * mask_pairs(pns, P) * m.depth
    head = 2 * m.n_image * C * m.V  # the head sees each scale's new tokens only, either way
    seen = [P + sum(pn * pn for pn in m.patch_nums[: l + 1]) for l in range(m.L)]
    recomputed = sum(linear(n) + attn(m.patch_nums[: l + 1]) for l, n in enumerate(seen)) + head
    return linear(seen[-1]) + attn(m.patch_nums) + head, recomputed


def time_sampling(m, st, prefix, cls, cfg, use_cache):
    "CPU seconds for one greedy sampling pass, and the token maps it chose."
    t0 = CLOCK()
    out = m.generate(prefix, cls, st, Decoding("greedy", cfg=cfg), use_cache=use_cache)
    return CLOCK() - t0, out


def sampling_gemms(m, rows: int, use_cache: bool) -> list:
    "The (m, k, n) products of one sampling pass's Linear layers and head (inference: forward only), per step."
    C, H, P = m.C, m.blocks[0].ffn.fc1.out_features, m.n_prefix
    block = lambda M: [(M, C, 3 * C), (M, C, C), (M, C, H), (M, H, C)] * m.depth
    shapes, seen = (block(rows * P) if use_cache and P else []), P
    for pn in m.patch_nums:
        seen += pn * pn
        shapes += block(rows * (pn * pn if use_cache else seen)) + [(rows * pn * pn, C, m.V)]
    return shapes


def gemm_seconds(shapes) -> float:
    "CPU seconds of the products at the rate this machine reaches on them (fp32, best of 3)."
    return sum(2 * a * b * c for a, b, c in shapes) / gemm_gflops(shapes, reps=3, clock=CLOCK) / 1e9


def cache_line(m, t_c, t_n, rows=1):
    """The cache's measured speed-up beside the most it can give: FLOPs recomputed over FLOPs cached, and the same
    for the Linear layers' products timed alone at their own shapes (small products run slower per FLOP)."""
    cached, recomputed = kv_cache_flops(m)
    g = gemm_seconds(sampling_gemms(m, rows, False)) / gemm_seconds(sampling_gemms(m, rows, True))
    return (f"cache is {t_n / t_c:.1f}× faster; FLOPs say at most {recomputed / cached:.1f}× "
            f"({t_n / t_c / (recomputed / cached):.0%} of it); the Linear products alone, timed at their shapes, "
            f"{g:.1f}× ({t_n / t_c / g:.0%} of it)")


def time_train_step(m, st, prefix, cls, idx, iters: int):
    "Best seconds of one teacher-forced forward+backward over `iters` runs (after one warm-up run if iters > 1)."
    m.train()
    with torch.no_grad(): x = st.q.teacher_inputs(idx)
    target = torch.cat([i.flatten(1) for i in idx], 1)
    best = math.inf
    for it in range(iters + (iters > 1)):
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(prefix, cls, x).flatten(0, 1), target.flatten())
        loss.backward(); m.zero_grad(set_to_none=True)
        if iters == 1 or it > 0: best = min(best, time.perf_counter() - t0)
    m.eval()
    return best


def bench_preset(name, args, peak):
    "Print the cache ratio and training throughput of one preset."
    p = get_preset(name)
    torch.manual_seed(args.seed)
    m = SRVAR.from_preset(p).eval()
    B = args.batch_sample
    st, prefix, cls, idx = stand_in(m, max(B, args.batch_train[name]), args.seed)
    n_tok = m.n_prefix + m.n_image
    print(f"\n== {name}: {count_params(m):,} params, {m.n_prefix} prefix + {m.n_image} image tokens, depth {m.depth}, width {m.C}")
    cfg = None if args.cfg < 0 else args.cfg
    s_pre, s_cls = (prefix[:B] if prefix is not None else None), cls[:B]
    if name != "paper": time_sampling(m, st, s_pre, s_cls, cfg, True)   # warm-up (first-call overheads)
    t_c, out_c = time_sampling(m, st, s_pre, s_cls, cfg, True)
    t_n, out_n = time_sampling(m, st, s_pre, s_cls, cfg, False)
    same = all(torch.equal(a, b) for a, b in zip(out_c, out_n))
    rows = B * (2 if cfg is not None else 1)
    print(f"sampling {B} image(s) (cfg={cfg}, {rows} rows, greedy): KV cache {t_c:.2f} s, recompute everything {t_n:.2f} s "
          f"→ {cache_line(m, t_c, t_n, rows)}; same tokens: {same}")
    Bt = args.batch_train[name]
    tb_pre = prefix[:Bt] if prefix is not None else None
    peak = max(peak, matmul_gflops(1024, 1024, 1024, reps=20))   # re-measured next to the step: the machine's load changes by the minute
    t = time_train_step(m, st, tb_pre, cls[:Bt], [i[:Bt] for i in idx], args.iters if name != "paper" else 1)
    peak = max(peak, matmul_gflops(1024, 1024, 1024, reps=20))
    fl = 3 * forward_flops(m, Bt)
    print(f"teacher-forced fwd+bwd, batch {Bt}: {t:.2f} s/step, {Bt * n_tok / t:,.0f} tokens/s (prefix included), "
          f"{fl / t / 1e9:.1f} GFLOP/s achieved vs {peak:.1f} GFLOP/s fp32 matmul, best measured before/after ({fl / t / 1e9 / peak:.0%})")
    return dict(preset=name, sample_cache_s=t_c, sample_nocache_s=t_n, ratio=t_n / t_c, train_step_s=t, tokens_per_s=Bt * n_tok / t,
                gflops=fl / t / 1e9, peak=peak)


def bench_var_d6(args, peak):
    "VAR's reference configuration d6 (256 px schedule, no prefix) for comparison with VAR's own code."
    p = get_preset("paper")
    torch.manual_seed(args.seed)
    m = SRVAR(vocab_size=4096, z_channels=32, patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), depth=6, embed_dim=384, num_heads=6,
              num_classes=3, pos_grid=16, prefix_side=None).eval()
    st, _, cls, idx = stand_in(m, 2, args.seed)
    t = time_train_step(m, st, None, cls, idx, args.iters)
    t_s, _ = time_sampling(m, st, None, cls[:1], 4.0, True, top_k=900, top_p=0.96, generator=torch.Generator().manual_seed(args.seed))
    print(f"\n== VAR d6 configuration without prefix ({count_params(m):,} params, 680 tokens): fwd+bwd batch 2 {t:.2f} s/step "
          f"(VAR's code here: about 1.3 s), sampling 1 image with CFG {t_s:.2f} s (VAR's code here: about 3.7 s)")


def bench_sr(args):
    "msvar_sr's throughput with the shipped small model: images/s of upscale, and the cache's speed-up in its setting."
    model = load_sr_model(data_dir() / "msvar_small.safetensors").eval()
    images = [load_image(f) for f in sorted((data_dir() / "demo" / "lr").glob("*.png"))]
    p, var = model.preset, model.var
    print(f"\n== msvar_sr, shipped small model: {len(images)} demo LR images of {tuple(images[0].shape[1:])}, tiles of "
          f"{p.lr_size}² LR pixels, decoding {DEFAULT_DECODING}, {args.reps} interleaved repetitions")
    run_all = lambda r: [upscale(x, model) for x in images]
    lr = torch.stack([images[0][:, :p.lr_size, :p.lr_size]] * 8)            # one batch of 8 tiles, as upscale makes them
    prefix, cls = model.prefix(lr), torch.zeros(8, dtype=torch.long)
    gen = lambda use_cache: var.generate(prefix, cls, HITState(model.hit.quantize, p), DEFAULT_DECODING, use_cache=use_cache)
    t = interleaved({"upscale": run_all, "cache": lambda r: gen(True), "recompute": lambda r: gen(False)}, args.reps)
    n_tiles = lambda x: len(tile_starts(x.shape[1], p.lr_size, p.lr_size // 4)) * len(tile_starts(x.shape[2], p.lr_size, p.lr_size // 4))
    tiles = sum(n_tiles(x) for x in images)
    print(f"upscale (as msvar_sr): {len(images) / t['upscale']:.2f} images/s ({tiles / t['upscale']:.1f} tiles/s, "
          f"{tiles} tiles), {t['upscale'] / len(images):.3f} CPU s per image")
    print(f"VAR sampling of 8 tiles: KV cache {t['cache']:.3f} s, recompute {t['recompute']:.3f} s → "
          f"{cache_line(var, t['cache'], t['recompute'], 8)}")
    return dict(images_per_s=len(images) / t["upscale"], cache_ratio=t["recompute"] / t["cache"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["small", "paper"], choices=["test", "small", "paper"])
    ap.add_argument("--batch-sample", type=int, default=1, help="images per sampling pass")
    ap.add_argument("--cfg", type=float, default=-1, help="guidance scale for sampling; negative = no guidance (default)")
    ap.add_argument("--iters", type=int, default=3, help="training steps timed (best of); the paper preset times one")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--var-d6", action="store_true", help="also time VAR's d6 configuration without prefix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sr", action="store_true", help="also msvar_sr's images/s and cache speed-up with the shipped small model")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of the --sr measurements (median)")
    args = ap.parse_args(argv)
    args.batch_train = dict(test=8, small=8, paper=1)
    if args.threads: torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    peak = matmul_gflops(1024, 1024, 1024, reps=20)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul (1024³): {peak:.1f} GFLOP/s")
    try:
        res = [bench_preset(n, args, peak) for n in args.presets]
        if args.var_d6: bench_var_d6(args, peak)
        if args.sr: bench_sr(args)
    except MsvarError as e:
        print(f"bench/sample.py: error: {e}", file=sys.stderr); sys.exit(1)
    print("\npreset   cache ratio   train tokens/s   GFLOP/s   matmul GFLOP/s")
    for r in res: print(f"{r['preset']:8s} {r['ratio']:10.1f}×   {r['tokens_per_s']:14,.0f}   {r['gflops']:7.1f}   {r['peak']:14.1f}")


if __name__ == "__main__":
    main()
