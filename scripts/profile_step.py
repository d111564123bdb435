"""Where a training run's time goes: train.py's own loop, timed per phase over one epoch, then the top operators.

    python scripts/profile_step.py --dataset ../shared/data/sst2 --max_train_samples 2000 --max_seq_length 128
    accelerate launch --mixed_precision bf16 scripts/profile_step.py --dataset ../shared/data/emotion

It takes train.py's flags and builds the run as train.py does (the same data loaders, model, optimizer, Accelerator
and CPU settings), then times over one epoch (``--profile_steps`` caps it): waiting for the next batch (collation
included), forward, backward, gradient clipping, the optimizer and schedule step; then one validation pass, one
best-model write and one checkpoint write, each counted once per epoch as a run with the defaults does them. A
torch.profiler pass over ``--profiler_steps`` further steps lists the operators with the most self time (on a GPU,
by the time of the kernels they launched and by CPU time, and how busy the GPU's kernels kept it). On a GPU
each phase ends with a synchronize, so the times are the device's. Nothing is written outside a temporary folder;
the last stdout line is JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import TrainConfig, option, parse_config  # noqa: E402


@dataclass
class ProfileConfig(TrainConfig):
    """train.py's flags, plus how many steps to time and to profile."""

    profile_steps: int | None = option(None, "Timed training steps (default: one epoch).")
    profiler_steps: int = option(10, "Steps under torch.profiler for the operator table (0: none).")
    top_ops: int = option(12, "Operators listed, by self time.")


def self_time_us(event: Any, clock: str) -> float:
    """An operator's self time in microseconds on ``clock`` ("cpu", or "device": its GPU kernels)."""
    if clock == "cpu":
        return event.self_cpu_time_total
    # torch 2.4 renamed self_cuda_time_total to self_device_time_total (and later dropped the old name).
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if (value := getattr(event, name, None)) is not None:
            return value
    return 0.0


def is_kernel(event: Any) -> bool:
    """Whether a profiler entry is work on the GPU itself (a kernel, copy or memset), not a CPU-side operator or a
    user-annotated range."""
    return str(getattr(event, "device_type", "DeviceType.CPU")) != "DeviceType.CPU" and not getattr(
        event, "is_user_annotation", False
    )


