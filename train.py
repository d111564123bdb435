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

import dataclasses
import gc
import importlib.util
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from config import TrainConfig, parse_config
from data import PadCollator, eval_dataloader, prepare_splits, tokenize_splits, train_dataloader
from evaluate import compute_metrics, evaluate, is_better, predict, tune_thresholds
from model import EncoderClassifier, distillation_loss
from utils import (
    UsageError,
    append_jsonl,
    atomic_write_dir,
    atomic_write_json,
    atomic_write_text,
    logger,
    read_latest_pointer,
    resolve_model_path,
    run_cli,
    setup_logging,
    short_name,
    write_latest_pointer,
)

# Files whose presence means a folder already holds a run that must not be overwritten silently.
RUN_MARKERS = ("config.json", "results.json", "best_model", "metrics.jsonl")


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Names of biases and of every parameter owned by a normalization module (chosen by type, not by name)."""
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, getattr(nn, "RMSNorm", nn.LayerNorm))
    names = set()
    for module_name, module in model.named_modules():
        # Custom norms (e.g. T5LayerNorm, *RMSNorm classes of newer backbones) are not nn.LayerNorm subclasses.
        is_norm = isinstance(module, norm_types) or type(module).__name__.lower().endswith(("norm", "layernorm"))
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias":
                names.add(full)
    return names


def apply_freezing(model: EncoderClassifier, freeze: str, freeze_layers: int) -> int:
    """Freeze the embeddings, the first ``freeze_layers`` layers, or the whole backbone; returns frozen parameters."""
    frozen: list[nn.Module] = []
    if freeze == "backbone":
        frozen = [model.backbone]
    elif freeze == "embeddings" or freeze_layers:
        frozen = [model.embeddings(), *model.encoder_layers()[:freeze_layers]]
    for module in frozen:
        module.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)


def parameter_learning_rates(model: EncoderClassifier, cfg: TrainConfig) -> dict[str, float]:
    """Per-parameter learning rates: the top encoder layer (and anything above it in the backbone) at lr, each layer
    below at ``layer_lr_decay`` times the one above, the embeddings last; pooling + head at ``head_learning_rate``."""
    depths = model.parameter_depths()
    num_layers = len(model.encoder_layers())
    head_lr = cfg.head_learning_rate or cfg.learning_rate
    return {
        name: head_lr
        if depth == num_layers + 2
        else cfg.learning_rate * cfg.layer_lr_decay ** max(0, num_layers - depth)
        for name, depth in depths.items()
    }


def build_optimizer(
    model: EncoderClassifier, cfg: TrainConfig, device: torch.device, fused: bool | None = None
) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only (frozen ones get no state), grouped by (weight decay, learning rate):
    no decay on biases and norms; the fused kernel on CUDA and CPU."""
    no_decay = no_decay_parameter_names(model)
    lrs = parameter_learning_rates(model, cfg)
    grouped: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            decay = 0.0 if name in no_decay else cfg.weight_decay
            grouped.setdefault((decay, lrs[name]), []).append(param)
    groups = [{"params": ps, "weight_decay": wd, "lr": lr} for (wd, lr), ps in grouped.items()]
    return torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        # One fused kernel instead of a dozen foreach passes: 4.5x faster on a 2-core CPU for MiniLM's 22M params.
        fused=device.type in ("cuda", "cpu") if fused is None else fused,
    )


def default_run_dir(cfg: TrainConfig) -> Path:
    """``<runs_root>/<dataset>/<model>/<timestamp>-seed<k>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return (
        Path(cfg.runs_root) / short_name(cfg.dataset) / short_name(cfg.model_name_or_path) / f"{stamp}-seed{cfg.seed}"
    )


def check_output_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to train into a folder that already holds a run, unless told to overwrite it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--output_dir {run_dir} is a file; choose a folder.")
    existing = [m for m in RUN_MARKERS if (run_dir / m).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"--output_dir {run_dir} already holds a run ({', '.join(existing)}); choose another folder "
            "or pass --overwrite_output_dir to replace its files."
        )


def max_model_length(tokenizer: Any, model_path: str) -> int:
    """The longest input the backbone accepts (tokenizer limit, else position embeddings)."""
    from transformers import AutoConfig

    limit = getattr(tokenizer, "model_max_length", None)
    if limit is not None and limit < 1_000_000:  # tokenizers without a limit report a huge sentinel
        return int(limit)
    return int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 512))


def backbone_num_layers(model_path: str) -> int:
    """Number of encoder layers from the backbone's config (BERT-style, DistilBERT and ModernBERT names)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    return int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", 0))


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


