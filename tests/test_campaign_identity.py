"""A campaign's experiments stay apart from the matrix to the verdict: one model entered twice with other flags, runs
launched with another precision or process count, runs tested on other test data, a single seed's "win", seeds run
on other library versions or model files, and runs the table leaves out."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, f1_score
from test_compare import FAST, balanced_gold, with_errors
from test_run_identity import fake_finished_run, one_finished_matrix_run, output_dirs, planned_argv, report_rows, script

from conftest import ACCELERATE_LAUNCH, REPO
from utils import run_cli

sys.path.insert(0, str(REPO / "scripts"))
import compare

LABELS = ["neg", "pos"]


def write_run(
    root: Path,
    folder: str,
    model: str,
    seed: int,
    gold: list[str],
    pred: list[str],
    val: float | None = None,
    grid: dict | None = None,
    resolved: dict | None = None,
    dataset: str = "d1",
    **settings: object,
) -> Path:
    """A finished run folder as train.py and run_matrix.py leave it, with ``settings`` in its user_config and
    ``resolved`` added to config.json's resolved block."""
    run_dir = root / dataset / folder / f"seed{seed}"
    run_dir.mkdir(parents=True)
    user = {"dataset": f"/data/{dataset}", "model_name_or_path": model, "seed": seed, **(grid or {}), **settings}
    record = {"dataset": f"/data/{dataset}", "label_names": LABELS, "mixed_precision": "no", "num_processes": 1}
    record |= {"split_digests": {"test": f"{dataset}-test"}} | (resolved or {})
    (run_dir / "config.json").write_text(json.dumps({"user_config": user, "resolved": record}))
    test = {"macro_f1": f1_score(gold, pred, average="macro"), "accuracy": accuracy_score(gold, pred)}
    test["num_samples"] = len(gold)
    validation = dict.fromkeys(("macro_f1", "accuracy"), test["macro_f1"] if val is None else val)
    results = {"metric": "macro_f1", "validation": validation, "test": test, "best_step": 10}
    (run_dir / "results.json").write_text(json.dumps(results))
    if grid:
        (run_dir / "matrix.json").write_text(json.dumps({"variant": None, "grid": grid}))
    rows = [{"idx": i, "gold": g, "pred": p} for i, (g, p) in enumerate(zip(gold, pred, strict=True))]
    (run_dir / "predictions_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def run_compare(root: Path, *args: str, capsys: pytest.CaptureFixture) -> dict:
    """compare.main in-process; returns the JSON of the last stdout line."""
    compare.main([str(root), *FAST, *args])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def compare_error(root: Path, *args: str, capsys: pytest.CaptureFixture) -> str:
    """The one error line compare.py exits 2 with."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda _: compare.main([str(root), *FAST, *args]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error:"), err
    return err


# ---- one model entered twice with other flags --------------------------------------------------------------------


def two_entries_of_one_model(root: Path) -> None:
    """models: [{path: org/enc, learning_rate: 1e-3}, {path: org/enc, learning_rate: 1e-5}, org/base] with a
    weight-decay grid, as run_matrix.py lays it out (a hash tells the two entries' folders apart). Validation prefers
    wd 0.0 at lr 1e-3 and wd 0.1 at lr 1e-5; the weak lr 1e-5 runs are the newest."""
    gold = balanced_gold(40)
    for folder, lr, errors, vals in (("enc-1", 1e-3, 4, (0.8, 0.7)), ("enc-2", 1e-5, 16, (0.2, 0.3))):
        for wd, val in zip((0.0, 0.1), vals, strict=True):
            for seed in (1, 2):
                pred = with_errors(gold, errors + 2 * seed, offset=seed)
                grid = {"weight_decay": wd}
                write_run(root, f"{folder}/weight_decay={wd}", "org/enc", seed, gold, pred, val, grid, learning_rate=lr)
    for seed in (1, 2):
        write_run(root, "base", "org/base", seed, gold, with_errors(gold, 10, offset=seed), 0.5)


def test_one_model_entered_twice_is_two_models_in_the_report_and_the_verdict(tmp_path, capsys):
    two_entries_of_one_model(tmp_path)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    assert "trained 2 times" not in proc.stderr, proc.stderr  # no seed of one entry stands in for the other's
    # Each entry's grid point is chosen among its own runs, on validation.
    for model, point, score in (("enc (learning_rate=0.001)", 0.0, 0.8), ("enc (learning_rate=1e-05)", 0.1, 0.3)):
        assert f"d1 / {model}: {{'weight_decay': {point}}} (mean validation macro_f1 {score:.4f} over 2" in proc.stdout
    assert {r["model"] for r in report_rows(tmp_path)} >= {"enc (learning_rate=0.001, weight_decay=0.0)", "base"}

    # The name report.py gives the entry is the name compare.py takes.
    out = run_compare(tmp_path, "--a", "enc (learning_rate=0.001)", "--b", "base", "--bootstrap", "100", capsys=capsys)
    r = out["per_dataset"]["d1"]
    assert r["a_grid"] == {"weight_decay": 0.0} and r["seeds"] == [1, 2]
    assert r["a_mean"] == pytest.approx(1 - 7 / 40)  # lr 1e-3's runs only: 6 and 8 errors
    # Each comparison has files of its own (a dot in a name is no file suffix).
    assert (tmp_path / "compare_enc_learning_rate_0.001_vs_base.md").is_file()
    # The bare model name is two models: refused, with the names to use.
    err = compare_error(tmp_path, "--a", "enc", "--b", "base", capsys=capsys)
    assert "ambiguous" in err and "'enc (learning_rate=0.001)'" in err and "'enc (learning_rate=1e-05)'" in err
    # A row of one grid point names no model: compare.py compares a model at its point selected on validation.
    err = compare_error(tmp_path, "--a", "enc (learning_rate=0.001, weight_decay=0.1)", "--b", "base", capsys=capsys)
    assert "a grid point of 'enc (learning_rate=0.001)'" in err
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert set(ranked["models"]) == {"enc (learning_rate=0.001)", "enc (learning_rate=1e-05)", "base"}


def test_a_batch_size_grid_is_one_model_whose_point_is_chosen_on_validation(tmp_path):
    """Each batch size gives another effective batch; that follows from the grid's own flag and must not make each
    point a model of its own, which would leave nothing to select."""
    gold = balanced_gold(40)
    for batch, val in ((8, 0.6), (16, 0.7)):
        for seed in (1, 2):
            grid = {"per_device_train_batch_size": batch}
            resolved = {"effective_batch_size": batch}
            write_run(tmp_path, f"enc/b={batch}", "org/enc", seed, gold, with_errors(gold, 4), val, grid, resolved)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    assert "d1 / enc: {'per_device_train_batch_size': 16} (mean validation macro_f1 0.7000 over 2" in proc.stdout


# ---- a single seed never wins a dataset ---------------------------------------------------------------------------


def test_one_seed_is_never_a_significant_win(tmp_path, capsys):
    """A right on every example, B wrong on 10% of 400: the test-example bootstrap separates them, but one seed says
    nothing of the seed noise, so no dataset is won, and the output says why."""
    gold = balanced_gold(400)
    for dataset in ("d1", "d2"):
        write_run(tmp_path, "a", "org/a", 1, gold, gold, dataset=dataset)
        write_run(tmp_path, "b", "org/b", 1, gold, with_errors(gold, 40), dataset=dataset)
    out = run_compare(tmp_path, "--a", "a", "--b", "b", "--bootstrap", "500", capsys=capsys)
    for r in out["per_dataset"].values():
        assert r["significant"] and r["ci_low"] > 0  # the bootstrap alone would call it
        assert r["winner"] is None
    assert out["datasets_a_wins"] == 0 and "significant wins: 0 vs 0" in out["verdict"]
    assert any("d1: no win with 1 paired seed" in note and "≥ 2" in note for note in out["notes"]), out["notes"]


# ---- A and B tested on other test data -----------------------------------------------------------------------------


def test_sides_tested_on_other_test_data_are_left_out_of_the_verdict(tmp_path, capsys):
    """As many test rows on both sides, but B's test split had other rows on d1 (its digest differs) and other label
    names on d2: neither is a paired comparison. Both are left out with the reason; report.py warns."""
    gold = balanced_gold(40)
    seen = {"d1": {"split_digests": {"test": "other-rows"}}, "d2": {"label_names": ["neg", "pos", "neutral"]}}
    for dataset in ("d1", "d2", "d3"):
        for seed in (1, 2):
            write_run(tmp_path, "a", "org/a", seed, gold, gold, dataset=dataset)
            pred = with_errors(gold, 8, offset=seed)
            write_run(tmp_path, "b", "org/b", seed, gold, pred, resolved=seen.get(dataset), dataset=dataset)
    out = run_compare(tmp_path, "--a", "a", "--b", "b", "--bootstrap", "100", capsys=capsys)
    assert list(out["per_dataset"]) == ["d3"]
    assert "tested on different test data" in out["datasets_skipped"]["d1"], out["datasets_skipped"]
    assert "different label names" in out["datasets_skipped"]["d2"], out["datasets_skipped"]
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert ranked["datasets_compared"] == ["d3"] and set(ranked["datasets_skipped"]) == {"d1", "d2"}
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("saw different test data" in w for w in warnings), proc.stderr
    assert warnings[0].startswith("warning: d1:") and warnings[1].startswith("warning: d2:")


# ---- mixed precision and the process count are part of a run's identity ---------------------------------------------


def test_report_keeps_runs_of_another_precision_or_process_count_apart(tmp_path, capsys):
    """fp32 seeds 1 and 2, then seed 1 again under a bf16 launcher, and seed 1 on two processes: three experiments,
    never one row of "seeds" (the newer bf16 seed 1 would replace the fp32 one)."""
    gold = balanced_gold(40)
    launches = {
        "fp32": {"mixed_precision": "no", "num_processes": 1, "effective_batch_size": 8},
        "bf16": {"mixed_precision": "bf16", "num_processes": 1, "effective_batch_size": 8},
        "ddp": {"mixed_precision": "no", "num_processes": 2, "effective_batch_size": 16},
    }
    for folder, seeds, errors in (("fp32", (1, 2), 4), ("bf16", (1,), 12), ("ddp", (1,), 8)):
        for seed in seeds:
            write_run(tmp_path, folder, "org/enc", seed, gold, with_errors(gold, errors), resolved=launches[folder])
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0 and "was trained" not in proc.stderr, proc.stderr
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    fp32 = "enc (mixed_precision=no, num_processes=1)"
    bf16 = "enc (mixed_precision=bf16, num_processes=1)"
    ddp = "enc (mixed_precision=no, num_processes=2)"
    assert set(rows) == {fp32, bf16, ddp}
    assert rows[fp32]["seeds"] == "2" and float(rows[fp32]["test_macro_f1_mean"]) == pytest.approx(0.9)
    out = run_compare(tmp_path, "--a", "mixed_precision=bf16", "--b", fp32, "--bootstrap", "100", capsys=capsys)
    assert out["per_dataset"]["d1"]["seeds"] == [1] and out["per_dataset"]["d1"]["a_mean"] == pytest.approx(0.7)


def test_matrix_refuses_a_finished_run_of_another_precision_or_process_count(tiny_bert, tmp_path):
    """Seed 1 trained in fp32 on one process; the campaign run again under a bf16 (or a two-process) launcher must not
    skip it as done, which would put an fp32 seed among bf16 ones."""
    base, run_dir = one_finished_matrix_run(tiny_bert, tmp_path / "out")
    config = json.loads((run_dir / "config.json").read_text())
    config["resolved"] = {"mixed_precision": "no", "num_processes": 1, "effective_batch_size": 8}
    (run_dir / "config.json").write_text(json.dumps(config))
    same = script("run_matrix.py", *base)
    assert same.returncode == 0 and "0 trained, 1 skipped" in same.stdout, same.stdout + same.stderr
    launch = " ".join(ACCELERATE_LAUNCH)  # says --mixed_precision no
    # --num_processes 2 without --multi_gpu starts one process on a CPU: the same launch again is no clash.
    rerun = script("run_matrix.py", *base, "--launcher", f"{launch} --cpu --num_processes 2")
    assert rerun.returncode == 0 and "0 trained, 1 skipped" in rerun.stdout, rerun.stdout + rerun.stderr
    for flags, what in (
        ("--mixed_precision bf16 --num_processes 1", '"no" there, "bf16" planned'),
        ("--multi_gpu --num_processes 2", "num_processes 1 there, 2 planned"),
    ):
        other = script("run_matrix.py", *base, "--launcher", f"{launch} {flags}")
        assert other.returncode == 2 and "skip" not in other.stdout, other.stdout + other.stderr
        [line] = other.stderr.strip().splitlines()
        assert line.startswith("error:") and str(run_dir) in line and what in line, line


# ---- grid folders are named after the values, not after how the YAML spelled them ------------------------------------


def test_grid_folders_are_named_after_parsed_values_and_old_folders_are_reused(tiny_bert, tmp_path):
    """YAML reads ``5e-5`` as the text "5e-5" and ``5.0e-5`` as the number 5e-05: one learning rate, one folder. A
    campaign whose runs already sit in a folder named after the text keeps using it."""
    out = tmp_path / "out"
    config = tmp_path / "matrix.yaml"
    head = f"datasets: [{REPO / 'sample_data'}]\nmodels: [{tiny_bert}]\nseeds: [1]\noutput_dir: {out}\n"
    head += "train_args: {num_train_epochs: 1, max_seq_length: 32}\n"
    folders = []
    for spelled in ("5e-5", "5.0e-5"):
        config.write_text(head + f"grid: {{learning_rate: [{spelled}]}}\n")
        planned = script("run_matrix.py", "--config", config, "--dry_run")
        assert planned.returncode == 0, planned.stderr
        folders += [Path(d).parent.name for d in output_dirs(planned.stdout)]
    assert folders == ["learning_rate=5e-05"] * 2
    # An earlier campaign's run in the folder named after the text: found and skipped as done, not trained again.
    config.write_text(head + "grid: {learning_rate: [5e-5]}\n")
    old = out / "sample_data" / tiny_bert.name / "learning_rate=5e-5" / "seed1"
    fake_finished_run(old, [*planned_argv(planned.stdout)[:-4], "--output_dir", str(old), "--runs_root", str(out)])
    again = script("run_matrix.py", "--config", config)
    assert again.returncode == 0 and "0 trained, 1 skipped" in again.stdout, again.stdout + again.stderr
    assert f"skip {old}" in again.stdout and not (old.parent.parent / "learning_rate=5e-05").exists()


# ---- variants that resolve to one setting ----------------------------------------------------------------------------


def test_matrix_warns_about_variants_whose_pooling_resolves_alike(tiny_modernbert, tmp_path):
    """pooling "auto" is resolved from the checkpoint (the tiny ModernBERT's classifier_pooling is cls, its config's
    default), so a variant that sets cls trains what the default trains. The matrix says so before anything runs; mean is another experiment."""
    config = tmp_path / "matrix.yaml"
    head = (
        f"datasets: [{REPO / 'sample_data'}]\nmodels: [{tiny_modernbert}]\nseeds: [1]\noutput_dir: {tmp_path / 'o'}\n"
    )
    config.write_text(head + "variants: {default: {}, cls-pool: {pooling: cls}}\n")
    planned = script("run_matrix.py", "--config", config, "--dry_run")
    assert planned.returncode == 0, planned.stderr
    [warning] = [line for line in planned.stderr.splitlines() if line.startswith("warning:")]
    assert "pooling auto resolves to cls" in warning and "default" in warning and "cls-pool" in warning, warning
    config.write_text(head + "variants: {default: {}, mean-pool: {pooling: mean}}\n")
    planned = script("run_matrix.py", "--config", config, "--dry_run")
    assert planned.returncode == 0 and "warning" not in planned.stderr, planned.stderr


# ---- results.csv: the run folders of a row ----------------------------------------------------------------------


def test_results_csv_lists_run_folders_with_spaces_unambiguously(tmp_path, monkeypatch, capsys):
    """Run folders whose names hold spaces (``lr 1e-3``): results.csv's run_dirs is a JSON list of them, and the
    per-class plot names each run after its own row (its grid point), which it finds by that list. The last line
    names every file written, the plots too."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    gold = balanced_gold(40)
    dirs = {}
    for lr, errors in ((1e-3, 4), (1e-5, 8)):
        for seed in (1, 2):
            run_dir = write_run(
                tmp_path,
                f"my enc/lr {lr}",
                "org/enc",
                seed,
                gold,
                with_errors(gold, errors),
                grid={"learning_rate": lr},
            )
            per_class = {name: {"f1-score": 0.5} for name in LABELS}
            results = json.loads((run_dir / "results.json").read_text())
            results["test"]["per_class"] = per_class
            (run_dir / "results.json").write_text(json.dumps(results))
            dirs.setdefault(lr, []).append(str(run_dir))
    drawn = {}

    def keep_columns(fig, path, dpi=100):
        if path.name.startswith("per_class_f1"):
            drawn["columns"] = [label.get_text().replace("\n", " ") for label in fig.axes[0].get_xticklabels()]

    monkeypatch.setattr(report, "atomic_savefig", keep_columns)
    report.main([str(tmp_path)])
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"wrote {tmp_path / 'results.md'} and {tmp_path / 'results.csv'} (4 runs, 2 rows); plots: "
        f"{tmp_path / 'heatmap_test_macro_f1.png'}, {tmp_path / 'per_class_f1_d1.png'}"  # no metrics.jsonl: no curves
    )
    assert sorted(drawn["columns"]) == [
        f"enc (learning_rate={lr}) seed {s}" for lr in ("0.001", "1e-05") for s in (1, 2)
    ], drawn
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert {m: json.loads(r["run_dirs"]) for m, r in rows.items()} == {
        "enc (learning_rate=0.001)": sorted(dirs[1e-3]),
        "enc (learning_rate=1e-05)": sorted(dirs[1e-5]),
    }


# ---- seeds of one row, or the two sides of a verdict, that ran on other library versions or model files ---------------

TORCH_13 = {"versions": {"python": "3.12.3", "torch": "2.13.0", "transformers": "5.24.0"}, "model_files": "aaaa"}
TORCH_14 = {"versions": {"python": "3.12.3", "torch": "2.14.1", "transformers": "5.24.0"}, "model_files": "aaaa"}


def test_report_flags_a_row_whose_seeds_ran_on_other_versions_or_model_files(tmp_path):
    """Seeds 1 and 2 of enc ran on torch 2.13, its seed 3 (a peer's run copied in) on torch 2.14; base's seed 2 ran on
    other model files (its folder replaced mid-campaign). Both rows say so, in a warning, results.csv and the table;
    a run that did not record its versions is unknown, not different."""
    gold = balanced_gold(40)
    for seed in (1, 2, 3):
        write_run(
            tmp_path, "enc", "org/enc", seed, gold, with_errors(gold, 4), resolved=TORCH_14 if seed == 3 else TORCH_13
        )
    for seed, files in ((1, {"model_files": "aaaa"}), (2, {"model_files": "bbbb"}), (3, {})):
        write_run(tmp_path, "base", "org/base", seed, gold, with_errors(gold, 8), resolved=TORCH_13 | files)
    write_run(tmp_path, "old", "org/old", 1, gold, gold, resolved=TORCH_13)
    write_run(tmp_path, "old", "org/old", 2, gold, gold)  # recorded no versions (older train.py)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    # (old ran 2 seeds to the others' 3: the winner's seeds warning is another test's.)
    warnings = sorted(line for line in proc.stderr.splitlines() if line.startswith("warning: d1 / "))
    assert len(warnings) == 2, proc.stderr
    assert warnings[0].startswith("warning: d1 / base: its seeds ran on different model files aaaa (seed 1, seed 3)")
    assert "bbbb (seed 2)" in warnings[0] and "torch" not in warnings[0]
    assert warnings[1].startswith("warning: d1 / enc: its seeds ran on different torch 2.13.0 (seed 1, seed 2), 2.14.1")
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert rows["enc"]["mixed"] == "torch 2.13.0 (seed 1, seed 2), 2.14.1 (seed 3)"
    assert rows["base"]["mixed"] == "model files aaaa (seed 1, seed 3), bbbb (seed 2)"
    assert rows["old"]["mixed"] == ""
    table = (tmp_path / "results.md").read_text()
    rows = [cells for line in table.splitlines() if (cells := line.split(" | "))[0] == "| d1"]
    seeds = {cells[1].removesuffix(" ‡").strip("*"): cells[2] for cells in rows}
    assert seeds == {"enc": "3 †", "base": "3 †", "old": "2"}, table
    assert "† The row's seeds ran on different library versions, devices, CPU thread counts or model files" in table


def test_report_and_compare_flag_seeds_trained_on_another_device_or_thread_count(tmp_path, capsys):
    """enc's seeds 1 and 2 trained on a CPU with 2 threads, seed 3 with 16 (another machine); gpu's seeds on cuda:0 and
    cuda:1 (one kind of device) and seed 3 on the CPU. Their numbers differ by rounding or more, so both rows are
    mixed; the sides of a verdict on cuda and on the CPU get the caution."""
    gold = balanced_gold(40)
    cpu2 = TORCH_13 | {"device": "cpu", "cpu_threads": 2}
    for seed in (1, 2, 3):
        enc = cpu2 | {"cpu_threads": 16} if seed == 3 else cpu2
        write_run(tmp_path, "enc", "org/enc", seed, gold, with_errors(gold, 4), resolved=enc)
        gpu = TORCH_13 | {"device": f"cuda:{seed - 1}", "cpu_threads": None} if seed < 3 else cpu2
        write_run(tmp_path, "gpu", "org/gpu", seed, gold, with_errors(gold, 8, offset=seed), resolved=gpu)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in report_rows(tmp_path)}
    assert rows["enc"]["mixed"] == "CPU threads 2 (seed 1, seed 2), 16 (seed 3)"
    assert rows["gpu"]["mixed"] == "device cuda (seed 1, seed 2), cpu (seed 3)"
    assert "warning: d1 / gpu: its seeds ran on different device cuda (seed 1, seed 2), cpu (seed 3)" in proc.stderr
    table = (tmp_path / "results.md").read_text()
    assert [line.split(" | ")[2] for line in table.splitlines() if line.startswith("| d1")] == ["3 †", "3 †"], table
    # Seeds 1 and 2 pair a cuda run of gpu with a CPU run of enc.
    out = run_compare(tmp_path, "--a", "gpu", "--b", "enc", "--bootstrap", "100", capsys=capsys)
    assert out["versions_differ"]["d1"].startswith("device cuda (gpu), cpu (gpu, enc)"), out["versions_differ"]
    assert (
        "CAUTION: the runs compared ran on different library versions, devices or CPU thread counts" in (out["verdict"])
    )


