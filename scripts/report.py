"""Collect every run under a folder into one results table (mean ± std over seeds), learning curves and a heatmap.

    python scripts/report.py outputs/matrix
    python scripts/report.py outputs/matrix --baseline all-MiniLM-L6-v2     # adds Δ test macro-F1 columns

Writes ``results.csv`` (one row per dataset x model, numeric columns) and ``results.md`` (the same table for
reading, the per-dataset winner in bold) into the folder, ``curves.png`` into each run directory (loss, learning
rate, gradient norm and the validation metric from ``metrics.jsonl``), and ``heatmap_test_macro_f1.png``.

The winner of a dataset is the model with the best mean *validation* macro-F1, the number a researcher may select
on; its test score is reported beside it, never used to choose. The val→test gap column shows how much of the
validation score survives on test.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from utils import atomic_savefig, atomic_write_text, short_name  # noqa: E402

# Flags that never change what a run learns: runs differing only in these are the same experiment (seeds vary).
NOT_SETTINGS = {
    "seed",
    "output_dir",
    "runs_root",
    "overwrite_output_dir",
    "resume_from_checkpoint",
    "report_to",
    "logging_steps",
    "checkpointing_steps",
    "save_total_limit",
    "dataset",
    "model_name_or_path",
}
COLUMNS = [
    ("val_macro_f1", "validation", "macro_f1"),
    ("val_accuracy", "validation", "accuracy"),
    ("test_macro_f1", "test", "macro_f1"),
    ("test_accuracy", "test", "accuracy"),
]


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One record per finished run (a folder with results.json and config.json) under ``root``."""
    runs = []
    for results_path in sorted(root.rglob("results.json")):
        run_dir = results_path.parent
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            continue
        results = json.loads(results_path.read_text())
        user = json.loads(config_path.read_text())["user_config"]
        dataset = short_name(user["dataset"])
        if user.get("label_column", "label") != "label":
            dataset = f"{dataset}-{user['label_column']}"
        settings = {k: v for k, v in user.items() if k not in NOT_SETTINGS}
        record = {
            "run_dir": run_dir,
            "settings": settings,
            "dataset": dataset,
            "model": short_name(user["model_name_or_path"]),
            "seed": user["seed"],
            "best_step": results["best_step"],
            "train_runtime_s": results.get("train_runtime_s"),
            "train_samples_per_s": results.get("train_samples_per_s"),
        }
        for column, split, key in COLUMNS:
            record[column] = (results.get(split) or {}).get(key)
        runs.append(record)
    return runs


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the non-missing values (no std for a single value)."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None


