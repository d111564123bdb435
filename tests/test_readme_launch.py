"""The README's launch recipes run as printed: the shipped accelerate config files, and what a bad input looks like
under a multi-process launcher."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, free_port, tiny_args, train_on_two_processes

CONFIGS = REPO / "accelerate_configs"


def launch_with_config(config: str, args: list[str], cwd: Path, *launcher: str, **env: str):
    """``accelerate launch --config_file accelerate_configs/CONFIG [LAUNCHER FLAGS] train.py ARGS``."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config), *launcher]
    return subprocess.run(
        [*command, str(REPO / "train.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.slow
def test_the_two_cpu_process_config_file_trains_on_two_ranks(tiny_bert, tmp_path):
    """README: accelerate_configs/ holds a ready file for two CPU processes; launched as its header says, the run
    trains on two gloo ranks, which config.json records."""
    out = tmp_path / "run"
    args = tiny_args(tiny_bert, out, None, "--max_steps", "2")
    port = ("--main_process_port", free_port())  # parallel test workers must not all bind 29500
    proc = launch_with_config("cpu_two_processes.yaml", args, tmp_path, *port, ACCELERATE_USE_CPU="true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["resolved"]["num_processes"] == 2
    assert (out / "results.json").is_file()


def test_the_fsdp_config_on_a_cpu_is_refused_naming_the_engine_in_effect(tiny_bert, tmp_path):
    """README: accelerate would fall back to plain data parallel without a word where it cannot use FSDP (CPU
    processes); train.py refuses to start instead, naming the engine in effect, before any run folder exists."""
    out = tmp_path / "run"
    proc = launch_with_config("fsdp.yaml", tiny_args(tiny_bert, out, None), tmp_path, "--num_processes", "1")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
    assert "asks for FSDP but NO is in effect (device cpu" in errors[0]
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_the_deepspeed_config_without_deepspeed_stops_in_the_launcher(tiny_bert, tmp_path):
    """README: without the deepspeed package, `accelerate launch` with the DeepSpeed config stops before train.py
    starts, with accelerate's own ImportError naming the install."""
    out = tmp_path / "run"
    proc = launch_with_config("deepspeed_zero2.yaml", tiny_args(tiny_bert, out, None), tmp_path)
    assert proc.returncode != 0
    assert "ImportError: DeepSpeed is not installed => run `pip3 install deepspeed`" in proc.stderr
    assert not out.exists() and "CPU threads per process" not in proc.stderr  # train.py never ran


def test_bad_input_through_accelerate_launch_is_one_error_line_then_the_launchers_exit_1(tiny_bert, tmp_path):
    """README: bad input is one ``error:`` line before any model is built; through `accelerate launch` the launcher's
    own traceback of the failed process follows it, and the launcher exits 1 (python train.py exits 2)."""
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "train.py")]
    args = tiny_args(tiny_bert, out, tmp_path / "no-such-data")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([*launch, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert proc.returncode == 1 and errors == [f"error: --dataset {tmp_path / 'no-such-data'}: no such file or folder."]
    assert lines.index(errors[0]) < lines.index("Traceback (most recent call last):")  # the reason comes first
    assert not out.exists()


@pytest.mark.slow
def test_bad_input_on_two_processes_is_one_error_line(tiny_bert, tmp_path):
    """README: bad input is one ``error:`` line before any model is built, and the launcher exits 1. Each rank runs
    the same checks, so the line must be printed by one of them only, as warnings are."""
    out = tmp_path / "run"
    proc = train_on_two_processes(tiny_args(tiny_bert, out, tmp_path / "no-such-data"), tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and not out.exists()
    assert errors == [f"error: --dataset {tmp_path / 'no-such-data'}: no such file or folder."], errors


RANK_1_MISSES_THE_DATA = """
import dataclasses, os, sys
sys.path.insert(0, {repo!r})
import train, utils
real = train.load_inputs


def load_inputs(cfg, *args):
    # Rank 1 alone reads the data from a path that is not there (a node without the mount, say).
    if os.environ["RANK"] == "1":
        cfg = dataclasses.replace(cfg, dataset={missing!r})
    return real(cfg, *args)


train.load_inputs = load_inputs
# A rank other than 0 waits this long for the launcher to stop it before it names its own error; here nothing will
# (rank 0 is well, waiting for it at a barrier), so the whole wait is idle time.
utils.OWN_ERROR_WAIT_S = 1.0
utils.run_cli(train.main, fast_exit=True)
"""


@pytest.mark.slow
def test_bad_input_that_only_rank_1_meets_is_its_one_error_line_and_the_launch_fails(tiny_bert, tmp_path):
    """README: an error only one process meets (a file only it cannot read) is still one `error:` line, from that
    process and naming its rank, and the launch exits non-zero instead of hanging (rank 0 waits at a barrier)."""
    missing = tmp_path / "not-on-this-node"
    wrapper = tmp_path / "train_rank1.py"
    wrapper.write_text(RANK_1_MISSES_THE_DATA.format(repo=str(REPO), missing=str(missing)))
    proc = train_on_two_processes(tiny_args(tiny_bert, tmp_path / "run", None, "--max_steps", "2"), tmp_path, wrapper)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert errors == [f"error: rank 1: --dataset {missing}: no such file or folder."], proc.stderr[-3000:]
