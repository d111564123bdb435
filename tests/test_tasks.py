"""Problem types: hierarchical labels, multi-label with tuned thresholds, distillation from soft labels."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import evaluate
import train
from config import TrainConfig
from conftest import SHARED_DATA, tiny_args, write_csv
from data import load_splits
from model import distillation_loss

TREC = SHARED_DATA / "trec"


def test_trec_hierarchy_is_read_with_parents_from_train():
    data = load_splits(
        TrainConfig(dataset=str(TREC), label_columns=["label_coarse", "label_fine"], max_train_samples=2000)
    )
    spec = data.spec
    assert spec.problem_type == "hierarchical_classification"
    coarse, fine = (level["labels"] for level in spec.levels)
    assert len(coarse) == 6 and len(fine) == 50 and data.label_names == fine
    # TREC's fine names carry their coarse class ("LOC:city"): the learned fine -> coarse map must agree.
    seen = {row[1] for row in data.splits["train"]["label"]}
    assert all(fine[i].split(":")[0] == coarse[spec.parents[0][i]] for i in seen)
    assert data.splits["validation"][0]["label"] == [2, 24]


def test_hierarchical_metrics_consistency_and_consistent_decoding():
    task = SimpleNamespace(
        problem_type="hierarchical_classification",
        levels=[{"name": "coarse", "labels": ["A", "B"]}, {"name": "fine", "labels": ["a1", "a2", "b1"]}],
        level_parents=[[0, 0, 1]],
        level_loss_weights=[1.0, 1.0],
        consistent_decoding=False,
        loss="cross_entropy",
        label_smoothing=0.0,
        class_weights=None,
    )
    labels = np.array([[0, 0], [0, 1], [1, 2], [1, 2]])
    # rows: coarse preds A, A, B, A; fine preds a1, b1 (disagrees with A), b1, a2 (disagrees? no: a2 is under A).
    logits = np.log(
        np.array(
            [
                [0.9, 0.1, 0.8, 0.1, 0.1],
                [0.6, 0.4, 0.1, 0.3, 0.6],
                [0.2, 0.8, 0.1, 0.1, 0.8],
                [0.7, 0.3, 0.1, 0.5, 0.4],
            ]
        )
    )
    m = evaluate.compute_metrics(labels, logits, ["a1", "a2", "b1"], task)
    assert m["coarse.accuracy"] == 0.75 and m["fine.accuracy"] == 0.5
    assert m["accuracy"] == m["fine.accuracy"] and m["macro_f1"] == m["fine.macro_f1"]
    assert m["level_consistency"] == 0.75  # row 2 predicts fine b1 under coarse A
    assert m["loss"] == pytest.approx(m["coarse.loss"] + m["fine.loss"])
    # Each level's per-class report, not only the finest's: coarse B's two rows, one predicted A.
    assert m["coarse.per_class"]["A"]["recall"] == 1.0 and m["coarse.per_class"]["B"]["recall"] == 0.5
    assert m["fine.per_class"] == m["per_class"] and set(m["per_class"]) == {"a1", "a2", "b1"}
    task.consistent_decoding = True
    c = evaluate.compute_metrics(labels, logits, ["a1", "a2", "b1"], task)
    assert c["level_consistency"] == 1.0 and c["fine.accuracy"] == 0.75  # row 2 now predicts a2 (best under A)


@pytest.mark.parametrize("decoding", [[], ["--consistent_decoding"]])
def test_hierarchical_run_and_reload_parity(decoding, tiny_bert, tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--label_columns", "label_coarse", "label_fine", "--max_train_samples", "300", "--max_eval_samples", "60"]
    results = train.main(tiny_args(tiny_bert, out, TREC, *flags, "--level_loss_weights", "0.5", "1", *decoding))
    val = results["validation"]
    for key in ("label_coarse.macro_f1", "label_fine.macro_f1", "level_consistency", "label_coarse.accuracy"):
        assert key in val and key in results["test"]
    assert val["macro_f1"] == val["label_fine.macro_f1"]
    assert val["loss"] == pytest.approx(0.5 * val["label_coarse.loss"] + val["label_fine.loss"])
    if decoding:
        assert val["level_consistency"] == 1.0
    assert set(results["test"]["label_coarse.per_class"]) == {"ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"}
    # The plan line counts each level's labels ("44 labels" read as the run's only ones).
    fine = len(json.loads((out / "config.json").read_text())["resolved"]["levels"][1]["labels"])
    assert f"test rows, 6 label_coarse + {fine} label_fine labels;" in (out / "train.log").read_text()
    # The reports stay out of metrics.jsonl (its recall per class aside) and out of the stdout line of numbers.
    assert not [
        k
        for line in (out / "metrics.jsonl").read_text().splitlines()
        for k in json.loads(line)
        if "per_class." in k or k.endswith(".per_class")
    ]
    capsys.readouterr()
    again = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    assert again["macro_f1"] == val["macro_f1"] and again["label_coarse.macro_f1"] == val["label_coarse.macro_f1"]
    assert again["label_coarse.per_class"] == val["label_coarse.per_class"]
    assert "per_class" not in capsys.readouterr().out.splitlines()[-1]
    row = json.loads((out / "predictions_validation.jsonl").read_text().splitlines()[0])
    assert set(row["gold"]) == set(row["pred"]) == {"label_coarse", "label_fine"}
    assert (out / "confusion_validation.png").is_file()


def test_tune_thresholds_finds_the_separating_value():
    labels = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probs = np.array([[0.37, 0.92], [0.33, 0.2], [0.12, 0.97], [0.22, 0.1]])
    logits = np.log(probs / (1 - probs))
    # label 0: positives at 0.37 and 0.33, negatives at 0.12 and 0.22 -> grid points 0.25 and 0.3 are perfect; the
    # tie goes to the one closer to 0.5. label 1: positive 0.97, negatives 0.92 and 0.1 -> only 0.95 is perfect.
    th = evaluate.tune_thresholds(labels, logits)
    assert th[0] == 0.3 and th[1] == 0.95


def multi_label_rows(n=120):
    topics = [("goal match team", "sports"), ("chip software code", "tech"), ("rain wind snow", "weather")]
    rows = []
    for i in range(n):
        a, b = topics[i % 3], topics[(i // 3) % 3]
        labels = sorted({a[1], b[1]}) if i % 2 else [a[1]]
        rows.append({"text": f"{a[0]} {b[0] if i % 2 else ''} number {i}".strip(), "tags": labels})
    return rows


def test_multi_label_list_column_with_tuned_thresholds(tiny_bert, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = multi_label_rows()
    for split, part in [("train", rows[:80]), ("validation", rows[80:100]), ("test", rows[100:])]:
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, data, "--label_column", "tags", "--num_train_epochs", "3"))
    config = json.loads((out / "best_model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and len(config["thresholds"]) == 3
    assert results["thresholds"] == config["thresholds"]
    val = results["validation"]
    assert set(val) >= {"accuracy", "macro_f1", "micro_f1", "loss"} and set(val["per_class"]) == {
        "sports",
        "tech",
        "weather",
    }
    assert results["validation_at_best_step"]["num_samples"] == 20
    # The log's last line gives results.json's validation score too, not only the best step's at 0.5.
    done = (out / "train.log").read_text().splitlines()[-1]
    tuned = f"{val['macro_f1']:.4f} at the tuned thresholds, results.json's validation"
    assert f"at step {results['best_step']} ({tuned}); test macro_f1" in done, done
    again = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    assert again["macro_f1"] == val["macro_f1"] and again["accuracy"] == val["accuracy"]
    row = json.loads((out / "predictions_validation.jsonl").read_text().splitlines()[1])
    assert (
        isinstance(row["gold"], list)
        and isinstance(row["pred"], list)
        and set(row["probabilities"]) == {"sports", "tech", "weather"}
    )


def test_multi_label_from_zero_one_columns(tiny_bert, tmp_path):
    rows = [(f"row {i} goal" if i % 2 else f"row {i} rain", i % 2, 1 - i % 2, int(i % 3 == 0)) for i in range(60)]
    path = write_csv(tmp_path / "all.csv", rows, header=("text", "sports", "weather", "misc"))
    out = tmp_path / "run"
    results = train.main(
        tiny_args(tiny_bert, out, path, "--label_columns", "sports", "weather", "misc", "--multi_label")
    )
    assert json.loads((out / "config.json").read_text())["resolved"]["label_names"] == ["sports", "weather", "misc"]
    assert results["validation"]["num_samples"] == 6
    with pytest.raises(ValueError, match="must hold 0/1 values; misc"):
        bad = write_csv(
            tmp_path / "bad.csv", [("x", 1, 0, 2), ("y", 0, 1, 0)], header=("text", "sports", "weather", "misc")
        )
        train.main(
            tiny_args(
                tiny_bert, tmp_path / "bad_run", bad, "--label_columns", "sports", "weather", "misc", "--multi_label"
            )
        )


def test_multi_label_flag_on_a_single_label_column_is_refused(tiny_bert, tmp_path, monkeypatch):
    from model import EncoderClassifier

    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    # Trained single-label, the flag was ignored without a word.
    with pytest.raises(ValueError, match=r"--multi_label: the train split's 'label' column holds one label per row"):
        train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--multi_label"))
    with pytest.raises(ValueError, match=r"--label_columns names label more than once"):
        train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--label_columns", "label", "label"))

    # A run trained before the refusal (the flag recorded, ignored) is still scored as it was trained.
    monkeypatch.undo()
    out = tmp_path / "older"
    train.main(tiny_args(tiny_bert, out, None, "--max_steps", "2"))
    config = json.loads((out / "config.json").read_text())
    config["user_config"]["multi_label"] = True
    (out / "config.json").write_text(json.dumps(config))
    assert evaluate.main(["--run_dir", str(out), "--split", "test"])["num_samples"] == 16


def test_hierarchy_levels_given_fine_to_coarse_are_refused(tiny_bert, tmp_path, monkeypatch):
    from model import EncoderClassifier

    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    trec = SHARED_DATA / "trec"
    # Reversed, the "fine" level's parent map would be a guess over 40+ children per label.
    with pytest.raises(ValueError, match=r"list them as --label_columns label_coarse label_fine"):
        train.main(tiny_args(tiny_bert, tmp_path / "run", trec, "--label_columns", "label_fine", "label_coarse"))


def test_distillation_loss_against_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    teacher = torch.tensor([[0.8, 0.2], [0.0, 0.0]])
    has_teacher = torch.tensor([True, False])
    alpha, t = 0.25, 2.0
    # Row 0: teacher softened p^(1/T) renormalised, student softmax(z / T).
    p = np.array([0.8, 0.2]) ** 0.5
    p /= p.sum()
    q = np.exp(np.array([1.0, 0.0])) / np.exp(np.array([1.0, 0.0])).sum()
    kl = float((p * np.log(p / q)).sum()) * t * t
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce1 = -math.log(math.exp(1) / (math.exp(1) + 1))
    expected = ((alpha * kl + (1 - alpha) * ce0) + ce1) / 2
    assert distillation_loss(logits, labels, teacher, has_teacher, alpha, t).item() == pytest.approx(expected, rel=1e-6)
    # alpha 0 is plain cross-entropy whatever the teacher says.
    plain = torch.nn.functional.cross_entropy(logits, labels)
    assert distillation_loss(logits, labels, teacher, torch.tensor([True, True]), 0.0, t).item() == pytest.approx(
        plain.item()
    )


def test_distillation_weighs_each_rows_whole_loss_by_its_class_and_smooths_only_the_cross_entropy():
    """Distillation takes class weights (a row's KL and CE alike) and label smoothing (its CE part only)."""
    from model import EncoderClassifierConfig, single_label_loss

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    labels = torch.tensor([0, 1, 1])
    teacher = torch.tensor([[0.8, 0.2], [0.0, 0.0], [0.3, 0.7]])
    has_teacher = torch.tensor([True, False, True])
    alpha, t, eps, weights = 0.25, 2.0, 0.1, [0.5, 3.0]
    config = EncoderClassifierConfig(
        class_weights=[weights], label_smoothing=eps, distill_alpha=alpha, distill_temperature=t
    )
    log_p = torch.log_softmax(logits.double(), dim=-1).numpy()
    expected = []
    for row, gold in enumerate(labels.tolist()):
        ce = (1 - eps) * -log_p[row, gold] + eps * -log_p[row].mean()
        if has_teacher[row]:
            p = teacher[row].double().numpy() ** (1 / t)
            p /= p.sum()
            q = torch.softmax(logits[row].double() / t, dim=-1).numpy()
            ce = alpha * t * t * float((p * np.log(p / q)).sum()) + (1 - alpha) * ce
        expected.append(weights[gold] * ce)
    rows = single_label_loss([logits], labels, config, teacher, has_teacher)
    assert rows.detach().numpy() == pytest.approx(expected, rel=1e-6)


def test_distillation_run_with_partial_teacher(tiny_bert, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for i in range(48):
        label = ["pos", "neg"][i % 2]
        teacher = None if i % 3 == 0 else ([0.9, 0.1] if label == "neg" else [0.2, 0.8])
        rows.append({"text": f"{'great fun' if label == 'pos' else 'awful bore'} {i}", "label": label, "llm": teacher})
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "test.jsonl").write_text(
        "".join(json.dumps({k: r[k] for k in ("text", "label")}) + "\n" for r in rows[:10])
    )
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, data, "--teacher_column", "llm", "--distill_alpha", "0.7"))
    assert results["test"]["num_samples"] == 10
    with pytest.raises(ValueError, match="needs 2 non-negative probabilities"):
        (data / "train.jsonl").write_text(
            json.dumps({"text": "x", "label": "pos", "llm": [1.0]}) + "\n" + (data / "train.jsonl").read_text()
        )
        train.main(tiny_args(tiny_bert, tmp_path / "bad", data, "--teacher_column", "llm"))