def test_compare_warns_when_the_sides_ran_on_other_library_versions(tmp_path, capsys):
    """A's runs ran on torch 2.14, B's on torch 2.13 on d1 (A retrained after an upgrade); on d2 both on 2.13. The
    verdict carries a caution naming d1, a warning line names the versions, and the files say so too."""
    gold = balanced_gold(40)
    for dataset in ("d1", "d2"):
        for seed in (1, 2):
            a_env = TORCH_14 if dataset == "d1" else TORCH_13
            write_run(tmp_path, "a", "org/a", seed, gold, gold, resolved=a_env, dataset=dataset)
            write_run(
                tmp_path,
                "b",
                "org/b",
                seed,
                gold,
                with_errors(gold, 8, offset=seed),
                resolved=TORCH_13,
                dataset=dataset,
            )
    out = run_compare(tmp_path, "--a", "a", "--b", "b", "--bootstrap", "100", capsys=capsys)
    assert out["versions_differ"] == {"d1": "torch 2.14.1 (a), 2.13.0 (b)"}, out["versions_differ"]
    assert out["per_dataset"]["d2"]["versions_differ"] is None
    assert (
        "CAUTION: the runs compared ran on different library versions, devices or CPU thread counts on 1 dataset (d1)"
        in out["verdict"]
    )
    compare.main([str(tmp_path), *FAST, "--a", "a", "--b", "b", "--bootstrap", "100"])
    err = capsys.readouterr().err
    [warning] = [line for line in err.splitlines() if line.startswith("warning:")]
    setup = "library versions, devices or CPU thread counts"
    assert warning.startswith(f"warning: d1: the runs compared ran on different {setup} (torch 2.14.1 (a)")
    md = (tmp_path / "compare_a_vs_b.md").read_text()
    assert f"**Warning:** on d1 the runs compared ran on different {setup}: torch 2.14.1 (a), 2.13.0 (b)." in md
    with open(tmp_path / "compare_a_vs_b.csv") as handle:
        rows = {r["dataset"]: r["versions_differ"] for r in csv.DictReader(handle)}
    assert rows == {"d1": "torch 2.14.1 (a), 2.13.0 (b)", "d2": ""}
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert set(ranked["versions_differ"]) == {"d1"} and "CAUTION" in ranked["verdict"]


