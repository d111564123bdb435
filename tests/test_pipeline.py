"""End to end: train.main on tiny random models, then what a user relies on in the run directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import evaluate
import train
from config import parse_config
from conftest import ACCELERATE_LAUNCH, REPO, make_tiny_model, tiny_args, write_csv


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def bert_run(tiny_bert, tmp_path_factory):
    """One finished tiny-BERT run on the shipped sample data, evaluating twice per epoch."""
    out = tmp_path_factory.mktemp("bert_run") / "run"
    results = train.main(tiny_args(tiny_bert, out, None, "--eval_steps", "3", "--logging_steps", "2"))
    return out, results


def test_run_directory_contract(bert_run):
    out, results = bert_run
    for name in (
        "config.json",
        "results.json",
        "metrics.jsonl",
        "train.log",
        "best_model/model.safetensors",
        "best_model/config.json",
        "best_model/tokenizer_config.json",
    ):
        assert (out / name).exists(), name
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["metric"] == "macro_f1"
    assert set(on_disk) >= {"best_step", "metric", "validation", "test"}
    assert on_disk["validation"]["num_samples"] == 16 and on_disk["test"]["num_samples"] == 16
    assert on_disk["best_step"] == results["best_step"]
    config = json.loads((out / "config.json").read_text())
    assert config["user_config"]["eval_steps"] == 3
    assert config["resolved"]["label_names"] == ["food", "sports", "technology", "weather"]
    assert "48 train / 16 validation / 16 test rows, 4 labels; 1 process on cpu" in (out / "train.log").read_text()
    # The pointer lets `python evaluate.py` find this run without a path.
    assert (out.parent / "runs" / "LATEST").read_text().strip() == str(out.resolve())


def test_log_lines_printed_during_training_start_their_own_console_line(tiny_bert, tmp_path, capfd):
    """An evaluation's line is logged while the progress bar is drawn: it goes above the bar, not onto its end."""
    train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--num_train_epochs", "1", "--eval_steps", "3"))
    # A terminal starts over at a carriage return as at a newline: split on both, as it shows them.
    shown = re.split(r"[\r\n]", capfd.readouterr().err)
    evaluations = [line for line in shown if " INFO step 3: validation " in line or " INFO step 6: validation " in line]
    assert len(evaluations) == 2 and all(re.match(r"\d\d:\d\d:\d\d INFO", line) for line in evaluations), evaluations
    # The start-up line names the device the run trains on.
    assert "4 labels; 1 process on cpu, mixed precision no," in (tmp_path / "run" / "train.log").read_text()


def test_best_step_has_the_best_recorded_score(bert_run):
    out, results = bert_run
    evals = [r for r in read_jsonl(out / "metrics.jsonl") if "eval_macro_f1" in r]
    # 48 rows / batch 8 = 6 steps an epoch, 12 in all; evaluated every 3 steps and at the last.
    assert [r["step"] for r in evals] == [3, 6, 9, 12]
    best = max(evals, key=lambda r: (r["eval_macro_f1"], -r["step"]))
    assert results["best_step"] == best["step"]
    assert results["validation"]["macro_f1"] == best["eval_macro_f1"]
    # Each evaluation's recall per class, the best one's as results.json reports it.
    recall = {name: report["recall"] for name, report in results["validation"]["per_class"].items()}
    assert best["eval_recall_per_class"] == recall and set(recall) == {"food", "sports", "technology", "weather"}
    logs = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in logs] == [2, 4, 6, 8, 10, 12]
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in logs)
    # --warmup_ratio 0.06 (the default) of 12 steps, rounded up: a 1-step warmup, then a linear decay reaching zero
    # at the last optimizer step.
    assert json.loads((out / "config.json").read_text())["resolved"]["warmup_steps"] == 1
    assert {r["step"]: r["lr"] for r in logs} == pytest.approx({s: 1e-3 * (12 - s) / 11 for s in range(2, 13, 2)})
    assert logs[-1]["lr"] == 0.0


def test_reload_parity_in_process(bert_run):
    out, results = bert_run
    metrics = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    for key in ("macro_f1", "accuracy", "loss", "num_samples"):
        assert metrics[key] == results["validation"][key], key
    assert results["validation_reloaded"]["macro_f1"] == results["validation"]["macro_f1"]
    test_metrics = evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert test_metrics["macro_f1"] == results["test"]["macro_f1"]
    saved = json.loads((out / "eval_test.json").read_text())
    assert saved["macro_f1"] == results["test"]["macro_f1"] and set(saved["per_class"]) == {
        "food",
        "sports",
        "technology",
        "weather",
    }
    preds = read_jsonl(out / "predictions_test.jsonl")
    assert len(preds) == 16 and [p["idx"] for p in preds] == list(range(16))
    assert preds[0]["text"] == "The goalkeeper was sent off in the first half." and preds[0]["gold"] == "sports"
    accuracy = sum(p["gold"] == p["pred"] for p in preds) / len(preds)
    assert accuracy == pytest.approx(results["test"]["accuracy"])
    assert sum(p["loss"] for p in preds) / len(preds) == pytest.approx(results["test"]["loss"])
    assert (out / "confusion_test.png").stat().st_size > 1000


