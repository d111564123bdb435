"""scripts/compare.py on fake run folders (config.json, results.json, predictions_test.jsonl): no training."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from conftest import REPO
from utils import run_cli

sys.path.insert(0, str(REPO / "scripts"))  # scripts/ is not a package: compare.py is imported as a module
import compare
import report

LABELS = ["neg", "pos"]
REQUIRED = {"p_a_better", "p_equivalent", "p_b_better", "datasets_a_wins", "datasets_b_wins", "per_dataset", "verdict"}
FAST = ["--aso_bootstrap", "50"]  # deepsig's ASO costs ~5 ms per iteration; its default 1000 would dominate the tests


def balanced_gold(n: int) -> list[str]:
    """``n`` rows, half of each class."""
    return [LABELS[i % 2] for i in range(n)]


def with_errors(gold: list[str], errors: int, offset: int = 0) -> list[str]:
    """``gold`` with ``errors`` rows flipped, as many of each class, so macro-F1 = accuracy = 1 - errors / n exactly."""
    pred = list(gold)
    for k in range(errors):
        i = (offset + 2 * (k // 2) + k % 2) % len(gold)  # alternate classes: rows i and i + 1 differ in class
        pred[i] = LABELS[1 - LABELS.index(gold[i])]
    return pred


def write_run(
    root: Path,
    dataset: str,
    model: str,
    seed: int,
    gold: list,
    pred: list,
    val: float | None = None,
    grid: dict | None = None,
    variant: str | None = None,
    digests: dict | None = None,
    name: str | None = None,
    model_name: str | None = None,
) -> Path:
    """A finished run folder as run_matrix.py leaves it: config.json, results.json, predictions_test.jsonl and, for a
    grid point or a dataset the plan gave a ``name``, matrix.json."""
    grid = grid or {}
    point = "-".join([variant or "", *(f"{k}{v}" for k, v in sorted(grid.items()))]).strip("-") or "default"
    run_dir = root / dataset / model.replace("/", "_") / point / f"seed{seed}"
    run_dir.mkdir(parents=True)
    user = {"dataset": str(root / "data" / dataset), "model_name_or_path": model, "seed": seed} | grid
    resolved = {"dataset": str(root / "data" / dataset), "label_names": LABELS}
    if digests is not None:  # train.py's record of the rows the run saw
        resolved["split_digests"] = digests
    (run_dir / "config.json").write_text(json.dumps({"user_config": user, "resolved": resolved}))
    test = {"macro_f1": f1_score(gold, pred, average="macro"), "accuracy": accuracy_score(gold, pred)}
    test["num_samples"] = len(gold)
    validation = {
        "macro_f1": test["macro_f1"] if val is None else val,
        "accuracy": test["accuracy"] if val is None else val,
    }
    results = {"metric": "macro_f1", "validation": validation, "test": test, "best_step": 10}
    (run_dir / "results.json").write_text(json.dumps(results))
    if (
        grid or variant or name or model_name
    ):  # run_matrix.py names a run's variant, grid point and names in matrix.json
        entry = {"variant": variant, "grid": grid} | ({"dataset": name} if name else {})
        entry |= {"model": model_name} if model_name else {}
        (run_dir / "matrix.json").write_text(json.dumps(entry))
    rows = [
        {"idx": i, "text": f"row {i}", "gold": g, "pred": p} for i, (g, p) in enumerate(zip(gold, pred, strict=True))
    ]
    (run_dir / "predictions_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def run_compare(root: Path, *args: str, capsys: pytest.CaptureFixture) -> dict:
    """compare.main in-process; returns the JSON of the last stdout line."""
    compare.main([str(root), *FAST, *args])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_identical_predictions_are_equivalent(tmp_path, capsys):
    """A and B predict the same rows: Δ = 0 everywhere, an interval of [0, 0], and the verdict says equivalent."""
    for dataset in ("d1", "d2", "d3"):
        gold = balanced_gold(60)
        for seed in (1, 2, 3):
            pred = with_errors(gold, 4 * seed, offset=seed)  # seeds differ, A and B do not
            write_run(tmp_path, dataset, "org/model-a", seed, gold, pred)
            write_run(tmp_path, dataset, "org/model-b", seed, gold, pred)
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    assert REQUIRED <= out.keys()
    for r in out["per_dataset"].values():
        assert r["delta_mean"] == 0 and r["ci_low"] == 0 and r["ci_high"] == 0
        assert r["p_value"] == 1 and not r["significant"] and r["winner"] is None
    assert out["p_equivalent"] > 0.95 and out["datasets_a_wins"] == out["datasets_b_wins"] == 0
    assert "practically equivalent" in out["verdict"]
    assert (tmp_path / "compare_model-a_vs_model-b.md").is_file()
    assert (tmp_path / "compare_model-a_vs_model-b.png").is_file()
    assert (tmp_path / "compare_model-a_vs_model-b.csv").read_text().count("\n") == 4  # header + 3 datasets


def test_a_right_everywhere_wins_every_dataset(tmp_path, capsys):
    """A is right on every example, B wrong on some: P(A better) ≈ 1 and A wins every dataset. A and B are two
    matrix variants of one encoder, named ``enc [mine]`` and ``enc [base]`` and picked by a part of the name."""
    for dataset in ("d1", "d2", "d3"):
        gold = balanced_gold(80)
        for seed in (1, 2, 3):
            write_run(tmp_path, dataset, "org/enc", seed, gold, gold, variant="mine")
            bad = with_errors(gold, 10 + 2 * seed, offset=seed)
            write_run(tmp_path, dataset, "org/enc", seed, gold, bad, variant="base")
    out = run_compare(tmp_path, "--a", "[mine]", "--b", "base", capsys=capsys)
    assert out["a"] == "enc [mine]" and (tmp_path / "compare_enc_mine_vs_enc_base.md").is_file()
    # The lines per dataset say which difference Δ is before the first of them.
    compare.main([str(tmp_path), *FAST, "--a", "[mine]", "--b", "base"])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Δ = enc [mine] − enc [base] in test macro_f1, per dataset:", printed
    assert printed[1].startswith(f"d1: Δ {out['per_dataset']['d1']['delta_mean']:+.4f} (seeds 1, 2, 3), CI ["), printed
    assert out["p_a_better"] > 0.95 and out["p_b_better"] < 0.01
    assert out["datasets_a_wins"] == 3 and out["datasets_b_wins"] == 0
    for r in out["per_dataset"].values():
        assert r["winner"] == "A" and r["ci_low"] > 0 and r["aso_eps_min_a"] < compare.ASO_TAU
        assert r["delta_recomputed"] == pytest.approx(r["delta_mean"])  # the bootstrap scores what results.json says
    assert "enc [mine] is better" in out["verdict"] and "3/3" in out["verdict"]


def test_a_verdict_names_the_datasets_no_bootstrap_could_test(tmp_path, capsys):
    """B's test predictions of d2 are gone: d2 cannot be won, and the verdict said 'significant wins: 2 vs 0' as if
    d2 had been tested and found no difference; it now names d2 as untested."""
    for dataset in ("d1", "d2", "d3"):
        gold = balanced_gold(80)
        for seed in (1, 2, 3):
            write_run(tmp_path, dataset, "org/a", seed, gold, gold)
            bad = write_run(tmp_path, dataset, "org/b", seed, gold, with_errors(gold, 10 + 2 * seed, offset=seed))
            if dataset == "d2":
                (bad / "predictions_test.jsonl").unlink()
    out = run_compare(tmp_path, "--a", "a", "--b", "b", "--bootstrap", "200", capsys=capsys)
    assert out["verdict"].startswith(
        "a > b on 3/3 datasets and b > a on 0/3 (significant wins: 2 vs 0; not tested on 1 of 3 datasets, d2: no "
        "bootstrap, see the notes); across datasets"
    ), out["verdict"]


def test_runs_tested_on_different_rows_are_left_out_of_the_verdict(tmp_path, capsys):
    """A scored on the first 40 test rows (another --max_eval_samples), B on all 60: their scores are not comparable,
    so that dataset is skipped with the reason, and only the other one is compared."""
    gold = balanced_gold(60)
    for seed in (1, 2, 3):
        for dataset, rows in (("d1", 40), ("d2", 60)):
            write_run(tmp_path, dataset, "org/model-a", seed, gold[:rows], gold[:rows])
            write_run(tmp_path, dataset, "org/model-b", seed, gold, with_errors(gold, 10, offset=seed))
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    assert list(out["per_dataset"]) == ["d2"]
    assert "tested on different numbers of rows (model-a: 40, model-b: 60)" in out["datasets_skipped"]["d1"]
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert ranked["datasets_compared"] == ["d2"] and "different numbers of rows" in ranked["datasets_skipped"]["d1"]


def test_a_copied_dataset_counts_once_across_datasets(tmp_path, capsys):
    """d1-copy is d1's folder copied: its runs saw the same rows. Counted twice, it would double d1's weight in the
    tests across datasets; it is skipped with the reason, and d2 (other rows) is compared."""
    for dataset, rows in (("d1", "aaaa"), ("d1-copy", "aaaa"), ("d2", "bbbb")):
        gold = balanced_gold(60)
        for seed in (1, 2, 3):
            # A carved validation split differs from seed to seed, and so do the train and validation digests.
            seen = {"train": f"{rows}{seed}", "validation": f"{rows}v{seed}", "test": rows}
            write_run(tmp_path, dataset, "org/model-a", seed, gold, gold, digests=seen)
            write_run(tmp_path, dataset, "org/model-b", seed, gold, with_errors(gold, 10, offset=seed), digests=seen)
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    assert sorted(out["per_dataset"]) == ["d1", "d2"]
    assert "the same rows as d1's (a copy of that dataset)" in out["datasets_skipped"]["d1-copy"]
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert ranked["datasets_compared"] == ["d1", "d2"] and "a copy" in ranked["datasets_skipped"]["d1-copy"]


def test_bootstrap_interval_matches_the_normal_approximation(tmp_path, capsys):
    """Balanced binary, A perfect, B wrong on 10% with symmetric errors: macro-F1 moves like accuracy, so Δ's 95%
    interval is 0.1 ± 1.96·sqrt(0.1·0.9/n); one dataset and one seed still give a verdict, saying what is missing."""
    n = 1000
    gold = balanced_gold(n)
    write_run(tmp_path, "d1", "org/model-a", 1, gold, gold)
    write_run(tmp_path, "d1", "org/model-b", 1, gold, with_errors(gold, 100))
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "4000", capsys=capsys)
    r = out["per_dataset"]["d1"]
    half = 1.96 * np.sqrt(0.1 * 0.9 / n)  # 0.0186
    assert r["delta_mean"] == pytest.approx(0.1)
    assert r["ci_low"] == pytest.approx(0.1 - half, abs=0.003) and r["ci_high"] == pytest.approx(0.1 + half, abs=0.003)
    assert out["p_a_better"] is None and "not computed" in out["verdict"] and "1/1" in out["verdict"]
    assert r["aso_eps_min_a"] is None and any("ASO not computed" in note for note in out["notes"])


@pytest.mark.parametrize("multi_label", [False, True])
def test_weighted_scores_match_sklearn_on_a_resample(multi_label):
    """The vectorised macro-F1/accuracy of a resample equals sklearn's on the rows drawn (absent classes included)."""
    rng = np.random.default_rng(0)
    n, labels = 50, 4
    if multi_label:
        gold, pred = rng.integers(0, 2, (n, labels)).astype(float), rng.integers(0, 2, (n, labels)).astype(float)
        gold[:, 3] = pred[:, 3] = 0  # a label nobody has: sklearn counts it as F1 0 on an indicator matrix
    else:
        g, p = rng.integers(0, 3, n), rng.integers(0, 3, n)  # class 3 absent: sklearn leaves it out of the average
        gold, pred = np.eye(labels)[g], np.eye(labels)[p]
    idx = rng.integers(0, n, n)
    weights = np.bincount(idx, minlength=n)[None].astype(float)
    for metric in ("macro_f1", "accuracy"):
        ours = compare.weighted_scores(weights, gold, pred, metric, multi_label)[0]
        gi, pi = (gold[idx], pred[idx]) if multi_label else (gold[idx].argmax(1), pred[idx].argmax(1))
        if metric == "macro_f1":
            expected = f1_score(gi, pi, average="macro", zero_division=0)
        else:
            expected = accuracy_score(gi, pi)  # subset accuracy for an indicator matrix
        assert ours == pytest.approx(expected)