# ---- runs that are not in the table -----------------------------------------------------------------------------------


def test_report_names_the_runs_it_leaves_out_for_want_of_results(tmp_path):
    """A campaign with a failed run (failed.json, as run_matrix.py leaves it) and an interrupted one (config.json and a
    checkpoint, no results.json): the table has fewer seeds, and d2 no row at all, so a warning names both folders;
    a finished run's best_model/config.json is not taken for a run."""
    gold = balanced_gold(40)
    for seed in (1, 2):
        write_run(tmp_path, "a", "org/a", seed, gold, gold)
    (tmp_path / "d1" / "a" / "seed1" / "best_model").mkdir()
    (tmp_path / "d1" / "a" / "seed1" / "best_model" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    failed = tmp_path / "d1" / "a" / "seed3"
    failed.mkdir()
    (failed / "failed.json").write_text(json.dumps({"exit_code": 1, "log": "output.log", "tail": []}))
    interrupted = write_run(tmp_path, "a", "org/a", 1, gold, gold, dataset="d2")
    (interrupted / "results.json").unlink()
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith(f"warning: 2 runs under {tmp_path} have no results.json and are left out ")
    assert "(1 failed, 1 interrupted or still training)" in warning and f"{failed}, {interrupted};" in warning
    assert [r["dataset"] for r in report_rows(tmp_path)] == ["d1"]


def test_the_validation_test_agreement_counts_each_seed_once(tmp_path, capsys):
    """Seed 1 of a's lr 1e-5 point was trained twice (an older copy in another folder, as report.py warns): the
    verdict's Kendall τ between validation and test over the grid points uses the newest run of each seed, as the
    table does; the older copy's scores would put that point out of order."""
    gold = balanced_gold(40)
    points = {
        ("org/a", 1e-3): (0.9, 4),
        ("org/a", 1e-5): (0.6, 16),
        ("org/b", 1e-3): (0.8, 8),
        ("org/b", 1e-5): (0.7, 12),
    }
    for (model, lr), (val, errors) in points.items():
        for seed in (1, 2):
            grid = {"learning_rate": lr}
            write_run(
                tmp_path, f"{model[-1]}/lr{lr}", model, seed, gold, with_errors(gold, errors, offset=seed), val, grid
            )
    old = write_run(tmp_path, "a-old/lr1e-05", "org/a", 1, gold, with_errors(gold, 20), 0.95, {"learning_rate": 1e-5})
    os.utime(old / "results.json", (1_000_000, 1_000_000))
    out = run_compare(tmp_path, "--a", "a", "--b", "b", "--bootstrap", "100", capsys=capsys)
    assert out["per_dataset"]["d1"]["val_test_tau"] == pytest.approx(1.0)


def test_models_that_tie_on_the_best_validation_mean_are_all_bold(tmp_path):
    """alpha and beta both average 0.85 on validation (0.8 and 0.9, 0.85 twice: means that differ in their last bit);
    crowning the one that sorts first would call it better. Both are bold, and winners in results.csv; gamma is not."""
    gold = balanced_gold(40)
    for seed, (a, b, c) in ((1, (0.8, 0.85, 0.7)), (2, (0.9, 0.85, 0.7))):
        write_run(tmp_path, "alpha", "org/alpha", seed, gold, with_errors(gold, 8), val=a)
        write_run(tmp_path, "beta", "org/beta", seed, gold, with_errors(gold, 4), val=b)
        write_run(tmp_path, "gamma", "org/gamma", seed, gold, gold, val=c)
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "results.md").read_text()
    names = {c[1] for line in table.splitlines() if (c := line.strip("| ").split(" | "))[0] == "d1"}
    assert names == {"**alpha**", "**beta**", "gamma"}, table
    assert {r["model"]: r["winner"] for r in report_rows(tmp_path)} == {
        "alpha": "True",
        "beta": "True",
        "gamma": "False",
    }


