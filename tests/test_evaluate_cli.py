"""evaluate.py as the README's Evaluating section runs it: `python evaluate.py --split ... --run_dir RUN` in a fresh
process, its error lines about the run's own data, and the rows its predictions point at."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import evaluate
import train
from conftest import REPO, tiny_args, write_csv


def run_evaluate(*flags: str | Path) -> subprocess.CompletedProcess:
    """`python evaluate.py FLAGS` in a fresh process, offline."""
    return subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), *map(str, flags)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The `error:` lines a command printed."""
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_a_test_split_the_run_left_out_unlabeled_is_named_with_the_way_to_predict_it(tiny_bert, tmp_path):
    """The README: a test split without labels is left out with a note, "predict it with evaluate.py --input". Asked
    to score it, evaluate.py said the dataset had no test split, though test.csv was right there."""
    data = shutil.copytree(REPO / "sample_data", tmp_path / "data")
    lines = (data / "test.csv").read_text().splitlines()
    (data / "test.csv").write_text("\n".join([lines[0], *(line.rsplit(",", 1)[0] + ",-1" for line in lines[1:])]))
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--num_train_epochs", "1"))
    proc = run_evaluate("--run_dir", out, "--split", "test")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    assert error_lines(proc)[0] == (
        f"error: the test split of {data} has no labels (every one missing or -1), so the run left it out and there "
        "is nothing to score; predict its rows with --input FILE (its test file)."
    )
    predicted = run_evaluate("--run_dir", out, "--input", data / "test.csv")
    assert predicted.returncode == 0, predicted.stderr
    assert len((out / "predictions_test_input.jsonl").read_text().splitlines()) == 16


def test_data_moved_after_training_is_named_as_the_runs_not_as_a_flag_evaluate_lacks(tiny_bert, tmp_path):
    """The run's data is gone: the line named train.py's --dataset, which evaluate.py does not take (passing it is an
    unrecognized argument). It names the run's recorded path and the two ways on."""
    data = shutil.copytree(REPO / "sample_data", tmp_path / "data")
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--num_train_epochs", "1"))
    shutil.move(data, tmp_path / "moved")
    proc = run_evaluate("--run_dir", out, "--split", "validation")
    assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    line = error_lines(proc)[0]
    assert "--dataset" not in line
    assert line == (
        f"error: the run's data {data} (config.json's resolved.dataset): no such file or folder. Put it back there to "
        "score --split validation, or predict a file with --input FILE."
    )
    assert not (out / "eval_validation.json").exists()


