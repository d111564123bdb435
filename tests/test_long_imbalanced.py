"""Long documents (--long_text windows) and imbalanced labels (class weights, pos_weight, focal loss, smoothing)."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import evaluate
import train
from config import TrainConfig
from conftest import REPO, SHARED_DATA, make_tiny_model, tiny_args, train_on_two_processes, write_csv
from data import Windowing, balanced_weights, encode_windows, load_splits, tokenize_splits
from model import EncoderClassifier, EncoderClassifierConfig, class_loss, hierarchical_loss, multi_label_loss
from utils import UsageError

FILLER = "the of and in a on at by for from with it is as an our her my new last first long more most over".split()
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def filler(n):
    """``n`` filler words, each one token of the tiny models' vocabulary."""
    return " ".join(FILLER[i % len(FILLER)] for i in range(n))


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def late_evidence_rows(n, seed):
    """Documents of 45-60 filler words whose label is told only by words at their very end."""
    rng = random.Random(seed)
    keys = {"sports": "goalkeeper penalty referee", "weather": "rain forecast drizzle"}
    rows = []
    for i in range(n):
        label = ["sports", "weather"][i % 2]
        words = [rng.choice(FILLER) for _ in range(rng.randint(45, 60))]
        words += keys[label].split() * 2 + [rng.choice(FILLER) for _ in range(3)]
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def seeded_bert(tmp_path_factory):
    """A tiny random BERT with fixed weights: the learning tests below do not depend on the session's random draw."""
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        return make_tiny_model(tmp_path_factory.mktemp("seeded_bert"), "bert")
    finally:
        torch.random.set_rng_state(state)


@pytest.fixture(scope="module")
def late_evidence(tmp_path_factory):
    """A long-document task: 160 train / 40 validation / 40 test documents of 50-70 tokens."""
    folder = tmp_path_factory.mktemp("late_evidence")
    for split, n, seed in (("train", 160, 1), ("validation", 40, 2), ("test", 40, 3)):
        write_jsonl(folder / f"{split}.jsonl", late_evidence_rows(n, seed))
    return folder


def imbalanced_rows(n_common, n_rare, seed):
    """95/5-style rows: every rare row says "cloud", and so do 10% of the common ones (the rest say "sunny"), so
    P(rare | cloud) is about 1/3 in train: unweighted, the best guess is always "common"."""
    rng = random.Random(seed)
    rows = []
    for label, n in (("common", n_common), ("rare", n_rare)):
        for i in range(n):
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
            cue = "cloud" if label == "rare" or i < round(0.1 * n) else "sunny"
            words.insert(rng.randrange(len(words) + 1), cue)
            rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """380 common / 20 rare training rows; validation and test 95 / 20."""
    folder = tmp_path_factory.mktemp("imbalanced")
    for split, a, b, seed in (("train", 380, 20, 1), ("validation", 95, 20, 2), ("test", 95, 20, 3)):
        write_jsonl(folder / f"{split}.jsonl", imbalanced_rows(a, b, seed))
    return folder


def cli(script, *args, cwd):
    """Run train.py or evaluate.py as a user does; the parsed last stdout line (evaluate.py's metrics JSON)."""
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)], capture_output=True, text=True, env=ENV, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- losses against hand computations ------------------------------------------------------------------------------


def loss_config(**settings):
    """A model config with only loss settings (defaults for the rest)."""
    return EncoderClassifierConfig(**settings)


def test_weighted_smoothed_and_focal_losses_equal_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
    labels = torch.tensor([0, 1, 2])
    weights = [0.5, 2.0, 4.0]
    p = torch.softmax(logits.double(), dim=-1).numpy()
    log_p = np.log(p)
    rows = np.arange(3)
    ce = -log_p[rows, labels.numpy()]

    # Class weights: the plain mean of w[gold] * CE (each row keeps its weight whatever its batch holds).
    weighted = class_loss(logits, labels, loss_config(class_weights=[weights]))
    assert weighted.numpy() == pytest.approx(np.array(weights)[labels.numpy()] * ce, rel=1e-6)
    assert weighted.mean().item() == pytest.approx(float(np.mean([0.5 * ce[0], 2.0 * ce[1], 4.0 * ce[2]])), rel=1e-6)

    # Label smoothing eps: (1 - eps) * CE + eps * mean over classes of -log p.
    eps = 0.1
    smoothed = class_loss(logits, labels, loss_config(label_smoothing=eps)).numpy()
    assert smoothed == pytest.approx((1 - eps) * ce + eps * (-log_p).mean(axis=1), rel=1e-6)

    # Focal: (1 - p_gold)^gamma * CE, times the class weight.
    gamma = 2.0
    focal = class_loss(logits, labels, loss_config(loss="focal", focal_gamma=gamma, class_weights=[weights])).numpy()
    p_gold = p[rows, labels.numpy()]
    assert focal == pytest.approx(np.array(weights)[labels.numpy()] * (1 - p_gold) ** gamma * ce, rel=1e-6)
    # gamma 0 is cross-entropy.
    assert class_loss(logits, labels, loss_config(loss="focal", focal_gamma=0.0)).numpy() == pytest.approx(ce)