def test_a_grid_point_selected_over_points_of_other_seeds_is_said(tmp_path, capsys):
    """enc's learning rate 1e-3 ran seed 1 only (its other seeds failed), 1e-5 seeds 1-3: 1e-3 is selected on one
    lucky seed's validation score against three seeds' mean. The selection still stands (validation chose it), but a
    warning, the selection line and compare's notes say the points ran different seeds; base's points ran alike."""
    gold = balanced_gold(40)
    write_run(tmp_path, "enc/lr3", "org/enc", 1, gold, with_errors(gold, 6), val=0.95, grid={"learning_rate": 1e-3})
    for seed, val in ((1, 0.90), (2, 0.85), (3, 0.88)):
        write_run(
            tmp_path, "enc/lr5", "org/enc", seed, gold, with_errors(gold, 2), val=val, grid={"learning_rate": 1e-5}
        )
    for seed in (1, 2, 3):
        for lr, val in ((1e-3, 0.8), (1e-5, 0.7)):
            write_run(
                tmp_path,
                f"base/{lr}",
                "org/base",
                seed,
                gold,
                with_errors(gold, 4),
                val=val,
                grid={"learning_rate": lr},
            )
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    differ = "learning_rate=0.001: 1; learning_rate=1e-05: 1, 2, 3"
    warnings = [line for line in proc.stderr.splitlines() if "grid points ran different seeds" in line]
    assert warnings == [
        f"warning: d1 / enc: its grid points ran different seeds ({differ}); the point selected on "
        "validation compares means over different seeds: run the missing seeds to compare them alike."
    ]
    table = (tmp_path / "results.md").read_text()
    [line] = [line for line in table.splitlines() if line.startswith("- d1 / enc: ")]
    assert line.startswith("- d1 / enc: {'learning_rate': 0.001}") and line.endswith(
        f"‡ the points ran different seeds: {differ})"
    )
    assert "(mean validation macro_f1 0.9500 over 1 seed; margin " in line  # not '1 seeds'
    assert "ran different seeds" not in next(line for line in table.splitlines() if line.startswith("- d1 / base: "))
    out = run_compare(tmp_path, "--a", "enc", "--b", "base", "--bootstrap", "100", capsys=capsys)
    assert (
        f"enc's grid point was selected among points that ran different seeds ({differ})"
        in out["per_dataset"]["d1"]["notes"]
    )


