#!/usr/bin/env bash
# Score a split of every finished run under a folder: bash scripts/batch_eval.sh [ROOT=outputs] [SPLIT=test]
# Each run gets eval_<split>.json, predictions_<split>.jsonl and confusion_<split>.png; then one table.
set -euo pipefail
root=${1:-outputs}
split=${2:-test}
here=$(cd "$(dirname "$0")/.." && pwd)
find "$root" -name results.json -print0 | sort -z | while IFS= read -r -d '' results; do
  run_dir=$(dirname "$results")
  echo "== $run_dir"
  "${PYTHON:-python}" "$here/evaluate.py" --run_dir "$run_dir" --split "$split" | tail -n 1
done
"${PYTHON:-python}" "$here/scripts/report.py" "$root"