def test_multi_label_and_hierarchical_losses_equal_a_hand_computation():
    logits = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = 1 / (1 + np.exp(-logits.double().numpy()))
    y = labels.numpy()
    pos_weight, eps = [3.0, 0.5], 0.2
    t = y * (1 - eps) + eps / 2
    bce = -(np.array(pos_weight) * t * np.log(s) + (1 - t) * np.log(1 - s))
    config = loss_config(pos_weight=pos_weight, label_smoothing=eps)
    assert multi_label_loss([logits], labels, config).numpy() == pytest.approx(bce.mean(axis=1), rel=1e-6)
    p_true = s * y + (1 - s) * (1 - y)
    focal = loss_config(pos_weight=pos_weight, label_smoothing=eps, loss="focal", focal_gamma=1.5)
    expected = ((1 - p_true) ** 1.5 * bce).mean(axis=1)
    assert multi_label_loss([logits], labels, focal).numpy() == pytest.approx(expected, rel=1e-6)

    # Hierarchy: per row, the level weights times each level's class-weighted cross-entropy.
    coarse, fine = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    levels = torch.tensor([[0, 1], [1, 0]])
    config = loss_config(levels=[{}, {}], level_loss_weights=[0.5, 1.0], class_weights=[[1.0, 3.0], [2.0, 1.0, 1.0]])
    ce_coarse = torch.nn.functional.cross_entropy(coarse, levels[:, 0], reduction="none").numpy()
    ce_fine = torch.nn.functional.cross_entropy(fine, levels[:, 1], reduction="none").numpy()
    expected = 0.5 * np.array([1.0, 3.0]) * ce_coarse + np.array([1.0, 2.0]) * ce_fine
    assert hierarchical_loss([coarse, fine], levels, config).numpy() == pytest.approx(expected, rel=1e-6)


def test_balanced_weights_are_scikit_learns_inverse_frequency():
    # n_rows / (n_classes * count) over the classes present: 8 / (2 * 6), 8 / (2 * 2); class 2 never occurs -> 1.
    assert balanced_weights([0, 0, 0, 1, 0, 0, 1, 0], 3) == pytest.approx([8 / 12, 8 / 4, 1.0])


# ---- windows: tokenization and pooling -----------------------------------------------------------------------------


def test_windows_cover_every_token_and_pairs_keep_the_first_text(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    words = filler(40).split()
    encoded, rows = encode_windows(tokenizer, [" ".join(words), "the end"], None, 16, 4)
    # 40 tokens, 14 per window, each window repeating the last 4 of the one before: 0-13, 10-23, 20-33, 30-39.
    assert rows == [0, 0, 0, 0, 1]
    texts = [tokenizer.convert_ids_to_tokens(ids) for ids in encoded["input_ids"]]
    assert all(
        len(ids) <= 16 and t[0] == "[CLS]" and t[-1] == "[SEP]"
        for ids, t in zip(encoded["input_ids"], texts, strict=True)
    )
    assert texts[0][1:-1] == words[:14] and texts[1][1:-1] == words[10:24] and texts[3][1:-1] == words[30:]

    # Pairs: the second text is windowed, the first repeated whole; a first text that leaves no more than the
    # stride for the second is truncated as --long_text truncate does (one window).
    question = "the new last"
    encoded, rows = encode_windows(tokenizer, [question, " ".join(words[:12])], [" ".join(words)] * 2, 16, 4)
    assert rows.count(0) > 1 and rows.count(1) == 1
    for ids, row in zip(encoded["input_ids"], rows, strict=True):
        tokens = tokenizer.convert_ids_to_tokens(ids)
        if row == 0:
            assert tokens[: tokens.index("[SEP]")] == ["[CLS]", "the", "new", "last"]
    assert len(encoded["input_ids"][-1]) == 16


def test_window_rows_carry_their_document_and_the_limit_is_for_training_only(tiny_bert, late_evidence):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    data = load_splits(TrainConfig(dataset=str(late_evidence)))
    plain = tokenize_splits(data.splits, tokenizer, 32)
    windowed = tokenize_splits(data.splits, tokenizer, 32, Windowing(stride=8))
    limited = tokenize_splits(data.splits, tokenizer, 32, Windowing(stride=8, max_train_windows=2))
    assert len(plain["train"]) == 160 and len(windowed["train"]) > 2 * 160  # 50-70 tokens: 3 windows of 30
    assert plain["train"].cache_files[0]["filename"] != windowed["train"].cache_files[0]["filename"]
    train_rows = windowed["train"]
    assert sorted(set(train_rows["idx"])) == list(range(160))
    # Each window repeats its document's label; positions count 0, 1, ... within the document.
    labels = dict(enumerate(data.splits["train"]["label"]))
    assert all(labels[i] == y for i, y in zip(train_rows["idx"], train_rows["label"], strict=True))
    assert max(limited["train"]["window"]) == 1 and len(limited["validation"]) == len(windowed["validation"])


class FakeAccelerator:
    """Gathers like two processes whose last round was padded with repeated rows (what even_batches does)."""

    def __init__(self, pooling):
        self.model = SimpleNamespace(config=SimpleNamespace(window_pooling=pooling))

    def gather_for_metrics(self, tensors):
        return tensors

    def unwrap_model(self, model):
        return self.model


class FixedLogits(torch.nn.Module):
    """A model whose logits are handed in with the batch."""

    def forward(self, input_ids, logits):
        return SimpleNamespace(logits=logits, level_logits=None)


@pytest.mark.parametrize(
    "pooling, expected",
    [
        ("mean", [[2.0, 0.0], [0.0, 1.0]]),
        ("max", [[3.0, 0.0], [0.0, 1.0]]),
        ("first", [[1.0, 0.0], [0.0, 1.0]]),
    ],
)
def test_predict_pools_windows_per_document_counting_each_window_once(pooling, expected):
    # Document 7 has windows 0, 1, 2 (logits 1, 3, 2 on label 0); document 3 one window. Batches come length-sorted
    # and sharded, with the last round padded by a repeated window (doc 7, window 1): it must count once.
    batches = [
        {"idx": [7, 3], "window": [1, 0], "labels": [0, 1], "logits": [[3.0, 0.0], [0.0, 1.0]]},
        {"idx": [7, 7], "window": [2, 0], "labels": [0, 0], "logits": [[2.0, 0.0], [1.0, 0.0]]},
        {"idx": [7], "window": [1], "labels": [0], "logits": [[3.0, 0.0]]},  # the padding repeat
    ]
    loader = [
        {k: torch.tensor(v) for k, v in b.items()} | {"input_ids": torch.zeros(len(b["idx"]), 1)} for b in batches
    ]
    out = evaluate.predict(FixedLogits(), loader, FakeAccelerator(pooling))
    assert out["idx"].tolist() == [3, 7] and out["labels"].tolist() == [1, 0] and out["windows"].tolist() == [1, 3]
    assert out["logits"][::-1].tolist() == expected


# ---- bad input: one line, before any model is built ----------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--loss", "focal", "--teacher_column", "llm"], "--loss focal does not combine with distillation"),
        (["--window_stride", "4"], "--window_stride only applies to --long_text windows"),
        (["--long_text", "windows", "--window_stride", "30"], "--window_stride 30 leaves windows no room to advance"),
        (["--long_text", "windows", "--window_pooling", "median"], "--window_pooling 'median' is unknown"),
        (["--pos_weight", "balanced"], "--pos_weight is for multi-label data"),
        (["--class_weights", "nowhere.json"], "--class_weights nowhere.json: no such file"),
        (["--class_weights", "WEIGHTS"], "names labels that the data does not have: neutral"),
        (["--label_smoothing", "1.0"], "--label_smoothing must be in"),
        # Settings that only another flag switches on: without it they were ignored without a word.
        (["--window_pooling", "max"], "--window_pooling only applies to --long_text windows"),
        (["--focal_gamma", "5"], "--focal_gamma only applies to --loss focal"),
        (["--distill_alpha", "0.9", "--distill_temperature", "4"], "--distill_alpha, --distill_temperature only apply"),
        (["--consistent_decoding"], "--consistent_decoding only applies to hierarchical --label_columns"),
    ],
)
def test_bad_loss_and_window_flags_fail_before_any_model_is_built(flags, message, tiny_bert, tmp_path, monkeypatch):
    data = write_csv(tmp_path / "data" / "train.csv", [("good", "pos"), ("bad", "neg")] * 4).parent
    (tmp_path / "weights.json").write_text(json.dumps({"pos": 2.0, "neutral": 1.0}))
    flags = [str(tmp_path / "weights.json") if f == "WEIGHTS" else f for f in flags]
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=message):
        train.main(tiny_args(tiny_bert, tmp_path / "run", data, *flags))
    assert not (tmp_path / "run" / "config.json").exists()