def aggregate(runs: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """One row per (dataset, model): metric means/stds over seeds, gap, steps, time, throughput, winner flag."""
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        by_pair.setdefault((run["dataset"], run["model"]), []).append(run)
    # Runs of one dataset x model with other settings (a learning-rate sweep, say) are separate rows, named by the
    # settings that differ between them; only seeds are averaged.
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (dataset, model), members in by_pair.items():
        varying = sorted(
            k for k in members[0]["settings"] if len({json.dumps(m["settings"].get(k)) for m in members}) > 1
        )
        for m in members:
            variant = ", ".join(f"{k}={m['settings'].get(k)}" for k in varying)
            name = f"{model} ({variant})" if variant else model
            groups.setdefault((dataset, name), []).append(m)
    rows = []
    for (dataset, model), members in sorted(groups.items()):
        row: dict[str, Any] = {"dataset": dataset, "model": model, "seeds": len({m["seed"] for m in members})}
        for column, _, _ in COLUMNS:
            row[f"{column}_mean"], row[f"{column}_std"] = mean_std([m[column] for m in members])
        if row["val_macro_f1_mean"] is not None and row["test_macro_f1_mean"] is not None:
            row["val_test_gap"] = row["val_macro_f1_mean"] - row["test_macro_f1_mean"]
        else:
            row["val_test_gap"] = None
        for key in ("best_step", "train_runtime_s", "train_samples_per_s"):
            row[key] = mean_std([m[key] for m in members])[0]
        rows.append(row)
    for dataset in {r["dataset"] for r in rows}:
        same = [r for r in rows if r["dataset"] == dataset and r["val_macro_f1_mean"] is not None]
        best = max(same, key=lambda r: r["val_macro_f1_mean"], default=None)
        for r in same:
            r["winner"] = r is best
        base = next((r for r in same if r["model"] == baseline), None)
        for r in same:
            if baseline is not None:
                has = (
                    base is not None and r["test_macro_f1_mean"] is not None and base["test_macro_f1_mean"] is not None
                )
                r["delta_test_macro_f1"] = r["test_macro_f1_mean"] - base["test_macro_f1_mean"] if has else None
    return rows


def fmt(mean: float | None, std: float | None = None, digits: int = 4) -> str:
    """``mean ± std`` (or ``-`` when missing)."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def markdown(rows: list[dict[str, Any]], baseline: str | None) -> str:
    """The results table as Markdown; the per-dataset winner (best mean validation macro-F1) in bold."""
    header = ["dataset", "model", "seeds", "val macro-F1", "val acc", "test macro-F1", "test acc", "val→test gap"]
    header += ["best step", "train s", "samples/s"] + ([f"Δ test macro-F1 vs {baseline}"] if baseline else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["dataset"],
            f"**{r['model']}**" if r.get("winner") else r["model"],
            str(r["seeds"]),
            *(fmt(r[f"{c}_mean"], r[f"{c}_std"]) for c, _, _ in COLUMNS),
            fmt(r["val_test_gap"]),
            fmt(r["best_step"], digits=0),
            fmt(r["train_runtime_s"], digits=0),
            fmt(r["train_samples_per_s"], digits=1),
        ]
        if baseline:
            delta = r.get("delta_test_macro_f1")
            cells.append("-" if delta is None else f"{delta:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nMean ± sample standard deviation over seeds (a single seed shows no ±). Bold: the model with the best mean validation macro-F1 on "
        "that dataset (selected on validation, not on test). Gap: mean validation minus mean test macro-F1.\n"
    )
    return "\n".join(lines) + "\n" + note


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The table with one numeric column per statistic."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(run_dir: Path) -> Path | None:
    """Loss, learning rate, gradient norm and validation metrics against the step, from metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_macro_f1" in r]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    panels = [("loss", train, "train loss"), ("lr", train, "learning rate"), ("grad_norm", train, "grad norm")]
    for ax, (key, rows, title) in zip(axes, panels, strict=False):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows])
        ax.set_title(title)
        ax.set_xlabel("step")
    for key in ("eval_macro_f1", "eval_accuracy"):
        axes[3].plot([r["step"] for r in evals], [r[key] for r in evals], marker="o", label=key[5:])
    axes[3].set_title("validation")
    axes[3].set_xlabel("step")
    axes[3].legend()
    fig.suptitle(str(run_dir), fontsize=8)
    fig.tight_layout()
    out = run_dir / "curves.png"
    atomic_savefig(fig, out, dpi=90)
    plt.close(fig)
    return out


def plot_heatmap(rows: list[dict[str, Any]], path: Path) -> None:
    """Dataset x model heatmap of mean test macro-F1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = sorted({r["dataset"] for r in rows})
    models = sorted({r["model"] for r in rows})
    grid = np.full((len(datasets), len(models)), np.nan)
    for r in rows:
        if r["test_macro_f1_mean"] is not None:
            grid[datasets.index(r["dataset"]), models.index(r["model"])] = r["test_macro_f1_mean"]
    import textwrap

    labels = [textwrap.fill(m, 22) for m in models]
    label_lines = max(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(3 + 2.0 * len(models), 1.5 + 0.6 * len(datasets) + 0.2 * label_lines))
    image = ax.imshow(grid, cmap="viridis", vmin=np.nanmin(grid) if np.isfinite(grid).any() else 0, aspect="auto")
    ax.set_xticks(range(len(models)), labels, fontsize=8)
    ax.set_yticks(range(len(datasets)), datasets)
    for i in range(len(datasets)):
        for j in range(len(models)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="white")
    fig.colorbar(image, ax=ax, label="test macro-F1")
    ax.set_title("test macro-F1, mean over seeds")
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Build the table, the plots, and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="Folder searched recursively for run directories (results.json).")
    parser.add_argument("--baseline", help="Model name whose test macro-F1 the other models are compared with.")
    parser.add_argument("--no_plots", action="store_true", help="Skip the PNG files.")
    args = parser.parse_args(argv)
    root = Path(args.folder)
    runs = load_runs(root)
    if not runs:
        print(f"error: no finished runs (results.json) under {root}", file=sys.stderr)
        sys.exit(2)
    rows = aggregate(runs, args.baseline)
    write_csv(rows, root / "results.csv")
    table = markdown(rows, args.baseline)
    atomic_write_text(root / "results.md", table)
    if not args.no_plots:
        for run in runs:
            plot_curves(run["run_dir"])
        plot_heatmap(rows, root / "heatmap_test_macro_f1.png")
    print(table)
    print(f"wrote {root / 'results.md'} and {root / 'results.csv'} ({len(runs)} runs, {len(rows)} rows)")
    return rows


if __name__ == "__main__":
    main()
