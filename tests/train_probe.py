"""train.py with test hooks, launched exactly as users launch train.py (python, accelerate launch, torchrun).

    PROBE_BLOCK_AT=6 PROBE_READY=ready.txt PROBE_FINAL=final.pt accelerate launch tests/train_probe.py ARGS...
    python scripts/run_matrix.py ... --launcher "python tests/train_probe.py"   # the matrix's runs, probed

Hooks, each switched on by an environment variable (or by ``install`` for in-process tests):
- ``PROBE_BLOCK_AT=k``: after the checkpoint of step k is written, write ``PROBE_READY`` (main process) and wait
  until a stop signal reaches this process, so a test can signal the launcher at a known step;
- ``PROBE_SELF_SIGNAL=1``: instead of waiting, send SIGTERM to this process right after that checkpoint;
- ``PROBE_FINAL=path``: save the final training weights (before the best model is reloaded) to ``path``;
- ``PROBE_EPOCHS=path``: append the epoch of every training-sampler pass to ``path`` (one line per pass);
- ``PROBE_THREADS=path``: write the torch thread count the run trained with;
- ``PROBE_SLOW_CHECKPOINT=s``: make every checkpoint write take ``s`` seconds more (a large model on a slow disk);
- ``PROBE_SCORING_READY=path``: when the best model is about to be scored after the last step, write ``path`` and
  wait for a stop signal, then take 60 s more to score (a large test split), so a test can signal the launcher then.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

import data  # noqa: E402
import train  # noqa: E402

signalled = threading.Event()
# The unpatched functions, captured once so that installing the hooks again replaces them instead of stacking.
ORIGINALS = {
    "save_checkpoint": train.save_checkpoint,
    "handle": train.StopRequested._handle,
    "release": train.release_training_state,
    "batches": data.LengthGroupedBatchSampler.batches,
    "score": train.score_best_model,
}


def install(
    block_at: int | None = None,
    ready: str | None = None,
    final: str | None = None,
    epochs: str | None = None,
    self_signal: bool = False,
    threads: str | None = None,
    slow_checkpoint: float = 0.0,
    scoring_ready: str | None = None,
) -> None:
    """Patch train.py's checkpointing, signal handling and cleanup with the hooks described above."""
    real_save, real_handle = ORIGINALS["save_checkpoint"], ORIGINALS["handle"]
    real_free, real_batches, real_score = ORIGINALS["release"], ORIGINALS["batches"], ORIGINALS["score"]
    signalled.clear()

    def save_checkpoint(accelerator, run_dir, meta, keep):
        """The real checkpoint, then (at step ``block_at``) a stop signal or a wait for one."""
        path = real_save(accelerator, run_dir, meta, keep)
        time.sleep(slow_checkpoint)
        if block_at is not None and meta["step"] == block_at:
            if self_signal:
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                if accelerator.is_main_process and ready:
                    Path(ready).write_text(str(meta["step"]))
                deadline = time.monotonic() + 120
                while not signalled.is_set() and time.monotonic() < deadline:
                    time.sleep(0.02)
        return path

    def handle(self, signum, frame):
        """The real handler, then wake the waiting checkpoint hook."""
        real_handle(self, signum, frame)
        signalled.set()

    def release(accelerator, model, optimizer, finished):
        """Save the final weights (main process) before train.py frees the model."""
        if final and finished and accelerator.is_main_process:
            state = {
                k: v.detach().float().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()
            }
            torch.save(state, final)
            if threads:
                Path(threads).write_text(str(torch.get_num_threads()))
        return real_free(accelerator, model, optimizer, finished)

    def batches(self):
        """Record the epoch of each pass over the training data."""
        if epochs:
            with open(epochs, "a") as handle:
                handle.write(f"{self.epoch}\n")
        return real_batches(self)

    def score_best_model(*args, **kwargs):
        """Write ``scoring_ready`` and wait for a stop signal, then score slowly."""
        if scoring_ready:
            Path(scoring_ready).write_text("scoring")
            signalled.wait(timeout=120)
            time.sleep(60)
        return real_score(*args, **kwargs)

    uninstall()
    train.save_checkpoint = save_checkpoint
    train.score_best_model = score_best_model
    train.StopRequested._handle = handle
    train.release_training_state = release
    data.LengthGroupedBatchSampler.batches = batches


def uninstall() -> None:
    """Put the unpatched functions back."""
    train.save_checkpoint = ORIGINALS["save_checkpoint"]
    train.score_best_model = ORIGINALS["score"]
    train.StopRequested._handle = ORIGINALS["handle"]
    train.release_training_state = ORIGINALS["release"]
    data.LengthGroupedBatchSampler.batches = ORIGINALS["batches"]


if __name__ == "__main__":
    # As a matrix launcher (--launcher "python tests/train_probe.py") it is handed train.py's path first.
    if len(sys.argv) > 1 and sys.argv[1].endswith("train.py"):
        del sys.argv[1]
    env = os.environ
    install(
        block_at=int(env["PROBE_BLOCK_AT"]) if env.get("PROBE_BLOCK_AT") else None,
        ready=env.get("PROBE_READY"),
        final=env.get("PROBE_FINAL"),
        epochs=env.get("PROBE_EPOCHS"),
        self_signal=env.get("PROBE_SELF_SIGNAL") == "1",
        threads=env.get("PROBE_THREADS"),
        slow_checkpoint=float(env.get("PROBE_SLOW_CHECKPOINT") or 0),
        scoring_ready=env.get("PROBE_SCORING_READY"),
    )
    from utils import run_cli

    run_cli(train.main)