def test_hierarchical_predictions_use_the_finest_level(tmp_path):
    """A hierarchical row's gold/pred dicts are read as their last (finest) level."""
    path = tmp_path / "predictions_test.jsonl"
    row = {
        "idx": 3,
        "text": "t",
        "gold": {"coarse": "LOC", "fine": "LOC:city"},
        "pred": {"coarse": "LOC", "fine": "LOC:other"},
    }
    path.write_text(json.dumps(row) + "\n")
    assert compare.read_predictions(tmp_path) == {3: ("LOC:city", "LOC:other")}


def grid_campaign(root: Path) -> None:
    """A with three learning rates whose validation order is the reverse of their test order; B with one point."""
    gold = balanced_gold(100)
    # (learning rate, validation score, test errors out of 100): validation prefers 1e-05, test prefers 0.0001.
    for lr, val, errors in ((1e-05, 0.90, 30), (3e-05, 0.85, 25), (0.0001, 0.80, 20)):
        for seed in (1, 2):
            write_run(
                root,
                "d1",
                "org/model-a",
                seed,
                gold,
                with_errors(gold, errors, offset=seed),
                val,
                {"learning_rate": lr},
            )
    for seed in (1, 2):
        write_run(
            root, "d1", "org/model-b", seed, gold, with_errors(gold, 15, offset=seed), 0.82, {"learning_rate": 5e-05}
        )


