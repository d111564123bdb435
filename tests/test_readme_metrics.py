"""The metrics as the README's Evaluating and Problem types sections define them, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from evaluate import compute_metrics
from model import EncoderClassifierConfig


def test_single_label_macro_averages_run_over_the_classes_present():
    """README: macro averages run over the classes present in the gold labels or the predictions (scikit-learn's
    default): a class neither in the gold labels nor predicted is no zero in the average."""
    labels = np.array([0, 0, 1, 1])
    logits = np.log(np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]))
    m = compute_metrics(labels, logits, ["a", "b", "c"])  # preds 0, 1, 1, 1; "c" is nowhere
    f1_a, f1_b = 2 * 1 * 0.5 / 1.5, 2 * (2 / 3) * 1 / (5 / 3)
    assert m["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert m["macro_recall"] == pytest.approx((0.5 + 1) / 2)


def test_multi_label_accuracy_is_subset_accuracy_and_macro_runs_over_every_label():
    """README: for multi-label, `accuracy` is subset accuracy (every label of a row right); micro/macro F1 over
    labels, at 0.5 before thresholds are tuned. The macro average runs over every label (scikit-learn's default for
    label sets): a label neither gold nor predicted counts as F1 0."""
    config = EncoderClassifierConfig(problem_type="multi_label_classification")
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0]])
    logits = np.array([[3.0, -3, -3], [-3, 3, -3], [3, -3, -3], [-3, -3, -3]])  # rows 3 and 4 miss a label
    m = compute_metrics(labels, logits, ["a", "b", "c"], config)
    assert m["accuracy"] == pytest.approx(0.5)
    # a: 2 of 3 found, no false positive (F1 0.8); b: 1 of 2 (F1 2/3); c: nowhere (F1 0).
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert m["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 2))  # 3 found, 0 false, 2 missed
