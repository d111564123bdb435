"""The packaged all-MiniLM-L6-v2 on a slice of the real emotion data: train, then reload in a fresh process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import evaluate
import train
from conftest import REPO


@pytest.mark.slow
def test_minilm_emotion_reload_parity_without_backbone(minilm_path, emotion, tmp_path):
    # A private copy of the backbone, deleted before evaluation: best_model/ must need nothing from it.
    backbone = tmp_path / "backbone"
    shutil.copytree(minilm_path, backbone)
    out = tmp_path / "run"
    results = train.main(
        [
            "--dataset",
            str(emotion),
            "--model_name_or_path",
            str(backbone),
            "--output_dir",
            str(out),
            "--runs_root",
            str(tmp_path / "runs"),
            "--max_train_samples",
            "192",
            "--max_eval_samples",
            "96",
            "--num_train_epochs",
            "3",
            "--max_seq_length",
            "64",
            "--learning_rate",
            "5e-4",
            "--per_device_train_batch_size",
            "16",
        ]
    )
    shutil.rmtree(backbone)
    assert results["validation"]["num_samples"] == 96 and results["test"]["num_samples"] == 96
    # 36 steps on 192 rows of 6 classes: always predicting the majority class would give macro-F1 0.11.
    assert results["validation"]["macro_f1"] > 0.3

    # The validation score recorded at the best step, reproduced by a fresh process; the test split in this one (the
    # README's quick start test reloads a MiniLM run's test split in a fresh process).
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "--split", "validation", "--run_dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    scored = {"validation": json.loads(proc.stdout.strip().splitlines()[-1])}
    scored["test"] = evaluate.main(["--split", "test", "--run_dir", str(out)])
    for split, metrics in scored.items():
        assert metrics["num_samples"] == 96
        assert metrics["macro_f1"] == results[split]["macro_f1"]
        assert metrics["loss"] == pytest.approx(results[split]["loss"], abs=1e-9)
    assert (out / "eval_test.json").is_file() and (out / "confusion_test.png").is_file()