@pytest.mark.parametrize(
    "weights, message",
    [
        # Python's json reads these as inf and nan: the loss was nan at the first step, after the model was built.
        ('{"pos": Infinity}', r"weights must be finite numbers >= 0, got \{'pos': inf\}"),
        ('{"pos": 1e400}', r"weights must be finite numbers >= 0, got \{'pos': inf\}"),
        ('{"pos": NaN}', r"weights must be finite numbers >= 0, got \{'pos': nan\}"),
        # Every row's loss times 0: the run trained nothing and reported its untrained scores.
        ('{"pos": 0, "neg": 0.0}', "every label weighs 0, so no row adds to the loss"),
    ],
)
def test_class_weights_file_that_cannot_train_is_refused(weights, message, tiny_bert, tmp_path, monkeypatch):
    data = write_csv(tmp_path / "data" / "train.csv", [("good", "pos"), ("bad", "neg")] * 4).parent
    (tmp_path / "weights.json").write_text(weights)
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=message):
        train.main(tiny_args(tiny_bert, tmp_path / "run", data, "--class_weights", str(tmp_path / "weights.json")))
    assert not (tmp_path / "run" / "config.json").exists()


def test_class_weights_for_multi_label_data_point_to_pos_weight(tiny_bert, tmp_path):
    rows = [{"text": f"goal rain {i}", "tags": ["sports"] if i % 2 else ["weather", "sports"]} for i in range(12)]
    data = write_jsonl(tmp_path / "data" / "train.jsonl", rows).parent
    with pytest.raises(UsageError, match="for multi-label data use --pos_weight balanced"):
        train.main(
            tiny_args(tiny_bert, tmp_path / "run", data, "--label_column", "tags", "--class_weights", "balanced")
        )


def test_cli_error_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--loss", "focal", "--teacher_column", "t", "--output_dir", tmp_path],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: --loss focal does not combine with distillation")


# ---- long documents end to end -------------------------------------------------------------------------------------


LATE_EVIDENCE_FLAGS = ["--pooling", "mean", "--num_train_epochs", "3", "--per_device_train_batch_size", "16"]


def test_windows_read_the_end_of_long_documents_that_truncation_never_sees(seeded_bert, late_evidence, tmp_path):
    truncated = train.main(tiny_args(seeded_bert, tmp_path / "truncate", late_evidence, *LATE_EVIDENCE_FLAGS))
    out = tmp_path / "windows"
    windowed = train.main(tiny_args(seeded_bert, out, late_evidence, *LATE_EVIDENCE_FLAGS, "--long_text", "windows"))

    # The label sits after token 30: truncation to 32 tokens sees filler only (chance), windows see it (0.925 to 1.0
    # over nine random tiny backbones).
    assert truncated["test"]["accuracy"] <= 0.7 and windowed["test"]["accuracy"] >= 0.9
    # Per document, never per window.
    assert windowed["test"]["num_samples"] == truncated["test"]["num_samples"] == 40
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["split_sizes"]["test"] == 40 and resolved["windows"]["test"] == {
        "documents": 40,
        "windows": 120,  # 54-69 tokens: 3 windows of 30 text tokens, advancing by 22
        "cut": 40,
    }
    preds = read_jsonl(out / "predictions_test.jsonl")
    assert [p["idx"] for p in preds] == list(range(40)) and all(p["windows"] == 3 for p in preds)
    assert sum(p["gold"] == p["pred"] for p in preds) / 40 == windowed["test"]["accuracy"]
    again = evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert again["num_samples"] == 40 and again["accuracy"] == windowed["test"]["accuracy"]
    assert again["loss"] == windowed["test"]["loss"]


