"""Train every dataset x model x seed combination, one run directory each, resumable; then run scripts/report.py.

    python scripts/run_matrix.py --datasets ../shared/data/emotion ../shared/data/sst2 \\
        --models sentence-transformers/all-MiniLM-L6-v2 --seeds 1 2 3 --output_dir outputs/matrix \\
        --num_train_epochs 2 --max_seq_length 64          # any other flag goes to train.py
    python scripts/run_matrix.py --config matrix.yaml     # datasets/models may carry their own train.py flags
    python scripts/run_matrix.py --config matrix.yaml --launcher "accelerate launch --num_processes 2"

matrix.yaml::

    output_dir: outputs/matrix
    datasets:
      - path: ../shared/data/emotion
      - {path: ../shared/data/trec, label_column: label_coarse}   # extra keys are train.py flags for this dataset
    models: [sentence-transformers/all-MiniLM-L6-v2]              # or {path: ..., name: ..., learning_rate: ...}
    seeds: [1, 2]
    train_args: {max_train_samples: 64, num_train_epochs: 1}

Runs go to ``<output_dir>/<dataset>/<model>/seed<k>/``. A run whose ``results.json`` exists is skipped, so running
the matrix again retrains nothing; an interrupted run with checkpoints resumes from them; one that failed before
its first checkpoint starts over. A failed run does not stop the others; the failures are listed at the end and
the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import load_config_file  # noqa: E402
from utils import UsageError, short_name  # noqa: E402


@dataclass
class Entry:
    """One dataset or model of the matrix: what to pass, the name used in paths, and its own train.py flags."""

    path: str
    name: str
    args: dict[str, Any] = field(default_factory=dict)


def parse_entry(item: str | dict[str, Any], kind: str) -> Entry:
    """A plain string, or a mapping with ``path`` (and optional ``name``) plus per-entry train.py flags."""
    if isinstance(item, str):
        return Entry(path=item, name=short_name(item))
    if not isinstance(item, dict) or "path" not in item:
        raise UsageError(f"each of {kind} must be a string or a mapping with a 'path' key, got {item!r}.")
    args = {k: v for k, v in item.items() if k not in ("path", "name")}
    name = item.get("name") or short_name(item["path"])
    # Two uses of one dataset (say trec's coarse and fine labels) need different folder names.
    if "name" not in item and args.get("label_column") not in (None, "label"):
        name = f"{name}-{args['label_column']}"
    return Entry(path=item["path"], name=name, args=args)


def flags(args: dict[str, Any]) -> list[str]:
    """train.py command-line flags from a mapping (lists become repeated values, booleans bare flags)."""
    out: list[str] = []
    for key, value in args.items():
        if isinstance(value, bool):
            out += [f"--{key}" if value else f"--no-{key}"]
        elif isinstance(value, list):
            out += [f"--{key}", *map(str, value)]
        elif value is not None:
            out += [f"--{key}", str(value)]
    return out


def plan(cfg: dict[str, Any], extra: list[str]) -> list[tuple[Path, list[str]]]:
    """Every (run directory, train.py arguments) pair of the matrix."""
    datasets = [parse_entry(d, "datasets") for d in cfg.get("datasets") or []]
    models = [parse_entry(m, "models") for m in cfg.get("models") or []]
    seeds = cfg.get("seeds") or [42]
    if not datasets or not models:
        raise UsageError("the matrix needs at least one dataset and one model (--datasets/--models or the config).")
    root = Path(cfg.get("output_dir") or "outputs/matrix")
    runs = []
    for dataset in datasets:
        for model in models:
            for seed in seeds:
                run_dir = root / dataset.name / model.name / f"seed{seed}"
                args = {**(cfg.get("train_args") or {}), **dataset.args, **model.args}
                args |= {"dataset": dataset.path, "model_name_or_path": model.path, "seed": seed}
                args |= {"output_dir": str(run_dir), "runs_root": str(root)}
                runs.append((run_dir, flags(args) + extra))
    return runs


def resume_flags(run_dir: Path) -> list[str]:
    """How to restart an unfinished run: resume from its checkpoints, or start over in its folder."""
    if not run_dir.exists():
        return []
    if any((run_dir / "checkpoints").glob("step_*/meta.json")):
        return ["--resume_from_checkpoint", "latest"]
    return ["--overwrite_output_dir"]


def main(argv: list[str] | None = None) -> int:
    """Run the matrix; returns the number of failed runs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML/JSON with datasets, models, seeds, train_args, output_dir.")
    parser.add_argument("--datasets", nargs="+", help="Datasets (train.py --dataset values).")
    parser.add_argument("--models", nargs="+", help="Models (train.py --model_name_or_path values).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Seeds (default 42).")
    parser.add_argument("--output_dir", help="Root of the run directories (default outputs/matrix).")
    parser.add_argument("--launcher", default=None, help='Prefix command, e.g. "accelerate launch --num_processes 2".')
    parser.add_argument("--dry_run", action="store_true", help="Print the commands without running them.")
    args, extra = parser.parse_known_args(argv)
    cfg = load_config_file(args.config) if args.config else {}
    for key in ("datasets", "models", "seeds", "output_dir"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    launcher = shlex.split(args.launcher) if args.launcher else [sys.executable]
    runs = plan(cfg, extra)
    failed, skipped, done = [], 0, 0
    for i, (run_dir, run_args) in enumerate(runs, 1):
        if (run_dir / "results.json").is_file():
            skipped += 1
            print(f"[{i}/{len(runs)}] skip {run_dir} (results.json exists)", flush=True)
            continue
        command = [*launcher, str(REPO / "train.py"), *run_args, *resume_flags(run_dir)]
        print(f"[{i}/{len(runs)}] {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        start = time.perf_counter()
        proc = subprocess.run(command)
        if proc.returncode == 0:
            done += 1
            results = json.loads((run_dir / "results.json").read_text())
            test = results.get("test") or {}
            print(
                f"[{i}/{len(runs)}] done in {time.perf_counter() - start:.0f}s: validation macro_f1 "
                f"{results['validation']['macro_f1']:.4f}, test macro_f1 {test.get('macro_f1', float('nan')):.4f}",
                flush=True,
            )
        else:
            failed.append((run_dir, proc.returncode))
            print(f"[{i}/{len(runs)}] FAILED (exit {proc.returncode}): {run_dir}", flush=True)
    print(f"matrix: {done} trained, {skipped} skipped, {len(failed)} failed of {len(runs)} runs")
    for run_dir, code in failed:
        print(f"  failed (exit {code}): {run_dir}  (see {run_dir / 'train.log'})")
    if not args.dry_run:
        print(f"table: python {REPO / 'scripts' / 'report.py'} {cfg.get('output_dir') or 'outputs/matrix'}")
    return len(failed)


if __name__ == "__main__":
    try:
        sys.exit(1 if main() else 0)
    except (UsageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
