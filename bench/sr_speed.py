"""Benchmark: msvar_sr's speed beside RRDBNet ×4 (Real-ESRGAN's network) on the same CPU and inputs, and where the time
of msvar's generation goes, each part against its FLOP bound.

    python bench/sr_speed.py [--sizes 64x64 96x96 256x192] [--threads 1 2] [--reps 3] [--profile 96x96]
                             [--variants] [--compile-check 96x96] [--check-images 4] [--json data/bench/sr_speed.json]

It prints, in one run:
1. the CPU: whether it computes bf16 natively (its flags) and a measured bf16/fp32 matrix-product ratio;
2. seconds per image and output megapixels per second (×4) of `upscale` with the shipped model and msvar_sr's defaults
   (×2 and ×4, the model file's decoding), in fp32 and in bf16 (msvar_sr's default, precision 'auto', picks bf16 where
   the CPU computes it natively: the bench says which), and of RRDBNet ×4 (23 RRDB blocks, 64 channels, growth 32; random weights:
   its speed does not depend on them) in fp32 and bf16, called in turn (devtools.interleaved) so that the machine's
   load falls on each alike; medians of this process's CPU seconds at one thread (a shared machine stretches them
   much less than wall time), of wall seconds at more;
3. the time split by part of one `upscale` call (prefix encoder, each scale's transformer pass, output head, sampling,
   f̂ accumulation, stage decoders, colour fix, tiling and blending), each with its FLOPs and its FLOP bound at the
   precision it runs in (the measured matrix-product peak), in fp32 and in msvar_sr's default precision; then, per
   size, msvar's least possible time (its FLOPs at the best precision's peak) beside RRDBNet's measured time;
4. with --variants: candidate settings, each a row against the default in the same run, with how far its ×4 output is
   from the default's; with --compile-check: torch.compile of the transformer blocks against eager, its warm-up
   included; with --check-images: bf16 against fp32 on crops of the bundled images (PSNR-RGB, LPIPS).
The timing hooks live in this file only: the package is timed as it is.
"""

import argparse, contextlib, copy, json, time
from collections import defaultdict
from pathlib import Path
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
import msvar.inference as inference
from msvar.core import bundled_images, resize, resolve_precision
from msvar.devtools import CLOCK, interleaved, matmul_gflops
from msvar.files import load_image
from msvar.inference import (
    DEFAULT_OUTPUT,
    DEFAULT_SCALES,
    OutputSettings,
    load_sr_model,
    tile_grid,
    upscale,
)
from msvar.metrics import lpips_distance, psnr
from msvar.quantize import ScaleState
from msvar.var import Decoding

ROOT = Path(__file__).resolve().parents[1]
WALL = time.perf_counter  # wall clock: with 2 threads, CPU time would add both threads up


def clock_for(threads: int):
    "The clock of a timing at `threads` threads: this process's CPU seconds at one, wall seconds at more."
    return CLOCK if threads == 1 else WALL


# --- the yardstick: RRDBNet ×4, written from the architecture (ESRGAN, Wang et al. 2018) ---
class DenseBlock(nn.Module):
    "Residual dense block: five 3×3 convolutions, each seeing the block's input and all earlier outputs."

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        widths = [nf + i * gc for i in range(5)]
        outs = [gc, gc, gc, gc, nf]
        self.convs = nn.ModuleList(nn.Conv2d(w, o, 3, padding=1) for w, o in zip(widths, outs))

    def forward(self, x):
        feats = [x]
        for conv in self.convs[:-1]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return x + 0.2 * self.convs[-1](torch.cat(feats, 1))


class RRDB(nn.Module):
    "Residual-in-residual dense block: three dense blocks and a scaled skip."

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(nf, gc) for _ in range(3)))

    def forward(self, x):
        return x + 0.2 * self.blocks(x)


class RRDBNet(nn.Module):
    "RRDBNet ×4: first convolution, a trunk of RRDBs, two nearest ×2 upsamplings each with a convolution, two more."

    def __init__(self, nb: int = 23, nf: int = 64, gc: int = 32):
        super().__init__()
        self.first = nn.Conv2d(3, nf, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(nf, gc) for _ in range(nb)))
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.up1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.up2 = nn.Conv2d(nf, nf, 3, padding=1)
        self.hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.last = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x):
        fea = self.first(x)
        fea = fea + self.trunk_conv(self.trunk(fea))
        fea = F.leaky_relu(self.up1(F.interpolate(fea, scale_factor=2, mode="nearest")), 0.2)
        fea = F.leaky_relu(self.up2(F.interpolate(fea, scale_factor=2, mode="nearest")), 0.2)
        return self.last(F.leaky_relu(self.hr(fea), 0.2))