def test_a_winner_over_models_of_other_seeds_is_marked(tmp_path):
    """lucky ran seed 1 only (its failed seeds 2 and 3 left out), steady seeds 1-3; on seed 1 steady scored as high.
    A bold winner of one seed's mean against three seeds' is no paired comparison: the table marks it and a warning
    names the seeds; a dataset where both ran the same seeds carries no mark."""
    gold = balanced_gold(40)
    write_run(tmp_path, "lucky", "org/lucky", 1, gold, gold, val=0.95)
    for seed, val in ((1, 0.95), (2, 0.80), (3, 0.82)):
        write_run(tmp_path, "steady", "org/steady", seed, gold, with_errors(gold, 4), val=val)
    for seed in (1, 2):
        write_run(tmp_path, "lucky", "org/lucky", seed, gold, gold, val=0.9, dataset="d2")
        write_run(tmp_path, "steady", "org/steady", seed, gold, gold, val=0.8, dataset="d2")
    proc = script("report.py", tmp_path, "--no_plots")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: d1: the models ran different seeds (lucky: 1; steady: 1, 2, 3); the bold winner compares means "
        "over different seeds: scripts/compare.py pairs them."
    ], proc.stderr
    table = (tmp_path / "results.md").read_text()
    names = {(c[0], c[1]) for line in table.splitlines() if (c := line.strip("| ").split(" | "))[0] in ("d1", "d2")}
    assert names == {("d1", "**lucky** ‡"), ("d1", "steady"), ("d2", "**lucky**"), ("d2", "steady")}, table
    assert "‡ The models of this dataset ran different seeds" in table
    rows = {(r["dataset"], r["model"]): r for r in report_rows(tmp_path)}
    assert rows["d1", "steady"]["seed_list"] == "[1, 2, 3]"
    # Against a baseline, lucky's Δ on d1 (seed 1 minus steady's seeds 1-3) is marked too; d2's (seeds 1, 2 both) not.
    proc = script("report.py", tmp_path, "--no_plots", "--baseline", "steady")
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "results.md").read_text()
    cells = [line.strip("| ").split(" | ") for line in table.splitlines() if line.startswith("| d")]
    deltas = {c[0]: c[-1] for c in cells if c[1].startswith("**lucky**")}
    assert deltas == {"d1": "+0.1000 ‡", "d2": "+0.0000"}, table
    assert "a Δ's over other seeds than the baseline's" in table


