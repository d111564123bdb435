"""scripts/compare.py's flags as the README states them, on fake run folders (no training)."""

from __future__ import annotations

import pytest
from test_compare import balanced_gold, run_compare, with_errors, write_run


def write_pair(root, datasets: int, seeds=(1, 2, 3), rows: int = 60) -> None:
    """A right on every test row, B wrong on a few (more on later datasets), per dataset and seed."""
    for d in range(datasets):
        gold = balanced_gold(rows)
        for seed in seeds:
            write_run(root, f"d{d}", "org/model-a", seed, gold, gold)
            write_run(root, f"d{d}", "org/model-b", seed, gold, with_errors(gold, 2 + 2 * d + seed, offset=seed))


@pytest.mark.parametrize("datasets", [5, 6])
def test_wilcoxon_runs_from_six_datasets_on(tmp_path, capsys, datasets):
    """README: Wilcoxon's signed-rank test across datasets from 6 datasets on; below, the output says why not."""
    write_pair(tmp_path, datasets, seeds=(1, 2))
    out = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "100", capsys=capsys)
    if datasets == 6:
        assert 0 < out["wilcoxon_p"] < 0.05  # A ahead on all six: the exact two-sided p is 2 / 2^6
    else:
        assert out["wilcoxon_p"] is None
        assert "Wilcoxon across datasets needs ≥ 6 datasets, found 5" in out["notes"]


def test_rope_defaults_to_one_hundredth_and_is_the_flags_value(tmp_path, capsys):
    """README: a region of practical equivalence --rope (default ±0.01), named in the verdict; a wider one holds more
    of the posterior."""
    write_pair(tmp_path, 3, seeds=(1, 2))
    default = run_compare(tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "100", capsys=capsys)
    assert default["rope"] == 0.01 and "P(equivalent within ±0.01)" in default["verdict"]
    wide = run_compare(
        tmp_path, "--a", "model-a", "--b", "model-b", "--bootstrap", "100", "--rope", "0.5", capsys=capsys
    )
    assert wide["rope"] == 0.5 and "P(equivalent within ±0.5)" in wide["verdict"]
    assert wide["p_equivalent"] > default["p_equivalent"]


def test_metric_accuracy_compares_test_accuracy_and_output_dir_holds_the_files(tmp_path, capsys):
    """README: the score is the test --metric (macro_f1 by default, or accuracy); the .md, .csv and .png go to
    --output_dir (default: the matrix folder)."""
    root, elsewhere = tmp_path / "matrix", tmp_path / "reports"
    gold = balanced_gold(40)
    for seed in (1, 2):
        # B always predicts the first class: accuracy 0.5, macro-F1 1/3. A is right everywhere.
        write_run(root, "d0", "org/model-a", seed, gold, gold)
        write_run(root, "d0", "org/model-b", seed, gold, [gold[0]] * len(gold))
    args = ("--a", "model-a", "--b", "model-b", "--bootstrap", "100", "--output_dir", str(elsewhere))
    f1 = run_compare(root, *args, capsys=capsys)
    accuracy = run_compare(root, *args, "--metric", "accuracy", capsys=capsys)
    assert f1["metric"] == "test macro_f1" and f1["per_dataset"]["d0"]["delta_mean"] == pytest.approx(2 / 3)
    assert accuracy["metric"] == "test accuracy" and accuracy["per_dataset"]["d0"]["delta_mean"] == pytest.approx(0.5)
    for suffix in (".md", ".csv", ".png"):
        assert (elsewhere / f"compare_model-a_vs_model-b{suffix}").is_file()
        assert not (root / f"compare_model-a_vs_model-b{suffix}").exists()
