"""The GPU path, checked and timed in one run: `python bench/gpu_check.py` (9 minutes by default).

On a machine with CUDA GPUs it runs, within the time budget, these parts (each one reported on its own; a failure is
recorded with its traceback's last line and the next part still runs):

  gpu-tests     pytest tests/test_gpu.py: CUDA vs CPU logits, bf16/fp16 autocast steps, torch.compile vs eager,
                KV-cache sampling vs teacher forcing, checkpoints moved between GPU and CPU
  torchrun      torchrun --nproc_per_node N (all GPUs; NCCL when N ≥ 2) of msvar_train --preset paper from stand-ins of
                the public checkpoints (random values, real keys and shapes), SIGKILLed mid-run (torchrun and every
                worker) and resumed from the step it was killed at: its loss sequence against an uninterrupted run's
  throughput    paper-preset training step (bf16, CE + DPO, AdamW) at the largest batch that fits (doubling), eager and
                torch.compile: images/s, tokens/s and model FLOP/s as a fraction of the GPU's dense bf16 peak;
                the largest batch msvar_train's memory plan expects to fit, beside the one found
  sampling      paper-preset ×1/×2/×4 decoding per 512-px image (msvar_sr's soft decoding, classifier-free guidance,
                KV cache), the cache's speed-up over recomputation, HIT tokenization and stage decoding per image
  cli           msvar_sr --device cuda on data/demo/lr and msvar_eval --device cuda on a few crops, against the CPU
                outputs (greedy decoding is deterministic up to float rounding)

and these CPU parts (also on a CPU-only machine, where the GPU parts are reported as skipped):

  cpu-train     tokens/s of a training step on the CPU: the `paper`-shaped VAR below and the `small` preset, batch 1
  cpu-sampling  KV cache vs recomputation at batch 1 with guidance, on a `paper`-shaped VAR (full width and sequence;
                depth --cpu-depth, 1 by default, because the full model's recomputation takes minutes on a small CPU);
                if the budget ends the recomputation early, the speed-up is given over the scales both passes finished
  cpu-smoke     (only when asked for) the same two measurements on the `test` preset, in seconds: what CI runs

It writes one JSON file (--json), rewritten as each part finishes, and prints a short table. CPU timings on a shared machine are indicative only.

    python bench/gpu_check.py                                  # everything this machine can run, in 9 minutes
    python bench/gpu_check.py --minutes 3 --parts cpu-train cpu-sampling
    python bench/gpu_check.py --peak-tflops 989                # override the dense bf16 peak used for the FLOP/s fraction
"""
import argparse, contextlib, json, math, os, platform, re, shlex, shutil, signal, subprocess, sys, tempfile, time, traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import torch

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets; the first matching name wins
PEAK_BF16_TFLOPS = [("H200", 989.0), ("GH200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("H800", 989.0),
                    ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0)]

GPU_PARTS = ("gpu-tests", "torchrun", "throughput", "sampling", "cli")
CPU_PARTS = ("cpu-train", "cpu-sampling")
ALL_PARTS = GPU_PARTS + CPU_PARTS + ("cpu-smoke",)
DEFAULT_PARTS = GPU_PARTS + CPU_PARTS
WEIGHT = {"gpu-tests": 3, "torchrun": 4, "throughput": 3, "sampling": 1, "cli": 1.5, "cpu-sampling": 1, "cpu-train": 1,
          "cpu-smoke": 1}


class OutOfTime(Exception):
    "A part's share of the time budget is spent."


# ---------------------------------------------------------------- helpers
GRACE = 20  # seconds a part may run past its share before the watchdog stops it (its own timeouts come first)


@contextlib.contextmanager
def watchdog(until: float):
    "Raise OutOfTime in this process at `until` (time.time()): a warm-up or compilation cannot overrun the budget."
    def fire(signum, frame): raise OutOfTime("stopped at the end of its share of the budget (warm-up or compilation included)")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(0.5, until - time.time()))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
def sync(dev):
    if torch.device(dev).type == "cuda": torch.cuda.synchronize()


def last_line(text: str) -> str:
    "The line that says what went wrong: the last 'XxxError: …' / 'error: …' line if any (torchrun ends with a banner), else the last line."
    lines = [l.strip() for l in str(text).strip().splitlines() if l.strip()]
    errs = [l for l in lines if ("Error" in l or "error:" in l) and ":" in l and not l.startswith("File ")]
    return (errs or lines or [""])[-1][:300]


def env_sub() -> dict:
    "Environment of the subprocesses: this repository's msvar first on the path."
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
                PYTHONWARNINGS="ignore")


def entry(module: str, func: str) -> list:
    "argv prefix that runs console entry point `func` of `module` with this interpreter (= the msvar_* command)."
    return [sys.executable, "-c", f"import sys; from {module} import {func} as f; f(sys.argv[1:])"]


TAG_VAR = "MSVAR_GPU_CHECK_TAG"   # in the environment of every command this script starts, inherited by all their processes


def _proc_table() -> dict:
    "{pid: (parent pid, state letter)} of every process, read from /proc (Linux)."
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit(): continue
        try: stat = Path("/proc", d, "stat").read_text()
        except OSError: continue                                    # it ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()                    # after "(comm)", which may hold spaces
        table[int(d)] = (int(fields[1]), fields[0])
    return table


def _has_tag(pid: int, tag: str) -> bool:
    try: return f"{TAG_VAR}={tag}".encode() in Path("/proc", str(pid), "environ").read_bytes().split(b"\0")
    except OSError: return False                                   # ended, or another user's process