def test_a_carved_validation_rows_idx_is_its_place_in_the_train_file(tiny_bert, tmp_path):
    """The README: a prediction's idx is its row's place in the split's file, "a carved validation row's place in the
    train file", so a join with the file holds, for train.py's predictions and evaluate.py's alike."""
    rows = [
        (f"row {i} " + ("ball match" if i % 3 else "rain cloud"), "sports" if i % 3 else "weather") for i in range(60)
    ]
    rows[5] = ("", "sports")  # dropped for its empty text, still counted in the places after it
    data = write_csv(tmp_path / "one" / "all.csv", rows)
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--num_train_epochs", "1", "--validation_split_ratio", "0.25"))
    written = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert len(written) == 15 and all((r["text"], r["gold"]) == rows[r["idx"]] for r in written)
    assert [r["idx"] for r in written] != list(range(15))  # places in the file, not positions in the split
    # train.log holds log lines only: progress bars (best_model/'s "Writing model shards" included) are the console's.
    log = (out / "train.log").read_text().splitlines()
    assert log and all(re.match(r"\d\d:\d\d:\d\d (INFO|WARNING) ", line) for line in log), log
    # evaluate.py in this process: what idx means is the point here, not a fresh start-up (tested above).
    scored = evaluate.main(["--run_dir", str(out), "--split", "validation"])
    again = [json.loads(line) for line in (out / "predictions_validation.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in again] == [r["idx"] for r in written]
    assert scored["num_samples"] == 15
    # --split train scores the rows the run trained on: the carve's others, each at its place in the same file.
    evaluate.main(["--run_dir", str(out), "--split", "train"])
    trained = [json.loads(line) for line in (out / "predictions_train.jsonl").read_text().splitlines()]
    assert all((r["text"], r["gold"]) == rows[r["idx"]] for r in trained)
    assert {r["idx"] for r in trained} | {r["idx"] for r in written} == set(range(60)) - {5}
    # The file itself as --input: each row's line at its place, the gold and the probability given to it as the split's
    # predictions have them; the row without text is predicted, not scored.
    evaluate.main(["--run_dir", str(out), "--input", str(data), "--output", str(tmp_path / "all.jsonl")])
    lines = [json.loads(line) for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in lines] == list(range(60)) and "gold" not in lines[5]
    for r in written:
        line = lines[r["idx"]]
        assert (line["label"], line["gold"]) == (r["pred"], r["gold"])
        assert line["gold_probability"] == pytest.approx(r["gold_probability"], rel=1e-5)


def test_a_multi_label_runs_validation_reproduces_results_at_its_tuned_thresholds(tiny_bert, tmp_path):
    """The README: `evaluate.py --split validation` gives results.json's `validation`, which for a multi-label run is
    scored at the thresholds tuned after training (the best step's scores were at 0.5); such a run has no confusion
    picture, its per-label report holds the same."""
    data = tmp_path / "data"
    data.mkdir()
    topics = [("goal match team", "sports"), ("chip software code", "tech"), ("rain wind snow", "weather")]
    rows = [
        {"text": f"{topics[i % 3][0]} {topics[(i // 3) % 3][0]} {i}", "tags": sorted({topics[i % 3][1], "tech"})}
        for i in range(90)
    ]
    for split, part in (("train", rows[:60]), ("validation", rows[60:75]), ("test", rows[75:])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, data, "--label_column", "tags", "--num_train_epochs", "1"))
    best = json.loads((out / "best_model" / "config.json").read_text())
    proc = run_evaluate("--run_dir", out, "--split", "validation")
    assert proc.returncode == 0, proc.stderr
    scored = json.loads(proc.stdout.splitlines()[-1])
    assert "validation macro_f1 and loss reproduce results.json exactly" in proc.stderr
    assert (
        scored["macro_f1"] == results["validation"]["macro_f1"]
        and scored["accuracy"] == results["validation"]["accuracy"]
    )
    assert results["thresholds"] == best["thresholds"] and len(best["thresholds"]) == 3
    step = json.loads((out / "best_model" / "best.json").read_text())["validation"]
    assert step == results["validation_at_best_step"]  # the best step's record, at 0.5
    assert (out / "eval_validation.json").is_file() and not list(out.glob("confusion_*.png"))


def test_top_k_sets_the_labels_listed_and_is_refused_where_a_run_lists_no_top_k(tiny_bert, tmp_path, monkeypatch):
    """README: --top_k K lists K labels per row, for a split's predictions as for --input's; a multi-label run (every
    label's probability) and a hierarchical one (a label per level) list no top k, so --top_k there is one error line
    before the model is loaded, not a flag ignored without a word."""
    single = tmp_path / "single"
    train.main(tiny_args(tiny_bert, single, None, "--num_train_epochs", "1"))
    evaluate.main(["--run_dir", str(single), "--split", "test", "--top_k", "4"])
    rows = [json.loads(line) for line in (single / "predictions_test.jsonl").read_text().splitlines()]
    assert {len(r["top_k"]) for r in rows} == {4}

    multi, hierarchy = tmp_path / "multi", tmp_path / "hierarchy"
    rows = [(f"row {i} goal" if i % 2 else f"row {i} rain", i % 2, 1 - i % 2, int(i % 3 == 0)) for i in range(60)]
    data = write_csv(tmp_path / "multi.csv", rows, header=("text", "sports", "weather", "misc"))
    train.main(tiny_args(tiny_bert, multi, data, "--label_columns", "sports", "weather", "misc", "--multi_label"))
    levels = [(f"row {i} goal", "sport" if i % 2 else "nature", ["goal", "rain", "wind"][i % 3]) for i in range(60)]
    data = write_csv(tmp_path / "levels.csv", levels, header=("text", "coarse", "fine"))
    train.main(tiny_args(tiny_bert, hierarchy, data, "--label_columns", "coarse", "fine", "--num_train_epochs", "1"))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(evaluate, "score_best_model", no_model)
    for run, kind in ((multi, "multi-label"), (hierarchy, "hierarchical")):
        for where in (["--split", "validation"], ["--input", str(data), "--predict_only"]):
            with pytest.raises(ValueError, match=rf"--top_k: this run is {kind}: .*; drop --top_k\.$"):
                evaluate.main(["--run_dir", str(run), *where, "--top_k", "2"])
    assert not list(tmp_path.rglob("predictions_levels*"))  # the --input predictions: none written


@pytest.mark.parametrize("content", ["text,label\n", ""])
def test_an_input_file_without_rows_is_named_as_nothing_to_predict(content, tmp_path):
    """A header-only or empty --input file: the line spoke of "an empty split" and removing the file."""
    from config import TrainConfig
    from data import load_unlabeled
    from utils import UsageError

    path = tmp_path / "new_texts.csv"
    path.write_text(content)
    with pytest.raises(UsageError) as refused:
        load_unlabeled(str(path), TrainConfig(), None)
    assert str(refused.value) == (
        f"--input {path} holds no rows, so there is nothing to predict; give a file with a row per text."
    )


def test_a_run_without_a_best_model_yet_says_whether_to_wait_continue_or_train_again(tmp_path):
    """The line said "has not finished its first evaluation" also of a run stopped long ago, as if to wait for it."""
    import fcntl

    from utils import RUN_LOCK, UsageError

    run = tmp_path / "my run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"user_config": {}, "resolved": {}}))

    def refusal() -> str:
        with pytest.raises(UsageError) as refused:
            evaluate.load_run_config(run)
        return str(refused.value)

    assert refusal() == (
        f"{run} has no best_model/: the run stopped before its first evaluation and left no checkpoint to continue "
        "from; train it again."
    )
    (run / "checkpoints" / "step_000003").mkdir(parents=True)
    (run / "checkpoints" / "step_000003" / "meta.json").write_text("{}")
    assert refusal() == (
        f"{run} has no best_model/: the run stopped before its first evaluation; continue it with train.py's "
        f"--output_dir '{run}' --resume_from_checkpoint latest (from step_000003), and score it once it has evaluated."
    )
    with open(run / RUN_LOCK, "w") as lock:  # a live train.py holds it, its pid written
        lock.write("4242\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert refusal() == (
            f"{run} has no best_model/ yet: its training (pid 4242) has not finished its first evaluation; score it "
            "once it has."
        )


def test_a_run_folder_that_is_not_there_is_named_as_missing(tmp_path):
    """A --run_dir typo, or a LATEST pointer left by a run deleted since: the line spoke of a missing config.json
    (evaluate.py) or of no checkpoint in its checkpoints/ folder (train.py --resume_from_checkpoint latest)."""
    from utils import UsageError

    with pytest.raises(UsageError) as refused:
        evaluate.main(["--run_dir", str(tmp_path / "nosuch")])
    assert str(refused.value) == f"--run_dir {tmp_path / 'nosuch'}: no such folder; pass the folder of a training run."
    (tmp_path / "results.json").write_text("{}")  # a run's file given for its folder
    with pytest.raises(UsageError) as refused:
        evaluate.main(["--run_dir", str(tmp_path / "results.json")])
    assert str(refused.value) == (
        f"--run_dir {tmp_path / 'results.json'} is a file; pass the folder of a training run ({tmp_path}?)."
    )
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "LATEST").write_text(str(tmp_path / "runs" / "deleted"))
    gone = f"{tmp_path}/runs/LATEST points at {tmp_path}/runs/deleted, which no longer exists (deleted or moved); pass"
    with pytest.raises(UsageError) as refused:
        evaluate.main(["--runs_root", str(tmp_path / "runs")])
    assert str(refused.value) == f"{gone} --run_dir RUN to name a run."
    cfg = train.parse_config(["--runs_root", str(tmp_path / "runs"), "--resume_from_checkpoint", "latest"])
    with pytest.raises(UsageError) as refused:
        train.resolve_run_dir(cfg)
    assert str(refused.value) == f"{gone} --output_dir RUN to name a run."