def test_max_windows_per_doc_trains_on_the_first_windows_and_still_scores_every_window(
    tiny_bert, late_evidence, tmp_path
):
    out = tmp_path / "run"
    results = train.main(
        tiny_args(
            tiny_bert,
            out,
            late_evidence,
            "--long_text",
            "windows",
            "--max_windows_per_doc",
            "1",
            "--window_pooling",
            "max",
            "--num_train_epochs",
            "1",
        )
    )
    windows = json.loads((out / "config.json").read_text())["resolved"]["windows"]
    assert windows["train"]["windows"] == 160 and windows["train"]["cut"] == 160
    assert windows["validation"]["windows"] > 80 and results["validation"]["num_samples"] == 40
    assert json.loads((out / "best_model" / "config.json").read_text())["window_pooling"] == "max"
    assert "160 documents -> 160 windows (at most 1 each)" in (out / "train.log").read_text()


@pytest.mark.slow
def test_windows_on_two_processes_count_every_document_once(tiny_bert, late_evidence, tmp_path):
    out = tmp_path / "run"
    args = tiny_args(tiny_bert, out, late_evidence, "--long_text", "windows", "--num_train_epochs", "1")
    args += ["--per_device_eval_batch_size", "7"]  # batches that split documents' windows across the two ranks
    proc = train_on_two_processes(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert json.loads((out / "config.json").read_text())["resolved"]["num_processes"] == 2
    assert results["validation"]["num_samples"] == results["test"]["num_samples"] == 40
    single = evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert single["num_samples"] == 40 and single["accuracy"] == results["test"]["accuracy"]
    assert single["loss"] == pytest.approx(results["test"]["loss"], rel=1e-6)
    # The test file as a labeled --input, scored on two processes: each document once, the split's scores.
    proc = train_on_two_processes(
        ["--run_dir", str(out), "--input", str(late_evidence / "test.jsonl")], tmp_path, "evaluate.py"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads(proc.stdout.strip().splitlines()[-1])
    assert scored["num_predictions"] == scored["num_samples"] == 40 and scored["accuracy"] == single["accuracy"]
    assert len((out / "predictions_test_input.jsonl").read_text().splitlines()) == 40


# ---- imbalanced labels end to end ----------------------------------------------------------------------------------


IMBALANCED_FLAGS = ["--pooling", "mean", "--num_train_epochs", "4", "--learning_rate", "2e-3"]
IMBALANCED_FLAGS += ["--per_device_train_batch_size", "16"]


def test_balanced_class_weights_raise_the_rare_class_recall(seeded_bert, imbalanced, tmp_path):
    plain = train.main(tiny_args(seeded_bert, tmp_path / "none", imbalanced, *IMBALANCED_FLAGS))
    out = tmp_path / "balanced"
    weighted = train.main(tiny_args(seeded_bert, out, imbalanced, *IMBALANCED_FLAGS, "--class_weights", "balanced"))

    rare_plain, rare_weighted = (r["test"]["per_class"]["rare"]["recall"] for r in (plain, weighted))
    # Unweighted, "cloud" still means "common" 2 times in 3, so the rare class is never predicted (recall 0 over
    # seven random tiny backbones; 0.4 to 0.8 with balanced weights).
    assert rare_plain <= 0.2 and rare_weighted >= rare_plain + 0.3
    assert weighted["test"]["macro_recall"] > plain["test"]["macro_recall"]

    # The weights are numbers in the saved model (sklearn's balanced: 400 / (2 * 380), 400 / (2 * 20)), so a reload
    # computes the same weighted loss without the train set.
    saved = json.loads((out / "best_model" / "config.json").read_text())
    assert saved["class_weights"] == [pytest.approx([400 / 760, 10.0])]
    again = evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert again["macro_recall"] == weighted["test"]["macro_recall"] and again["loss"] == weighted["test"]["loss"]
    # The loss is the weighted one: plain cross-entropy of the same predictions would differ.
    preds = read_jsonl(out / "predictions_test.jsonl")
    plain_ce = np.mean([-math.log(p["gold_probability"]) for p in preds])
    assert weighted["test"]["loss"] == pytest.approx(np.mean([p["loss"] for p in preds]))
    assert weighted["test"]["loss"] != pytest.approx(plain_ce, rel=1e-3)
    log = (out / "train.log").read_text()
    assert "class weights (balanced over 400 training rows): common=0.526, rare=10" in log
    assert "validation recall per class: common=" in log
    assert "validation recall per class" not in (tmp_path / "none" / "train.log").read_text()


def long_and_short_rows(n, seed):
    """Documents of two classes told apart by their first word: "report" ones of 50-60 tokens (three windows at
    length 32), "note" ones of 5-8 (one window)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["report", "note"][i % 2]
        size = rng.randint(50, 60) if label == "report" else rng.randint(5, 8)
        rows.append({"text": f"{'goalkeeper' if label == 'report' else 'rain'} {filler(size)}", "label": label})
    return rows


@pytest.mark.parametrize("limit", [None, "1"])
def test_balanced_class_weights_under_windows_balance_the_windows_training_sees(tiny_bert, tmp_path, limit):
    data = tmp_path / "data"
    for split, n, seed in (("train", 40, 1), ("validation", 10, 2), ("test", 10, 3)):
        write_jsonl(data / f"{split}.jsonl", long_and_short_rows(n, seed))
    out = tmp_path / "run"
    flags = ["--long_text", "windows", "--class_weights", "balanced", "--num_train_epochs", "1"]
    train.main(tiny_args(tiny_bert, out, data, *flags, *(["--max_windows_per_doc", limit] if limit else [])))

    # Training sees every window as a row, so "balanced" is over windows: 20 reports of 2-3 windows and 20 notes of
    # one (n windows: n / (2 * (n - 20)), n / (2 * 20)); the weighted rows then average 1, as they do without
    # windows. Over documents (20 and 20) both weights were 1, and reports weighed 2-3 times the notes in the loss.
    n = json.loads((out / "config.json").read_text())["resolved"]["windows"]["train"]["windows"]
    saved = json.loads((out / "best_model" / "config.json").read_text())
    weight = dict(zip([saved["id2label"][str(i)] for i in range(2)], saved["class_weights"][0], strict=True))
    if limit is None:
        assert n >= 60
        assert weight == {"report": pytest.approx(n / (2 * (n - 20))), "note": pytest.approx(n / 40)}
        assert f"class weights (balanced over {n} training windows): " in (out / "train.log").read_text()
    else:  # one window per document: windows and documents are the same rows
        assert n == 40 and weight == {"report": 1.0, "note": 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["windows", "class_weights"])
def test_reload_parity_through_the_cli(setting, tiny_bert, late_evidence, imbalanced, tmp_path):
    """python evaluate.py --split test in a fresh process, after training: results.json's scores exactly. Training
    runs here (train.main, what python train.py runs): the reload is what crosses a process boundary. The other
    reloads (the validation split, --input files) run in this process: one fresh process shows the saved model needs
    nothing of the training process, and each of them would cost an interpreter's start-up of its own."""
    out = tmp_path / "run"
    if setting == "windows":
        flags = [*LATE_EVIDENCE_FLAGS, "--long_text", "windows", "--window_pooling", "max"]
        args = tiny_args(tiny_bert, out, late_evidence, *flags)
    else:
        args = tiny_args(tiny_bert, out, imbalanced, *IMBALANCED_FLAGS, "--class_weights", "balanced")
        args += ["--label_smoothing", "0.1", "--loss", "focal"]
    train.main([*args, "--num_train_epochs", "1"])
    results = json.loads((out / "results.json").read_text())
    written = read_jsonl(out / "predictions_test.jsonl")
    again = cli("evaluate.py", "--split", "test", "--run_dir", out, cwd=tmp_path)
    assert again == {"split": "test", **{k: v for k, v in results["test"].items() if k != "per_class"}}
    assert read_jsonl(out / "predictions_test.jsonl") == written
    assert evaluate.main(["--split", "validation", "--run_dir", str(out)]) == results["validation"]
    # The test file given as --input, labels and all, is scored as the test split: the same rows, documents, loss.
    source = (late_evidence if setting == "windows" else imbalanced) / "test.jsonl"
    scored = evaluate.main(["--run_dir", str(out), "--input", str(source)])
    for key in ("accuracy", "macro_f1", "num_samples"):
        assert scored[key] == results["test"][key]
    assert scored["loss"] == pytest.approx(results["test"]["loss"], rel=1e-5)
    if setting == "windows":
        # evaluate.py --input labels documents too: one line per input row, each read through all its windows.
        new = write_jsonl(tmp_path / "new.jsonl", [{"text": r["text"]} for r in late_evidence_rows(6, 9)])
        summary = evaluate.main(["--run_dir", str(out), "--input", str(new)])
        labelled = read_jsonl(out / "predictions_new.jsonl")
        assert summary["num_predictions"] == len(labelled) == 6 and all(r["windows"] == 3 for r in labelled)


@pytest.mark.parametrize(
    "task",
    ["hierarchical", "multi_label", "distillation"],
)
def test_every_problem_type_trains_with_the_loss_settings_and_windows(task, tiny_bert, tmp_path):
    if task == "hierarchical":
        dataset = SHARED_DATA / "trec"
        weights = tmp_path / "weights.json"
        weights.write_text(json.dumps({"label_coarse": {"NUM": 3.0}, "label_fine": {"LOC:city": 2.0}}))
        flags = ["--label_columns", "label_coarse", "label_fine", "--class_weights", str(weights)]
        flags += [
            "--loss",
            "focal",
            "--label_smoothing",
            "0.1",
            "--max_train_samples",
            "200",
            "--max_eval_samples",
            "40",
        ]
        flags += ["--long_text", "windows", "--max_seq_length", "12", "--window_stride", "2"]
    elif task == "multi_label":
        rows = [
            {"text": f"{'goalkeeper ' if i % 2 else ''}{'rain ' if i % 3 else ''}{filler(i % 7 + 1)}", "tags": []}
            for i in range(48)
        ]
        for i, r in enumerate(rows):
            r["tags"] = (["sports"] if i % 2 else []) + (["weather"] if i % 3 else [])
        dataset = write_jsonl(tmp_path / "data" / "train.jsonl", rows).parent
        write_jsonl(dataset / "validation.jsonl", rows[:12])
        flags = ["--label_column", "tags", "--pos_weight", "balanced", "--loss", "focal", "--label_smoothing", "0.1"]
        flags += ["--long_text", "windows", "--max_seq_length", "8", "--window_stride", "2"]
    else:
        rows = [
            {
                "text": f"{'sunny' if i % 2 else 'cloud'} day {FILLER[i % 25]}",
                "label": ["neg", "pos"][i % 2],
                "llm": [0.3, 0.7],
            }
            for i in range(40)
        ]
        dataset = write_jsonl(tmp_path / "data" / "train.jsonl", rows).parent
        flags = ["--teacher_column", "llm", "--class_weights", "balanced", "--label_smoothing", "0.05"]
        flags += ["--long_text", "windows", "--max_seq_length", "4", "--window_stride", "1"]
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, dataset, *flags, "--num_train_epochs", "1"))
    saved = json.loads((out / "best_model" / "config.json").read_text())
    if task == "hierarchical":
        coarse = saved["levels"][0]["labels"]
        assert saved["class_weights"][0][coarse.index("NUM")] == 3.0 and saved["class_weights"][0].count(1.0) == 5
        assert saved["loss"] == "focal" and "label_coarse.loss" in results["validation"]
    elif task == "multi_label":
        # Over the windows training sees (a row's tags on each of its windows): negatives / positives per label. Over
        # the 48 rows it would be [1.0, 0.5] (sports on 24, weather on 32).
        from transformers import AutoTokenizer

        _, owner = encode_windows(AutoTokenizer.from_pretrained(tiny_bert), [r["text"] for r in rows], None, 8, 2)
        positives = [sum(tag in rows[i]["tags"] for i in owner) for tag in ("sports", "weather")]
        assert len(owner) > 48
        assert saved["pos_weight"] == [pytest.approx((len(owner) - p) / p) for p in positives]
        assert saved["label_smoothing"] == 0.1
    else:
        assert saved["class_weights"] == [[1.0, 1.0]]
    windows = json.loads((out / "config.json").read_text())["resolved"]["windows"]["validation"]
    assert windows["cut"] > 0 and results["validation"]["num_samples"] == windows["documents"]
    again = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    if task != "multi_label":  # multi-label's validation is scored at thresholds tuned after training
        assert again["loss"] == results["validation"]["loss"]
    assert again["loss"] == results["validation_reloaded"]["loss"]


