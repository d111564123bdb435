"""Score a split with the best model of a run, reproducing the data settings the run was trained with.

    python evaluate.py --split test                         # the latest run (outputs/LATEST)
    python evaluate.py --split validation --run_dir RUN     # reproduces results.json's validation score
    python evaluate.py --split test --max_samples 500

Writes ``eval_<split>.json`` (metrics and a per-class report), ``predictions_<split>.jsonl`` (text, gold, pred,
probability, per-example loss) and ``confusion_<split>.png`` into the run directory; the last stdout line is
the metrics JSON. ``evaluate()`` and ``compute_metrics()`` are what train.py calls during training, and
``score_best_model()`` what it calls at the end, so a reloaded best model is scored by one code path.

Each problem type is one ``Task`` class (metrics, predictions in words, gold labels in words, confusion-matrix
data) and one line in ``TASKS``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from utils import stop_while_importing

# torch and transformers take seconds to import, and Ctrl-C in the first seconds is common: it ends the process with
# one line, not a traceback from inside torch.
if __name__ == "__main__":
    stop_while_importing("scoring started: nothing was scored or written yet")

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from config import METRICS, TrainConfig, file_overrides, given_settings, option, parse_config
from data import (
    DATA_READER,
    SOURCE_ROW,
    LabelSpec,
    build_dataloaders,
    column_values,
    cut_counts,
    cut_notes,
    input_labels,
    integers_ambiguous,
    load_splits,
    load_unlabeled,
    split_digests,
    tokenize_splits,
    trained_label_maps,
    whole_number,
    windowing,
)
from model import LOSSES, EncoderClassifier, EncoderClassifierConfig, class_loss
from utils import (
    BEST_MODEL,
    EVALUATE_MANIFEST,
    EVALUATE_SPLIT_FILES,
    RUNS_ROOT,
    ConfigError,
    TrainingError,
    UsageError,
    atomic_savefig,
    atomic_write_json,
    atomic_write_text,
    checkpoint_dirs,
    checkpoint_run,
    counted,
    evaluate_input_source,
    evaluate_outputs,
    forget_evaluate_output,
    fresh_accelerate_state,
    library_versions,
    logger,
    plot_text,
    read_best_record,
    read_latest_pointer,
    read_run_config,
    record_evaluate_output,
    resume_flags,
    run_cli,
    run_dir_holder,
    set_title_inside,
    setup_logging,
    tune_cpu,
    undrawable_characters,
)


def is_better(metric: str, value: float, best: float | None) -> bool:
    """Whether ``value`` improves on ``best`` for ``metric`` (strictly, so ties keep the earlier step)."""
    if best is None:
        return True
    return value > best if METRICS[metric] == "max" else value < best


@torch.inference_mode()
def predict(model: torch.nn.Module, dataloader: Any, accelerator: Any) -> dict[str, np.ndarray]:
    """Logits (and gold labels, when the data has them) for every example exactly once, in the dataset's row
    order, on every process. Windows of long documents (``--long_text windows``) are pooled into one row per
    document (``idx``) by the model config's ``window_pooling``, with ``windows`` counting them."""
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {"idx": [], "window": [], "logits": [], "labels": []}
    for batch in dataloader:
        gathered = {"idx": batch.pop("idx")}
        for key in ("window", "labels"):
            if key in batch:
                gathered[key] = batch.pop(key)
        output = model(**batch)
        # A hierarchy's metrics need every level: its level_logits hold them side by side.
        logits = output.level_logits if getattr(output, "level_logits", None) is not None else output.logits
        gathered["logits"] = logits.float()
        for key, value in accelerator.gather_for_metrics(gathered).items():
            parts[key].append(value.cpu())
    out = {key: torch.cat(values).numpy() for key, values in parts.items() if values}
    # argmax over nan is class 0: a diverged model would be scored (and could be kept as the best) as if it predicted.
    if not np.isfinite(out["logits"]).all():
        bad = int((~np.isfinite(out["logits"])).any(axis=1).sum())
        raise TrainingError(
            f"the model's outputs are not finite (nan or inf) for {bad} of {len(out['logits'])} rows: its weights "
            "have diverged. Lower --learning_rate (or set --max_grad_norm) and train again."
        )
    # Sharding pads the last round of batches with repeated rows; keeping the first copy of each (idx, window) makes
    # the count exact whatever the number of processes, and the sort undoes the length-sorted batch order. Windows
    # are grouped into documents only after the gather, so a document whose windows sat on several processes is one
    # document, counted once.
    keys = np.stack([out["idx"], out.get("window", np.zeros_like(out["idx"]))], axis=1)  # (rows, 2)
    _, first = np.unique(keys, axis=0, return_index=True)  # unique keys sorted by idx, then window
    out = {key: value[first] for key, value in out.items()}
    if "window" not in out:
        return out
    return pool_windows(out, accelerator.unwrap_model(model).config.window_pooling)


# Window pooling: the logits of a document's windows (rows ``starts[d]`` up to the next start, in window order) ->
# the document's logits. A new pooling is one function and one line in WINDOW_POOLINGS.


