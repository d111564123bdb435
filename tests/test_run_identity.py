"""A run's identity is all of its settings: run_matrix.py, batch_train.sh and report.py never let two runs that
differ in a setting (dataset path, label column, model path, hyper-parameters) share a folder or a table row; an
interrupted batch run continues; prepare_data.py reports the split it really made."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import train_probe

import train
from config import TrainConfig, parse_config
from conftest import REPO, write_csv

SCRIPTS = REPO / "scripts"


def script(name: str, *args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run one of scripts/ (python or bash) and return the finished process."""
    runner = ["bash"] if name.endswith(".sh") else [sys.executable]
    return subprocess.run([*runner, str(SCRIPTS / name), *map(str, args)], capture_output=True, text=True, env=env)


def output_dirs(stdout: str) -> list[str]:
    """The --output_dir of every train.py command run_matrix.py printed."""
    return re.findall(r"--output_dir (\S+)", stdout)


def planned_argv(stdout: str) -> list[str]:
    """The train.py flags of the single command a --dry_run printed."""
    [line] = [line for line in stdout.splitlines() if str(REPO / "train.py") in line]
    words = shlex.split(line.split("] ", 1)[1])
    return words[words.index(str(REPO / "train.py")) + 1 :]


def fake_finished_run(run_dir: Path, argv: list[str], f1: float = 0.5) -> None:
    """A finished run folder as train.py leaves it: config.json (user_config = the parsed flags) and results.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    user = dataclasses.asdict(parse_config(argv, TrainConfig))
    (run_dir / "config.json").write_text(json.dumps({"user_config": user, "resolved": {}}))
    metrics = {"macro_f1": f1, "accuracy": f1}
    (run_dir / "results.json").write_text(json.dumps({"best_step": 6, "validation": metrics, "test": metrics}))


def one_finished_matrix_run(model: Path, out: Path) -> tuple[list[object], Path]:
    """A one-run matrix (the sample data, ``model``, seed 1) and its run folder, faked as finished as planned."""
    base = ["--datasets", REPO / "sample_data", "--models", model, "--seeds", "1", "--output_dir", out]
    base += ["--num_train_epochs", "1", "--max_seq_length", "32"]
    planned = script("run_matrix.py", *base, "--dry_run")
    [run_dir] = map(Path, output_dirs(planned.stdout))
    fake_finished_run(run_dir, planned_argv(planned.stdout))
    return base, run_dir


def report_rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "results.csv") as handle:
        return list(csv.DictReader(handle))


def write_report_run(folder: Path, dataset: str, model: str, seed: int, f1: float, **settings: object) -> Path:
    """A minimal finished run for report.py: only the files it reads."""
    folder.mkdir(parents=True)
    user = {"dataset": dataset, "model_name_or_path": model, "seed": seed, "label_column": "label", **settings}
    (folder / "config.json").write_text(json.dumps({"user_config": user, "resolved": {}}))
    metrics = {"macro_f1": f1, "accuracy": f1}
    (folder / "results.json").write_text(json.dumps({"best_step": 10, "validation": metrics, "test": metrics}))
    return folder


# ---- report.py: rows keyed on the full identity, one run per seed ----------------------------------------------


def test_report_keeps_datasets_with_one_short_name_apart(tmp_path):
    # The reviewer's case: two versions of a dataset, both folders called "reviews", averaged as if they were seeds.
    for version, scores in (("v1", (0.90, 0.92)), ("v2", (0.50, 0.52))):
        for seed, f1 in enumerate(scores, 1):
            write_report_run(tmp_path / version / f"s{seed}", f"/data/{version}/reviews", "/m/minilm", seed, f1)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    rows = {r["dataset"]: r for r in report_rows(tmp_path)}
    assert set(rows) == {"v1-reviews", "v2-reviews"}
    assert float(rows["v1-reviews"]["test_macro_f1_mean"]) == pytest.approx(0.91)
    assert float(rows["v2-reviews"]["test_macro_f1_mean"]) == pytest.approx(0.51)
    assert rows["v1-reviews"]["seeds"] == rows["v2-reviews"]["seeds"] == "2"
    assert rows["v1-reviews"]["dataset_path"] == "/data/v1/reviews"


def test_report_keeps_models_with_one_short_name_apart_and_compares_them(tmp_path):
    write_report_run(tmp_path / "a", "/data/emotion", "org1/bert-base", 1, 0.6)
    write_report_run(tmp_path / "b", "/data/emotion", "org2/bert-base", 1, 0.8)
    # Another label column of one dataset is another task: its own row, never averaged with the first.
    write_report_run(tmp_path / "c", "/data/emotion", "org1/bert-base", 1, 0.3, label_column="label_fine")
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "org1-bert-base")
    assert proc.returncode == 0, proc.stderr
    rows = {(r["dataset"], r["model"]): r for r in report_rows(tmp_path)}
    assert set(rows) == {
        ("emotion", "org1-bert-base"),
        ("emotion", "org2-bert-base"),
        ("emotion-label_fine", "org1-bert-base"),
    }
    assert rows["emotion", "org2-bert-base"]["model_path"] == "org2/bert-base"
    assert float(rows["emotion", "org2-bert-base"]["delta_test_macro_f1"]) == pytest.approx(0.2)
    assert float(rows["emotion-label_fine", "org1-bert-base"]["test_macro_f1_mean"]) == pytest.approx(0.3)


def test_report_baseline_is_a_table_name_or_a_unique_part_of_one_and_an_error_otherwise(tmp_path):
    write_report_run(tmp_path / "a", "/data/emotion", "org1/minilm-base", 1, 0.6)
    write_report_run(tmp_path / "b", "/data/emotion", "org2/bert-base", 1, 0.8)
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "mini")
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert float(rows["bert-base"]["delta_test_macro_f1"]) == pytest.approx(0.2)
    before = (tmp_path / "results.csv").read_text()
    for name, word in (("nope", "matches no model"), ("base", "is ambiguous")):
        proc = script("report.py", tmp_path, "--no_plots", "--baseline", name)
        assert proc.returncode == 2 and word in proc.stderr and proc.stderr.startswith("error:"), proc.stderr
    assert (tmp_path / "results.csv").read_text() == before  # nothing rewritten by a failed call


def test_report_baseline_on_a_grid_is_a_full_row_name_or_the_models_selected_point(tmp_path):
    """A learning-rate grid of one model: the baseline is a row's full name, or the model's name (its grid point
    selected on validation)."""
    for lr, f1 in ((2e-5, 0.5), (5e-5, 0.7)):
        run = write_report_run(tmp_path / f"lr{lr}", "/data/emotion", "org1/minilm-base", 1, f1, learning_rate=lr)
        (run / "matrix.json").write_text(json.dumps({"variant": None, "grid": {"learning_rate": lr}}))
    write_report_run(tmp_path / "bert", "/data/emotion", "org2/bert-base", 1, 0.9)
    for name in ("minilm-base (learning_rate=5e-05)", "minilm-base", "mini"):
        proc = script("report.py", tmp_path, "--no_plots", "--baseline", name)
        assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
        rows = {r["model"]: r for r in report_rows(tmp_path)}
        assert float(rows["bert-base"]["delta_test_macro_f1"]) == pytest.approx(0.2), name
    # The point validation did not select never competes, so it cannot be the baseline: said, with what to pass.
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "minilm-base (learning_rate=2e-05)")
    assert "a grid point that validation did not select" in proc.stderr and "(minilm-base)" in proc.stderr


def test_report_baseline_given_as_the_path_of_several_variant_rows_is_ambiguous(tmp_path):
    """Two variants of one model share its path: the path alone cannot say which row is the baseline."""
    for variant, lr, f1 in (("slow", 2e-5, 0.5), ("fast", 5e-5, 0.7)):
        run = write_report_run(tmp_path / variant, "/data/emotion", "/m/minilm", 1, f1, learning_rate=lr)
        (run / "matrix.json").write_text(json.dumps({"variant": variant, "grid": {}}))
    write_report_run(tmp_path / "bert", "/data/emotion", "/m/bert", 1, 0.9)
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "/m/minilm")
    assert proc.returncode == 2 and proc.stderr.startswith("error:"), proc.stderr
    assert "several rows" in proc.stderr and "minilm [fast]" in proc.stderr and "minilm [slow]" in proc.stderr
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "minilm [slow]")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert float(rows["minilm [fast]"]["delta_test_macro_f1"]) == pytest.approx(0.2)
    # The path of a model with one row is still a baseline.
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "/m/bert")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert float(rows["minilm [fast]"]["delta_test_macro_f1"]) == pytest.approx(-0.2)


def test_report_joins_runs_that_differ_only_in_a_setting_their_flags_left_unused(tmp_path):
    """An older train.py recorded --focal_gamma without --loss focal, where it changes nothing: that seed belongs to
    the row of its recipe. Under --loss focal the gamma is the recipe: each its own row."""
    for seed, gamma in ((1, 3.0), (2, 2.0)):
        write_report_run(
            tmp_path / f"ce{seed}",
            "/data/emotion",
            "/m/minilm",
            seed,
            0.5 + seed / 10,
            loss="cross_entropy",
            focal_gamma=gamma,
        )
    for gamma, f1 in ((3.0, 0.4), (1.0, 0.9)):
        write_report_run(
            tmp_path / f"focal{gamma}", "/data/emotion", "/m/minilm", 1, f1, loss="focal", focal_gamma=gamma
        )
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    rows = {(r["model"], r["seeds"], r["test_macro_f1_mean"]) for r in report_rows(tmp_path)}
    assert len(rows) == 3, rows
    [plain] = [r for r in report_rows(tmp_path) if r["seeds"] == "2"]
    assert float(plain["test_macro_f1_mean"]) == pytest.approx(0.65) and "focal_gamma" not in plain["settings"]


def test_report_joins_a_run_recorded_before_a_setting_existed_to_the_rows_of_its_default(tmp_path):
    """A seed trained before --loss and --label_smoothing existed ran what their defaults run: one row with a seed
    that records them at their defaults, and apart from one that sets another value."""
    write_report_run(tmp_path / "old", "/data/emotion", "/m/minilm", 1, 0.6)
    write_report_run(tmp_path / "new", "/data/emotion", "/m/minilm", 2, 0.8, loss="cross_entropy", label_smoothing=0.0)
    write_report_run(tmp_path / "smooth", "/data/emotion", "/m/minilm", 1, 0.9, label_smoothing=0.1)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert set(rows) == {"minilm (label_smoothing=0.0)", "minilm (label_smoothing=0.1)"}, set(rows)
    assert rows["minilm (label_smoothing=0.0)"]["seeds"] == "2"
    assert float(rows["minilm (label_smoothing=0.0)"]["test_macro_f1_mean"]) == pytest.approx(0.7)


def test_report_keeps_one_run_per_seed_and_warns_about_the_duplicates(tmp_path):
    older = write_report_run(tmp_path / "first", "/data/emotion", "/m/minilm", 1, 0.6)
    newer = write_report_run(tmp_path / "again", "/data/emotion", "/m/minilm", 1, 0.8)
    os.utime(older / "results.json", (1_000_000, 1_000_000))
    os.utime(newer / "results.json", (2_000_000, 2_000_000))
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    [row] = report_rows(tmp_path)
    # One seed is one run: the most recent result, no made-up standard deviation.
    assert row["seeds"] == "1" and row["test_macro_f1_std"] == ""
    assert float(row["test_macro_f1_mean"]) == pytest.approx(0.8)
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(older) in warning[0] and str(newer) in warning[0]


def test_report_leaves_out_unreadable_or_non_finite_runs_and_names_them(tmp_path):
    """A results.json cut off by a full disk, one without its keys, a NaN score, a metrics.jsonl cut mid-line: the
    table is made from the good runs, and each bad one is named with what to do."""
    for seed, f1 in ((1, 0.6), (2, 0.8)):
        write_report_run(tmp_path / f"s{seed}", "/data/emotion", "/m/minilm", seed, f1)
    (tmp_path / "s1" / "metrics.jsonl").write_text(
        '{"step": 2, "loss": 0.5, "lr": 1e-5, "grad_norm": 1}\n{"step": 4, "lo'
    )
    cut = write_report_run(tmp_path / "s3", "/data/emotion", "/m/minilm", 3, 0.1)
    (cut / "results.json").write_text('{"best_step": 10, "valid')
    empty = write_report_run(tmp_path / "s4", "/data/emotion", "/m/minilm", 4, 0.1)
    (empty / "results.json").write_text("{}")
    nan = write_report_run(tmp_path / "s5", "/data/emotion", "/m/minilm", 5, float("nan"))
    proc = script("report.py", tmp_path)
    assert proc.returncode == 0, proc.stderr
    [row] = report_rows(tmp_path)
    assert row["seeds"] == "2" and float(row["test_macro_f1_mean"]) == pytest.approx(0.7)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and all("left out" in w for w in warnings)
    assert any(str(cut) in w and "cannot be read" in w for w in warnings)
    assert any(str(empty) in w and "cannot be read" in w for w in warnings)
    assert any(str(nan) in w and "not a finite number" in w for w in warnings)
    assert (tmp_path / "s1" / "curves.png").is_file()


def test_report_warns_when_the_seeds_of_a_row_saw_different_data(tmp_path):
    """A dataset edited in place (a class removed) between seed 2 and seed 3: one row would average two datasets."""
    for seed, labels, train_rows in ((1, ["a", "b", "c"], 48), (2, ["a", "b", "c"], 48), (3, ["a", "b"], 36)):
        run = write_report_run(tmp_path / f"s{seed}", "/data/topics", "/m/minilm", seed, 0.5)
        config = json.loads((run / "config.json").read_text())
        config["resolved"] = {"label_names": labels, "split_sizes": {"train": train_rows}}
        (run / "config.json").write_text(json.dumps(config))
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert "its runs saw different data" in warning and "seeds 1, 2:" in warning and "seeds 3:" in warning


def test_report_warns_when_a_test_row_was_edited_between_seeds_but_not_about_carved_splits(tmp_path):
    """Same labels, same sizes, but seed 3 was tested on edited rows: only the digest tells. A validation split carved
    per seed (and so train) differs between seeds by design: no warning for that."""
    for seed, test in ((1, "t-old"), (2, "t-old"), (3, "t-new")):
        run = write_report_run(tmp_path / f"s{seed}", "/data/topics", "/m/minilm", seed, 0.5)
        config = json.loads((run / "config.json").read_text())
        digests = {"train": f"tr{seed}", "validation": f"va{seed}", "test": test}
        config["resolved"] = {"label_names": ["a", "b"], "split_sizes": {"test": 20}, "split_digests": digests}
        (run / "config.json").write_text(json.dumps(config))
    proc = script("report.py", tmp_path, "--no_plots")
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert "its runs saw different data" in warning and "seeds 1, 2:" in warning and "seeds 3:" in warning
    shutil.rmtree(tmp_path / "s3")
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


def test_report_does_not_take_a_run_without_a_test_digest_for_other_data(tmp_path):
    """Runs written before digests were recorded, beside newer ones: an unknown digest is no difference."""
    for seed, digests in ((1, None), (2, {"test": "t1"}), (3, {"test": "t1"})):
        run = write_report_run(tmp_path / f"s{seed}", "/data/topics", "/m/minilm", seed, 0.5)
        config = json.loads((run / "config.json").read_text())
        config["resolved"] = {"label_names": ["a", "b"], "split_sizes": {"test": 20}}
        if digests:
            config["resolved"]["split_digests"] = digests
        (run / "config.json").write_text(json.dumps(config))
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr


def test_a_metrics_line_cut_off_by_a_kill_does_not_stop_the_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 2, "loss": 0.5}\n{"step": 4, "loss": 0.4}\n{"step": 6, "lo')
    train.truncate_metrics(path, 4)
    assert path.read_text() == '{"step": 2, "loss": 0.5}\n{"step": 4, "loss": 0.4}\n'
    with open(path, "a") as handle:  # what the resumed run appends starts a line of its own
        handle.write('{"step": 6, "loss": 0.3}\n')
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [2, 4, 6]


# ---- run_matrix.py: unique folders, and a refusal instead of reusing a run made with other settings ----------------


def test_matrix_gives_colliding_short_names_their_own_folders(tmp_path):
    models = [str(tmp_path / org / "bert-base") for org in ("org1", "org2")]
    datasets = [str(tmp_path / "data" / v / "reviews") for v in ("v1", "v2")]
    for path in models:
        Path(path).mkdir(parents=True)
    for path in datasets:  # a dataset train.py reads: a dry run checks each one
        shutil.copytree(REPO / "sample_data", path)
    out = tmp_path / "out"
    proc = script(
        "run_matrix.py", "--datasets", *datasets, "--models", *models, "--seeds", "1", "--output_dir", out, "--dry_run"
    )
    assert proc.returncode == 0, proc.stderr
    dirs = [Path(d).relative_to(out).as_posix() for d in output_dirs(proc.stdout)]
    assert dirs == [f"{v}-reviews/{org}-bert-base/seed1" for v in ("v1", "v2") for org in ("org1", "org2")]


DATA = str(REPO / "sample_data")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"datasets": DATA}, "datasets must be a list"),
        ({"grids": {"learning_rate": [1e-4]}}, r"unknown key 'grids' \(did you mean grid\?\)"),
        ({"seeds": []}, "seeds must be a non-empty list of integers"),
        ({"seeds": [1, 1, 2]}, "seeds lists 1 more than once"),
        ({"seeds": [1, None]}, "seeds must be a non-empty list of integers"),
        ({"train_args": {"seed": 5}}, "train_args sets seed, which the matrix sets for each run"),
        ({"grid": {"seed": [7, 8]}}, "the grid of the matrix sets seed"),
        ({"grid": {"learning": [1e-4]}}, r"'learning' is not a train.py flag \(did you mean learning_rate"),
        ({"datasets": [{"path": DATA, "model_name_or_path": "x"}]}, "entry .* sets model_name_or_path"),
        (
            {"variants": {"low": {"learning_rate": 1e-6}}, "grid": {"learning_rate": [1e-4]}},
            "the variant 'low' and the grid both set learning_rate",
        ),
        ({"variants": [{"name": "a", "head": "linear"}, {"name": "a", "head": "mlp"}]}, "the name 'a' more than once"),
        ({"variants": {"mlp/v1": {"head": "mlp"}, "mlp_v1": {"head": "linear"}}}, "two planned runs share the folder"),
        (
            {"variants": {"base": {}, "lin": {"head": "linear"}}},
            r'two planned runs have the same settings: \{"variant": "base"\} in \S+/base\S* and '
            r'\{"variant": "lin"\} in \S+/lin\S* \(',
        ),
        (
            {"variants": {"base": {}, "lin": {"head": "linear"}}, "grid": {"learning_rate": [1e-4, 2e-4]}},
            r'same settings: \{"variant": "base", "learning_rate": 0.0001\} in \S+ and '
            r'\{"variant": "lin", "learning_rate": 0.0001\} in ',
        ),
        ({"datasets": [DATA, DATA + "/"]}, "two planned runs share the folder"),
        ({"datasets": ["./no/such/data"]}, r"datasets entry ./no/such/data: no such file or folder"),
        ({"datasets": [{"path": DATA, "name": "../../escape"}]}, "must be a plain folder name"),
    ],
)
def test_matrix_refuses_a_config_that_would_mislabel_or_lose_runs(tiny_bert, tmp_path, config, message):
    """Keys the matrix would silently override or ignore, wrong types, and two planned runs that are one: each is
    one error line before anything runs."""
    full = {"datasets": [DATA], "models": [str(tiny_bert)], "seeds": [1], "output_dir": str(tmp_path / "out")}
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(full | config))
    proc = script("run_matrix.py", "--config", path, "--dry_run")
    assert proc.returncode == 2, proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error:") and re.search(message, line), line
    assert not (tmp_path / "out").exists()


def test_matrix_refuses_a_yaml_key_given_twice(tiny_bert, tmp_path):
    """A second ``seeds:`` further down the file would silently replace the first."""
    path = tmp_path / "matrix.yaml"
    path.write_text(
        f"datasets: [{DATA}]\nmodels: [{tiny_bert}]\nseeds: [1, 2, 3]\noutput_dir: {tmp_path / 'out'}\nseeds: [4]\n"
    )
    proc = script("run_matrix.py", "--config", path, "--dry_run")
    assert proc.returncode == 2, proc.stdout
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error:") and "'seeds' is given twice (again on line 5)" in line, line
    assert not (tmp_path / "out").exists()
    # One key in two different mappings is no duplicate.
    path.write_text(
        f"datasets: [{DATA}]\nmodels: [{tiny_bert}]\nseeds: [1]\noutput_dir: {tmp_path / 'out'}\n"
        "variants:\n  a: {learning_rate: 1.0e-4}\n  b: {learning_rate: 2.0e-4}\n"
    )
    proc = script("run_matrix.py", "--config", path, "--dry_run")
    assert proc.returncode == 0 and len(output_dirs(proc.stdout)) == 2, proc.stderr
    # A merge key and the keys that override what it merges are YAML's way of deriving a variant: no duplicates.
    path.write_text(
        f"datasets: [{DATA}]\nmodels: [{tiny_bert}]\nseeds: [1]\noutput_dir: {tmp_path / 'out'}\n"
        "variants:\n  base: &base {learning_rate: 1.0e-4, warmup_ratio: 0.2}\n"
        "  derived:\n    <<: *base\n    learning_rate: 2.0e-4\n"
    )
    proc = script("run_matrix.py", "--config", path, "--dry_run")
    assert proc.returncode == 0, proc.stderr
    argvs = [line for line in proc.stdout.splitlines() if "train.py" in line]
    assert any("--learning_rate 0.0002" in a and "--warmup_ratio 0.2" in a for a in argvs), proc.stdout


def test_a_model_path_under_a_local_folder_that_lacks_it_is_refused_not_taken_for_a_hub_id(
    tiny_bert, tmp_path, monkeypatch
):
    """`--models models/bert` where ./models/ exists but holds no bert/: a path, not an ORG/NAME hub id (every run
    would fail at start); an ORG/NAME with no such local folder is still a hub id."""
    sys.path.insert(0, str(SCRIPTS))
    import run_matrix

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    cfg = {"datasets": [DATA], "models": ["models/bert"], "output_dir": str(tmp_path / "out")}
    with pytest.raises(ValueError) as refused:
        run_matrix.plan(cfg, [])
    assert str(refused.value) == (
        f"models entry models/bert: no such file or folder (from {tmp_path}; models/ is a folder here, so this is no "
        "hub id)."
    )
    assert len(run_matrix.plan(cfg | {"models": ["org/bert"]}, [])) == 1


def test_a_missing_path_is_a_warning_for_slurm_and_nothing_for_status(tiny_bert, tmp_path):
    """The compute nodes may mount what the submitting host does not; --status needs no data at all."""
    sys.path.insert(0, str(SCRIPTS))
    import run_matrix

    cfg = {"datasets": ["/cluster/only/data"], "models": [str(tiny_bert)], "output_dir": str(tmp_path / "out")}
    with pytest.raises(ValueError, match="no such file or folder"):
        run_matrix.plan(cfg, [])
    assert len(run_matrix.plan(cfg, [], paths="warn")) == len(run_matrix.plan(cfg, [], paths="ignore")) == 1


def test_matrix_refuses_a_folder_trained_with_other_settings(tiny_bert, tmp_path):
    base, run_dir = one_finished_matrix_run(tiny_bert, tmp_path / "out")
    stamp = (run_dir / "results.json").stat().st_mtime_ns

    same = script("run_matrix.py", *base)
    assert same.returncode == 0 and "0 trained, 1 skipped, 0 failed of 1 run" in same.stdout, same.stderr

    changed = script("run_matrix.py", *base, "--learning_rate", "1e-3")
    assert changed.returncode == 2, changed.stdout
    [line] = changed.stderr.strip().splitlines()
    assert line.startswith("error:") and str(run_dir) in line and "learning_rate" in line
    assert "skip" not in changed.stdout and (run_dir / "results.json").stat().st_mtime_ns == stamp

    # A partly trained run is refused as well: resuming it with other settings would mix two experiments.
    (run_dir / "results.json").unlink()
    (run_dir / "checkpoints" / "step_000003").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_000003" / "meta.json").write_text("{}")
    resumed = script("run_matrix.py", *base, "--max_seq_length", "16", "--dry_run")
    assert resumed.returncode == 2 and "max_seq_length" in resumed.stderr, resumed.stdout


def test_matrix_takes_a_folder_whose_run_holds_settings_no_flag_used(tiny_bert, tmp_path):
    """A run trained when --focal_gamma was taken (and ignored) without --loss focal recorded it; train.py now
    refuses the flag, so the campaign drops it: the run is the one planned, not a folder of other settings."""
    base, run_dir = one_finished_matrix_run(tiny_bert, tmp_path / "out")
    config = json.loads((run_dir / "config.json").read_text())
    config["user_config"] |= {"focal_gamma": 3.0, "distill_alpha": 0.9}
    (run_dir / "config.json").write_text(json.dumps(config))
    same = script("run_matrix.py", *base)
    assert same.returncode == 0 and "0 trained, 1 skipped" in same.stdout, same.stdout + same.stderr
    focal = script("run_matrix.py", *base, "--loss", "focal", "--dry_run")
    assert focal.returncode == 2 and "focal_gamma 3.0 there, 2.0 planned" in focal.stderr, focal.stdout


def test_matrix_trains_another_model_with_the_same_short_name_in_its_own_folder(tiny_bert, tmp_path):
    out = tmp_path / "out"
    first, second = (shutil.copytree(tiny_bert, tmp_path / org / "tiny") for org in ("org1", "org2"))
    base = ["--datasets", REPO / "sample_data", "--seeds", "1", "--output_dir", out, "--num_train_epochs", "1"]
    planned = script("run_matrix.py", *base, "--models", first, "--dry_run")
    [run_dir] = map(Path, output_dirs(planned.stdout))
    assert run_dir == out / "sample_data" / "tiny" / "seed1"
    fake_finished_run(run_dir, planned_argv(planned.stdout))

    other = script("run_matrix.py", *base, "--models", second, "--dry_run")
    assert other.returncode == 0, other.stderr
    assert not re.search(r"\bskip\b", other.stdout)  # the other model's results are not this one's
    [other_dir] = map(Path, output_dirs(other.stdout))
    assert other_dir != run_dir and other_dir.parent.parent == run_dir.parent.parent


# ---- batch_train.sh: resumes an interrupted run, collision-free folders ----------------------------------------


def batch_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "LAUNCH": sys.executable, "RUNS_ROOT": str(tmp_path / "out"), "SEED": "3"}


BATCH_FLAGS = ["--num_train_epochs", "1", "--max_seq_length", "32", "--checkpointing_steps", "2"]


def batch_train_argv(model: Path, run_dir: Path) -> list[str]:
    """The train.py flags batch_train.sh passes for sample_data, batch 8, SEED=3."""
    argv = ["--dataset", str(REPO / "sample_data"), "--model_name_or_path", str(model)]
    argv += ["--per_device_train_batch_size", "8", "--seed", "3", "--output_dir", str(run_dir)]
    return [*argv, "--runs_root", str(run_dir.parents[2]), *BATCH_FLAGS]


@pytest.fixture
def probe():
    """train.py's test hooks, removed after the test."""
    yield train_probe
    train_probe.uninstall()


