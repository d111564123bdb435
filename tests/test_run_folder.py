"""A run folder's files agree with each other: no resume of a finished run, no scores of an earlier model left beside
results.json, evaluate.py's own outputs named and checked, and damaged or incomplete folders named in one line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import evaluate
import train
from conftest import (
    ACCELERATE_LAUNCH,
    REPO,
    free_port,
    sigterm_after_each_checkpoint,
    tiny_args,
    train_pair_run,
    write_csv,
)
from model import EncoderClassifier

STEPS = ["--max_steps", "6", "--checkpointing_steps", "2", "--eval_steps", "2", "--logging_steps", "1"]


@pytest.fixture
def finished_run(tiny_bert, tmp_path) -> Path:
    """A finished 6-step run with checkpoints at steps 2 and 4."""
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, *STEPS))
    return out


def read_log(run: Path) -> str:
    """The run's train.log."""
    return (run / "train.log").read_text()


# ---- resuming ------------------------------------------------------------------------------------------------------


def test_a_finished_run_is_not_resumed(tiny_bert, finished_run):
    """Resuming would train on from step 4 and replace best_model/ while results.json still described the old one
    (and, interrupted, leave the two disagreeing for good)."""
    results = (finished_run / "results.json").read_text()
    best = (finished_run / "best_model" / "model.safetensors").read_bytes()
    for spec in ("latest", str(finished_run / "checkpoints" / "step_000004")):
        args = tiny_args(tiny_bert, finished_run, None, *STEPS, "--resume_from_checkpoint", spec)
        if spec != "latest":
            args = [a for a in args if a != str(finished_run)]
            args.remove("--output_dir")
        with pytest.raises(ValueError, match=r"has finished \(results.json"):
            train.main(args)
    # As users launch it: one error line and exit 2 from under the launcher, the folder untouched.
    resume = [*tiny_args(tiny_bert, finished_run, None, *STEPS), "--resume_from_checkpoint", "latest"]
    proc = subprocess.run(
        [*ACCELERATE_LAUNCH, str(REPO / "train.py"), *resume],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "has finished (results.json" in errors[0], proc.stderr
    assert (finished_run / "results.json").read_text() == results
    assert (finished_run / "best_model" / "model.safetensors").read_bytes() == best


def test_a_checkpoint_copy_beside_the_run_s_own_is_ignored(tiny_bert, finished_run):
    """A backup copy (step_000004_backup) is none of the run's checkpoints: neither the latest nor a crash."""
    checkpoints = finished_run / "checkpoints"
    shutil.copytree(checkpoints / "step_000004", checkpoints / "step_000004_backup")
    (finished_run / "results.json").unlink()  # as if stopped after its last checkpoint
    assert [p.name for p in train.checkpoint_dirs(finished_run)] == ["step_000002", "step_000004"]
    resumed = train.main(tiny_args(tiny_bert, finished_run, None, *STEPS, "--resume_from_checkpoint", "latest"))
    assert resumed["global_step"] == 6 and "resumed from" in read_log(finished_run)


def test_a_checkpoint_missing_a_file_is_named_before_loading(tiny_bert, finished_run):
    (finished_run / "results.json").unlink()
    (finished_run / "checkpoints" / "step_000004" / "optimizer.bin").unlink()
    with pytest.raises(ValueError, match=r"step_000004 lacks optimizer.bin; resume from another checkpoint"):
        train.main(tiny_args(tiny_bert, finished_run, None, *STEPS, "--resume_from_checkpoint", "latest"))


def test_a_checkpoint_missing_one_rank_s_random_states_is_named_before_loading(tmp_path):
    """accelerate's load_state skips a missing RNG file without a word: a two-process resume would go on with
    another dropout stream on that rank, no longer the run it continues."""
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000004"
    checkpoint.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.bin", "custom_checkpoint_0.pkl", "random_states_0.pkl"):
        (checkpoint / name).write_bytes(b"")
    (checkpoint / "meta.json").write_text(json.dumps({"step": 4, "settings": {"num_processes": 2}}))
    with pytest.raises(ValueError, match=r"step_000004 lacks random_states_1.pkl; resume from another checkpoint"):
        train.check_checkpoint_files(checkpoint, "latest")
    (checkpoint / "random_states_1.pkl").write_bytes(b"")
    assert train.check_checkpoint_files(checkpoint, "latest") == checkpoint


def test_a_resume_into_a_folder_it_cannot_write_is_refused_before_any_work(tiny_bert, finished_run, monkeypatch):
    """Another user's run on a shared filesystem, or a folder on a mount gone read-only: train.log, config.json,
    best_model/ and checkpoints/ are written there, so the resume fails up front, not in a traceback after the data
    is loaded and the model built."""
    (finished_run / "results.json").unlink()
    real_access = os.access
    read_only = {finished_run, finished_run / "checkpoints"}
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) not in read_only and real_access(path, mode))
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(ValueError, match=r"cannot continue the run in .*run: it is not writable"):
        train.main(tiny_args(tiny_bert, finished_run, None, *STEPS, "--resume_from_checkpoint", "latest"))


