"""Exact resume: an interrupted and resumed run ends with the same final weights, losses and metrics as an
uninterrupted one, mid-epoch and at an epoch boundary, in one process and in two, stopped by a signal sent to
the launcher's pid the way a scheduler or a container stop sends it."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import accelerate
import psutil
import pytest
import torch
import train_probe
from packaging.version import Version

import train
from conftest import ACCELERATE_LAUNCH, REPO, RESUME_FLAGS, free_port, sigterm_when_scoring, tiny_args

FLAGS = RESUME_FLAGS


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def losses(run: Path) -> dict[int, float]:
    """Logged training loss per optimizer step; every step must be logged exactly once."""
    records = [r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    steps = [r["step"] for r in records]
    assert len(steps) == len(set(steps)), f"steps logged twice: {steps}"
    return {r["step"]: r["loss"] for r in records}


def assert_same_run(reference: Path, resumed: Path, ref_final: Path, resumed_final: Path) -> None:
    """Same loss at every step, same final weights, same best step and scores."""
    a, b = losses(reference), losses(resumed)
    assert a.keys() == b.keys()
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), f"loss differs at step {step}"
    wa, wb = torch.load(ref_final), torch.load(resumed_final)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), f"final weight {key} differs"
    ra, rb = (json.loads((run / "results.json").read_text()) for run in (reference, resumed))
    assert ra["best_step"] == rb["best_step"] and ra["global_step"] == rb["global_step"]
    assert ra["train_samples"] == rb["train_samples"]
    for split in ("validation", "test"):
        assert rb[split]["macro_f1"] == pytest.approx(ra[split]["macro_f1"], abs=1e-6)
        assert rb[split]["loss"] == pytest.approx(ra[split]["loss"], rel=1e-4)
    # Every evaluation's recall per class in metrics.jsonl, those logged after the resume included.
    recall = [
        {r["step"]: r["eval_recall_per_class"] for r in read_jsonl(run / "metrics.jsonl") if "eval_macro_f1" in r}
        for run in (reference, resumed)
    ]
    assert recall[0] and recall[0] == recall[1]


@pytest.fixture
def probe():
    """train.py's test hooks, removed after the test."""
    yield train_probe
    train_probe.uninstall()


