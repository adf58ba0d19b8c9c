"""Benchmark of the data pipeline (msvar.data): LR/HR pairs per second for the `small` and `paper` sizes,
through `make_loader` (read + crop + Real-ESRGAN degradation) with 0 and 2 loader workers, and `degrade`
alone on crops already in memory. All ratios come from one run; the machine is noisy.

    python bench/degrade.py                         # default: the bundled T91 images (data/train/T91)
    python bench/degrade.py --root ~/.cache/msvar/data/train   # T91 + BSD200, after `msvar_fetch_data bsds300`
    python bench/degrade.py --root DIR --seconds 10 # another HR folder, longer runs

Images smaller than the crop are upscaled (HRFolder's default); at the paper size (512 px) that is every
image of T91/BSD200, so the paper numbers include a bicubic upscale per item.
"""
import argparse, os, sys, time, warnings
from pathlib import Path
import torch
from msvar.core import get_preset, MsvarError
from msvar.data import DegradationConfig, HRFolder, degrade, make_loader


def loader_rate(ds, lr_size, batch_size, workers, seconds, seed=0):
    "Pairs/s through make_loader, timed after the first batch (worker start-up excluded), for about `seconds`."
    n, t0, done = 0, None, False
    while not done:
        for b in make_loader(ds, batch_size, seed=seed, num_workers=workers, lr_size=lr_size):
            if t0 is None: t0 = time.perf_counter(); continue
            n += b["hr"].shape[0]
            if time.perf_counter() - t0 > seconds: done = True; break
        seed += 1
    return n / (time.perf_counter() - t0)


def degrade_rate(ds, lr_size, seconds):
    "Pairs/s of degrade() alone, one image at a time (as the loader calls it), on crops already in memory."
    crops = [ds[(i % len(ds), i)]["hr"][None] for i in range(8)]
    cfg, n, t0 = DegradationConfig(), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        degrade(crops[n % 8], cfg, lr_size, torch.Generator().manual_seed(n), p_bilinear=0.25); n += 1
    return n / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None, help="folder of HR images (default: the bundled data/train/T91)")
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    ap.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    ap.add_argument("--seconds", type=float, default=8.0, help="time per measurement")
    ap.add_argument("--no-cache", dest="cache", action="store_false", help="decode the PNG at every item (HRFolder(cache=False))")
    a = ap.parse_args(argv)
    if a.root is None:
        from msvar.core import data_dir
        a.root = str(data_dir() / "train" / "T91")
    torch.set_num_threads(1)  # one core per process: the loader's workers are the parallelism being measured
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s) per process, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, HR images from {a.root}, cache={a.cache}")
    rows = []
    for name in a.presets:
        pre = get_preset(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = HRFolder(a.root, pre.hr_size, cache=a.cache)
        bs = 16 if pre.hr_size <= 128 else 4
        r = dict(preset=name, size=f"{pre.hr_size}→{pre.lr_size}", upscaled=f"{ds.n_upscaled}/{len(ds)}",
                 degrade_only=degrade_rate(ds, pre.lr_size, a.seconds))
        for w in a.workers: r[f"loader_{w}w"] = loader_rate(ds, pre.lr_size, bs, w, a.seconds)
        rows.append(r)
        print(r, flush=True)
    print("\npairs per second (higher is better)")
    cols = ["degrade_only"] + [f"loader_{w}w" for w in a.workers]
    print(f"{'preset':8s} {'HR→LR':>9s} {'upscaled':>9s} " + " ".join(f"{c:>13s}" for c in cols))
    for r in rows: print(f"{r['preset']:8s} {r['size']:>9s} {r['upscaled']:>9s} " + " ".join(f"{r[c]:13.1f}" for c in cols))
    if len(a.workers) > 1:
        w0, w1 = a.workers[0], a.workers[-1]
        for r in rows: print(f"{r['preset']}: {w1} workers / {w0} workers = {r[f'loader_{w1}w'] / r[f'loader_{w0}w']:.2f}×")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 workers only help when cores are free)")
    if len(rows) == 2:
        for c in cols: print(f"{c}: {rows[0]['preset']} / {rows[1]['preset']} = {rows[0][c] / rows[1][c]:.1f}×")


if __name__ == "__main__":
    try: main()
    except MsvarError as e:
        print(f"bench/degrade.py: error: {e}", file=sys.stderr); sys.exit(1)