def operator_rows(averages: Any, clock: str, steps: int, top: int) -> tuple[list[dict[str, Any]], float]:
    """The ``top`` operators by self time on ``clock``, per step, and the total self time per step (ms).

    On "device" each kernel's time appears twice in torch's table, as the kernel's own entry and as the self device
    time of the CPU operator that launched it (and again under a range that ``record_function`` annotates), so the
    rows are the CPU operators (user-annotated ranges left out) and the total is the kernels' entries alone."""
    if clock == "device":
        listed = [e for e in averages if not is_kernel(e) and not getattr(e, "is_user_annotation", False)]
        total = sum(self_time_us(e, clock) for e in averages if is_kernel(e))
    else:
        listed = [e for e in averages if not is_kernel(e)]
        total = sum(self_time_us(e, clock) for e in listed)
    events = sorted(listed, key=lambda e: self_time_us(e, clock), reverse=True)
    rows = [
        {
            "op": e.key,
            "calls_per_step": e.count / steps,
            "ms_per_step": self_time_us(e, clock) / 1000 / steps,
            "share": self_time_us(e, clock) / total if total else 0.0,
        }
        for e in events[:top]
    ]
    return rows, total / 1000 / steps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time one epoch of train.py's loop per phase, then list the top operators; returns the figures."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    import train
    from data import build_dataloaders, tokenize_splits, windowing
    from evaluate import evaluate
    from utils import pad_multiple_for

    cfg = parse_config(argv, ProfileConfig, __doc__)
    accelerator, _, cpu_note = train.start_accelerator(cfg)
    train.set_seed(cfg.seed)
    model_path, tokenizer, data, (pooling, _) = train.load_inputs(cfg)
    tokenized = tokenize_splits(data.splits, tokenizer, cfg.max_seq_length, windowing(cfg))
    train_dl, eval_dls = build_dataloaders(tokenized, tokenizer, cfg, pad_multiple_for(accelerator, cfg.torch_compile))
    sampler = train_dl.batch_sampler  # before prepare: with several processes accelerate wraps it
    model, _ = train.build_model(cfg, model_path, data, pooling)
    optimizer = train.build_optimizer(model, cfg, accelerator.device)
    model, optimizer, train_dl = accelerator.prepare(model, optimizer, train_dl)
    val_dl = accelerator.prepare(eval_dls["validation"])
    steps = min(cfg.profile_steps or len(train_dl), len(train_dl))
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, steps + 2 * cfg.profiler_steps)
    sync = torch.cuda.synchronize if accelerator.device.type == "cuda" else (lambda: None)
    phases = dict.fromkeys(
        ["next batch (collation)", "forward", "backward", "clip grad norm", "optimizer + schedule"], 0.0
    )

    def one_step(batch: dict[str, Any], clock: dict[str, float] | None) -> None:
        """train.py's step, with the time of each phase added to ``clock``."""
        marks = [time.perf_counter()]

        def mark() -> None:
            sync()
            marks.append(time.perf_counter())

        loss = model(**batch).loss
        mark()
        accelerator.backward(loss)
        mark()
        _, grad_scale = train.clip_gradients(accelerator, model, optimizer, cfg.max_grad_norm or float("inf"))
        mark()
        train.step_clipped(optimizer, grad_scale)
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        mark()
        if clock is not None:
            for name, start, end in zip(list(clock)[1:], marks[:-1], marks[1:], strict=True):
                clock[name] += end - start

    def batches() -> Any:
        """Training batches as train.py feeds them, across epochs."""
        epoch = 0
        while True:
            train_dl.set_epoch(epoch)
            sampler.set_epoch(epoch)
            for batch in train_dl:
                batch.pop("idx")
                batch.pop("window", None)
                yield batch
            epoch += 1

    feed = batches()
    model.train()
    one_step(next(feed), None)  # the first step pays one-off costs (allocations, kernel choice): not timed
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fetch = time.perf_counter()
        batch = next(feed)
        phases["next batch (collation)"] += time.perf_counter() - fetch
        one_step(batch, phases)
    loop = time.perf_counter() - start

    once: dict[str, float] = {}
    evaluate(model, val_dl, accelerator, data.label_names)  # first pass meets new shapes, as a run's first does
    sync()
    begin = time.perf_counter()
    evaluate(model, val_dl, accelerator, data.label_names)
    once["validation pass"] = time.perf_counter() - begin
    model.train()
    with tempfile.TemporaryDirectory() as tmp:
        begin = time.perf_counter()
        train.save_best_model(accelerator, model, tokenizer, Path(tmp) / "best_model", {"step": 0})
        once["best_model/ write"] = time.perf_counter() - begin
        begin = time.perf_counter()
        accelerator.save_state(str(Path(tmp) / "checkpoint"))
        once["checkpoint write"] = time.perf_counter() - begin

    epoch_total = loop + sum(once.values())
    rows = [(name, seconds, seconds / steps) for name, seconds in phases.items()]
    rows.append(("(rest of the loop)", loop - sum(phases.values()), (loop - sum(phases.values())) / steps))
    rows += [(name, seconds, seconds / steps) for name, seconds in once.items()]
    if cpu_note:
        print(cpu_note)
    print(
        f"{steps} steps of {cfg.per_device_train_batch_size} rows, {accelerator.mixed_precision} on "
        f"{accelerator.device}; one epoch ≈ {epoch_total:.1f} s ({loop / steps * 1000:.0f} ms per step in the loop)"
    )
    print("| phase | seconds per epoch | ms per step | share |\n| --- | --- | --- | --- |")
    for name, seconds, per_step in rows:
        print(f"| {name} | {seconds:.2f} | {per_step * 1000:.1f} | {seconds / epoch_total:.0%} |")

    top: list[dict[str, Any]] = []
    gpu_busy_ms = None
    if cfg.profiler_steps:
        from torch.profiler import ProfilerActivity, profile

        on_gpu = accelerator.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
        # The same number of steps timed first without the profiler and without per-phase synchronizes: the step
        # time the GPU's busy time is a share of (the profiler's own cost would inflate the profiled steps).
        sync()
        begin = time.perf_counter()
        for _ in range(cfg.profiler_steps):
            one_step(next(feed), None)
        sync()
        plain_ms = (time.perf_counter() - begin) * 1000 / cfg.profiler_steps
        with profile(activities=activities) as prof:
            for _ in range(cfg.profiler_steps):
                one_step(next(feed), None)
            sync()
        averages = prof.key_averages()
        # On a GPU the kernels' time and the CPU's time to launch them are both listed: a small model's step can
        # be bound by either, and only the two side by side say which.
        for clock in ("device", "cpu") if on_gpu else ("cpu",):
            rows_, total = operator_rows(averages, clock, cfg.profiler_steps, cfg.top_ops)
            label = "GPU kernel" if clock == "device" else "CPU"
            print(f"\ntop operators over {cfg.profiler_steps} steps, by {label} self time:")
            print("| operator | calls per step | ms per step | share |\n| --- | --- | --- | --- |")
            for row in rows_:
                print(f"| {row['op']} | {row['calls_per_step']:.0f} | {row['ms_per_step']:.1f} | {row['share']:.0%} |")
            if clock == "device":
                gpu_busy_ms = total
                print(
                    f"GPU kernels busy {total:.1f} ms per step; a step takes {plain_ms:.1f} ms without the profiler "
                    f"or per-phase synchronizes: {total / plain_ms:.0%}"
                )
            if not top:
                top = rows_
    summary = {
        "steps": steps,
        "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device),
        "epoch_seconds": epoch_total,
        "phases_s": {name: seconds for name, seconds, _ in rows},
        "top_ops": top,
        "gpu_busy_ms_per_step": gpu_busy_ms,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    from utils import run_cli

    run_cli(main)
