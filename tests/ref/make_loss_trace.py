"""Writes tests/ref/loss_trace.json: every step's logged losses of three short trainings on the `test` preset, run
through the package's own training entry points, one after the other as a user would chain the commands:

  1. `train_tokenizer` (msvar_train_tokenizer): the tokenizer from scratch;
  2. `finetune_hit` (msvar_finetune_hit): both HIT phases from that tokenizer;
  3. `train_var` (msvar_train): the VAR with CE + DPO on that HIT tokenizer's tokens.

CPU, fp32, eager (no torch.compile), one thread, fixed seeds, LPIPS on, the first images of the bundled data/train/T91.
tests/test_loss_trace.py reruns `trace()` and compares it with the file, so a refactor that changes training fails.
Rerun this only when training is *meant* to change:

    python tests/ref/make_loss_trace.py

`--old-api` runs the same trainings through the entry points' earlier homes (train_tokenizer in msvar.tokenizer,
finetune_hit in msvar.hit), to measure a refactor against a checkout from before chapter 07a existed, e.g.

    PYTHONPATH=/path/to/old/checkout python tests/ref/make_loss_trace.py --old-api --out /tmp/old_trace.json
"""

import argparse, importlib, json, shutil, sys, tempfile
from pathlib import Path
import torch

REPO = Path(__file__).resolve().parents[2]
REF = Path(__file__).with_name("loss_trace.json")
COMMAND = "python tests/ref/make_loss_trace.py"
# Everything that defines the three runs. Small enough that `trace()` takes about 8 s on one core.
SETTINGS = dict(
    preset="test",
    data="data/train/T91",
    n_images=8,  # the first 8 file names, sorted: enough for distinct batches, quick to decode
    seed=0,
    batch_size=4,
    device="cpu",
    precision="fp32",
    compile="off",
    threads=1,
    tokenizer=dict(steps=6, lpips_weight=1.0),
    hit=dict(steps1=3, steps2=2, lpips_weight=5.0),
    var=dict(steps=5, dpo=True),
)
# DPO's β of the recorded trace: the recipe's default was 1 then (it is 0.1 now); given explicitly, so the trace stays
TRACE_DPO_BETA = 1.0
# the loop's bookkeeping in a log row (chapter 07's `train_step`): not a loss, or not reproducible (timings)
NOT_LOSSES = ("step", "phase", "lr", "grad_norm", "skipped", "nan_total", "img_per_s", "sec")


def entry_points(old_api: bool = False) -> tuple:
    "(train_tokenizer, finetune_hit, train_var) of the current package, or of its layout before chapter 07a."
    homes = ("tokenizer", "hit") if old_api else ("train_tokenizer", "train_tokenizer")
    tok = importlib.import_module(f"msvar.{homes[0]}").train_tokenizer
    hit = importlib.import_module(f"msvar.{homes[1]}").finetune_hit
    return tok, hit, importlib.import_module("msvar.train_var").train_var


def losses(log: Path) -> list:
    "Each row of a log.jsonl as {name: value} of its losses only."
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k not in NOT_LOSSES} for r in rows]


def _images(work: Path, s: dict) -> Path:
    "A folder holding the first `n_images` images of the bundled data folder."
    src = sorted((REPO / s["data"]).iterdir())[: s["n_images"]]
    dst = work / "images"
    dst.mkdir()
    for f in src:
        shutil.copy(f, dst / f.name)
    return dst


def run_stages(work: Path, s: dict = SETTINGS, old_api: bool = False) -> dict:
    "The three runs in `work`; returns {stage: [per-step losses]}."
    train_tokenizer, finetune_hit, train_var = entry_points(old_api)
    data, common = _images(work, s), dict(seed=s["seed"], device=s["device"], precision=s["precision"])
    t = s["tokenizer"]
    train_tokenizer(
        s["preset"],
        data,
        work / "tok",
        steps=t["steps"],
        batch_size=s["batch_size"],
        lpips_weight=t["lpips_weight"],
        require_lpips=True,
        progress=False,
        compile=s["compile"],
        **common,
    )
    h = s["hit"]
    finetune_hit(
        work / "tok" / "last.pt",
        work / "hit",
        data,
        h["steps1"],
        h["steps2"],
        s["batch_size"],
        lpips_weight=h["lpips_weight"],
        progress=False,
        **common,
    )
    v = s["var"]
    var_cfg = importlib.import_module("msvar.train_var").VarTrainConfig(
        steps=v["steps"],
        batch_size=s["batch_size"],
        dpo=v["dpo"],
        dpo_beta=TRACE_DPO_BETA,
        compile=s["compile"],
        progress=False,
        **common,
    )
    train_var(s["preset"], data, work / "hit" / "last.pt", work / "var", var_cfg)
    hit_rows = [dict(phase=ph, **r) for ph in (1, 2) for r in losses(work / "hit" / f"phase{ph}" / "log.jsonl")]
    return dict(tokenizer=losses(work / "tok" / "log.jsonl"), hit=hit_rows, var=losses(work / "var" / "log.jsonl"))


def trace(s: dict = SETTINGS, old_api: bool = False) -> dict:
    "The stages' losses with the settings and command that made them; the global torch state comes back unchanged."
    threads = torch.get_num_threads()
    torch.set_num_threads(s["threads"])
    try:
        with tempfile.TemporaryDirectory() as d:
            stages = run_stages(Path(d), s, old_api)
    finally:
        torch.set_num_threads(threads)
    return dict(command=COMMAND, settings=s, torch=torch.__version__.split("+")[0], stages=stages)


def differences(a: dict, b: dict) -> dict:
    "Per stage: the largest absolute and relative difference between two traces' losses (their names must agree)."
    out = {}
    for stage in a["stages"]:
        ra, rb = a["stages"][stage], b["stages"][stage]
        if len(ra) != len(rb) or any(x.keys() != y.keys() for x, y in zip(ra, rb)):
            raise ValueError(f"stage {stage!r}: the two traces log different steps or losses")
        pairs = [(x[k], y[k]) for x, y in zip(ra, rb) for k in x if k != "phase"]
        out[stage] = dict(
            max_abs=max(abs(p - q) for p, q in pairs),
            max_rel=max(abs(p - q) / max(abs(q), 1e-12) for p, q in pairs),
            values=len(pairs),
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REF), help="where to write the trace (default: the reference file)")
    ap.add_argument("--old-api", action="store_true", help="use the entry points' homes before chapter 07a")
    ap.add_argument("--compare", default=None, metavar="JSON", help="print the differences from this trace")
    a = ap.parse_args(argv)
    t = trace(old_api=a.old_api)
    Path(a.out).write_text(json.dumps(t, indent=1) + "\n")
    print(f"wrote {a.out} ({', '.join(f'{k}: {len(v)} steps' for k, v in t['stages'].items())})", file=sys.stderr)
    if a.compare:
        print(json.dumps(differences(t, json.loads(Path(a.compare).read_text())), indent=1))


if __name__ == "__main__":
    main()