def test_batch_train_resumes_an_interrupted_run(tiny_bert, tmp_path, probe):
    run_dir = tmp_path / "out" / "sample_data" / tiny_bert.name / "seed3"
    probe.install(block_at=2, self_signal=True)
    with pytest.raises(SystemExit):
        train.main(batch_train_argv(tiny_bert, run_dir))
    probe.uninstall()
    assert not (run_dir / "results.json").exists() and (run_dir / "checkpoints" / "step_000002").is_dir()

    command = [REPO / "sample_data", tiny_bert, "8", *BATCH_FLAGS]
    proc = script("batch_train.sh", *command, env=batch_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (run_dir / "results.json").is_file()
    assert "resumed from" in (run_dir / "train.log").read_text()


def test_batch_train_starts_over_a_run_that_stopped_before_its_first_checkpoint(tiny_bert, tmp_path):
    run_dir = tmp_path / "out" / "sample_data" / tiny_bert.name / "seed3"
    fake_finished_run(run_dir, batch_train_argv(tiny_bert, run_dir))
    (run_dir / "results.json").unlink()  # died before it finished and before any checkpoint
    command = [REPO / "sample_data", tiny_bert, "8", *BATCH_FLAGS]
    proc = script("batch_train.sh", *command, env=batch_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads((run_dir / "results.json").read_text())["global_step"] == 6


def test_batch_eval_scores_a_split_of_every_finished_run_then_tabulates_them(tiny_bert, tmp_path):
    """README: `scripts/batch_eval.sh [ROOT] [SPLIT]` scores that split of every finished run under ROOT with
    evaluate.py (eval_<split>.json, predictions_<split>.jsonl, confusion_<split>.png), then writes report.py's table."""
    root = tmp_path / "out"
    run_dir = root / "sample_data" / tiny_bert.name / "seed3"
    results = train.main(batch_train_argv(tiny_bert, run_dir))
    proc = script("batch_eval.sh", root, "validation")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"== {run_dir}" in proc.stdout
    for name in ("eval_validation.json", "predictions_validation.jsonl", "confusion_validation.png"):
        assert (run_dir / name).is_file(), name
    scored = json.loads((run_dir / "eval_validation.json").read_text())
    assert scored["macro_f1"] == results["validation"]["macro_f1"]
    assert (root / "results.md").is_file() and (root / "results.csv").is_file()


def test_batch_train_gives_models_with_one_basename_their_own_folders(tiny_bert, tmp_path):
    first, second = (shutil.copytree(tiny_bert, tmp_path / org / "tiny") for org in ("org1", "org2"))
    taken = tmp_path / "out" / "sample_data" / "tiny" / "seed3"
    fake_finished_run(taken, batch_train_argv(first, taken))
    proc = script("batch_train.sh", REPO / "sample_data", second, "8", *BATCH_FLAGS, env=batch_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not re.search(r"\bskip\b", proc.stdout)
    runs = {
        json.loads(p.read_text())["user_config"]["model_name_or_path"]: p.parent
        for p in (tmp_path / "out").glob("sample_data/*/seed3/config.json")
    }
    assert set(runs) == {str(first), str(second)} and (runs[str(second)] / "results.json").is_file()


# ---- prepare_data.py: the report says how the split was made -----------------------------------------------------


def test_prepare_data_reports_a_random_split_when_a_class_is_too_small(tiny_bert, tmp_path):
    # 12 classes of 5 rows: 10% of 60 rows is fewer test rows than classes, so the carve cannot be stratified.
    rows = [(f"text {c} number {i}", f"class{c:02d}") for c in range(12) for i in range(5)]
    source = write_csv(tmp_path / "many.csv", rows)
    proc = script("prepare_data.py", source, tmp_path / "many", "--tokenizer", tiny_bert, "--seed", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = json.loads((tmp_path / "many" / "report.json").read_text())["notes"]
    assert len(notes) == 2 and all("random" in n and "stratified" not in n for n in notes)
    assert "stratified" not in (tmp_path / "many" / "report.md").read_text()

    balanced = write_csv(tmp_path / "two.csv", [(f"text {i}", "ab"[i % 2]) for i in range(100)])
    proc = script("prepare_data.py", balanced, tmp_path / "two", "--tokenizer", tiny_bert)
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = json.loads((tmp_path / "two" / "report.json").read_text())["notes"]
    assert len(notes) == 2 and all("stratified" in n and "random" not in n for n in notes)