def test_a_refused_resume_keeps_the_best_model_it_cannot_replace(tiny_bert, tmp_path, monkeypatch):
    """best_model/ is newer than the checkpoint, whose own copy is gone (deleted to save disk, or an older version
    wrote none): the resume is refused, and the run's best model is left for evaluate.py to score."""
    out = tmp_path / "run"
    monkeypatch.setattr(train, "is_better", lambda *args: True)  # the best is the last evaluation, step 6
    train.main(tiny_args(tiny_bert, out, None, *STEPS))
    monkeypatch.undo()
    (out / "results.json").unlink()
    shutil.rmtree(out / "checkpoints" / "step_000004" / "best_model")
    weights = (out / "best_model" / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match=r"best_model/ does not hold step 4's state and the checkpoint has no copy"):
        train.main(tiny_args(tiny_bert, out, None, *STEPS, "--resume_from_checkpoint", "latest"))
    assert json.loads((out / "best_model" / "best.json").read_text())["step"] == 6
    assert (out / "best_model" / "model.safetensors").read_bytes() == weights


def test_a_one_step_run_learns_at_its_one_step(tiny_bert, tmp_path, monkeypatch):
    """A warmup of ceil(0.1 x 1) = 1 step ran the only step at lr 0: the pretrained weights came back as a trained
    model. The ratio's warmup stays below the run's length; an explicit --warmup_steps that is not is refused before
    a model is built."""
    out = tmp_path / "one"
    train.main(tiny_args(tiny_bert, out, None, "--max_steps", "1", "--warmup_ratio", "0.1"))
    assert json.loads((out / "config.json").read_text())["resolved"]["warmup_steps"] == 0
    pretrained = AutoModel.from_pretrained(tiny_bert).state_dict()
    trained = EncoderClassifier.from_pretrained(out / "best_model").backbone.state_dict()
    assert any(not torch.equal(trained[k], pretrained[k]) for k in trained if k in pretrained)

    def never(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(EncoderClassifier, "from_backbone", never)
    refusal = r"--warmup_steps {} is not below the run's {} optimizer steps: .* give --warmup_steps below {}, or leave"
    with pytest.raises(train.ConfigError, match=refusal.format(2, 2, 2)):
        train.main(tiny_args(tiny_bert, tmp_path / "explicit", None, "--max_steps", "2", "--warmup_steps", "2"))
    # Without --max_steps: the epochs' steps (2 epochs of 48 rows in batches of 8) are counted before the model.
    with pytest.raises(train.ConfigError, match=refusal.format(12, 12, 12)):
        train.main(tiny_args(tiny_bert, tmp_path / "epochs", None, "--warmup_steps", "12"))


def test_overwrite_keeps_the_old_run_when_the_new_one_is_refused(tiny_bert, finished_run):
    """--overwrite_output_dir replaces a run with a new one: a new run refused on input known only once the data is
    tokenized (a warmup as long as the run) must leave the old run whole, and the early log lines reach train.log."""
    before = {p.name for p in finished_run.iterdir()}
    results = (finished_run / "results.json").read_text()
    args = tiny_args(tiny_bert, finished_run, None, "--max_steps", "2", "--warmup_steps", "2", "--overwrite_output_dir")
    with pytest.raises(train.ConfigError, match="--warmup_steps 2 is not below"):
        train.main(args)
    assert {p.name for p in finished_run.iterdir()} == before
    assert (finished_run / "results.json").read_text() == results
    train.main(tiny_args(tiny_bert, finished_run, None, "--max_steps", "2", "--overwrite_output_dir"))
    log = read_log(finished_run)
    assert log.index("pooling:") < log.index("--overwrite_output_dir: removed") < log.index("run directory:")


# ---- evaluate.py's files follow the model they scored ---------------------------------------------------------------


def test_overwrite_removes_what_evaluate_wrote_about_the_old_model(tiny_bert, finished_run):
    evaluate.main(["--split", "test", "--run_dir", str(finished_run)])
    evaluate.main(["--split", "test", "--run_dir", str(finished_run), "--max_samples", "4"])
    old = {"eval_test.json", "eval_test_first4.json", "confusion_test.png", "predictions_test_first4.jsonl"}
    assert old <= {p.name for p in finished_run.iterdir()}
    train.main(tiny_args(tiny_bert, finished_run, None, "--max_steps", "2", "--overwrite_output_dir"))
    assert not old & {p.name for p in finished_run.iterdir()}
    log = read_log(finished_run)
    assert "eval_test.json" in log and "--overwrite_output_dir: removed" in log
    assert log.count("run directory:") == 1  # the old run's log went with it


def test_a_fresh_run_into_a_folder_of_other_files_removes_none_of_them(tiny_bert, tmp_path):
    """Only --overwrite_output_dir over a run removes anything: a folder without a run is the user's."""
    out = tmp_path / "mine"
    out.mkdir()
    files = {
        "train.log": "my notes\n",
        "eval_plan.json": "{}",
        "predictions_colleague.jsonl": "{}\n",
        "curves.png": "x",
    }
    for name, text in files.items():
        (out / name).write_text(text)
    train.main(tiny_args(tiny_bert, out, None, "--max_steps", "1"))
    for name, text in files.items():
        assert (out / name).read_text().startswith(text), name
    assert (out / "results.json").is_file()


def test_scores_of_an_unfinished_run_are_said_to_be_interim_and_replaced_when_it_finishes(
    tiny_bert, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    sigterm_after_each_checkpoint(monkeypatch)
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, out, None, *STEPS))
    monkeypatch.undo()
    capsys.readouterr()
    evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert "has not finished (no results.json): scoring its best model so far (step 2)" in capsys.readouterr().err
    assert (out / "eval_test.json").is_file() and (out / "confusion_test.png").is_file()
    # The user's own file, named like evaluate.py's outputs, kept in the run folder and predicted from there.
    (out / "eval_texts.json").write_text('[{"text": "a sports match"}, {"text": "a new phone"}]')
    evaluate.main(["--run_dir", str(out), "--input", str(out / "eval_texts.json")])
    # A file with labels: its scores are about this best model too. One named like the user's file is refused.
    shutil.copy(REPO / "sample_data" / "test.csv", out / "labeled.csv")
    assert "eval" in evaluate.main(["--run_dir", str(out), "--input", str(out / "labeled.csv")])
    shutil.copy(REPO / "sample_data" / "test.csv", tmp_path / "texts.csv")
    with pytest.raises(ValueError, match=r"eval_texts.json is not a file evaluate.py wrote.* --output"):
        evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "texts.csv")])
    train.main(tiny_args(tiny_bert, out, None, *STEPS, "--resume_from_checkpoint", "latest"))
    names = {p.name for p in out.iterdir()}
    scores = {"eval_labeled.json", "confusion_labeled.png", "predictions_labeled.jsonl"}
    assert not {"eval_test.json", "confusion_test.png", "predictions_eval_texts.jsonl", *scores} & names
    assert {"predictions_test.jsonl", "results.json", "eval_texts.json", "labeled.csv"} <= names
    assert (
        "removed confusion_labeled.png, confusion_test.png, eval_labeled.json, eval_test.json, "
        "predictions_eval_texts.jsonl, predictions_labeled.jsonl: evaluate.py" in read_log(out)
    )


