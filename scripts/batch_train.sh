#!/usr/bin/env bash
# One training run per line, in the spirit of shell recipes: DATASET MODEL BATCH [extra train.py flags...]
#   bash scripts/batch_train.sh ../shared/data/emotion sentence-transformers/all-MiniLM-L6-v2 32 --num_train_epochs 2
# Runs land in outputs/<dataset>/<model>/seed<SEED>/ (SEED env var, default 42); a finished run is skipped.
# LAUNCH overrides the launcher, e.g. LAUNCH="accelerate launch --num_processes 2 --mixed_precision bf16".
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 DATASET MODEL BATCH [train.py flags...]" >&2
  exit 2
fi
dataset=$1 model=$2 batch=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
seed=${SEED:-42}
run_dir=${RUNS_ROOT:-outputs}/$(basename "${dataset%/}")/$(basename "${model%/}")/seed${seed}
if [ -f "$run_dir/results.json" ]; then
  echo "skip $run_dir (results.json exists)"
  exit 0
fi
${LAUNCH:-accelerate launch} "$here/train.py" --dataset "$dataset" --model_name_or_path "$model" \
  --per_device_train_batch_size "$batch" --seed "$seed" --output_dir "$run_dir" --runs_root "${RUNS_ROOT:-outputs}" "$@"
