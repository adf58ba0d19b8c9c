#!/usr/bin/env bash
# While a run trains, keep a copy of its last.pt (weights + meta) at given steps, for a test-CE curve (chapter 11).
#   bash bench/keep_snapshots.sh RUN_DIR/var_d 900 1200 1500 &
# msvar_train keeps only last.pt/best.pt; a snapshot is taken when last.pt's step is in [k, k + ckpt_every).
set -uo pipefail
RUN=$1; shift
mkdir -p "$RUN/../snaps"
while true; do
  left=0
  for k in "$@"; do
    [ -f "$RUN/../snaps/step_$k.pt" ] && continue
    left=1
    python - "$RUN" "$k" <<'PY' 2>/dev/null
import sys, torch
from pathlib import Path
from msvar.train import load_checkpoint                       # weights_only: reading a checkpoint never runs code
run, k = Path(sys.argv[1]), int(sys.argv[2])
ck = load_checkpoint(run / "last.pt")
if k <= ck["step"] < k + 100:
    torch.save(dict(step=ck["step"], model=ck["model"], meta=ck["meta"]), run.parent / "snaps" / f"step_{k}.pt")
    print("snapshot", ck["step"], flush=True)
PY
  done
  [ $left = 0 ] && break
  sleep 20
done