def test_evaluate_says_whether_its_scores_reproduce_the_run_s_recorded_ones(finished_run, capsys):
    capsys.readouterr()
    evaluate.main(["--split", "test", "--run_dir", str(finished_run)])
    assert "test macro_f1 and loss reproduce results.json exactly" in capsys.readouterr().err
    # A colleague's results.json for the same run (another machine, other library versions) records other last
    # digits: evaluate.py must say that its numbers are not the recorded ones, and which of its settings differ.
    results = json.loads((finished_run / "results.json").read_text())
    recorded = results["validation_reloaded"]
    recorded["loss"] += 1e-7
    (finished_run / "results.json").write_text(json.dumps(results))
    metrics = evaluate.main(["--split", "validation", "--run_dir", str(finished_run), "--batch_size", "3"])
    err = capsys.readouterr().err
    assert f"validation loss {metrics['loss']!r} differs from results.json's {recorded['loss']!r}" in err
    assert "--batch_size 3 (the run's 128)" in err and "eval_validation.json, predictions_validation.jsonl" in err
    # A head or pooling edited in model.py since the run computes otherwise: named, as no setting shows it.
    copy = finished_run / "best_model" / "model.py"
    copy.write_text(copy.read_text() + "\n# as the run trained\n")
    evaluate.main(["--split", "validation", "--run_dir", str(finished_run)])
    assert f"model.py edited since the run ({copy} is the run's copy)" in capsys.readouterr().err
    # A subset is not the recorded split: nothing to compare. --max_samples of the whole split (16 rows) is.
    evaluate.main(["--split", "test", "--run_dir", str(finished_run), "--max_samples", "5"])
    assert "results.json" not in capsys.readouterr().err
    evaluate.main(["--split", "test", "--run_dir", str(finished_run), "--max_samples", "50"])
    assert "test macro_f1 and loss reproduce results.json exactly" in capsys.readouterr().err


