"""The matrix's executors: runs in parallel on one machine, claims that keep two invocations from training one run
twice (and that a killed holder does not leave stuck), and --status."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from test_scripts import run_script

from conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "scripts"))
import run_matrix


def test_a_claim_is_exclusive_and_dies_with_its_holder(tmp_path):
    run_dir = tmp_path / "run"
    with run_matrix.claim(run_dir) as first, run_matrix.claim(run_dir) as second:
        assert first and not second
        assert run_matrix.run_state(run_dir) == "running"
    assert run_matrix.run_state(run_dir) == "queued"
    # Another process takes the claim and is killed without any cleanup: the claim must not stay stuck.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys, time; sys.path.insert(0, {str(REPO / 'scripts')!r}); import run_matrix\n"
            f"with run_matrix.claim(__import__('pathlib').Path({str(run_dir)!r})) as mine:\n"
            "    print(mine, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "True"
    assert run_matrix.run_state(run_dir) == "running"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_matrix.claim(run_dir) as mine:
        assert mine


def matrix_config(tmp_path, tiny_bert, seeds="[1, 2]"):
    """A 2-dataset x 1-model plan on a tiny model."""
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
datasets: [{SHARED_DATA / "emotion"}, {SHARED_DATA / "sst2"}]
models: [{tiny_bert}]
seeds: {seeds}
train_args: {{max_train_samples: 32, max_eval_samples: 16, num_train_epochs: 1, max_seq_length: 24, per_device_train_batch_size: 16}}
"""
    )
    return config


@pytest.mark.slow
def test_local_executor_runs_two_at_once_and_two_invocations_never_train_a_run_twice(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    config = matrix_config(tmp_path, tiny_bert)
    args = ["--config", str(config), "--output_dir", str(out)]
    # Two invocations of one plan at once: one parallel (2 at a time), one sequential.
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for extra in (["--executor", "local", "--max_parallel", "2"], [])
    ]
    time.sleep(0.5)
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert "local executor: 2 runs at once (OMP_NUM_THREADS=" in outputs[0]
    trained = [int(o.split("matrix: ")[1].split(" trained")[0]) for o in outputs]
    assert sum(trained) == 4, outputs  # every run trained, and by one invocation only
    for log in out.rglob("train.log"):
        assert log.read_text().count("run directory:") == 1, log
    status = run_script("run_matrix.py", *args, "--status")
    assert sum(line.startswith("done ") for line in status.splitlines()) == 4
    assert "status: 4 done of 4 runs" in status


@pytest.mark.slow
def test_status_shows_a_failed_run_with_its_log(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")
    args = ["--config", str(config), "--output_dir", str(out)]
    before = run_script("run_matrix.py", *args, "--status")
    assert "status: 2 queued of 2 runs" in before
    # sst2 has no column "tags": that run fails before training, the other one trains.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_matrix.py"),
            *args,
            "--executor",
            "local",
            "--label_column",
            "tags",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    status = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args, "--label_column", "tags", "--status"],
        capture_output=True,
        text=True,
    ).stdout
    assert "status: 2 failed of 2 runs" in status
    failure = json.loads(next(out.rglob("failed.json")).read_text())
    assert failure["exit_code"] == 2 and failure["log"].endswith("output.log")
    assert any("error:" in line and "tags" in line for line in failure["tail"])
    assert "error:" in status  # the failed run's last lines, shown by --status
