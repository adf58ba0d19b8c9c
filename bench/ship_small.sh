#!/usr/bin/env bash
# How data/msvar_small.pt is made (issue 14's "ship" plan), resumable: rerun the same command to continue.
#
#   bash bench/ship_small.sh TRAIN_DIR [RUN_DIR]        # e.g. bash bench/ship_small.sh my_train_images runs/ship
#
# TRAIN_DIR: the training images (this project used T91 + BSD200, 291 images; `msvar_fetch_data bsds300` gets BSD200).
# 1. The HIT tokenizer is the one shipped in the first release's data/msvar_small.pt (commit 461b044: 1200 tokenizer
#    steps of 16 crops + the 300 + 100-step HIT finetune with l2 + 1*LPIPS, made by `msvar_reproduce --preset small`);
#    it is taken out of that file unchanged, so the new model file carries the very same tokenizer weights.
# 2. The VAR: the default conditioning (prefix on the image grid + LR features added to every scale, chapter 11),
#    CE + DPO with beta 0.1, 16 degraded crops per step, 2 CPU threads. The shipped model was made in two runs of the
#    same folder: `PRECISION=fp32 STEPS=1500 bash bench/ship_small.sh TRAIN` (the previous release), then
#    `STEPS=3000 bash bench/ship_small.sh TRAIN`, which resumes at step 1500 with the schedule rescaled to 3000 steps
#    and the default precision (auto: bf16 on this CPU). Snapshots for chapter 11's curve are kept every 300 steps.
# 3. The model file: tokenizer + VAR in half precision (msvar_sr's default model).
set -euo pipefail
TRAIN=${1:?usage: bash bench/ship_small.sh TRAIN_DIR [RUN_DIR]}
RUN=${2:-runs/ship}
STEPS=${STEPS:-3000}
PRECISION=${PRECISION:-auto}
mkdir -p "$RUN"
if [ ! -f "$RUN/hit.pt" ]; then
  git show 461b044:data/msvar_small.pt > "$RUN/first_release.pt"
  python -c "
from msvar.inference import load_sr_model; from msvar.hit import save_hit
save_hit(load_sr_model('$RUN/first_release.pt').hit, '$RUN/hit.pt')"
fi
resume=(); [ -f "$RUN/var_d/last.pt" ] && resume=(--resume)
bash "$(dirname "$0")/keep_snapshots.sh" "$RUN/var_d" $(seq 300 300 "$STEPS") & snaps=$!   # for chapter 11's test-CE curve
OMP_WAIT_POLICY=PASSIVE msvar_train --preset small --data "$TRAIN" --tokenizer "$RUN/hit.pt" --out "$RUN/var_d" \
  --steps "$STEPS" --batch-size 16 --dpo-beta 0.1 --precision "$PRECISION" --threads 2 --ckpt-every 100 --sample-every 500 --no-progress "${resume[@]}"
kill $snaps 2>/dev/null || true
python - "$RUN" <<'EOF'
import sys
from pathlib import Path
from msvar.inference import sr_model_from_checkpoint, save_sr_model
from msvar.train import load_checkpoint
run = Path(sys.argv[1])
ck = load_checkpoint(run / "var_d" / "last.pt")
save_sr_model(sr_model_from_checkpoint(ck, run / "hit.pt"), run / "msvar_small.pt", half=True, steps=ck["step"], meta=ck["meta"])
print(f"wrote {run / 'msvar_small.pt'} (VAR step {ck['step']}); copy it to data/msvar_small.pt")
EOF
