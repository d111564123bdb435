"""The matrix's executors: runs in parallel on one machine, claims that keep two invocations from training one run
twice (and that a killed holder does not leave stuck), and --status."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_resume import assert_same_run
from test_scripts import run_script

from conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "scripts"))
import run_matrix


class FakeExecutor:
    """submitit's AutoExecutor, faked: ``map_array`` returns what ``submit`` makes of the runs, and nothing runs."""

    def __init__(self, folder: Path, cluster: str | None, submit: Callable[[list], list]) -> None:
        self.submit = submit

    def update_parameters(self, **params: Any) -> None:
        pass

    def map_array(self, task: Any, runs: list) -> list:
        return self.submit(runs)


def fake_executor(monkeypatch: pytest.MonkeyPatch, submit: Callable[[list], list]) -> None:
    """run_matrix's submitit.AutoExecutor replaced by a FakeExecutor whose map_array is ``submit``."""
    monkeypatch.setattr(run_matrix.submitit, "AutoExecutor", functools.partial(FakeExecutor, submit=submit))


def fake_job(job_id: str, **attributes: Any) -> Any:
    """A submitit job as run_matrix.py reads one: its id, its log paths and any ``attributes`` (``done``)."""
    paths = type("Paths", (), {"stdout": "o", "stderr": "e", "result_pickle": "r"})()
    return type("Job", (), {"job_id": job_id, "paths": paths, **attributes})()


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


def test_a_claim_to_train_waits_out_a_status_probe_and_a_probe_records_nothing(tmp_path):
    """--status and --wait look at a run by taking its lock for an instant. A Slurm task or a matrix claiming the run
    to train at that instant must not take the run for another process's and skip it (it would stay untrained);
    and the probe leaves the record of the last process that trained the run as it was."""
    import threading

    run_dir = tmp_path / "run"
    with run_matrix.claim(run_dir, {"seed": 1}) as mine:
        assert mine
    record = (run_dir / run_matrix.CLAIM).read_text()
    probing = threading.Event()

    def probe():
        with run_matrix.claim(run_dir) as held:
            assert held
            probing.set()
            time.sleep(0.3)

    thread = threading.Thread(target=probe)
    thread.start()
    probing.wait()
    assert (run_dir / run_matrix.CLAIM).read_text() == record
    with run_matrix.claim(run_dir, {"seed": 1}) as mine:
        assert mine
    thread.join()


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
    # No room for text at 2 tokens: train.py refuses it once it has the tokenizer, so every run fails at its start.
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_matrix.py"),
            *args,
            "--executor",
            "local",
            "--max_seq_length",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    status = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args, "--max_seq_length", "2", "--status"],
        capture_output=True,
        text=True,
    ).stdout
    assert "status: 2 failed of 2 runs" in status
    failure = json.loads(next(out.rglob("failed.json")).read_text())
    assert failure["exit_code"] == 2 and failure["log"].endswith("output.log")
    assert any("error:" in line and "--max_seq_length 2" in line for line in failure["tail"])
    assert "error:" in status  # the failed run's last lines, shown by --status


def test_slurm_options_are_checked_before_anything_is_submitted(tmp_path, capsys):
    assert [run_matrix.parse_minutes(v) for v in ("90", "90:30", "4:00:00", "1-0", "1-2:30")] == [
        90,
        91,
        240,
        1440,
        1590,
    ]
    with pytest.raises(run_matrix.UsageError, match="--slurm_time 'soon'"):
        run_matrix.parse_minutes("soon")
    options, rest = run_matrix.slurm_options(["--slurm_mem", "32G", "--lr", "1", "--slurm_cpus_per_task=8"])
    assert options == {"slurm_mem": "32G", "slurm_cpus_per_task": 8} and rest == ["--lr", "1"]
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", "m", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(run_matrix.UsageError, match="--slurm_mem is an option of --executor slurm"):
        run_matrix.main([*base, "--slurm_mem", "32G"])
    with pytest.raises(run_matrix.UsageError, match=r"submitit does not take.*slurm_colour"):
        run_matrix.main([*base, "--executor", "slurm", "--slurm_cluster", "local", "--slurm_colour", "red"])
    assert not (tmp_path / "out" / run_matrix.JOBS).exists()  # nothing was submitted