def open_files(path: Path) -> int:
    """How many file descriptors of this process point at ``path``."""
    return sum(os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()) for fd in os.listdir("/proc/self/fd"))


def test_evaluate_after_train_in_one_process_logs_to_its_console_only_and_closes_the_run_s_log(finished_run, capsys):
    """A notebook trains, then scores RUN/best_model: evaluate's first line (the run it reads RUN/best_model as) is on
    the console, not appended to the train.log train.main left open, which is closed; in a fresh process that line,
    logged before any handler, was not shown at all."""
    log = finished_run / "train.log"
    before = read_log(finished_run)
    assert open_files(log) == 1  # train.main's handler, kept for an error line after main() (utils.run_cli)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        evaluate.main(["--split", "validation", "--run_dir", str(finished_run / "best_model")])
    assert f"is a run's best model: scoring the run {finished_run}" in capsys.readouterr().err
    assert read_log(finished_run) == before and open_files(log) == 0
    assert not [w for w in caught if "train.log" in str(w.message)]  # closed, not dropped open ("unclosed file")
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "--split", "validation", "--run_dir", finished_run / "best_model"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert f"INFO --run_dir {finished_run / 'best_model'} is a run's best model: scoring the run" in proc.stderr


def test_evaluate_on_two_processes_prints_each_line_once(finished_run, tmp_path):
    """Scoring RUN/best_model on two gloo ranks: the lines logged before the Accelerator exists (the run it reads
    RUN/best_model as) and after it are printed once, by the main process, and the two ranks are one launch (the
    run's one process is named as the difference), not two processes of one each, both writing the files."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--main_process_port", free_port()]
    command = [
        *launch,
        str(REPO / "evaluate.py"),
        "--split",
        "validation",
        "--run_dir",
        str(finished_run / "best_model"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("is a run's best model: scoring the run") == 1, proc.stderr
    assert proc.stderr.count("the run evaluated on 1 process, this on 2") == 1, proc.stderr
    assert proc.stdout.count('{"split": "validation"') == 1, proc.stdout


def test_the_run_records_its_model_by_content_and_its_library_versions_and_evaluate_names_other_ones(
    finished_run, tiny_bert, capsys
):
    """A colleague's numbers differ from mine: config.json must show whether the model files or the libraries did."""
    import transformers

    config = json.loads((finished_run / "config.json").read_text())
    resolved = config["resolved"]
    assert resolved["model_files"] == train.model_files_digest(str(tiny_bert))
    assert resolved["versions"]["torch"] == torch.__version__
    assert resolved["versions"]["transformers"] == transformers.__version__
    assert {"python", "accelerate", "datasets"} <= set(resolved["versions"])
    # The same run scored where torch is another version than the one that trained it, on a CPU where it trained on a
    # GPU.
    resolved["versions"]["torch"] = "0.0.1"
    resolved["device"] = "cuda:0"
    (finished_run / "config.json").write_text(json.dumps(config))
    results = json.loads((finished_run / "results.json").read_text())
    results["test"]["loss"] += 1e-3
    (finished_run / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    evaluate.main(["--split", "test", "--run_dir", str(finished_run)])
    err = capsys.readouterr().err
    assert "device cpu (the run's cuda:0)" in err and f"torch {torch.__version__} (the run's 0.0.1)" in err


def test_evaluate_says_it_scores_in_the_run_s_precision_not_the_launcher_s(finished_run, monkeypatch, capsys):
    # `accelerate launch --mixed_precision bf16 evaluate.py` on an fp32 run: scored in fp32, as results.json was.
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    capsys.readouterr()
    metrics = evaluate.main(["--split", "test", "--run_dir", str(finished_run)])
    assert metrics["loss"] == json.loads((finished_run / "results.json").read_text())["test"]["loss"]
    assert "mixed precision no, the run's, not the launcher's bf16" in capsys.readouterr().err


def test_evaluate_names_a_missing_damaged_or_incomplete_best_model(finished_run):
    # RUN/best_model given for RUN: read as the run.
    metrics = evaluate.main(["--split", "validation", "--run_dir", str(finished_run / "best_model")])
    assert metrics["macro_f1"] == json.loads((finished_run / "results.json").read_text())["validation"]["macro_f1"]
    best = finished_run / "best_model"
    weights = (best / "model.safetensors").read_bytes()
    (best / "model.safetensors").write_bytes(weights[:1000])  # cut off by a full disk
    with pytest.raises(ValueError, match=r"cannot load .*best_model .*damaged"):
        evaluate.main(["--split", "test", "--run_dir", str(finished_run)])
    (best / "model.safetensors").unlink()
    (best / "tokenizer_config.json").unlink()
    with pytest.raises(ValueError, match=r"best_model lacks model.safetensors, tokenizer_config.json"):
        evaluate.main(["--split", "test", "--run_dir", str(finished_run)])
    shutil.rmtree(best)
    with pytest.raises(ValueError, match=r"best_model is missing although the run finished"):
        evaluate.main(["--split", "test", "--run_dir", str(finished_run)])


def test_input_predictions_keep_one_line_per_input_line_and_their_own_names(finished_run, tmp_path, capsys):
    data = tmp_path / "texts.csv"
    # A blank line is a row: the output lines up with the input. Blank lines before the header are no rows.
    data.write_text("\n  \ntext\nhello there\n\nsecond text\n")
    summary = evaluate.main(["--run_dir", str(finished_run), "--input", str(data)])
    rows = [json.loads(line) for line in Path(summary["output"]).read_text().splitlines()]
    assert [r["text"] for r in rows] == ["hello there", "", "second text"] and [r["idx"] for r in rows] == [0, 1, 2]
    # A subset does not replace the whole file's predictions.
    subset = evaluate.main(["--run_dir", str(finished_run), "--input", str(data), "--max_samples", "1"])
    assert Path(subset["output"]).name == "predictions_texts_first1.jsonl"
    longer = evaluate.main(["--run_dir", str(finished_run), "--input", str(data), "--max_samples", "10"])
    assert Path(longer["output"]).name == "predictions_texts_first3.jsonl"
    assert len(Path(summary["output"]).read_text().splitlines()) == 3
    for output, message in ((tmp_path, "is a folder"), (tmp_path / "out.csv", r"as JSON lines, not .csv")):
        with pytest.raises(ValueError, match=message):
            evaluate.main(["--run_dir", str(finished_run), "--input", str(data), "--output", str(output)])
    for output in (tmp_path / "new" / "folder" / "out.jsonl", tmp_path / "out.json"):  # folders made as needed
        evaluate.main(["--run_dir", str(finished_run), "--input", str(data), "--output", str(output)])
        assert len(output.read_text().splitlines()) == 3
    # An input named like a split's files (test.csv, validation_first5.csv) gets a name of its own.
    for stem in ("test", "validation_first5"):
        named = tmp_path / f"{stem}.csv"
        named.write_text(data.read_text())
        output = evaluate.main(["--run_dir", str(finished_run), "--input", str(named)])["output"]
        assert Path(output).name == f"predictions_{stem}_input.jsonl"
    # The same input again replaces its predictions, and says so.
    capsys.readouterr()
    again = evaluate.main(["--run_dir", str(finished_run), "--input", str(data)])
    assert again["output"] == summary["output"] and f"to {summary['output']} (replaced)" in capsys.readouterr().err


def test_input_files_of_the_same_name_do_not_replace_each_others_predictions(finished_run, tmp_path):
    first, second = tmp_path / "a" / "texts.csv", tmp_path / "b" / "texts.csv"
    for path, text in ((first, "hello there"), (second, "another text")):
        path.parent.mkdir()
        path.write_text(f"text\n{text}\n")
    written = Path(evaluate.main(["--run_dir", str(finished_run), "--input", str(first)])["output"])
    with pytest.raises(ValueError, match=rf"predictions_texts.jsonl holds the predictions of {first}.* --output"):
        evaluate.main(["--run_dir", str(finished_run), "--input", str(second)])
    assert json.loads(written.read_text())["text"] == "hello there"
    elsewhere = tmp_path / "b.jsonl"
    evaluate.main(["--run_dir", str(finished_run), "--input", str(second), "--output", str(elsewhere)])
    assert json.loads(elsewhere.read_text())["text"] == "another text"
    written.unlink()  # once the first file's predictions are gone, the name is free
    evaluate.main(["--run_dir", str(finished_run), "--input", str(second)])
    assert json.loads(written.read_text())["text"] == "another text"


def test_an_output_file_without_input_is_refused_rather_than_ignored(tmp_path):
    """--output names where --input predictions go; a split's files always go to the run folder, so with --split
    alone the flag was ignored and the predictions were not where the user looks for them."""
    with pytest.raises(ValueError, match="--output names the file of --input predictions; add --input"):
        evaluate.main(["--run_dir", str(tmp_path), "--split", "test", "--output", str(tmp_path / "test.jsonl")])


def test_a_split_with_an_input_file_is_refused_rather_than_ignored(tmp_path):
    """--input predicts a file, not a split of the run's data: --split validation beside it was ignored, and the
    scores printed were the file's, not the validation split's the user asked for."""
    with pytest.raises(ValueError, match="--split validation scores a split of the run's data; --input predicts"):
        evaluate.main(["--run_dir", str(tmp_path), "--split", "validation", "--input", str(tmp_path / "x.csv")])


def test_a_pair_run_predicts_rows_whose_second_text_is_missing(tiny_bert, tmp_path):
    rows = [("a good film", "a fine film", "same"), ("a bad film", "a great film", "differ")] * 8
    out = train_pair_run(tiny_bert, tmp_path, rows)
    data = tmp_path / "input.csv"
    data.write_text("s1,s2\ngood movie,bad\nx,\n")
    summary = evaluate.main(["--run_dir", str(out), "--input", str(data)])
    assert summary["num_predictions"] == 2


@pytest.mark.parametrize("name", ["train.csv", "train.jsonl", "train.parquet"])
def test_an_empty_file_is_an_empty_split(tmp_path, name):
    """0 bytes (csv, jsonl) or 0 rows (parquet): the parsers' own messages ("StopIteration", "check that the file is
    valid parquet") name no cause."""
    import pandas as pd

    from config import TrainConfig
    from data import load_splits

    folder = tmp_path / "data"
    folder.mkdir()
    if name.endswith(".parquet"):
        pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)}).to_parquet(folder / name)
    else:
        (folder / name).write_text("")
    write_csv(folder / "validation.csv", [("a text", "pos")])
    with pytest.raises(ValueError, match=r"train\.\w+ holds no rows \(an empty split\)"):
        load_splits(TrainConfig(dataset=str(folder)))
    # An empty shard beside one with rows is nothing to read (Spark, Dask and split(1) write them).
    suffix = Path(name).suffix
    (folder / name).rename(folder / f"train-00001-of-00002{suffix}")
    write_csv(folder / "first.csv", [("a good text", "pos"), ("a bad text", "neg")])
    if suffix == ".csv":
        (folder / "first.csv").rename(folder / "train-00000-of-00002.csv")
    else:
        frame = pd.read_csv(folder / "first.csv")
        (folder / "first.csv").unlink()
        if suffix == ".parquet":
            frame.to_parquet(folder / "train-00000-of-00002.parquet")
        else:
            frame.to_json(folder / "train-00000-of-00002.jsonl", orient="records", lines=True)
    assert len(load_splits(TrainConfig(dataset=str(folder))).splits["train"]) == 2