@pytest.mark.slow
def test_trec_hierarchy_with_minilm_frozen_layers_and_remote_code_load(minilm_path, tmp_path):
    out = tmp_path / "run"
    results = train.main(
        [
            "--dataset",
            str(TREC),
            "--model_name_or_path",
            str(minilm_path),
            "--output_dir",
            str(out),
            "--runs_root",
            str(tmp_path / "runs"),
            "--label_columns",
            "label_coarse",
            "label_fine",
            "--pooling",
            "mean",
            "--head",
            "mlp",
            "--freeze_layers",
            "4",
            "--max_train_samples",
            "400",
            "--max_eval_samples",
            "100",
            "--num_train_epochs",
            "1",
            "--max_seq_length",
            "32",
            "--learning_rate",
            "1e-3",
        ]
    )
    saved = json.loads((out / "results.json").read_text())
    assert {"label_coarse.macro_f1", "label_fine.macro_f1"} <= set(saved["validation"]) and saved == json.loads(
        json.dumps(results)
    )
    weights = load_file(out / "best_model" / "model.safetensors")
    pretrained = load_file(minilm_path / "model.safetensors")
    frozen = [
        k
        for k in pretrained
        if k.startswith(("embeddings.", *(f"encoder.layer.{i}." for i in range(4)))) and f"backbone.{k}" in weights
    ]
    assert len(frozen) > 60 and all(torch.equal(weights[f"backbone.{k}"], pretrained[k]) for k in frozen)
    assert not torch.equal(
        weights["backbone.encoder.layer.5.output.dense.weight"], pretrained["encoder.layer.5.output.dense.weight"]
    )
    script = textwrap.dedent(f"""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        model = AutoModelForSequenceClassification.from_pretrained({str(out / "best_model")!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(out / "best_model")!r})
        logits = model(**tokenizer(["What is the capital of France ?"], return_tensors="pt")).logits
        print(model.config.id2label[int(logits.argmax())])
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        proc.stdout.strip().splitlines()[-1] in json.loads((out / "config.json").read_text())["resolved"]["label_names"]
    )