@pytest.mark.slow
def test_slurm_path_through_submitits_debug_executor_trains_and_records_the_job(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")
    args = ["--config", str(config), "--output_dir", str(out), "--executor", "slurm", "--slurm_cluster", "debug"]
    printed = run_script("run_matrix.py", *args)
    assert "slurm executor (debug): submitted 2 of 2 runs" in printed and "status: 2 done of 2" in printed
    jobs = json.loads((out / run_matrix.JOBS).read_text())
    assert len(jobs) == 2 and all(Path(j["stdout"]).is_file() for j in jobs.values())
    assert all((Path(run) / "results.json").is_file() for run in jobs)
    # Submitting the plan again submits nothing: every run is done.
    assert "nothing to submit" in run_script("run_matrix.py", *args)
    status = run_script("run_matrix.py", "--config", config, "--output_dir", out, "--status")
    assert "status: 2 done of 2 runs" in status and "(job DEBUG_" in status


@pytest.mark.slow
def test_slurm_path_requeues_a_preempted_run_which_resumes_exactly(tiny_bert, tmp_path):
    """submitit's local executor runs the Slurm path on this machine: the task gets submitit's preemption signal
    mid-run (as Slurm sends it to the task before a time limit or a preemption), stops the trainer at a checkpoint,
    requeues itself, and the requeued task resumes; the run ends as an uninterrupted one does."""
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
datasets: [{SHARED_DATA / "emotion"}]
models: [{tiny_bert}]
seeds: [1]
train_args: {{max_train_samples: 48, max_eval_samples: 16, num_train_epochs: 2, max_seq_length: 24,
  per_device_train_batch_size: 8, checkpointing_steps: 4, eval_steps: 4, logging_steps: 1, learning_rate: 1e-3}}
"""
    )
    probe = ["--launcher", f"{sys.executable} {REPO / 'tests' / 'train_probe.py'}"]
    ref = tmp_path / "reference"
    env = {**os.environ, "PROBE_FINAL": str(tmp_path / "ref.pt")}
    driver = [sys.executable, str(REPO / "scripts" / "run_matrix.py"), "--config", str(config), *probe]
    subprocess.run([*driver, "--output_dir", str(ref)], env=env, check=True, capture_output=True)

    out, ready = tmp_path / "matrix", tmp_path / "ready"
    env |= {"PROBE_FINAL": str(tmp_path / "run.pt"), "PROBE_BLOCK_AT": "4", "PROBE_READY": str(ready)}
    slurm = [*driver, "--output_dir", str(out), "--executor", "slurm", "--slurm_cluster", "local"]
    proc = subprocess.Popen([*slurm, "--wait"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready.exists(), proc.communicate()[0]
    (run,) = (p.parent for p in out.rglob(run_matrix.CLAIM))
    status = run_script("run_matrix.py", "--config", config, "--output_dir", out, "--status")
    assert f"running     {run} (job " in status
    # A second submission while the task trains submits nothing and trains nothing.
    again = subprocess.run(slurm, env=env, capture_output=True, text=True, check=True).stdout
    assert "nothing to submit" in again
    # The task process holds the claim; Slurm signals it (SIGUSR2) before a time limit or on preemption.
    task_pid = json.loads((run / run_matrix.CLAIM).read_text())["pid"]
    os.kill(task_pid, signal.SIGUSR2)
    printed = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, printed
    assert "status: 1 done of 1" in printed
    log = (run / "train.log").read_text()
    assert "SIGTERM received: stopped after step 4" in log and "resumed from" in log
    job_log = Path(json.loads((out / run_matrix.JOBS).read_text())[str(run)]["stdout"]).read_text()
    assert "requeued to resume" in job_log
    ref_run = next(p.parent for p in ref.rglob("results.json"))
    assert_same_run(ref_run, run, tmp_path / "ref.pt", tmp_path / "run.pt")


def default_signals() -> None:
    """In a child before exec: SIGINT and SIGTERM at their default disposition and unblocked, as a shell starts it."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_waiting_on_the_jobs_says_they_keep_running_and_how_to_collect_them(
    tiny_bert, tmp_path, capsys, sig
):
    """A Ctrl-C (or a kill: SIGTERM) during --wait stops the following only: one line says the submitted jobs keep
    running and how to see them through (--status, then report.py), with exit code 130 (143), instead of a
    KeyboardInterrupt traceback or a silent death."""
    out, started = tmp_path / "matrix", tmp_path / "started"
    trainer = tmp_path / "trainer.py"  # stands in for the launcher: trains nothing, for as long as the test needs
    trainer.write_text("import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(300)\n")
    driver = [sys.executable, str(REPO / "scripts" / "run_matrix.py"), "--datasets", str(SHARED_DATA / "sst2")]
    driver += ["--models", str(tiny_bert), "--output_dir", str(out), "--executor", "slurm", "--slurm_cluster", "local"]
    driver += ["--wait", "--launcher", f"{sys.executable} {trainer} {started}"]
    log = tmp_path / "driver.log"  # not a pipe: the job, a child of the driver, would hold it open
    with open(log, "w") as handle:
        # Started as a terminal starts a command: a signal disposition or mask inherited from the test's worker
        # process (an ignored or blocked SIGINT survives exec) would make the driver deaf to the Ctrl-C tested here.
        proc = subprocess.Popen(driver, stdout=handle, stderr=subprocess.STDOUT, preexec_fn=default_signals)
    try:
        deadline = time.monotonic() + 120
        while not (started.is_file() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.is_file(), log.read_text()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run_matrix.py did not stop within 60 s of {signal.Signals(sig).name}:\n{log.read_text()}")
        printed = log.read_text()
        assert proc.returncode == 128 + sig, printed
        assert "Traceback" not in printed and "KeyboardInterrupt" not in printed, printed
        last = printed.strip().splitlines()[-1]
        said = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}[sig]
        assert last.startswith(f"{said}: stopped following the jobs; submitit's local job "), last
        assert "the same command with --status in place of --wait" in last and f"report.py {out}" in last
        os.kill(int(started.read_text()), 0)  # the job was not stopped: its trainer still runs
    finally:
        proc.kill()
        if started.is_file() and started.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(started.read_text()), signal.SIGKILL)  # the job then ends as a failed run
    # Under Slurm the jobs run elsewhere: they keep running whatever reached this process.
    job = type("Job", (), {"job_id": "4242_0"})()
    run_matrix.stopped_following([job, job], out, "slurm", signal.SIGTERM)
    printed = capsys.readouterr().out
    assert printed.startswith("terminated: stopped following the jobs; the 2 submitted runs keep running under Slurm")
    assert "(job 4242); run the same command again" in printed and "none is queued or running. Their state:" in printed
    run_matrix.stopped_following([job], out, "slurm", signal.SIGTERM)
    assert capsys.readouterr().out.startswith(
        "terminated: stopped following the jobs; the 1 submitted run keeps running under Slurm (job 4242)"
    )
    run_matrix.stopped_following([job, job], out, "local", signal.SIGINT)
    assert capsys.readouterr().out.startswith(
        "interrupted: stopped following the jobs; submitit's 2 local jobs (the first 4242) keep running unless"
    )