def test_a_model_that_does_not_fit_its_code_is_not_called_damaged(finished_run, monkeypatch):
    """An edited model.py whose layers no longer fit the saved weights is transformers' own error, not "damaged
    files, retrain": only unreadable files are reported as such."""

    def mismatch(*args, **kwargs):
        raise RuntimeError("size mismatch for head.dense.weight")

    monkeypatch.setattr(EncoderClassifier, "from_pretrained", mismatch)
    with pytest.raises(RuntimeError, match="size mismatch"):
        evaluate.main(["--split", "test", "--run_dir", str(finished_run)])


def test_resume_before_any_evaluation_reports_only_a_removal_that_happened(tmp_path):
    run, checkpoint = tmp_path / "run", tmp_path / "run" / "checkpoints" / "step_000004"
    checkpoint.mkdir(parents=True)
    # No evaluation before the checkpoint and no best_model/: nothing to remove, nothing to say.
    assert train.restore_best_model(run, checkpoint, None) is None
    (run / "best_model").mkdir()  # written after the checkpoint, then a crash
    assert train.restore_best_model(run, checkpoint, None).startswith("removed a best_model/ written after")
    assert not (run / "best_model").exists()


# ---- one live run per folder ---------------------------------------------------------------------------------------


class Built(Exception):
    """Raised in place of building the model: the run got past claiming its folder."""