def pad_multiple_for(accelerator: Any, compiled: bool) -> int | None:
    """Batch widths: multiples of 32 under torch.compile (a bounded set of shapes to compile), of 8 for tensor cores
    under GPU mixed precision, else exact (on a CPU any padding is pure waste)."""
    if compiled:
        return 32
    return 8 if accelerator.device.type == "cuda" and accelerator.mixed_precision != "no" else None


def tune_cpu(accelerator: Any) -> None:
    """CPU settings: split the cores between the local processes instead of letting each use all of them, and
    bound oneDNN's cache of bf16 kernels (one per batch shape; length-grouped batches have many shapes)."""
    if accelerator.device.type != "cpu":
        return
    if accelerator.mixed_precision == "bf16":
        # Measured on MiniLM/emotion over 500 steps: peak RSS 2346 MB with the default capacity (1024), 1937 MB
        # with 64 (the fp32 recipe: 2034 MB), for 164 instead of 174 samples/s. oneDNN reads it at its first kernel.
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")
    if "OMP_NUM_THREADS" in os.environ or accelerator.num_processes == 1:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))


BEST_RECORD = "best.json"  # inside best_model/: the step, metric and validation scores of the state it holds


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

        atomic_write_dir(path, write)
    accelerator.wait_for_everyone()


def read_best_record(best_dir: Path) -> dict[str, Any] | None:
    """The ``best.json`` of a best_model/ folder, or None when the folder (or its record) is missing."""
    path = best_dir / BEST_RECORD
    return json.loads(path.read_text()) if path.is_file() else None


CHECKPOINT_PREFIX = "step_"


class TrainingError(RuntimeError):
    """The run cannot continue (non-finite loss); reported as one line, earlier outputs left intact."""


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag that the loop checks after each optimizer step."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
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

    def _handle(self, signum: int, frame: Any) -> None:
        # The first signal names the stop: Ctrl-C under `accelerate launch` is followed by the SIGTERM of the
        # launcher's death, and the exit code should still say 130.
        self.signal_name = self.signal_name or signal.Signals(signum).name

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


