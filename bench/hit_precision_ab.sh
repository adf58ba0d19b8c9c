#!/usr/bin/env bash
# bf16 against fp32 HIT finetune: the same base tokenizer finetuned twice (same seed, data and batches), side by
# side with one thread each, then what each decodes at the three stage sizes from its HIT tokens on the test crops
# (chapter 04's scale_metrics: PSNR on Y and LPIPS against the HR resized to each size). The base is scored too.
#
#   bash bench/hit_precision_ab.sh BASE_TOKENIZER                 # e.g. runs/repro_small/tokenizer/last.pt
#   STEPS1=150 STEPS2=50 OUT=runs/hit_precision bash bench/hit_precision_ab.sh BASE_TOKENIZER
set -euo pipefail
BASE=${1:?usage: bash bench/hit_precision_ab.sh BASE_TOKENIZER}
CACHE=$(python -c "from msvar.fetch import data_cache; print(data_cache())")
DATA=${DATA:-$CACHE/train}; TEST=${TEST:-$CACHE/test}; OUT=${OUT:-runs/hit_precision}
STEPS1=${STEPS1:-300}; STEPS2=${STEPS2:-100}; BATCH=${BATCH:-12}; LPIPS_WEIGHT=${LPIPS_WEIGHT:-1}
mkdir -p "$OUT"
for P in fp32 bf16; do
  OMP_NUM_THREADS=1 msvar_finetune_hit --tokenizer "$BASE" --data "$DATA" --out "$OUT/$P" --steps1 "$STEPS1" --steps2 "$STEPS2" \
    --batch-size "$BATCH" --lpips-weight "$LPIPS_WEIGHT" --precision "$P" > "$OUT/$P.log" 2>&1 &
done
wait
python - "$OUT" "$BASE" "$TEST/Set14" "$TEST/BSD100" <<'PY'
import sys, statistics
from pathlib import Path
import pandas as pd
from msvar.files import list_images
from msvar.hit import HITTokenizer, center_crops, load_hit, scale_metrics
from msvar.tokenizer import load_tokenizer
from msvar.train import read_log
out, base = Path(sys.argv[1]), sys.argv[2]
models = {"base (no finetune)": HITTokenizer(*load_tokenizer(base)), "fp32": load_hit(out / "fp32" / "last.pt"), "bf16": load_hit(out / "bf16" / "last.pt")}
p = models["fp32"].preset
hr = center_crops(list_images([Path(d) for d in sys.argv[3:]]), p.hr_size)
t = pd.concat({k: scale_metrics(m.eval(), hr, modes=("hit",)) for k, m in models.items()}).droplevel(1)
print(f"{len(hr)} crops of {p.hr_size} px; HIT decodes at each stage size: PSNR (Y, dB) and LPIPS")
print(t.round(3).to_string())
for k in ("fp32", "bf16"):
    rows = read_log(out / k / "phase1" / "log.jsonl")
    print(f"{k}: phase 1 median {statistics.median(r['img_per_s'] for r in rows):.2f} img/s, last-30 mean loss {statistics.mean(r['loss'] for r in rows[-30:]):.4f}")
PY
