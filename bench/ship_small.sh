#!/usr/bin/env bash
# How data/msvar_small.pt is made, resumable: rerun the same command to continue where it stopped.
#
#   bash bench/ship_small.sh TRAIN_DIR [RUN_DIR]        # e.g. bash bench/ship_small.sh ~/.cache/msvar/data/train runs/ship
#
# TRAIN_DIR: T91/ and BSD200/ (the 291 training images; `msvar_fetch_data bsds300` gets BSD200). The last 20 BSD200
# images by name are held out as the validation split (RUN/data/val) on which decoding and the colour fix are chosen;
# everything trains on the other 271 (RUN/data/train). The reported test sets (Set14, BSD100) are never used here.
# 0. The starting point is the previous model file (git show e156692:data/msvar_small.pt): its tokenizer and its VAR.
# 1. Tokenizer: continued from that tokenizer's weights (vocabulary included) with replicate padding (the small
#    preset's), l2 + 0.1 LPIPS, a 3000-step schedule of 16 crops at lr 3e-4, one thread. The shipped tokenizer is this
#    run's checkpoint at step 2250 (the run was stopped there to leave the machine to the VAR; --save-every 250 writes
#    it): to reproduce the shipped file exactly, stop the run after its step-2250 checkpoint and copy that last.pt aside;
#    left to finish, the script trains on to step 3000 (a slightly better tokenizer, a different model).
# 2. HIT finetune of it: 300 + 100 steps, l2 + 0.1 LPIPS.
# 3. VAR: initialised from the previous model's VAR, CE + DPO (beta 0.1), 16 degraded crops per step, VAR_STEPS steps.
# 4. The model file (safetensors): tokenizer + VAR in half precision.
set -euo pipefail
TRAIN=${1:?usage: bash bench/ship_small.sh TRAIN_DIR [RUN_DIR]}
RUN=${2:-runs/ship}
TOK_STEPS=${TOK_STEPS:-3000}
VAR_STEPS=${VAR_STEPS:-2000}
THREADS=${THREADS:-2}
mkdir -p "$RUN/data/train/T91" "$RUN/data/train/BSD200" "$RUN/data/val/BSD200"
if [ -z "$(ls -A "$RUN/data/train/T91")" ]; then
  for f in "$TRAIN"/T91/*; do ln -s "$(realpath "$f")" "$RUN/data/train/T91/"; done
  n=$(ls "$TRAIN"/BSD200 | wc -l); i=0
  for f in $(ls "$TRAIN"/BSD200 | sort); do
    i=$((i + 1)); dst=train; [ $i -gt $((n - 20)) ] && dst=val
    ln -s "$(realpath "$TRAIN/BSD200/$f")" "$RUN/data/$dst/BSD200/"
  done
fi
if [ ! -f "$RUN/previous.pt" ]; then
  git show e156692:data/msvar_small.pt > "$RUN/previous.pt.tmp" && mv "$RUN/previous.pt.tmp" "$RUN/previous.pt"
  python -c "
import torch; from msvar.inference import load_sr_model
torch.save(load_sr_model('$RUN/previous.pt').var.state_dict(), '$RUN/previous_var.pth')"
fi
msvar_train_tokenizer --preset small --data "$RUN/data/train" --out "$RUN/tokenizer" --init "$RUN/previous.pt" \
  --steps "$TOK_STEPS" --batch-size 16 --lr 3e-4 --lpips-weight 0.1 --save-every 250 --threads 1
msvar_finetune_hit --tokenizer "$RUN/tokenizer/last.pt" --data "$RUN/data/train" --out "$RUN/hit" --lpips-weight 0.1
resume=(); [ -f "$RUN/var/last.pt" ] && resume=(--resume)
OMP_WAIT_POLICY=PASSIVE msvar_train --preset small --data "$RUN/data/train" --tokenizer "$RUN/hit/last.pt" --out "$RUN/var" \
  --init-var "$RUN/previous_var.pth" --steps "$VAR_STEPS" --batch-size 16 --dpo-beta 0.1 --threads "$THREADS" \
  --ckpt-every 100 --sample-every 1000 --no-progress "${resume[@]}"
python - "$RUN" <<'PY'
import sys
from pathlib import Path
from msvar.inference import sr_model_from_checkpoint, save_sr_model
from msvar.train import load_checkpoint
run = Path(sys.argv[1])
ck = load_checkpoint(run / "var" / "last.pt")
save_sr_model(sr_model_from_checkpoint(ck, run / "hit" / "last.pt"), run / "msvar_small.safetensors", half=True, steps=ck["step"],
              meta=ck["meta"])
print(f"wrote {run / 'msvar_small.safetensors'} (VAR step {ck['step']}); copy it to data/")
PY