def stop_with_the_launcher() -> None:
    """Under ``accelerate launch`` with one process, turn the launcher's death into a SIGTERM for this process."""
    # accelerate's single-process launcher runs train.py as a child and forwards no signal: `kill <launcher pid>`,
    # a container stop or a scheduler's preemption would kill the launcher and leave this process training on,
    # orphaned, until something kills it without a checkpoint. The kernel's parent-death signal closes that gap.
    # torchrun's agent (several processes) forwards signals itself; a plain `python train.py` has no launcher.
    if not sys.platform.startswith("linux") or "TORCHELASTIC_RUN_ID" in os.environ:
        return
    parent = os.getppid()
    try:
        argv = Path(f"/proc/{parent}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return
    names = {Path(arg).name for arg in argv[:3]}
    if "accelerate.commands.launch" not in argv and not names & {"accelerate", "accelerate-launch"}:
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
    from accelerate.utils import DistributedType

    for engine, env in (("FSDP", "ACCELERATE_USE_FSDP"), ("DEEPSPEED", "ACCELERATE_USE_DEEPSPEED")):
        wanted = os.environ.get(env, "false").lower() in ("1", "true", "yes")
        if wanted and accelerator.distributed_type != DistributedType[engine]:
            raise UsageError(
                f"the accelerate config asks for {engine} but {accelerator.distributed_type.value} is in effect "
                f"(device {accelerator.device.type}, {accelerator.num_processes} processes); launch on GPUs with "
                f"that config, or use a config without {engine} (e.g. accelerate_configs/ddp_multi_gpu.yaml)."
            )


def check_engine_installed() -> None:
    """A DeepSpeed config without the deepspeed package is one line, not an ImportError deep in Accelerate."""
    wanted = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true", "yes")
    if wanted and importlib.util.find_spec("deepspeed") is None:
        raise UsageError(
            "the accelerate config asks for DEEPSPEED but the deepspeed package is not installed; "
            "pip install deepspeed, or use a config without DeepSpeed."
        )


def check_finite(grad_norm: torch.Tensor, accelerator: Any, policy: str, step: int) -> bool:
    """Whether to apply this optimizer step: False to skip a non-finite one, TrainingError to stop the run."""
    # The norm is all-reduced, so every rank sees the same value and decides the same. fp16's loss scaler handles
    # its own overflows (it skips the step and lowers the scale), so those are not errors.
    # DeepSpeed clips inside its own engine and returns no norm.
    if grad_norm is None or accelerator.mixed_precision == "fp16" or torch.isfinite(grad_norm):
        return True
    if policy == "stop":
        raise TrainingError(
            f"non-finite loss/gradient at optimizer step {step}; best_model/ and the checkpoints are intact. "
            "Lower --learning_rate or --max_grad_norm, check the data, or pass --nan_policy skip."
        )
    logger.warning("non-finite gradient at optimizer step %d: update skipped (--nan_policy skip)", step)
    return False


def format_metrics(metrics: dict[str, Any]) -> str:
    """``name=value`` pairs of the float metrics for the log (of each hierarchy level, only its macro-F1)."""
    shown = {k: v for k, v in metrics.items() if isinstance(v, float) and ("." not in k or k.endswith(".macro_f1"))}
    return " ".join(f"{k}={v:.4f}" for k, v in shown.items())


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / "meta.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def resolve_run_dir(cfg: TrainConfig) -> tuple[Path | None, Path | None]:
    """The run folder (None: a new default one) and the checkpoint to resume from, as the flags ask."""
    spec, output_dir = cfg.resume_from_checkpoint, Path(cfg.output_dir) if cfg.output_dir else None
    if spec is None:
        return output_dir, None
    if spec == "latest":
        run_dir = output_dir or read_latest_pointer(Path(cfg.runs_root))
        found = checkpoint_dirs(run_dir)
        if not found:
            raise UsageError(f"--resume_from_checkpoint latest: no checkpoint in {run_dir / 'checkpoints'}.")
        return run_dir, found[-1]
    checkpoint = Path(spec)
    if not (checkpoint / "meta.json").is_file():
        raise UsageError(f"--resume_from_checkpoint {spec}: not a checkpoint folder (no meta.json).")
    # A checkpoint belongs to the run folder it was written in (RUN/checkpoints/step_N): best_model/, metrics and
    # results continue there. A copied checkpoint elsewhere needs --output_dir to say where the run lives.
    owner = checkpoint.resolve().parent.parent if checkpoint.resolve().parent.name == "checkpoints" else None
    if owner is None and output_dir is None:
        raise UsageError(
            f"--resume_from_checkpoint {spec} is not inside a run's checkpoints/ folder; pass --output_dir RUN."
        )
    if owner is not None and output_dir is not None and output_dir.resolve() != owner:
        raise UsageError(
            f"--resume_from_checkpoint {spec} belongs to the run {owner}, not to --output_dir {output_dir}; "
            "drop --output_dir (the run continues in its own folder) or pass that run's folder."
        )
    return owner or output_dir, checkpoint


def link_tree(src: Path, dst: Path) -> None:
    """Copy a folder as hard links (no extra disk; the files are never modified in place), or plainly if needed."""
    shutil.copytree(src, dst, copy_function=_link_or_copy)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file, falling back to a copy across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def save_checkpoint(accelerator: Any, run_dir: Path, meta: dict[str, Any], keep: int | None) -> Path:
    """``accelerator.save_state``, meta.json and the current best_model/ (hard links) into a temporary folder,
    renamed when complete; prune old ones."""
    root = run_dir / "checkpoints"
    final = root / f"{CHECKPOINT_PREFIX}{meta['step']:06d}"
    tmp = root / f".{final.name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # every rank: model, optimizer, scheduler, its own RNG states
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # The best model as of this step travels with the checkpoint, so a resume restores the pair exactly even
        # when the run crashed after saving a newer best_model/ (or inside its swap).
        if (run_dir / "best_model").is_dir():
            link_tree(run_dir / "best_model", tmp / "best_model")
        atomic_write_json(tmp / "meta.json", meta)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        if keep is not None:
            existing = checkpoint_dirs(run_dir)
            protected = {f"{CHECKPOINT_PREFIX}{meta['best_step']:06d}"} if meta["best_step"] is not None else set()
            for old in existing[:-keep]:
                if old.name not in protected:
                    shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# Settings that never change what a run computes: a resume may change them. Every other setting (and the resolved
# data, model, process count and precision) must match the checkpoint's.
RESUME_FREE = frozenset(
    {
        "output_dir",
        "runs_root",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "report_to",
        "logging_steps",
        "checkpointing_steps",
        "save_total_limit",
        "nan_policy",
        "dataset",  # compared resolved, with the data's fingerprint, below
        "model_name_or_path",  # compared resolved
    }
)


def run_settings(cfg: TrainConfig, resolved: dict[str, Any], train_fingerprint: str) -> dict[str, Any]:
    """Everything that decides what a run computes, as JSON values (saved in each checkpoint's meta.json)."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUME_FREE}
    keys = ("dataset", "model_path", "num_processes", "mixed_precision", "split_sizes", "steps_per_epoch", "max_steps")
    settings |= {k: resolved[k] for k in keys} | {"train_data_fingerprint": train_fingerprint}
    return json.loads(json.dumps(settings))


def check_resume_settings(checkpoint: Path, meta: dict[str, Any], settings: dict[str, Any]) -> None:
    """Refuse a resume whose settings differ from the checkpoint's, naming each difference."""
    saved = meta.get("settings") or {k: meta[k] for k in ("steps_per_epoch", "max_steps")}
    changed = [k for k in sorted(set(saved) | set(settings)) if k in saved and saved[k] != settings.get(k)]
    if changed:
        shown = "; ".join(f"{k}: checkpoint {saved[k]!r:.60}, now {settings.get(k)!r:.60}" for k in changed)
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} was written with other settings ({shown}); resume with the same "
            "settings, data, number of processes and precision, or start a new run."
        )


