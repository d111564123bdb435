"""Accuracy parity: this project's default recipe against the HF Trainer's, several seeds on several datasets.

    python scripts/quality.py                                   # emotion, sst2, trec; 5 seeds; ours vs trainer
    python scripts/quality.py --recipes ours ours-fp32 ours-random trainer --datasets ../shared/data/sst2
    python scripts/quality.py --output_dir outputs/quality      # resumes: finished (recipe, dataset, seed) are kept

Recipes, all with the same data rows, model and hyper-parameters (the flags below):
- ``ours``: the README's command, ``accelerate launch --mixed_precision <bf16 where the device has it> train.py``
  (length-grouped batches, the checkpoint's pooling, the best validation state reloaded for test);
- ``ours-fp32``, ``ours-random``, ``ours-fp32-random``: the same without bf16 autocast, without length grouping,
  or without both, to see what each costs; ``ours-pooler``, ``ours-mean``, ``ours-cls``: one pooling (the Trainer's [CLS]
  through the pretrained pooler, mean, or raw [CLS]) in place of what ``--pooling auto`` picks;
- ``trainer``: the HF Trainer's default recipe (scripts/trainer_recipe.py --recipe default: fp32, random batches,
  AutoModelForSequenceClassification, the best validation state reloaded); ``trainer-best``: bf16 and
  ``group_by_length``.
Every run is a fresh process; its scores and wall time are appended to ``<output_dir>/runs.jsonl``. The table gives
per dataset mean ± std of test macro-F1 for each recipe and the paired difference (same seed) of each recipe against
``--reference`` with a 95% t interval. The last stdout line is JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import DEFAULT_MODEL, option, parse_config  # noqa: E402
from utils import UsageError, atomic_write_text, counted, source_key  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DEFAULT_DATASETS = [str(SHARED / "emotion"), str(SHARED / "sst2"), f"{SHARED / 'trec'}:label_coarse"]
# train.py flags of our variants (on top of the shared hyper-parameters).
OURS = {
    "ours": [],
    "ours-fp32": [],
    "ours-random": ["--no-group_by_length"],
    "ours-fp32-random": ["--no-group_by_length"],
    "ours-pooler": ["--pooling", "pooler"],
    "ours-mean": ["--pooling", "mean"],
    "ours-cls": ["--pooling", "cls"],
}
OURS_FP32 = {"ours-fp32", "ours-fp32-random"}  # launched with --mixed_precision no
TRAINER = {"trainer": "default", "trainer-best": "best"}


@dataclass
class QualityConfig:
    """Which recipes, datasets and seeds; the hyper-parameters every recipe shares."""

    datasets: list[str] | None = option(None, "Datasets as PATH or PATH:LABEL_COLUMN (default: emotion, sst2, trec).")
    recipes: list[str] | None = option(None, f"Recipes to run (default: ours trainer), of {[*OURS, *TRAINER]}.")
    reference: str = option("trainer", "Recipe the others are compared with (paired by seed).")
    seeds: list[int] | None = option(None, "Seeds (default 1 2 3 4 5; every recipe runs every seed).")
    model_name_or_path: str = option(DEFAULT_MODEL, "Encoder.")
    text_column: str = option("text", "Text column of every dataset (as train.py's).")
    text_pair_column: str | None = option(None, "Second text column of a sentence-pair task (as train.py's).")
    output_dir: str = option("outputs/quality", "Where runs and runs.jsonl go (kept: a rerun resumes).")
    num_train_epochs: float = option(2.0, "Epochs.")
    learning_rate: float = option(5e-5, "Peak learning rate.")
    warmup_ratio: float = option(0.1, "Share of the steps with linear warmup.")
    weight_decay: float = option(0.01, "AdamW weight decay.")
    per_device_train_batch_size: int = option(32, "Training batch size.")
    per_device_eval_batch_size: int = option(128, "Evaluation batch size.")
    max_seq_length: int = option(64, "Truncation length.")
    max_train_samples: int | None = option(2000, "First N training rows of each dataset.")
    max_eval_samples: int | None = option(1000, "First N validation and test rows.")

    def validate(self) -> None:
        """Defaults of the lists, recipe names and the reference."""
        self.datasets = self.datasets or DEFAULT_DATASETS
        self.recipes = self.recipes or ["ours", "trainer"]
        self.seeds = self.seeds or [1, 2, 3, 4, 5]
        if unknown := set(self.recipes) - set(OURS) - set(TRAINER):
            raise UsageError(f"unknown recipes {sorted(unknown)}; choose from {[*OURS, *TRAINER]}.")
        if self.reference not in self.recipes:
            raise UsageError(f"--reference {self.reference} is not among --recipes {self.recipes}.")


def shared_flags(cfg: QualityConfig, dataset: str, seed: int) -> list[str]:
    """The flags both train.py and trainer_recipe.py take, for one dataset and seed."""
    path, _, column = dataset.partition(":")
    flags = ["--dataset", path, "--model_name_or_path", cfg.model_name_or_path, "--seed", str(seed)]
    flags += ["--label_column", column] if column else []
    for key in (
        "text_column",
        "text_pair_column",
        "num_train_epochs",
        "learning_rate",
        "warmup_ratio",
        "weight_decay",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "max_seq_length",
        "max_train_samples",
        "max_eval_samples",
    ):
        if (value := getattr(cfg, key)) is not None:
            flags += [f"--{key}", str(value)]
    return flags


def command(cfg: QualityConfig, recipe: str, dataset: str, seed: int, run_dir: Path) -> tuple[list[str], Path]:
    """The command of one run and the file its scores come from."""
    from benchmark import auto_precision

    flags = shared_flags(cfg, dataset, seed)
    if recipe in TRAINER:
        script = [sys.executable, str(REPO / "scripts" / "trainer_recipe.py"), "--recipe", TRAINER[recipe]]
        return [*script, *flags, "--output_dir", str(run_dir)], run_dir / "scores.json"
    precision = "no" if recipe in OURS_FP32 else auto_precision()
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--mixed_precision", precision, "--dynamo_backend", "no"]
    train = [str(REPO / "train.py"), *flags, *OURS[recipe], "--output_dir", str(run_dir), "--runs_root", str(run_dir)]
    return [*launch, *train, "--overwrite_output_dir"], run_dir / "results.json"


def dataset_name(dataset: str) -> str:
    """A dataset's name in runs.jsonl, the table and its runs' folders: its folder's name, and its label column when
    one is given (``trec:label_coarse`` and ``trec:label_fine`` are two tasks)."""
    path, _, column = dataset.partition(":")
    return f"{Path(path).name}-{column}" if column else Path(path).name


def run_settings(cfg: QualityConfig, dataset: str) -> dict[str, Any]:
    """What a run's scores depend on besides its recipe and seed: the dataset (a local one as its absolute path, a hub
    id as given) and its label column, the model (the same way) and every shared hyper-parameter."""
    path, _, column = dataset.partition(":")
    skip = {"datasets", "recipes", "reference", "seeds", "output_dir"}
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in skip}
    # Recorded the same whatever folder the command runs from, so a rerun from elsewhere finds its runs.
    shared["model_name_or_path"] = source_key(cfg.model_name_or_path)
    return {"dataset": source_key(path), "label_column": column or None, **shared}


def same_setting(key: str, recorded: Any, wanted: Any) -> bool:
    """Whether a recorded setting is the wanted one, reading the dataset and model as older files wrote them too."""
    if recorded == wanted or key not in ("dataset", "model_name_or_path") or not isinstance(recorded, str):
        return recorded == wanted
    if source_key(recorded) == wanted:  # a local model recorded as given, relative to this folder
        return True
    # A hub id recorded as a path under the folder the command ran in (no such path exists).
    ids, old = Path(wanted).parts, Path(recorded)
    return not Path(wanted).is_absolute() and old.is_absolute() and not old.exists() and old.parts[-len(ids) :] == ids


def check_recorded(cfg: QualityConfig, rows: list[dict[str, Any]], record: Path) -> None:
    """Refuse a rerun whose settings differ from the runs ``record`` holds for the same datasets: they would be
    counted as this command's (and their folders overwritten)."""
    names = [dataset_name(d) for d in cfg.datasets]
    for name in {n for n in names if names.count(n) > 1}:
        same = [d for d in cfg.datasets if dataset_name(d) == name]
        raise UsageError(
            f"--datasets {' and '.join(same)} would share the name {name} (their runs' folder); rename one."
        )
    wanted = {name: run_settings(cfg, d) for name, d in zip(names, cfg.datasets, strict=True)}
    for row in rows:
        if row["dataset"] not in wanted:
            continue
        settings, want = row.get("settings"), wanted[row["dataset"]]
        if (
            settings
            and settings.keys() == want.keys()
            and all(same_setting(k, settings[k], v) for k, v in want.items())
        ):
            continue
        differ = ", ".join(
            f"{k} {settings.get(k)!r}, not {v!r}"
            for k, v in want.items()
            if settings and not same_setting(k, settings.get(k), v)
        )
        why = f"with other settings ({differ})" if settings else "without its settings (an older file)"
        raise UsageError(
            f"{record} holds {row['recipe']} on {row['dataset']} seed {row['seed']} run {why}; these runs would be "
            "counted as this command's: pass another --output_dir, or move that folder away to start over."
        )