def test_compare_on_an_input_judges_a_grid_at_its_validation_point_and_ranks_points_over_scored_seeds(tmp_path):
    """--on with a grid: each model is judged at the point validation selected (learning_rate=1 here, though
    learning_rate=2 scores best on the input), and τ ranks every point's validation mean against its input mean over
    the same seeds: a seed without scores of the input (seed 3 of learning_rate=1) leaves its validation score out
    too, as the val→input drop does."""
    from test_campaign_heldout import scored_input

    gold = balanced_gold(40)
    for seed in (1, 2, 3):
        for model, lr, val, ood_errors in (
            ("a", 1, 0.99 if seed == 3 else 0.80, 4),
            ("a", 2, 0.85, 1),
            ("b", 1, 0.7, 8),
        ):
            run = write_run(tmp_path, f"{model}/lr{lr}", f"org/{model}", seed, gold, gold, val, {"learning_rate": lr})
            if (model, lr, seed) != ("a", 1, 3):
                scored_input(run, gold, with_errors(gold, ood_errors + seed % 2))
    result = compare.main([str(tmp_path), *FAST, "--a", "a", "--b", "b", "--bootstrap", "50", "--on", "ood"])
    d1 = result["per_dataset"]["d1"]
    assert (d1["a_grid"], d1["b_grid"], d1["seeds"]) == ({"learning_rate": 1}, {"learning_rate": 1}, [1, 2])
    assert d1["a_val_test_drop"] == pytest.approx(0.80 - d1["a_mean"])
    # Over seeds 1, 2 validation ranks a (lr 2) > a (lr 1) > b, as the input does: τ = 1 (1/3 with seed 3's 0.99).
    assert d1["val_test_tau"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"path": None}, "the datasets entry {'path': None} needs a 'path' naming a folder, file or hub id."),
        ({"path": ["a"]}, "the datasets entry {'path': ['a']} needs a 'path' naming a folder, file or hub id."),
        ({"path": " "}, "the datasets entry {'path': ' '} needs a 'path' naming a folder, file or hub id."),
        (
            {"path": "d", "name": " "},
            "name ' ' of the datasets entry d must be a plain folder name (not empty, no '/', not '.' or '..', no "
            "spaces at its ends).",
        ),
        (
            {"path": "d", "name": ""},
            "name '' of the datasets entry d must be a plain folder name (not empty, no '/', not '.' or '..', no "
            "spaces at its ends).",
        ),
        (
            {"path": "d", "name": "bert "},
            "name 'bert ' of the datasets entry d must be a plain folder name (not empty, no '/', not '.' or '..', "
            "no spaces at its ends).",
        ),
    ],
)
def test_matrix_refuses_an_entry_without_a_path_or_with_a_blank_name(entry, message):
    """A null or list path became a dataset called 'None' or "['a']" that --dry_run passed; a blank name was ignored
    or named a folder ' ' that the table shows as an empty model, and 'bert ' looked like 'bert' beside it."""
    import run_matrix

    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.parse_entry(entry, "datasets")
    assert str(err.value) == message
    assert run_matrix.parse_entry({"path": "d", "name": "my model"}, "datasets").name == "my model"