def test_confusion_numbers_the_classes_whose_names_no_font_can_draw(tmp_path, monkeypatch):
    """Label names in a script the plot's fonts lack (Japanese, emoji on a machine without their fonts) were drawn as
    empty boxes, with a matplotlib warning per character: such a class is numbered, and the log names each number."""
    import warnings

    import numpy as np

    undrawable = "\U0010fffd\U0010fffc"  # private-use characters: no font has them
    names = ["joy", f"{undrawable} x", "sadness"]
    drawn = {}

    def keep(fig, path, dpi=100):
        ax = fig.axes[0]
        drawn["ticks"] = [t.get_text() for t in ax.get_yticklabels()]
        drawn["title"] = ax.get_title()

    monkeypatch.setattr(evaluate, "atomic_savefig", keep)
    gold, preds = np.array([0, 1, 2]), np.array([0, 2, 2])
    logged = []
    monkeypatch.setattr(evaluate.logger, "info", lambda message, *args: logged.append(message % args))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)"
        assert evaluate.plot_confusion(gold, preds, names, tmp_path / "confusion_test.png", f"test ({undrawable})")
    assert drawn == {"ticks": ["joy", "#1", "sadness"], "title": "test (??)"}, drawn
    assert logged == [f"confusion_test.png numbers 1 class whose name its fonts cannot draw: #1 = {names[1]!r}"]