# --- the CPU ---
def cpu_flags() -> set:
    "The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return set()
    line = next((ln for ln in info.read_text().splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def cpu_name() -> str:
    "The CPU's model name (Linux /proc/cpuinfo), else the platform's processor string."
    import platform

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return name or platform.processor() or "unknown CPU"


def native_bf16(flags: set) -> str:
    "Which native bf16 arithmetic the flags show: AMX, AVX-512-BF16, or none."
    if "amx_bf16" in flags:
        return "AMX-BF16"
    if "avx512_bf16" in flags:
        return "AVX-512-BF16"
    return "none"


def peak_gflops(threads: int) -> dict:
    "Measured GFLOP/s (best of 10) of a 1024³ matrix product in fp32 and bf16 at `threads` threads."
    torch.set_num_threads(threads)
    clock = clock_for(threads)
    rate = lambda dt: matmul_gflops(1024, 1024, 1024, dtype=getattr(torch, dt), reps=10, clock=clock)
    return {dt: rate(dt) for dt in ("float32", "bfloat16")}


# --- the runs ---
def msvar_run(model, **kw):
    """One `upscale` as msvar_sr calls it by default (×2 and ×4, the model file's decoding) but in fp32, `kw`
    (overlap, batch_size, precision) overriding; given as an OutputSettings where upscale takes one."""
    output = OutputSettings(**{"scales": DEFAULT_SCALES, "precision": "fp32", **kw})
    return lambda x: upscale(x, model, output, model.decoding)


def rrdb_run(net: nn.Module, dtype):
    "One RRDBNet ×4 forward of a (3, H, W) image in `dtype`."
    net = copy.deepcopy(net).to(dtype)

    @torch.no_grad()
    def run(x):
        return net(x[None].to(dtype))[0]

    return run


def on_input(fn, x, warm):
    "fn for devtools.interleaved: its warm-up call (r = -1) on the small `warm` input, the timed ones on `x`."
    return lambda r: fn(warm if r < 0 else x)


def n_tiles(h: int, w: int, tile: int, step: int) -> int:
    "Tiles `upscale` generates for an h×w input with the default overlap, starts on a grid of `step` input px."
    ov = DEFAULT_OUTPUT.tile_overlap(tile)
    starts_h, starts_w = tile_grid(h, w, tile, ov, step)
    return len(starts_h) * len(starts_w)


def speed_table(model, rrdb, sizes, threads, reps) -> list:
    "Rows (threads, size, tiles, {name: median seconds}) of msvar and RRDBNet fp32/bf16, timed in turn."
    warm = torch.rand(3, 16, 16)
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        for h, w in sizes:
            x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h * w))
            fns = dict(msvar_fp32=msvar_run(model), msvar_bf16=msvar_run(model, precision="bf16"))
            fns.update(rrdb_fp32=rrdb_run(rrdb, torch.float32), rrdb_bf16=rrdb_run(rrdb, torch.bfloat16))
            secs = interleaved({k: on_input(f, x, warm) for k, f in fns.items()}, reps, clock=clock_for(t))
            rows.append((t, (h, w), n_tiles(h, w, model.preset.lr_size, model.tile_step), secs))
            print_speed_row(*rows[-1])
    return rows


def print_speed_row(t, size, tiles, secs):
    "One line of the speed table."
    h, w = size
    mpix = 16 * h * w / 1e6
    cells = "  ".join(f"{secs[k]:7.2f} s {mpix / secs[k]:6.3f} MP/s" for k in SPEED_COLUMNS)
    best = min(secs["rrdb_fp32"], secs["rrdb_bf16"])
    ratios = f"{best / secs['msvar_fp32']:5.2f}× {best / secs['msvar_bf16']:5.2f}×"
    print(f"{t:>2} {w:>4}×{h:<4} {tiles:>4}  {cells}  {ratios}", flush=True)


SPEED_COLUMNS = ("msvar_fp32", "msvar_bf16", "rrdb_fp32", "rrdb_bf16")


