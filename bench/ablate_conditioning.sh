#!/usr/bin/env bash
# Chapter 11: four ways to condition the VAR on the LR image, one fixed budget each (120 steps x 16 crops,
# CE only, same tokenizer, data and seed), each scored by bench/quality.py; then one summary JSON.
#   bash bench/ablate_conditioning.sh TRAIN_DIR TEST_DIR TOKENIZER RUN_DIR OUT_JSON_DIR
# TEST_DIR must hold Set14/ and BSD100/. TOKENIZER: the HIT tokenizer (bench/ship_small.sh makes runs/ship/hit.pt).
set -euo pipefail
TRAIN=$1; TEST=$2; TOK=$3; RUN=$4; OUT=$5
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$RUN" "$OUT"
for v in "a own --prefix-pos own --no-lr-add" "b grid --prefix-pos grid --no-lr-add" "c own+add --prefix-pos own --lr-add" "d grid+add --prefix-pos grid --lr-add"; do
  set -- $v; name=abl_$1; shift 2
  if [ ! -f "$RUN/$name/DONE" ]; then
    OMP_WAIT_POLICY=PASSIVE msvar_train --preset small --data "$TRAIN" --tokenizer "$TOK" --out "$RUN/$name" --steps 120 --batch-size 16 \
      --no-dpo --threads 2 --ckpt-every 50 --no-progress --resume "$@" && touch "$RUN/$name/DONE"
  fi
  [ -f "$OUT/ablation_$name.json" ] || python "$HERE/quality.py" --var "$RUN/$name/last.pt" --tokenizer "$TOK" \
    --data "$TEST/Set14" "$TEST/BSD100" --tf --threads 2 --name "$name" --json "$OUT/ablation_$name.json"
done
python - "$RUN" "$OUT" <<'PY'
import json, sys
from pathlib import Path
run, out = Path(sys.argv[1]), Path(sys.argv[2])
labels = {"a": ("a: own prefix positions (first design)", "own", False), "b": ("b: prefix on the image grid (paper)", "grid", False),
          "c": ("c: own positions + LR added at every scale", "own", True), "d": ("d: image grid + LR added at every scale", "grid", True)}
variants = []
for k, (label, pos, add) in labels.items():
    name = f"abl_{k}"
    log = [json.loads(l) for l in (run / name / "log.jsonl").read_text().splitlines()]
    variants.append(dict(label=label, prefix_pos=pos, lr_add=add, steps=log[-1]["step"] + 1, json=f"ablation_{name}.json",
                         minutes=round(sum(r["sec"] for r in log) / 60, 2),
                         train_ce_last20=sum(r["ce"] for r in log[-20:]) / len(log[-20:])))
(out / "ablation.json").write_text(json.dumps(dict(batch=16, loss="CE only", variants=variants), indent=1))
print(json.dumps(variants, indent=1))
PY