# ---- scripts: the length report and the per-class plot -------------------------------------------------------------


def test_prepare_data_reports_long_documents_and_their_windows(tiny_bert, tmp_path):
    rows = [{"text": filler(4 + (i % 5) * 10), "label": ["a", "b"][i % 2]} for i in range(40)]  # 4 to 44 words
    source = write_jsonl(tmp_path / "docs.jsonl", rows)
    out = tmp_path / "prepared"
    proc = subprocess.run(
        [
            sys.executable,
            REPO / "scripts" / "prepare_data.py",
            source,
            out,
            "--tokenizer",
            tiny_bert,
            "--max_seq_length",
            "16",
            "--window_stride",
            "4",
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    texts = [r["text"] for r in read_jsonl(source)]
    for split, info in report["splits"].items():
        import pyarrow.parquet as pq

        split_texts = pq.read_table(out / f"{split}.parquet").column("text").to_pylist()
        tokens = [len(t.split()) + 2 for t in split_texts]  # one token per filler word, plus [CLS] and [SEP]
        assert info["long_documents"]["count"] == sum(n > 16 for n in tokens)
        # 14 text tokens per window, advancing by 10: 1 + ceil((n - 14) / 10) windows for n > 14 text tokens.
        expected = [1 if n - 2 <= 14 else 1 + math.ceil((n - 2 - 14) / 10) for n in tokens]
        assert info["windows_per_document"]["total"] == sum(expected)
        assert info["windows_per_document"]["max"] == max(expected)
    assert len(texts) == sum(info["rows"] for info in report["splits"].values())
    assert "> 16 tokens" in (out / "report.md").read_text()


def test_report_draws_per_class_f1_by_run(tmp_path):
    for name, rare in (("none", 0.1), ("balanced", 0.7)):
        run = tmp_path / name
        run.mkdir()
        user = {"dataset": "/data/imb", "model_name_or_path": "/m/minilm", "seed": 1, "class_weights": name}
        (run / "config.json").write_text(json.dumps({"user_config": user, "resolved": {}}))
        per_class = {"common": {"f1-score": 0.9, "recall": 0.9}, "rare": {"f1-score": rare, "recall": rare}}
        metrics = {"macro_f1": (0.9 + rare) / 2, "accuracy": 0.9, "per_class": per_class}
        (run / "results.json").write_text(json.dumps({"best_step": 5, "validation": metrics, "test": metrics}))
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "report.py"), tmp_path], capture_output=True, text=True, env=ENV
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "per_class_f1_imb.png").stat().st_size > 5000
    with open(tmp_path / "results.csv") as handle:
        assert {r["model"] for r in csv.DictReader(handle)} == {
            "minilm (class_weights=balanced)",
            "minilm (class_weights=none)",
        }