def test_validation_and_test_rankings_that_disagree_are_flagged(tmp_path, capsys):
    """Validation picks A's lr=1e-05 and prefers A over B; test ranks everything the other way round."""
    grid_campaign(tmp_path)
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    r = out["per_dataset"]["d1"]
    assert r["a_grid"] == {"learning_rate": 1e-05} and r["n_grid_points"] == 4
    assert r["val_test_tau"] < 0 and r["val_winner"] == "A" and r["test_winner"] == "B"
    assert r["val_winner_loses_on_test"] and r["a_val_test_drop"] == pytest.approx(0.90 - 0.70)
    assert "| **yes** |" in (tmp_path / "compare_model-a_vs_model-b.md").read_text()


def test_selection_never_reads_test_scores(tmp_path, capsys):
    """Poisoning the test scores of the grid points changes neither the selected point nor what validation decides."""
    grid_campaign(tmp_path)
    args = ["--a", "model-a", "--b", "model-b", "--bootstrap", "200"]
    before = run_compare(tmp_path, *args, capsys=capsys)["per_dataset"]["d1"]
    for results in tmp_path.rglob("results.json"):
        record = json.loads(results.read_text())
        if "model-a" in str(results) and "learning_rate1e-05" not in str(results):  # A's points validation passes over
            record["test"] = {"macro_f1": 1.0, "accuracy": 1.0}
        results.write_text(json.dumps(record))
    after = run_compare(tmp_path, *args, capsys=capsys)["per_dataset"]["d1"]
    for key in ("a_grid", "b_grid", "a_selection_margin", "val_winner", "delta_mean", "ci_low", "ci_high"):
        assert after[key] == before[key], key
    assert after["a_grid"] == {"learning_rate": 1e-05}


def test_all_ranks_models_with_friedman_and_a_cd_diagram(tmp_path, capsys):
    """--all over 5 datasets and 3 models: ranks follow the error rates, Friedman + Nemenyi run, the CD diagram is drawn."""
    for d in range(5):
        gold = balanced_gold(40)
        for model, errors in (("org/good", 2), ("org/mid", 8), ("org/bad", 14)):
            for seed in (1, 2):
                write_run(tmp_path, f"d{d}", model, seed, gold, with_errors(gold, errors + seed, offset=d))
    out = run_compare(tmp_path, "--all", capsys=capsys)
    assert [row["model"] for row in out["ranking"]] == ["good", "mid", "bad"]
    assert out["omnibus"] == "friedman" and out["posthoc"] == "nemenyi" and out["friedman_p"] < 0.05
    assert (tmp_path / "compare_all_cd.png").is_file() and (tmp_path / "compare_all.md").is_file()
    assert out["verdict"].startswith("good ranks first")