def mean_windows(logits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The average of the windows' logits (float64)."""
    counts = np.diff(np.append(starts, len(logits)))  # (documents,)
    return np.add.reduceat(logits.astype(np.float64), starts, axis=0) / counts[:, None]


def max_windows(logits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per label, the largest logit of any window (the label's strongest evidence anywhere in the document)."""
    return np.maximum.reduceat(logits, starts, axis=0)


def first_windows(logits: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The first window's logits (what truncation would see, with the other windows still trained on)."""
    return logits[starts]


WINDOW_POOLINGS = {"mean": mean_windows, "max": max_windows, "first": first_windows}


def pool_windows(out: dict[str, np.ndarray], pooling: str) -> dict[str, np.ndarray]:
    """One row per document from rows of windows sorted by (idx, window): the pooled logits, the document's idx and
    gold labels, and its number of windows."""
    idx = out["idx"]
    starts = np.flatnonzero(np.concatenate([[True], idx[1:] != idx[:-1]]))  # (documents,): each one's first window
    pooled = {key: value[starts] for key, value in out.items() if key not in ("window", "logits")}
    pooled["logits"] = WINDOW_POOLINGS[pooling](out["logits"], starts)
    pooled["windows"] = np.diff(np.append(starts, len(idx)))
    return pooled


# ----------------------------------------------------------------------------------------------------------------
# Scores from logits, all in float64


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise sigmoid in float64."""
    return 1 / (1 + np.exp(-logits.astype(np.float64)))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def split_levels(logits: np.ndarray, levels: list[dict[str, Any]]) -> list[np.ndarray]:
    """A hierarchy's side-by-side logits cut into one (rows, labels of the level) block per level."""
    sizes = [len(level["labels"]) for level in levels]
    return np.split(logits, np.cumsum(sizes)[:-1], axis=1)


def loss_rows(config: Any, labels: np.ndarray, logits: np.ndarray, level: int | None = None) -> np.ndarray:
    """Each row's loss as training computes it (model.py's loss with the model config's settings: class weights,
    label smoothing, focal), in float64; with ``level``, that hierarchy level's loss alone."""
    z = torch.from_numpy(np.asarray(logits, dtype=np.float64))
    y = torch.from_numpy(np.asarray(labels))
    if level is not None:
        return class_loss(z, y, config, level).numpy()
    heads = [torch.from_numpy(block) for block in split_levels(z.numpy(), config.levels)] if config.levels else [z]
    return LOSSES[config.problem_type](heads, y, config).numpy()


def class_metrics(
    labels: np.ndarray,
    logits: np.ndarray,
    label_names: list[str],
    preds: np.ndarray | None = None,
    losses: np.ndarray | None = None,
) -> dict[str, Any]:
    """One-of-n labels: accuracy, F1 (macro/micro/weighted), macro precision/recall, mean loss (``losses`` per row,
    else cross-entropy), count and a per-class report; ``preds`` replaces the argmax (a hierarchy's constrained
    decoding)."""
    from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

    log_probs = log_softmax(logits)
    preds = log_probs.argmax(axis=1) if preds is None else preds
    per_example_loss = -log_probs[np.arange(len(labels)), labels] if losses is None else losses
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


def is_report(key: str) -> bool:
    """Whether a metrics key is a per-class report (``per_class``, a hierarchy level's ``<level>.per_class``), not a
    number."""
    return key == "per_class" or key.endswith(".per_class")


def tune_thresholds(labels: np.ndarray, logits: np.ndarray, grid: np.ndarray | None = None) -> list[float]:
    """Per label, the sigmoid threshold with the best F1 on these rows (ties: the one closest to 0.5)."""
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2) if grid is None else grid
    probs = sigmoid(logits)
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


# ----------------------------------------------------------------------------------------------------------------
# Problem types: a new one is one Task subclass plus one line in TASKS


TOP_K = 3  # labels listed per row of a single-label run's predictions, unless --top_k says otherwise


class Task:
    """How a problem type turns logits into metrics and words. ``config`` is the model's config (problem_type,
    thresholds, levels...); methods take the label names (the finest level's for a hierarchy)."""

    def __init__(self, config: Any = None):
        self.config = config

    def metrics(self, labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """Plain-float metrics (``loss`` and the selectable ones of config.METRICS) and a ``per_class`` report."""
        raise NotImplementedError

    def describe(self, logits: np.ndarray, label_names: list[str], top_k: int = TOP_K) -> list[dict[str, Any]]:
        """Per row, the prediction in words (``pred`` and its probabilities)."""
        raise NotImplementedError

    def gold(self, gold: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """The gold label(s) of one row in words (``gold``), with whatever else the row's logits tell about it."""
        raise NotImplementedError

    def losses(self, labels: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Each row's loss, as training computes it (the model config's loss settings)."""
        return loss_rows(self.config, labels, logits)

    def confusion(self, labels: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Gold and predicted label ids for a confusion matrix over the label names; None when no single one fits."""
        return None

    def tune(self, labels: np.ndarray, logits: np.ndarray) -> bool:
        """Fit decision parameters on these (validation) rows into the config; False when the type has none."""
        return False


class SingleLabel(Task):
    """One label per row: argmax of a softmax, cross-entropy loss."""

    def metrics(self, labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """Accuracy, F1 (macro/micro/weighted), macro precision/recall, mean loss, count and a per-class report."""
        return class_metrics(labels, logits, label_names, losses=self.losses(labels, logits))

    def describe(self, logits: np.ndarray, label_names: list[str], top_k: int = TOP_K) -> list[dict[str, Any]]:
        """The most probable label, its probability and the top k labels with theirs."""
        rows = []
        for p in softmax(logits):
            ranked = np.argsort(-p)[:top_k]
            rows.append(
                {
                    "pred": label_names[int(ranked[0])],
                    "probability": float(p[ranked[0]]),
                    "top_k": [{"label": label_names[int(j)], "probability": float(p[j])} for j in ranked],
                }
            )
        return rows

    def gold(self, gold: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """The gold label and the probability the model gave it."""
        return {"gold": label_names[int(gold)], "gold_probability": float(softmax(logits[None])[0, int(gold)])}

    def confusion(self, labels: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gold ids and argmax predictions."""
        return labels, logits.argmax(axis=1)


class MultiLabel(Task):
    """Any set of labels per row: one sigmoid per label against its threshold, binary cross-entropy loss."""

    def thresholds(self, num_labels: int) -> np.ndarray:
        """The per-label decision thresholds (tuned on validation after training; 0.5 before)."""
        thresholds = getattr(self.config, "thresholds", None)
        return np.asarray(thresholds if thresholds is not None else [0.5] * num_labels)

    def metrics(self, labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """``accuracy`` is subset accuracy (every label right); F1s over labels; mean loss (BCE, with the model
        config's settings); per-label report."""
        from sklearn.metrics import classification_report, precision_recall_fscore_support

        loss = float(self.losses(labels, logits).mean())
        labels = labels.astype(int)
        probs = sigmoid(logits)
        preds = (probs >= self.thresholds(len(label_names))).astype(int)
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
            "loss": loss,
            "num_samples": len(labels),
            "per_class": {name: report[name] for name in label_names},
        }

    def describe(self, logits: np.ndarray, label_names: list[str], top_k: int = TOP_K) -> list[dict[str, Any]]:
        """The labels over their thresholds and every label's probability."""
        thresholds = self.thresholds(len(label_names))
        return [
            {
                "pred": [label_names[j] for j in np.flatnonzero(p >= thresholds)],
                "probabilities": {name: float(x) for name, x in zip(label_names, p, strict=True)},
            }
            for p in sigmoid(logits)
        ]

    def gold(self, gold: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """The gold label set."""
        return {"gold": [label_names[j] for j in np.flatnonzero(gold)]}

    def tune(self, labels: np.ndarray, logits: np.ndarray) -> bool:
        """Per-label thresholds with the best F1 on these rows, stored in the config."""
        self.config.thresholds = tune_thresholds(labels, logits)
        return True


class Hierarchical(Task):
    """One label per level, coarse to fine, from side-by-side level logits; top-level metrics are the finest's."""

    def decode(self, logits: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The logits per level and the predicted ids per level (top-down with consistent_decoding)."""
        level_logits = split_levels(logits, self.config.levels)
        return level_logits, decode_levels(level_logits, self.config.level_parents, self.config.consistent_decoding)

    def metrics(self, labels: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """Per level ``<level>.<metric>``; top-level metrics are the finest level's (``loss`` is the weighted sum of
        the levels' losses, as in training); ``level_consistency`` is the share of rows whose levels agree."""
        levels, parents = self.config.levels, self.config.level_parents
        level_logits, preds = self.decode(logits)
        metrics: dict[str, Any] = {}
        per_level = []
        for i, level in enumerate(levels):
            losses = loss_rows(self.config, labels[:, i], level_logits[i], level=i)
            m = class_metrics(labels[:, i], level_logits[i], level["labels"], preds=preds[i], losses=losses)
            per_level.append(m)
            metrics |= {f"{level['name']}.{k}": v for k, v in m.items()}  # its per_class too
        agree = np.ones(len(labels), dtype=bool)
        for level in range(1, len(levels)):
            agree &= np.asarray(parents[level - 1])[preds[level]] == preds[level - 1]
        finest = per_level[-1]
        top = {k: v for k, v in finest.items() if not is_report(k)}
        weights = self.config.level_loss_weights
        top["loss"] = float(sum(w * m["loss"] for w, m in zip(weights, per_level, strict=True)))
        return top | metrics | {"level_consistency": float(agree.mean()), "per_class": finest["per_class"]}

    def describe(self, logits: np.ndarray, label_names: list[str], top_k: int = TOP_K) -> list[dict[str, Any]]:
        """One label per level and the finest prediction's probability."""
        level_logits, preds = self.decode(logits)
        finest = softmax(level_logits[-1])
        return [
            {
                "pred": {
                    level["name"]: level["labels"][int(p[r])]
                    for level, p in zip(self.config.levels, preds, strict=True)
                },
                "probability": float(finest[r, preds[-1][r]]),
            }
            for r in range(len(logits))
        ]

    def gold(self, gold: np.ndarray, logits: np.ndarray, label_names: list[str]) -> dict[str, Any]:
        """The gold label of every level."""
        levels = self.config.levels
        return {"gold": {level["name"]: level["labels"][int(g)] for level, g in zip(levels, gold, strict=True)}}

    def confusion(self, labels: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The finest level's gold and predicted ids."""
        return labels[:, -1], self.decode(logits)[1][-1]


TASKS: dict[str, type[Task]] = {
    "single_label_classification": SingleLabel,
    "multi_label_classification": MultiLabel,
    "hierarchical_classification": Hierarchical,
}


def task_for(config: Any) -> Task:
    """The Task of a model config's problem type (no config or no problem type: single-label)."""
    if config is None:  # plain cross-entropy, no decision settings: a default model config says exactly that
        config = EncoderClassifierConfig(problem_type="single_label_classification")
    problem = getattr(config, "problem_type", None) or "single_label_classification"
    if problem not in TASKS:
        raise ValueError(f"problem_type {problem!r} has no evaluation; add a Task for it to evaluate.TASKS.")
    return TASKS[problem](config)


def compute_metrics(
    labels: np.ndarray, logits: np.ndarray, label_names: list[str], task_config: Any = None
) -> dict[str, Any]:
    """Metrics for the model's problem type (``task_config``: the model's config; None means single-label)."""
    return task_for(task_config).metrics(labels, logits, label_names)


def evaluate(model: torch.nn.Module, dataloader: Any, accelerator: Any, label_names: list[str]) -> dict[str, Any]:
    """Run the model over ``dataloader`` on every process and return plain-float metrics."""
    out = predict(model, dataloader, accelerator)
    return compute_metrics(out["labels"], out["logits"], label_names, accelerator.unwrap_model(model).config)


def score_best_model(
    run_dir: Path, loaders: dict[str, DataLoader], accelerator: Any, tune_thresholds: bool = False
) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]], Any]:
    """Reload ``run_dir``'s best model, predict every (prepared) loader once and score the labeled splits; with
    ``tune_thresholds`` the decision thresholds of a multi-label model are first tuned on validation and saved with
    the model. Every process runs it. Returns (metrics per split, predict() outputs per split, the model config)."""
    model_dir = run_dir / BEST_MODEL
    try:
        model = EncoderClassifier.from_pretrained(model_dir, dtype=torch.float32)
    except (OSError, SafetensorError) as err:  # a cut-off, damaged or unreadable weights file
        raise UsageError(
            f"cannot load {model_dir} ({type(err).__name__}: {str(err).splitlines()[0]:.200}): its files are damaged "
            "or unreadable (cut off by a full disk or a copy?). Restore the folder or train the run again."
        ) from err
    model = accelerator.prepare_model(model, evaluation_mode=True)
    outputs = {split: predict(model, dl, accelerator) for split, dl in loaders.items()}
    config = accelerator.unwrap_model(model).config
    # prepare_model keeps a reference to the model in the accelerator: drop both so its memory goes now.
    accelerator.free_memory(model)
    del model
    task = task_for(config)
    label_names = [config.id2label[i] for i in range(config.num_labels)]
    if tune_thresholds and task.tune(outputs["validation"]["labels"], outputs["validation"]["logits"]):
        # Saved in best_model/config.json so evaluate.py and pipelines decide the same way; validation scores at
        # these thresholds are optimistic by construction.
        if accelerator.is_main_process:
            atomic_write_text(model_dir / "config.json", config.to_json_string())
        logger.info("thresholds tuned on validation: %s", dict(zip(label_names, config.thresholds, strict=True)))
    metrics = {
        split: task.metrics(out["labels"], out["logits"], label_names)
        for split, out in outputs.items()
        if "labels" in out
    }
    return metrics, outputs, config


# ----------------------------------------------------------------------------------------------------------------
# Outputs


def predictions_rows(
    raw: Any, out: dict[str, np.ndarray], label_names: list[str], task: Task, top_k: int = TOP_K
) -> list[dict[str, Any]]:
    """One record per example (a document, with ``windows`` counting its windows under --long_text windows): idx,
    text (and pair), gold, prediction, probabilities and the row's loss."""
    texts = column_values(raw, "text")
    pairs = column_values(raw, "text_pair") if "text_pair" in raw.column_names else None
    # idx: the row's place in its file (rows dropped for empty text counted), so that a join with the file holds.
    places = column_values(raw, SOURCE_ROW) if SOURCE_ROW in raw.column_names else None
    described = task.describe(out["logits"], label_names, top_k)
    losses = task.losses(out["labels"], out["logits"]) if "labels" in out else None
    rows = []
    for row, i in enumerate(out["idx"]):
        place = int(i) if places is None else int(places[int(i)])
        record = {"idx": place, "text": texts[int(i)]} | ({"text_pair": pairs[int(i)]} if pairs is not None else {})
        if "windows" in out:
            record["windows"] = int(out["windows"][row])
        if losses is not None:
            record |= task.gold(out["labels"][row], out["logits"][row], label_names) | {"loss": float(losses[row])}
        rows.append(record | described[row])
    return rows


def write_predictions(
    path: Path, raw: Any, out: dict[str, np.ndarray], label_names: list[str], task: Task, top_k: int = TOP_K
) -> None:
    """predictions_<split>.jsonl: one line per example in row order (gold, prediction, probabilities, loss)."""
    rows = predictions_rows(raw, out, label_names, task, top_k)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


# A confusion matrix of more classes is unreadable as a picture, and its figure grows with the square of the count:
# 1000 classes took 8.6 GB and crashed. Those runs get the per-class report (and predictions) only.
MAX_CONFUSION_CLASSES = 100


def plot_confusion(gold: np.ndarray, preds: np.ndarray, label_names: list[str], path: Path, title: str) -> bool:
    """Save a confusion-matrix PNG (rows: gold, columns: predicted); False (nothing saved) above
    MAX_CONFUSION_CLASSES classes."""
    if len(label_names) > MAX_CONFUSION_CLASSES:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    # A name the fonts cannot draw (Japanese, emoji, on a machine without their fonts) would be a row of empty boxes:
    # such a class is drawn as its number, and the log says which name each number stands for.
    numbered = {i: name for i, name in enumerate(label_names) if undrawable_characters(name)}
    shown = [f"#{i}" if i in numbered else plot_text(name) for i, name in enumerate(label_names)]
    if numbered:
        logger.info(
            "%s numbers %s whose name its fonts cannot draw: %s",
            path.name,
            counted(len(numbered), "class"),
            ", ".join(f"#{i} = {name!r}" for i, name in numbered.items()),
        )
    size = max(5.0, 0.45 * len(label_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        gold,
        preds,
        labels=list(range(len(label_names))),
        display_labels=shown,
        ax=ax,
        colorbar=False,
        xticks_rotation=90 if len(label_names) > 8 else 45,
        include_values=len(label_names) <= 20,
    )
    set_title_inside(fig, ax, title)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------------------------
# CLI


@dataclass
class EvalConfig:
    """Score one split of a run's data with its best model."""

    split: str = option("test", "Split to score: train, validation or test.")
    run_dir: str | None = option(None, "Run directory (default: the latest run recorded under --runs_root).")
    runs_root: str = option(RUNS_ROOT, "Where to find the LATEST pointer when --run_dir is not given.")
    max_samples: int | None = option(
        None, "Score only the first N rows (default: the run's --max_eval_samples for validation/test)."
    )
    batch_size: int | None = option(None, "Evaluation batch size per process (default: the run's).")
    input: str | None = option(
        None,
        "Predict labels for a csv/tsv/jsonl/json/parquet file (its text column as in training); a file that also has "
        "the label column is scored as well (metrics in eval_<name>.json).",
    )
    output: str | None = option(
        None, "A .jsonl file for the --input predictions (default: RUN/predictions_<input name>.jsonl)."
    )
    text_column: str | None = option(None, "The --input file's text column (default: the run's --text_column).")
    text_pair_column: str | None = option(
        None, "The --input file's second text column, for a run trained on pairs (default: the run's)."
    )
    label_column: str | None = option(
        None, "The --input file's label column, scored when the file has it (default: the run's --label_column)."
    )
    predict_only: bool = option(False, "Predict --input without scoring it, even where the file has labels.")
    top_k: int | None = option(
        None,
        f"Number of most probable labels listed per row of the predictions (default {TOP_K}); single-label runs only: "
        "a multi-label run lists every label's probability, a hierarchical one a label per level.",
    )

    def validate(self) -> None:
        """Check the split name, the sizes, and that the --input flags come with --input."""
        if self.split not in ("train", "validation", "test"):
            raise ConfigError(f"--split {self.split!r} is unknown; choose train, validation or test.")
        for name in ("max_samples", "batch_size", "top_k"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a positive integer.")
        if (self.text_column or self.text_pair_column or self.label_column or self.predict_only) and not self.input:
            raise ConfigError(
                "--text_column, --text_pair_column, --label_column and --predict_only are about an --input file; add "
                "--input."
            )
        if self.input and self.split != type(self).split:  # the default too, where given (check_split_with_input)
            raise split_with_input(self.split)
        if self.label_column and self.predict_only:
            raise ConfigError("--label_column names the labels to score; --predict_only scores none: drop one.")
        if self.output and not self.input:
            raise ConfigError(
                f"--output names the file of --input predictions; add --input, or drop --output (a split's "
                f"eval_{self.split}.json and predictions_{self.split}.jsonl go to the run folder)."
            )


def split_with_input(split: str) -> ConfigError:
    """The refusal of --split beside --input, which would be ignored: the file is scored in its place."""
    return ConfigError(
        f"--split {split} scores a split of the run's data; --input predicts a file instead (scored where it has "
        "labels): give one of them."
    )


def check_split_with_input(cfg: EvalConfig, argv: list[str] | None) -> None:
    """Refuse --split beside --input also where it names the default split (test), given on the command line or in a
    --config file: the user asked for the run's test split and would read the file's scores as its."""
    given, _, in_file = given_settings(argv, EvalConfig)
    if cfg.input and ("split" in given or "split" in in_file):
        raise split_with_input(cfg.split)


def check_top_k(cfg: EvalConfig, model_config: EncoderClassifierConfig) -> None:
    """--top_k only where rows list a top k (single-label runs): elsewhere it would change nothing, without a word."""
    problem = model_config.problem_type or "single_label_classification"
    if cfg.top_k is None or problem == "single_label_classification":
        return
    kind, lists = {
        "multi_label_classification": ("multi-label", "every label's probability"),
        "hierarchical_classification": ("hierarchical", "one label per level and the finest one's probability"),
    }.get(problem, (problem, "no top k"))
    raise UsageError(f"--top_k: this run is {kind}: each prediction row lists {lists}, not a top k; drop --top_k.")


def input_columns(cfg: EvalConfig, train_cfg: TrainConfig) -> TrainConfig:
    """The run's config with the --input file's text columns (the run's unless --text_column / --text_pair_column)."""
    if cfg.text_pair_column and not train_cfg.text_pair_column:
        raise ConfigError("--text_pair_column: this run was trained on single texts; its model reads one column.")
    return dataclasses.replace(
        train_cfg,
        text_column=cfg.text_column or train_cfg.text_column,
        text_pair_column=cfg.text_pair_column or train_cfg.text_pair_column,
    )


def model_files_lacking(model_dir: Path) -> list[str]:
    """The files a best_model/ folder needs to be loaded that it lacks (its config, weights and tokenizer)."""
    names = {p.name for p in model_dir.iterdir()} if model_dir.is_dir() else set()
    weights = {"model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"}
    has = {"config.json": "config.json" in names, "model.safetensors": bool(names & weights)}
    has["tokenizer_config.json"] = "tokenizer_config.json" in names
    return [name for name, present in has.items() if not present]


def load_run_config(run_dir: Path) -> dict[str, Any]:
    """The config.json of a run, with a clear error when the folder is not a run with a complete best model."""
    if (run := checkpoint_run(run_dir)) is not None:
        raise UsageError(
            f"{run_dir} is a checkpoint of the run {run}; pass --run_dir {run} (its {BEST_MODEL}/ is scored)."
        )
    if not (run_dir / "config.json").is_file():
        raise UsageError(f"{run_dir} is not a run directory (no config.json); pass --run_dir of a training run.")
    try:
        config, damaged = read_run_config(run_dir), None
    except ValueError as err:
        config, damaged = None, err  # named below, once the best model is found
    if config is None and damaged is None:
        raise UsageError(
            f"{run_dir} is a model folder, not a run of train.py (its config.json is not a run's); pass --run_dir of "
            "a training run."
        )
    best = run_dir / BEST_MODEL
    finished = (run_dir / "results.json").is_file()
    if not best.is_dir():
        if finished:
            raise UsageError(
                f"{best} is missing although the run finished (results.json): it was moved or deleted. Put it back "
                f"(a checkpoint's {BEST_MODEL}/ holds the best state it knew) or train the run again."
            )
        raise UsageError(no_best_model_yet(run_dir))
    if lacking := model_files_lacking(best):
        raise UsageError(
            f"{best} lacks {', '.join(lacking)}: the folder is incomplete (files deleted or not copied). Restore it "
            "from where it came from, or train the run again."
        )
    if damaged is not None:
        raise UsageError(f"{run_dir / 'config.json'} is damaged ({damaged}); restore it, or train the run again.")
    return config


def no_best_model_yet(run_dir: Path) -> str:
    """Why an unfinished run has no best_model/ yet: still training towards its first evaluation (wait), or stopped
    before it (continue it, from the checkpoint it left, or train it again)."""
    if (holder := run_dir_holder(run_dir)) is not None:
        return (
            f"{run_dir} has no {BEST_MODEL}/ yet: its training (pid {holder}) has not finished its first evaluation; "
            "score it once it has."
        )
    if kept := checkpoint_dirs(run_dir):
        return (
            f"{run_dir} has no {BEST_MODEL}/: the run stopped before its first evaluation; continue it with train.py's "
            f"{resume_flags(run_dir)} (from {kept[-1].name}), and score it once it has evaluated."
        )
    return (
        f"{run_dir} has no {BEST_MODEL}/: the run stopped before its first evaluation and left no checkpoint to "
        "continue from; train it again."
    )


def load_model_config(model_dir: Path) -> EncoderClassifierConfig:
    """The model config of ``best_model/``, with one line when its config.json is damaged."""
    try:
        return EncoderClassifierConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as err:
        raise UsageError(
            f"{model_dir / 'config.json'} cannot be read ({str(err).splitlines()[0]:.160}); restore the folder (a "
            "checkpoint's best_model/ holds the best state it knew), or train the run again."
        ) from err


def run_folder(cfg: EvalConfig) -> Path:
    """The run to score: --run_dir (RUN/best_model is read as RUN), else the latest run under --runs_root."""
    run_dir = Path(cfg.run_dir) if cfg.run_dir else read_latest_pointer(Path(cfg.runs_root))
    if not run_dir.exists():
        raise UsageError(f"--run_dir {run_dir}: no such folder; pass the folder of a training run.")
    if run_dir.is_file():  # one of the run's files (results.json) given for its folder
        raise UsageError(f"--run_dir {run_dir} is a file; pass the folder of a training run ({run_dir.parent}?).")
    if run_dir.name == BEST_MODEL and (run_dir.parent / "config.json").is_file():
        logger.info("--run_dir %s is a run's best model: scoring the run %s", run_dir, run_dir.parent)
        return run_dir.parent
    return run_dir


def warn_if_unfinished(run_dir: Path) -> None:
    """Scoring a run that is still training (or was stopped) is allowed, and said: its best model may change."""
    if (run_dir / "results.json").is_file():
        return
    try:
        step = (read_best_record(run_dir / BEST_MODEL) or {}).get("step")
    except (OSError, ValueError, AttributeError):  # no record (or a damaged one): the step is not said
        step = None
    logger.warning(
        "%s has not finished (no results.json): scoring its best model so far%s. These files describe that model; "
        "when the run finishes, train.py replaces them.",
        run_dir,
        f" (step {step})" if step is not None else "",
    )


def load_scored_split(
    cfg: EvalConfig, train_cfg: TrainConfig, resolved: dict[str, Any], model_config: Any
) -> tuple[Any, list[str]]:
    """The rows of ``cfg.split`` exactly as the run drew them (the first --max_samples of them), their classes
    numbered as the model's (``model_config``) are, and the data's label names; refused when those rows are no longer
    the ones the run recorded."""
    # Train after the validation carve and --max_train_samples, so --split train scores the rows the run trained on.
    # Scoring needs no teacher probabilities, so a distillation run's data is read without them.
    dataset = resolved["dataset"]
    try:
        # The model's own class order, not this version's: integer labels written as text were ordered as text.
        levels = getattr(model_config, "levels", None) or []
        order = [list(level["labels"]) for level in levels] or [
            [model_config.id2label[i] for i in range(model_config.num_labels)]
        ]
        data = load_splits(dataclasses.replace(train_cfg, dataset=dataset, teacher_column=None), order)
    except UsageError as err:
        # The reader names train.py's --dataset, a flag evaluate.py does not take: the data is the run's own.
        if not str(err).startswith(prefix := f"--dataset {dataset}: "):
            raise
        raise UsageError(
            f"the run's data {dataset} (config.json's resolved.dataset): {str(err).removeprefix(prefix).rstrip('.')}. "
            f"Put it back there to score --split {cfg.split}, or predict a file with --input FILE."
        ) from err
    if cfg.split not in data.splits:
        if any(note.startswith(f"the {cfg.split} split has no labels") for note in data.notes):
            # Left out of the run as a benchmark's hidden labels are: its rows can still be predicted.
            raise UsageError(
                f"the {cfg.split} split of {dataset} has no labels (every one missing or -1), so the run left it out "
                f"and there is nothing to score; predict its rows with --input FILE (its {cfg.split} file)."
            )
        raise UsageError(
            f"the dataset {dataset} has no {cfg.split} split; score another --split, or predict a file with "
            "--input FILE."
        )
    rows = data.splits[cfg.split]
    recorded = (resolved.get("split_digests") or {}).get(cfg.split)
    if recorded is not None and not (cfg.split == "train" and train_cfg.teacher_column):
        # Scores of other rows, written as this run's eval_<split>.json and predictions (which compare.py reads),
        # would pass for the run's own.
        if (now := split_digests({cfg.split: rows})[cfg.split]) != recorded:
            if (reader := resolved.get("data_reader", 1)) != DATA_READER:  # the reading changed, not the data
                raise UsageError(
                    f"the {cfg.split} split of {dataset} reads as other rows than this run recorded, and the run was "
                    f"trained by an older data reader (version {reader}, now {DATA_READER}: tsv quoting, eval files, "
                    "unlabeled splits, csv id lists, empty labels, one-row classes in the carve, ClassLabel ids, "
                    '"1.0" labels as ids, csv cells as written): score it with the version that trained it, or train '
                    "it again."
                )
            raise UsageError(
                f"the {cfg.split} split of {dataset} is not the one this run recorded (its rows or labels changed "
                f"after training: digest {recorded}, now {now}); restore the run's data to score it, or predict new "
                "rows with --input FILE."
            )
    if cfg.max_samples is not None and cfg.max_samples < len(rows):
        rows = rows.select(range(cfg.max_samples))
    elif cfg.max_samples is not None and cfg.max_samples > len(rows):
        # Scores of fewer rows than asked would otherwise pass for the N asked, say next to another run's N.
        flag, used = ("max_train_samples", "trained on") if cfg.split == "train" else ("max_eval_samples", "scored")
        limit = getattr(train_cfg, flag)
        why = f" the run {used} (its --{flag} {limit})" if limit == len(rows) else ""
        # The split's other rows can still be scored, as new rows, from the file itself.
        rest = (
            f" (--input with the {cfg.split} split's file scores all its rows)" if why and cfg.split != "train" else ""
        )
        logger.warning(
            "--max_samples %d is more than the %d rows of the %s split%s: scoring those %d%s",
            cfg.max_samples,
            len(rows),
            cfg.split,
            why,
            len(rows),
            rest,
        )
    return rows, data.label_names


def subset_name(name: str, max_samples: int | None, rows: int) -> str:
    """``name`` for a whole split or file, ``name_first<N>`` for the N first rows --max_samples kept (N counts the rows
    kept, so a split shorter than --max_samples is not named for rows it does not have)."""
    return name if max_samples is None else f"{name}_first{min(max_samples, rows)}"


def check_output(cfg: EvalConfig) -> None:
    """Refuse an --output that is a folder or named like another format, before any work."""
    if not cfg.output:
        return
    destination = Path(cfg.output)
    if destination.is_dir() or cfg.output.endswith(("/", os.sep)):
        raise UsageError(f"--output {cfg.output} is a folder; give a file name such as {destination / 'x.jsonl'}.")
    if destination.suffix.lower() in {".csv", ".tsv", ".parquet", ".txt"}:
        raise UsageError(
            f"--output {cfg.output}: predictions are written as JSON lines, not {destination.suffix}; name the "
            "file *.jsonl (pandas.read_json(path, lines=True) reads it)."
        )


def input_destination(cfg: EvalConfig, run_dir: Path, rows: int) -> Path:
    """Where the predictions for an --input of ``rows`` rows go: --output, else
    RUN/predictions_<input name>[_first<N>].jsonl."""
    if cfg.output:
        return Path(cfg.output)  # its folder is created when it is written
    stem = Path(cfg.input).stem
    # A file named like a split's (test.csv, validation_first5.csv) must not replace that split's predictions.
    if EVALUATE_SPLIT_FILES.fullmatch(f"predictions_{subset_name(stem, cfg.max_samples, rows)}.jsonl"):
        stem = f"{stem}_input"
    # A subset's predictions get their own name, as a split's do: the whole file's stay as they are.
    return run_dir / f"predictions_{subset_name(stem, cfg.max_samples, rows)}.jsonl"


def input_label_spec(cfg: EvalConfig, train_cfg: TrainConfig, model_config: Any) -> LabelSpec:
    """The columns an --input file's labels are read from (the run's, or --label_column) and the model's label names
    for each, so the file is scored as the run's own test split is."""
    problem = getattr(model_config, "problem_type", None) or "single_label_classification"
    names = [model_config.id2label[i] for i in range(model_config.num_labels)]
    if not train_cfg.label_columns:
        column = cfg.label_column or train_cfg.label_column
        texts = input_columns(cfg, train_cfg)
        if column in (texts.text_column, texts.text_pair_column):
            raise UsageError(f"--label_column {column!r} is the --input file's text column; name its label column.")
        return LabelSpec(problem, [column], [{"name": column, "labels": names}])
    if cfg.label_column:
        raise UsageError(
            f"--label_column: this run reads its labels from the columns {', '.join(train_cfg.label_columns)} "
            "(--label_columns); the --input file is scored when it has them, under those names."
        )
    if problem == "hierarchical_classification":
        levels = [{"name": level["name"], "labels": list(level["labels"])} for level in model_config.levels]
    else:  # one 0/1 column per label
        levels = [{"name": "labels", "labels": names}]
    return LabelSpec(problem, list(train_cfg.label_columns), levels)


def input_gold(
    cfg: EvalConfig, raw: Any, spec: LabelSpec, run_cfg: TrainConfig, recorded: list | None = None
) -> list[Any] | None:
    """The --input file's gold labels per row (None for a row without one), or None when it is only predicted: no
    label column, --predict_only, or a label column without any label. Where integer label names leave open how the
    run read an integer label, ``recorded`` (config.json's resolved.label_values) tells, or for a run trained before
    it was recorded, the run's own data (``run_cfg``) read again."""
    present = [c for c in spec.columns if c in raw.column_names]
    if cfg.predict_only:
        return None
    if not present:
        # A held-out file whose labels sit under another name would be predicted without a word on why no score came.
        if len(spec.columns) == 1:
            why = f"no column {spec.columns[0]!r} (the run's label column)"
            fix = "name its label column with --label_column to score it"
        else:
            why = f"none of the run's label columns ({', '.join(map(repr, spec.columns))})"
            fix = "add them, under those names, to score it"
        logger.info("%s has %s, so it is predicted, not scored: %s", cfg.input, why, fix)
        return None
    if missing := [c for c in spec.columns if c not in present]:
        raise UsageError(
            f"{cfg.input} has the label {'column' if len(present) == 1 else 'columns'} {', '.join(present)} but not {', '.join(missing)}, which this run "
            "was trained on: add them to score the file, or pass --predict_only."
        )
    zero_one = spec.problem_type == "multi_label_classification" and len(spec.columns) > 1  # names: the columns
    trained = None
    if not zero_one and any(integers_ambiguous(level["labels"]) for level in spec.levels):
        if recorded and len(recorded) == len(spec.levels):
            trained = [{value: i for value, i in pairs} for pairs in recorded]
        elif (trained := trained_label_maps(run_cfg, spec.levels)) is None:
            logger.warning(
                "the model's label names are integers, and the run's data %s cannot be read again to tell whether it "
                "read an integer label as a name or as a position: an integer in %s is read as the name it is",
                run_cfg.dataset,
                cfg.input,
            )
    gold = input_labels(raw, spec, trained)
    if not zero_one and spec.problem_type != "multi_label_classification":
        say_ids_read_as_classes(raw, spec, recorded, cfg.input)
    if all(g is None for g in gold):
        logger.info("%s: the column %s holds no labels, so the file is predicted, not scored", cfg.input, present[0])
        return None
    return gold


def integer_label(value: Any) -> int | None:
    """The integer a label value is (3, 3.0, "3", " 3.0 "); None for a name, a bool or a missing value."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else None
    return whole_number(value)


def say_ids_read_as_classes(raw: Any, spec: LabelSpec, recorded: list | None, source: str) -> None:
    """Warn when an --input file writes integers where the run read label names (neg/pos): they are read as the
    model's ids, which is right only if the file numbers its classes in the model's order; the warning gives it."""
    if not recorded or len(recorded) != len(spec.levels):
        return
    for column, level, pairs in zip(spec.columns, spec.levels, recorded, strict=False):
        if column not in raw.column_names or any(integer_label(value) is not None for value, _ in pairs):
            continue  # the run itself read integers (ids, or integer names): the file is read as it was
        names = level["labels"]
        ids = sorted(
            {n for v in column_values(raw, column) if (n := integer_label(v)) is not None and 0 <= n < len(names)}
        )
        if ids:
            shown = ", ".join(f"{i} = {names[i]!r}" for i in ids[:8]) + (", ..." if len(ids) > 8 else "")
            logger.warning(
                "%s writes its %r column as numbers, which the run never read (it trained on the names): read as the "
                "model's ids, %s; if the file numbers its classes otherwise, write the names",
                source,
                column,
                shown,
            )


def input_score_files(destination: Path) -> tuple[Path, Path]:
    """The metrics file and confusion picture of a scored --input, beside its predictions: predictions_<name>.jsonl
    (or <name>.jsonl) -> eval_<name>.json, confusion_<name>.png."""
    stem = destination.stem.removeprefix("predictions_")
    return destination.with_name(f"eval_{stem}.json"), destination.with_name(f"confusion_{stem}.png")


def holds_predictions(path: Path) -> bool:
    """True for a file of prediction lines (the first line a JSON object with an ``idx``), or an empty file: what an
    --output may replace without a word."""
    try:
        with path.open(encoding="utf-8") as file:
            first = file.readline()
        row = json.loads(first) if first else {"idx": None}
    except (OSError, ValueError):  # unreadable, not text, not JSON lines: not predictions
        return False
    return isinstance(row, dict) and "idx" in row


def holds_scores(path: Path, destination: Path) -> bool:
    """True for the eval_<name>.json evaluate.py wrote for the predictions ``destination``."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    written = isinstance(record, dict) and {"input", "predictions", "unscored_rows"} <= record.keys()
    return written and Path(str(record["predictions"])).name == destination.name


def check_input_destination(cfg: EvalConfig, run_dir: Path, destination: Path) -> None:
    """Refuse an --output that would write over the run's own split files (eval_test.json, predictions_test.jsonl)."""
    if not cfg.output or destination.resolve().parent != run_dir.resolve():
        return
    if taken := [
        p.name for p in (destination, *input_score_files(destination)) if EVALUATE_SPLIT_FILES.fullmatch(p.name)
    ]:
        raise UsageError(
            f"--output {cfg.output} would write {taken[0]}, a name the run's own split scores use; give another name."
        )


def check_overwrites(cfg: EvalConfig, run_dir: Path, destination: Path, scored: bool) -> None:
    """Refuse to write the predictions of --input (and, ``scored``, its eval_<name>.json and confusion_<name>.png)
    over a file evaluate.py did not write: the input itself, the run's own files (config.json, results.json, ...), or
    a file of the user's beside an --output."""
    paths = [destination, *(input_score_files(destination) if scored else ())]
    if taken := next((p for p in paths if p.resolve() == Path(cfg.input).resolve()), None):
        raise UsageError(
            f"--output {cfg.output}: {taken} is the --input file, which this would replace; give another --output."
        )
    # The manifest lists evaluate.py's files in the run folder; elsewhere a file's content says whether it is one.
    ours = {p.resolve() for p in evaluate_outputs(run_dir) if p.name != EVALUATE_MANIFEST}
    if destination.exists() and destination.resolve() not in ours and not holds_predictions(destination):
        raise UsageError(
            f"{'--output ' if cfg.output else ''}{destination} is a file evaluate.py did not write, and the predictions "
            f"of {cfg.input} would replace it; give --output another FILE.jsonl, or move that file."
        )
    for path in paths[1:]:
        if path.exists() and path.resolve() not in ours and not holds_scores(paths[1], destination):
            raise UsageError(
                f"{path} is not a file evaluate.py wrote, and scoring {destination.stem.removeprefix('predictions_')} "
                "would replace it; give --output FILE.jsonl elsewhere, or move that file."
            )


def input_scores(
    raw: Any, out: dict[str, np.ndarray], gold: list[Any], task: Task, label_names: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None, dict[str, int]]:
    """Which predicted rows of an --input file are scored (a label and a text: a split leaves rows without text out
    too), their gold labels as training encodes them, their metrics (None when no row is scored) and the counts of
    rows left unscored by reason."""
    texts = [column_values(raw, c) for c in ("text", "text_pair") if c in raw.column_names]
    has_text = [all(t.strip() for t in row) for row in zip(*texts, strict=True)]
    rows = [int(i) for i in out["idx"]]
    scored = np.array([gold[i] is not None and has_text[i] for i in rows], dtype=bool)
    dtype = np.float32 if task.config.problem_type == "multi_label_classification" else np.int64
    labels = np.asarray([gold[i] for i, keep in zip(rows, scored, strict=True) if keep], dtype=dtype)
    unscored = {
        "no_label": sum(gold[i] is None for i in rows),
        "no_text": sum(gold[i] is not None and not has_text[i] for i in rows),
    }
    metrics = task.metrics(labels, out["logits"][scored], label_names) if scored.any() else None
    return scored, labels, metrics, unscored


def cut_splits_note(cfg: EvalConfig, train_cfg: TrainConfig, resolved: dict[str, Any], rows: int) -> str | None:
    """A line saying that the run's validation/test scores are of the first --max_eval_samples rows where the run cut
    a split so, while the --input file (of ``rows`` rows) is scored whole: the same data scores otherwise."""
    limit, sizes = train_cfg.max_eval_samples, resolved.get("split_sizes", {})
    cut = [split for split in ("validation", "test") if limit is not None and sizes.get(split, 0) >= limit]
    if not cut:
        return None
    which = (
        f"the run's {' and '.join(cut)} splits were cut to their first"
        if len(cut) > 1
        else f"the run's {cut[0]} split was cut to its first"
    )
    scored = (
        f"scored on its first {counted(rows, 'row')} (--max_samples {cfg.max_samples})"
        if cfg.max_samples is not None and cfg.max_samples <= rows
        else f"scored whole ({counted(rows, 'row')})"
    )
    return f"{which} {counted(limit, 'row')} (--max_eval_samples {limit}); {cfg.input} is {scored}"


def drop_stale_input_scores(run_dir: Path, paths: list[Path]) -> None:
    """Remove the scores an earlier evaluate.py wrote for an --input that is now not scored (they would describe
    other predictions than the new ones); beside an --output elsewhere, whose files may be the user's, only warn."""
    ours = {p.resolve() for p in evaluate_outputs(run_dir)}
    for path in [p for p in paths if p.is_file()]:
        if path.resolve() in ours:
            path.unlink()
            forget_evaluate_output(run_dir, path)
            logger.info("removed %s: it scored an earlier prediction of this input", path.name)
        else:
            logger.warning("%s is not from these predictions (they are not scored); it was left as it is", path)


def write_input_scores(
    cfg: EvalConfig,
    run_dir: Path,
    destination: Path,
    metrics: dict[str, Any],
    unscored: dict[str, int],
    confusion: tuple[np.ndarray, np.ndarray] | None,
    label_names: list[str],
) -> None:
    """eval_<name>.json and confusion_<name>.png of a scored --input file, beside its predictions."""
    eval_path, confusion_path = input_score_files(destination)
    record = {"input": str(Path(cfg.input).resolve()), "run_dir": str(run_dir), "predictions": str(destination)}
    atomic_write_json(eval_path, record | {"unscored_rows": unscored, **metrics})
    record_evaluate_output(run_dir, eval_path)  # so a new best model of this run removes them with the predictions
    written = [eval_path.name]
    title = f"{eval_path.stem.removeprefix('eval_')} ({run_dir.name})"
    if confusion is not None and plot_confusion(*confusion, label_names, confusion_path, title):
        record_evaluate_output(run_dir, confusion_path)
        written.append(confusion_path.name)
    else:
        drop_stale_input_scores(run_dir, [confusion_path])
    left = [f"{n} without a {why.removeprefix('no_')}" for why, n in unscored.items() if n]
    logger.info(
        "scored %d rows of %s against its labels%s; wrote %s in %s",
        metrics["num_samples"],
        cfg.input,
        f" ({' and '.join(left)}: predicted, not scored)" if left else "",
        ", ".join(written),
        eval_path.parent,
    )


def run_cudnn_attention(resolved: dict[str, Any]) -> bool | None:
    """Whether the run's GPU attention could take cuDNN's kernel, so a reload computes as it did: as recorded, and
    torch's own choice (allowed) for a GPU run trained before it was recorded; None for a CPU run."""
    if "cudnn_attention" in resolved:
        return resolved["cudnn_attention"]
    return True if str(resolved.get("device", "")).startswith("cuda") else None


def setup_differences(
    cfg: EvalConfig, train_cfg: TrainConfig, resolved: dict[str, Any], accelerator: Any, run_dir: Path
) -> list[str]:
    """What this evaluation computes with that the run's own scoring did not: the causes evaluate.py knows of for
    scores that differ from results.json (by rounding, or by code)."""
    differences = []
    # The model is rebuilt by this checkout's model.py; best_model/ keeps the copy the run trained with. A pooling or
    # head edited since computes otherwise, and no setting would show it.
    saved = run_dir / BEST_MODEL / "model.py"
    here = Path(inspect.getfile(EncoderClassifier))
    if saved.is_file() and saved.read_bytes() != here.read_bytes():
        differences.append(f"{here} edited since the run ({saved} is the run's copy)")
    if cfg.batch_size is not None and cfg.batch_size != train_cfg.per_device_eval_batch_size:
        differences.append(f"--batch_size {cfg.batch_size} (the run's {train_cfg.per_device_eval_batch_size})")
    if (processes := resolved.get("num_processes")) and processes != accelerator.num_processes:
        differences.append(f"{counted(accelerator.num_processes, 'process')} (the run's {processes})")
    if (device := resolved.get("device")) and device.split(":")[0] != accelerator.device.type:
        differences.append(f"device {accelerator.device.type} (the run's {device})")
    threads = torch.get_num_threads() if accelerator.device.type == "cpu" else None
    if (run_threads := resolved.get("cpu_threads")) and threads and threads != run_threads:
        differences.append(f"{threads} CPU threads (the run's {run_threads})")
    now = library_versions()
    for name, then in (resolved.get("versions") or {}).items():
        if now.get(name) != then:
            differences.append(f"{name} {now.get(name)} (the run's {then})")
    return differences


def report_reproduction(run_dir: Path, split: str, tag: str, metrics: dict[str, Any], differences: list[str]) -> None:
    """Say whether the scores of the run's whole ``split`` (written as eval_<tag>.json) are the ones results.json
    recorded for the reloaded best model, and when they are not, what this evaluation does otherwise (a colleague
    comparing numbers, or a user whose eval_<split>.json no longer matches results.json, is told here rather than
    left to find out)."""
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unfinished (said above) or damaged: nothing recorded to compare with
        return
    # validation_reloaded: the same reload-and-score path evaluate.py runs, at the end of training.
    recorded = results.get("validation_reloaded" if split == "validation" else split) or results.get(split)
    if not isinstance(recorded, dict) or recorded.get("num_samples") != metrics.get("num_samples"):
        return  # a split the run did not score, or fewer rows (a subset): not the recorded numbers
    keys = [k for k in dict.fromkeys((results.get("metric", "macro_f1"), "loss")) if k in recorded and k in metrics]
    if not (changed := [k for k in keys if metrics[k] != recorded[k]]):
        logger.info("%s %s reproduce%s results.json exactly", split, " and ".join(keys), "" if len(keys) > 1 else "s")
        return
    shown = "; ".join(f"{split} {k} {metrics[k]!r} differs from results.json's {recorded[k]!r}" for k in changed)
    why = (
        f"this evaluation runs with {', '.join(differences)}"
        if differences
        else "nothing evaluate.py knows of differs from the run (batch size, processes, device, threads, library "
        "versions), so this machine's kernels round otherwise"
    )
    logger.warning(
        "%s, which the run recorded for this best model: %s. eval_%s.json, predictions_%s.jsonl hold this "
        "evaluation's numbers.",
        shown,
        why,
        tag,
        tag,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: evaluate a split (metrics, predictions, confusion matrix) or predict an unlabeled file."""
    cfg: EvalConfig = parse_config(argv, EvalConfig)
    check_split_with_input(cfg, argv)
    # Before the first line is logged (run_folder's): with no handler yet it would be lost, and after a train.main()
    # in this process it would go to that run's train.log. The launcher's rank until the Accelerator exists (it needs
    # the run's precision; a state made before it would take the launch for one process).
    setup_logging(None, os.environ.get("RANK", "0") == "0")
    if overrides := file_overrides(argv, EvalConfig):
        logger.info(overrides)
    run_dir = run_folder(cfg)
    run = load_run_config(run_dir)
    train_cfg = TrainConfig(**run["user_config"])
    resolved = run["resolved"]
    if (
        train_cfg.multi_label
        and resolved.get("problem_type", "multi_label_classification") != "multi_label_classification"
    ):
        # Trained before --multi_label on a one-label column was refused: the flag was ignored, and the data is read
        # as the run read it.
        train_cfg = dataclasses.replace(train_cfg, multi_label=False)
    # The training run's precision and batch shapes, so the validation score reproduces bit for bit.
    fresh_accelerate_state()
    accelerator = Accelerator(mixed_precision=resolved.get("mixed_precision", "no"))
    setup_logging(None, accelerator.is_main_process)
    # `accelerate launch evaluate.py` on a CPU would otherwise score on the one thread the launcher leaves it.
    if cpu_note := tune_cpu(accelerator, cudnn_attention=run_cudnn_attention(resolved)):
        logger.info(cpu_note)

    if accelerator.is_main_process:
        warn_if_unfinished(run_dir)
        asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "").lower()  # `accelerate launch --mixed_precision`
        if asked and asked != accelerator.mixed_precision:
            logger.info(
                "scoring in mixed precision %s, the run's, not the launcher's %s: so the scores are the run's own",
                accelerator.mixed_precision,
                asked,
            )
        if (trained := resolved.get("num_processes")) and trained != accelerator.num_processes and not cfg.input:
            # Each process sorts its shard by length, so other batches pad other rows: logits move by rounding.
            logger.warning(
                "the run evaluated on %s, this on %d: batches differ, so the loss and probabilities may "
                "differ in their last digits from results.json (launch with --num_processes %d to reproduce them "
                "exactly)",
                counted(trained, "process"),
                accelerator.num_processes,
                trained,
            )
    model_dir = run_dir / BEST_MODEL
    model_config = load_model_config(model_dir)
    check_top_k(cfg, model_config)
    model_labels = [model_config.id2label[i] for i in range(model_config.num_labels)]
    gold = None
    if cfg.input:
        name, label_names = "input", None
        check_output(cfg)
        spec = input_label_spec(cfg, train_cfg, model_config)
        label_columns = () if cfg.predict_only else tuple(spec.columns)
        # A label column named on the command line must be there (named with the file's columns where it is not).
        named = "label_column" if cfg.label_column else None
        raw = load_unlabeled(cfg.input, input_columns(cfg, train_cfg), cfg.max_samples, label_columns, named)
        destination = input_destination(cfg, run_dir, len(raw))
        check_input_destination(cfg, run_dir, destination)
        run_data = dataclasses.replace(train_cfg, dataset=resolved.get("dataset", train_cfg.dataset))
        gold = input_gold(cfg, raw, spec, run_data, resolved.get("label_values"))
        check_overwrites(cfg, run_dir, destination, scored=gold is not None)
        raw = raw.remove_columns([c for c in label_columns if c in raw.column_names])
        source = str(Path(cfg.input).resolve())
        earlier = None if cfg.output or not destination.exists() else evaluate_input_source(run_dir, destination)
        if earlier not in (None, source):  # the same input again replaces its predictions; another file's are kept
            raise UsageError(
                f"{destination} holds the predictions of {earlier}, another file of the same name; give --output "
                f"FILE for {cfg.input}, or remove {destination.name} to replace them."
            )
    else:
        name = cfg.split
        raw, label_names = load_scored_split(cfg, train_cfg, resolved, model_config)
    if label_names is not None and label_names != model_labels:
        if (reader := resolved.get("data_reader", 1)) != DATA_READER:  # the reading changed, perhaps not the data
            raise UsageError(
                f"the data's labels {label_names} differ from the model's {model_labels}, and the run was trained by "
                f"an older data reader (version {reader}, now {DATA_READER}: ClassLabel names of parquet files are "
                'now read, "1.0" labels as the id 1, and csv labels as written, "007" or "true"); score it with the version '
                "that trained it, or train it again."
            )
        raise UsageError(
            f"the data's labels {label_names} differ from the model's {model_labels}; was the dataset changed?"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # Every window of every document, --split train included (--max_windows_per_doc limits training only).
    tokenized = tokenize_splits({name: raw}, tokenizer, train_cfg.max_seq_length, windowing(train_cfg, every=True))
    if accelerator.is_main_process:
        pairs = bool(input_columns(cfg, train_cfg).text_pair_column)
        counts, fix = cut_counts(tokenized), "the run's limit, which its training texts were cut at too"
        for note in cut_notes(counts, {name: len(raw)}, train_cfg.max_seq_length, pairs, fix):
            logger.info(note)
    pad_multiple = resolved.get("pad_to_multiple_of")
    _, loaders = build_dataloaders(
        tokenized, tokenizer, train_cfg, pad_multiple, train=False, eval_batch_size=cfg.batch_size
    )
    loaders = {split: accelerator.prepare(dl) for split, dl in loaders.items()}
    metrics, outputs, config = score_best_model(run_dir, loaders, accelerator)
    out, task = outputs[name], task_for(config)

    if cfg.input:
        summary = {"input": cfg.input, "num_predictions": len(out["idx"]), "output": str(destination)}
        scored, labels, input_metrics, unscored = (
            input_scores(raw, out, gold, task, model_labels) if gold is not None else (None, None, None, {})
        )
        eval_path, confusion_path = input_score_files(destination)
        if input_metrics is not None:
            summary |= {"eval": str(eval_path), **input_metrics}
        if accelerator.is_main_process:
            rows = predictions_rows(raw, out, model_labels, task, cfg.top_k or TOP_K)
            for r in rows:  # the prediction is "the label", as for a file without labels; the gold is "gold"
                r["label"] = r.pop("pred")
            if input_metrics is not None:
                logits = out["logits"][scored]
                for row, gold_row, logit, loss in zip(
                    np.flatnonzero(scored), labels, logits, task.losses(labels, logits), strict=True
                ):
                    rows[row] |= task.gold(gold_row, logit, model_labels) | {"loss": float(loss)}
            replaced = destination.exists()
            atomic_write_text(destination, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            record_evaluate_output(run_dir, destination, source)  # so a new model of this run replaces them too
            logger.info("wrote %d predictions to %s%s", len(rows), destination, " (replaced)" if replaced else "")
            if input_metrics is not None:
                confusion = task.confusion(labels, out["logits"][scored])
                write_input_scores(cfg, run_dir, destination, input_metrics, unscored, confusion, model_labels)
                if note := cut_splits_note(cfg, train_cfg, resolved, len(raw)):
                    logger.info(note)
            else:
                if gold is not None:
                    logger.warning(
                        "%s has labels, but no row has both a label and a text: nothing is scored", cfg.input
                    )
                drop_stale_input_scores(run_dir, [eval_path, confusion_path])
            print(json.dumps({k: v for k, v in summary.items() if not is_report(k)}))
        return summary

    split, metrics = cfg.split, metrics[name]
    # A subset's files get their own names: the whole split's (which scripts/compare.py reads) stay as they are.
    tag = subset_name(split, cfg.max_samples, len(raw))
    if accelerator.is_main_process:
        atomic_write_json(run_dir / f"eval_{tag}.json", {"split": split, "run_dir": str(run_dir), **metrics})
        write_predictions(run_dir / f"predictions_{tag}.jsonl", raw, out, model_labels, task, cfg.top_k or TOP_K)
        # A hierarchy plots its finest level; multi-label has no single matrix (see per_class instead).
        plotted = ""
        if (confusion := task.confusion(out["labels"], out["logits"])) is not None:
            path = run_dir / f"confusion_{tag}.png"
            if plot_confusion(*confusion, model_labels, path, f"{tag} ({run_dir.name})"):
                plotted = f", {path.name}"
            else:
                logger.info("no confusion_%s.png: %d classes (over %d)", tag, len(model_labels), MAX_CONFUSION_CLASSES)
        logger.info("wrote eval_%s.json, predictions_%s.jsonl%s in %s", tag, tag, plotted, run_dir)
        report_reproduction(
            run_dir, split, tag, metrics, setup_differences(cfg, train_cfg, resolved, accelerator, run_dir)
        )
        summary = {k: v for k, v in metrics.items() if not is_report(k)}
        print(json.dumps({"split": split, **summary}))
    return metrics


if __name__ == "__main__":
    run_cli(main, fast_exit=True)