def test_per_class_plot_shows_the_runs_the_table_averages(tmp_path, monkeypatch, capsys):
    """A seed trained twice counts once in the table (the newest run): the plot draws that run, not both copies."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    for name, rare, when in (("first", 0.1, 1_000_000), ("again", 0.7, 2_000_000)):
        run = tmp_path / name
        run.mkdir()
        user = {"dataset": "/data/imb", "model_name_or_path": "/m/minilm", "seed": 1}
        (run / "config.json").write_text(json.dumps({"user_config": user, "resolved": {}}))
        per_class = {"common": {"f1-score": 0.9}, "rare": {"f1-score": rare}}
        metrics = {"macro_f1": (0.9 + rare) / 2, "accuracy": 0.9, "per_class": per_class}
        (run / "results.json").write_text(json.dumps({"best_step": 5, "validation": metrics, "test": metrics}))
        os.utime(run / "results.json", (when, when))
    drawn = {}

    def keep_columns(fig, path, dpi=100):
        if path.name.startswith("per_class_f1"):
            drawn["columns"] = [label.get_text() for label in fig.axes[0].get_xticklabels()]
            drawn["cells"] = [text.get_text() for text in fig.axes[0].texts]  # (class, run) cells, row by row

    monkeypatch.setattr(report, "atomic_savefig", keep_columns)
    [row] = report.main([str(tmp_path)])
    assert row["seeds"] == 1 and json.loads(row["run_dirs"]) == [str(tmp_path / "again")], row
    assert drawn == {"columns": ["minilm seed 1"], "cells": ["0.90", "0.70"]}, drawn


def finished_run_with_per_class(run: Path, dataset: str, per_class: dict, macro_f1: float) -> None:
    """A finished run folder of /data/<dataset> whose validation and test scores hold ``per_class``."""
    run.mkdir()
    user = {"dataset": f"/data/{dataset}", "model_name_or_path": "/m/minilm", "seed": 1}
    (run / "config.json").write_text(json.dumps({"user_config": user, "resolved": {}}))
    metrics = {"macro_f1": macro_f1, "accuracy": 0.9, "per_class": per_class}
    (run / "results.json").write_text(json.dumps({"best_step": 5, "validation": metrics, "test": metrics}))


def test_per_class_plot_leaves_blank_a_class_the_split_has_no_row_of(tmp_path, monkeypatch):
    """A class without test rows (a rare class of 47) has no test F1: its cell is blank, not a 0.00 that reads as a
    class the model always misses."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    per_class = {
        "common": {"f1-score": 0.9, "support": 40.0},
        "missed": {"f1-score": 0.0, "support": 3.0},
        "absent": {"f1-score": 0.0, "support": 0.0},
    }
    finished_run_with_per_class(tmp_path / "run", "imb", per_class, 0.45)
    drawn = {}

    def keep_cells(fig, path, dpi=100):
        if path.name.startswith("per_class_f1"):
            drawn["rows"] = [label.get_text() for label in fig.axes[0].get_yticklabels()]
            drawn["cells"] = [text.get_text() for text in fig.axes[0].texts]
            drawn["title"] = fig.axes[0].get_title()

    monkeypatch.setattr(report, "atomic_savefig", keep_cells)
    report.main([str(tmp_path)])
    assert drawn["rows"] == ["common", "missed", "absent"], drawn
    assert drawn["cells"] == ["0.90", "0.00"], drawn
    assert "blank: no test row of the class" in drawn["title"], drawn