def start_a_second_run_once_claimed(monkeypatch, second: list[str]) -> list[BaseException]:
    """While a run holds its folder (at the model build, the step after the claim), start ``second`` in-process, as
    another process would; each run then stops at its model build. Returns what the second run raised."""
    raised: list[BaseException] = []
    started: list[bool] = []

    def build_model(*args, **kwargs):
        if not started:
            started.append(True)
            try:
                train.main(second)
            except BaseException as err:  # the second run's outcome is the test's to judge
                raised.append(err)
        raise Built

    monkeypatch.setattr(train, "build_model", build_model)
    return raised


def test_two_runs_started_in_the_same_second_get_a_folder_each(tiny_bert, tmp_path, monkeypatch):
    """The default folder is named to the second: a second run started in that second takes the next free name
    (-2) instead of writing its results, metrics and log into the first one's folder."""

    class Frozen(train.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 5, 2, 48, 40)

    monkeypatch.setattr(train, "datetime", Frozen)
    runs = tmp_path / "runs"
    args = tiny_args(tiny_bert, tmp_path / "unused", None, "--max_steps", "1")
    at = args.index("--output_dir")
    args[at : at + 2] = []
    raised = start_a_second_run_once_claimed(monkeypatch, args)
    with pytest.raises(Built):
        train.main(args)
    assert [type(err) for err in raised] == [Built]
    folder = runs / "sample_data" / tiny_bert.name
    assert sorted(p.name for p in folder.iterdir()) == ["20261205-024840-seed42", "20261205-024840-seed42-2"]
    for run in folder.iterdir():
        assert read_log(run).count("run directory:") == 0  # each stopped before its plan; one log per folder
        assert read_log(run).count("pooling:") == 1


