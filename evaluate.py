"""Score a split with the best model of a run, reproducing the data settings the run was trained with.

    python evaluate.py --split test                         # the latest run (outputs/LATEST)
    python evaluate.py --split validation --run_dir RUN     # reproduces results.json's validation score
    python evaluate.py --split test --max_samples 500

Writes ``eval_<split>.json`` (metrics and a per-class report), ``predictions_<split>.jsonl`` (text, gold, pred,
probability, per-example loss) and ``confusion_<split>.png`` into the run directory; the last stdout line is
the metrics JSON. ``evaluate()`` and ``compute_metrics()`` are what train.py calls during training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from config import ConfigError, _field, parse_config
from utils import (
    UsageError,
    atomic_savefig,
    atomic_write_json,
    atomic_write_text,
    logger,
    read_latest_pointer,
    run_cli,
    setup_logging,
)

# Metrics that may select the best model; all higher-is-better except loss.
SELECTABLE_METRICS = ("macro_f1", "accuracy", "micro_f1", "weighted_f1", "macro_precision", "macro_recall", "loss")


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether ``value`` improves on ``best`` for ``metric`` (strictly, so ties keep the earlier step)."""
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


@torch.inference_mode()
def predict(model: torch.nn.Module, dataloader: Any, accelerator: Any) -> dict[str, np.ndarray]:
    """Logits (and gold labels, when the data has them) for every example exactly once, in the dataset's row
    order, on every process."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"idx": [], "logits": [], "labels": []}
    for batch in dataloader:
        gathered = {"idx": batch.pop("idx")}
        if "labels" in batch:
            gathered["labels"] = batch.pop("labels")
        output = model(**batch)
        # A hierarchy's metrics need every level: its level_logits hold them side by side.
        logits = output.level_logits if getattr(output, "level_logits", None) is not None else output.logits
        gathered["logits"] = logits.float()
        for key, value in accelerator.gather_for_metrics(gathered).items():
            parts[key].append(value.cpu())
    idx = torch.cat(parts["idx"]).numpy()
    # Sharding pads the last round of batches with repeated rows; keeping the first copy of each idx makes the
    # count exact whatever the number of processes, and sorting by idx undoes the length-sorted batch order.
    _, first = np.unique(idx, return_index=True)
    order = first[np.argsort(idx[first])]
    return {key: torch.cat(values).numpy()[order] for key, values in parts.items() if values}


def compute_metrics(labels: np.ndarray, logits: np.ndarray, label_names: list[str], task: Any = None) -> dict[str, Any]:
    """Metrics for the model's problem type (``task``: its config; None means single-label)."""
    problem = getattr(task, "problem_type", None)
    if problem == "multi_label_classification":
        return multi_label_metrics(labels, logits, label_names, task.thresholds)
    if problem == "hierarchical_classification":
        return hierarchical_metrics(labels, logits, task)
    return single_label_metrics(labels, logits, label_names)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def single_label_metrics(
    labels: np.ndarray, logits: np.ndarray, label_names: list[str], preds: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, F1 (macro/micro/weighted), macro precision/recall, mean loss, count and a per-class report."""
    from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

    log_probs = log_softmax(logits)
    preds = log_probs.argmax(axis=1) if preds is None else preds
    per_example_loss = -log_probs[np.arange(len(labels)), labels]
    macro_p, macro_r, macro_f1, _ = precision_recall_fscore_support(labels, preds, average="macro", zero_division=0)
    report = classification_report(
        labels,
        preds,
        labels=list(range(len(label_names))),
        target_names=label_names,
        output_dict=True,
        zero_division=0,
    )
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(macro_f1),
        "micro_f1": float(precision_recall_fscore_support(labels, preds, average="micro", zero_division=0)[2]),
        "weighted_f1": float(precision_recall_fscore_support(labels, preds, average="weighted", zero_division=0)[2]),
        "macro_precision": float(macro_p),
        "macro_recall": float(macro_r),
        "loss": float(per_example_loss.mean()),
        "num_samples": len(labels),
        "per_class": {name: report[name] for name in label_names},
    }


def multi_label_metrics(
    labels: np.ndarray, logits: np.ndarray, label_names: list[str], thresholds: list[float] | None = None
) -> dict[str, Any]:
    """Multi-label: ``accuracy`` is subset accuracy (every label right); F1s over labels; mean BCE; per-label report."""
    from sklearn.metrics import classification_report, precision_recall_fscore_support

    labels = labels.astype(int)
    probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
    preds = (probs >= np.asarray(thresholds if thresholds is not None else [0.5] * len(label_names))).astype(int)
    eps = 1e-12
    bce = -(labels * np.log(probs + eps) + (1 - labels) * np.log(1 - probs + eps)).mean()
    scores = {
        avg: precision_recall_fscore_support(labels, preds, average=avg, zero_division=0)
        for avg in ("macro", "micro", "weighted")
    }
    report = classification_report(labels, preds, target_names=label_names, output_dict=True, zero_division=0)
    return {
        "accuracy": float((preds == labels).all(axis=1).mean()),
        "macro_f1": float(scores["macro"][2]),
        "micro_f1": float(scores["micro"][2]),
        "weighted_f1": float(scores["weighted"][2]),
        "macro_precision": float(scores["macro"][0]),
        "macro_recall": float(scores["macro"][1]),
        "loss": float(bce),
        "num_samples": len(labels),
        "per_class": {name: report[name] for name in label_names},
    }


def tune_thresholds(labels: np.ndarray, logits: np.ndarray, grid: np.ndarray | None = None) -> list[float]:
    """Per label, the sigmoid threshold with the best F1 on these rows (ties: the one closest to 0.5)."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else grid
    probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
    best = []
    for j in range(labels.shape[1]):
        gold = labels[:, j].astype(bool)
        f1s = []
        for t in grid:
            pred = probs[:, j] >= t
            tp, fp, fn = (pred & gold).sum(), (pred & ~gold).sum(), (~pred & gold).sum()
            f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        f1s = np.asarray(f1s)
        candidates = grid[f1s == f1s.max()]
        best.append(float(candidates[np.argmin(np.abs(candidates - 0.5))]))
    return best


def decode_levels(level_logits: list[np.ndarray], parents: list[list[int]], consistent: bool) -> list[np.ndarray]:
    """Predicted ids per level: independent argmaxes, or top-down (each level's best label among the children of
    the level above's prediction), which makes the levels always agree."""
    preds = [level_logits[0].argmax(axis=1)]
    for level in range(1, len(level_logits)):
        scores = level_logits[level].astype(np.float64)
        if consistent:
            child_parent = np.asarray(parents[level - 1])  # (labels at this level,)
            allowed = child_parent[None, :] == preds[-1][:, None]  # (batch, labels)
            scores = np.where(allowed, scores, -np.inf)
        preds.append(scores.argmax(axis=1))
    return preds


def hierarchical_metrics(labels: np.ndarray, logits: np.ndarray, task: Any) -> dict[str, Any]:
    """Per level ``<level>.<metric>``; top-level metrics are the finest level's (``loss`` is the weighted sum of the
    levels' losses, as in training); ``level_consistency`` is the share of rows whose predicted levels agree."""
    sizes = [len(level["labels"]) for level in task.levels]
    level_logits = np.split(logits, np.cumsum(sizes)[:-1], axis=1)
    preds = decode_levels(level_logits, task.level_parents, task.consistent_decoding)
    metrics: dict[str, Any] = {}
    per_level = []
    for i, level in enumerate(task.levels):
        m = single_label_metrics(labels[:, i], level_logits[i], level["labels"], preds=preds[i])
        per_level.append(m)
        metrics |= {f"{level['name']}.{k}": v for k, v in m.items() if k != "per_class"}
    agree = np.ones(len(labels), dtype=bool)
    for level in range(1, len(sizes)):
        agree &= np.asarray(task.level_parents[level - 1])[preds[level]] == preds[level - 1]
    finest = per_level[-1]
    top = {k: v for k, v in finest.items() if k != "per_class"}
    top["loss"] = float(sum(w * m["loss"] for w, m in zip(task.level_loss_weights, per_level, strict=True)))
    return top | metrics | {"level_consistency": float(agree.mean()), "per_class": finest["per_class"]}


def evaluate(model: torch.nn.Module, dataloader: Any, accelerator: Any, label_names: list[str]) -> dict[str, Any]:
    """Run the model over ``dataloader`` on every process and return plain-float metrics."""
    out = predict(model, dataloader, accelerator)
    return compute_metrics(out["labels"], out["logits"], label_names, accelerator.unwrap_model(model).config)


# ----------------------------------------------------------------------------------------------------------------
# Outputs


def describe_predictions(logits: np.ndarray, label_names: list[str], task: Any, top_k: int = 3) -> list[dict[str, Any]]:
    """Per row, the prediction in words: label and probability (with the top k), the labels over their thresholds
    (multi-label), or one label per level (hierarchical)."""
    problem = getattr(task, "problem_type", None)
    if problem == "multi_label_classification":
        probs = 1 / (1 + np.exp(-logits.astype(np.float64)))
        thresholds = np.asarray(task.thresholds or [0.5] * len(label_names))
        return [
            {
                "pred": [label_names[j] for j in np.flatnonzero(p >= thresholds)],
                "probabilities": {name: float(x) for name, x in zip(label_names, p, strict=True)},
            }
            for p in probs
        ]
    if problem == "hierarchical_classification":
        sizes = [len(level["labels"]) for level in task.levels]
        level_logits = np.split(logits, np.cumsum(sizes)[:-1], axis=1)
        preds = decode_levels(level_logits, task.level_parents, task.consistent_decoding)
        finest = probabilities(level_logits[-1])
        return [
            {
                "pred": {
                    level["name"]: level["labels"][int(p[r])] for level, p in zip(task.levels, preds, strict=True)
                },
                "probability": float(finest[r, preds[-1][r]]),
            }
            for r in range(len(logits))
        ]
    probs = probabilities(logits)
    rows = []
    for p in probs:
        ranked = np.argsort(-p)[:top_k]
        rows.append(
            {
                "pred": label_names[int(ranked[0])],
                "probability": float(p[ranked[0]]),
                "top_k": [{"label": label_names[int(j)], "probability": float(p[j])} for j in ranked],
            }
        )
    return rows


def gold_fields(gold: np.ndarray, logits: np.ndarray, label_names: list[str], task: Any) -> dict[str, Any]:
    """The gold label(s) of one row in words; for single-label also its probability and the row's loss."""
    problem = getattr(task, "problem_type", None)
    if problem == "multi_label_classification":
        return {"gold": [label_names[j] for j in np.flatnonzero(gold)]}
    if problem == "hierarchical_classification":
        return {"gold": {level["name"]: level["labels"][int(g)] for level, g in zip(task.levels, gold, strict=True)}}
    log_p = log_softmax(logits[None])[0]
    return {
        "gold": label_names[int(gold)],
        "gold_probability": float(np.exp(log_p[int(gold)])),
        "loss": float(-log_p[int(gold)]),
    }


def predictions_rows(
    raw: Any, out: dict[str, np.ndarray], label_names: list[str], task: Any = None, top_k: int = 3
) -> list[dict[str, Any]]:
    """One record per example: idx, text (and pair), gold, prediction, probabilities, loss (single-label)."""
    texts = raw["text"]
    pairs = raw["text_pair"] if "text_pair" in raw.column_names else None
    described = describe_predictions(out["logits"], label_names, task, top_k)
    rows = []
    for row, i in enumerate(out["idx"]):
        record = {"idx": int(i), "text": texts[int(i)]} | ({"text_pair": pairs[int(i)]} if pairs is not None else {})
        if "labels" in out:
            record |= gold_fields(out["labels"][row], out["logits"][row], label_names, task)
        rows.append(record | described[row])
    return rows


def plot_confusion(labels: np.ndarray, logits: np.ndarray, label_names: list[str], path: Path, title: str) -> None:
    """Save a confusion-matrix PNG (rows: gold, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(5.0, 0.45 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        labels,
        logits.argmax(axis=1),
        labels=list(range(len(label_names))),
        display_labels=label_names,
        ax=ax,
        colorbar=False,
        xticks_rotation=90 if len(label_names) > 8 else 45,
        include_values=len(label_names) <= 20,
    )
    ax.set_title(title)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# CLI


@dataclass
class EvalConfig:
    """Score one split of a run's data with its best model."""

    split: str = _field("test", "Split to score: train, validation or test.")
    run_dir: str | None = _field(None, "Run directory (default: the latest run recorded under --runs_root).")
    runs_root: str = _field("outputs", "Where to find the LATEST pointer when --run_dir is not given.")
    max_samples: int | None = _field(
        None, "Score only the first N rows (default: the run's --max_eval_samples for validation/test)."
    )
    batch_size: int | None = _field(None, "Evaluation batch size per process (default: the run's).")
    input: str | None = _field(
        None, "Predict labels for an unlabeled csv/tsv/jsonl/json/parquet file (its text column as in training)."
    )
    output: str | None = _field(None, "Where --input predictions go (default: RUN/predictions_<input name>.jsonl).")
    top_k: int = _field(3, "Number of most probable labels listed per row for --input.")

    def validate(self) -> None:
        """Check the split name and sizes."""
        if self.split not in ("train", "validation", "test"):
            raise ConfigError(f"--split {self.split!r} is unknown; choose train, validation or test.")
        for name in ("max_samples", "batch_size", "top_k"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a positive integer.")


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """The config.json of a run, with a clear error when the folder is not a finished run."""
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no config.json); pass --run_dir of a training run.")
    if not (run_dir / "best_model" / "config.json").is_file():
        raise UsageError(f"{run_dir} has no best_model/ yet; the run has not finished its first evaluation.")
    return json.loads((run_dir / "config.json").read_text())


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def load_unlabeled(path: str, text_column: str, text_pair_column: str | None, limit: int | None) -> Any:
    """An unlabeled file as a dataset with ``text`` (, ``text_pair``) and ``idx`` columns."""
    from data import FORMATS, _check_columns, _load_files

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--input {path}: no such file.")
    if file.suffix.lower() not in FORMATS:
        raise UsageError(f"--input {path}: unsupported file type {file.suffix!r}; use one of {', '.join(FORMATS)}.")
    ds = _load_files([file])
    wanted = {"text_column": text_column, **({"text_pair_column": text_pair_column} if text_pair_column else {})}
    _check_columns(ds, "input", wanted)
    ds = ds.select_columns(list(wanted.values()))
    ds = ds.rename_columns({c: n for c, n in [(text_column, "text"), (text_pair_column, "text_pair")] if c and c != n})
    # Rows with no text still get a prediction row (of an empty string) so the output lines up with the input.
    ds = ds.map(lambda r: {"text": r["text"] or ""})
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.add_column("idx", list(range(len(ds))))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: evaluate a split (metrics, predictions, confusion matrix) or predict an unlabeled file."""
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from config import TrainConfig
    from data import PadCollator, eval_dataloader, prepare_splits, tokenize_splits
    from model import EncoderClassifier

    cfg: EvalConfig = parse_config(argv, EvalConfig)
    run_dir = Path(cfg.run_dir) if cfg.run_dir else read_latest_pointer(Path(cfg.runs_root))
    run = load_run_config(run_dir)
    train_cfg = TrainConfig(**run["user_config"])
    resolved = run["resolved"]
    # The training run's precision and batch shapes, so the validation score reproduces bit for bit.
    accelerator = Accelerator(mixed_precision=resolved.get("mixed_precision", "no"))
    setup_logging(None, accelerator.is_main_process)

    if cfg.input:
        raw = load_unlabeled(cfg.input, train_cfg.text_column, train_cfg.text_pair_column, cfg.max_samples)
        label_names = None
    else:
        # The splits exactly as the run drew them (train after the validation carve and --max_train_samples, so
        # --split train scores the rows it trained on); --max_samples then keeps the first N of the scored split.
        max_train, max_eval = train_cfg.max_train_samples, train_cfg.max_eval_samples
        if cfg.max_samples is not None and cfg.split == "train":
            max_train = min(cfg.max_samples, max_train or cfg.max_samples)
        elif cfg.max_samples is not None:
            max_eval = cfg.max_samples
        data = prepare_splits(
            resolved["dataset"],
            text_column=train_cfg.text_column,
            label_column=train_cfg.label_column,
            text_pair_column=train_cfg.text_pair_column,
            validation_split_ratio=train_cfg.validation_split_ratio,
            seed=train_cfg.seed,
            max_train_samples=max_train,
            max_eval_samples=max_eval,
            empty_text=train_cfg.empty_text,
            label_columns=train_cfg.label_columns,
            multi_label=train_cfg.multi_label,
        )
        if cfg.split not in data.splits:
            raise UsageError(f"the dataset {resolved['dataset']} has no {cfg.split} split.")
        raw, label_names = data.splits[cfg.split], data.label_names
    model_dir = run_dir / "best_model"
    model = EncoderClassifier.from_pretrained(model_dir)
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    task = model.config
    if label_names is not None and label_names != model_labels:
        raise UsageError(
            f"the data's labels {label_names} differ from the model's {model_labels}; was the dataset changed?"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenized = tokenize_splits({"eval": raw}, tokenizer, train_cfg.max_seq_length)["eval"]
    collate = PadCollator(tokenizer.pad_token_id, resolved.get("pad_to_multiple_of"))
    loader = eval_dataloader(tokenized, collate, cfg.batch_size or train_cfg.per_device_eval_batch_size)
    model, loader = accelerator.prepare(model, loader)
    out = predict(model, loader, accelerator)

    if cfg.input:
        destination = Path(cfg.output) if cfg.output else run_dir / f"predictions_{Path(cfg.input).stem}.jsonl"
        summary = {"input": cfg.input, "num_predictions": len(out["idx"]), "output": str(destination)}
        if accelerator.is_main_process:
            rows = predictions_rows(raw, out, model_labels, task, cfg.top_k)
            for r in rows:  # no gold here, so the prediction is simply "the label"
                r["label"] = r.pop("pred")
            atomic_write_text(destination, "".join(json.dumps(r) + "\n" for r in rows))
            logger.info("wrote %d predictions to %s", len(rows), destination)
            print(json.dumps(summary))
        return summary

    metrics = compute_metrics(out["labels"], out["logits"], model_labels, task)
    if accelerator.is_main_process:
        split = cfg.split
        atomic_write_json(run_dir / f"eval_{split}.json", {"split": split, "run_dir": str(run_dir), **metrics})
        rows = predictions_rows(raw, out, model_labels, task)
        atomic_write_text(run_dir / f"predictions_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        title = f"{split} ({run_dir.name})"
        if task.problem_type == "hierarchical_classification":  # the finest level's matrix
            preds = describe_predictions(out["logits"], model_labels, task)
            finest = task.levels[-1]["name"]
            fine_pred = np.asarray([model_labels.index(p["pred"][finest]) for p in preds])
            plot_confusion(
                out["labels"][:, -1],
                np.eye(len(model_labels))[fine_pred],
                model_labels,
                run_dir / f"confusion_{split}.png",
                title,
            )
        elif task.problem_type != "multi_label_classification":  # (multi-label: see per_class instead)
            plot_confusion(out["labels"], out["logits"], model_labels, run_dir / f"confusion_{split}.png", title)
        logger.info("wrote eval_%s.json, predictions_%s.jsonl, confusion_%s.png in %s", split, split, split, run_dir)
        summary = {k: v for k, v in metrics.items() if k != "per_class"}
        print(json.dumps({"split": split, **summary}))
    return metrics


if __name__ == "__main__":
    run_cli(main)