def test_report_counts_one_run_and_one_row_in_the_singular(tmp_path, capsys):
    """A campaign of one run said '(1 runs, 1 rows)'."""
    import report

    gold = balanced_gold(10)
    write_run(tmp_path, "enc", "org/enc", 1, gold, with_errors(gold, 2))
    report.main([str(tmp_path), "--no_plots"])
    assert f"wrote {tmp_path / 'results.md'} and {tmp_path / 'results.csv'} (1 run, 1 row)" in capsys.readouterr().out


def test_a_run_without_the_validation_score_it_was_selected_by_is_left_out_and_named(tmp_path, capsys):
    """A results.json without its validation split (an older or edited file) averaged one seed's validation score
    beside two seeds' test scores in one row, bolded a winner on it, and compare.py then called the model's runs
    missing; a split that is no mapping of scores crashed report.py with a traceback. Both runs are left out with a
    warning naming the folder, as a damaged file is."""
    import report

    gold = balanced_gold(20)
    runs = {seed: write_run(tmp_path, "a", "org/a", seed, gold, with_errors(gold, seed)) for seed in (1, 2, 3)}
    for seed, validation in ((2, {}), (3, {"validation": "n/a"})):
        results = json.loads((runs[seed] / "results.json").read_text())
        del results["validation"]
        (runs[seed] / "results.json").write_text(json.dumps(results | validation))
    [row] = report.main([str(tmp_path), "--no_plots"])
    err = capsys.readouterr().err.splitlines()
    assert row["seeds"] == 1 and row["val_macro_f1_mean"] == row["test_macro_f1_mean"]
    assert err == [
        f"warning: {runs[2]} left out: its results.json has no validation macro_f1, the score its best model was "
        "selected by; rerun the run or delete its folder.",
        f"warning: {runs[3]} left out: its results.json, config.json or matrix.json cannot be read (its validation "
        "is no mapping of scores); rerun the run or delete its folder.",
    ]


