"""Out-of-domain scores in the campaign: run_matrix.py --score_inputs scores files with the runs' labels with each
run's best model, report.py tabulates them per input, compare.py --on NAME gives its verdict on them."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import f1_score
from test_campaign import fake_run
from test_compare import balanced_gold, with_errors, write_run

from conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "scripts"))
import compare
import report
import run_matrix


def matrix(
    tmp_path: Path, tiny_bert: Path, *extra: str, in_process: bool = True, seeds: tuple[str, ...] = ("1", "2")
) -> subprocess.CompletedProcess:
    """run_matrix.py on emotion x the tiny model x ``seeds`` (a few seconds a run). The matrix itself runs in this
    process unless told otherwise, as its command line would (exit 1 when a run or a scoring failed, 2 on bad
    input): it only plans and waits, while each run and each scoring is its launcher's own process either way."""
    flags = ["--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1"]
    flags += ["--max_seq_length", "24", "--per_device_train_batch_size", "16"]
    argv = ["--datasets", str(SHARED_DATA / "emotion"), "--models", str(tiny_bert), "--seeds", *seeds]
    argv += ["--output_dir", str(tmp_path / "matrix"), *flags, *map(str, extra)]
    if not in_process:
        command = [sys.executable, str(REPO / "scripts" / "run_matrix.py"), *argv]
        return subprocess.run(command, capture_output=True, text=True)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = 1 if run_matrix.main(argv) else 0
        except (run_matrix.UsageError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            code = 2
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def trained(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """matrix()'s two runs, trained once and never scored: tests copy them (scoring writes into the runs)."""
    root = tmp_path_factory.mktemp("trained")
    proc = matrix(root, tiny_bert)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return root / "matrix"


def finished_runs(trained: Path, tmp_path: Path) -> None:
    """matrix()'s runs finished in ``tmp_path`` before any input was scored: a copy of the ``trained`` ones (the
    output folder is bookkeeping, not a setting, so the matrix takes them for its own)."""
    shutil.copytree(trained, tmp_path / "matrix", symlinks=True)


def held_out(tmp_path: Path, name: str = "held_out.csv", rows: int = 24) -> Path:
    """Another file with the runs' columns: emotion test rows past those the runs were tested on."""
    path = tmp_path / "inputs" / name
    path.parent.mkdir(exist_ok=True)
    pd.read_parquet(SHARED_DATA / "emotion" / "test.parquet").iloc[100 : 100 + rows].to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_every_run_is_scored_once_and_a_rerun_scores_only_what_is_missing_or_changed(tiny_bert, trained, tmp_path):
    finished_runs(trained, tmp_path)  # runs finished before the flag was added
    runs = sorted(p.parent for p in (tmp_path / "matrix").rglob("results.json"))
    assert len(runs) == 2 and not list(runs[0].glob("eval_held_out*.json"))

    good = held_out(tmp_path)
    bad = tmp_path / "inputs" / "no_text.csv"  # no text column: evaluate.py refuses it, run after run
    pd.read_csv(good).rename(columns={"text": "sentence"}).to_csv(bad, index=False)
    second = matrix(tmp_path, tiny_bert, "--executor", "local", "--max_parallel", "2", "--score_inputs", good, bad)
    assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
    assert "0 trained, 2 skipped, 0 failed of 2 runs; 2 input scores written, 2 failed" in second.stdout
    assert f"scoring failed (exit 2): {bad} with {runs[0]}" in second.stdout
    for run in runs:  # the run is kept whatever its scoring did
        scores = json.loads((run / "eval_held_out.json").read_text())
        assert scores["input"] == str(good) and scores["num_samples"] == 24
        assert (run / "results.json").is_file() and not (run / "failed.json").exists()
    status = run_matrix_status(tmp_path, tiny_bert, good, bad)
    assert status.count("(no scores of no_text)") == 2 and "status: 2 done of 2 runs" in status

    stamp = (runs[0] / "eval_held_out.json").stat().st_mtime_ns
    pd.read_csv(good).to_csv(bad, index=False)  # fixed: the same command scores it, and only it
    third = matrix(tmp_path, tiny_bert, "--score_inputs", good, bad)
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    assert "2 input scores written, 0 failed" in third.stdout
    assert f"skip {runs[0]}" not in third.stdout  # it is scored, and said so: not skipped
    assert (runs[0] / "eval_held_out.json").stat().st_mtime_ns == stamp
    fourth = matrix(tmp_path, tiny_bert, "--score_inputs", good, bad).stdout
    assert "0 input scores written, 0 failed" in fourth and f"skip {runs[0]} (results.json exists)" in fourth

    rows = report.main([str(tmp_path / "matrix"), "--no_plots"])
    scores = [json.loads((run / "eval_held_out.json").read_text())["macro_f1"] for run in runs]
    assert rows[0]["heldout_held_out_mean"] == pytest.approx(sum(scores) / 2)
    assert json.loads(rows[0]["heldout_held_out_seed_list"]) == [1, 2]
    assert "held-out held_out macro_f1" in (tmp_path / "matrix" / "results.md").read_text()

    # A file changed after its scores is scored again.
    held_out(tmp_path, rows=12)  # the user rebuilt the file: the runs' scores describe rows it no longer has
    again = matrix(tmp_path, tiny_bert, "--score_inputs", good, bad)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "0 trained, 2 skipped, 0 failed of 2 runs; 2 input scores written, 0 failed" in again.stdout
    for run in runs:
        assert json.loads((run / "eval_held_out.json").read_text())["num_samples"] == 12


@pytest.mark.slow
def test_a_file_without_the_runs_labels_is_a_failed_scoring_not_a_written_score(tiny_bert, tmp_path):
    """Scored right after the run trains, in the same matrix (one seed: each run's scoring is its own launch)."""
    unlabeled = tmp_path / "inputs" / "unlabeled.csv"  # texts only: evaluate.py predicts them and scores nothing
    pd.read_csv(held_out(tmp_path))[["text"]].to_csv(unlabeled, index=False)
    proc = matrix(tmp_path, tiny_bert, "--score_inputs", unlabeled, seeds=("1",))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 trained, 0 skipped, 0 failed of 1 run; 0 input scores written, 1 failed" in proc.stdout
    assert "scoring failed (no scores written: no row of unlabeled.csv has a label" in proc.stdout
    assert not list((tmp_path / "matrix").rglob("eval_unlabeled.json"))


def run_matrix_status(tmp_path: Path, tiny_bert: Path, *inputs: Path) -> str:
    """--status of the plan, told which inputs each run should have scores of."""
    proc = matrix(tmp_path, tiny_bert, "--status", "--score_inputs", *inputs)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_the_slurm_path_scores_finished_runs_that_lack_scores(tiny_bert, trained, tmp_path):
    finished_runs(trained, tmp_path)
    good = held_out(tmp_path)
    # A process of its own: submitit's debug executor runs the array's tasks inside the matrix's process.
    slurm_flags = ["--executor", "slurm", "--slurm_cluster", "debug", "--score_inputs", good]
    slurm = matrix(tmp_path, tiny_bert, *slurm_flags, in_process=False)
    assert slurm.returncode == 0, slurm.stdout[-2000:] + slurm.stderr[-2000:]
    assert "submitted 2 of 2 runs" in slurm.stdout
    runs = sorted(p.parent for p in (tmp_path / "matrix").rglob("results.json"))
    assert all(json.loads((r / "eval_held_out.json").read_text())["input"] == str(good) for r in runs)
    again = matrix(tmp_path, tiny_bert, *slurm_flags, in_process=False)
    assert "nothing to submit" in again.stdout


def test_an_input_that_cannot_be_scored_is_refused_before_any_run(tmp_path):
    out = tmp_path / "out"
    base = ["--datasets", str(SHARED_DATA / "sst2"), "--models", "m", "--output_dir", str(out), "--score_inputs"]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    text = tmp_path / "notes.txt"
    text.write_text("a")
    one, other = held_out(tmp_path, "same.csv", 2), held_out(tmp_path, "same.jsonl", 2)
    for files, error in [
        ([tmp_path / "missing.csv"], "missing.csv: no such file"),
        ([empty], "empty.csv: the file is empty"),
        ([text], "not '.txt'"),
        ([one, other], "would both be scored as eval_same.json"),
    ]:
        with pytest.raises(run_matrix.UsageError, match=error):
            run_matrix.main([*base, *map(str, files)])
    assert not out.exists()  # nothing ran
    # A run already scored on another file of that name: evaluate.py would refuse to replace its scores, run after run.
    run = run_matrix.Run(tmp_path / "run", [], {}, inputs=[str(one)])
    run.run_dir.mkdir()
    heldout_file(run.run_dir, "same", 0.5, "/elsewhere/same.csv")
    with pytest.raises(run_matrix.UsageError, match=r"eval_same.json holds the scores of /elsewhere/same.csv"):
        run_matrix.check_scored_elsewhere([run])
    run.inputs = ["/elsewhere/same.csv"]  # the file it was scored on: nothing to say
    run_matrix.check_scored_elsewhere([run])
    # A file named like a split is scored under evaluate.py's name for it, beside the run's own eval_test.json.
    assert run_matrix.input_name("data/test.csv") == "test_input" and run_matrix.input_name("x/ood.csv") == "ood"


def test_an_input_scored_elsewhere_is_named_where_the_plan_gave_it(tmp_path):
    """The refusal of a file whose name another file's scores take says where the file came from: the plan's
    score_inputs key or the --score_inputs flag."""
    ood = held_out(tmp_path, "ood.csv", 2)
    plan = tmp_path / "plan.yaml"
    out = tmp_path / "out"
    plan.write_text(
        f"datasets: [{SHARED_DATA / 'sst2'}]\nmodels: [m]\nseeds: [1]\noutput_dir: {out}\nscore_inputs: [{ood}]\n"
    )
    (out / "sst2" / "m" / "seed1").mkdir(parents=True)
    heldout_file(out / "sst2" / "m" / "seed1", "ood", 0.5, "/elsewhere/ood.csv")
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main(["--config", str(plan), "--dry_run"])
    assert f"another file named like {ood} (from --config {plan}: score_inputs); rename" in str(err.value)
    with pytest.raises(run_matrix.UsageError) as err:
        run_matrix.main(["--config", str(plan), "--dry_run", "--score_inputs", str(ood)])
    assert f"another file named like {ood} (from --score_inputs); rename" in str(err.value)


def heldout_file(run: Path, name: str, value: float, source: str) -> None:
    """The eval_<name>.json evaluate.py --input writes, with both metrics compare.py reads."""
    record = {"macro_f1": value, "accuracy": value, "num_samples": 10, "input": source}
    record |= {"predictions": str(run / f"predictions_{name}.jsonl"), "unscored_rows": {"no_label": 0, "no_text": 0}}
    (run / f"eval_{name}.json").write_text(json.dumps(record))


def test_report_averages_each_input_over_seeds_and_says_when_seeds_or_files_differ(tmp_path, capsys):
    for seed in (1, 2, 3):
        fake_run(tmp_path, {"learning_rate": 0.1}, seed, val=0.8, test=0.8)
    runs = sorted(p.parent for p in tmp_path.rglob("results.json"))
    heldout_file(runs[0], "ood", 0.5, "/data/ood.csv")
    heldout_file(runs[1], "ood", 0.7, "/data/ood.csv")
    (runs[2] / "eval_notes.json").write_text(json.dumps({"macro_f1": 1.0}))  # the user's own: not a score
    [row] = report.main([str(tmp_path), "--no_plots"])
    err = capsys.readouterr().err
    assert row["heldout_ood_mean"] == pytest.approx(0.6) and json.loads(row["heldout_ood_seed_list"]) == [1, 2]
    assert "seed 3 has no scores of ood; its held-out column averages 2 of 3 seeds. Score it with" in err
    assert "heldout_notes_mean" not in row
    table = (tmp_path / "results.md").read_text()
    assert "held-out ood macro_f1" in table and "0.6000 ± 0.1414 (2/3 seeds)" in table
    with open(tmp_path / "results.csv") as handle:
        assert float(next(csv.DictReader(handle))["heldout_ood_mean"]) == pytest.approx(0.6)

    heldout_file(runs[2], "ood", 0.9, "/elsewhere/ood.csv")
    [row] = report.main([str(tmp_path), "--no_plots"])
    err = capsys.readouterr().err
    assert row["heldout_ood_mean"] == pytest.approx(0.7) and "2/3 seeds" not in (tmp_path / "results.md").read_text()
    assert "the held-out scores of ood on ds came from different input files" in err and "/elsewhere/ood.csv" in err
    assert f"/elsewhere/ood.csv (1 run, e.g. {runs[2]})" in err and "/data/ood.csv (2 runs, e.g." in err


def scored_input(run: Path, gold: list, pred: list, source: str = "/data/ood.csv", name: str = "ood") -> None:
    """What evaluate.py --input leaves for a file with labels: predictions (the prediction as "label", a row without a
    label unscored) and eval_<name>.json."""
    rows = [{"idx": i, "label": p, "gold": g} for i, (g, p) in enumerate(zip(gold, pred, strict=True))]
    rows.append({"idx": len(rows), "label": pred[0]})
    (run / f"predictions_{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    heldout_file(run, name, f1_score(gold, pred, average="macro"), source)


def test_compare_on_a_scored_input_judges_its_scores_instead_of_test(tmp_path, capsys):
    gold = balanced_gold(40)
    for seed in (1, 2, 3):  # A right on every test row and wrong on held-out rows; B the other way round
        a = write_run(tmp_path, "d1", "org/model-a", seed, gold, gold)
        b = write_run(tmp_path, "d1", "org/model-b", seed, gold, with_errors(gold, 4 + seed))
        scored_input(a, gold, with_errors(gold, 8 + seed))
        scored_input(b, gold, gold)
    base = [str(tmp_path), "--a", "model-a", "--b", "model-b", "--bootstrap", "50", "--aso_bootstrap", "50"]
    assert compare.main(base)["per_dataset"]["d1"]["delta_mean"] > 0
    on_ood = compare.main([*base, "--on", "ood"])
    d1 = on_ood["per_dataset"]["d1"]
    assert d1["delta_mean"] == pytest.approx(-0.25, abs=1e-3) and on_ood["metric"] == "held-out ood macro_f1"
    # The bootstrap resamples the input's scored rows (not the unlabeled one), from its predictions.
    assert d1["n_test_examples"] == 40 and d1["delta_recomputed"] == pytest.approx(d1["delta_mean"])
    assert d1["ci_high"] < 0
    ranked = compare.main([str(tmp_path), "--all", "--on", "ood", "--bootstrap", "50", "--aso_bootstrap", "50"])
    assert ranked["metric"] == "held-out ood macro_f1"
    with pytest.raises(compare.UsageError, match=r"--on oops: no run has scores of oops; scored inputs: ood"):
        compare.main([*base, "--on", "oops"])

    scored_input(b, gold, gold, source="/elsewhere/ood.csv")  # one run scored on another file of that name
    capsys.readouterr()
    skipped = compare.main([*base, "--on", "ood"])["datasets_skipped"]
    assert "different test data" in skipped["d1"] and "/elsewhere/ood.csv" in skipped["d1"]


def test_compare_on_a_scored_input_writes_beside_the_test_verdict_not_over_it(tmp_path, capsys):
    """README's out-of-domain recipe: compare.py on test, then --on the scored input, into one folder; the held-out
    verdict's files are its own, so the test verdict's stay as they were."""
    gold = balanced_gold(40)
    for seed in (1, 2):
        a = write_run(tmp_path, "d1", "org/model-a", seed, gold, gold)
        b = write_run(tmp_path, "d1", "org/model-b", seed, gold, with_errors(gold, 4 + seed))
        scored_input(a, gold, with_errors(gold, 8 + seed))
        scored_input(b, gold, gold)
    base = [str(tmp_path), "--a", "model-a", "--b", "model-b", "--bootstrap", "50", "--aso_bootstrap", "50"]
    on_test = compare.main(base)["files"]
    test_md = Path(on_test[0]).read_text()
    on_ood = compare.main([*base, "--on", "ood"])["files"]
    assert [Path(f).name for f in on_ood] == [
        f"compare_model-a_vs_model-b_on_ood.{ext}" for ext in ("md", "csv", "png")
    ]
    assert Path(on_test[0]).read_text() == test_md and "held-out ood" in Path(on_ood[0]).read_text()
    ranked = [str(tmp_path), "--all", "--bootstrap", "50", "--aso_bootstrap", "50"]
    assert [Path(f).name for f in compare.main(ranked)["files"]] == ["compare_all.md", "compare_all.csv"]
    on = compare.main([*ranked, "--on", "ood"])["files"]
    assert [Path(f).name for f in on] == ["compare_all_on_ood.md", "compare_all_on_ood.csv"]


def test_compare_on_names_the_held_out_data_and_the_seeds_it_lacks_scores_of(tmp_path, capsys):
    gold = balanced_gold(40)
    for seed in (1, 2, 3):  # seed 3 trained before the input was scored: no scores of ood on either side
        a = write_run(tmp_path, "d1", "org/model-a", seed, gold, gold)
        b = write_run(tmp_path, "d1", "org/model-b", seed, gold, with_errors(gold, 4 + seed))
        if seed < 3:
            scored_input(a, gold, with_errors(gold, 8 + seed))
            scored_input(b, gold, gold)
    base = [str(tmp_path), "--bootstrap", "50", "--aso_bootstrap", "50", "--on", "ood"]
    result = compare.main([*base, "--a", "model-a", "--b", "model-b"])
    assert result["per_dataset"]["d1"]["seeds"] == [1, 2]
    assert "d1: seeds [3] have no held-out ood macro_f1 on either side: left out" in "\n".join(result["notes"])
    text = (tmp_path / "compare_model-a_vs_model-b_on_ood.md").read_text()
    assert "## Validation vs held-out ood" in text and "val/held-out ood τ" in text
    assert "resamples of the held-out ood examples" in text and "val→test" not in text
    ranked = compare.main([*base, "--all"])
    assert "d1: seeds [3] have no held-out ood macro_f1 for any model: left out" in "\n".join(ranked["notes"])
    text = (tmp_path / "compare_all_on_ood.md").read_text()
    assert "## Validation vs held-out ood" in text and "| held-out ood winner |" in text and "vs test" not in text


def test_a_held_out_score_that_is_not_a_finite_number_counts_as_missing(tmp_path, capsys):
    """One run's eval_ood.json holds a nan macro-F1: that seed has no score of ood (report.py's cell says so, compare.py
    --on pairs the other seeds), with a warning naming the file; never a crash or a Δ of nan."""
    gold = balanced_gold(40)
    for seed in (1, 2, 3):
        a = write_run(tmp_path, "d1", "org/model-a", seed, gold, gold)
        b = write_run(tmp_path, "d1", "org/model-b", seed, gold, with_errors(gold, 4 + seed))
        scored_input(a, gold, with_errors(gold, 8 + seed))
        scored_input(b, gold, gold)
    bad = a.parent / "seed2" / "eval_ood.json"
    bad.write_text(json.dumps(json.loads(bad.read_text()) | {"macro_f1": float("nan")}))
    rows = report.main([str(tmp_path), "--no_plots"])
    assert "heldout_ood_mean" in rows[0] and json.loads(rows[0]["heldout_ood_seed_list"]) == [1, 3]
    assert f"warning: {bad}: macro_f1 is not a finite number" in capsys.readouterr().err
    base = [str(tmp_path), "--bootstrap", "50", "--aso_bootstrap", "50", "--on", "ood"]
    d1 = compare.main([*base, "--a", "model-a", "--b", "model-b"])["per_dataset"]["d1"]
    assert d1["seeds"] == [1, 3] and d1["delta_mean"] < 0
    ranked = compare.main([*base, "--all"])
    assert [row["model"] for row in ranked["ranking"]] == ["model-b", "model-a"]


def finished_run(tmp_path: Path, datasets: list[str]) -> list[run_matrix.Run]:
    """A plan of the given datasets x a stand-in model x seed 1 whose runs are finished (results.json), unscored."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    cfg = {"datasets": datasets, "models": [str(model)], "seeds": [1], "output_dir": str(tmp_path / "matrix")}
    runs = run_matrix.plan(cfg, [])
    for run in runs:
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "results.json").write_text("{}")
    return runs


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_scoring_says_which_scoring_stopped_and_that_the_same_command_scores_it(tmp_path, sig):
    """SIGINT (or SIGTERM) while a finished run's best model scores a held-out file: the wording is about that scoring (which
    file, which run, that the run is kept and the same command scores it), not about training and checkpoints."""
    [run] = finished_run(tmp_path, [str(SHARED_DATA / "emotion")])
    good, ready = held_out(tmp_path), tmp_path / "ready"
    scorer = tmp_path / "scorer.py"  # stands in for the launcher: scores nothing, for as long as the test needs
    scorer.write_text("import sys, time\nopen(sys.argv[1], 'w').write('x')\ntime.sleep(300)\n")
    command = [sys.executable, str(REPO / "scripts" / "run_matrix.py"), "--datasets", str(SHARED_DATA / "emotion")]
    command += ["--models", str(tmp_path / "model"), "--seeds", "1", "--output_dir", str(tmp_path / "matrix")]
    command += ["--launcher", f"{sys.executable} {scorer} {ready}", "--score_inputs", str(good)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.exists(), proc.communicate()[0]
        proc.send_signal(sig)
        printed = proc.communicate(timeout=60)[0]
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, printed
    assert (
        f"{sig.name} received: no further run or scoring starts; the scoring of {good} with {run.run_dir} stopped"
        in (printed)
    )
    last = printed.strip().splitlines()[-1]
    assert last.startswith(f"matrix: interrupted by {sig.name} while scoring: 1 scoring stopped ({good} with "), last
    assert "run the same command again to score it (the finished run is kept" in last, last
    assert "checkpoint" not in printed and (run.run_dir / "results.json").is_file()


def test_each_dataset_scores_only_the_files_given_for_it(tmp_path, capsys):
    """A plan of several datasets takes --score_inputs DATASET=FILE: an sst2 file is scored by the sst2 runs only
    (emotion's runs have other labels). A plain FILE, or a DATASET the plan does not have, is refused before any run."""
    datasets = [str(SHARED_DATA / "emotion"), str(SHARED_DATA / "sst2")]
    emotion_run, sst2_run = finished_run(tmp_path, datasets)
    tweets, reviews = held_out(tmp_path, "tweets.csv"), held_out(tmp_path, "reviews.csv")
    base = ["--datasets", *datasets, "--models", str(tmp_path / "model"), "--seeds", "1"]
    base += ["--output_dir", str(tmp_path / "matrix"), "--dry_run", "--score_inputs"]
    run_matrix.main([*base, f"emotion={tweets}", f"sst2={reviews}"])
    printed = capsys.readouterr().out
    assert f"--run_dir {emotion_run.run_dir} --input {tweets}" in printed
    assert f"--run_dir {sst2_run.run_dir} --input {reviews}" in printed
    assert (
        f"{emotion_run.run_dir} --input {reviews}" not in printed
        and f"{sst2_run.run_dir} --input {tweets}" not in printed
    )
    with pytest.raises(
        run_matrix.UsageError, match=r"plan has 2 datasets \(emotion, sst2\).*--score_inputs DATASET=FILE"
    ):
        run_matrix.main([*base, str(reviews)])
    with pytest.raises(run_matrix.UsageError, match=r"--score_inputs imdb=.*the plan's datasets are emotion, sst2"):
        run_matrix.main([*base, f"imdb={reviews}"])
    # --status counts, for each run, only its own dataset's files.
    status = [*base[:-2], "--status", "--score_inputs", f"sst2={reviews}"]
    run_matrix.main(status)
    lines = capsys.readouterr().out.splitlines()
    assert (
        f"done        {emotion_run.run_dir}" in lines
        and f"done        {sst2_run.run_dir} (no scores of reviews)" in lines
    )


def test_the_matrix_config_gives_score_inputs_in_the_forms_of_the_flag(tmp_path, capsys, monkeypatch):
    """README: a `score_inputs:` list in the matrix config takes what --score_inputs takes (FILE, DATASET=FILE), its
    paths relative to where run_matrix.py starts, as the plan's other paths are; the flag, when given, replaces it."""
    datasets = [str(SHARED_DATA / "emotion"), str(SHARED_DATA / "sst2")]
    emotion_run, sst2_run = finished_run(tmp_path, datasets)
    tweets, reviews = held_out(tmp_path, "tweets.csv"), held_out(tmp_path, "reviews.csv")
    plan = {
        "datasets": datasets,
        "models": [str(tmp_path / "model")],
        "seeds": [1],
        "output_dir": str(tmp_path / "matrix"),
    }
    config = tmp_path / "plans" / "matrix.yaml"
    config.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    config.write_text(json.dumps(plan | {"score_inputs": ["emotion=inputs/tweets.csv", "sst2=inputs/reviews.csv"]}))
    run_matrix.main(["--config", str(config), "--dry_run"])
    printed = capsys.readouterr().out
    assert f"--run_dir {emotion_run.run_dir} --input {tweets}" in printed
    assert f"--run_dir {sst2_run.run_dir} --input {reviews}" in printed
    run_matrix.main(["--config", str(config), "--dry_run", "--score_inputs", "sst2=inputs/tweets.csv"])
    printed = capsys.readouterr().out
    assert f"--input {tweets}" in printed and "--input" not in printed.replace(f"--input {tweets}", "")
    # Checked as the flag's values are, and named as the config's.
    named = f"--config {config}: score_inputs"
    for given, refused in (
        (["inputs/tweets.csv"], f"{named} inputs/tweets.csv: the plan has 2 datasets .* score_inputs DATASET=FILE"),
        (["imdb=inputs/tweets.csv"], f"{named} imdb=inputs/tweets.csv: the plan has no dataset 'imdb'"),
        (["sst2=missing.csv"], f"{named} missing.csv: no such file"),
        ("sst2=inputs/reviews.csv", "score_inputs must be a list of FILE or DATASET=FILE entries"),
    ):
        config.write_text(json.dumps(plan | {"score_inputs": given}))
        with pytest.raises(run_matrix.UsageError, match=f"^{refused}"):
            run_matrix.main(["--config", str(config), "--dry_run"])


def test_a_linked_file_is_scored_under_the_name_given_and_one_file_twice_is_refused(tmp_path, capsys):
    """A --score_inputs file given through a symlink keeps the name the user gave it (eval_<link name>.json, the
    report's column), and a run scored through the link counts as scored; the same file twice is refused."""
    [run] = finished_run(tmp_path, [str(SHARED_DATA / "emotion")])
    target = held_out(tmp_path, "export_2024_07.csv")
    link = tmp_path / "reviews.csv"
    link.symlink_to(target)
    base = ["--datasets", str(SHARED_DATA / "emotion"), "--models", str(tmp_path / "model"), "--seeds", "1"]
    base += ["--output_dir", str(tmp_path / "matrix"), "--score_inputs"]
    run_matrix.main([*base, str(link), "--dry_run"])
    assert f"--run_dir {run.run_dir} --input {link}\n" in capsys.readouterr().out
    heldout_file(run.run_dir, "reviews", 0.5, str(target))  # what evaluate.py --input LINK writes: the file it read
    run_matrix.main([*base, str(link), "--status"])
    assert f"done        {run.run_dir}\n" in capsys.readouterr().out  # scored: nothing to score again
    with pytest.raises(run_matrix.UsageError, match=r"reviews.csv and .*export_2024_07.csv are one file"):
        run_matrix.main([*base, str(link), str(target)])


def test_report_and_compare_list_a_held_out_file_under_its_own_datasets_runs_only(tmp_path, capsys):
    """--score_inputs d1=reviews.csv d2=tweets.csv: the table shows reviews' scores in d1's rows and nothing in d2's
    (no run of d2 was meant to score it: not a missing score), and compare.py --on reviews judges d1 alone."""
    gold = balanced_gold(40)
    for dataset, name in (("d1", "reviews"), ("d2", "tweets")):
        for seed in (1, 2):
            a = write_run(tmp_path, dataset, "org/model-a", seed, gold, gold)
            b = write_run(tmp_path, dataset, "org/model-b", seed, gold, with_errors(gold, 4 + seed))
            scored_input(a, gold, with_errors(gold, 8 + seed), f"/data/{name}.csv", name)
            scored_input(b, gold, gold, f"/data/{name}.csv", name)
    capsys.readouterr()
    rows = report.main([str(tmp_path), "--no_plots"])
    assert "warning" not in capsys.readouterr().err
    assert all(("heldout_reviews_mean" in r) == (r["dataset"] == "d1") for r in rows)
    header, _, *lines = (tmp_path / "results.md").read_text().split("\n\n")[0].splitlines()
    column = [c.strip() for c in header.split("|")].index("held-out reviews macro_f1")
    cells = {(c[1], c[2].strip("*")): c[column] for c in ([x.strip() for x in line.split("|")] for line in lines)}
    assert cells[("d2", "model-a")] == "" and cells[("d1", "model-a")].startswith("0.")
    base = [str(tmp_path), "--bootstrap", "50", "--aso_bootstrap", "50", "--on", "reviews"]
    capsys.readouterr()
    result = compare.main([*base, "--a", "model-a", "--b", "model-b"])
    assert result["datasets_compared"] == ["d1"] and result["datasets_skipped"] == {}
    assert "d2" not in (tmp_path / "compare_model-a_vs_model-b_on_reviews.md").read_text()
    # Left out, and said: d2's runs may have been given the file and failed to score it.
    assert "note: --on reviews: no run of d2 has scores of reviews, left out" in capsys.readouterr().err
    ranked = compare.main([*base, "--all"])
    assert ranked["datasets_skipped"] == {}, ranked["datasets_skipped"]


def test_report_does_not_warn_when_each_dataset_has_its_own_file_of_one_name(tmp_path, capsys):
    """--score_inputs sst2=.../ood.csv emotion=.../ood.csv: one column name, one file per dataset, no mixing."""
    gold = balanced_gold(20)
    for dataset in ("d1", "d2"):
        for seed in (1, 2):
            run = write_run(tmp_path, dataset, "org/model-a", seed, gold, gold)
            heldout_file(run, "ood", 0.6, f"/data/{dataset}/ood.csv")
    report.main([str(tmp_path), "--no_plots"])
    assert "came from different input files" not in capsys.readouterr().err
    heldout_file(run, "ood", 0.6, "/elsewhere/ood.csv")  # one d2 run on another file: that is mixing
    report.main([str(tmp_path), "--no_plots"])
    err = capsys.readouterr().err
    assert "the held-out scores of ood on d2 came from different input files" in err and "/data/d1/" not in err


def test_score_inputs_name_a_dataset_by_the_longest_plan_name_and_expand_home(tmp_path, monkeypatch):
    """A plan's `name:` may hold "=" (s=t=FILE gives FILE to s=t, not to s); ~ in FILE is the home folder, also where
    the shell leaves it (after DATASET=); a missing plain file in a one-dataset plan says no such file."""
    from types import SimpleNamespace

    reviews = held_out(tmp_path, "reviews.csv")
    runs = [SimpleNamespace(dataset_name="s"), SimpleNamespace(dataset_name="s=t")]
    run_matrix.assign_score_inputs([f"s=t={reviews}"], runs)
    assert runs[0].inputs == [] and runs[1].inputs == [str(reviews)]
    monkeypatch.setenv("HOME", str(tmp_path))
    run_matrix.assign_score_inputs(["s=~/inputs/reviews.csv"], runs)
    assert runs[0].inputs == [str(reviews)] and runs[1].inputs == []
    one = [SimpleNamespace(dataset_name="emotion")]
    run_matrix.assign_score_inputs(["~/inputs/reviews.csv"], one)
    assert one[0].inputs == [str(reviews)]
    with pytest.raises(run_matrix.UsageError, match=r"results=final.csv: no such file, and the plan has no dataset"):
        run_matrix.assign_score_inputs(["results=final.csv"], one)