def test_a_second_run_into_a_live_run_s_output_dir_is_refused(tiny_bert, tmp_path, monkeypatch):
    """Two processes given one --output_dir: the second is refused in one line (even with --overwrite_output_dir,
    which would remove the live run's files), and the first keeps its folder."""
    out = tmp_path / "run"
    second = tiny_args(tiny_bert, out, None, "--max_steps", "1", "--overwrite_output_dir")
    raised = start_a_second_run_once_claimed(monkeypatch, second)
    with pytest.raises(Built):
        train.main(tiny_args(tiny_bert, out, None, "--max_steps", "1"))
    [err] = raised
    assert isinstance(err, train.UsageError)
    assert str(err) == (
        f"the run folder {out} is in use by another train.py process (pid {os.getpid()}); wait for it to end, or "
        "choose another --output_dir."
    )
    monkeypatch.undo()
    # The claim itself (atomic, where the early look above could race): refused while held, free once released.
    with contextlib.ExitStack() as held, contextlib.ExitStack() as other:
        train.hold_run_dir(out, held)
        with pytest.raises(train.UsageError, match=f"pid {os.getpid()}"):
            train.hold_run_dir(out, other)
    # The claim ends with the process (or main()): the same folder is free for the next run.
    train.main(tiny_args(tiny_bert, out, None, "--max_steps", "1", "--overwrite_output_dir"))
    assert (out / "results.json").is_file()


def test_the_way_to_continue_a_stopped_run_names_its_folder(tmp_path):
    """ "latest" alone follows outputs/LATEST, which the next run of any dataset moves: a default-folder run stopped
    (or refused by a full disk) is continued by a command that names its own folder."""
    run = tmp_path / "runs" / "sst2" / "tiny" / "20261205-024840-seed42"
    (run / "checkpoints" / "step_000005").mkdir(parents=True)
    (run / "checkpoints" / "step_000005" / "meta.json").write_text("{}")
    resume = f"--output_dir {run} --resume_from_checkpoint latest"
    disk = OSError(28, "No space left on device")
    assert str(train.save_failed(disk, "the checkpoint step_000006", run)).endswith(
        f"free space (or make {run} writable) and continue with {resume} (from step_000005)."
    )
    assert train.late_stop_note(run, 4, None).endswith(
        f"and the command with {resume} alone (the run's config.json gives the other flags) trains again from step_000005 (the same steps) and writes results.json"
    )