def test_evaluate_cli_uses_latest_run_and_prints_json_last(bert_run):
    out, _ = bert_run
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "evaluate.py"),
            "--split",
            "validation",
            "--runs_root",
            str(out.parent / "runs"),
            "--max_samples",
            "5",
        ],
        capture_output=True,
        text=True,
        cwd=out.parent,
        check=True,
    )
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["split"] == "validation" and last["num_samples"] == 5


def test_refuses_to_overwrite_a_run(bert_run, tiny_bert):
    out, _ = bert_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=r"already holds a run.*--overwrite_output_dir"):
        train.main(tiny_args(tiny_bert, out))
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def test_gradient_accumulation_step_count(tiny_bert, tmp_path):
    # 48 rows, batch 8: 6 micro-batches an epoch; accumulation 4 -> ceil(6 / 4) = 2 optimizer steps an epoch.
    out = tmp_path / "run"
    results = train.main(
        tiny_args(
            tiny_bert,
            out,
            None,
            "--gradient_accumulation_steps",
            "4",
            "--num_train_epochs",
            "3",
            "--logging_steps",
            "1",
        )
    )
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["steps_per_epoch"] == 2 and resolved["max_steps"] == 6 and resolved["effective_batch_size"] == 32
    assert results["global_step"] == 6
    logs = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in logs] == [1, 2, 3, 4, 5, 6] and logs[-1]["lr"] == 0.0


@pytest.mark.parametrize(
    "flags, effective",
    [
        # 6 micro-batches an epoch, accumulation 10: every optimizer step is the whole epoch, 48 rows, not 80.
        (["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "10"], 48),
        # A batch larger than the data: the one batch holds the 48 rows.
        (["--per_device_train_batch_size", "100"], 48),
    ],
)
def test_the_effective_batch_recorded_is_what_a_step_trains_on(flags, effective, tiny_bert, tmp_path):
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, None, *flags, "--num_train_epochs", "2"))
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["steps_per_epoch"] == 1 and results["global_step"] == 2
    assert resolved["effective_batch_size"] == effective
    assert f"an optimizer step trains on at most {effective} rows" in (out / "train.log").read_text()


def test_max_steps_and_early_stopping(tiny_bert, tmp_path):
    out = tmp_path / "run"
    # A learning rate of ~0 never improves on the first evaluation, so patience 1 stops at the second one.
    results = train.main(
        tiny_args(
            tiny_bert,
            out,
            None,
            "--max_steps",
            "20",
            "--eval_steps",
            "2",
            "--learning_rate",
            "1e-12",
            "--early_stopping_patience",
            "1",
            "--classifier_dropout",
            "0",
        )
    )
    assert results["stopped_early"] and results["global_step"] == 4 and results["best_step"] == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        # 2 epochs of 6 steps, evaluated at each epoch's end: step 6 is the one evaluation before the last (12).
        ([], r"evaluates 1 time before its last step \(at each epoch's end, every 6 steps\).*give --eval_steps 5"),
        # Shorter than one evaluation interval: only the last step is evaluated.
        (["--max_steps", "3", "--eval_steps", "5"], r"evaluates 0 times before its last step .*give --eval_steps 1"),
        (["--max_steps", "2"], r"evaluates 0 times before its last step .*give more --max_steps"),
    ],
)
def test_early_stopping_that_cannot_stop_the_run_is_said(flags, message, tiny_bert, tmp_path):
    """Said, not refused (one patience across a campaign's datasets merely never fires on a small one)."""
    cfg = parse_config(tiny_args(tiny_bert, tmp_path / "run", None, "--early_stopping_patience", "1", *flags))
    max_steps = cfg.max_steps or 12
    said = train.idle_patience(cfg, 6, max_steps)
    assert re.match(r"--early_stopping_patience 1 cannot stop this run: .*" + message, said), said
    assert said.endswith("for early stopping to act).")
    frequent = parse_config(
        [*tiny_args(tiny_bert, tmp_path, None), "--early_stopping_patience", "1", "--eval_steps", "2"]
    )
    assert train.idle_patience(frequent, 6, 12) is None  # 5 evaluations before step 12: a stop can happen