# --- where the time goes ---
class Parts:
    "Exclusive wall seconds and FLOPs of labelled parts: time between two marks goes to the label on top of the stack."

    def __init__(self, clock=WALL):
        self.stack, self.sec, self.flops = [], defaultdict(float), defaultdict(float)
        self.calls, self.counter, self.clock, self.f0 = defaultdict(int), None, clock, 0
        self.t0 = clock()

    def _mark(self):
        "Charge the time and FLOPs since the last mark to the label on top."
        t = self.clock()
        f = self.counter.get_total_flops() if self.counter else 0
        if self.stack:
            self.sec[self.stack[-1]] += t - self.t0
            self.flops[self.stack[-1]] += f - self.f0
        self.t0, self.f0 = t, f

    def push(self, label: str):
        "Start part `label` (inside the part on top)."
        self._mark()
        self.stack.append(label)
        self.calls[label] += 1

    def pop(self):
        "End the part on top."
        self._mark()
        self.stack.pop()

    def top(self) -> str:
        "The label on top ('' when none)."
        return self.stack[-1] if self.stack else ""

    def wrap(self, fn, label: str):
        "`fn` timed as part `label`."

        def timed(*a, **kw):
            self.push(label)
            try:
                return fn(*a, **kw)
            finally:
                self.pop()

        return timed


def patch(undo: list, owner, name: str, value):
    "Set owner.name = value, remembering how to restore it."
    undo.append((owner, name, owner.__dict__.get(name, None), name in owner.__dict__))
    setattr(owner, name, value)


def restore(undo: list):
    "Undo `patch`es, last first."
    for owner, name, old, had in reversed(undo):
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


def wrap_picker(parts: Parts, picker):
    "Decoding.picker whose picks are timed as 'sampling'."
    return lambda self, generator=None: parts.wrap(picker(self, generator), "sampling (soft: softmax over V)")


def pass_hooks(parts: Parts, var, hooks: list):
    """Hooks that time the transformer's passes: the prefix pass, then each scale's blocks; the output head apart."""
    scales = [f"transformer scale {k + 1} ({pn}×{pn})" for k, pn in enumerate(var.patch_nums)]
    seen = {"n": 0}

    def before_blocks(mod, args):
        if parts.top().startswith("transformer"):
            parts.pop()
        label = "transformer prefix pass" if seen["n"] == 0 and var.prefix_side else scales[seen["n"] - 1]
        seen["n"] += 1
        parts.push(label)

    def before_head(mod, args):
        parts.pop()
        parts.push("output head (logits)")

    def after_head(mod, args, out):
        parts.pop()

    hooks.append(var.blocks[0].register_forward_pre_hook(before_blocks))
    hooks.append(var.head_nm.register_forward_pre_hook(before_head))
    hooks.append(var.head.register_forward_hook(after_head))
    return seen


def instrument(model, parts: Parts) -> list:
    "Time the parts of `upscale(…, model)`: (patches, hooks), undone by `uninstrument`."
    undo, hooks = [], []
    seen = pass_hooks(parts, model.var, hooks)
    batch = model.sr_batch

    def sr_batch(*a, **kw):
        seen["n"] = 0 if model.var.prefix_side else 1
        return parts.wrap(batch, "sampling rest (next input, bookkeeping)")(*a, **kw)

    patch(undo, model, "sr_batch", sr_batch)
    patch(undo, model, "prefix", parts.wrap(model.prefix, "prefix encoder (tokenizer encoder)"))
    patch(undo, model.hit, "decode_stage", parts.wrap(model.hit.decode_stage, "stage decoders"))
    patch(undo, Decoding, "picker", wrap_picker(parts, Decoding.picker))
    for name in ("add", "next_input", "fhat"):
        patch(undo, ScaleState, name, parts.wrap(getattr(ScaleState, name), "f̂ accumulation (codebook sums)"))
    patch(undo, inference, "colour_fix_scales", parts.wrap(inference.colour_fix_scales, "colour fix"))
    return undo, hooks


def uninstrument(undo: list, hooks: list):
    "Remove the patches and hooks of `instrument`."
    for h in hooks:
        h.remove()
    restore(undo)