def test_a_run_whose_seed_or_timing_is_no_number_is_left_out_and_named(tmp_path, capsys):
    """A seed recorded as text ("1") or a training time as text in an edited file crashed report.py with a TypeError
    from sorting or averaging; the run is left out with a warning naming the folder and the value."""
    import report

    gold = balanced_gold(20)
    runs = {seed: write_run(tmp_path, "a", "org/a", seed, gold, with_errors(gold, seed)) for seed in (1, 2, 3)}
    config = json.loads((runs[2] / "config.json").read_text())
    config["user_config"]["seed"] = "2"
    (runs[2] / "config.json").write_text(json.dumps(config))
    results = json.loads((runs[3] / "results.json").read_text())
    (runs[3] / "results.json").write_text(json.dumps(results | {"train_runtime_s": "12"}))
    [row] = report.main([str(tmp_path), "--no_plots"])
    assert row["seeds"] == 1
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {runs[2]} left out: its results.json, config.json or matrix.json cannot be read (seed '2' is no "
        "number); rerun the run or delete its folder.",
        f"warning: {runs[3]} left out: its results.json, config.json or matrix.json cannot be read (train_runtime_s "
        "'12' is no number); rerun the run or delete its folder.",
    ]


def test_a_grid_on_an_entry_is_planned_and_a_flag_set_in_two_places_is_refused(tmp_path):
    """A dataset entry's own grid was read, checked and then never planned; a grid over a flag a model or dataset
    entry also sets replaced the entry's value in every run without a word."""
    import run_matrix

    data, model = tmp_path / "data", tmp_path / "model"
    data.mkdir(), model.mkdir()
    base = {"seeds": [1], "output_dir": str(tmp_path / "out"), "grid": {"learning_rate": [1e-4, 2e-4]}}

    def points(datasets: list, models: list, **cfg: object) -> list[dict]:
        runs = run_matrix.plan(base | {"datasets": datasets, "models": models} | cfg, [])
        return sorted(tuple(sorted((r.entry or {}).get("grid", {}).items())) for r in runs)

    # The matrix's grid, a dataset entry's and a model entry's: the entries' replace the matrix's for their flags.
    planned = points([{"path": str(data), "grid": {"weight_decay": [0.0, 0.1]}}], [str(model)])
    assert planned == [(("learning_rate", lr), ("weight_decay", wd)) for lr in (1e-4, 2e-4) for wd in (0.0, 0.1)]
    planned = points([str(data)], [{"path": str(model), "grid": {"learning_rate": [1e-3]}}])
    assert planned == [(("learning_rate", 1e-3),)]

    refused = [
        (
            [str(data)],
            [{"path": str(model), "learning_rate": 1e-3}],
            f"the models entry {model} sets learning_rate, which the matrix's grid sets too",
        ),
        (
            [{"path": str(data), "learning_rate": 1e-3}],
            [str(model)],
            f"the datasets entry {data} sets learning_rate, which the matrix's grid sets too",
        ),
        (
            [{"path": str(data), "grid": {"weight_decay": [0.0]}}],
            [{"path": str(model), "grid": {"weight_decay": [0.1]}}],
            f"the datasets entry {data} and the models entry {model} both have a grid over weight_decay",
        ),
        (
            [{"path": str(data), "max_seq_length": 256}],
            [{"path": str(model), "max_seq_length": 128}],
            rf"the datasets entry {data} and the models entry {model} both set max_seq_length \(256 and 128\)",
        ),
    ]
    for datasets, models, message in refused:
        with pytest.raises(run_matrix.UsageError, match=message):
            points(datasets, models)
    variants = {"variants": {"lin": {"head": "linear"}, "mlp": {"head": "mlp"}}, "grid": {}}
    with pytest.raises(run_matrix.UsageError, match=r"the models entry \S+ and the variant 'lin' both set head"):
        points([str(data)], [{"path": str(model), "head": "mlp"}], **variants)
    # The same value in two places loses nothing, however YAML typed it (5e-5 a string, 5.0e-5 a number).
    assert len(points([{"path": str(data), "head": "mlp"}], [{"path": str(model), "head": "mlp"}])) == 2
    same = [{"path": str(data), "warmup_ratio": "5e-2"}], [{"path": str(model), "warmup_ratio": 5.0e-2}]
    assert len(points(*same)) == 2
    # The grid that clashes is named, and the fix is one that is not refused in turn.
    with pytest.raises(run_matrix.UsageError) as err:
        points([{"path": str(data), "weight_decay": 0.1}], [{"path": str(model), "grid": {"weight_decay": [0.0]}}])
    assert str(err.value) == (
        f"the datasets entry {data} sets weight_decay, which the models entry {model}'s own grid sets too: the grid's "
        "values would replace it in every run; set it in one place."
    )


def test_two_comparisons_whose_names_make_one_file_name_keep_both_reports(tmp_path, capsys):
    """'my model' and 'my_model' both became compare_my_model_vs_b.md: the second comparison replaced the first's
    report."""
    gold = balanced_gold(20)
    for seed in (1, 2, 3):
        for folder, model, errors in (("a1", "org/my model", 2), ("a2", "org/my_model", 6), ("b", "b", 4)):
            write_run(tmp_path, folder, model, seed, gold, with_errors(gold, errors, offset=seed))
    first = run_compare(tmp_path, "--a", "my model", "--b", "b", capsys=capsys)["files"]
    second = run_compare(tmp_path, "--a", "my_model", "--b", "b", capsys=capsys)["files"]
    assert not set(first) & set(second)
    assert Path(first[0]).read_text().startswith("# my model vs b\n")
    assert Path(second[0]).read_text().startswith("# my_model vs b\n")
    # The same comparison again writes over its own report, as before.
    assert run_compare(tmp_path, "--a", "my model", "--b", "b", capsys=capsys)["files"] == first