def test_a_job_that_dies_without_a_failure_record_shows_as_failed_with_its_job_log(tiny_bert, tmp_path):
    """A task that breaks before the trainer reports anything (here: a launcher that does not exist) leaves no
    failed.json; --status still calls the run failed, from submitit's result file, and shows the job's log."""
    out = tmp_path / "matrix"
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")
    args = ["--config", str(config), "--output_dir", str(out)]
    driver = [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args]
    slurm = ["--executor", "slurm", "--slurm_cluster", "local", "--wait", "--launcher", str(tmp_path / "no-python")]
    proc = subprocess.run([*driver, *slurm], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert not list(out.rglob(run_matrix.FAILED))
    status = subprocess.run([*driver, "--status"], capture_output=True, text=True).stdout
    assert "status: 2 failed of 2 runs" in status
    assert "job ended (error)" in status and "no-python" in status


def test_a_launcher_on_one_machine_gets_a_rendezvous_port_of_its_own(tmp_path):
    config = tmp_path / "accelerate.yaml"
    config.write_text("num_machines: 1\nmixed_precision: bf16\n")
    accelerate = ["accelerate", "launch", "--config_file", str(config), "--num_processes", "2"]
    own, port = run_matrix.own_port(accelerate)
    assert own[:4] == ["accelerate", "launch", "--main_process_port", str(port)] and own[4:] == accelerate[2:]
    module = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--multi_gpu"]
    assert run_matrix.own_port(module)[0][3] == "--main_process_port"
    assert run_matrix.own_port(["torchrun", "--nnodes=1", "--nproc_per_node", "2"])[0][1] == "--standalone"
    # The command line's single machine outranks a multi-node config (its port too); a config that is no mapping is
    # accelerate's to report.
    (tmp_path / "nodes.yaml").write_text("num_machines: 2\nmain_process_ip: 10.0.0.1\nmain_process_port: 29500\n")
    (tmp_path / "list.yaml").write_text("- num_machines\n")
    for config_file in ("nodes.yaml", "list.yaml"):
        one = ["accelerate", "launch", "--config_file", str(tmp_path / config_file), "--num_machines", "1"]
        assert run_matrix.own_port(one)[0][2] == "--main_process_port"
    # A port named on the command line (either spelling) or in the config file, torchrun's own rendezvous, several
    # machines (either spelling) and plain python stay as they are.
    (tmp_path / "ported.yaml").write_text("num_machines: 1\nmain_process_port: 29555\n")
    for kept in (
        ["accelerate", "launch", "--config_file", str(config), "--main_process_port=1234"],
        ["accelerate", "launch", "--config_file", str(config), "--main-process-port", "1234"],
        ["accelerate", "launch", "--config_file", str(tmp_path / "ported.yaml")],
        ["accelerate", "launch", "--config_file", str(tmp_path / "nodes.yaml")],
        ["accelerate", "launch", "--config_file", str(config), "--num-machines", "2", "--main-process-ip", "10.0.0.1"],
        ["torchrun", "--standalone", "--nproc_per_node", "2"],
        ["torchrun", "--nnodes", "2", "--rdzv-endpoint", "10.0.0.1:29400"],
        [sys.executable],
    ):
        assert run_matrix.own_port(kept) == (kept, None)


@pytest.mark.parametrize("engine", [None, "FSDP"])
def test_local_runs_on_gpu_groups_are_launched_on_every_gpu_of_their_group(tiny_bert, tmp_path, engine):
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")
    args = ["--config", str(config), "--output_dir", str(tmp_path / "m"), "--executor", "local", "--dry_run"]
    # Four GPUs as the executor sees them (two groups of 2), and the user's own accelerate config (HF_HOME's).
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2,3", "HF_HOME": str(tmp_path / "hf")}
    if engine:
        (tmp_path / "hf" / "accelerate").mkdir(parents=True)
        (tmp_path / "hf" / "accelerate" / "default_config.yaml").write_text(f"distributed_type: {engine}\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args, "--gpus_per_run", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    share = max(1, run_matrix.cpu_cores() // 4)  # the physical cores split among 2 runs x 2 processes
    slots = f"CUDA_VISIBLE_DEVICES=0,1 OMP_NUM_THREADS={share}; CUDA_VISIBLE_DEVICES=2,3 OMP_NUM_THREADS={share}"
    assert f"2 runs at once ({slots})" in proc.stdout
    commands = [line for line in proc.stdout.splitlines() if "train.py" in line]
    # --multi_gpu would override the config's FSDP with plain DDP.
    ddp = "" if engine else "--multi_gpu "
    launch = f"accelerate.commands.launch {ddp}--num_processes 2 --gpu_ids all --num_machines 1 "
    assert len(commands) == 2 and all(launch in c for c in commands)


@pytest.mark.slow
def test_two_multi_process_runs_side_by_side_each_rendezvous_on_their_own_port(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")  # 2 datasets x 1 model x 1 seed: two runs at once
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    launcher += ["--dynamo_backend", "no", "--multi_gpu", "--num_processes", "2"]  # two gloo ranks per run
    args = ["--config", str(config), "--output_dir", str(out), "--executor", "local", "--max_parallel", "2"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args, "--launcher", shlex.join(launcher)],
        env={**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "matrix: 2 trained, 0 skipped, 0 failed of 2 runs" in proc.stdout
    ports = re.findall(r"--main_process_port (\d+)", proc.stdout)
    assert len(ports) == 2 and ports[0] != ports[1], proc.stdout
    for results in out.rglob("results.json"):
        assert json.loads((results.parent / "config.json").read_text())["resolved"]["num_processes"] == 2


def test_more_gpus_per_run_than_visible_is_an_error_not_an_empty_success(tiny_bert, tmp_path):
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")
    args = ["--config", str(config), "--executor", "local", "--output_dir", str(tmp_path / "m"), "--gpus_per_run", "3"]
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *args],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.strip() == "error: --gpus_per_run 3: only 2 GPUs are visible (0,1)."


def slots_on(*shapes: tuple[str, str]) -> list[dict[str, str]]:
    """Slot environments: (CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS) per slot, OMP_NUM_THREADS left out when ""."""
    return [{"CUDA_VISIBLE_DEVICES": g} | ({"OMP_NUM_THREADS": t} if t else {}) for g, t in shapes]


def test_runs_per_gpu_shares_each_gpu_spreading_runs_across_gpus_first(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # two GPUs as the executor sees them
    monkeypatch.setattr(run_matrix, "cpu_cores", lambda: 16)  # a 16-core host
    # Two runs per GPU: four slots, GPU 0 and GPU 1 in turn, each with a quarter of the cores.
    assert run_matrix.device_slots(1, None, runs_per_gpu=2) == slots_on(*[(g, "4") for g in "0101"])
    # --max_parallel below the slot count takes the first slots: both GPUs are used before one takes a second run.
    assert run_matrix.device_slots(1, 3, runs_per_gpu=2) == slots_on(*[(g, "5") for g in "010"])
    assert run_matrix.device_slots(1, 2, runs_per_gpu=3) == slots_on(("0", "8"), ("1", "8"))
    # One run per GPU, as before, now with its share of the cores; a lone run keeps the whole machine.
    assert run_matrix.device_slots(1, None) == slots_on(("0", "8"), ("1", "8"))
    assert run_matrix.device_slots(1, 1, runs_per_gpu=2) == slots_on(("0", ""))
    # A run of two GPUs is two processes (one per GPU), each with its share.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert run_matrix.device_slots(2, None) == slots_on(("0,1", "4"), ("2,3", "4"))
    # No GPU: --max_parallel runs, each on its share of the cores, as before.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert run_matrix.device_slots(1, 3) == [{"OMP_NUM_THREADS": "5"}] * 3
    # A lone run on a CPU sizes its threads itself (physical cores): nothing set that would pass for the user's.
    assert run_matrix.device_slots(1, None) == run_matrix.device_slots(1, 1) == [{}]


@pytest.mark.parametrize(
    "argv, gpus, message",
    [
        (["--executor", "local", "--runs_per_gpu", "0"], "0", "--runs_per_gpu must be a positive integer, got 0."),
        (["--runs_per_gpu", "2"], "0", "--runs_per_gpu is an option of --executor local."),
        (["--executor", "slurm", "--runs_per_gpu", "2"], "0", "--runs_per_gpu is an option of --executor local."),
        (
            ["--executor", "local", "--runs_per_gpu", "2", "--gpus_per_run", "2"],
            "0,1",
            "--runs_per_gpu 2 with --gpus_per_run 2: runs that share GPUs take turns on each of them, so a run on "
            "several GPUs would wait at every gradient all-reduce for its other GPUs to finish another run's work; "
            "share GPUs among runs of one GPU each.",
        ),
        (
            ["--executor", "local", "--runs_per_gpu", "2"],
            "",
            "--runs_per_gpu 2: no GPU is visible; on a CPU-only machine --max_parallel N runs N at once, each on its "
            "share of the cores.",
        ),
        (
            ["--executor", "local", "--gpus_per_run", "2"],
            "",
            "--gpus_per_run 2: no GPU is visible; on a CPU-only machine --max_parallel N runs N at once, each on its "
            "share of the cores.",
        ),
    ],
    ids=["zero", "sequential", "slurm", "multi-gpu-runs", "no-gpu", "no-gpu-groups"],
)
def test_runs_per_gpu_is_refused_in_one_line_where_it_has_no_meaning(monkeypatch, argv, gpus, message):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpus)
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main(["--datasets", "d", "--models", "m", *argv])
    assert str(err.value) == message


# Stands in for train.py: records the environment it was given, then waits until `expected` runs have started (so
# they provably ran at once) and writes the results a finished run leaves.
FAKE_TRAINER = """
import json, os, sys, time
from pathlib import Path
run_dir, started, expected = Path(sys.argv[-1]), Path(sys.argv[1]), int(sys.argv[2])
(run_dir / "env.json").write_text(json.dumps({k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")}))
(started / run_dir.name).touch()
deadline = time.time() + 60
while len(list(started.iterdir())) < expected:
    if time.time() > deadline:
        sys.exit(f"only {len(list(started.iterdir()))} of {expected} runs started at once")
    time.sleep(0.05)
(run_dir / "results.json").write_text(json.dumps({"metric": "accuracy", "validation": {"accuracy": 1.0}}))
"""


def test_runs_sharing_a_gpu_run_at_once_each_with_its_slots_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(run_matrix, "cpu_cores", lambda: 16)
    fake, started = tmp_path / "fake_train.py", tmp_path / "started"
    fake.write_text(FAKE_TRAINER)
    started.mkdir()
    runs = [run_matrix.Run(tmp_path / f"run{i}", ["--output_dir", str(tmp_path / f"run{i}")], {}) for i in range(4)]
    slots = run_matrix.device_slots(1, None, runs_per_gpu=2)
    outcome = run_matrix.execute(runs, [sys.executable, str(fake), str(started), "4"], slots, dry_run=False)
    assert len(outcome["trained"]) == 4, [run_matrix.log_tail(r.run_dir / run_matrix.OUTPUT) for r in runs]
    envs = [json.loads((r.run_dir / "env.json").read_text()) for r in runs]
    assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in envs) == ["0", "0", "1", "1"]
    assert all(e["OMP_NUM_THREADS"] == "4" for e in envs)


def test_a_run_held_or_trained_elsewhere_with_other_settings_is_refused_not_skipped(tiny_bert, tmp_path):
    """Two invocations with different train_args into one --output_dir at once: the second must not report the
    first's run as its own (skipped as "being trained elsewhere"), nor train on after it (trained meanwhile)."""
    from config import load_config_file

    out = tmp_path / "m"
    config = matrix_config(tmp_path, tiny_bert, seeds="[1]")
    first, second = run_matrix.plan(load_config_file(str(config)) | {"output_dir": str(out)}, [])
    second.run_dir.mkdir(parents=True)
    (second.run_dir / "results.json").write_text("{}")  # done: only the first run is at stake
    other = first.settings | {"learning_rate": 1e-3}
    with run_matrix.claim(first.run_dir, other) as mine:
        assert mine
        proc = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "run_matrix.py"),
                "--config",
                str(config),
                "--output_dir",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is being trained by another process with other settings (learning_rate" in proc.stdout
    assert "0 trained, 1 skipped, 0 failed, 1 refused of 2 runs" in proc.stdout
    # The same plan, once the other invocation has written its config.json: trained meanwhile.
    (first.run_dir / "config.json").write_text(json.dumps({"user_config": other}))
    with run_matrix.claim(first.run_dir, first.settings) as mine:
        assert mine and "was trained meanwhile with other settings" in run_matrix.settings_clash(first, mine)


def test_status_names_a_bookkeeping_file_it_cannot_parse(tmp_path):
    run = run_matrix.Run(tmp_path / "run", [], {})
    run.run_dir.mkdir()
    (run.run_dir / run_matrix.FAILED).write_text('{"exit_code": 2, "lo')  # cut off by a full disk
    with pytest.raises(ValueError, match=r"failed.json cannot be parsed .*; delete it"):
        run_matrix.describe(run, {})


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_matrix_stops_its_run_at_a_checkpoint_and_the_same_command_resumes(tiny_bert, tmp_path, sig):
    """``kill <matrix pid>`` (or Ctrl-C sent to it alone) while a run trains: the run is stopped at a checkpoint, not
    left training orphaned or killed without one, no further run starts, the matrix exits 128 + the signal, and the
    same command run again resumes the stopped run and trains the rest."""
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
datasets: [{SHARED_DATA / "emotion"}]
models: [{tiny_bert}]
seeds: [1, 2]
train_args: {{max_train_samples: 48, max_eval_samples: 16, num_train_epochs: 1, max_seq_length: 24,
  per_device_train_batch_size: 8, checkpointing_steps: 2}}
"""
    )
    out, ready = tmp_path / "matrix", tmp_path / "ready"
    command = [sys.executable, str(REPO / "scripts" / "run_matrix.py"), "--config", str(config)]
    command += ["--output_dir", str(out), "--launcher", f"{sys.executable} {REPO / 'tests' / 'train_probe.py'}"]
    env = {**os.environ, "PROBE_BLOCK_AT": "2", "PROBE_READY": str(ready)}
    # A session of its own, so that whatever the matrix leaves running can be found and ended by the test.
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.communicate()[0]
        os.kill(proc.pid, sig)  # the matrix's pid only, as `kill PID` does
        printed = proc.communicate(timeout=120)[0]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, printed
    first, second = out / "emotion" / tiny_bert.name / "seed1", out / "emotion" / tiny_bert.name / "seed2"
    log = (first / "train.log").read_text()
    assert "received: stopped after step 2" in log, log
    assert (first / "checkpoints" / "step_000002").is_dir() and not (first / "results.json").exists()
    assert not (first / run_matrix.FAILED).exists() and not (second / "config.json").exists()
    assert f"interrupted by {signal.Signals(sig).name}" in printed and "1 stopped" in printed, printed
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0 and "2 trained, 0 skipped, 0 failed of 2 runs" in again.stdout, again.stdout
    assert "resumed from" in (first / "train.log").read_text() and (second / "results.json").is_file()


def test_a_stopped_wait_under_slurm_says_the_same_command_resubmits_only_what_ended_unfinished(tmp_path, capsys):
    """After a Ctrl-C during --wait under Slurm, the line says that the same command is safe to run again: it skips
    the runs done, queued or running (the test below) and submits only those whose job ended unfinished."""
    job = type("Job", (), {"job_id": "4242_0"})()
    run_matrix.stopped_following([job], tmp_path, "slurm", signal.SIGINT)
    printed = capsys.readouterr().out
    assert (
        "run the same command again to resubmit the runs whose job ended unfinished (each resumes from its last "
        "checkpoint, if it has one): it skips the runs done, queued or running, and --wait then follows the plan "
        "until none is queued or running"
    ) in printed, printed


def test_a_resubmission_skips_runs_whose_slurm_job_is_still_queued_or_running(tmp_path, monkeypatch, capsys):
    """Submitting the plan again (the same command after a Ctrl-C, say) must not submit a second job for a run whose
    job is still pending in Slurm's queue (it holds no claim yet) or running: squeue says which are (faked here)."""
    out, model = tmp_path / "matrix", tmp_path / "model"
    model.mkdir()
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", str(model), "--seeds", "1", "2", "3"]
    base += ["--output_dir", str(out)]
    pending, running, ended = run_matrix.plan(
        {"datasets": [str(SHARED_DATA / "sst2")], "models": [str(model)], "seeds": [1, 2, 3], "output_dir": str(out)},
        [],
    )
    out.mkdir()
    logs = {"stdout": str(tmp_path / "o"), "stderr": str(tmp_path / "e"), "result": str(tmp_path / "r")}
    records = {
        str(run.run_dir.resolve()): {"job_id": f"4242_{i}", "cluster": "slurm", **logs, "submitted": 0}
        for i, run in enumerate((pending, running, ended))
    }
    (out / run_matrix.JOBS).write_text(json.dumps(records))
    bin_dir = tmp_path / "bin"  # squeue lists the array's tasks still in the queue; task 2 has ended
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text(
        f"#!/bin/sh\necho \"$@\" > {tmp_path / 'squeue_args'}\necho '4242_0 PENDING'\necho '4242_1 RUNNING'\n"
    )
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    submitted = []

    def submit(runs):  # records what would be submitted
        submitted.extend(run.run_dir for run in runs)
        return [fake_job(f"5151_{i}") for i in range(len(runs))]

    fake_executor(monkeypatch, submit)
    assert run_matrix.main([*base, "--executor", "slurm"]) == 0
    assert submitted == [ended.run_dir]
    printed = capsys.readouterr().out
    assert "skipped 2 runs whose Slurm job is still in the queue (4242_0 PENDING, 4242_1 RUNNING)" in printed
    assert "--jobs 4242" in (tmp_path / "squeue_args").read_text()
    # No answer from Slurm: said, and the runs are submitted (their claims still keep one from training twice at once).
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n")
    submitted.clear()
    assert run_matrix.main([*base, "--executor", "slurm"]) == 0
    assert submitted == [pending.run_dir, running.run_dir, ended.run_dir]
    assert "(Unable to contact slurm controller): a run whose job is still queued may be submitted again" in (
        capsys.readouterr().err
    )


def test_a_preemption_while_scoring_says_the_scoring_stopped_not_a_checkpoint(tmp_path, capsys):
    """Slurm's preemption signal while a finished run scores a --score_inputs file: the job log names the scoring
    and that the requeued task scores it again (the run itself is finished and kept), not a training checkpoint."""
    from types import SimpleNamespace

    task = run_matrix.RunTask(["accelerate", "launch"], str(tmp_path), grace_s=10)
    task.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    task.scoring = str(tmp_path / "ood.csv")
    run = SimpleNamespace(run_dir=tmp_path / "run")
    try:
        task.checkpoint(run)
    finally:
        task.proc.kill()
        task.proc.wait()
    printed = capsys.readouterr().out
    assert f"stopped the scoring of {tmp_path / 'ood.csv'} with {run.run_dir}" in printed
    assert "requeued to score it again" in printed and "checkpoint" not in printed


def test_a_plan_holding_a_run_train_py_would_refuse_is_refused_before_any_run(tmp_path, capsys):
    """A combination train.py refuses (here a --learning_rate grid over a variant where nothing trains at it) fails
    the whole plan up front, naming the runs, instead of failing each of those runs at its own start."""
    out = tmp_path / "out"
    config = tmp_path / "plan.yaml"
    config.write_text(
        f"""
datasets: [{SHARED_DATA / "sst2"}]
models: [m]
output_dir: {out}
variants: {{frozen: {{freeze: backbone, head_learning_rate: 1.0e-3}}, full: {{}}}}
grid: {{learning_rate: [2.0e-5, 5.0e-5]}}
"""
    )
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main(["--config", str(config), "--dry_run"])
    assert str(err.value).startswith(
        "train.py would refuse the runs of sst2 x m, variant frozen, learning_rate 2e-05 of the matrix: "
        "--learning_rate 2e-05 does nothing under --freeze backbone"
    )
    # --status still lists what a plan holds, whatever train.py would say of it.
    assert run_matrix.main(["--config", str(config), "--status"]) == 0
    assert "queued" in capsys.readouterr().out
    assert not out.exists()


# Stands in for `accelerate launch`: binds the --main_process_port it is given for as long as its run "trains" (as
# torch's rendezvous store does), failing as torch does when another process holds the port; waits until
# FAKE_EXPECTED launches have bound theirs or failed (so that they provably overlapped), then writes the results a
# finished run leaves.
FAKE_ACCELERATE = """
import json, os, socket, sys, time
from pathlib import Path
args = sys.argv[1:]
port = int(args[args.index("--main_process_port") + 1])
run_dir, started = Path(args[args.index("--output_dir") + 1]), Path(os.environ["FAKE_STARTED"])
sock = socket.socket()
try:
    sock.bind(("", port))
except OSError:
    (started / f"{run_dir.name}.failed").touch()
    sys.exit(
        "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. "
        f"port: {port}, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use"
    )
(started / run_dir.name).touch()
deadline = time.time() + 60
while len(list(started.iterdir())) < int(os.environ["FAKE_EXPECTED"]) and time.time() < deadline:
    time.sleep(0.05)
(run_dir / "results.json").write_text(json.dumps({"metric": "accuracy", "validation": {"accuracy": 1.0}}))
"""


def fake_accelerate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expected: int) -> list[str]:
    """`accelerate launch` on one machine, as the executors see it, faked by FAKE_ACCELERATE."""
    fake, started = tmp_path / "bin" / "accelerate", tmp_path / "started"
    fake.parent.mkdir()
    started.mkdir()
    fake.write_text(f"#!{sys.executable}\n{FAKE_ACCELERATE}")
    fake.chmod(0o755)
    monkeypatch.setenv("FAKE_STARTED", str(started))
    monkeypatch.setenv("FAKE_EXPECTED", str(expected))
    return [str(fake), "launch", "--num_machines", "1"]


def two_free_ports() -> tuple[int, int]:
    """Two distinct ports free now (bound at once, so the kernel cannot give one twice)."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("", 0))
        b.bind(("", 0))
        return a.getsockname()[1], b.getsockname()[1]


def test_runs_started_at_once_are_never_given_one_rendezvous_port(tmp_path, monkeypatch, capsys):
    """The kernel offers any port free at the moment it is asked, and a launcher binds it only seconds later (after
    importing torch): two runs started at once can be offered one port. Faked here deterministically: the second ask
    returns the first port again."""
    launcher = fake_accelerate(tmp_path, monkeypatch, expected=2)
    port, other = two_free_ports()
    offered = iter([port, port, other])
    monkeypatch.setattr(run_matrix, "free_port", lambda: next(offered))
    runs = [run_matrix.Run(tmp_path / f"run{i}", ["--output_dir", str(tmp_path / f"run{i}")], {}) for i in range(2)]
    outcome = run_matrix.execute(runs, launcher, [{}, {}], dry_run=False)
    assert len(outcome["trained"]) == 2, [run_matrix.log_tail(r.run_dir / run_matrix.OUTPUT) for r in runs]
    printed = capsys.readouterr().out
    assert sorted(map(int, re.findall(r"--main_process_port (\d+)", printed))) == sorted([port, other]), printed
    assert "launching again" not in printed  # not one failed launch: the second run was never given the port


def test_a_port_another_process_binds_first_is_retried_on_another_port(tmp_path, monkeypatch, capsys):
    """Another matrix on this machine (two shells, or two Slurm array tasks on one node) can bind the port a run was
    just given before its launcher does: the launch fails before any process trains, and is started again on
    another port, with a line that says so; the one executor and the Slurm task alike."""
    launcher = fake_accelerate(tmp_path, monkeypatch, expected=1)
    port, other = two_free_ports()
    run, task_run = (run_matrix.Run(tmp_path / n, ["--output_dir", str(tmp_path / n)], {}) for n in ("run", "task"))
    with socket.socket() as taken:
        taken.bind(("", port))  # held by the other process from the ask to the launch
        monkeypatch.setattr(run_matrix, "free_port", iter([port, other]).__next__)
        outcome = run_matrix.execute([run], launcher, [{}], dry_run=False)
        assert outcome["trained"] == [run.run_dir], run_matrix.log_tail(run.run_dir / run_matrix.OUTPUT)
        printed = capsys.readouterr().out
        assert (
            f"[1/1] port {port} was taken by another process before the launch could bind it (nothing ran); "
            "launching again on another port"
        ) in printed, printed
        monkeypatch.setattr(run_matrix, "free_port", iter([port, other]).__next__)
        monkeypatch.chdir(tmp_path)  # the task changes to the plan's folder
        task = run_matrix.RunTask(launcher, str(tmp_path), grace_s=10)
        assert task(task_run) == f"trained {task_run.run_dir}", run_matrix.log_tail(task_run.run_dir / "output.log")
        assert f"port {port} was taken by another process" in capsys.readouterr().out


def test_parallel_multi_process_runs_on_a_cpu_share_the_cores_among_all_their_processes(tmp_path, monkeypatch, capsys):
    """On a CPU-only machine, N runs at once of P processes each (a multi-process --launcher): each process gets
    cores / (N x P) threads, not cores / N each (which would run P times more threads than cores)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setattr(run_matrix, "cpu_cores", lambda: 16)
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", "m", "--seeds", "1", "2"]
    base += ["--output_dir", str(tmp_path / "m"), "--executor", "local", "--max_parallel", "2", "--dry_run"]
    for launcher, share in [
        ("accelerate launch --multi_gpu --num_processes 2 --mixed_precision no --num_machines 1", "4"),
        ("torchrun --nproc_per_node 4", "2"),
        ("accelerate launch --num_processes 2 --mixed_precision no", "8"),  # without --multi_gpu: one process
    ]:
        run_matrix.main([*base, "--launcher", launcher])
        assert f"local executor: 2 runs at once (OMP_NUM_THREADS={share}; OMP_NUM_THREADS={share})" in (
            capsys.readouterr().out
        ), launcher
    # More processes than cores: each gets one thread, and they still take turns on the cores.
    monkeypatch.setattr(run_matrix, "cpu_cores", lambda: 2)
    assert run_matrix.device_slots(1, 2, processes=2) == [{"OMP_NUM_THREADS": "1"}] * 2
    assert capsys.readouterr().err == (
        "warning: 2 runs at once of 2 processes each are 4 processes on 2 physical cores: they take turns on the "
        "cores even at 1 thread each; --max_parallel 1 fits them.\n"
    )


def test_max_parallel_above_what_can_run_at_once_says_what_runs_and_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(run_matrix, "cpu_cores", lambda: 16)
    assert run_matrix.device_slots(1, 8) == slots_on(("0", "8"), ("1", "8"))
    assert capsys.readouterr().err == (
        "note: --max_parallel 8: 2 runs at once, 1 on each of the 2 GPUs visible (0,1); --runs_per_gpu N puts N "
        "runs on each GPU.\n"
    )
    assert len(run_matrix.device_slots(1, 5, runs_per_gpu=2)) == 4
    assert capsys.readouterr().err.startswith("note: --max_parallel 5: 4 runs at once, 2 on each of the 2 GPUs")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert run_matrix.device_slots(2, 3) == slots_on(("0,1", "4"), ("2,3", "4"))
    assert capsys.readouterr().err == (
        "note: --max_parallel 3: 2 runs at once, 1 on each of the 2 groups of 2 GPUs (0,1; 2,3).\n"
    )
    assert run_matrix.device_slots(1, 4) == slots_on(*[(g, "4") for g in "0123"])  # as many as asked: nothing said
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # counts of one are singular
    assert run_matrix.device_slots(1, 2) == slots_on(("0", ""))
    assert capsys.readouterr().err.startswith("note: --max_parallel 2: 1 run at once, 1 on each of the 1 GPU visible")
    # Fewer runs left to train than runs at once: the idle slots would only shrink the others' share of the cores.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", "m", "--seeds", "1", "2"]
    run_matrix.main(
        [*base, "--output_dir", str(tmp_path / "m"), "--executor", "local", "--max_parallel", "4", "--dry_run"]
    )
    captured = capsys.readouterr()
    assert "local executor: 2 runs at once (OMP_NUM_THREADS=8; OMP_NUM_THREADS=8)" in captured.out
    assert "note: --max_parallel 4: 2 runs at once, as the plan has 2 runs left to train." in captured.err


def test_help_shows_every_default_and_renders(capsys):
    with pytest.raises(SystemExit) as exited:
        run_matrix.main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: ") and "matrix.yaml::" in text  # the module docstring as written
    for flag, default in [
        ("--executor", "sequential"),
        ("--gpus_per_run", "1"),
        ("--slurm_time", "4:00:00"),
        ("--slurm_signal_delay", "120"),
        ("--slurm_cluster", "slurm"),
    ]:
        assert re.search(rf"{flag} .*?\(default: {re.escape(default)}\)", text), flag
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text
    # compare.py and report.py render theirs too (a '%' in a help string would crash argparse's formatting).
    import compare
    import report

    for parse in (compare.parse_args, report.main):
        with pytest.raises(SystemExit) as exited:
            parse(["--help"])
        assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--rope ROPE Region of practical equivalence for Δ (±). (default: 0.01)" in text
    assert "(default: ROOT)" in text and "(default: None)" not in text


@pytest.mark.parametrize("seeds", [[1, 2, 3], [1, 2]], ids=["one-ended", "none-ended"])
def test_wait_on_a_rerun_follows_the_runs_an_earlier_submission_still_has_in_flight(
    tmp_path, monkeypatch, capsys, seeds
):
    """The same command given again with --wait while the first submission's jobs are still queued or running: it
    submits only the run whose job ended (if any), and --wait follows every run of the plan until none is queued or
    running, rather than return once its own job ends (or at once, with nothing to submit) as if the campaign were
    over."""
    out, model = tmp_path / "matrix", tmp_path / "model"
    model.mkdir()
    cfg = {"datasets": [str(SHARED_DATA / "sst2")], "models": [str(model)], "seeds": seeds, "output_dir": str(out)}
    runs = run_matrix.plan(cfg, [])
    out.mkdir()
    logs = {"stdout": str(tmp_path / "o"), "stderr": str(tmp_path / "e"), "result": str(tmp_path / "r")}
    records = {
        str(run.run_dir.resolve()): {"job_id": f"4242_{i}", "cluster": "slurm", **logs, "submitted": 0}
        for i, run in enumerate(runs)
    }
    (out / run_matrix.JOBS).write_text(json.dumps(records))
    # squeue lists the first two jobs (the third has ended) in its first two answers; by its third every run has
    # finished (the fake leaves their results).
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    finish = " ".join(shlex.quote(str(run.run_dir / "results.json")) for run in runs)
    (bin_dir / "squeue").write_text(
        f"#!/bin/sh\necho x >> {calls}\nif [ $(wc -l < {calls}) -le 2 ]; then echo '4242_0 RUNNING'; "
        f'echo \'4242_1 PENDING\'; else for f in {finish}; do mkdir -p "$(dirname "$f")"; echo {{}} > "$f"; done; '
        "fi\n"
    )
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(run_matrix, "FOLLOW_INTERVAL_S", 0.01)

    fake_executor(monkeypatch, lambda todo: [fake_job("5151_0", done=lambda self: True) for _ in todo])  # ends at once
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", str(model), "--seeds", *map(str, seeds)]
    assert run_matrix.main([*base, "--output_dir", str(out), "--executor", "slurm", "--wait"]) == 0
    printed = capsys.readouterr().out
    submitted = "the 1 submitted run and " if len(seeds) == 3 else ""
    assert ("submitted 1 of 3 runs as job 5151" if submitted else "nothing to submit") in printed, printed
    assert (
        f"--wait: following {submitted}the 2 runs an earlier submission has queued or running "
        "(4242_0 RUNNING, 4242_1 PENDING)"
    ) in printed, printed
    assert printed.strip().splitlines()[-2] == f"status: {len(seeds)} done of {len(seeds)}", printed
    # A Ctrl-C there: the line names no job of its own (it submitted none) and does not break on that.
    run_matrix.stopped_following([], out, "slurm", signal.SIGINT)
    assert capsys.readouterr().out.startswith(
        "interrupted: stopped following the jobs; the runs of the plan keep running under Slurm; run the same command"
    )


def test_a_dry_run_counts_what_it_would_train_and_printed_commands_survive_spaces(tmp_path, capsys):
    """A dry run's last line counts the runs it would train and those it skips (not "0 trained, 0 skipped"), and the
    commands the matrix prints for the user to run are quoted for a shell, here an output dir with a space."""
    out = tmp_path / "out dir"
    cfg = {"datasets": [str(SHARED_DATA / "sst2")], "models": ["m"], "seeds": [1, 2], "output_dir": str(out)}
    done = run_matrix.plan(cfg, [])[0].run_dir
    done.mkdir(parents=True)
    (done / "results.json").write_text(json.dumps({"metric": "accuracy", "validation": {"accuracy": 1.0}}))
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", "m", "--output_dir", str(out), "--seeds", "1"]
    assert run_matrix.main([*base, "2", "--dry_run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "matrix (dry run): 1 to train, 1 skipped (results.json exists) of 2 runs; nothing was started"
    # A finished run lacking scores of a --score_inputs file is not skipped: the matrix would score it.
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text,label\ngood,1\n")
    assert run_matrix.main([*base, "2", "--dry_run", "--score_inputs", str(reviews)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"[1/2] score {done} (results.json exists; no scores of reviews)" in lines
    assert lines[-1] == (
        "matrix (dry run): 1 to train, 1 to score, 0 skipped (results.json exists) of 2 runs; nothing was started"
    )
    assert run_matrix.main(base) == 0
    table = capsys.readouterr().out.strip().splitlines()[-1]
    assert shlex.split(table.removeprefix("table: ")) == ["python", str(REPO / "scripts" / "report.py"), str(out)]
    job = type("Job", (), {"job_id": "4242_0"})()
    run_matrix.stopped_following([job], out, "slurm", signal.SIGINT)
    stopped = capsys.readouterr().out.strip()
    assert stopped.endswith(
        f"once they have ended: {shlex.join(['python', str(REPO / 'scripts' / 'report.py'), str(out)])}"
    )


def test_a_misspelt_matrix_flag_is_named_as_one_not_as_a_train_py_flag(tmp_path):
    """Flags the matrix does not know go to train.py, so a typo of the matrix's own (--max_paralel) was refused as an
    unknown train.py flag, pointing at train.py --help; a flag close to one of the matrix's names it."""
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", "m", "--output_dir", str(tmp_path), "--dry_run"]
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main([*base, "--max_paralel", "2"])
    assert (
        str(err.value)
        == "--max_paralel is a flag of neither run_matrix.py nor train.py (did you mean --max_parallel?)."
    )
    # A train.py flag, or an abbreviation train.py takes, is train.py's to judge.
    with pytest.raises(run_matrix.UsageError, match=r"train\.py flags of the matrix: unrecognized arguments: --colour"):
        run_matrix.main([*base, "--colour", "red"])
    assert run_matrix.main([*base, "--max_seq", "32"]) == 0


def test_a_dry_run_refuses_the_slurm_time_the_submission_would_refuse(tmp_path):
    """--executor slurm --slurm_time 4h passed --dry_run, the check a user makes before submitting; the submission
    then refused it. The dry run now gives the same line."""
    argv = ["--datasets", str(REPO / "sample_data"), "--models", "m", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main([*argv, "--executor", "slurm", "--slurm_time", "4h", "--dry_run"])
    assert str(err.value) == "--slurm_time '4h': use minutes or Slurm's H:M:S / D-H:M:S (e.g. 4:00:00)."
    assert not (tmp_path / "out").exists()


def test_a_column_the_dataset_lacks_is_refused_before_any_run_in_one_line(tmp_path, capsys):
    """A --label_column the dataset lacks passed --dry_run ("2 to train"), then every run failed on it in turn: the
    matrix (and its dry run) reads each local dataset as train.py will before any run, and says it once, naming the
    dataset and train.py's reason."""
    base = ["--datasets", str(REPO / "sample_data"), "--models", "m", "--seeds", "1", "2"]
    base += ["--output_dir", str(tmp_path / "m")]
    for mode in (["--dry_run"], []):  # a dry run, and a campaign before its first run
        with pytest.raises(run_matrix.UsageError, match=r"train\.py would refuse the runs of sample_data .*'stars'"):
            run_matrix.main([*base, *mode, "--label_column", "stars"])
    assert not (tmp_path / "m").exists()
    assert run_matrix.main([*base, "--dry_run"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("matrix (dry run): 2 to train")
    # Slurm's compute nodes may see other files than the machine that submits: a warning there.
    assert run_matrix.main([*base, "--dry_run", "--executor", "slurm", "--label_column", "stars"]) == 0
    assert "warning: train.py would refuse the runs of sample_data" in capsys.readouterr().err