def profile(model, x, autocast: bool = False) -> Parts:
    "Seconds (one timed call, after an untimed one) and FLOPs (a third call, counted) of each part of one upscale."
    fn = msvar_run(model)
    ctx = (lambda: torch.autocast("cpu", torch.bfloat16)) if autocast else contextlib.nullcontext
    with ctx():
        fn(x)
    timed, counted = Parts(clock_for(torch.get_num_threads())), Parts()
    for parts in (timed, counted):
        undo, hooks = instrument(model, parts)
        try:
            with (
                ctx(),
                FlopCounterMode(display=False) if parts is counted else contextlib.nullcontext() as fc,
            ):
                parts.counter = fc
                parts.wrap(fn, "tiling and blending")(x)
        finally:
            uninstrument(undo, hooks)
    timed.flops = counted.flops
    return timed


def print_profile(parts: Parts, peak: float, best: float, dtype: str):
    "The table of parts: seconds, share, GFLOPs, FLOP bound at `peak` GFLOP/s, time at that bound."
    total = sum(parts.sec.values())
    print(f"{'part':<44} {'calls':>5} {'s':>7} {'share':>6} {'GFLOP':>7} {'bound s':>8} {'of bound':>8}")
    for label, s in sorted(parts.sec.items(), key=lambda kv: -kv[1]):
        gf = parts.flops[label] / 1e9
        bound = gf / peak
        eff = f"{bound / s:7.1%}" if gf else "   (no GEMM)"
        print(f"{label:<44} {parts.calls[label]:>5} {s:7.3f} {s / total:6.1%} {gf:7.2f} {bound:8.3f} {eff}")
    gf = sum(parts.flops.values()) / 1e9
    print(f"{'total':<44} {'':>5} {total:7.3f} {'':>6} {gf:7.2f} {gf / peak:8.3f} {gf / peak / total:7.1%}")
    print(
        f"  bound at the {dtype} peak {peak:.0f} GFLOP/s; at the machine's best precision ({best:.0f} GFLOP/s) "
        f"the whole is at {gf / best / total:.1%} of its bound"
    )


def bound_lines(rows, flops_per_tile: float, peaks: dict):
    """msvar's least possible time per size: its FLOPs (the profile's per tile × the size's tiles) at the machine's
    best measured matrix-product rate at that many threads (`peaks`), beside the faster RRDBNet's measured time."""
    print(f"\nmsvar's FLOP bound: {flops_per_tile / 1e9:.2f} GFLOP per tile, at the best precision's peak")
    for t, (h, w), n, secs in rows:
        least = n * flops_per_tile / 1e9 / peaks[t]
        rrdb = min(secs["rrdb_fp32"], secs["rrdb_bf16"])
        print(
            f"{t} thread(s), {w}×{h}: {n} tiles, at least {least:.2f} s at {peaks[t]:.0f} GFLOP/s; the faster "
            f"RRDBNet took {rrdb:.2f} s: msvar at its bound would be {rrdb / least:.2f}× its speed"
        )


# --- candidate changes, each a row against the default ---
def skip_x1(model):
    "A copy of `model` whose ×1 stage is not decoded (zeros instead): what 'no ×1 decode when ×1 is not asked' saves."
    m = copy.deepcopy(model)
    decode = m.hit.decode_stage

    def no_x1(f_hat, n):
        if n == 0:
            side = m.preset.stage_sizes[0]
            return torch.zeros(len(f_hat), 3, side, side)
        return decode(f_hat, n)

    m.hit.decode_stage = no_x1
    return m


def channels_last(model):
    "A copy of `model` with its stage decoders in channels-last memory format."
    m = copy.deepcopy(model)
    m.hit.stage_decoders.to(memory_format=torch.channels_last)
    return m


def weights_bf16(model):
    """A copy of `model` whose Linear and Conv2d layers hold bf16 weights: what autocast casts at every call, cast once
    (the same rounding, so the same outputs under autocast; norms and embeddings keep theirs)."""
    m = copy.deepcopy(model)
    for layer in m.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            layer.to(torch.bfloat16)
    return m


def bf16_run(model, **kw):
    "upscale under CPU bf16 autocast (matrix products and convolutions in bf16), `kw` as msvar_run's."
    fn = msvar_run(model, **kw)

    def run(x):
        with torch.autocast("cpu", torch.bfloat16):
            return fn(x)

    return run