@pytest.mark.parametrize(
    ("stop_at", "logging_steps"),
    [(5, 1), (6, 1), (8, 3)],
    # Logged every 3 steps, the window of steps 7-9 holds the stop at 8: its mean loss must count steps 7 and 8 too.
    ids=["mid-epoch-0", "epoch-boundary", "mid-epoch-1-inside-a-logging-window"],
)
def test_resume_in_process_matches_uninterrupted(tiny_bert, tmp_path, probe, stop_at, logging_steps):
    ref = tmp_path / "reference"
    flags = [*FLAGS, "--logging_steps", str(logging_steps)]
    train_probe.install(final=str(tmp_path / "ref.pt"), epochs=str(tmp_path / "ref_epochs"))
    train.main(tiny_args(tiny_bert, ref, None, *flags))

    run = tmp_path / "interrupted"
    flags += ["--checkpointing_steps", str(stop_at)]
    train_probe.install(block_at=stop_at, self_signal=True, final=str(tmp_path / "run.pt"), epochs=str(tmp_path / "ep"))
    with pytest.raises(SystemExit) as stopped:
        train.main(tiny_args(tiny_bert, run, None, *flags))
    assert stopped.value.code == 143
    assert [p.name for p in train.checkpoint_dirs(run)] == [f"step_{stop_at:06d}"]
    assert not (run / "results.json").exists()
    train.main(tiny_args(tiny_bert, run, None, *flags, "--resume_from_checkpoint", "latest"))
    # Sampler passes: the epochs started before the stop, then the resumed ones continue from the stop's epoch.
    ref_epochs = (tmp_path / "ref_epochs").read_text().split()
    assert ref_epochs == ["0", "1", "2"]
    started = -(-stop_at // 6)
    assert (tmp_path / "ep").read_text().split() == ref_epochs[:started] + ref_epochs[stop_at // 6 :]
    assert_same_run(ref, run, tmp_path / "ref.pt", tmp_path / "run.pt")


# ---- launched as users launch it, the signal sent to the launcher's pid -----------------------------------------

LAUNCHERS = {
    "python": lambda script: [sys.executable, str(script)],
    "accelerate-1": lambda script: [
        *ACCELERATE_LAUNCH,
        "--num_processes",
        "1",
        str(script),
    ],
    "accelerate-2": lambda script: [
        *ACCELERATE_LAUNCH,
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        free_port(),
        str(script),
    ],
    "torchrun-2": lambda script: [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port on localhost, chosen by the c10d rendezvous
        "--nproc_per_node",
        "2",
        str(script),
    ],
}
PROBE = REPO / "tests" / "train_probe.py"


def launch(mode: str, args: list[str], env_extra: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Start train_probe.py under ``mode``'s launcher, in its own session so stray children can be found."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env_extra}
    if mode.endswith("-2"):
        env["ACCELERATE_USE_CPU"] = "true"  # two gloo ranks on a CPU-only machine
    return subprocess.Popen(
        [*LAUNCHERS[mode](PROBE), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    """Wait for the launcher and return its output."""
    out, _ = proc.communicate(timeout=timeout)
    return out


def wait_gone(pids: list[int], timeout: float = 120) -> None:
    """Wait until every process of the run has exited (an orphaned trainer keeps running after its launcher)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"processes {alive} still running {timeout}s after the stop signal")


# Exit status of the launcher after SIGTERM to its pid: python train.py exits 143 itself; accelerate's
# single-process launcher either dies of the signal (accelerate < 1.16; train.py gets SIGTERM as its parent dies) or
# passes it on, waits up to 5 s for train.py and exits 143 (1.16 on); with several processes torchrun's agent forwards
# the signal, waits for its workers, then exits 1 (accelerate 1.16 on: its launcher exits 143 around the agent).
_NEW_LAUNCHER = Version(accelerate.__version__).release >= (1, 16)
LAUNCHER_EXIT = {
    "python": 143,
    "accelerate-1": 143 if _NEW_LAUNCHER else -signal.SIGTERM,
    "accelerate-2": 143 if _NEW_LAUNCHER else 1,
    "torchrun-2": 1,
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(LAUNCHERS))
def test_sigterm_to_the_launcher_checkpoints_and_resume_is_exact(tiny_bert, tmp_path, mode):
    processes = 2 if mode.endswith("-2") else 1
    steps_per_epoch = 6 // processes
    stop_at = steps_per_epoch + 1  # mid-epoch 1: the resumed run crosses the boundary into epoch 2
    flags = [*FLAGS, "--checkpointing_steps", str(stop_at)]

    ref = tmp_path / "reference"
    proc = launch(mode, tiny_args(tiny_bert, ref, None, *flags), {"PROBE_FINAL": str(tmp_path / "ref.pt")}, tmp_path)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]

    run = tmp_path / "interrupted"
    ready = tmp_path / "ready"
    env = {"PROBE_BLOCK_AT": str(stop_at), "PROBE_READY": str(ready), "PROBE_FINAL": str(tmp_path / "run.pt")}
    proc = launch(mode, tiny_args(tiny_bert, run, None, *flags), env, tmp_path)
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), finish(proc)[-3000:]
    family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    os.kill(proc.pid, signal.SIGTERM)  # the launcher's pid, as `kill PID` or a container stop does
    out = finish(proc)
    wait_gone(family)
    assert proc.returncode == LAUNCHER_EXIT[mode], out[-3000:]
    assert "forcefully" not in out.lower(), out[-3000:]  # no worker had to be SIGKILLed
    log = (run / "train.log").read_text()
    assert f"SIGTERM received: stopped after step {stop_at}" in log
    assert [p.name for p in train.checkpoint_dirs(run)] == [f"step_{stop_at:06d}"]
    assert not (run / "results.json").exists()

    # One launcher resumes by naming the run folder itself (its newest checkpoint) with the run's flags again, as the
    # README allows; the others with the stop line's command alone (the run's other flags read from its config.json).
    if mode == "torchrun-2":
        resume = tiny_args(tiny_bert, run, None, *flags, "--resume_from_checkpoint", str(run))
    else:
        resume = ["--output_dir", str(run), "--resume_from_checkpoint", "latest"]
        assert f"continue with {shlex.join(resume)} alone" in log
    proc = launch(mode, resume, env | {"PROBE_BLOCK_AT": ""}, tmp_path)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert_same_run(ref, run, tmp_path / "ref.pt", tmp_path / "run.pt")


@pytest.mark.slow
def test_ctrl_c_checkpoints_exits_130_and_resumes_with_other_cpu_threads_and_copied_files(tiny_bert, tmp_path):
    stop_at = 7  # mid-epoch 1
    flags = [*FLAGS, "--checkpointing_steps", str(stop_at)]
    ref = tmp_path / "reference"
    proc = launch(
        "python", tiny_args(tiny_bert, ref, None, *flags), {"PROBE_FINAL": str(tmp_path / "ref.pt")}, tmp_path
    )
    assert proc.wait(timeout=300) == 0, finish(proc)[-3000:]

    run, ready = tmp_path / "interrupted", tmp_path / "ready"
    env = {"PROBE_BLOCK_AT": str(stop_at), "PROBE_READY": str(ready), "PROBE_FINAL": str(tmp_path / "run.pt")}
    proc = launch("python", tiny_args(tiny_bert, run, None, *flags), env, tmp_path)
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), finish(proc)[-3000:]
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends
    out = finish(proc)
    assert proc.returncode == 130, out[-3000:]
    assert f"SIGINT received: stopped after step {stop_at}" in (run / "train.log").read_text()
    assert [p.name for p in train.checkpoint_dirs(run)] == [f"step_{stop_at:06d}"]

    # --cpu_threads is how the run uses this machine, not what it computes: a resume may change it. The data and the
    # model may be read from copies in another folder (a requeued job's local scratch): the same run.
    copied = shutil.copytree(REPO / "sample_data", tmp_path / "scratch" / "sample_data")
    model = shutil.copytree(tiny_bert, tmp_path / "scratch" / "model")
    resume = tiny_args(model, run, copied, *flags, "--resume_from_checkpoint", "latest", "--cpu_threads", "2")
    proc = launch("python", resume, env | {"PROBE_BLOCK_AT": ""}, tmp_path)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert_same_run(ref, run, tmp_path / "ref.pt", tmp_path / "run.pt")


@pytest.mark.parametrize(("version", "delay"), [("1.15.0", None), ("1.16.0", 5.0), ("2.0.0", 5.0)])
def test_the_launchers_kill_delay_follows_the_accelerate_version(monkeypatch, version, delay):
    monkeypatch.setattr(accelerate, "__version__", version)
    monkeypatch.setattr(train, "under_single_process_launcher", lambda parent: True)
    assert train.launcher_kill_delay() == delay
    monkeypatch.setattr(train, "under_single_process_launcher", lambda parent: False)
    assert train.launcher_kill_delay() is None


def test_no_kill_delay_under_torchrun_s_agent(monkeypatch):
    """With several processes torchrun's agent (TORCHELASTIC_RUN_ID set) is the parent: it waits 30 s itself."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    assert not train.under_single_process_launcher(os.getppid()) and train.launcher_kill_delay() is None


@pytest.mark.parametrize(
    ("agent_argv", "env", "delay"),
    [
        (["torchrun", "--nproc_per_node", "2", "train.py"], {}, 30),
        (["torchrun", "--shutdown-timeout", "90", "train.py", "--seed", "1"], {"PET_SHUTDOWN_TIMEOUT": "5"}, 90),
        (["python", "-m", "torch.distributed.run", "--shutdown_timeout=12", "train.py"], {}, 12),
        (["torchrun", "train.py", "--shutdown-timeout", "7"], {}, 30),  # train.py's own argument, not the agent's
        (["accelerate", "launch", "--multi_gpu", "train.py"], {"PET_SHUTDOWN_TIMEOUT": "45"}, 45),
        (["accelerate", "launch", "--multi_gpu", "train.py"], {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "60"}, 60),
    ],
)
def test_a_stop_after_the_last_step_under_torchrun_names_its_agents_kill(tmp_path, agent_argv, env, delay):
    """torch's elastic agent (torchrun; accelerate launch with several processes) passes a stop signal on to the ranks
    and kills them --shutdown-timeout seconds later (PET_SHUTDOWN_TIMEOUT, TORCH_ELASTIC_SHUTDOWN_TIMEOUT, 30 s): the
    line after the last step says so, as it does for accelerate's single-process launcher."""
    assert train.agent_shutdown_timeout(agent_argv, "train.py", env) == delay
    assert (
        f"torchrun's agent (accelerate launch's too, with several processes) kills the ranks {delay} s after passing "
        "the signal on: if it does before results.json is written, best_model/ (step 4) is complete"
    ) in train.late_stop_note(tmp_path, 4, None, agent_delay=delay)


def test_a_checkpoint_slower_than_the_launchers_grace_is_reported_once(tiny_bert, tmp_path, monkeypatch):
    """Under accelerate 1.16's single-process launcher, a stop signal's checkpoint has 5 s before SIGKILL: a run
    whose checkpoints take longer is told to signal train.py itself."""
    monkeypatch.setattr(train, "launcher_kill_delay", lambda: 0.0)  # every checkpoint is "too slow"
    run = tmp_path / "run"
    train.main(tiny_args(tiny_bert, run, None, *FLAGS, "--checkpointing_steps", "2"))
    log = (run / "train.log").read_text()
    assert log.count("checkpoint written") > 1
    assert log.count(f"signal train.py itself (kill -TERM {os.getpid()}), not the launcher") == 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["accelerate-1", "python"])
def test_what_the_launchers_kill_would_cut_short_is_reported(tiny_bert, tmp_path, mode):
    """Launched as users launch it, with checkpoints made 3 s slower: under accelerate >= 1.16's single-process
    launcher (5 s from SIGTERM to SIGKILL) the log says to signal train.py itself; under python train.py nothing. A
    SIGTERM to that launcher while the best model is scored (slowly) is cut short by its SIGKILL before results.json:
    the log says so and how to get the results, and best_model/ is complete."""
    run, ready = tmp_path / "run", tmp_path / "scoring"
    args = tiny_args(tiny_bert, run, None, *FLAGS, "--checkpointing_steps", "6")
    killing = mode == "accelerate-1" and _NEW_LAUNCHER
    env = {"PROBE_SLOW_CHECKPOINT": "3"} | ({"PROBE_SCORING_READY": str(ready)} if killing else {})
    proc = launch(mode, args, env, tmp_path)
    deadline = time.monotonic() + 240
    while killing and not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if killing:
        assert ready.exists(), finish(proc)[-3000:]
        family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
        os.kill(proc.pid, signal.SIGTERM)  # the launcher's pid, while train.py scores the best model
    out = finish(proc)
    log = (run / "train.log").read_text()
    assert "checkpoint written" in log, out[-3000:]
    warned = "signal train.py itself (kill -TERM" in log
    assert warned == killing, out[-3000:]
    if not killing:
        assert proc.returncode == 0 and (run / "results.json").is_file(), out[-3000:]
        return
    wait_gone(family)
    assert proc.returncode == 143 and not (run / "results.json").exists(), out[-3000:]
    assert "accelerate launch kills train.py 5 s after passing the signal on: if it does before results.json" in log
    assert "python evaluate.py --run_dir" in log and "trains again from step_000012" in log
    assert "the run is finished" not in log
    best = run / "best_model"
    assert {"model.safetensors", "config.json", "tokenizer_config.json", "best.json"} <= {
        p.name for p in best.iterdir()
    }


# ---- a stop before the first step, settings that cannot act, a resume from an older checkpoint -------------------


class Killed(Exception):
    """What a stop signal's default action would do to train.py (end it), raised instead of ending pytest."""


@pytest.fixture
def default_stop_signals():
    """SIGTERM and SIGINT raise Killed wherever train.py does not handle them itself."""

    def killed(signum, frame):
        raise Killed(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, killed) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize(
    ("stage", "sig"),
    [("tokenize_splits", signal.SIGINT), ("build_model", signal.SIGTERM), ("log_plan", signal.SIGTERM)],
    ids=["ctrl-c-while-tokenizing", "sigterm-while-the-model-is-built", "sigterm-after-config-json"],
)
def test_a_stop_before_the_first_step_leaves_a_run_the_same_command_continues(
    tiny_bert, tmp_path, monkeypatch, capsys, default_stop_signals, stage, sig
):
    """A signal while the data is tokenized or the model built ends the process at once with one line and leaves no
    run in the folder (the same command runs again); once config.json is written, the run checkpoints after its
    first step, as it would mid-run."""
    real = getattr(train, stage)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(train, stage, signalled)
    run = tmp_path / "run"
    # Neither setting can act in a 2-step run: each is said in one line (and the run still trains).
    args = tiny_args(tiny_bert, run, None, "--max_steps", "2", "--checkpointing_steps", "2")
    with pytest.raises(SystemExit) as stopped:
        train.main(args)
    name = signal.Signals(sig).name
    assert stopped.value.code == (130 if sig == signal.SIGINT else 143)
    err = capsys.readouterr().err
    if stage == "log_plan":
        assert f"{name} received: stopped after step 1 with a checkpoint" in err
        assert [p.name for p in train.checkpoint_dirs(run)] == ["step_000001"]
        return
    line = f"{name} received before training started: nothing was trained or saved yet; run the same command again"
    assert line in err
    assert not any((run / marker).exists() for marker in train.RUN_MARKERS)
    if stage == "tokenize_splits":
        return
    assert line in (run / "train.log").read_text()
    monkeypatch.undo()
    assert train.main(args)["global_step"] == 2
    log = (run / "train.log").read_text()
    assert "--max_steps 2 overrides --num_train_epochs 2 (as in the HF Trainer): 2 optimizer steps" in log
    assert "--checkpointing_steps 2 writes no checkpoint in this run" in log


# Loaded ahead of the script (PYTHONPATH): the first import of torch says so on stdout and then waits there, so a
# signal lands while train.py or evaluate.py is still importing, before its main() runs.
HOLD_TORCH_IMPORT = """
import sys, time

class HoldTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            print("importing torch", flush=True)
            time.sleep(120)

sys.meta_path.insert(0, HoldTorch())
"""


@pytest.mark.parametrize(
    ("script", "sig", "what"),
    [
        ("train.py", signal.SIGINT, "training started: nothing was trained or saved yet"),
        ("evaluate.py", signal.SIGTERM, "scoring started: nothing was scored or written yet"),
    ],
)
def test_a_stop_while_the_script_still_imports_torch_is_one_line(tmp_path, script, sig, what):
    """Ctrl-C (or a SIGTERM) in the first seconds, while torch and transformers are still being imported: one line
    and 128 + the signal's number, not a KeyboardInterrupt traceback from inside torch (nor SIGTERM's silent death)."""
    (tmp_path / "sitecustomize.py").write_text(HOLD_TORCH_IMPORT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout.readline() == b"importing torch\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    name = signal.Signals(sig).name
    lines = err.decode().splitlines()
    assert len(lines) == 1, err.decode()
    assert lines[0].endswith(f" ERROR {name} received before {what}; run the same command again")
    assert proc.returncode == 128 + sig


class TwoRanks:
    """An accelerator of two processes whose collectives the other rank answers with its stop flag, or, gone (it left
    at a stop signal before its switch), fails on as gloo does; ``signal_here`` lands on this rank meanwhile."""

    num_processes = 2
    device = torch.device("cpu")

    def __init__(self, other: float | None, signal_here: bool = False) -> None:
        self.other, self.signal_here = other, signal_here

    def reduce(self, tensor: torch.Tensor, reduction: str) -> torch.Tensor:
        if self.signal_here:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.other is None:
            raise RuntimeError("Connection closed by peer. This is typically caused by a remote worker crashing.")
        return tensor + self.other


@pytest.mark.parametrize(
    ("other", "signal_here", "outcome"),
    [
        (0.0, False, "trains"),
        (1.0, False, "stops"),
        (0.0, True, "trains"),
        (None, True, "stops"),
        (None, False, "fails"),
    ],
    ids=[
        "no-signal",
        "signal-on-the-other-rank-before-its-switch",
        "signal-here-while-the-ranks-switch",
        "the-other-rank-left-at-the-signal",
        "the-other-rank-crashed",
    ],
)
def test_the_ranks_switch_to_checkpointing_on_a_stop_together(default_stop_signals, other, signal_here, outcome):
    """A signal that reaches one rank before it switches from "stop at once" to "checkpoint after the next step" stops
    every rank before training (nothing was changed yet): that rank leaves at once, and the others would otherwise
    train on into a gloo error traceback, leaving a config.json and no checkpoint, which refuses the same command. One
    that lands once all have switched (during the switch's collective) is a stop after the next step on every rank;
    a rank lost without a signal failed on its own, and that keeps its traceback."""
    expected = {"stops": pytest.raises(train.StopBeforeTraining), "fails": pytest.raises(RuntimeError, match="peer")}
    with train.StopRequested() as stopper, expected.get(outcome, contextlib.nullcontext()):
        stopper.training(TwoRanks(other, signal_here))
    assert not stopper.before_training
    assert stopper.signal_name == ("SIGTERM" if signal_here else None)
    assert stopper.exit_code == 143


def test_a_stop_before_the_first_step_removes_the_default_run_folder_it_created(
    tiny_bert, tmp_path, monkeypatch, capsys, default_stop_signals
):
    """Without --output_dir the run makes a timestamped folder; stopped before training, it removes that folder (and
    the empty ones it made above it) again: the same command makes a new one, and report.py would list the empty one.
    A file someone else put there keeps the folder."""
    runs = tmp_path / "runs"
    runs.mkdir()
    args = tiny_args(tiny_bert, tmp_path / "unused", None, "--max_steps", "2")
    at = args.index("--output_dir")
    args[at : at + 2] = []
    args[args.index("--runs_root") + 1] = str(runs)
    line = "SIGTERM received before training started: nothing was trained or saved yet; run the same command again"
    real = train.build_model

    def signalled(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **kw)

    monkeypatch.setattr(train, "build_model", signalled)
    with pytest.raises(SystemExit) as stopped:
        train.main(args)
    assert stopped.value.code == 143
    assert line in capsys.readouterr().err
    assert list(runs.iterdir()) == []

    def noted_then_signalled(*a, **kw):
        next(runs.rglob("train.log")).with_name("notes.txt").write_text("mine")
        return signalled(*a, **kw)

    monkeypatch.setattr(train, "build_model", noted_then_signalled)
    with pytest.raises(SystemExit):
        train.main(args)
    notes = next(runs.rglob("notes.txt"))
    assert notes.read_text() == "mine" and line in (notes.parent / "train.log").read_text()


def test_bad_input_found_as_late_as_the_schedule_leaves_no_run_folder(tiny_bert, tmp_path):
    """The last input check (the warmup against the step count, known once the data is tokenized) comes before the
    timestamped run folder and its train.log are made: a refused run leaves no folder for report.py to list."""
    runs = tmp_path / "runs"
    args = tiny_args(tiny_bert, tmp_path / "unused", None, "--max_steps", "2", "--warmup_steps", "2")
    at = args.index("--output_dir")
    args[at : at + 2] = []
    args[args.index("--runs_root") + 1] = str(runs)
    with pytest.raises(train.ConfigError, match="--warmup_steps 2 is not below the run's 2 optimizer steps"):
        train.main(args)
    assert not runs.exists() or list(runs.iterdir()) == []


def test_a_checkpointing_interval_the_run_never_reaches_is_said(monkeypatch):
    cfg = train.TrainConfig(checkpointing_steps="500")
    assert train.idle_checkpointing(cfg, steps_per_epoch=40, max_steps=120) == (
        "--checkpointing_steps 500 writes no checkpoint in this run: none of its 120 optimizer steps before the last "
        "is a multiple of 500 (the last writes results.json; only a stop signal writes one); give "
        "--checkpointing_steps 119 or lower for a checkpoint to be written."
    )
    epoch = train.TrainConfig(checkpointing_steps="epoch")
    assert train.idle_checkpointing(epoch, steps_per_epoch=40, max_steps=40) == (
        "--checkpointing_steps epoch writes no checkpoint in this run: its 40 optimizer steps end in its first epoch "
        "(the last writes results.json; only a stop signal writes one); give --checkpointing_steps 39 or lower for a "
        "checkpoint to be written."
    )
    acting = [("119", 120), ("epoch", 41), ("1", 2)]
    for every, max_steps in acting:
        assert train.idle_checkpointing(train.TrainConfig(checkpointing_steps=every), 40, max_steps) is None
    assert train.idle_checkpointing(train.TrainConfig(), 40, 120) is None  # no checkpoints asked for
    assert train.idle_checkpointing(train.TrainConfig(checkpointing_steps="5"), 40, 1) is None  # nothing to protect


def test_max_steps_over_explicit_epochs_is_said_only_when_both_were_given(tmp_path):
    def note(*argv: str) -> str | None:
        cfg = train.parse_config(list(argv), train.TrainConfig)
        return train.epochs_overridden(cfg, train.given_flags(list(argv)), steps_per_epoch=40)

    assert note("--max_steps", "100") is None  # the default epochs are nobody's choice
    assert note("--num_train_epochs", "5") is None
    assert note("--num_train_epochs", "3", "--max_steps", "100") == (
        "--max_steps 100 overrides --num_train_epochs 3 (as in the HF Trainer): 100 optimizer steps, 2.5 epochs of "
        "40 steps."
    )
    config = tmp_path / "run.yaml"
    config.write_text("num_train_epochs: 2\n")
    assert "overrides --num_train_epochs 2" in note("--config", str(config), "--max_steps", "100")


def test_a_flag_over_the_config_files_value_is_said_before_the_inputs_are_read(
    tiny_bert, tmp_path, monkeypatch, capsys
):
    """--config run.yaml --learning_rate 3e-5 where the file says 2e-5: train.py (and evaluate.py) say so in one line,
    held for train.log, before any input is read."""
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 2e-5\n")

    def stop(*args, **kwargs):
        raise RuntimeError("inputs not read in this test")

    line = f"--learning_rate 3e-05 on the command line overrides {config}'s 2e-05"
    monkeypatch.setattr(train, "load_inputs", stop)
    with pytest.raises(RuntimeError, match="inputs not read"):
        train.main(["--config", str(config), *tiny_args(tiny_bert, tmp_path / "run"), "--learning_rate", "3e-5"])
    assert line in capsys.readouterr().err
    import evaluate

    config.write_text("split: validation\n")
    monkeypatch.setattr(evaluate, "run_folder", stop)
    with pytest.raises(RuntimeError, match="inputs not read"):
        evaluate.main(["--config", str(config), "--split", "test"])
    assert f"--split test on the command line overrides {config}'s validation" in capsys.readouterr().err


def test_counts_of_one_are_singular_in_the_lines_a_run_says():
    from types import SimpleNamespace

    cfg = train.parse_config(["--max_steps", "1", "--num_train_epochs", "1"], train.TrainConfig)
    assert train.epochs_overridden(cfg, {"max_steps", "num_train_epochs"}, steps_per_epoch=1).endswith(
        "1 optimizer step, 1 epoch of 1 step."
    )
    batch = train.TrainConfig(per_device_train_batch_size=100, gradient_accumulation_steps=2)
    assert train.short_epoch(batch, effective=48, micro_batches=1, processes=1).startswith(
        "an optimizer step trains on at most 48 rows (an epoch holds 1 micro-batch of at most 100 rows per process)"
    )
    assert train.short_epoch(batch, effective=200, micro_batches=2, processes=1) is None
    with pytest.raises(train.UsageError, match="asks for 1 micro-batch per optimizer step, --gradient_accumulation"):
        train.check_accumulation(SimpleNamespace(gradient_accumulation_steps=1), 2)
    patience = train.TrainConfig(early_stopping_patience=1, eval_steps=1)
    assert "of its 1 optimizer step it evaluates 0 times before its last step (every 1 step, --eval_steps)" in (
        train.idle_patience(patience, steps_per_epoch=1, max_steps=1)
    )
    with pytest.raises(train.ConfigError, match="is not below the run's 1 optimizer step: "):
        train.check_warmup(train.TrainConfig(warmup_steps=1), 1)


def test_a_checkpoint_a_resume_set_aside_is_named_as_such_and_continues_only_in_a_folder_of_its_own(tmp_path):
    """checkpoints/abandoned_1/step_N belongs to training the run went on without: resumed in its run, best_model/
    (same step, other branch) and metrics.jsonl would mix the two; the line says what it is and the two ways on."""
    run = tmp_path / "run"
    aside = run / "checkpoints" / "abandoned_1" / "step_000006"
    aside.mkdir(parents=True)
    (aside / "meta.json").write_text(json.dumps({"step": 6}))
    for name in ("model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl"):
        (aside / name).write_text("")
    line = (
        f"--resume_from_checkpoint {aside} is a checkpoint that a resume from an earlier one set aside in "
        f"{run.resolve()}/checkpoints/abandoned_1/: the run's best_model/ and metrics.jsonl went on without its "
        "training, so it cannot continue there; resume the run's own (--resume_from_checkpoint latest), or continue "
        "this one in a folder of its own (--output_dir NEW_RUN)."
    )
    for output_dir in ([], ["--output_dir", str(run)]):
        cfg = train.parse_config(["--resume_from_checkpoint", str(aside), *output_dir], train.TrainConfig)
        with pytest.raises(train.UsageError) as refused:
            train.resolve_run_dir(cfg)
        assert str(refused.value) == line
    new = tmp_path / "branch"  # not made yet: the resume makes it
    argv = ["--resume_from_checkpoint", str(aside), "--output_dir", str(new), "--runs_root", str(tmp_path / "runs")]
    assert train.prepare_run_dir(train.parse_config(argv, train.TrainConfig), None) == (new, aside)


def test_a_run_folder_given_to_resume_continues_that_run_from_its_newest_checkpoint(tmp_path):
    """--resume_from_checkpoint RUN (or RUN/checkpoints) means --output_dir RUN --resume_from_checkpoint latest."""
    run = tmp_path / "run"
    (run / "config.json").parent.mkdir()
    (run / "config.json").write_text(json.dumps({"user_config": {}, "resolved": {}}))
    for step in (2, 4):
        checkpoint = run / "checkpoints" / f"step_{step:06d}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "meta.json").write_text(json.dumps({"step": step}))
        for name in ("model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl"):
            (checkpoint / name).write_text("")

    def resolve(*argv):
        return train.resolve_run_dir(train.parse_config(list(argv), train.TrainConfig))

    newest = run / "checkpoints" / "step_000004"
    assert resolve("--resume_from_checkpoint", str(run)) == (run, newest)
    assert resolve("--resume_from_checkpoint", str(run / "checkpoints")) == (run, newest)
    assert resolve("--resume_from_checkpoint", str(run), "--output_dir", str(run)) == (run, newest)
    with pytest.raises(train.UsageError) as refused:
        resolve("--resume_from_checkpoint", str(run), "--output_dir", str(tmp_path / "other"))
    assert str(refused.value) == (
        f"--resume_from_checkpoint {run} is the run {run}, not --output_dir {tmp_path / 'other'}; drop --output_dir "
        "(the run continues in its own folder), or resume one of its checkpoints into another folder."
    )
    # A step number mistyped (or a checkpoint --save_total_limit removed): "no meta.json" spoke of a folder not there.
    with pytest.raises(train.UsageError) as refused:
        resolve("--resume_from_checkpoint", str(run / "checkpoints" / "step_000003"))
    assert str(refused.value) == (
        f"--resume_from_checkpoint {run / 'checkpoints' / 'step_000003'}: no such folder; the run's checkpoints: "
        "step_000002, step_000004."
    )
    (run / "best_model").mkdir()
    with pytest.raises(train.UsageError) as refused:
        resolve("--resume_from_checkpoint", str(run / "best_model"))
    assert str(refused.value) == (
        f"--resume_from_checkpoint {run / 'best_model'}: not a checkpoint folder (no meta.json); pass a run's "
        "checkpoints/step_N folder, the run's folder, or latest with --output_dir RUN."
    )
    # A finished run is named as finished, also where it kept no checkpoint ("no checkpoint in" said less).
    shutil.rmtree(run / "checkpoints")
    (run / "results.json").write_text("{}")
    with pytest.raises(train.UsageError, match=r"the run in .* has finished \(results.json; its best model is"):
        resolve("--resume_from_checkpoint", str(run))


def test_a_resume_from_an_older_checkpoint_sets_the_later_ones_aside(tiny_bert, tmp_path, probe):
    """The checkpoints after the one resumed from belong to the training the resume abandons: --save_total_limit must
    not delete the resumed run's own new checkpoints in their favour, nor `latest` pick one of them."""
    run = tmp_path / "run"
    flags = ["--max_steps", "10", "--checkpointing_steps", "2"]
    train_probe.install(block_at=2, self_signal=True)
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, run, None, *flags))
    # The abandoned future: two later checkpoints of this run (their contents are not read).
    for step in (4, 6):
        shutil.copytree(run / "checkpoints" / "step_000002", run / "checkpoints" / f"step_{step:06d}")

    older = run / "checkpoints" / "step_000002"
    flags = ["--max_steps", "10", "--checkpointing_steps", "1", "--save_total_limit", "2"]
    train_probe.install(block_at=3, self_signal=True)
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, run, None, *flags, "--resume_from_checkpoint", str(older)))
    assert [p.name for p in train.checkpoint_dirs(run)] == ["step_000002", "step_000003"]
    assert sorted(p.name for p in (run / "checkpoints" / "abandoned_1").iterdir()) == ["step_000004", "step_000006"]
    log = (run / "train.log").read_text()
    assert (
        "resume from step_000002: the run's later checkpoints (step_000004, step_000006) belong to the training this "
        "resume abandons: moved to checkpoints/abandoned_1/" in log
    )
    _, latest = train.resolve_run_dir(train.parse_config(tiny_args(tiny_bert, run, None, *flags), train.TrainConfig))
    assert latest is None or latest.name == "step_000003"
    cfg = train.parse_config(tiny_args(tiny_bert, run, None, "--resume_from_checkpoint", "latest"), train.TrainConfig)
    assert train.resolve_run_dir(cfg)[1].name == "step_000003"


def test_a_stop_while_the_best_model_is_scored_says_how_to_get_the_results_if_the_launcher_kills_it(
    tiny_bert, tmp_path, monkeypatch
):
    """accelerate launch (1.16 on) kills train.py 5 s after passing the signal on: a long scoring is cut off before
    results.json, so the line says what is complete and the commands that give the results."""
    monkeypatch.setattr(train, "launcher_kill_delay", lambda: 5.0)
    sigterm_when_scoring(monkeypatch)
    run = tmp_path / "run"
    flags = ["--max_steps", "4", "--eval_steps", "2", "--checkpointing_steps", "2"]
    best = train.main(tiny_args(tiny_bert, run, None, *flags))["best_step"]
    log = (run / "train.log").read_text()
    assert (
        "SIGTERM received after the last step: scoring the best model and writing results.json first (no checkpoint "
        "holds the trained state), then the run ends. accelerate launch kills train.py 5 s after passing the signal "
        f"on: if it does before results.json is written, best_model/ (step {best}) is complete: python evaluate.py "
        f"--run_dir {run} --split test scores it, and the command with --output_dir {run} --resume_from_checkpoint "
        "latest alone (the run's config.json gives the other flags) trains again from step_000002 (the same steps) and "
        "writes results.json"
    ) in log
    assert "the run is finished" in log