def run_one(cfg: QualityConfig, recipe: str, dataset: str, seed: int) -> dict[str, Any]:
    """Run one recipe on one dataset and seed in a fresh process; its test/validation scores and wall time."""
    name = dataset_name(dataset)
    run_dir = Path(cfg.output_dir) / name / recipe / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    argv, scores = command(cfg, recipe, dataset, seed, run_dir)
    start = time.perf_counter()
    with open(run_dir / "output.log", "w", encoding="utf-8") as log:
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"})
    seconds = time.perf_counter() - start
    if code.returncode != 0:
        raise UsageError(f"{recipe} on {name} seed {seed} failed; see {run_dir / 'output.log'}: {shlex.join(argv)}")
    if recipe in TRAINER:
        last = (run_dir / "output.log").read_text(encoding="utf-8").strip().splitlines()[-1]
        atomic_write_text(scores, last + "\n")
    result = json.loads(scores.read_text(encoding="utf-8"))
    return {
        "recipe": recipe,
        "dataset": name,
        "seed": seed,
        "settings": run_settings(cfg, dataset),
        "seconds": seconds,
        "test_macro_f1": result["test"]["macro_f1"],
        "test_accuracy": result["test"]["accuracy"],
        "validation_macro_f1": result["validation"]["macro_f1"],
    }


