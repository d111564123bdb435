"""Never lose work: checkpoints, exact resume, preemption, non-finite losses, and two processes."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import evaluate
import train
from conftest import (
    REPO,
    SHARED_DATA,
    sigterm_after_each_checkpoint,
    sigterm_when_scoring,
    tiny_args,
    train_on_two_processes,
)
from conftest import RESUME_FLAGS as SHARED_RESUME_FLAGS
from utils import disk_refused, run_cli

RESUME_FLAGS = [*SHARED_RESUME_FLAGS, "--checkpointing_steps", "5"]


def weights(run):
    return load_file(run / "best_model" / "model.safetensors")


def test_sigterm_then_resume_matches_uninterrupted_run(tiny_bert, tmp_path, monkeypatch):
    full = train.main(tiny_args(tiny_bert, tmp_path / "full", None, *RESUME_FLAGS))

    # Deliver a real SIGTERM to this process right after the first checkpoint (step 5, mid-epoch) is written.
    sigterm_after_each_checkpoint(monkeypatch)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(SystemExit) as stopped:
        train.main(tiny_args(tiny_bert, interrupted, None, *RESUME_FLAGS))
    assert stopped.value.code == 143
    assert [p.name for p in train.checkpoint_dirs(interrupted)] == ["step_000005"]
    meta = json.loads((interrupted / "checkpoints" / "step_000005" / "meta.json").read_text())
    assert meta["step"] == 5 and meta["best_step"] == 4 and not (interrupted / "results.json").exists()
    stop = (
        "SIGTERM received: stopped after step 5 with a checkpoint; continue with "
        f"--output_dir {interrupted} --resume_from_checkpoint latest"
    )
    assert stop in (interrupted / "train.log").read_text()
    monkeypatch.undo()

    # A second stop lands while the resume rewrites the run folder (metrics cut back to the checkpoint): the resumed
    # run trains one step and checkpoints it, rather than end as if nothing had been touched yet.
    real_truncate = train.truncate_metrics

    def truncate_then_signal(*args, **kwargs):
        real_truncate(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train, "truncate_metrics", truncate_then_signal)
    with pytest.raises(SystemExit) as stopped:
        train.main(tiny_args(tiny_bert, interrupted, None, *RESUME_FLAGS, "--resume_from_checkpoint", "latest"))
    assert stopped.value.code == 143
    assert [p.name for p in train.checkpoint_dirs(interrupted)] == ["step_000005", "step_000006"]
    monkeypatch.undo()

    resumed = train.main(tiny_args(tiny_bert, interrupted, None, *RESUME_FLAGS, "--resume_from_checkpoint", "latest"))
    assert resumed["global_step"] == full["global_step"] == 18
    assert resumed["best_step"] == full["best_step"]
    assert resumed["validation"]["macro_f1"] == full["validation"]["macro_f1"]
    a, b = weights(tmp_path / "full"), weights(interrupted)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # The resumed run continued the same metrics.jsonl: every step logged once before or after the interruption.
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert sorted(s for s in steps if s) == sorted(
        json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    )


def test_a_stop_after_the_last_step_finishes_the_run_instead_of_losing_it(tiny_bert, tmp_path, monkeypatch):
    # No checkpoint holds the trained state once the loop is over: a stop signal while the best model is scored
    # must not end the process there (SIGTERM's default action), or no results.json and nothing to resume is left.
    def killed(signum, frame):
        raise RuntimeError("the stop signal would have killed train.py")

    previous = signal.signal(signal.SIGTERM, killed)
    sigterm_when_scoring(monkeypatch)
    out = tmp_path / "run"
    try:
        results = train.main(tiny_args(tiny_bert, out, None, "--max_steps", "4", "--eval_steps", "2"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert results["global_step"] == 4
    assert json.loads((out / "results.json").read_text())["test"] == results["test"]
    log = (out / "train.log").read_text()
    # Said when it arrives (scoring a large test split can take minutes), and again once the run is finished.
    assert "SIGTERM received after the last step: scoring the best model and writing results.json first" in log
    assert "the run is finished" in log


@pytest.mark.parametrize("target", ["checkpoint", "best_model"])
def test_a_full_disk_while_saving_says_so_and_leaves_no_partial_copy(tiny_bert, tmp_path, monkeypatch, target):
    # The disk fills up during the second save: the first one is kept, and the partial second one does not keep
    # holding the space that a resume needs.
    real = {"checkpoint": train.Accelerator.save_state, "best_model": train.EncoderClassifier.save_pretrained}[target]
    calls, failing = [], 2 if target == "checkpoint" else 3  # after the checkpoint of step 2 either way

    def full_disk(self, folder, *args, **kwargs):
        calls.append(folder)
        if len(calls) < failing:
            return real(self, folder, *args, **kwargs)
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "model.safetensors").write_bytes(b"cut off")
        raise OSError(errno.ENOSPC, "No space left on device")

    owner, name = (
        (train.Accelerator, "save_state") if target == "checkpoint" else (train.EncoderClassifier, "save_pretrained")
    )
    monkeypatch.setattr(owner, name, full_disk)
    monkeypatch.setattr(train, "is_better", lambda *args: True)  # a new best model at every evaluation
    flags = ["--max_steps", "12", "--eval_steps", "1", "--checkpointing_steps", "2"]
    out = tmp_path / "run"
    with pytest.raises(train.TrainingError, match="No space left on device") as failed:
        train.main(tiny_args(tiny_bert, out, None, *flags))
    assert len(calls) == failing
    assert "--resume_from_checkpoint latest" in str(failed.value)
    assert [p.name for p in train.checkpoint_dirs(out)] == ["step_000002"]
    assert not [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".best_model")]
    assert (out / "best_model" / "best.json").is_file()


def test_save_total_limit_keeps_the_best_checkpoint(tiny_bert, tmp_path):
    out = tmp_path / "run"
    # lr ~0: the first evaluation (step 2) stays the best while checkpoints pile up every 2 steps.
    train.main(
        tiny_args(
            tiny_bert,
            out,
            None,
            "--max_steps",
            "12",
            "--eval_steps",
            "2",
            "--checkpointing_steps",
            "2",
            "--save_total_limit",
            "2",
            "--learning_rate",
            "1e-12",
            "--classifier_dropout",
            "0",
        )
    )
    names = [p.name for p in train.checkpoint_dirs(out)]
    assert names == ["step_000002", "step_000008", "step_000010"]  # the last step needs no checkpoint
    assert not list((out / "checkpoints").glob(".*tmp"))


def test_resume_refuses_a_changed_setup(tiny_bert, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, "--max_steps", "4", "--checkpointing_steps", "2"))
    (out / "results.json").unlink()  # stopped after its last checkpoint: a finished run is not resumed at all
    with pytest.raises(ValueError, match=r"other settings .*per_device_train_batch_size"):
        train.main(
            tiny_args(
                tiny_bert,
                out,
                None,
                "--max_steps",
                "4",
                "--per_device_train_batch_size",
                "4",
                "--resume_from_checkpoint",
                "latest",
            )
        )
    with pytest.raises(ValueError, match="no checkpoint in"):
        train.main(tiny_args(tiny_bert, tmp_path / "empty", None, "--resume_from_checkpoint", "latest"))


def test_non_finite_loss_stops_with_a_clear_error_or_is_skipped(tiny_bert, tmp_path, monkeypatch):
    from model import EncoderClassifier

    real_forward = EncoderClassifier.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        calls["n"] += self.training
        if self.training and calls["n"] == 8:  # step 8: after the first evaluation saved best_model/
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(EncoderClassifier, "forward", poisoned)
    out = tmp_path / "stop"
    saved = r"best_model/ and checkpoints/ are kept as they were\."
    with pytest.raises(train.TrainingError, match=r"non-finite loss/gradient at optimizer step 8; " + saved):
        train.main(tiny_args(tiny_bert, out, None, "--eval_steps", "6", "--checkpointing_steps", "6"))
    assert (out / "best_model" / "model.safetensors").is_file() and (out / "checkpoints" / "step_000006").is_dir()

    calls["n"] = 0
    results = train.main(tiny_args(tiny_bert, tmp_path / "skip", None, "--eval_steps", "6", "--nan_policy", "skip"))
    assert results["global_step"] == 12
    assert "update skipped" in (tmp_path / "skip" / "train.log").read_text()
    assert all(torch.isfinite(t).all() for t in weights(tmp_path / "skip").values())
    # metrics.jsonl is strict JSON (jq and JSON.parse reject NaN): the skipped step's window logs its loss as null,
    # and what reads the file (a resume's truncation, report.py's curves) takes the null.
    lines = (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in metrics.jsonl")) for line in lines]
    assert any("loss" in r and r["loss"] is None for r in records)
    train.truncate_metrics(tmp_path / "skip" / "metrics.jsonl", 12)
    assert (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines() == lines
    sys.path.insert(0, str(REPO / "scripts"))
    import report

    assert report.plot_curves(tmp_path / "skip").is_file()


def test_a_diverged_model_is_never_scored_or_kept_as_the_best(tiny_bert, tmp_path, monkeypatch):
    from model import EncoderClassifier

    real_forward = EncoderClassifier.forward
    calls = {"n": 0}

    def diverge(self, *args, **kwargs):
        calls["n"] += self.training
        if self.training and calls["n"] == 8:  # after the first evaluation saved best_model/: weights turn to nan
            with torch.no_grad():
                for p in self.parameters():
                    p.fill_(float("nan"))
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(EncoderClassifier, "forward", diverge)
    out = tmp_path / "run"
    # nan logits would score as class 0 everywhere (argmax over nan); under --nan_policy skip the run went on.
    with pytest.raises(train.TrainingError, match=r"outputs are not finite \(nan or inf\) for 16 of 16 rows"):
        train.main(tiny_args(tiny_bert, out, None, "--eval_steps", "6", "--nan_policy", "skip"))
    assert json.loads((out / "best_model" / "best.json").read_text())["step"] == 6
    assert all(torch.isfinite(t).all() for t in weights(out).values())


def test_a_run_stopped_by_a_non_finite_loss_says_why_in_its_log(tiny_bert, tmp_path, monkeypatch, capsys):
    """train.log is what a batch job leaves to read: it names the error that ended the run, as the console does."""
    from model import EncoderClassifier

    real_forward = EncoderClassifier.forward

    def poisoned(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(EncoderClassifier, "forward", poisoned)
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["train.py", *tiny_args(tiny_bert, out, None)])
    with pytest.raises(SystemExit) as stopped:
        run_cli(train.main)
    assert stopped.value.code == 1
    [error] = [line for line in capsys.readouterr().err.splitlines() if "non-finite" in line]
    # Nothing is saved before the first evaluation or checkpoint: the message must not promise a best_model/.
    assert error.startswith("error: non-finite loss/gradient at optimizer step 1; nothing was saved yet."), error
    last = (out / "train.log").read_text().splitlines()[-1]
    assert last.endswith(" ERROR " + error.removeprefix("error: ")), last


def test_an_unexpected_error_leaves_its_traceback_in_the_runs_log(tmp_path, capsys):
    """A failed cluster run is read from its folder: a bug's traceback lands in train.log as well as on the console."""
    from utils import setup_logging

    def broken(_):
        setup_logging(tmp_path / "train.log")
        raise KeyError("head_size")  # a bug, not bad input: no one-line error for it

    with pytest.raises(KeyError):
        run_cli(broken)
    log = (tmp_path / "train.log").read_text()
    assert "Traceback (most recent call last):" in log and "KeyError: 'head_size'" in log, log
    assert "Traceback" not in capsys.readouterr().err  # the console's traceback is Python's own, printed once


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_evaluation(tiny_bert, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(
        tiny_bert,
        out,
        SHARED_DATA / "emotion",
        "--max_train_samples",
        "96",
        "--max_eval_samples",
        "97",
        "--num_train_epochs",
        "1",
        "--per_device_eval_batch_size",
        "8",
    )
    proc = train_on_two_processes(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["num_processes"] == 2
    results = json.loads((out / "results.json").read_text())
    assert results["validation"]["num_samples"] == 97 and results["test"]["num_samples"] == 97
    assert results["train_samples"] == 96  # the rows of both processes: 6 batches of 8 each
    single = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    assert single["num_samples"] == 97
    assert single["macro_f1"] == results["validation"]["macro_f1"]
    assert single["accuracy"] == results["validation"]["accuracy"]
    # Only the main process writes: one log line per event, no duplicates.
    steps = [
        json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if "eval_macro_f1" in line
    ]
    assert steps == [results["best_step"]]


@pytest.mark.slow
def test_two_processes_print_each_warning_and_start_up_line_once(tiny_bert, tmp_path):
    """Every rank runs the same checks; the user reads each warning once, as train.log holds it, not once per rank."""
    out = tmp_path / "run"
    # An accumulation longer than the epoch: a warning every rank reaches after the loader is prepared.
    proc = train_on_two_processes(
        tiny_args(tiny_bert, out, None, "--num_train_epochs", "1", "--gradient_accumulation_steps", "99"), tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warning = "an optimizer step trains on at most 48 rows"
    assert proc.stderr.count(warning) == 1, proc.stderr
    assert proc.stderr.count("INFO run directory:") == 1, proc.stderr
    assert (out / "train.log").read_text().count(warning) == 1


def test_a_full_disk_anywhere_in_a_run_is_one_line_not_a_traceback(tiny_bert, tmp_path, monkeypatch, capsys):
    """A write refused by the disk outside the checkpoint and best-model saves (here metrics.jsonl's next line) is the
    machine's state, not a bug: one line naming the file and how to go on, exit code 1."""
    out = tmp_path / "run"
    real, lines = train.append_jsonl, []

    def full_disk(path, obj):
        lines.append(obj)
        if len(lines) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, obj)

    monkeypatch.setattr(train, "append_jsonl", full_disk)
    monkeypatch.setattr(sys, "argv", ["train.py", *tiny_args(tiny_bert, out, None, "--logging_steps", "1")])
    with pytest.raises(SystemExit) as stopped:
        run_cli(train.main)
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert error == (
        f"error: the disk refused a write to {out / 'metrics.jsonl'} (No space left on device); free space or "
        "make the folder writable, then start the run again: no checkpoint was written yet."
    )


def test_a_full_disk_names_the_run_folder_to_continue_in(tmp_path):
    """'latest' alone follows outputs/LATEST, which another run may have moved: the line names this run's folder."""
    run = tmp_path / "my run"
    for step in ("step_000002", "step_000004"):
        (run / "checkpoints" / step).mkdir(parents=True)
        (run / "checkpoints" / step / "meta.json").write_text("{}")
    err = OSError(errno.EDQUOT, "Disk quota exceeded", str(run / "predictions_test.jsonl"))
    assert train.disk_refused_in_run(err, run) == (
        f"the disk refused a write to {run / 'predictions_test.jsonl'} (Disk quota exceeded); free space or make the "
        f"folder writable, then continue with --output_dir '{run}' --resume_from_checkpoint latest (from step_000004)."
    )
    # Outside a run (evaluate.py, the scripts) the way on names the folder as RUN.
    assert disk_refused(err).endswith(
        "then run the command again (a training run continues from its last checkpoint with --output_dir RUN "
        "--resume_from_checkpoint latest)."
    )


def test_a_stop_while_a_resume_restores_best_model_never_leaves_a_partial_copy(tmp_path, monkeypatch):
    """A resume swaps in the checkpoint's copy of best_model/ (file by file, as links). A stop signal in the middle
    of it (or a kill) must not leave a best_model/ whose best.json says "step 2" without its weights: the next
    resume would take it as restored, and the run would end unable to score its best model."""
    run = tmp_path / "run"
    saved = run / "checkpoints" / "step_000002" / "best_model"
    saved.mkdir(parents=True)
    (saved / "best.json").write_text(json.dumps({"step": 2}))
    for name in ("model.safetensors", "config.json", "tokenizer_config.json"):
        (saved / name).write_text(name)
    (run / "best_model").mkdir()  # a newer best_model/ (step 4), written after the checkpoint, then a crash
    (run / "best_model" / "best.json").write_text(json.dumps({"step": 4}))
    real = train._link_or_copy

    def link(src, dst):
        real(src, dst)
        if Path(dst).name == "best.json":  # the signal lands right after best.json is in place
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train, "_link_or_copy", link)
    with train.StopRequested(), pytest.raises(train.StopBeforeTraining):
        train.restore_best_model(run, saved.parent, 2)
    monkeypatch.undo()
    train.restore_best_model(run, saved.parent, 2)  # the same command again
    assert sorted(p.name for p in (run / "best_model").iterdir()) == sorted(p.name for p in saved.iterdir())
