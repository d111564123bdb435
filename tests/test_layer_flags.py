"""Freezing combined with layer-wise and head learning rates: a combination that changes nothing is refused before a
model is built, and the lr metrics.jsonl logs is the one the trained parameters get."""

from __future__ import annotations

import json

import pytest

import train
from config import TrainConfig, parse_config
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


def test_a_learning_rate_that_no_parameter_trains_at_is_refused():
    """Under --freeze backbone with --head_learning_rate every trained parameter takes the head's rate: a
    --learning_rate besides would name a run (its folder, its report row) that it does not change."""
    frozen = ["--freeze", "backbone", "--head_learning_rate", "5e-3"]
    with pytest.raises(
        ConfigError, match=r"^--learning_rate 0.001 does nothing under --freeze backbone with --head"
    ) as err:
        parse_config([*frozen, "--learning_rate", "1e-3"])
    assert "\n" not in str(err.value) and "drop --learning_rate" in str(err.value)
    # The default learning rate, and each flag without the others, still parse.
    parse_config(frozen)
    parse_config(["--freeze", "backbone", "--learning_rate", "1e-3"])
    parse_config(["--head_learning_rate", "5e-3", "--learning_rate", "1e-3"])
    # A run recorded with both before the refusal resumes and tabulates as one without (TrainConfig.switched_off).
    unused = TrainConfig(freeze="backbone", head_learning_rate=5e-3, learning_rate=1e-3).switched_off()
    assert any("learning_rate" in names for names in unused.values())
    for cfg in (TrainConfig(freeze="backbone"), TrainConfig(freeze="embeddings", head_learning_rate=5e-3)):
        assert not any("learning_rate" in names for names in cfg.switched_off().values())


def test_logged_lr_under_a_frozen_backbone_is_the_head_learning_rate(tiny_bert, tmp_path):
    out = tmp_path / "run"
    # tiny_args gives --learning_rate 1e-3, which nothing would train at here: back to the default.
    flags = ["--freeze", "backbone", "--head_learning_rate", "5e-3", "--learning_rate", str(TrainConfig.learning_rate)]
    flags += ["--max_steps", "4", "--warmup_steps", "0", "--logging_steps", "1"]
    train.main(tiny_args(tiny_bert, out, None, *flags))
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [line["lr"] for line in lines if "lr" in line]
    # Linear decay from 5e-3 over 4 steps, logged after each step: the rate the pooling and head train at.
    assert logged == pytest.approx([5e-3 * (4 - step) / 4 for step in (1, 2, 3, 4)])


def test_a_run_recorded_with_a_decay_under_a_frozen_backbone_is_compared_without_it():
    # Resume (train.run_settings), run_matrix and report.py leave out what TrainConfig.switched_off names: a run
    # written before the refusal, with --freeze backbone --layer_lr_decay 0.8, resumes and tabulates as one without.
    def unused(cfg: TrainConfig) -> set[str]:
        return {name for names in cfg.switched_off().values() for name in names}

    assert "layer_lr_decay" in unused(TrainConfig(freeze="backbone", layer_lr_decay=0.8))
    assert "layer_lr_decay" not in unused(TrainConfig(freeze="embeddings", layer_lr_decay=0.8))
