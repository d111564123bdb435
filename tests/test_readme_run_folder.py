"""What the README says a run folder holds, for the flags no other test exercises."""

from __future__ import annotations

import json

import train
from conftest import tiny_args


def test_checkpointing_every_epoch_writes_meta_and_links_the_best_model(tiny_bert, tmp_path):
    """README: --checkpointing_steps epoch writes checkpoints/step_NNNNNN/ at the end of an epoch, with a readable
    meta.json (step, epoch, best score and step, patience counter) and a copy (hard links) of the best_model/ it
    knows. 48 rows, batch 8: 6 steps an epoch; the last step ends the run, which needs no checkpoint to resume. A
    learning rate of 1e-12 leaves every evaluation alike, so the first stays the best."""
    out = tmp_path / "run"
    flags = ("--num_train_epochs", "3", "--checkpointing_steps", "epoch", "--learning_rate", "1e-12")
    results = train.main(tiny_args(tiny_bert, out, None, *flags))
    assert results["best_step"] == 6
    assert [path.name for path in train.checkpoint_dirs(out)] == ["step_000006", "step_000012"]
    for step, checkpoint in zip((6, 12), train.checkpoint_dirs(out), strict=True):
        meta = json.loads((checkpoint / "meta.json").read_text())
        assert meta["step"] == step and meta["epoch"] == step / 6
        assert meta["best_step"] == 6 and meta["best_score"] == results["validation"]["macro_f1"]
        assert meta["bad_evals"] == step // 6 - 1  # the patience counter: evaluations since the best one
        # The checkpoint's copy of the best model is the run's own files, not a second copy on disk.
        for name in ("model.safetensors", "best.json"):
            assert (checkpoint / "best_model" / name).samefile(out / "best_model" / name)
