#!/usr/bin/env bash
# Score a split of every finished run under a folder: bash scripts/batch_eval.sh [ROOT=outputs] [SPLIT=test]
# Each run gets eval_<split>.json, predictions_<split>.jsonl and confusion_<split>.png; then one table. A run whose
# data had no labeled SPLIT (results.json records it as null) is skipped with a note; a run evaluate.py fails on does
# not stop the others, but the script then exits 1 naming it.
set -euo pipefail
root=${1:-outputs}
split=${2:-test}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
failed=()
while IFS= read -r -d '' results; do
  run_dir=$(dirname "$results")
  # train.py writes null for a split its data lacks (a single file, a test split of hidden labels): nothing to score.
  if "$python" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])).get(sys.argv[2], 0) is not None)' \
    "$results" "$split" 2>/dev/null; then
    echo "skip $run_dir: its data had no labeled $split split (results.json's $split is null)"
    continue
  fi
  echo "== $run_dir"
  status=0
  "$python" "$here/evaluate.py" --run_dir "$run_dir" --split "$split" | tail -n 1 || status=$?
  if ((status > 128)); then # interrupted (evaluate.py exits 130 on Ctrl-C): stop, as the user asked
    exit "$status"
  fi
  if ((status != 0)); then
    failed+=("$run_dir")
  fi
done < <(find "$root" -name results.json -print0 | sort -z)
"$python" "$here/scripts/report.py" "$root"
if ((${#failed[@]})); then
  plural=$([ ${#failed[@]} -eq 1 ] && echo run || echo runs)
  joined=$(printf ', %s' "${failed[@]}")
  echo "error: evaluate.py failed on ${#failed[@]} $plural: ${joined:2}" >&2
  exit 1
fi