def test_confusion_draws_dollar_signs_of_class_names_as_written(tmp_path, monkeypatch):
    """Matplotlib reads text between two '$' as math: a class '$10-$20' was drawn '10 - 20', and one such as '$x^$'
    crashed the picture with a mathtext ParseSyntaxException after its predictions were written."""
    import numpy as np

    names = ["under $10", "$10-$20", "$x^$"]
    gold, preds = np.array([0, 1, 2]), np.array([0, 1, 1])
    assert evaluate.plot_confusion(gold, preds, names, tmp_path / "confusion_test.png", "test ($5 run)")
    assert (tmp_path / "confusion_test.png").stat().st_size > 5000
    drawn = {}

    def keep_labels(fig, path, dpi=100):
        fig.canvas.draw()
        drawn["rows"] = [label.get_text() for label in fig.axes[0].get_yticklabels()]
        drawn["title"] = fig.axes[0].get_title()

    monkeypatch.setattr(evaluate, "atomic_savefig", keep_labels)
    evaluate.plot_confusion(gold, preds, names, tmp_path / "again.png", "test ($5 run)")
    # Escaped, each '$' is drawn as a dollar sign, not read as the edge of math.
    assert drawn["rows"] == [r"under \$10", r"\$10-\$20", r"\$x^\$"], drawn
    assert drawn["title"] == r"test (\$5 run)", drawn


def test_scores_removed_by_predict_only_leave_the_manifest(tmp_path):
    """--predict_only removed an input's eval_<name>.json but left it listed as evaluate.py's own: a file the user
    later put under that name passed for evaluate.py's, for a later evaluate.py to replace and train.py to delete."""
    from utils import evaluate_outputs, record_evaluate_output

    run = tmp_path / "run"
    run.mkdir()
    predictions, scores, picture = run / "predictions_new.jsonl", run / "eval_new.json", run / "confusion_new.png"
    for path in (predictions, scores, picture):
        path.write_text("{}")
        record_evaluate_output(run, path, source=str(tmp_path / "new.csv") if path == predictions else None)
    evaluate.drop_stale_input_scores(run, [scores, picture])
    assert not scores.exists() and not picture.exists()
    scores.write_text('{"mine": 1}')  # the user's own file, under the name evaluate.py once used
    assert scores not in evaluate_outputs(run)
    assert json.loads((run / ".evaluate_outputs.json").read_text())["files"] == ["predictions_new.jsonl"]