def variants(model, tile: int) -> dict:
    "The candidate settings: {name: run(x)}, the default first."
    return {
        f"default (batch {DEFAULT_OUTPUT.batch_size}, overlap {DEFAULT_OUTPUT.tile_overlap(tile)})": msvar_run(
            model
        ),
        **{
            f"batch {b}": msvar_run(model, batch_size=b)
            for b in (8, 16, 32)
            if b != DEFAULT_OUTPUT.batch_size
        },
        **{
            f"overlap {o}": msvar_run(model, overlap=o)
            for o in (tile // 8, tile // 4)
            if o != DEFAULT_OUTPUT.tile_overlap(tile)
        },
        "no ×1 decode (emulated)": msvar_run(skip_x1(model)),
        "stage decoders channels-last": msvar_run(channels_last(model)),
        "bf16 autocast": bf16_run(model),
        "bf16 autocast, weights cast once": bf16_run(weights_bf16(model)),
        **{
            f"bf16 autocast, batch {b}": bf16_run(model, batch_size=b)
            for b in (8, 16)
            if b != DEFAULT_OUTPUT.batch_size
        },
    }


def compile_check(model, size, reps: int):
    """torch.compile of the transformer blocks against eager, both in bf16 autocast on one input: the first compiled
    call (its warm-up, compilation included) and the medians of `reps` later calls, in turn."""
    h, w = size
    x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(3))
    compiled = copy.deepcopy(model)
    for i, block in enumerate(compiled.var.blocks):
        compiled.var.blocks[i] = torch.compile(block, dynamic=False)
    eager, fast = bf16_run(model), bf16_run(compiled)
    t0 = CLOCK()
    fast(x)
    first = CLOCK() - t0
    secs = interleaved({"eager": on_input(eager, x, x), "compiled": on_input(fast, x, x)}, reps, clock=CLOCK)
    print(
        f"{w}×{h}, bf16, 1 thread: the first compiled call {first:.1f} s (compilation included); then eager "
        f"{secs['eager']:.2f} s, compiled {secs['compiled']:.2f} s: {secs['eager'] / secs['compiled']:.2f}× faster"
    )


def variant_table(model, size, threads, reps, only=()):
    """Each variant's median seconds and speed-up against the default, and its ×4 output's distance from the default's;
    `only`: the variants whose names contain one of these words (the default always)."""
    h, w = size
    x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(1))
    fns = variants(model, model.preset.lr_size)
    keep = lambda i, name: i == 0 or not only or any(word in name for word in only)
    fns = {name: f for i, (name, f) in enumerate(fns.items()) if keep(i, name)}
    ref = next(iter(fns.values()))(x)[4]
    for t in threads:
        torch.set_num_threads(t)
        runs = {k: on_input(f, x, torch.rand(3, 16, 16)) for k, f in fns.items()}
        secs = interleaved(runs, reps, clock=clock_for(t))
        base = next(iter(secs.values()))
        for name, s in secs.items():
            y = fns[name](x)[4] if t == threads[0] else None
            diff = (
                ""
                if y is None
                else f"max |Δ×4| {(y - ref).abs().max():.2e}, PSNR {psnr(y, ref, y_channel=False):.1f} dB"
            )
            print(f"{t:>2} {w}×{h} {name:<36} {s:7.2f} s  {base / s:5.2f}×  {diff}", flush=True)