def restore_best_model(run_dir: Path, checkpoint: Path, best_step: int | None) -> str | None:
    """Make run_dir/best_model/ the best state the checkpoint knows; returns what was done, for the log."""
    best_dir = run_dir / "best_model"
    record = read_best_record(best_dir)
    if (record or {}).get("step") == best_step and best_step is not None:
        return None
    # A newer best_model/ (saved after this checkpoint, then a crash) or none at all (a crash inside its swap):
    # either way the checkpoint's own copy is the state this resume continues from.
    for stale in (best_dir, best_dir.with_name(".best_model.tmp"), best_dir.with_name(".best_model.old")):
        shutil.rmtree(stale, ignore_errors=True)
    if best_step is None:
        return "removed a best_model/ written after the checkpoint (no evaluation before it)"
    if not (checkpoint / "best_model").is_dir():
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint}: best_model/ does not hold step {best_step}'s state and the "
            "checkpoint has no copy of it (written by an older version); start the run again."
        )
    link_tree(checkpoint / "best_model", best_dir)
    return f"restored best_model/ of step {best_step} from the checkpoint"


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl records after ``step`` (logged by a run that went on past its last checkpoint)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        if len(kept) != len(lines):
            atomic_write_text(path, "".join(kept))


def train_batches(
    train_dl: Any, sampler: Any, accelerator: Any, start_step: int, steps_per_epoch: int, num_epochs: int
) -> Iterator[tuple[dict[str, torch.Tensor], float]]:
    """Micro-batches from ``start_step`` to the end of the last epoch, with the factor that makes the loss of an
    epoch's last, shorter accumulation group weigh like a full group's."""
    accumulation, per_epoch = accelerator.gradient_accumulation_steps, len(train_dl)
    start_epoch = start_step // steps_per_epoch
    for epoch in range(start_epoch, num_epochs):
        # Set the epoch on the prepared loader: with one process accelerate keeps this sampler and, at each pass,
        # sets its own pass counter on it, which restarts at 0 in a resumed process.
        train_dl.set_epoch(epoch)
        sampler.set_epoch(epoch)
        skip = (start_step % steps_per_epoch) * accumulation if epoch == start_epoch else 0
        loader = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        for index, batch in enumerate(loader, start=skip):
            batch.pop("idx")
            # accelerate divides every micro-batch's loss by the accumulation count; a group cut short by the end
            # of the epoch has fewer micro-batches, so scale them up to weigh each example as in a full group.
            group = min(accumulation, per_epoch - index // accumulation * accumulation)
            yield batch, accumulation / group


def release_training_state(accelerator: Any, model: nn.Module, optimizer: Any, finished: bool) -> None:
    """Drop accelerate's references to the (DDP-wrapped) model and optimizer before the process group goes away."""
    # If the DDP wrapper outlived end_training's process-group teardown, its reducer's destructor would deadlock on
    # the destroyed gloo group when main() returns (seen with 2 CPU processes).
    accelerator.free_memory(model, optimizer)
    gc.collect()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, keep the best validation state, reload it and score validation and test; returns results.json."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, set_seed
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    cfg = parse_config(argv, TrainConfig, __doc__)
    stop_with_the_launcher()
    trackers = resolve_trackers(cfg.report_to)
    check_engine_installed()
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        dynamo_backend="inductor" if cfg.torch_compile else None,
        log_with=trackers or None,
        project_dir=cfg.output_dir,
    )
    hf_logging.disable_progress_bar()
    check_distributed_engine(accelerator)
    tune_cpu(accelerator)

    # ---- run directory: one name for all ranks, never clobber another run -------------------------------------
    run_dir, resume_dir = resolve_run_dir(cfg)
    if run_dir is None:
        run_dir = [default_run_dir(cfg)]
        broadcast_object_list(run_dir)  # timestamps differ between ranks; rank 0's name wins
        run_dir = run_dir[0]
    if resume_dir is None:
        check_output_dir(run_dir, cfg.overwrite_output_dir)
    setup_logging(None, accelerator.is_main_process)
    set_seed(cfg.seed)

    # ---- data: every bad-input check happens here, before a model is built --------------------------------------
    model_path = resolve_model_path(cfg.model_name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except (OSError, ValueError) as err:
        raise UsageError(
            f"--model_name_or_path {cfg.model_name_or_path}: cannot load its tokenizer ({str(err).splitlines()[0]}). "
            "Pass a local model directory or a hub id reachable from this machine."
        ) from err
    if cfg.max_seq_length > (limit := max_model_length(tokenizer, model_path)):
        raise UsageError(
            f"--max_seq_length {cfg.max_seq_length} exceeds the model's limit of {limit}; use at most {limit}."
        )
    if cfg.freeze_layers > (num_layers := backbone_num_layers(model_path)):
        raise UsageError(f"--freeze_layers {cfg.freeze_layers} exceeds the backbone's {num_layers} layers.")
    dataset = str(Path(cfg.dataset).resolve()) if Path(cfg.dataset).exists() else cfg.dataset
    data = prepare_splits(
        dataset,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        text_pair_column=cfg.text_pair_column,
        validation_split_ratio=cfg.validation_split_ratio,
        seed=cfg.seed,
        max_train_samples=cfg.max_train_samples,
        max_eval_samples=cfg.max_eval_samples,
        empty_text=cfg.empty_text,
        label_columns=cfg.label_columns,
        multi_label=cfg.multi_label,
        teacher_column=cfg.teacher_column,
    )
    label_names = data.label_names
    stale = [run_dir / n for n in ("results.json", "metrics.jsonl", "checkpoints", "best_model")]
    stale = stale if resume_dir is None else []
    stale = [p for p in stale if p.exists()]  # only non-empty with --overwrite_output_dir (checked above)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        for path in stale:  # an old results.json or checkpoint would pass for this run's if it stopped early
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    accelerator.wait_for_everyone()
    setup_logging(run_dir / "train.log", accelerator.is_main_process)
    if stale:
        logger.info("--overwrite_output_dir: removed the previous run's %s", ", ".join(p.name for p in stale))
    for note in data.notes:
        logger.info(note)
    with accelerator.main_process_first():  # rank 0 fills the tokenization cache, the others read it
        tokenized = tokenize_splits(data.splits, tokenizer, cfg.max_seq_length)

    pad_multiple = pad_multiple_for(accelerator, cfg.torch_compile)
    collate = PadCollator(tokenizer.pad_token_id, pad_multiple)
    train_dl = train_dataloader(
        tokenized["train"], collate, cfg.per_device_train_batch_size, cfg.seed, cfg.group_by_length
    )
    train_sampler = train_dl.batch_sampler
    eval_dls = {
        split: eval_dataloader(tokenized[split], collate, cfg.per_device_eval_batch_size)
        for split in ("validation", "test")
        if split in tokenized
    }

    # ---- model, optimizer, schedule ---------------------------------------------------------------------------
    spec = data.spec
    hierarchy = (
        {
            "levels": spec.levels,
            "level_parents": spec.parents,
            "level_loss_weights": cfg.level_loss_weights,
            "consistent_decoding": cfg.consistent_decoding,
        }
        if spec.problem_type == "hierarchical_classification"
        else {}
    )
    model = EncoderClassifier.from_backbone(
        model_path,
        dict(enumerate(label_names)),
        cfg.pooling,
        cfg.head,
        cfg.classifier_dropout,
        problem_type=spec.problem_type,
        **hierarchy,
    )
    frozen = apply_freezing(model, cfg.freeze, cfg.freeze_layers)
    optimizer = build_optimizer(model, cfg, accelerator.device)
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    eval_dls = {split: accelerator.prepare(dl) for split, dl in eval_dls.items()}
    # Step counts come from the prepared (per-process) loader. The scheduler is stepped by hand once per optimizer
    # step: accelerate's prepared scheduler would step num_processes times, for schedules sized before sharding.
    steps_per_epoch = math.ceil(len(train_dl) / cfg.gradient_accumulation_steps)
    max_steps = cfg.max_steps or math.ceil(cfg.num_train_epochs * steps_per_epoch)
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    warmup_steps = cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * max_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps, max_steps)
    accelerator.register_for_checkpointing(scheduler)

    resolved = {
        "dataset": dataset,
        "model_path": model_path,
        "label_names": label_names,
        "num_labels": len(label_names),
        "problem_type": spec.problem_type,
        "levels": spec.levels,
        "split_sizes": {split: len(ds) for split, ds in data.splits.items()},
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "pad_to_multiple_of": pad_multiple,
        "effective_batch_size": cfg.per_device_train_batch_size
        * cfg.gradient_accumulation_steps
        * accelerator.num_processes,
        "steps_per_epoch": steps_per_epoch,
        "max_steps": max_steps,
        "num_epochs": num_epochs,
        "warmup_steps": warmup_steps,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "frozen_parameters": frozen,
    }
    settings = run_settings(cfg, resolved, tokenized["train"]._fingerprint)

    # ---- state that a checkpoint carries beyond accelerate's own (model, optimizer, scheduler, RNG) ------------
    # ``window`` is the logging window in progress (summed over ranks), so a resumed run logs the same averages.
    state: dict[str, Any] = {"step": 0, "best_score": None, "best_step": None, "best_metrics": None, "bad_evals": 0}
    state |= {
        "train_samples": 0,
        "train_runtime_s": 0.0,
        "window": {"loss": 0.0, "micro": 0, "samples": 0, "tokens": 0},
    }
    if resume_dir is not None:
        meta = json.loads((resume_dir / "meta.json").read_text())
        check_resume_settings(resume_dir, meta, settings)
        accelerator.load_state(str(resume_dir))
        state |= {k: meta[k] for k in state if k in meta}
        if accelerator.is_main_process:
            done = restore_best_model(run_dir, resume_dir, state["best_step"])
            if done:
                logger.info("resume: %s", done)
            truncate_metrics(run_dir / "metrics.jsonl", state["step"])
        accelerator.wait_for_everyone()
        logger.info("resumed from %s at step %d", resume_dir, state["step"])
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "config.json", {"user_config": dataclasses.asdict(cfg), "resolved": resolved})
        write_latest_pointer(Path(cfg.runs_root), run_dir)
    if trackers:
        accelerator.project_configuration.set_directories(str(run_dir))  # tensorboard logs land in the run dir
        run_name = f"{short_name(cfg.dataset)}/{short_name(cfg.model_name_or_path)}/{run_dir.name}"
        scalars = {k: v for k, v in dataclasses.asdict(cfg).items() if isinstance(v, int | float | str | bool)}
        accelerator.init_trackers(
            "encoder-classify",
            config=scalars,
            init_kwargs={"wandb": {"name": run_name}, "swanlab": {"experiment_name": run_name}},
        )
    logger.info("run directory: %s", run_dir)
    logger.info(
        "%d train / %d validation / %s test rows, %d labels; %d processes, mixed precision %s, %d optimizer steps "
        "(%d per epoch, %d warmup), effective batch %d",
        len(data.splits["train"]),
        len(data.splits["validation"]),
        len(data.splits["test"]) if "test" in data.splits else "no",
        len(label_names),
        accelerator.num_processes,
        accelerator.mixed_precision,
        max_steps,
        steps_per_epoch,
        warmup_steps,
        resolved["effective_batch_size"],
    )

    def log_event(record: dict[str, Any]) -> None:
        """One metrics.jsonl line and one tracker entry (a no-op without trackers)."""
        accelerator.log({k: v for k, v in record.items() if isinstance(v, int | float)}, step=record["step"])
        if accelerator.is_main_process:
            append_jsonl(run_dir / "metrics.jsonl", record)

    # The logging window lives in tensors on the device (no host sync per micro-batch); the part carried over from a
    # checkpoint is added once, on the main process, so the sums over ranks stay right.
    carried = state["window"] if accelerator.is_main_process else {"loss": 0.0, "samples": 0, "tokens": 0}
    window = torch.tensor([carried["loss"], carried["samples"], carried["tokens"]], device=accelerator.device)
    window_micro, window_start = state["window"]["micro"], time.perf_counter()

    def window_totals() -> tuple[float, int, int]:
        """(loss summed over micro-batches, averaged over ranks; samples; real tokens) of the current window."""
        loss_sum, samples, tokens = accelerator.reduce(window.clone(), "sum").tolist()
        return loss_sum / accelerator.num_processes, int(samples), int(tokens)

    def flush_window(step: int, grad_norm: Any) -> None:
        """Log the window's mean loss, lr, grad norm and throughput, then start a new window."""
        nonlocal window_micro, window_start
        loss_sum, samples, tokens = window_totals()
        elapsed = time.perf_counter() - window_start
        record = {
            "step": step,
            "epoch": round(step / steps_per_epoch, 4),
            "loss": loss_sum / window_micro,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm) if grad_norm is not None else None,
            "samples_per_s": samples / elapsed,
            "tokens_per_s": tokens / elapsed,
        }
        log_event(record)
        progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        state["train_samples"] += samples
        window.zero_()
        window_micro, window_start = 0, time.perf_counter()

    def checkpoint() -> Path:
        """Write a resumable checkpoint of the current step (with the open logging window and the clock)."""
        loss_sum, samples, tokens = window_totals()
        state["window"] = {"loss": loss_sum, "micro": window_micro, "samples": samples, "tokens": tokens}
        state["train_runtime_s"] = runtime_before + time.perf_counter() - train_start
        meta = {**state, "epoch": state["step"] / steps_per_epoch, "settings": settings}
        meta |= {"steps_per_epoch": steps_per_epoch, "max_steps": max_steps}
        path = save_checkpoint(accelerator, run_dir, meta, cfg.save_total_limit)
        logger.info("checkpoint written: %s", path)
        return path

    # ---- the loop: step -> log -> maybe eval -> maybe keep best -> maybe checkpoint -> maybe stop ---------------
    from tqdm.auto import tqdm

    metric, patience = cfg.metric_for_best_model, cfg.early_stopping_patience
    runtime_before, train_start = state["train_runtime_s"], time.perf_counter()
    grad_norm, apply_update = None, True
    last_step = state["step"] >= max_steps
    # A run resumed from the checkpoint of the step it stopped early at stays stopped.
    early_stop = bool(patience and state["bad_evals"] >= patience)
    checkpointed_step, stopper, stopped = state["step"] if resume_dir else None, StopRequested(), False
    progress = tqdm(total=max_steps, initial=state["step"], desc="train", disable=not accelerator.is_local_main_process)
    batches = train_batches(train_dl, train_sampler, accelerator, state["step"], steps_per_epoch, num_epochs)
    model.train()
    with stopper, progress:
        for batch, loss_scale in batches if not (last_step or early_stop) else ():
            teacher, teacher_mask = batch.pop("teacher", None), batch.pop("teacher_mask", None)
            with accelerator.accumulate(model):
                if teacher is None:
                    loss = model(**batch).loss
                else:
                    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
                    loss = distillation_loss(
                        logits, batch["labels"], teacher, teacher_mask, cfg.distill_alpha, cfg.distill_temperature
                    )
                accelerator.backward(loss * loss_scale)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
                    apply_update = check_finite(grad_norm, accelerator, cfg.nan_policy, state["step"] + 1)
                if apply_update:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            # Examples are rows of the batch (not label entries: a multi-label row has one per label).
            window[0] += loss.detach().float()
            window[1] += len(batch["input_ids"])
            window[2] += batch["attention_mask"].sum()
            window_micro += 1
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:  # fp16 overflow steps leave the schedule where it was
                scheduler.step()
            state["step"] += 1
            step = state["step"]
            progress.update(1)
            last_step = step >= max_steps

            if step % cfg.logging_steps == 0 or last_step:
                flush_window(step, grad_norm)

            epoch_end = step % steps_per_epoch == 0
            if (step % cfg.eval_steps == 0 if cfg.eval_steps else epoch_end) or last_step:
                val = evaluate(model, eval_dls["validation"], accelerator, label_names)
                model.train()
                summary = {k: v for k, v in val.items() if k != "per_class"}
                log_event(
                    {
                        "step": step,
                        "epoch": round(step / steps_per_epoch, 4),
                        **{f"eval_{k}": v for k, v in summary.items()},
                    }
                )
                logger.info("step %d: validation %s", step, format_metrics(summary))
                # Every rank holds the same gathered metrics, so every rank takes the same branch.
                if is_better(metric, val[metric], state["best_score"]):
                    state.update(best_score=val[metric], best_step=step, best_metrics=val, bad_evals=0)
                    record = {"step": step, "metric": metric, "score": val[metric], "validation": val}
                    save_best_model(accelerator, model, tokenizer, run_dir / "best_model", record)
                    logger.info("new best %s %.4f at step %d: saved best_model/", metric, val[metric], step)
                else:
                    state["bad_evals"] += 1
                    early_stop = bool(patience and state["bad_evals"] >= patience)
                    if early_stop:
                        logger.info("early stopping: no %s improvement in %d evaluations", metric, patience)
                        if window_micro:  # the steps since the last log line are logged too
                            flush_window(step, grad_norm)

            every = cfg.checkpointing_steps
            if every and not last_step and (epoch_end if every == "epoch" else step % int(every) == 0):
                checkpointed_step = step
                checkpoint()
            if stopper.any_rank(accelerator):
                if checkpointed_step != step:
                    checkpoint()
                logger.error(
                    "%s received: stopped after step %d with a checkpoint; "
                    "continue with --resume_from_checkpoint latest",
                    stopper.signal_name or "a stop signal (on another rank)",
                    step,
                )
                stopped = True
                break
            if last_step or early_stop:
                break
    batches.close()
    train_runtime = runtime_before + time.perf_counter() - train_start

    # ---- stopped by a signal: free the process group cleanly, then exit with the signal's code ---------------------
    accelerator.wait_for_everyone()
    finished = not stopped
    release_training_state(accelerator, model, optimizer, finished=finished)
    del model, optimizer
    gc.collect()
    if not finished:
        accelerator.end_training()
        raise SystemExit(stopper.exit_code)

    # ---- reload the best state from disk and score it -------------------------------------------------------------
    best = EncoderClassifier.from_pretrained(run_dir / "best_model", dtype=torch.float32)
    best = accelerator.prepare_model(best, evaluation_mode=True)
    outputs = {split: predict(best, dl, accelerator) for split, dl in eval_dls.items()}
    best_config = accelerator.unwrap_model(best).config
    tuned = spec.problem_type == "multi_label_classification"
    if tuned:
        # Per-label thresholds tuned on validation and saved in best_model/config.json, so evaluate.py and
        # pipelines decide the same way; validation scores at these thresholds are optimistic by construction.
        best_config.thresholds = tune_thresholds(outputs["validation"]["labels"], outputs["validation"]["logits"])
        if accelerator.is_main_process:
            atomic_write_text(run_dir / "best_model" / "config.json", best_config.to_json_string())
        logger.info("thresholds tuned on validation: %s", dict(zip(label_names, best_config.thresholds, strict=True)))
    reloaded = {
        split: compute_metrics(out["labels"], out["logits"], label_names, best_config) for split, out in outputs.items()
    }
    if not tuned and reloaded["validation"][metric] != state["best_metrics"][metric]:
        logger.warning(
            "reloaded best_model/ scores validation %s %.6f, recorded %.6f at step %d",
            metric,
            reloaded["validation"][metric],
            state["best_metrics"][metric],
            state["best_step"],
        )
    results = {
        "best_step": state["best_step"],
        "metric": metric,
        "validation": reloaded["validation"] if tuned else state["best_metrics"],
        "test": reloaded.get("test"),
        "validation_reloaded": reloaded["validation"],
        **({"validation_at_best_step": state["best_metrics"], "thresholds": best_config.thresholds} if tuned else {}),
        "global_step": state["step"],
        "stopped_early": early_stop,
        "train_runtime_s": train_runtime,
        "train_samples": state["train_samples"],
        "train_samples_per_s": state["train_samples"] / train_runtime,
    }
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "results.json", results)
    test_text = f"test {metric} {results['test'][metric]:.4f}" if results["test"] else "no test split"
    logger.info(
        "done: best validation %s %.4f at step %d; %s; results in %s",
        metric,
        state["best_score"],
        state["best_step"],
        test_text,
        run_dir / "results.json",
    )
    accelerator.end_training()
    return results


if __name__ == "__main__":
    run_cli(main)
