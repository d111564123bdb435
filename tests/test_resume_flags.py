"""A stopped run continues with the command its stop line gives, `--output_dir RUN --resume_from_checkpoint latest`
alone: the flags not given are the run's recorded ones; a flag given must still match the run's. And --config files:
a run's own config.json as one, and relative paths in one."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import train_probe
from test_resume import assert_same_run

import train
from config import ConfigError
from conftest import REPO, RESUME_FLAGS, tiny_args
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


def test_a_runs_own_config_json_as_config_gives_its_flags_for_a_new_run(tiny_bert, tmp_path, monkeypatch, capsys):
    """--config RUN/config.json: the flags the run was started with, less where it ran (its folder, a resume): a new
    run with the same settings, said in one line; flags on the command line still win."""
    old = tmp_path / "old"
    old.mkdir()
    recorded = dataclasses.asdict(
        train.TrainConfig(
            **{**train.parse_config(tiny_args(tiny_bert, old)).__dict__, "resume_from_checkpoint": "latest"}
        )
    )
    (old / "config.json").write_text(json.dumps({"user_config": recorded, "resolved": {"max_steps": 12}}))

    def stop(*args, **kwargs):
        raise RuntimeError("inputs not read in this test")

    monkeypatch.setattr(train, "load_inputs", stop)
    new = tmp_path / "new"
    with pytest.raises(RuntimeError, match="inputs not read"):
        train.main(["--config", str(old / "config.json"), "--output_dir", str(new), "--seed", "7"])
    cfg, _ = train.parse_train_config(["--config", str(old / "config.json"), "--seed", "7"])
    assert cfg == train.TrainConfig(**{**recorded, "output_dir": None, "resume_from_checkpoint": None, "seed": 7})
    assert (
        f"--config {old / 'config.json'} is a run's record: its user_config gives the flags (not its output_dir, "
        f"overwrite_output_dir or resume_from_checkpoint: a new run; continue that one with --output_dir {old} "
        "--resume_from_checkpoint latest)"
    ) in capsys.readouterr().err
    import evaluate

    with pytest.raises(
        ConfigError,
        match=r"is the config.json of a train.py run, not a file of flags for this command; name the run with --run_dir",
    ):
        evaluate.main(["--config", str(old / "config.json")])


def without(args: list[str], flag: str) -> list[str]:
    """``args`` less ``flag`` and its value."""
    if flag not in args:
        return args
    at = args.index(flag)
    return args[:at] + args[at + 2 :]


@pytest.mark.parametrize("flag", ["dataset", "model_name_or_path", "class_weights"])
def test_a_relative_path_in_a_config_file_that_exists_beside_the_file_is_named(tiny_bert, tmp_path, monkeypatch, flag):
    """Paths in a --config file are read from the current folder, as on the command line; one that is missing here
    but exists beside the file is refused with the path that would read it, before anything loads."""
    folder = tmp_path / "configs"
    shutil.copytree(REPO / "sample_data", folder / "data" / "x")
    (folder / "tiny").symlink_to(tiny_bert)
    (folder / "weights.json").write_text('{"sports": 2}')
    beside = {"dataset": "data/x", "model_name_or_path": "tiny", "class_weights": "weights.json"}
    config = folder / "run.yaml"
    config.write_text(f"{flag}: {beside[flag]}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(train, "load_inputs", lambda *a, **k: pytest.fail("inputs were read"))
    with pytest.raises(ConfigError) as err:
        train.main(["--config", str(config), *without(tiny_args(tiny_bert, tmp_path / "run"), f"--{flag}")])
    assert str(err.value) == (
        f"--config {config}: {flag} {beside[flag]}: no such path in the current folder (paths in --config files are "
        f"read from the current folder; {folder / beside[flag]} exists: give that path)."
    )
