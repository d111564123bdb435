"""Variants and hyper-parameter grids in the matrix, per-example predictions of every run, and grid selection on
validation only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from test_scripts import run_script

from conftest import REPO, SHARED_DATA

sys.path.insert(0, str(REPO / "scripts"))
import report


@pytest.mark.slow
def test_matrix_with_variants_and_a_grid_writes_predictions_and_selects_on_validation(tiny_bert, tmp_path):
    out = tmp_path / "matrix"
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
datasets: [{SHARED_DATA / "emotion"}]
models: [{tiny_bert}]
seeds: [1]
variants:
  linear-head: {{head: linear}}
  mlp-head: {{head: mlp}}
grid: {{learning_rate: [0.001, 0.0001]}}
train_args: {{max_train_samples: 48, max_eval_samples: 24, num_train_epochs: 1, max_seq_length: 24, per_device_train_batch_size: 16}}
"""
    )
    first = run_script("run_matrix.py", "--config", config, "--output_dir", out)
    assert "4 trained, 0 skipped, 0 failed of 4 runs" in first
    model = tiny_bert.name
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("results.json"))
    assert runs == [
        f"emotion/{model}/{variant},learning_rate={lr}/seed{s}"
        for variant in ("linear-head", "mlp-head")
        for lr in ("0.0001", "0.001")
        for s in (1,)
    ]
    run = out / "emotion" / model / "mlp-head,learning_rate=0.001" / "seed1"
    assert json.loads((run / "matrix.json").read_text()) == {"variant": "mlp-head", "grid": {"learning_rate": 0.001}}
    assert json.loads((run / "config.json").read_text())["user_config"]["head"] == "mlp"
    # Every run leaves per-example predictions of its reloaded best model, scored as results.json says.
    rows = [json.loads(line) for line in (run / "predictions_test.jsonl").read_text().splitlines()]
    results = json.loads((run / "results.json").read_text())
    assert len(rows) == results["test"]["num_samples"] == 24
    assert sum(r["gold"] == r["pred"] for r in rows) / len(rows) == results["test"]["accuracy"]
    assert (run / "predictions_validation.jsonl").is_file()

    table = run_script("report.py", out)
    assert f"{model} [linear-head]" in table and f"{model} [mlp-head]" in table
    assert "selected on validation only" in table
    chosen = report.select_grid_points(report.load_runs(out))
    assert set(chosen) == {("emotion", f"{model} [linear-head]"), ("emotion", f"{model} [mlp-head]")}

    again = run_script("run_matrix.py", "--config", config, "--output_dir", out)
    assert "0 trained, 4 skipped, 0 failed of 4 runs" in again


def fake_run(root: Path, point: dict, seed: int, val: float, test: float) -> None:
    """A finished run folder with the files report.py reads."""
    run = root / "ds" / "m" / ",".join(f"{k}={v}" for k, v in point.items()) / f"seed{seed}"
    run.mkdir(parents=True)
    user = {"dataset": "/data/ds", "model_name_or_path": "/models/m", "seed": seed, **point}
    (run / "config.json").write_text(json.dumps({"user_config": user, "resolved": {"dataset": "/data/ds"}}))
    scores = {"validation": {"macro_f1": val, "accuracy": val}, "test": {"macro_f1": test, "accuracy": test}}
    (run / "results.json").write_text(json.dumps({"metric": "macro_f1", "best_step": 1, **scores}))
    (run / "matrix.json").write_text(json.dumps({"variant": None, "grid": point}))


def test_grid_selection_never_reads_test_scores(tmp_path):
    for lr, val, test in [(1e-3, 0.80, 0.50), (1e-4, 0.70, 0.90)]:
        for seed in (1, 2):
            fake_run(tmp_path / "a", {"learning_rate": lr}, seed, val + seed / 100, test)
            # The same runs with test scores poisoned the other way round.
            fake_run(tmp_path / "b", {"learning_rate": lr}, seed, val + seed / 100, 1.0 - test)
    picks = [report.select_grid_points(report.load_runs(tmp_path / side))[("ds", "m")] for side in ("a", "b")]
    assert [p["grid"] for p in picks] == [{"learning_rate": 1e-3}] * 2
    assert picks[0]["margin"] == picks[1]["margin"] == 0.8 + 0.015 - (0.7 + 0.015)
    rows = report.aggregate(report.load_runs(tmp_path / "a"), None)
    winners = [r for r in rows if r.get("winner")]
    assert len(winners) == 1 and json.loads(winners[0]["grid"]) == {"learning_rate": 1e-3}


def test_grid_points_selected_by_different_metrics_are_not_ranked_against_each_other(tmp_path, capsys):
    """A grid over --metric_for_best_model: one point's validation loss and another's macro-F1 are no one scale, so
    no point is chosen by comparing them, and the table says why."""
    for metric, score in (("loss", 0.9), ("macro_f1", 0.6)):
        run = tmp_path / "ds" / "m" / metric / "seed1"
        run.mkdir(parents=True)
        user = {"dataset": "/data/ds", "model_name_or_path": "/models/m", "seed": 1, "metric_for_best_model": metric}
        (run / "config.json").write_text(json.dumps({"user_config": user, "resolved": {"dataset": "/data/ds"}}))
        scores = {"macro_f1": 0.6, "accuracy": 0.6, "loss": score}
        (run / "results.json").write_text(json.dumps({"metric": metric, "best_step": 1, "validation": scores}))
        (run / "matrix.json").write_text(json.dumps({"variant": None, "grid": {"metric_for_best_model": metric}}))
    runs = report.load_runs(tmp_path)
    assert report.select_grid_points(runs) == {}
    rows = report.aggregate(runs, None)
    assert not any(r["selected"] or r.get("winner") for r in rows)
    [warning] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert "ds / m:" in warning and "different metrics (loss, macro_f1)" in warning, warning
