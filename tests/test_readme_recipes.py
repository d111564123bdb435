"""The README's recipes for extending the code ("Adding a head, a pooling or a metric"), applied as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from torch import nn

import evaluate
import train
from conftest import REPO, tiny_args
from model import POOLERS, EncoderClassifier


class MeanSqrtLenPooling(nn.Module):
    """The README's example pooling, verbatim."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden, mask):  # (batch, seq, hidden), (batch, seq) -> (batch, hidden)
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0).sqrt()


def test_a_pooling_is_a_class_and_a_registry_line(tiny_bert, tmp_path, monkeypatch):
    """README: a new pooling is a module with output_dim and forward(hidden, mask); POOLERS["mean_sqrt_len"] = ...
    and --pooling mean_sqrt_len selects it, saved in best_model/config.json and found again on reload."""
    monkeypatch.setitem(POOLERS, "mean_sqrt_len", MeanSqrtLenPooling)
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, None, "--num_train_epochs", "1", "--pooling", "mean_sqrt_len"))
    assert json.loads((out / "best_model" / "config.json").read_text())["pooling"] == "mean_sqrt_len"
    assert isinstance(EncoderClassifier.from_pretrained(out / "best_model").pooler, MeanSqrtLenPooling)
    again = evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert again["macro_f1"] == results["test"]["macro_f1"]


def test_a_metric_that_selects_the_model_is_two_edits(tiny_bert, tmp_path):
    """README: a metric that may select the best model is its name and direction in config.py's METRICS and its
    computation in the single-label metrics() of evaluate.py; --metric_for_best_model then takes it. Applied to a
    copy of the code, as a user edits it, and run as a user runs it."""
    code = tmp_path / "code"
    code.mkdir()
    for name in ("train.py", "evaluate.py", "model.py", "data.py", "config.py", "utils.py"):
        shutil.copy(REPO / name, code / name)
    config = (code / "config.py").read_text()
    config, edits = re.subn(r"METRICS = \{\n", 'METRICS = {\n    "mcc": "max",\n', config, count=1)
    assert edits == 1
    (code / "config.py").write_text(config)
    single = "        return class_metrics(labels, logits, label_names, losses=self.losses(labels, logits))\n"
    source = (code / "evaluate.py").read_text()
    assert source.count(single) == 1
    computed = (
        "        from sklearn.metrics import matthews_corrcoef\n\n"
        "        scores = class_metrics(labels, logits, label_names, losses=self.losses(labels, logits))\n"
        '        scores["mcc"] = float(matthews_corrcoef(labels, logits.argmax(-1)))\n'
        "        return scores\n"
    )
    (code / "evaluate.py").write_text(source.replace(single, computed))
    out = tmp_path / "run"
    args = tiny_args(tiny_bert, out, REPO / "sample_data", "--num_train_epochs", "1", "--metric_for_best_model", "mcc")
    proc = subprocess.run(
        [sys.executable, str(code / "train.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "mcc" and -1 <= results["validation"]["mcc"] <= 1
    best = json.loads((out / "best_model" / "best.json").read_text())
    assert best["step"] == results["best_step"]