def paired(diffs: list[float]) -> tuple[float, float | None, float | None]:
    """Mean of paired differences and its 95% t interval (None for one seed, whose spread is not measured)."""
    from scipy import stats

    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, None, None
    half = stats.t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def table(rows: list[dict[str, Any]], cfg: QualityConfig) -> tuple[str, dict[str, Any]]:
    """Markdown table per dataset and recipe, and the same figures as a dict."""
    lines = [
        f"| dataset | recipe | test macro-F1 (mean ± std, {counted(len(cfg.seeds), 'seed')}) | test accuracy | "
        f"paired Δ macro-F1 vs {cfg.reference} [95% CI] | wall time (s, mean) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    summary: dict[str, Any] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        by = {
            rec: {r["seed"]: r for r in rows if r["dataset"] == dataset and r["recipe"] == rec} for rec in cfg.recipes
        }
        for recipe in cfg.recipes:
            runs = by[recipe]
            if not runs:
                continue
            f1 = [r["test_macro_f1"] for r in runs.values()]
            acc = [r["test_accuracy"] for r in runs.values()]
            std = statistics.stdev(f1) if len(f1) > 1 else None  # one seed measures no spread
            entry = {"test_macro_f1": statistics.fmean(f1), "std": std, "seeds": sorted(runs)}
            entry["test_accuracy"] = statistics.fmean(acc)
            entry["seconds"] = statistics.fmean(r["seconds"] for r in runs.values())
            delta = "—"
            common = sorted(runs.keys() & by[cfg.reference].keys())
            if recipe != cfg.reference and common:
                diffs = [runs[s]["test_macro_f1"] - by[cfg.reference][s]["test_macro_f1"] for s in common]
                mean, low, high = paired(diffs)
                entry["paired_delta"] = {"mean": mean, "low": low, "high": high, "seeds": len(common)}
                interval = f"{low:+.4f}, {high:+.4f}" if low is not None else "n/a: 1 seed"
                delta = f"{mean:+.4f} [{interval}]"
            summary.setdefault(dataset, {})[recipe] = entry
            lines.append(
                f"| {dataset} | {recipe} | {entry['test_macro_f1']:.4f} ± {'n/a' if std is None else f'{std:.4f}'} | "
                f"{entry['test_accuracy']:.4f} | "
                f"{delta} | {entry['seconds']:.0f} |"
            )
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (dataset, seed, recipe) not yet in runs.jsonl, then print the table."""
    cfg = parse_config(argv, QualityConfig, __doc__)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = out / "runs.jsonl"
    rows = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()] if record.is_file() else []
    check_recorded(cfg, rows, record)
    done = {(r["recipe"], r["dataset"], r["seed"]) for r in rows}
    for dataset in cfg.datasets:
        name = dataset_name(dataset)
        # Seeds outermost and the recipes alternating within a seed, so machine load drifts hit every recipe alike.
        for seed in cfg.seeds:
            for recipe in cfg.recipes:
                if (recipe, name, seed) in done:
                    continue
                row = run_one(cfg, recipe, dataset, seed)
                rows.append(row)
                with open(record, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(
                    f"{name} seed {seed} {recipe}: test macro-F1 {row['test_macro_f1']:.4f}, {row['seconds']:.0f} s",
                    flush=True,
                )
    wanted = {dataset_name(d) for d in cfg.datasets}
    rows = [r for r in rows if r["dataset"] in wanted and r["seed"] in cfg.seeds and r["recipe"] in cfg.recipes]
    text, summary = table(rows, cfg)
    atomic_write_text(out / "quality.md", text + "\n")
    print(text)
    print(json.dumps({"reference": cfg.reference, "per_dataset": summary}))
    return summary


if __name__ == "__main__":
    from utils import run_cli

    run_cli(main)