def test_all_names_no_winner_of_a_tie(tmp_path, capsys):
    """twin and other predict the same labels on both datasets and tie on validation too; third scores worse on test
    but best on validation of d2. --all names no first model, validation or test winner where the top is shared
    (taking the model sorted first would call it better), and flags d2's validation winner, which loses on test."""
    gold = balanced_gold(40)
    for dataset in ("d1", "d2"):
        for seed in (1, 2):
            for model in ("org/twin", "org/other"):
                write_run(tmp_path, dataset, model, seed, gold, with_errors(gold, 4), val=0.8)
            write_run(
                tmp_path, dataset, "org/third", seed, gold, with_errors(gold, 12), val=0.9 if dataset == "d2" else 0.5
            )
    out = run_compare(tmp_path, "--all", capsys=capsys)
    assert out["verdict"].startswith("other, twin share the first rank (mean rank 1.50 of 3 over 2 datasets)"), out
    # Each pair says how likely it is equivalent too: "P(better) = 0.00" alone reads as if twin were better.
    assert (
        "other vs twin: P(better) = 0.00, P(equivalent within ±0.01) = 1.00: practically equivalent" in out["verdict"]
    )
    d1, d2 = out["per_dataset"]["d1"], out["per_dataset"]["d2"]
    assert (d1["val_winner"], d1["test_winner"], d1["val_winner_loses_on_test"]) == (None, None, False)
    assert (d2["val_winner"], d2["test_winner"], d2["val_winner_loses_on_test"]) == ("third", None, True)
    [row] = [line for line in (tmp_path / "compare_all.md").read_text().splitlines() if line.startswith("| d1 |")]
    assert row.endswith(" | - | - |  |"), row  # neither winner named


def test_all_over_one_dataset_counts_it_in_the_singular(tmp_path, capsys):
    """--all over a campaign of one dataset said 'over 1 datasets'."""
    gold = balanced_gold(20)
    for model, errors in (("org/a", 2), ("org/b", 4)):
        write_run(tmp_path, "d1", model, 1, gold, with_errors(gold, errors))
    out = run_compare(tmp_path, "--all", "--bootstrap", "50", capsys=capsys)
    assert out["verdict"].startswith("a ranks first (mean rank 1.00 of 2 over 1 dataset)"), out["verdict"]


