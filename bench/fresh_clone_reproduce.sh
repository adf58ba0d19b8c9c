#!/usr/bin/env bash
# Wall time of the small reproduction from a fresh clone: clone this repository into an empty folder, create a venv,
# install, fetch the LPIPS/FID weights and the data (`msvar_fetch_data bsds300`: BSD200 + BSD100 beside the bundled T91,
# Set5, Set14), run the whole `msvar_reproduce --preset small` (tokenizer and HIT finetune included, five VARs with two
# seeds each), and print the time of each part. Needs about 2 GB of disk for the run folder.
#
#   bash bench/fresh_clone_reproduce.sh [WORKDIR]      # default WORKDIR: /tmp/msvar_fresh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/msvar_fresh}
[ -e "$work/main" ] && { echo "error: $work/main exists; choose another WORKDIR" >&2; exit 1; }
mkdir -p "$work"
git clone -q "$repo" "$work/main" && cd "$work/main"
t0=$(date +%s)
python3 -m venv .venv && . .venv/bin/activate && pip install -q -e .
t1=$(date +%s); msvar_fetch_weights
t2=$(date +%s); msvar_fetch_data bsds300
t3=$(date +%s); msvar_reproduce --preset small --out runs/repro_small
t4=$(date +%s)
echo "install $((t1 - t0)) s, weights $((t2 - t1)) s, data $((t3 - t2)) s, reproduction $((t4 - t3)) s, total $((t4 - t0)) s"