def process_tree(pid: int, tag: str | None = None) -> list:
    """Live processes of a command: `pid`, its descendants by parent links, and (given `tag`) every process started with
    that tag in its environment. torchrun starts each worker in a session of its own, so its process group misses them,
    and a worker whose parent died is no longer below `pid`; the tag still finds it."""
    table = {p: pp for p, (pp, state) in _proc_table().items() if state not in "ZX"}   # zombies have ended
    kids = {}
    for p, pp in table.items(): kids.setdefault(pp, []).append(p)
    tree, todo = [pid] if pid in table else [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []): tree.append(c); todo.append(c)
    if tag: tree += [p for p in table if p not in tree and p != os.getpid() and _has_tag(p, tag)]
    return tree


def _signal(pid: int, sig) -> None:
    try: os.kill(pid, sig)
    except ProcessLookupError: pass


def kill_tree(pid: int, tag: str | None = None, timeout: float = 10.0) -> list:
    """SIGKILL a command's processes (`process_tree`); returns the pids still alive after `timeout` s (empty: all ended).
    They are stopped (SIGSTOP) first, so that none starts another process or notices a death while the others are killed."""
    seen = []
    for _ in range(5):                                              # look again: a process may have started a child meanwhile
        new = [p for p in process_tree(pid, tag) if p not in seen]
        if not new: break
        for p in new: _signal(p, signal.SIGSTOP)
        seen += new
    for p in seen: _signal(p, signal.SIGKILL)
    end = time.time() + timeout
    while True:
        table = _proc_table()
        alive = [p for p in seen if p in table and table[p][1] not in "ZX"]
        if not alive or time.time() > end: return alive
        time.sleep(0.05)


def start_cmd(args, tag: str, **kw) -> subprocess.Popen:
    "Start a command in a session of its own with `tag` in its environment (see `kill_tree`)."
    return subprocess.Popen([str(a) for a in args], cwd=REPO, env=dict(env_sub(), **{TAG_VAR: tag}), start_new_session=True, **kw)


def run_cmd(args, timeout, name="", **kw):
    """Run a command; (returncode, stdout, stderr, seconds). When `timeout` (s) passes, all its processes (workers in
    other sessions included) are killed and OutOfTime is raised; whatever it leaves running when it ends is killed too."""
    if timeout <= 1: raise OutOfTime(f"no time left to run {name or args[0]}")
    t0, tag = time.perf_counter(), f"{os.getpid()}-{time.time_ns()}"
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:   # files, not pipes: a process left
        pr = start_cmd(args, tag, stdout=fo, stderr=fe, text=True, **kw)              # running would hold a pipe open
        try:
            pr.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise OutOfTime(f"{name or args[0]} did not finish within its {timeout:.0f} s share of the budget") from e
        finally:
            alive = kill_tree(pr.pid, tag)
            pr.wait()
            if alive: raise RuntimeError(f"{name or args[0]}: processes {alive} survived SIGKILL")
        fo.seek(0); fe.seek(0)
        out, err = fo.read(), fe.read()
    return pr.returncode, out, err, time.perf_counter() - t0


def check_rc(rc, out, err, what):
    if rc != 0: raise RuntimeError(f"{what} exited with status {rc}: {last_line(err) or last_line(out)}")