def check_images(model, n: int):
    "bf16 autocast against fp32 on crops (≤ 256 px) of the bundled images downsampled ×4: PSNR-RGB and LPIPS to them."
    rows = []
    for path in bundled_images()[:n]:
        img = load_image(path)
        side = min(256, *img.shape[-2:]) // 4 * 4
        hr = img[:, :side, :side]
        lr = resize(hr[None], (side // 4, side // 4), "bicubic").clamp(0, 1)[0]
        y32 = msvar_run(model)(lr)[4]
        y16 = bf16_run(model)(lr)[4]
        rows.append((path.name, hr, y32, y16))
    for name, hr, y32, y16 in rows:
        p32, p16 = psnr(y32, hr, y_channel=False).item(), psnr(y16, hr, y_channel=False).item()
        l32, l16 = lpips_distance(y32, hr).item(), lpips_distance(y16, hr).item()
        between = psnr(y16, y32, y_channel=False).item()
        print(
            f"{name:<14} PSNR-RGB fp32 {p32:6.2f} bf16 {p16:6.2f} (Δ {p16 - p32:+.3f} dB)  LPIPS fp32 {l32:.4f} "
            f"bf16 {l16:.4f} (Δ {l16 - l32:+.4f})  bf16 vs fp32 {between:.1f} dB",
            flush=True,
        )


def parse_size(s: str) -> tuple:
    "'WxH' → (H, W)."
    w, h = (int(v) for v in s.lower().replace("×", "x").split("x"))
    return h, w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "data" / "msvar_small.safetensors"))
    ap.add_argument(
        "--sizes", nargs="*", default=["64x64", "96x96", "256x192"], help="input sizes WxH (none: no table)"
    )
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=3, help="timed calls of each (median), after one warm-up")
    ap.add_argument("--profile", default="96x96", help="input size WxH of the per-part profile ('' to skip)")
    ap.add_argument("--variants", default="", help="input size WxH of the candidate rows ('' to skip)")
    ap.add_argument(
        "--only", nargs="*", default=[], help="candidate rows whose names contain one of these words"
    )
    ap.add_argument(
        "--compile-check", default="", help="input size WxH of the torch.compile check ('' to skip)"
    )
    ap.add_argument("--check-images", type=int, default=0, help="bundled images for the bf16 output check")
    ap.add_argument(
        "--json", help="also write the speed table here (README's speed line reads data/bench/sr_speed.json)"
    )
    a = ap.parse_args()
    flags = cpu_flags()
    model = load_sr_model(a.model, device="cpu")
    print(
        f"torch {torch.__version__}; CPU {cpu_name()}, {torch.get_num_threads()} threads available; native bf16: "
        f"{native_bf16(flags)} (flags: avx512_bf16={'avx512_bf16' in flags}, amx_bf16={'amx_bf16' in flags})"
    )
    peaks = {t: peak_gflops(t) for t in a.threads}
    for t, p in peaks.items():
        print(
            f"{t} thread(s): matrix product 1024³ fp32 {p['float32']:.0f} GFLOP/s, bf16 {p['bfloat16']:.0f} GFLOP/s "
            f"(bf16/fp32 = {p['bfloat16'] / p['float32']:.2f})"
        )
    print(
        f"model {Path(a.model).name}: preset {model.preset.name}, LR tile {model.preset.lr_size} px, scales "
        f"{DEFAULT_SCALES}, decoding {model.decoding}; msvar_sr's default precision here: "
        f"{resolve_precision('auto', 'cpu')}; medians of {a.reps} calls taken in turn (1 thread: CPU seconds; more: wall)"
    )
    heads = "  ".join(f"{k:^24}" for k in ("msvar fp32", "msvar bf16", "RRDBNet fp32", "RRDBNet bf16"))
    print(f"{'th':>2} {'input':>9} {'tiles':>5}  {heads}  speed-up over the faster RRDBNet (fp32, bf16)")
    rows = speed_table(model, RRDBNet().eval(), [parse_size(s) for s in a.sizes], a.threads, a.reps)
    if a.json:
        rec = dict(cpu=cpu_name(), native_bf16=native_bf16(flags), torch=torch.__version__, reps=a.reps)
        rec["default_precision"] = resolve_precision("auto", "cpu")  # what msvar_sr runs in on this CPU
        rec["rows"] = [
            dict(threads=t, height=h, width=w, tiles=n, seconds=secs) for t, (h, w), n, secs in rows
        ]
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(rec, indent=1))
    if a.profile:
        t = a.threads[0]
        torch.set_num_threads(t)
        h, w = parse_size(a.profile)
        x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(2))
        best = max(peaks[t].values())
        for prec in dict.fromkeys(("fp32", resolve_precision("auto", "cpu"))):
            print(f"\nper part, one upscale of a {w}×{h} input, {t} thread(s), {prec}:")
            parts = profile(model, x, autocast=prec == "bf16")
            print_profile(parts, peaks[t]["float32" if prec == "fp32" else "bfloat16"], best, prec)
        per_tile = sum(parts.flops.values()) / n_tiles(h, w, model.preset.lr_size, model.tile_step)
        bound_lines(rows, per_tile, {t: max(p.values()) for t, p in peaks.items()})
    if a.variants:
        print(
            "\ncandidate settings, each against the default in the same run (×4 output compared with the default's):"
        )
        variant_table(model, parse_size(a.variants), a.threads, a.reps, a.only)
    if a.compile_check:
        torch.set_num_threads(1)
        print("\ntorch.compile of the transformer blocks:")
        compile_check(model, parse_size(a.compile_check), a.reps)
    if a.check_images:
        torch.set_num_threads(a.threads[-1])
        print("\nbf16 autocast against fp32 on bundled images (crops of ≤ 256 px, bicubic ×4 down):")
        check_images(model, a.check_images)


if __name__ == "__main__":
    main()
