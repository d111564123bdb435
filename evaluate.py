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
from utils import UsageError, atomic_write_json, atomic_write_text, logger, read_latest_pointer, run_cli, setup_logging

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
        gathered["logits"] = model(**batch).logits.float()
        for key, value in accelerator.gather_for_metrics(gathered).items():
            parts[key].append(value.cpu())
    idx = torch.cat(parts["idx"]).numpy()
    # Sharding pads the last round of batches with repeated rows; keeping the first copy of each idx makes the
    # count exact whatever the number of processes, and sorting by idx undoes the length-sorted batch order.
    _, first = np.unique(idx, return_index=True)
    order = first[np.argsort(idx[first])]
    return {key: torch.cat(values).numpy()[order] for key, values in parts.items() if values}


def compute_metrics(labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    """Accuracy, F1 (macro/micro/weighted), macro precision/recall, mean loss, count and a per-class report."""
    from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

    logits = logits.astype(np.float64)
    log_probs = logits - logits.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    preds = log_probs.argmax(axis=1)
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


def evaluate(model: torch.nn.Module, dataloader: Any, accelerator: Any, label_names: list[str]) -> dict[str, Any]:
    """Run the model over ``dataloader`` on every process and return plain-float metrics."""
    out = predict(model, dataloader, accelerator)
    return compute_metrics(out["labels"], out["logits"], label_names)


# ----------------------------------------------------------------------------------------------------------------
# Outputs


def predictions_rows(raw: Any, out: dict[str, np.ndarray], label_names: list[str]) -> list[dict[str, Any]]:
    """One record per example: text, gold, pred, probability of pred, probability of gold, loss."""
    probs = probabilities(out["logits"])
    texts = raw["text"]
    pairs = raw["text_pair"] if "text_pair" in raw.column_names else None
    rows = []
    for row, (i, gold) in enumerate(zip(out["idx"], out["labels"], strict=True)):
        pred = int(probs[row].argmax())
        record = {"idx": int(i), "text": texts[int(i)]}
        if pairs is not None:
            record["text_pair"] = pairs[int(i)]
        record |= {
            "gold": label_names[int(gold)],
            "pred": label_names[pred],
            "probability": float(probs[row, pred]),
            "gold_probability": float(probs[row, int(gold)]),
            "loss": float(-np.log(max(probs[row, int(gold)], 1e-300))),
        }
        rows.append(record)
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
    fig.savefig(path, dpi=110)
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


def unlabeled_rows(raw: Any, out: dict[str, np.ndarray], label_names: list[str], top_k: int) -> list[dict[str, Any]]:
    """One record per input row: text, predicted label, its probability and the top-k labels."""
    probs = probabilities(out["logits"])
    texts = raw["text"]
    rows = []
    for row, i in enumerate(out["idx"]):
        ranked = np.argsort(-probs[row])[:top_k]
        rows.append(
            {
                "idx": int(i),
                "text": texts[int(i)],
                "label": label_names[int(ranked[0])],
                "probability": float(probs[row, ranked[0]]),
                "top_k": [{"label": label_names[int(j)], "probability": float(probs[row, j])} for j in ranked],
            }
        )
    return rows


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
        limit = cfg.max_samples
        if limit is None and cfg.split != "train":
            limit = train_cfg.max_eval_samples
        data = prepare_splits(
            resolved["dataset"],
            text_column=train_cfg.text_column,
            label_column=train_cfg.label_column,
            text_pair_column=train_cfg.text_pair_column,
            validation_split_ratio=train_cfg.validation_split_ratio,
            seed=train_cfg.seed,
            max_train_samples=limit if cfg.split == "train" else train_cfg.max_train_samples,
            max_eval_samples=limit,
            empty_text=train_cfg.empty_text,
        )
        if cfg.split not in data.splits:
            raise UsageError(f"the dataset {resolved['dataset']} has no {cfg.split} split.")
        raw, label_names = data.splits[cfg.split], data.label_names
    model_dir = run_dir / "best_model"
    model = EncoderClassifier.from_pretrained(model_dir)
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
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
            rows = unlabeled_rows(raw, out, model_labels, cfg.top_k)
            atomic_write_text(destination, "".join(json.dumps(r) + "\n" for r in rows))
            logger.info("wrote %d predictions to %s", len(rows), destination)
            print(json.dumps(summary))
        return summary

    metrics = compute_metrics(out["labels"], out["logits"], model_labels)
    if accelerator.is_main_process:
        split = cfg.split
        atomic_write_json(run_dir / f"eval_{split}.json", {"split": split, "run_dir": str(run_dir), **metrics})
        rows = predictions_rows(raw, out, model_labels)
        atomic_write_text(run_dir / f"predictions_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        title = f"{split} ({run_dir.name})"
        plot_confusion(out["labels"], out["logits"], model_labels, run_dir / f"confusion_{split}.png", title)
        logger.info("wrote eval_%s.json, predictions_%s.jsonl, confusion_%s.png in %s", split, split, split, run_dir)
        summary = {k: v for k, v in metrics.items() if k != "per_class"}
        print(json.dumps({"split": split, **summary}))
    return metrics


if __name__ == "__main__":
    run_cli(main)
