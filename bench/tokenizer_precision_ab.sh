#!/usr/bin/env bash
# bf16 against fp32 tokenizer training: two `small` runs of STEPS steps from the same seed, data and batches,
# side by side with one thread each, then what each reconstructs of the test crops (bench/tokenizer_ceiling.py) and the
# median images/s each logged. DATA and TEST default to the data cache (`msvar_fetch_data bsds300` makes train/ and test/).
#
#   bash bench/tokenizer_precision_ab.sh                      # 300 steps each, in runs/tok_precision
#   BF16_STEPS=600 OUT=runs/tok_precision_eq bash bench/tokenizer_precision_ab.sh   # bf16 for about the same CPU time
#   SEED=1 OUT=runs/tok_precision_s1 bash bench/tokenizer_precision_ab.sh     # another seed: how far two runs differ anyway
set -euo pipefail
CACHE=$(python -c "from msvar.fetch import data_cache; print(data_cache())")
DATA=${DATA:-$CACHE/train}; TEST=${TEST:-$CACHE/test}; OUT=${OUT:-runs/tok_precision}; STEPS=${STEPS:-300}; SEED=${SEED:-0}
declare -A N=([fp32]=$STEPS [bf16]=${BF16_STEPS:-$STEPS})
for P in fp32 bf16; do
  msvar_train_tokenizer --preset small --data "$DATA" --out "$OUT/$P" --steps "${N[$P]}" --seed "$SEED" --precision "$P" --threads 1 > "$OUT.$P.log" 2>&1 &
done
wait
python bench/tokenizer_ceiling.py --tok "fp32=$OUT/fp32/last.pt" "bf16=$OUT/bf16/last.pt" --data "$TEST/Set14" "$TEST/BSD100" --json "$OUT/ceiling.json"
python - "$OUT" <<'PY'
import sys, statistics
from msvar.train import read_log
for p in ("fp32", "bf16"):
    rows = read_log(f"{sys.argv[1]}/{p}/log.jsonl")
    print(f"{p}: {len(rows)} steps, median {statistics.median(r['img_per_s'] for r in rows):.2f} img/s, "
          f"last-50 mean loss {statistics.mean(r['loss'] for r in rows[-50:]):.4f} (l2 {statistics.mean(r['l2'] for r in rows[-50:]):.4f})")
PY