def test_all_over_a_campaign_of_one_model_is_refused(tmp_path, capsys):
    """--all over runs of one model wrote a ranking and the verdict 'a ranks first (mean rank 1.00 of 1 ...)'."""
    gold = balanced_gold(20)
    for dataset in ("d1", "d2"):
        write_run(tmp_path, dataset, "org/a", 1, gold, with_errors(gold, 2))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda _: compare.main([str(tmp_path), *FAST, "--all"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"error: --all ranks two models or more; every run under {tmp_path} is of one model, a: nothing to rank.\n"
    )
    assert not (tmp_path / "compare_all.md").exists()


def test_a_campaign_folder_that_is_not_there_is_named_as_missing(tmp_path, capsys):
    """A mistyped campaign folder was reported as one holding 'no finished runs' by both scripts."""
    missing = tmp_path / "campaign-typo"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda _: compare.main([str(missing), *FAST, "--all"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {missing}: no such folder; pass the matrix's output_dir.\n"
    with pytest.raises(SystemExit) as exit_info:
        report.main([str(missing), "--no_plots"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {missing}: no such folder; pass the matrix's output_dir.\n"


def test_all_ranks_models_on_the_seeds_every_model_ran(tmp_path, capsys):
    """good beats other on seeds 1 and 2 of both datasets; good's seed 3 (which other never ran, say it failed) is
    poor. --all pairs seeds as A-vs-B does: it ranks on seeds 1 and 2, says seed 3 is left out, and good ranks
    first; its 3-seed mean against other's 2-seed mean would rank other first."""
    for dataset in ("d1", "d2"):
        gold = balanced_gold(40)
        for seed in (1, 2):
            write_run(tmp_path, dataset, "org/good", seed, gold, with_errors(gold, 2, offset=seed))
            write_run(tmp_path, dataset, "org/other", seed, gold, with_errors(gold, 6, offset=seed))
        write_run(tmp_path, dataset, "org/good", 3, gold, with_errors(gold, 20))
    out = run_compare(tmp_path, "--all", capsys=capsys)
    assert out["per_dataset"]["d1"]["scores"] == {"good": pytest.approx(0.95), "other": pytest.approx(0.85)}
    assert [row["model"] for row in out["ranking"]] == ["good", "other"], out["ranking"]
    assert "d1: seeds [3] left out: not run (with a test macro_f1) by every model" in out["notes"], out["notes"]
    pair = run_compare(tmp_path, "--a", "good", "--b", "other", capsys=capsys)
    assert pair["per_dataset"]["d1"]["a_mean"] == pytest.approx(out["per_dataset"]["d1"]["scores"]["good"])


def test_cli_name_errors_and_final_json_line(tmp_path, capsys):
    """Ambiguous or unknown names exit 2 with one error line; a good run's last stdout line is the JSON summary."""
    gold = balanced_gold(20)
    for dataset in ("d1", "d2"):
        for model in ("org/model-a", "org/model-b"):
            write_run(tmp_path, dataset, model, 1, gold, with_errors(gold, 2 if model.endswith("a") else 6))
    write_run(tmp_path, "d3", "org/model-a", 1, gold, gold)  # B never ran on d3: listed and skipped
    # In-process through run_cli, as `python scripts/compare.py` runs main: a subprocess costs seconds of imports each.
    (tmp_path / "afile").write_text("x")
    for names, word in (
        (["--a", "model", "--b", "model-b"], "ambiguous"),
        (["--a", "nope", "--b", "model-b"], "no model"),
        (["--a", "model-a", "--b", "model-b", "--output_dir", str(tmp_path / "afile" / "out")], "a file is in the way"),
        (["--a", "model-a", "--b", "model-b", "--seed", "-1"], "--seed -1"),  # was numpy's traceback
        # Each bad statistic's flag is named with its value (the line listed every rule), and a nan ROPE, which no
        # comparison refuses, is no width.
        (["--a", "model-a", "--b", "model-b", "--bootstrap", "0"], "error: --bootstrap 0 must be ≥ 1.\n"),
        (["--a", "model-a", "--b", "model-b", "--alpha", "1.5"], "error: --alpha 1.5 must be in (0, 1).\n"),
        (["--a", "model-a", "--b", "model-b", "--rope", "nan"], "error: --rope nan must be a number ≥ 0.\n"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(lambda _, names=names: compare.main([str(tmp_path), *names]))
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and err.startswith("error:") and word in err, err
    # One real process, so that anything a library prints would show up before the JSON line.
    script = [sys.executable, str(REPO / "scripts" / "compare.py"), str(tmp_path), "--a", "model-a", "--b", "model-b"]
    done = subprocess.run([*script, *FAST, "--bootstrap", "100"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert REQUIRED <= out.keys() and set(out["per_dataset"]) == {"d1", "d2"}
    assert out["datasets_skipped"] == {"d3": "no runs of model-b"} and "skipped d3" in done.stdout
    keys = {"delta_mean", "delta_std", "ci_low", "ci_high", "aso_eps_min_a", "p_holm", "significant", "val_test_tau"}
    assert keys <= out["per_dataset"]["d1"].keys()


def test_seeds_needed_follows_the_paired_t_power():
    """Δ of half a seed-std needs 34 seeds at 80% power (Cohen's d = 0.5, two-sided α = 0.05); no Δ, no answer."""
    assert compare.seeds_needed(0.01, 0.02, 0.05) == 34
    assert compare.seeds_needed(0.0, 0.02, 0.05) is None and compare.seeds_needed(0.01, None, 0.05) is None


def test_no_more_seeds_are_advised_when_the_seeds_agree_and_the_test_set_is_too_small(tmp_path, capsys):
    """Three seeds with one Δ each (no seed noise) and a 20-row test set that cannot separate A from B: the advice
    names the test set, not "about 2 seeds"."""
    gold = balanced_gold(20)
    for seed in (1, 2, 3):
        write_run(tmp_path, "d1", "org/model-a", seed, gold, with_errors(gold, 2))
        write_run(tmp_path, "d1", "org/model-b", seed, gold, with_errors(gold, 3))
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "500", capsys=capsys)
    r = out["per_dataset"]["d1"]
    assert r["delta_std"] == 0 and r["winner"] is None and r["seeds_needed"] is None
    assert r["p_value"] is not None and not r["significant"]  # the bootstrap is what left Δ undecided
    assert any("more seeds would not settle it, more test rows would" in note for note in out["notes"])
    # Without predictions the bootstrap never ran: then the test split is not blamed.
    for path in tmp_path.rglob("predictions_test.jsonl"):
        path.unlink()
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "500", capsys=capsys)
    assert not any("more test rows would" in note for note in out["notes"])


def test_a_dataset_held_back_only_by_the_number_of_resamples_says_so(tmp_path, capsys):
    """Δ = ±0.3 on 100 rows lies beyond every one of 200 resamples, but 200 resamples cannot give a p below 2/201,
    which Holm over 6 datasets raises to 0.06 ≥ α: no dataset can be won whatever Δ is. The output names the
    --bootstrap that could (240), and does not blame the test split's size."""
    for d in range(6):
        gold = balanced_gold(100)
        a_errors, b_errors = (2, 32) if d < 3 else (32, 2)  # A far ahead on three datasets, B on the other three
        for seed in (1, 2, 3):
            write_run(tmp_path, f"d{d}", "org/model-a", seed, gold, with_errors(gold, a_errors + seed, offset=seed))
            write_run(tmp_path, f"d{d}", "org/model-b", seed, gold, with_errors(gold, b_errors + seed, offset=seed))
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    assert out["conclusion"] == "not distinguishable" and out["datasets_a_wins"] == out["datasets_b_wins"] == 0
    notes = "\n".join(out["notes"])
    assert "d0: A is ahead in all 200 bootstrap resamples, but 200 resamples cannot give a p below 0.00995" in notes
    assert "rerun with --bootstrap 240 or more" in notes
    assert "more test rows would" not in notes
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "240", capsys=capsys)
    assert out["datasets_a_wins"] == out["datasets_b_wins"] == 3 and "--bootstrap" not in "\n".join(out["notes"])


def test_all_with_two_models_reports_the_two_sided_wilcoxon_of_a_vs_b(tmp_path, capsys):
    """Two models on 6 datasets, one ahead on 4 and tied on 2: --all's Wilcoxon p is scipy's two-sided one, as A vs B
    reports it (autorank's is one-sided towards the model the data show ahead, half of it)."""
    for d, (a_errors, b_errors) in enumerate([(2, 4), (3, 3), (2, 6), (5, 5), (4, 8), (4, 6)]):
        gold = balanced_gold(60)
        for seed in (1, 2):
            write_run(tmp_path, f"d{d}", "org/model-a", seed, gold, with_errors(gold, a_errors, offset=seed))
            write_run(tmp_path, f"d{d}", "org/model-b", seed, gold, with_errors(gold, b_errors, offset=seed))
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    pair = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    x = [ranked["per_dataset"][d]["scores"]["model-a"] for d in ranked["datasets_compared"]]
    y = [ranked["per_dataset"][d]["scores"]["model-b"] for d in ranked["datasets_compared"]]
    assert ranked["omnibus"] == "wilcoxon" and pair["wilcoxon_p"] == pytest.approx(0.125)
    assert ranked["friedman_p"] == pytest.approx(stats.wilcoxon(x, y).pvalue) == pytest.approx(pair["wilcoxon_p"])
    assert "wilcoxon p = 0.125" in ranked["verdict"]


def test_a_run_whose_selection_score_is_not_finite_is_left_out(tmp_path, capsys):
    """Runs selected on validation loss, one of whose loss is nan: that run is left out with a warning naming it, as
    a run with a nan test score is, rather than the grid-point selection of report.py and compare.py crashing."""
    gold = balanced_gold(40)
    for seed in (1, 2, 3):
        for model, errors in (("org/model-a", 2), ("org/model-b", 6)):
            run = write_run(tmp_path, "d1", model, seed, gold, with_errors(gold, errors + seed, offset=seed))
            results = json.loads((run / "results.json").read_text())
            loss = float("nan") if (model, seed) == ("org/model-a", 2) else 0.3
            results |= {"metric": "loss", "validation": results["validation"] | {"loss": loss}}
            (run / "results.json").write_text(json.dumps(results))
    [row_a, _] = report.main([str(tmp_path), "--no_plots"])
    assert json.loads(row_a["seed_list"]) == [1, 3]
    assert (
        "model-a/default/seed2 left out: validation loss in its results.json is not a finite" in capsys.readouterr().err
    )
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "200", capsys=capsys)
    assert out["per_dataset"]["d1"]["seeds"] == [1, 3]


def test_models_with_the_same_seed_scores_in_another_order_tie(tmp_path, capsys):
    """x scores 1.0, 0.967, 0.933 on seeds 1-3 and y the same scores on seeds 3-1: one mean, whatever order a sum
    takes them in (np.mean's last bit differs here), so neither ranks first nor wins a dataset's test."""
    for dataset in ("d1", "d2"):
        gold = balanced_gold(60)
        for seed, (x_errors, y_errors) in zip((1, 2, 3), ((0, 4), (2, 2), (4, 0)), strict=True):
            write_run(tmp_path, dataset, "org/x", seed, gold, with_errors(gold, x_errors, offset=seed))
            write_run(tmp_path, dataset, "org/y", seed, gold, with_errors(gold, y_errors, offset=seed))
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert ranked["verdict"].startswith("x, y share the first rank (mean rank 1.50"), ranked["verdict"]
    assert ranked["per_dataset"]["d1"]["test_winner"] is None
    pair = run_compare(tmp_path, "--a", "x", "--b", "y", "--bootstrap", "200", capsys=capsys)
    assert pair["per_dataset"]["d1"]["a_mean"] == pair["per_dataset"]["d1"]["b_mean"]
    assert pair["per_dataset"]["d1"]["test_winner"] is None
    assert pair["per_dataset"]["d1"]["delta_mean"] == 0 and pair["datasets_a_ahead"] == pair["datasets_b_ahead"] == 0


def test_without_a_rope_equal_scores_favour_neither_model():
    """--rope 0 and A's per-dataset means equal to B's: the posterior has no side, so neither gets more than half
    (baycomp's draws then split on the last bit of a sum, 0.77 against 0.23 at seed 0)."""
    x = np.array([0.8, 0.9, 0.7])
    assert compare.signed_rank_probs(x, x.copy(), 0.0, 0) == (0.5, 0.0, 0.5)
    assert compare.signed_rank_probs(x, x.copy(), 0.01, 0) == (0.0, 1.0, 0.0)


# ---- what the table and the verdict call things ---------------------------------------------------------------------


def test_report_and_compare_name_a_dataset_as_the_plan_names_it(tmp_path, capsys):
    """A plan's `name: reviews` for a dataset whose folder is called "final": run_matrix.py records the name in each
    run's matrix.json, and the table and the verdict show it, not the path's last part. Another plan's "reviews" (other
    data) in the same folder stays apart; a dataset the plan gave no name keeps its short name."""
    import run_matrix

    cfg = {"datasets": [{"path": str(REPO / "sample_data"), "name": "reviews"}], "models": ["org/model-a"]}
    cfg |= {"seeds": [1], "output_dir": str(tmp_path / "plan")}
    [planned] = run_matrix.plan(cfg, [])
    planned.run_dir.mkdir(parents=True)
    run_matrix.begin(planned)
    assert json.loads((planned.run_dir / "matrix.json").read_text()) == {
        "variant": None,
        "grid": {},
        "dataset": "reviews",
    }
    gold = balanced_gold(40)
    for seed in (1, 2):
        for model, errors in (("org/model-a", 2), ("org/model-b", 6)):
            pred = with_errors(gold, errors, offset=seed)
            write_run(tmp_path / "one", "final", model, seed, gold, pred, name="reviews")
            write_run(tmp_path / "two", "final", model, seed, gold, pred, name="reviews")
            write_run(tmp_path / "two", "other/final", model, seed, gold, pred, name="reviews")
            write_run(tmp_path / "two", "plain", model, seed, gold, pred)
    assert [r["dataset"] for r in report.main([str(tmp_path / "one"), "--no_plots"])] == ["reviews", "reviews"]
    out = run_compare(tmp_path / "one", "--a", "model-a", "--b", "model-b", "--bootstrap", "100", capsys=capsys)
    assert list(out["per_dataset"]) == ["reviews"]
    assert "\n| reviews | 2 |" in (tmp_path / "one" / "compare_model-a_vs_model-b.md").read_text()
    datasets = sorted({r["dataset"] for r in report.main([str(tmp_path / "two"), "--no_plots"])})
    assert len(datasets) == 3 and datasets[0] == "plain", datasets
    assert all(d.startswith("reviews-") for d in datasets[1:]) and datasets[1] != datasets[2], datasets


def test_report_and_compare_name_a_model_as_the_plan_names_it(tmp_path, capsys):
    """A plan's `name: small` for the model at "org/checkpoint-1200": matrix.json records it, and the table and the
    verdict call the model "small" (compare's --a takes it), not the path's last part."""
    import run_matrix

    cfg = {"datasets": [str(REPO / "sample_data")], "models": [{"path": "org/checkpoint-1200", "name": "small"}]}
    cfg |= {"seeds": [1], "output_dir": str(tmp_path / "plan")}
    [planned] = run_matrix.plan(cfg, [])
    planned.run_dir.mkdir(parents=True)
    run_matrix.begin(planned)
    assert json.loads((planned.run_dir / "matrix.json").read_text()) == {"variant": None, "grid": {}, "model": "small"}
    gold = balanced_gold(40)
    for seed in (1, 2):
        write_run(tmp_path / "runs", "d1", "org/checkpoint-1200", seed, gold, gold, model_name="small")
        write_run(tmp_path / "runs", "d1", "org/checkpoint-900", seed, gold, with_errors(gold, 6, offset=seed))
    assert sorted(r["model"] for r in report.main([str(tmp_path / "runs"), "--no_plots"])) == [
        "checkpoint-900",
        "small",
    ]
    out = run_compare(tmp_path / "runs", "--a", "small", "--b", "checkpoint-900", "--bootstrap", "100", capsys=capsys)
    assert list(out["per_dataset"]) == ["d1"]
    # Two entries of one path, each with its name and flags ({path: org/bert, name: bert-slow, learning_rate: ...}):
    # each keeps its own name, whichever of their folders comes first.
    for seed in (1, 2):
        for name, lr, errors in (("bert-slow", 1e-5, 2), ("bert-fast", 5e-5, 6)):
            pred = with_errors(gold, errors, offset=seed)
            run = write_run(tmp_path / "two", "d1", "org/bert", seed, gold, pred, grid={"learning_rate": lr})
            (run / "matrix.json").write_text(json.dumps({"variant": None, "grid": {}, "model": name}))
    assert sorted(r["model"] for r in report.main([str(tmp_path / "two"), "--no_plots"])) == ["bert-fast", "bert-slow"]


def md_cells(line: str) -> list[str]:
    """A Markdown table line's cells, split at the '|' that are not escaped."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_a_bar_in_a_name_is_escaped_in_every_markdown_table(tmp_path, capsys):
    """A model "org/enc|v2" and a dataset "news|2024": their '|' would end a cell and shift every column after it."""
    gold = balanced_gold(40)
    for dataset in ("news|2024", "d2"):
        for seed in (1, 2):
            write_run(tmp_path, dataset, "org/enc|v2", seed, gold, with_errors(gold, 2, offset=seed))
            write_run(tmp_path, dataset, "org/base", seed, gold, with_errors(gold, 6, offset=seed))
    report.main([str(tmp_path), "--no_plots", "--baseline", "base"])
    run_compare(tmp_path, "--a", "enc", "--b", "base", "--bootstrap", "100", capsys=capsys)
    run_compare(tmp_path, "--all", capsys=capsys)
    files = ["results.md", "compare_enc_v2_vs_base.md", "compare_all.md"]
    for name in files:
        text = (tmp_path / name).read_text()
        assert "enc\\|v2" in text and "news\\|2024" in text, (name, text)
        tables: list[list[str]] = []
        for line in text.splitlines():
            if line.startswith("|"):
                tables[-1:] = [[*tables[-1], line]] if tables and tables[-1] else [[line]]
            elif tables and tables[-1]:
                tables.append([])
        for table in filter(None, tables):
            widths = {len(md_cells(line)) for line in table}
            assert len(widths) == 1, (name, table)


def test_a_run_with_results_but_no_config_is_named_not_skipped_silently(tmp_path, capsys):
    """results.json without config.json (a config.json deleted, a folder copied in part): the run cannot be placed in
    a row, so it is left out, and one warning line names the folder and what it lacks."""
    gold = balanced_gold(40)
    write_run(tmp_path, "d1", "org/model-a", 1, gold, gold)
    lost = write_run(tmp_path, "d1", "org/model-a", 2, gold, gold)
    (lost / "config.json").unlink()
    rows = report.main([str(tmp_path), "--no_plots"])
    assert rows[0]["seeds"] == 1
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {lost} left out: it has a results.json but no config.json, so its dataset, model and settings are "
        "unknown; restore its config.json or delete the folder."
    ]


def test_a_verdict_on_one_seed_says_it_rests_on_one_seed(tmp_path, capsys):
    """Every model ran seed 1 only: the ranking and the A-vs-B verdict say they rest on one seed (the seed noise is
    unmeasured), not only a note further up."""
    gold = balanced_gold(40)
    for dataset in ("d1", "d2"):
        write_run(tmp_path, dataset, "org/model-a", 1, gold, with_errors(gold, 2))
        write_run(tmp_path, dataset, "org/model-b", 1, gold, with_errors(gold, 6))
    write_run(tmp_path, "d3", "org/model-a", 1, gold, with_errors(gold, 2))
    write_run(tmp_path, "d3", "org/model-b", 1, gold, with_errors(gold, 6))
    write_run(tmp_path, "d3", "org/model-a", 2, gold, with_errors(gold, 4))
    write_run(tmp_path, "d3", "org/model-b", 2, gold, with_errors(gold, 8))
    caution = "; CAUTION: on 2 of 3 datasets (d1, d2) the scores compared rest on one seed per model"
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert caution in ranked["verdict"], ranked["verdict"]
    pair = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "100", capsys=capsys)
    assert caution in pair["verdict"], pair["verdict"]
    assert compare.one_seed_caution({"d1": {"seeds": [1]}}).startswith("; CAUTION: on 1 of 1 dataset (d1) the scores")


def test_disjoint_seeds_name_each_sides_seeds(tmp_path, capsys):
    """model-a ran seeds 1 and 2 on d1, model-b seeds 3 and 4: nothing pairs, and the reason names both seed sets."""
    gold = balanced_gold(40)
    for seed in (1, 2):
        write_run(tmp_path, "d1", "org/model-a", seed, gold, gold)
        write_run(tmp_path, "d1", "org/model-b", seed + 2, gold, with_errors(gold, 4))
    pair = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", capsys=capsys)
    assert pair["datasets_skipped"] == {
        "d1": "no seed with a test macro_f1 on both sides (model-a: seeds 1, 2; model-b: seeds 3, 4)"
    }
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    assert ranked["datasets_skipped"] == {
        "d1": "no seed with a test macro_f1 for every model (model-a: seeds 1, 2; model-b: seeds 3, 4)"
    }


def test_grid_points_whose_means_differ_only_by_rounding_tie_and_the_tie_rule_chooses(tmp_path, capsys):
    """lr 1e-05 scores 0.8 and 0.9 on validation, lr 0.001 0.85 twice: one mean, 0.85, whose float differs in its last
    bit (0.8500000000000001 against 0.85). That bit must not choose: the points tie, and the tie goes to the point
    first in sorted order (learning_rate=0.001), with a margin of 0, as report.py documents."""
    gold = balanced_gold(40)
    for seed, (low, high) in enumerate(((0.8, 0.85), (0.9, 0.85)), 1):
        write_run(tmp_path, "d1", "org/enc", seed, gold, gold, val=low, grid={"learning_rate": 1e-5})
        write_run(tmp_path, "d1", "org/enc", seed, gold, gold, val=high, grid={"learning_rate": 1e-3})
    runs = report.load_runs(tmp_path)
    [best] = report.select_grid_points(runs).values()
    assert best["grid"] == {"learning_rate": 1e-3} and best["margin"] == 0


def test_test_means_that_tie_by_rounding_put_neither_model_ahead(tmp_path, capsys):
    """x scores 0.8 and 0.9 on test, y 0.85 twice: one mean, whose float differs in its last bit. Neither model is
    counted ahead on the dataset ("x > y on 1/1 datasets" was a rounding error), and Δ is 0."""
    gold = balanced_gold(40)
    for seed, (x_test, y_test) in enumerate(((0.8, 0.85), (0.9, 0.85)), 1):
        for model, score in (("org/x", x_test), ("org/y", y_test)):
            run_dir = write_run(tmp_path, "d1", model, seed, gold, gold)
            results = json.loads((run_dir / "results.json").read_text())
            results["test"]["macro_f1"] = score
            (run_dir / "results.json").write_text(json.dumps(results))
    pair = run_compare(tmp_path, "--a", "x", "--b", "y", "--bootstrap", "100", capsys=capsys)
    assert pair["per_dataset"]["d1"]["delta_mean"] == 0
    assert (pair["datasets_a_ahead"], pair["datasets_b_ahead"]) == (0, 0)


def test_a_validation_tie_by_rounding_names_no_validation_winner(tmp_path, capsys):
    """x scores 0.8 and 0.9 on validation, y 0.85 twice: one mean, whose float differs in its last bit. No validation
    winner is named, so none is flagged for losing on test (y is ahead there), in A vs B and in --all alike."""
    gold = balanced_gold(40)
    for dataset in ("d1", "d2"):
        for seed, (x_val, y_val) in enumerate(((0.8, 0.85), (0.9, 0.85)), 1):
            write_run(tmp_path, dataset, "org/x", seed, gold, with_errors(gold, 4, offset=seed), val=x_val)
            write_run(tmp_path, dataset, "org/y", seed, gold, with_errors(gold, 2, offset=seed), val=y_val)
    pair = run_compare(tmp_path, "--a", "x", "--b", "y", "--bootstrap", "100", capsys=capsys)
    d1 = pair["per_dataset"]["d1"]
    assert (d1["val_winner"], d1["test_winner"], d1["val_winner_loses_on_test"]) == (None, "B", False)
    ranked = run_compare(tmp_path, "--all", capsys=capsys)
    d1 = ranked["per_dataset"]["d1"]
    assert (d1["val_winner"], d1["test_winner"], d1["val_winner_loses_on_test"]) == (None, "y", False)


def test_markdown_characters_in_names_are_escaped_in_the_heading_and_text(tmp_path, capsys):
    """A model "org/`enc`*v2*" and a dataset "_news#1_": their backticks, '*', '_' and '#' would turn the A-vs-B
    heading, its text and its tables into code, italics or a heading; escaped, they read as the names."""
    gold = balanced_gold(40)
    for dataset in ("_news#1_", "d2"):
        for seed in (1, 2):
            write_run(tmp_path, dataset, "org/`enc`*v2*", seed, gold, with_errors(gold, 2, offset=seed))
            write_run(tmp_path, dataset, "org/base", seed, gold, with_errors(gold, 6, offset=seed))
    run_compare(tmp_path, "--a", "enc", "--b", "base", "--bootstrap", "100", capsys=capsys)
    lines = (tmp_path / "compare_enc_v2_vs_base.md").read_text().splitlines()
    a = "\\`enc\\`\\*v2\\*"
    assert lines[0] == f"# {a} vs base"
    assert f"(A = {a}, B = base)" in lines[4], lines
    assert lines[2].startswith(f"**Verdict:** {a} > base on 2/2 datasets"), lines
    assert sum(line.startswith("| \\_news\\#1\\_ |") for line in lines) == 2, lines
    assert report.md("label_coarse a_b") == "label_coarse a_b"  # within a word '_' styles nothing: left as is