def is_oom(e) -> bool:
    "A CUDA out-of-memory error (some kernels report it as a plain RuntimeError)."
    return isinstance(e, torch.cuda.OutOfMemoryError) or any(k in str(e) for k in ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED"))


def gpu_name(i=0) -> str:
    return torch.cuda.get_device_name(i) if torch.cuda.is_available() else "none"


def peak_tflops(name: str, override=None):
    "(dense bf16 peak TFLOP/s, where it came from) for a device name."
    if override: return float(override), "--peak-tflops"
    for key, v in PEAK_BF16_TFLOPS:
        if key.lower() in name.lower(): return v, f"table entry {key!r}"
    return None, f"unknown device {name!r}: pass --peak-tflops"


# ---------------------------------------------------------------- measurements shared by GPU and CPU parts
def kv_cache_ratio(preset, m, B, cfg, deadline):
    """Greedy sampling (guidance `cfg`) with the KV cache, then with recomputation: seconds until each scale's logits, per pass.
    The recomputation pass stops early when its next (costlier) scale would pass the deadline."""
    from msvar.devtools import stand_in                                      # random codebook state, LR prefix, classes
    st, prefix, cls, _ = stand_in(m, B, 0)
    stamps = {}
    for use_cache in (True, False):
        t0, marks = time.perf_counter(), []
        def pick(step, logits):
            marks.append(time.perf_counter() - t0)
            last = marks[-1] - (marks[-2] if len(marks) > 1 else 0.0)
            if step + 1 < m.L and time.time() + 2 * last > deadline:   # the next scale costs more than this one
                raise OutOfTime(f"stopped after {step + 1} of {m.L} scales")
            return logits.argmax(-1)
        try:
            with torch.no_grad(): m._run_steps(prefix, cls, st, pick, cfg=cfg, use_cache=use_cache)
        except OutOfTime: pass
        stamps[use_cache] = marks
    return stamps


class StepTimer:
    "A preset's VAR (built once, on the device) with AdamW: times training steps (CE + DPO, one pass, clipping) on random tokens."
    def __init__(self, preset_name, dev, precision="fp32", depth=None):
        from msvar.core import get_preset
        from msvar.var import SRVAR
        from msvar.devtools import bench_run
        self.p, self.dev, self.dev_type = get_preset(preset_name), dev, torch.device(dev).type
        torch.manual_seed(0)
        with torch.device(dev): self.m = SRVAR.from_preset(self.p, **({} if depth is None else dict(depth=depth))).train()
        self.run = bench_run(self.m, precision)                # chapter 07's AdamW, clipping at 2.0, autocast (fp16: grad scaler)
        self.net = self.m

    def compile(self): self.net = self.run.net = torch.compile(self.m); return self

    def rate(self, B, steps, deadline):
        "(best seconds per step over up to `steps` timed steps, seconds of the warm-up step); stops at the deadline (time.time())."
        from msvar.devtools import random_tokens
        from msvar.losses import sr_loss
        from msvar.train import train_step
        t = random_tokens(self.p, B, torch.device(self.dev), torch.Generator().manual_seed(0))
        step = lambda: train_step(self.run, t, lambda net, b: sr_loss(net, b, dpo=True))
        try:
            sync(self.dev); t0 = time.perf_counter(); step(); sync(self.dev)          # warm-up (and compilation)
            warm, times = time.perf_counter() - t0, []
            if self.dev_type == "cpu" and self.net is self.m and time.time() + warm > deadline: times = [warm]; steps = 0   # eager CPU: no warm-up effect
            for _ in range(steps):
                if times and time.time() + times[-1] > deadline: break
                t0 = time.perf_counter(); step(); sync(self.dev); times.append(time.perf_counter() - t0)
        finally:
            self.run.opt.zero_grad(set_to_none=True); del t
        if not times: raise OutOfTime(f"warm-up took {warm:.1f} s; no time left for a timed step")
        return min(times), warm


def flops_formula(m, B) -> tuple:
    "Model FLOPs of one training step (3 × forward: forward + backward) and the formula, counted as in msvar.devtools.forward_flops."
    from msvar.devtools import forward_flops
    from msvar.var import mask_pairs
    C, N, d, hidden = m.C, m.n_prefix + m.n_image, m.depth, m.blocks[0].ffn.fc1.out_features
    pairs = mask_pairs(m.patch_nums, m.n_prefix)
    f = 3 * forward_flops(m, B)
    text = (f"FLOP/step = 3·B·[2·N·d·(4C² + 2·C·H) + 4·C·P·d + 2·n_img·C·V + adaLN] with B={B}, N={N} tokens "
            f"(n_img={m.n_image} + prefix {m.n_prefix}), d={d}, C={C}, H={hidden}, V={m.V}, P={pairs:,} allowed attention pairs "
            f"(block-causal mask) = {f / 1e12:.2f} TFLOP (≈ 6·N_params·tokens + attention; elementwise ops not counted)")
    return f, text


# ---------------------------------------------------------------- parts
def pytest_lines(text: str) -> dict:
    "Per-test results of `pytest -v` output lines (`path::name STATUS`): what a run stopped by the budget had finished."
    found = re.findall(r"::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", text)
    return {name: dict(status={"PASSED": "passed", "SKIPPED": "skipped"}.get(st, "failed"), message="") for name, st in found}


def part_gpu_tests(ctx, deadline):
    junit, log = Path(ctx.work) / "test_gpu.xml", Path(ctx.work) / "test_gpu.log"
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", str(REPO / "tests" / "test_gpu.py"), f"--junitxml={junit}"]
    try:                                                   # -v lines go to a file as each test ends: kept if time runs out
        rc, out, err, sec = run_cmd(["bash", "-c", " ".join(map(shlex.quote, cmd)) + f" > {shlex.quote(str(log))} 2>&1"],
                                    deadline - time.time(), "pytest tests/test_gpu.py")
    except OutOfTime as e:
        tests = pytest_lines(log.read_text() if log.exists() else "")
        n = {k: sum(v["status"] == k for v in tests.values()) for k in ("passed", "failed", "skipped")}
        return dict(tests=tests, **n, status="fail" if n["failed"] else "skipped", reason=str(e),
                    brief=f"stopped by the budget after {len(tests)} tests: {n['passed']} passed, {n['failed']} failed")
    out = log.read_text() if log.exists() else out
    import xml.etree.ElementTree as ET
    if not junit.exists(): raise RuntimeError(f"pytest wrote no report (status {rc}): {last_line(err) or last_line(out)}")
    tests = {}
    for tc in ET.parse(junit).getroot().iter("testcase"):
        st, msg = "passed", ""
        for tag in ("failure", "error", "skipped"):
            e = tc.find(tag)
            if e is not None: st, msg = ("skipped" if tag == "skipped" else "failed"), last_line(e.get("message") or e.text or "")
        tests[tc.get("name")] = dict(status=st, message=msg, seconds=round(float(tc.get("time", 0)), 2))
    n = {k: sum(v["status"] == k for v in tests.values()) for k in ("passed", "failed", "skipped")}
    res = dict(tests=tests, **n, summary=last_line(out))
    if n["failed"] or not n["passed"]: res["status"] = "fail"
    res["brief"] = f"{n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped"
    return res


def part_torchrun(ctx, deadline):
    from msvar.train import read_log, load_checkpoint
    work = Path(ctx.work) / "torchrun"
    if ctx.dry_run:                           # the script's logic on the CPU: 2 gloo processes, `test` preset, random tokenizer
        from msvar.core import get_preset
        from msvar.hit import HITTokenizer, save_hit
        from msvar.tokenizer import Tokenizer
        n, preset, dev_args = 2, "test", ["--device", "cpu", "--threads", "1"]
        p = get_preset("test"); torch.manual_seed(0); work.mkdir(parents=True, exist_ok=True)
        save_hit(HITTokenizer(Tokenizer.from_preset(p), p), work / "hit.pt")
        tok_args, batch, steps = ["--tokenizer", work / "hit.pt"], 4, 6   # ≥ 2 per process: the test preset's 1×1 latents need it
    else:
        from msvar.devtools import write_fake_public_checkpoints
        n, preset, dev_args = torch.cuda.device_count(), "paper", ["--device", "cuda"]
        vae, var = write_fake_public_checkpoints(work)
        rc, out, err, _ = run_cmd([*entry("msvar.cli_data", "import_tokenizer_cli"), vae, "-o", work / "tokenizer.pt"],
                                  deadline - time.time(), "msvar_import_tokenizer")
        check_rc(rc, out, err, "msvar_import_tokenizer")
        tok_args, batch, steps = ["--tokenizer", work / "tokenizer.pt", "--init-var", var], n, 4
    args = ["--preset", preset, "--data", REPO / "data" / "images", *tok_args, "--batch-size", batch, "--precision",
            "fp32" if ctx.dry_run else "bf16", "--steps", steps, "--ckpt-every", 2, "--no-progress", *dev_args]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", n, "-m", "msvar.cli_train"]
    res = dict(nproc=n, preset=preset, steps=steps, global_batch=batch, precision="fp32" if ctx.dry_run else "bf16",
               backend=("gloo" if ctx.dry_run else "nccl") if n > 1 else "none (1 process: msvar starts no process group)",
               command="torchrun --standalone --nproc_per_node %d -m msvar.cli_train %s" % (n, " ".join(map(str, args))))
    ref, killed = work / "ref", work / "killed"
    rc, out, err, sec = run_cmd([*launch, *args, "--out", ref], deadline - time.time(), "the uninterrupted torchrun")
    check_rc(rc, out, err, "uninterrupted torchrun")
    res["uninterrupted_seconds"] = round(sec, 1)
    # the same run, SIGKILLed once the checkpoint of step 2 is written (torchrun and its workers, which run in sessions of
    # their own: killing torchrun's process group leaves them training on), then --resume from that checkpoint
    tag = f"{os.getpid()}-killed-{time.time_ns()}"
    with open(work / "killed.err", "w") as ferr:
        pr = start_cmd([*launch, *args, "--out", killed], tag, stdout=subprocess.DEVNULL, stderr=ferr)
        try:
            while len(read_log(killed / "log.jsonl")) < 3:          # row of step index 2 → last.pt of step 2 exists
                if pr.poll() is not None: break
                if time.time() > deadline: raise OutOfTime("the run to be killed did not reach step 3 in time")
                time.sleep(0.02)
        finally:
            alive = kill_tree(pr.pid, tag)
            pr.wait()
    if alive: raise RuntimeError(f"processes {alive} of the killed run survived SIGKILL")
    if pr.returncode == 0: raise RuntimeError("the run finished before it could be killed: resume not exercised")
    if not (killed / "last.pt").exists():
        raise RuntimeError(f"killed run left no last.pt (status {pr.returncode}): {last_line((work / 'killed.err').read_text())}")
    killed_at = load_checkpoint(killed / "last.pt")["step"]
    res["killed_at_step"] = killed_at
    rc, out, err, sec = run_cmd([*launch, *args, "--out", killed, "--resume"], deadline - time.time(), "the resumed torchrun")
    check_rc(rc, out, err, "resumed torchrun")
    resumed = re.search(r"resuming from .* at step (\d+)", out)
    res["resumed_at_step"] = int(resumed.group(1)) if resumed else None
    if res["resumed_at_step"] != killed_at:                        # a survivor of the kill wrote on, or no resume happened
        raise RuntimeError(f"killed at step {killed_at} but the resumed run "
                           + (f"started at step {res['resumed_at_step']}" if resumed else "did not say it resumed"))
    a, b = [r["loss"] for r in read_log(ref / "log.jsonl")], [r["loss"] for r in read_log(killed / "log.jsonl")]
    res.update(loss_uninterrupted=a, loss_killed_resumed=b, identical=a == b and len(a) == steps)
    res["max_abs_diff"] = max((abs(x - y) for x, y in zip(a, b)), default=float("nan")) if len(a) == len(b) else None
    ca, cb = load_checkpoint(ref / "last.pt"), load_checkpoint(killed / "last.pt")
    res["final_weights_identical"] = all(torch.equal(ca["model"][k], cb["model"][k]) for k in ca["model"])
    res["world_size_in_checkpoint"] = ca.get("world_size")
    digests = ca.get("replica_digests")
    res["replicas_identical"] = None if not digests else len(set(digests)) == 1
    del ca, cb
    if len(a) != steps or len(b) != steps: res["status"] = "fail"; res["error"] = f"{len(a)} and {len(b)} log rows, expected {steps}"
    elif not res["identical"] and not (res["max_abs_diff"] is not None and res["max_abs_diff"] <= 1e-3 * max(1.0, abs(a[0]))):
        res["status"] = "fail"; res["error"] = f"loss sequences differ by up to {res['max_abs_diff']:.3g}"
    res["brief"] = (f"{n} proc ({res['backend'].split(' ')[0]}), killed at step {killed_at}/{steps}, losses "
                    + ("identical" if res["identical"] else f"max |Δ| {res['max_abs_diff']:.2g}"))
    shutil.rmtree(work, ignore_errors=True)                            # checkpoints of 314M parameters + AdamW: GBs
    return res


def planned_batch(preset: str, gpu_bytes: float) -> dict:
    "What msvar_train's memory plan (bf16, CE + DPO) expects on this GPU, to set beside the largest batch the search found."
    from msvar.gpu import memory_plan, GPU_MEMORY_USE
    plan = memory_plan(preset, 1, 1, GPU_MEMORY_USE * gpu_bytes)                # the CUDA path, as msvar_train counts it
    room = GPU_MEMORY_USE * gpu_bytes - plan.state - plan.fixed
    return dict(per_image_gb=round(plan.per_image / 2**30, 3), state_and_fixed_gb=round((plan.state + plan.fixed) / 2**30, 2),
                largest_batch_planned=int(room // plan.per_image), share_of_memory_planned=GPU_MEMORY_USE)


def plan_disagrees(found: int, planned: int, search: list) -> str | None:
    """Why the memory plan and the batch search disagree, or None: the plan must not expect a batch that ran out of
    memory, nor be more than twice too cautious (the search doubles, so `found` ≤ what fits < 2·`found`)."""
    failed = [r["batch"] for r in search if r.get("fits") is False]
    if failed and planned >= min(failed):
        return f"the memory plan expects {planned} images to fit, but a batch of {min(failed)} ran out of memory"
    if failed and 2 * planned < found:
        return f"the memory plan expects only {planned} images to fit, but {found} did: the plan over-counts"
    return None


def part_throughput(ctx, deadline):
    import gc
    dev = ctx.dev
    preset = "test" if ctx.dry_run else "paper"
    name = gpu_name() if not ctx.dry_run else "cpu (dry run)"
    peak, peak_src = peak_tflops(name, ctx.peak_tflops)
    res = dict(device=name, preset=preset, precision="bf16 autocast (fp32 weights, AdamW; TF32 allowed, as msvar_train does)",
               peak_tflops=peak, peak_source=peak_src, search=[])
    if dev.startswith("cuda"): torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tm = StepTimer(preset, dev, "bf16")
    m = tm.m
    tokens, n_params = m.n_image + m.n_prefix, sum(q.numel() for q in m.parameters())
    def row(mode, B, sec):
        flops, _ = flops_formula(m, B)
        r = dict(mode=mode, batch=B, s_per_step=round(sec, 4), images_per_s=round(B / sec, 2), tokens_per_s=round(B * tokens / sec),
                 model_tflops_per_s=round(flops / sec / 1e12, 2))
        if peak: r["fraction_of_peak"] = round(flops / sec / 1e12 / peak, 3)
        return r
    def free():
        gc.collect()
        if dev.startswith("cuda"): torch.cuda.empty_cache()
    # 1. eager: double the batch until it does not fit (or half of this part's share is spent)
    half = time.time() + 0.5 * (deadline - time.time())
    B, best = 1, None
    while True:
        try:
            sec, _ = tm.rate(B, 2, half)
            res["search"].append(dict(batch=B, s_per_step=round(sec, 4))); best = (B, sec)
        except RuntimeError as e:                                          # torch.cuda.OutOfMemoryError is one
            if not is_oom(e): raise
            res["search"].append(dict(batch=B, fits=False)); free(); break
        except OutOfTime as e:
            res["search"].append(dict(batch=B, stopped=str(e))); break
        if time.time() + 3 * 2 * sec > half: res["search"].append(dict(batch=2 * B, stopped="no time left in the search")); break
        if B >= (8 if ctx.dry_run else 4096): break
        B *= 2
    free()
    if best is None: raise RuntimeError("not even batch 1 fits or finishes in time")
    B, sec = best
    res.update(params=n_params, tokens_per_image=tokens, flops_per_step=flops_formula(m, B)[0], formula=flops_formula(m, B)[1],
               largest_batch=B, eager=row("eager", B, sec))
    if dev.startswith("cuda"):
        res["max_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        res["memory_plan"] = planned_batch(preset, torch.cuda.get_device_properties(0).total_memory)
        problem = plan_disagrees(B, res["memory_plan"]["largest_batch_planned"], res["search"])
        if problem: res.update(status="fail", error=problem)
    # 2. torch.compile at the largest eager batch (halved if the compiled step does not fit)
    Bc = B
    if ctx.dry_run: res["compiled"] = dict(skipped="dry run: torch.compile on this CPU takes minutes; the GPU run compiles"); Bc = 0
    elif deadline - time.time() < 60: res["compiled"] = dict(skipped=f"only {deadline - time.time():.0f} s left of this part's share"); Bc = 0
    else: tm.compile()
    while Bc >= 1:
        try:
            secc, warmc = tm.rate(Bc, 3, deadline)
            res["compiled"] = dict(row("compiled", Bc, secc), compile_and_first_step_s=round(warmc, 1)); break
        except RuntimeError as e:
            if not is_oom(e): raise
            free(); Bc //= 2
        except OutOfTime as e:
            res["compiled"] = dict(skipped=str(e)); break
    del tm, m; free()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True      # torch's defaults again
    e, c = res["eager"], res.get("compiled", {})
    res["brief"] = (f"B={B}: eager {e['images_per_s']} img/s, {e['tokens_per_s']:,} tok/s"
                    + (f", {e['fraction_of_peak']:.0%} of peak" if "fraction_of_peak" in e else "")
                    + (f"; compiled {c['images_per_s']} img/s" + (f", {c['fraction_of_peak']:.0%}" if "fraction_of_peak" in c else "")
                       if "images_per_s" in c else "; compiled: " + str(c.get("skipped", "not run"))))
    return res


def part_sampling(ctx, deadline):
    from msvar.core import get_preset
    from msvar.var import SRVAR
    from msvar.hit import HITTokenizer, HITState
    from msvar.tokenizer import Tokenizer
    from msvar.inference import SRModel, SOFT_TAU
    from msvar.var import Decoding
    from msvar.losses import sr_tokens
    dev = ctx.dev
    p = get_preset("test" if ctx.dry_run else "paper")
    torch.manual_seed(0)
    with torch.device(dev): model = SRModel(HITTokenizer(Tokenizer.from_preset(p), p), SRVAR.from_preset(p), tokens="hit").eval()
    res = dict(preset=p.name, hr_px=p.hr_size, precision="fp32 (as msvar_sr)", cfg=1.5,
               decoding=f"soft τ = {SOFT_TAU} (as msvar_sr)")
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(8, 3, p.lr_size, p.lr_size, generator=g)
    gd = torch.Generator(device=dev).manual_seed(0)                         # on the device, as the model
    decode = dict(decoding=Decoding("soft", tau=SOFT_TAU, cfg=1.5), generator=gd)  # msvar_sr's decoding: expected codes
    def timed(fn, reps=2):
        best = math.inf
        for _ in range(reps):
            if time.time() > deadline: raise OutOfTime("sampling share spent")
            sync(dev); t0 = time.perf_counter(); fn(); sync(dev); best = min(best, time.perf_counter() - t0)
        return best
    b1 = 2 if ctx.dry_run else 1                                            # the test preset's 1×1 latents need 2 images
    with torch.no_grad():
        model.sr_batch(lr[:b1], **decode)                                 # warm-up
        for B in (b1, 8):
            s = timed(lambda: model.sr_batch(lr[:B], **decode))
            res[f"sr_batch_{B}_s_per_image"] = round(s / B, 4)
        # KV cache vs recomputation (tokens only, batch 1, guidance)
        prefix, cls = model.prefix(lr[:b1].to(dev)), torch.zeros(b1, dtype=torch.long, device=dev)
        tcache = timed(lambda: model.var.generate(prefix, cls, HITState(model.hit.quantize, p), Decoding("greedy", cfg=1.5)))
        tfull = timed(lambda: model.var.generate(prefix, cls, HITState(model.hit.quantize, p), Decoding("greedy", cfg=1.5), use_cache=False), reps=1)
        res.update(tokens_kv_cache_s=round(tcache, 4), tokens_recompute_s=round(tfull, 4), kv_cache_speedup=round(tfull / tcache, 2))
        # HIT tokenization as training does it (prefix + z_HR + z_LR + teacher inputs), and the three stage decodes, per image
        batch = dict(hr=torch.rand(8, 3, p.hr_size, p.hr_size, generator=g), lr=lr, cls=torch.zeros(8, dtype=torch.long))
        res["hit_tokenize_s_per_image"] = round(timed(lambda: sr_tokens(model.hit, batch)) / 8, 4)
        t = model.hit.tokenize(batch["hr"].to(dev))
        res["hit_decode_3_stages_s_per_image"] = round(timed(lambda: [model.hit.decode_stage(f, n) for n, f in enumerate(t.f_hat)]) / 8, 4)
    res["brief"] = (f"{res[f'sr_batch_{b1}_s_per_image']:.3f} s/img (B={b1}), {res['sr_batch_8_s_per_image']:.3f} s/img (B=8); "
                    f"KV cache ×{res['kv_cache_speedup']:.1f}; HIT tokenize {res['hit_tokenize_s_per_image']:.3f}, decode {res['hit_decode_3_stages_s_per_image']:.3f} s/img")
    return res


def _read_png(path):
    from msvar.files import load_image
    return (load_image(path) * 255).round()


def _compare_dirs(a: Path, b: Path, pattern="*_x*.png") -> dict:
    "Pixel agreement (0…255 scale) of the same-named images in two folders."
    fa = sorted(a.glob(pattern))
    if not fa: raise RuntimeError(f"no outputs in {a}")
    same = total = 0; maxd = 0.0; sad = 0.0
    for f in fa:
        x, y = _read_png(f), _read_png(b / f.name)
        d = (x - y).abs()
        same += int((d == 0).sum()); total += d.numel(); maxd = max(maxd, float(d.max())); sad += float(d.sum())
    return dict(files=len(fa), identical_pixels=round(same / total, 5), mean_abs_diff=round(sad / total, 3), max_abs_diff=maxd)


def part_cli(ctx, deadline):
    "msvar_sr and msvar_eval on the GPU and on the CPU (the reference), outputs compared."
    import pandas as pd
    work = Path(ctx.work) / "cli"
    dev = "cpu" if ctx.dry_run else "cuda"
    res = dict(device=dev)
    sr, ev = entry("msvar.cli_sr", "sr_cli"), entry("msvar.cli_sr", "eval_cli")
    for mode, extra in (("greedy", ["--greedy"]), ("sampled_seed0", ["--sample"])):
        for role, d in (("cpu", "cpu"), ("dev", dev)):
            rc, o, e, sec = run_cmd([*sr, REPO / "data" / "demo" / "lr", "-o", work / f"sr_{mode}_{role}", "--device", d, "--overwrite", *extra],
                                    deadline - time.time(), f"msvar_sr --device {d}")
            check_rc(rc, o, e, f"msvar_sr --device {d} {' '.join(extra)}")
            res[f"msvar_sr_{mode}_{role}_s"] = round(sec, 1)
        res[f"msvar_sr_{mode}_vs_cpu"] = _compare_dirs(work / f"sr_{mode}_cpu", work / f"sr_{mode}_dev")
    csv = {}
    for role, d in (("cpu", "cpu"), ("dev", dev)):
        rc, o, e, sec = run_cmd([*ev, "--data", REPO / "data" / "images", "-n", 4, "--out", work / f"eval_{role}", "--device", d, "--overwrite"],
                                deadline - time.time(), f"msvar_eval --device {d}")
        check_rc(rc, o, e, f"msvar_eval --device {d}")
        res[f"msvar_eval_{role}_s"] = round(sec, 1)
        csv[role] = pd.read_csv(work / f"eval_{role}" / "per_image.csv")
    num = [c for c in csv["cpu"].columns if csv["cpu"][c].dtype.kind == "f"]
    res["msvar_eval_max_metric_diff"] = {c: round(float(v), 6) for c, v in (csv["cpu"][num] - csv["dev"][num]).abs().max().items()}
    g = res["msvar_sr_greedy_vs_cpu"]
    # greedy decoding is deterministic, but CPU and GPU round floats differently: a near-tie can flip a token of a tile
    if g["mean_abs_diff"] > 2.0:
        res["status"], res["error"] = "fail", f"greedy msvar_sr on {dev} differs from the CPU's: mean |Δ| {g['mean_abs_diff']}/255"
    res["brief"] = (f"msvar_sr greedy {dev} vs cpu: {g['identical_pixels']:.1%} px identical (mean |Δ| {g['mean_abs_diff']}/255); "
                    f"msvar_eval max metric |Δ| {max(res['msvar_eval_max_metric_diff'].values()):.2g}")
    shutil.rmtree(work, ignore_errors=True)
    return res


def part_cpu_sampling(ctx, deadline, preset_name=None, depth=None, label=None):
    from msvar.core import get_preset
    from msvar.var import SRVAR, count_params
    p = get_preset(preset_name or "paper")
    full = p.var.depth
    depth = depth or (None if ctx.cpu_depth >= full else ctx.cpu_depth)
    torch.manual_seed(0)
    m = SRVAR.from_preset(p, **({} if depth is None else dict(depth=depth))).eval()
    res = dict(model=label or f"{p.name} preset VAR" + ("" if depth is None else f" at depth {m.depth} of {full} (same width {m.C}, same sequence)"),
               params=count_params(m), tokens=m.n_image + m.n_prefix, batch=1, cfg=1.5, threads=torch.get_num_threads())
    stamps = kv_cache_ratio(p, m, 1, 1.5, deadline)
    cache, full = stamps[True], stamps[False]
    if len(cache) < m.L: raise OutOfTime(f"even the KV-cache pass did not finish ({len(cache)} of {m.L} scales)")
    k = len(full)
    res.update(kv_cache_s=round(cache[-1], 3), kv_cache_s_per_scale=[round(x, 3) for x in cache],
               recompute_s_per_scale=[round(x, 3) for x in full], recompute_scales_done=k, cache_scales_done=len(cache))
    if k == m.L:
        res["recompute_s"], res["kv_cache_speedup"] = round(full[-1], 3), round(full[-1] / cache[-1], 2)
        res["brief"] = f"{res['model']}: KV cache {cache[-1]:.2f} s, recompute {full[-1]:.2f} s → ×{res['kv_cache_speedup']:.1f}"
    elif k:
        res[f"kv_cache_speedup_first_{k}_scales"] = round(full[-1] / cache[k - 1], 2)
        res["brief"] = (f"{res['model']}: KV cache {cache[-1]:.2f} s for all {m.L} scales; recomputation stopped by the budget after "
                        f"{k} scales: {full[-1]:.2f} s vs {cache[k - 1]:.2f} s with the cache over those {k} → ×{full[-1] / cache[k - 1]:.1f} "
                        f"(a partial ratio: the full pass's can differ)")
    else: raise OutOfTime("no time left for the recomputation pass")
    return res


def part_cpu_train(ctx, deadline, presets=None):
    from msvar.core import get_preset
    rows = []
    presets = presets or [("paper", None if ctx.cpu_depth >= 16 else ctx.cpu_depth), ("small", None)]   # the costly one first
    rate = None                                                              # FLOP/s of the previous measurement
    for i, (name, depth) in enumerate(presets):
        share = time.time() + (deadline - time.time()) / (len(presets) - i)
        tm = StepTimer(name, "cpu", "fp32", depth)
        m = tm.m
        label = name + ("" if depth is None else f" VAR at depth {m.depth} of {get_preset(name).var.depth} (same width and sequence)")
        est = flops_formula(m, 1)[0] / rate if rate else None
        if est and est > 5 and time.time() + est > deadline:  # (conservative: bigger matmuls run at a higher rate)
            rows.append(dict(preset=name, model=label, skipped=f"one step would take ≈ {est:.0f} s at the rate measured above; "
                             f"{deadline - time.time():.0f} s left")); del tm, m; continue
        try:
            sec, _ = tm.rate(1, 2, share)
        except OutOfTime as e:
            rows.append(dict(preset=name, model=label, skipped=str(e))); continue
        tokens = m.n_image + m.n_prefix
        rows.append(dict(preset=name, model=label, batch=1, precision="fp32", tokens=tokens, s_per_step=round(sec, 3),
                         tokens_per_s=round(tokens / sec, 1), gflops_per_s=round(flops_formula(m, 1)[0] / sec / 1e9, 1)))
        rate = flops_formula(m, 1)[0] / sec
        del tm, m
    res = dict(rows=rows, threads=torch.get_num_threads())
    ok = [r for r in rows if "tokens_per_s" in r]
    if not ok: raise OutOfTime("no training step finished within the budget")
    res["brief"] = "; ".join(f"{r['model']}: {r['tokens_per_s']:,} tok/s ({r['s_per_step']} s/step)" if "tokens_per_s" in r
                             else f"{r['model']}: skipped ({r['skipped']})" for r in rows)
    return res


def part_cpu_smoke(ctx, deadline):
    "The CPU parts on the `test` preset, in seconds (for CI)."
    s = part_cpu_sampling(ctx, time.time() + 0.5 * (deadline - time.time()), "test", label="test preset VAR")
    t = part_cpu_train(ctx, deadline, presets=[("test", None)])
    return dict(sampling=s, train=t, brief=f"{s['brief']}; {t['brief']}")


PARTS = {"gpu-tests": part_gpu_tests, "torchrun": part_torchrun, "throughput": part_throughput, "sampling": part_sampling,
         "cli": part_cli, "cpu-sampling": part_cpu_sampling, "cpu-train": part_cpu_train, "cpu-smoke": part_cpu_smoke}


# ---------------------------------------------------------------- driver
def machine() -> dict:
    info = dict(python=platform.python_version(), torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                cpu_threads=torch.get_num_threads(), cpus=os.cpu_count(), platform=platform.platform(),
                load_average=[round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None)
    if torch.cuda.is_available():
        info.update(gpus=[gpu_name(i) for i in range(torch.cuda.device_count())], gpu_count=torch.cuda.device_count(),
                    gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    nccl=".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None)
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--minutes", type=float, default=9.0, help="time budget for all parts, warm-ups and compilation included, shared by weight "
                    "(remaining parts are skipped when spent; a part past its share is stopped)")
    ap.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS), choices=ALL_PARTS, metavar="PART",
                    help=f"parts to run, in this order (default: {' '.join(DEFAULT_PARTS)}; also: cpu-smoke)")
    ap.add_argument("--json", default=str(REPO / "runs" / "gpu_check.json"), help="where to write the results")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of one GPU (default: from a table of known GPUs)")
    ap.add_argument("--cpu-depth", type=int, default=1, help="depth of the paper-shaped VAR in the CPU parts (16 = the full model; slow)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads of this process")
    ap.add_argument("--dry-run", action="store_true", help="run the GPU parts' logic on the CPU with the `test` preset (checks this script, not a GPU)")
    a = ap.parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    t_start = time.time(); budget = a.minutes * 60; end = t_start + budget
    has_gpu = torch.cuda.is_available()
    ctx = argparse.Namespace(dev="cuda" if has_gpu and not a.dry_run else "cpu", dry_run=a.dry_run, peak_tflops=a.peak_tflops,
                             cpu_depth=a.cpu_depth, work=tempfile.mkdtemp(prefix="msvar_gpu_check_"))
    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S"), budget_minutes=a.minutes, machine=machine(), dry_run=a.dry_run,
                  note=("timings of CPU parts on a shared or loaded machine are indicative only" + (
                        "; dry run: the GPU parts' logic ran on the CPU with the test preset, no GPU figure was measured" if a.dry_run else
                        "" if has_gpu else "; no CUDA GPU here, so the GPU parts were skipped and no GPU figure was measured")), parts={})
    print(f"msvar GPU check: torch {torch.__version__} (CUDA {torch.version.cuda}), "
          + (f"{torch.cuda.device_count()} × {gpu_name()}" if has_gpu else "no CUDA GPU")
          + f", {torch.get_num_threads()} CPU threads, budget {a.minutes:g} min" + (" [dry run: GPU parts on the CPU, test preset]" if a.dry_run else ""), flush=True)
    todo = list(dict.fromkeys(a.parts))
    for i, name in enumerate(todo):
        t0 = time.time()
        if name in GPU_PARTS and not has_gpu and not (a.dry_run and name != "gpu-tests"):
            r = dict(status="skipped", reason=f"no CUDA GPU (torch.cuda.is_available() is False; torch {torch.__version__}, built for CUDA {torch.version.cuda})")
        elif t0 >= end - 1:
            r = dict(status="skipped", reason=f"time budget of {a.minutes:g} min spent")
        else:
            rest = [n for n in todo[i:] if not (n in GPU_PARTS and not has_gpu and not a.dry_run)]
            deadline = t0 + (end - t0) * WEIGHT[name] / sum(WEIGHT[n] for n in rest)
            print(f"[{name}] running (share of the budget: {deadline - t0:.0f} s) …", flush=True)
            try:
                with watchdog(deadline + GRACE):
                    r = PARTS[name](ctx, deadline); r.setdefault("status", "ok")
            except OutOfTime as e:
                r = dict(status="skipped", reason=f"time budget: {e}")
            except Exception as e:
                tb = traceback.format_exc()
                r = dict(status="fail", error=last_line(tb), traceback=tb[-4000:])
            finally:
                if torch.cuda.is_available(): torch.cuda.empty_cache()
        r["seconds"] = round(time.time() - t0, 1)
        report["parts"][name] = r
        print(f"[{name}] {r['status']} in {r['seconds']} s: {r.get('brief') or r.get('reason') or r.get('error', '')}", flush=True)
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(a.json).with_suffix(".tmp"); tmp.write_text(json.dumps(report, indent=1, default=str)); os.replace(tmp, a.json)
    report["seconds"] = round(time.time() - t_start, 1)
    tmp = Path(a.json).with_suffix(".tmp"); tmp.write_text(json.dumps(report, indent=1, default=str)); os.replace(tmp, a.json)
    shutil.rmtree(ctx.work, ignore_errors=True)
    print(f"\n{'part':13} {'status':8} {'s':>6}  result")
    for name, r in report["parts"].items():
        print(f"{name:13} {r['status']:8} {r['seconds']:6.1f}  {r.get('brief') or r.get('reason') or r.get('error', '')}")
    tp = report["parts"].get("throughput", {})
    if tp.get("formula"): print(f"\nthroughput: {tp['formula']}; peak {tp['peak_tflops']} TFLOP/s ({tp['peak_source']})")
    print(f"\n{report['note']}.\nwrote {a.json} ({report['seconds']:.0f} s)")
    return 1 if any(r["status"] == "fail" for r in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
