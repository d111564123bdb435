"""Training and evaluation throughput of this project's recipe, optionally against the common recipe, alternated.

    python scripts/benchmark.py --dataset ../shared/data/emotion                 # this project's recipe
    python scripts/benchmark.py --dataset ../shared/data/emotion --baseline      # A/B against the common recipe
    python scripts/benchmark.py --dataset ../shared/data/sst2 --against trainer  # whole runs vs the HF Trainer

``--against trainer`` times whole runs launched as users launch them: ``accelerate launch train.py`` (bf16 where the
device has it) against the HF Trainer at its best settings (scripts/trainer_recipe.py --recipe best: bf16,
group_by_length, fused AdamW, the same evaluation batch size), each in a fresh process, alternated for --rounds,
on the same rows and hyper-parameters; it prints the ratio of median wall times and both test macro-F1.

"ours": length-grouped training batches, length-sorted evaluation batches (--per_device_eval_batch_size),
bf16 autocast where the hardware has it (--mixed_precision auto). "baseline": the common recipe of the HF
`run_glue_no_trainer` example: random batches with dynamic padding, fp32, evaluation in dataset order at the
training batch size. Both run through the same data, model and optimizer code. Each measurement runs in a fresh
worker process (so peak memory is per recipe); with --baseline the workers alternate ours, baseline, ours, ...
for --rounds rounds and the medians are compared. The last stdout line is JSON: the keys of "ours" at top level,
plus "baseline" and "speedup" with --baseline.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import DEFAULT_MODEL, TrainConfig, option, parse_config  # noqa: E402

DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "emotion")


@dataclass
class BenchConfig:
    """Benchmark settings; the data/model/batch flags mean what they mean for train.py."""

    dataset: str = option(DEFAULT_DATA, "Dataset (as train.py's --dataset).")
    model_name_or_path: str = option(DEFAULT_MODEL, "Encoder (as train.py's --model_name_or_path).")
    max_train_samples: int = option(4096, "Training rows to draw batches from.")
    max_eval_samples: int = option(1000, "Validation rows for the evaluation pass and val_macro_f1.")
    per_device_train_batch_size: int = option(32, "Training batch size.")
    per_device_eval_batch_size: int = option(128, "Evaluation batch size of this project's recipe.")
    max_seq_length: int = option(128, "Truncation length.")
    train_steps: int = option(40, "Timed training steps (after --untimed_steps warm-up steps).")
    untimed_steps: int = option(3, "Warm-up steps excluded from the timing (allocator, kernels, compile).")
    learning_rate: float = option(5e-5, "AdamW learning rate (linear decay over the steps run).")
    mixed_precision: str = option("auto", "no, bf16, fp16, or auto (bf16 where the CPU/GPU supports it).")
    torch_compile: bool = option(False, "torch.compile the model in this project's recipe.")
    baseline: bool = option(False, "Also run the common recipe, alternating with this one, and print the speed-ups.")
    against: str | None = option(
        None, "trainer: whole runs of the README command against the HF Trainer at its best settings.", ("trainer",)
    )
    label_column: str = option("label", "--against trainer: the label column (as train.py's).")
    text_column: str = option("text", "--against trainer: the text column (as train.py's).")
    text_pair_column: str | None = option(None, "--against trainer: the second text column of a pair task.")
    num_train_epochs: float = option(2.0, "--against trainer: epochs of each whole run.")
    output_dir: str = option("outputs/benchmark_trainer", "--against trainer: where the runs are written.")
    rounds: int = option(2, "Alternations of ours/baseline with --baseline.")
    peak_tflops: float | None = option(None, "Peak TFLOP/s for MFU (default: measured with a large matmul).")
    seed: int = option(42, "Seed for the model head, batch order and dropout.")
    worker: str | None = option(None, "Internal: run one measurement of 'ours' or 'baseline' in this process.")

    def validate(self) -> None:
        """Check choices."""
        from config import ConfigError

        if self.mixed_precision not in ("auto", "no", "bf16", "fp16"):
            raise ConfigError("--mixed_precision must be auto, no, bf16 or fp16.")
        if self.worker not in (None, "ours", "baseline"):
            raise ConfigError("--worker must be ours or baseline.")


def auto_precision() -> str:
    """bf16 where it is fast: CUDA with bf16 support, or a CPU with AMX/AVX512-BF16; else fp32."""
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "no"


def measured_peak_tflops(device: Any, dtype: Any) -> float:
    """Dense matmul throughput of this device in ``dtype``: the denominator of MFU when none is given."""
    import torch

    n = 4096 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    reps = 50 if device.type == "cuda" else 10
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def run_worker(cfg: BenchConfig) -> dict[str, Any]:
    """One measurement of one recipe in this process: timed training steps, one evaluation pass, val macro-F1."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup
    from transformers.utils import logging as hf_logging

    from data import (
        PadCollator,
        column_values,
        eval_dataloader,
        load_splits,
        padding_ratio,
        tokenize_splits,
        train_dataloader,
    )
    from evaluate import compute_metrics, predict
    from model import EncoderClassifier, encoder_folder
    from train import clip_gradients, step_clipped
    from utils import pad_multiple_for, resolve_model_path, tune_cpu

    hf_logging.disable_progress_bar()
    ours = cfg.worker == "ours"
    precision = (auto_precision() if cfg.mixed_precision == "auto" else cfg.mixed_precision) if ours else "no"
    compiled = ours and cfg.torch_compile
    accelerator = Accelerator(mixed_precision=precision, dynamo_backend="inductor" if compiled else None)
    if ours:
        tune_cpu(accelerator)
    set_seed(cfg.seed)
    model_path = resolve_model_path(cfg.model_name_or_path)
    # An older sentence-transformers folder keeps its tokenizer in 0_Transformer/ (from_backbone reads it there too).
    tokenizer = AutoTokenizer.from_pretrained(encoder_folder(model_path))
    data = load_splits(
        TrainConfig(
            dataset=cfg.dataset,
            seed=cfg.seed,
            max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples,
        )
    )
    tokenized = tokenize_splits({k: v for k, v in data.splits.items() if k != "test"}, tokenizer, cfg.max_seq_length)
    train_ds, val_ds = tokenized["train"], tokenized["validation"]
    collate = PadCollator(tokenizer.pad_token_id, pad_multiple_for(accelerator, compiled) if ours else None)
    batch_size = cfg.per_device_train_batch_size
    train_dl = train_dataloader(train_ds, collate, batch_size, cfg.seed, group_by_length=ours)
    sampler = train_dl.batch_sampler
    if ours:
        eval_dl = eval_dataloader(val_ds, collate, cfg.per_device_eval_batch_size)
    else:
        eval_dl = DataLoader(val_ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    model = EncoderClassifier.from_backbone(model_path, dict(enumerate(data.label_names)), pooling="auto")
    # The loop's optimizer: the model's own parameter groups, AdamW fused on CUDA/CPU for ours; the common recipe's
    # torch.optim.AdamW runs its default multi-tensor (foreach) implementation.
    defaults = TrainConfig()
    groups = model.parameter_groups(cfg.learning_rate, defaults.weight_decay)
    optimizer = torch.optim.AdamW(
        groups,
        lr=cfg.learning_rate,
        betas=(defaults.adam_beta1, defaults.adam_beta2),
        eps=defaults.adam_epsilon,
        fused=accelerator.device.type in ("cuda", "cpu") if ours else False,
    )
    total_steps = cfg.untimed_steps + cfg.train_steps
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, total_steps)
    model, optimizer, train_dl, eval_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl)

    def batches() -> Iterator[dict[str, Any]]:
        """Training batches across as many epochs as the step budget needs."""
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            yield from train_dl
            epoch += 1

    lengths = column_values(train_ds, "length")
    used_batches, samples, real_tokens, padded_tokens = [], 0, 0, 0
    model.train()
    sync = torch.cuda.synchronize if accelerator.device.type == "cuda" else (lambda: None)
    start = None
    for step, batch in enumerate(batches()):
        if step == cfg.untimed_steps:
            sync()
            start = time.perf_counter()
        if step == total_steps:
            break
        idx = batch.pop("idx")
        loss = model(**batch).loss
        accelerator.backward(loss)
        # train.py's clipping: folded into the fused step for ours, torch's own for the baseline's foreach AdamW.
        _, grad_scale = clip_gradients(accelerator, model, optimizer, 1.0)
        step_clipped(optimizer, grad_scale)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= cfg.untimed_steps:
            used_batches.append(idx.tolist())
            samples += len(idx)
            real_tokens += int(batch["attention_mask"].sum())
            padded_tokens += batch["input_ids"].numel()
    loss.item()
    sync()
    train_time = time.perf_counter() - start

    # One untimed pass first, as in training where every evaluation after the first meets the same batch shapes
    # (oneDNN and cuBLAS pick kernels per shape on first sight); both recipes get the same treatment.
    predict(model, eval_dl, accelerator)
    sync()
    eval_start = time.perf_counter()
    out = predict(model, eval_dl, accelerator)
    sync()
    eval_time = time.perf_counter() - eval_start
    metrics = compute_metrics(out["labels"], out["logits"], data.label_names)

    unwrapped = accelerator.unwrap_model(model)
    embedding_params = sum(p.numel() for n, p in unwrapped.named_parameters() if "embeddings" in n)
    flops_per_token = 6 * (sum(p.numel() for p in unwrapped.parameters()) - embedding_params)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    peak = cfg.peak_tflops or measured_peak_tflops(accelerator.device, dtype)
    result = {
        "recipe": cfg.worker,
        "mixed_precision": precision,
        "device": str(accelerator.device),
        "train_samples_per_s": samples / train_time,
        "train_tokens_per_s": real_tokens / train_time,
        "padding_ratio": padded_tokens / real_tokens,
        "epoch_padding_ratio": padding_ratio(lengths, sampler.batches()),
        "eval_samples_per_s": metrics["num_samples"] / eval_time,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "mfu": flops_per_token * real_tokens / train_time / (peak * 1e12),
        "peak_tflops": peak,
        "val_macro_f1": metrics["macro_f1"],
        "val_samples": metrics["num_samples"],
        "train_steps": cfg.train_steps,
    }
    if accelerator.device.type == "cuda":
        result["peak_gpu_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def spawn(cfg: BenchConfig, recipe: str) -> dict[str, Any]:
    """Run one worker process and return its JSON line."""
    args = [sys.executable, __file__, "--worker", recipe]
    for key, value in asdict(cfg).items():
        if key in ("worker", "baseline", "rounds") or value is None:
            continue
        args += [f"--{key}", str(value)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"benchmark worker '{recipe}' failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median of numeric results (the other keys from the first run)."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in runs)
    return merged


def against_trainer(cfg: BenchConfig) -> dict[str, Any]:
    """Whole runs (train + validation each epoch + test), ours and the Trainer at its best, alternated."""
    import quality

    shared = {
        k: getattr(cfg, k)
        for k in (
            "model_name_or_path",
            "text_column",
            "text_pair_column",
            "num_train_epochs",
            "learning_rate",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "max_seq_length",
            "max_train_samples",
            "max_eval_samples",
        )
    }
    dataset = f"{cfg.dataset}:{cfg.label_column}" if cfg.label_column != "label" else cfg.dataset
    qcfg = quality.QualityConfig(
        datasets=[dataset],
        recipes=["ours", "trainer-best"],
        reference="trainer-best",
        seeds=[cfg.seed],
        output_dir=cfg.output_dir,
        **shared,
    )
    qcfg.validate()
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "trainer-best": []}
    for round_index in range(cfg.rounds):
        for recipe in runs:  # alternated, so drifts in machine load hit both alike
            row = quality.run_one(qcfg, recipe, dataset, cfg.seed)
            runs[recipe].append(row)
            print(
                f"round {round_index + 1} {recipe:12s} whole run {row['seconds']:7.1f} s  "
                f"test macro-F1 {row['test_macro_f1']:.4f}  accuracy {row['test_accuracy']:.4f}",
                flush=True,
            )
    ours, peer = (statistics.median(r["seconds"] for r in runs[k]) for k in runs)
    summary = {
        "against": "trainer-best",
        "seconds": {"ours": ours, "trainer-best": peer},
        "speedup": peer / ours,
        "test_macro_f1": {k: statistics.fmean(r["test_macro_f1"] for r in v) for k, v in runs.items()},
    }
    f1 = summary["test_macro_f1"]
    print(
        f"whole run: ours {ours:.0f} s, Trainer at its best {peer:.0f} s: {summary['speedup']:.2f}x; "
        f"test macro-F1 {f1['ours']:.4f} vs {f1['trainer-best']:.4f}"
    )
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print one JSON line last."""
    cfg = parse_config(argv, BenchConfig, __doc__)
    if cfg.worker:
        result = run_worker(cfg)
        print(json.dumps(result))
        return result
    if cfg.against == "trainer":
        return against_trainer(cfg)
    recipes = ["ours", "baseline"] if cfg.baseline else ["ours"]
    runs: dict[str, list[dict[str, Any]]] = {r: [] for r in recipes}
    for round_index in range(cfg.rounds if cfg.baseline else 1):
        for recipe in recipes:
            result = spawn(cfg, recipe)
            runs[recipe].append(result)
            print(
                f"round {round_index + 1} {recipe:8s} train {result['train_samples_per_s']:8.1f} samples/s  "
                f"eval {result['eval_samples_per_s']:8.1f} samples/s  padding {result['padding_ratio']:.2f}x  "
                f"rss {result['peak_rss_mb']:.0f} MB  val macro-F1 {result['val_macro_f1']:.4f}",
                flush=True,
            )
    summary = median_of(runs["ours"])
    if cfg.baseline:
        base = median_of(runs["baseline"])
        summary["baseline"] = base
        summary["speedup"] = {
            "train_samples_per_s": summary["train_samples_per_s"] / base["train_samples_per_s"],
            "eval_samples_per_s": summary["eval_samples_per_s"] / base["eval_samples_per_s"],
            "peak_rss_ratio": summary["peak_rss_mb"] / base["peak_rss_mb"],
        }
        s = summary["speedup"]
        print(
            f"speed-up over the common recipe: train {s['train_samples_per_s']:.2f}x, eval {s['eval_samples_per_s']:.2f}x; "
            f"peak RSS {s['peak_rss_ratio']:.2f}x; val macro-F1 {summary['val_macro_f1']:.4f} vs {base['val_macro_f1']:.4f}"
        )
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    from utils import run_cli

    run_cli(main)
