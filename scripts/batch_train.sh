#!/usr/bin/env bash
# One training run per line, in the spirit of shell recipes: DATASET MODEL BATCH [extra train.py flags...]
#   bash scripts/batch_train.sh ../shared/data/emotion sentence-transformers/all-MiniLM-L6-v2 32 --num_train_epochs 2
# Runs land in outputs/<dataset>/<model>/seed<SEED>/ (SEED env var, default 42; RUNS_ROOT replaces outputs/).
# LAUNCH overrides the launcher, e.g. LAUNCH="accelerate launch --num_processes 2 --mixed_precision bf16".
#
# It is a one-cell scripts/run_matrix.py, so both share one set of rules: a finished run (results.json) is skipped;
# an interrupted one resumes from its latest checkpoint, or starts over in its folder when it has none; a folder
# already holding runs of another dataset or model with the same last path component (org1/bert-base, then
# org2/bert-base) is not reused: the second gets <name>-<hash of its full path>; and a folder trained with other
# settings (another BATCH, learning rate...) is refused with exit code 2 instead of being skipped as done.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 DATASET MODEL BATCH [train.py flags...]" >&2
  exit 2
fi
dataset=$1 model=$2 batch=$3
shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
exec "${PYTHON:-python}" "$here/scripts/run_matrix.py" --datasets "$dataset" --models "$model" --seeds "${SEED:-42}" \
  --output_dir "${RUNS_ROOT:-outputs}" --launcher "${LAUNCH:-accelerate launch}" \
  --per_device_train_batch_size "$batch" "$@"