def test_same_seed_same_weights(tiny_bert, tmp_path):
    weights = []
    for name in ("a", "b"):
        train.main(tiny_args(tiny_bert, tmp_path / name, None, "--num_train_epochs", "1", "--seed", "7"))
        weights.append(load_file(tmp_path / name / "best_model" / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_python_and_accelerate_launch_train_the_same_run(precision, tiny_bert, tmp_path):
    """A colleague's `accelerate launch train.py` (one process) and my `python train.py` of the same flags give the
    same numbers: python train.py takes the precision from ACCELERATE_MIXED_PRECISION, as accelerate sets it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launchers = {
        "python": ([sys.executable], env | {"ACCELERATE_MIXED_PRECISION": precision}),
        "accelerate": ([*ACCELERATE_LAUNCH, "--num_processes", "1", "--mixed_precision", precision], env),
    }
    for name, (launcher, launch_env) in launchers.items():
        args = tiny_args(tiny_bert, tmp_path / name, None, "--eval_steps", "3", "--logging_steps", "1")
        proc = subprocess.run(
            [*launcher, str(REPO / "train.py"), *args], env=launch_env, capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = (json.loads((tmp_path / n / "results.json").read_text()) for n in launchers)
    for name in launchers:
        assert json.loads((tmp_path / name / "config.json").read_text())["resolved"]["mixed_precision"] == precision
    for key in ("best_step", "validation", "test", "train_samples"):
        assert ours[key] == theirs[key], key
    losses = [[r["loss"] for r in read_jsonl(tmp_path / n / "metrics.jsonl") if "loss" in r] for n in launchers]
    assert losses[0] == losses[1] and len(losses[0]) == 12
    for name in ("predictions_test.jsonl", "predictions_validation.jsonl", "best_model/model.safetensors"):
        assert (tmp_path / "python" / name).read_bytes() == (tmp_path / "accelerate" / name).read_bytes(), name


def test_modernbert_sentence_pairs_int_labels_with_carved_validation(tiny_modernbert, tmp_path):
    # One file with no validation split, integer labels named by labels.json, sentence pairs.
    rows = [
        (f"the {w} sat", f"on the {v}", i % 3)
        for i, (w, v) in enumerate(zip(["cat", "dog", "bird", "fish"] * 15, ["mat", "rug", "sofa"] * 20, strict=True))
    ]
    data = write_csv(tmp_path / "data" / "pairs.csv", rows, header=("premise", "hypothesis", "y"))
    (data.parent / "labels.json").write_text(json.dumps({"y": ["no", "maybe", "yes"]}))
    out = tmp_path / "run"
    results = train.main(
        tiny_args(
            tiny_modernbert,
            out,
            data,
            "--text_column",
            "premise",
            "--text_pair_column",
            "hypothesis",
            "--label_column",
            "y",
            "--validation_split_ratio",
            "0.25",
        )
    )
    assert results["validation"]["num_samples"] == 15 and results["test"] is None
    assert "carved 15 of 60 train rows as validation (stratified, seed 42)" in (out / "train.log").read_text()
    best_config = json.loads((out / "best_model" / "config.json").read_text())
    assert best_config["id2label"] == {"0": "no", "1": "maybe", "2": "yes"}
    assert best_config["backbone_config"]["model_type"] == "modernbert"
    metrics = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    assert metrics["macro_f1"] == results["validation"]["macro_f1"]
    assert json.loads((out / "predictions_validation.jsonl").read_text().splitlines()[0])["text_pair"].startswith(
        "on the"
    )


@pytest.mark.parametrize(
    "arch, pooling, precision",
    [
        # --pooling auto: "pooler" where the checkpoint stores the backbone's pretrained pooler (the tiny RoBERTa, ALBERT
        # and MPNet are saved with theirs), "cls" where the architecture has none. bf16 on the two whose attention
        # differs most from BERT's: RoBERTa's offset positions, DeBERTa-v3's disentangled relative attention.
        ("roberta", "pooler", "bf16"),
        ("distilbert", "cls", "no"),
        ("albert", "pooler", "no"),
        ("electra", "cls", "no"),
        ("deberta-v2", "cls", "bf16"),
        ("mpnet", "pooler", "no"),
    ],
)
def test_other_backbones_reload_to_the_scores_training_recorded(arch, pooling, precision, tmp_path, monkeypatch):
    """train.main, then `evaluate.py --split validation/test` on best_model/ (the backbone's folder gone) gives the
    numbers results.json recorded, in the run's precision and with the pooling auto chose (BERT:
    test_reload_parity_in_process; ModernBERT: test_modernbert_sentence_pairs_int_labels_with_carved_validation)."""
    import shutil

    from model import POOLERS, EncoderClassifier

    model = make_tiny_model(tmp_path / arch, arch)
    out = tmp_path / "run"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", precision)  # as `accelerate launch --mixed_precision` sets it
    results = train.main(tiny_args(model, out, None, "--max_steps", "2"))
    # `python evaluate.py` with no launcher, on a machine without the backbone: best_model/ is all it reads.
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    shutil.rmtree(model)
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["mixed_precision"] == precision and resolved["pooling"] == pooling
    assert json.loads((out / "best_model" / "config.json").read_text())["pooling"] == pooling
    assert type(EncoderClassifier.from_pretrained(out / "best_model").pooler) is POOLERS[pooling]
    for split in ("validation", "test"):
        metrics = evaluate.main(["--split", split, "--run_dir", str(out)])
        for key in ("macro_f1", "accuracy", "loss", "num_samples"):
            assert metrics[key] == results[split][key], (split, key)
    preds = read_jsonl(out / "predictions_test.jsonl")
    assert [p["idx"] for p in preds] == list(range(16))
    assert sum(p["gold"] == p["pred"] for p in preds) / len(preds) == pytest.approx(results["test"]["accuracy"])


def test_a_backbone_with_one_token_type_takes_sentence_pairs_from_a_bert_style_tokenizer(tmp_path):
    """RoBERTa-family backbones were pretrained with one token type; a BERT-style tokenizer (klue/roberta-base ships
    one) still marks a pair's second text as type 1, which their embeddings have no row for."""
    from transformers import AutoTokenizer

    from model import EncoderClassifier

    folder = make_tiny_model(tmp_path / "xlmr", "xlm-roberta")
    classifier = EncoderClassifier.from_backbone(str(folder), {0: "a", 1: "b"}).eval()
    batch = AutoTokenizer.from_pretrained(folder)(["the cat sat"], ["on the mat"], return_tensors="pt")
    assert batch["token_type_ids"].max() == 1
    with torch.no_grad():
        logits = classifier(**batch).logits
        # The one type it has, as its own tokenizer (which returns no token types) would have it read.
        alone = classifier(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(logits, alone)


def test_best_model_of_a_compiled_model_reloads(tiny_bert, tmp_path):
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from model import EncoderClassifier

    model = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"})
    compiled = torch.compile(model)  # lazy: nothing is compiled until a forward pass
    train.save_best_model(
        Accelerator(), compiled, AutoTokenizer.from_pretrained(tiny_bert), tmp_path / "best_model", {"step": 0}
    )
    saved = load_file(tmp_path / "best_model" / "model.safetensors")
    assert not any(k.startswith("_orig_mod.") for k in saved)
    reloaded = EncoderClassifier.from_pretrained(tmp_path / "best_model")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in reloaded.state_dict().items())


def test_overwrite_output_dir_replaces_the_previous_run(tiny_bert, tmp_path):
    out = tmp_path / "run"
    train.main(
        tiny_args(tiny_bert, out, None, "--max_steps", "4", "--checkpointing_steps", "2", "--logging_steps", "1")
    )
    assert (out / "checkpoints").is_dir()
    results = train.main(
        tiny_args(tiny_bert, out, None, "--max_steps", "2", "--overwrite_output_dir", "--logging_steps", "1")
    )
    assert results["global_step"] == 2 and not (out / "checkpoints").exists()
    assert max(r["step"] for r in read_jsonl(out / "metrics.jsonl")) == 2
    assert "removed the previous run's results.json, metrics.jsonl, checkpoints" in (out / "train.log").read_text()


def test_a_second_run_in_one_process_takes_its_own_precision(tiny_bert, tmp_path, monkeypatch):
    """train.main called in a loop (a notebook, a Python sweep): accelerate's state is a process-wide singleton, and
    a bf16 run's must not make the next run, launched without mixed precision, bf16 as well."""
    import accelerate.state

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    train.main(tiny_args(tiny_bert, tmp_path / "bf16", None, "--max_steps", "2"))
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    # As the test suite's own reset would otherwise hide it: the state the first run left is still there.
    assert accelerate.state.AcceleratorState._shared_state.get("_mixed_precision") == "bf16"
    train.main(tiny_args(tiny_bert, tmp_path / "fp32", None, "--max_steps", "2"))
    precision = {
        p: json.loads((tmp_path / p / "config.json").read_text())["resolved"]["mixed_precision"]
        for p in ("bf16", "fp32")
    }
    assert precision == {"bf16": "bf16", "fp32": "no"}
