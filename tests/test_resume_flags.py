"""A stopped run continues with the command its stop line gives, `--output_dir RUN --resume_from_checkpoint latest`
alone: the flags not given are the run's recorded ones; a flag given must still match the run's."""

from __future__ import annotations

import json

import pytest
import train_probe
from test_resume import assert_same_run

import train
from conftest import RESUME_FLAGS, tiny_args
from utils import UsageError


@pytest.fixture
def probe():
    """train.py's test hooks, removed after the test."""
    yield train_probe
    train_probe.uninstall()


def test_a_stopped_run_continues_with_output_dir_and_latest_alone(tiny_bert, tmp_path, probe, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --runs_root would be ./outputs
    ref, run = tmp_path / "reference", tmp_path / "interrupted"
    train_probe.install(final=str(tmp_path / "ref.pt"))
    train.main(tiny_args(tiny_bert, ref, None, *RESUME_FLAGS))

    train_probe.install(block_at=5, self_signal=True, final=str(tmp_path / "run.pt"))
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, run, None, *RESUME_FLAGS, "--checkpointing_steps", "5"))
    stop = f"continue with --output_dir {run} --resume_from_checkpoint latest alone"
    assert stop in (run / "train.log").read_text()
    short = ["--output_dir", str(run), "--resume_from_checkpoint"]

    # A flag given on the resume still has to match the run's: only that one is named.
    with pytest.raises(UsageError, match=r"other settings \(learning_rate: checkpoint 0\.001, now 5e-05\);"):
        train.main([*short, "latest", "--learning_rate", "5e-5"])
    # The checkpoint's own folder names the run as well as --output_dir does.
    cfg, note = train.parse_train_config(["--resume_from_checkpoint", str(run / "checkpoints" / "step_000005")])
    recorded = json.loads((run / "config.json").read_text())["user_config"]
    checkpoint = str(run / "checkpoints" / "step_000005")
    assert cfg == train.TrainConfig(**{**recorded, "output_dir": None, "resume_from_checkpoint": checkpoint})
    assert note == f"resume: every flag not given here is the run's own, from {run / 'config.json'}"

    train.main([*short, "latest"])
    assert (
        f"resume: every flag not given here is the run's own, from {run / 'config.json'}"
        in (run / "train.log").read_text()
    )
    assert_same_run(ref, run, tmp_path / "ref.pt", tmp_path / "run.pt")
