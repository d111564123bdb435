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
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from config import TrainConfig, parse_config
from data import PadCollator, eval_dataloader, prepare_splits, tokenize_splits, train_dataloader
from evaluate import evaluate, is_better
from model import EncoderClassifier
from utils import (
    UsageError,
    append_jsonl,
    atomic_write_dir,
    atomic_write_json,
    logger,
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


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with weight decay on weight matrices only; the fused kernel on CUDA."""
    no_decay = no_decay_parameter_names(model)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in params if n not in no_decay], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in params if n in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_epsilon,
        fused=device.type == "cuda",
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


def save_best_model(accelerator: Any, model: nn.Module, tokenizer: Any, path: Path) -> None:
    """Save the model (state dict gathered on every rank, FSDP/DeepSpeed-safe) and tokenizer atomically."""
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)

        def write(tmp: Path) -> None:
            unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

        atomic_write_dir(path, write)
    accelerator.wait_for_everyone()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, keep the best validation state, reload it and score validation and test; returns results.json."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, set_seed
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    cfg = parse_config(argv, TrainConfig, __doc__)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    hf_logging.disable_progress_bar()

    # ---- run directory: one name for all ranks, never clobber another run -------------------------------------
    run_dir = [Path(cfg.output_dir) if cfg.output_dir else default_run_dir(cfg)]
    broadcast_object_list(run_dir)  # timestamps differ between ranks; rank 0's name wins
    run_dir = run_dir[0]
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
    )
    label_names = data.label_names
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # only reached with --overwrite_output_dir
    accelerator.wait_for_everyone()
    setup_logging(run_dir / "train.log", accelerator.is_main_process)
    for note in data.notes:
        logger.info(note)
    with accelerator.main_process_first():  # rank 0 fills the tokenization cache, the others read it
        tokenized = tokenize_splits(data.splits, tokenizer, cfg.max_seq_length)

    # Multiples of 8 let tensor cores run at full speed under mixed precision; on CPU it would be pure waste.
    pad_multiple = 8 if accelerator.device.type == "cuda" and accelerator.mixed_precision != "no" else None
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
    model = EncoderClassifier.from_backbone(
        model_path, dict(enumerate(label_names)), cfg.pooling, cfg.head, cfg.classifier_dropout
    )
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
    }
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "config.json", {"user_config": dataclasses.asdict(cfg), "resolved": resolved})
        write_latest_pointer(Path(cfg.runs_root), run_dir)
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

    # ---- the loop: step -> log -> maybe eval -> maybe keep best -> maybe stop ---------------------------------
    from tqdm.auto import tqdm

    metric = cfg.metric_for_best_model
    global_step, best_score, best_step, best_metrics, bad_evals = 0, None, None, None, 0
    running_loss, running_micro = torch.zeros((), device=accelerator.device), 0
    window_samples, window_tokens, window_start = 0, torch.zeros((), device=accelerator.device), time.perf_counter()
    train_start = time.perf_counter()
    grad_norm = torch.zeros(())
    stop = False
    progress = tqdm(total=max_steps, desc="train", disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    for epoch in range(num_epochs):
        train_sampler.set_epoch(epoch)
        model.train()
        for batch in train_dl:
            batch.pop("idx")
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            running_loss += loss.detach()
            running_micro += 1
            window_samples += batch["labels"].numel()
            window_tokens += batch["attention_mask"].sum()
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:  # fp16 overflow steps leave the schedule where it was
                scheduler.step()
            global_step += 1
            progress.update(1)
            last_step = global_step >= max_steps

            if global_step % cfg.logging_steps == 0 or last_step:
                elapsed = time.perf_counter() - window_start
                record = {
                    "step": global_step,
                    "epoch": round(global_step / steps_per_epoch, 4),
                    "loss": accelerator.reduce(running_loss / running_micro, "mean").item(),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": float(grad_norm),
                    "samples_per_s": window_samples * accelerator.num_processes / elapsed,
                    "tokens_per_s": accelerator.reduce(window_tokens, "sum").item() / elapsed,
                }
                log_event(record)
                progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
                running_loss.zero_()
                running_micro, window_samples, window_start = 0, 0, time.perf_counter()
                window_tokens.zero_()

            epoch_end = global_step % steps_per_epoch == 0
            if (global_step % cfg.eval_steps == 0 if cfg.eval_steps else epoch_end) or last_step:
                val = evaluate(model, eval_dls["validation"], accelerator, label_names)
                model.train()
                summary = {k: v for k, v in val.items() if k != "per_class"}
                log_event(
                    {
                        "step": global_step,
                        "epoch": round(global_step / steps_per_epoch, 4),
                        **{f"eval_{k}": v for k, v in summary.items()},
                    }
                )
                logger.info(
                    "step %d: validation %s",
                    global_step,
                    " ".join(f"{k}={v:.4f}" for k, v in summary.items() if k != "num_samples"),
                )
                # Every rank holds the same gathered metrics, so every rank takes the same branch.
                if is_better(metric, val[metric], best_score):
                    best_score, best_step, best_metrics, bad_evals = val[metric], global_step, val, 0
                    save_best_model(accelerator, model, tokenizer, run_dir / "best_model")
                    logger.info("new best %s %.4f at step %d: saved best_model/", metric, best_score, best_step)
                else:
                    bad_evals += 1
                    if cfg.early_stopping_patience and bad_evals >= cfg.early_stopping_patience:
                        logger.info("early stopping: no %s improvement in %d evaluations", metric, bad_evals)
                        stop = True
            if last_step or stop:
                break
        if last_step or stop:
            break
    progress.close()
    train_runtime = time.perf_counter() - train_start

    # ---- reload the best state from disk and score it -------------------------------------------------------------
    accelerator.wait_for_everyone()
    accelerator.free_memory(model, optimizer)
    best = accelerator.prepare_model(EncoderClassifier.from_pretrained(run_dir / "best_model"), evaluation_mode=True)
    reloaded = {split: evaluate(best, dl, accelerator, label_names) for split, dl in eval_dls.items()}
    if reloaded["validation"][metric] != best_metrics[metric]:
        logger.warning(
            "reloaded best_model/ scores validation %s %.6f, recorded %.6f at step %d",
            metric,
            reloaded["validation"][metric],
            best_metrics[metric],
            best_step,
        )
    results = {
        "best_step": best_step,
        "metric": metric,
        "validation": best_metrics,
        "test": reloaded.get("test"),
        "validation_reloaded": reloaded["validation"],
        "global_step": global_step,
        "stopped_early": stop,
        "train_runtime_s": train_runtime,
        "train_samples_per_s": global_step * resolved["effective_batch_size"] / train_runtime,
    }
    if accelerator.is_main_process:
        atomic_write_json(run_dir / "results.json", results)
    test_text = f"test {metric} {results['test'][metric]:.4f}" if results["test"] else "no test split"
    logger.info(
        "done: best validation %s %.4f at step %d; %s; results in %s",
        metric,
        best_score,
        best_step,
        test_text,
        run_dir / "results.json",
    )
    accelerator.end_training()
    return results


if __name__ == "__main__":
    run_cli(main)