def test_per_class_plot_numbers_a_class_whose_name_no_font_draws(tmp_path, monkeypatch, capsys):
    """A class name in characters no installed font has was a row of empty boxes (and a matplotlib warning per
    character): it is drawn as its number, which the output names."""
    import warnings

    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    name = "\U0010fffd\U0010fffc"  # private-use characters: no font has them
    per_class = {
        "joy": {"f1-score": 0.9, "support": 4.0},
        name: {"f1-score": 0.5, "support": 2.0},
        "$x^$": {"f1-score": 0.1, "support": 1.0},  # math to matplotlib: it raised when drawn
    }
    finished_run_with_per_class(tmp_path / "run", "jp", per_class, 0.7)
    drawn = {}

    def keep_rows(fig, path, dpi=100):
        if path.name.startswith("per_class_f1"):
            fig.canvas.draw()
            drawn["rows"] = [label.get_text() for label in fig.axes[0].get_yticklabels()]

    monkeypatch.setattr(report, "atomic_savefig", keep_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)"
        report.main([str(tmp_path)])
    assert drawn["rows"] == ["joy", "#1", r"\$x^\$"], drawn
    assert (
        f"per_class_f1_jp.png numbers 1 class whose name its fonts cannot draw: #1 = {name!r}"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("metric", ["macro_f1", "macro_precision"])
def test_curves_titles_fit_in_the_picture(tmp_path, monkeypatch, metric):
    """curves.png's panel titles are whole: 'validation (best_model/ chosen by macro_f1)' ran past the right edge."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    lines = [{"step": 5, "loss": 0.7, "lr": 1e-4, "grad_norm": 0.2}, {"step": 5, f"eval_{metric}": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "results.json").write_text(json.dumps({"best_step": 5, "metric": metric}))
    outside = {}

    def keep_titles(fig, path, dpi=100):
        renderer = fig.canvas.get_renderer()
        width = fig.bbox.width
        outside["titles"] = [
            ax.get_title() for ax in fig.axes if not 0 <= ax.title.get_window_extent(renderer).x1 <= width
        ]

    monkeypatch.setattr(report, "atomic_savefig", keep_titles)
    report.plot_curves(tmp_path)
    assert outside == {"titles": []}, outside


def test_prepare_data_lengths_plot_shares_its_bins_and_marks_max_seq_length(tmp_path, monkeypatch):
    """lengths.png compares the splits on one set of bins (each split's own 50 bins drew bars of other widths, so
    the densities did not compare) and marks --max_seq_length, past which a text is cut or windowed."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import prepare_data

    drawn = {}

    def keep(fig, path, dpi=100):
        ax = fig.axes[0]
        drawn["edges"] = {tuple(round(x, 6) for x in p.get_xy()[:, 0]) for p in ax.patches}
        drawn["lines"] = [line.get_xdata()[0] for line in ax.lines]

    monkeypatch.setattr(prepare_data, "atomic_savefig", keep)
    lengths = {"train": list(range(3, 40)), "test": list(range(20, 300, 7))}
    prepare_data.plot_lengths(lengths, tmp_path / "lengths.png", "tok", max_seq_length=64)
    assert len(drawn["edges"]) == 1, "the splits' histograms use other bins"
    assert drawn["lines"] == [64], drawn["lines"]


def test_prepare_data_token_length_and_window_percentiles_match_a_hand_computed_case(tiny_bert, tmp_path):
    """report.json's p50/p95 (token lengths, and windows per document) are numpy's linear percentiles of the lengths
    train.py would see: checked on five documents whose figures are computed by hand."""
    words = [1, 2, 3, 4, 10]  # one token per filler word, plus [CLS] and [SEP]: 3, 4, 5, 6 and 12 tokens
    for split in ("train", "validation", "test"):
        write_jsonl(tmp_path / "docs" / f"{split}.jsonl", [{"text": filler(n), "label": "ab"[n % 2]} for n in words])
    out = tmp_path / "prepared"
    command = [sys.executable, REPO / "scripts" / "prepare_data.py", tmp_path / "docs", out, "--tokenizer", tiny_bert]
    command += ["--max_seq_length", "8", "--window_stride", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    test = json.loads((out / "report.json").read_text())["splits"]["test"]
    # Sorted lengths 3 4 5 6 12: p50 the middle one; p95 at rank 0.95 * 4 = 3.8, 6 + 0.8 * (12 - 6) = 10.8.
    assert test["token_length_percentiles"] == pytest.approx(
        {"p50": 5, "p90": 9.6, "p95": 10.8, "p99": 11.76, "max": 12}
    )
    assert test["long_documents"] == {"count": 1, "share": 0.2}
    # Windows of 6 text tokens advancing by 4: one each for 1..4 text tokens, 1 + ceil((10 - 6) / 4) = 2 for 10;
    # sorted 1 1 1 1 2: p50 1, p95 1 + 0.8 * (2 - 1) = 1.8.
    assert test["windows_per_document"] == pytest.approx({"mean": 1.2, "p50": 1, "p95": 1.8, "max": 2, "total": 6})
    assert "| test | 5 | 60.0% | 40.0% | 5 | 11 | 12 | 20.0% | 1.20, 2 |" in (out / "report.md").read_text()


def test_per_class_plot_title_fits_a_long_dataset_name(tmp_path, monkeypatch):
    """A long dataset name (a held-out set's folder name) ran off both edges of per_class_f1_<dataset>.png's one-run
    picture, and crowded out the dataset-by-model picture: titles and names wrap inside their figures, whole."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    dataset = "heldout_sentence_pairs_paraphrase_detection_2026_release_candidate_v2"
    per_class = {"same": {"f1-score": 0.9, "support": 4.0}, "other": {"f1-score": 0.5, "support": 0.0}}
    finished_run_with_per_class(tmp_path / "run", dataset, per_class, 0.7)
    drawn = {}

    def keep_title(fig, path, dpi=100):
        if path.name.startswith("per_class_f1"):
            renderer = fig.canvas.get_renderer()
            box, title = fig.axes[0].title.get_window_extent(renderer), fig.axes[0].get_title()
            drawn["inside"] = 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
            drawn["title"] = title

    monkeypatch.setattr(report, "atomic_savefig", keep_title)
    with warnings.catch_warnings():
        # The dataset-by-model picture too: its long row name left no room ("Tight layout not applied").
        warnings.simplefilter("error", UserWarning)
        report.main([str(tmp_path)])
    assert drawn["inside"], drawn
    assert dataset in drawn["title"].replace("\n", ""), drawn  # a name without spaces is cut, not shortened
    assert "(blank: no test row of the class)" in drawn["title"].replace("\n", " "), drawn


def test_texts_cut_at_max_seq_length_are_counted_per_split_also_from_the_token_cache(tiny_bert, tmp_path, capsys):
    """--long_text truncate (the default) cuts a text longer than --max_seq_length there: the log and config.json say
    how many rows of each split lost tokens, a pair counted when either text did, and a second run, which reads the
    token ids from the cache, says it too."""
    rng = random.Random(7)
    long_rows = [(filler(40 + rng.randint(0, 9)), "short", ["a", "b"][i % 2]) for i in range(6)]
    short_rows = [(filler(3 + i % 4), "short", ["a", "b"][i % 2]) for i in range(14)]
    second_long = [("short", filler(40), "a"), ("short", filler(45), "b")]  # only the second text overflows
    write_csv(tmp_path / "data" / "train.csv", long_rows + short_rows + second_long, ("q", "p", "label"))
    write_csv(tmp_path / "data" / "validation.csv", long_rows[:1] + short_rows[:5], ("q", "p", "label"))
    flags = ["--text_column", "q", "--text_pair_column", "p", "--num_train_epochs", "1"]
    for run in ("first", "cached"):
        out = tmp_path / run
        train.main(tiny_args(tiny_bert, out, tmp_path / "data", *flags))
        resolved = json.loads((out / "config.json").read_text())["resolved"]
        assert resolved["cut_at_max_seq_length"] == {"train": 8, "validation": 1}
        log = (out / "train.log").read_text()
        assert "train: 8 of 22 pairs (36.4%) cut at --max_seq_length 32; --long_text windows reads them whole" in log
        assert "validation: 1 of 6 pairs (16.7%) cut at --max_seq_length 32" in log
        assert log.count("cut at --max_seq_length") == 2
    capsys.readouterr()
    evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "data" / "train.csv")])
    assert "input: 8 of 22 pairs (36.4%) cut at --max_seq_length 32; the run's limit" in capsys.readouterr().err
