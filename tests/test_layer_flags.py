"""Freezing combined with layer-wise and head learning rates: a combination that changes nothing is refused before a
model is built."""

from __future__ import annotations

import pytest

import train
from conftest import tiny_args
from utils import ConfigError, UsageError


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--freeze", "backbone"], r"--layer_lr_decay 0.5 does nothing under --freeze backbone"),
        # The tiny backbone has 2 layers: freezing 1 (and the embeddings) leaves the top layer alone to train.
        (["--freeze_layers", "1"], r"--layer_lr_decay 0.5 does nothing with --freeze_layers 1: .* 2 layers"),
        (["--freeze_layers", "2"], r"--layer_lr_decay 0.5 does nothing with --freeze_layers 2"),
    ],
)
def test_layer_lr_decay_that_reaches_no_trained_layer_is_refused(tiny_bert, tmp_path, monkeypatch, flags, says):
    def never(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(train.EncoderClassifier, "from_backbone", never)
    out = tmp_path / "run"
    with pytest.raises((ConfigError, UsageError), match=says):
        train.main(tiny_args(tiny_bert, out, None, *flags, "--layer_lr_decay", "0.5"))
    assert not out.exists()


def test_layer_lr_decay_with_a_trained_layer_below_the_top_still_runs(tiny_bert, tmp_path):
    # --freeze embeddings leaves both layers trainable: the lower one trains at half the rate.
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, "--freeze", "embeddings", "--layer_lr_decay", "0.5", "--max_steps", "1"))
    assert (out / "results.json").is_file()
