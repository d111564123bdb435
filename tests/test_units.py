"""Unit tests: config parsing, label space, bad input, weight-decay groups, metrics, samplers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
import utils
from config import ConfigError, TrainConfig, file_overrides, parse_config
from conftest import REPO, SHARED_DATA, make_tiny_model, tiny_args, write_csv
from data import (
    LengthGroupedBatchSampler,
    SortedBatchSampler,
    build_label_space,
    load_splits,
    padding_ratio,
    split_digests,
)
from evaluate import compute_metrics
from model import EncoderClassifier
from utils import UsageError

# ---- config ------------------------------------------------------------------------------------------------------


def test_config_file_then_cli_override(tmp_path):
    (tmp_path / "run.yaml").write_text("learning_rate: 1.0e-4\nseed: 3\ngroup_by_length: false\n")
    cfg = parse_config(["--config", str(tmp_path / "run.yaml"), "--seed", "9"])
    assert (cfg.learning_rate, cfg.seed, cfg.group_by_length) == (1e-4, 9, False)
    (tmp_path / "run.json").write_text(json.dumps({"max_steps": 5}))
    assert parse_config(["--config", str(tmp_path / "run.json"), "--no-group_by_length"]).max_steps == 5
    assert parse_config([]) == TrainConfig()


def test_a_flag_over_a_config_file_value_is_named_with_both_values(tmp_path):
    """--config run.yaml --learning_rate 3e-5 replaces the file's 2e-5: the line names both (a reproduction from the
    file alone would not match); a flag repeating the file's value, or one the file lacks, is no override."""
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 2e-5\nseed: 3\ngroup_by_length: true\nlevel_loss_weights: [1, 2]\n")
    assert file_overrides(["--config", str(config), "--learning_rate", "3e-5"]) == (
        f"--learning_rate 3e-05 on the command line overrides {config}'s 2e-05"
    )
    argv = ["--config", str(config), "--no-group_by_length", "--seed", "3", "--level_loss_weights", "1", "0.5"]
    assert file_overrides([*argv, "--max_steps", "5"]) == (
        f"--group_by_length false on the command line overrides {config}'s true; "
        f"--level_loss_weights 1.0 0.5 on the command line overrides {config}'s 1.0 2.0"
    )
    assert file_overrides(["--config", str(config), "--seed", "3", "--max_steps", "5"]) is None
    assert file_overrides(["--learning_rate", "3e-5"]) is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learning_rate", "0"], "--learning_rate must be > 0"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be a positive integer"),
        (["--warmup_ratio", "1.5"], "--warmup_ratio"),
        # The steps are the warmup: the ratio was ignored without a word.
        (["--warmup_ratio", "0.2", "--warmup_steps", "5"], "--warmup_ratio 0.2 does nothing with --warmup_steps 5"),
        (["--metric_for_best_model", "f1"], "--metric_for_best_model 'f1' is unknown"),
        # nan passes every comparison, so it needs its own check; inf overflows the step counts.
        (["--max_grad_norm", "nan"], "--max_grad_norm must be a finite number, got nan"),
        (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
        (["--num_train_epochs", "inf"], "--num_train_epochs must be a finite number"),
        (["--level_loss_weights", "1", "nan"], "--level_loss_weights must be a finite number"),
        # A negative weight climbs that level's loss; all zero trains nothing: both ran without a word.
        (["--label_columns", "a", "b", "--level_loss_weights", "-1", "1"], r"--level_loss_weights must be >= 0"),
        (["--label_columns", "a", "b", "--level_loss_weights", "0", "0"], "--level_loss_weights are all 0"),
        (["--adam_beta1", "1.0"], r"--adam_beta1 must be in \[0, 1\)"),
        (["--adam_epsilon", "-1"], r"--adam_epsilon must be > 0 \(AdamW divides by it\), got -1.0"),
        # numpy's and scikit-learn's seeds are 32-bit: another value was a traceback from inside set_seed.
        (["--seed", "-1"], r"--seed must be in \[0, 4294967295\], got -1"),
        (["--seed", str(2**32)], r"--seed must be in \[0, 4294967295\], got 4294967296"),
        # Without checkpoints there is nothing to keep or delete: the flag would be ignored.
        (["--save_total_limit", "2"], "--save_total_limit only applies with --checkpointing_steps"),
        # --label_columns names every label column: the single one was ignored without a word.
        (
            ["--label_column", "label_coarse", "--label_columns", "label_coarse", "label_fine"],
            r"^--label_column 'label_coarse' is not read with --label_columns \(the labels come from label_coarse, "
            r"label_fine\); drop --label_column\.$",
        ),
    ],
)
def test_config_validation_names_the_flag(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(argv)


def test_label_columns_with_the_default_label_column_is_accepted():
    # label_column has a default ("label"); only another value is a choice that --label_columns would ignore.
    cfg = parse_config(["--label_columns", "label_coarse", "label_fine"])
    assert (cfg.label_column, cfg.label_columns) == ("label", ["label_coarse", "label_fine"])
    assert parse_config(["--label_columns", "a", "b", "--multi_label"]).multi_label


def test_help_gives_every_flag_its_default():
    from config import build_parser

    parser = build_parser(TrainConfig, "")
    helps = {a.dest: a.help for a in parser._actions if a.help != argparse.SUPPRESS and a.dest != "help"}
    assert set(helps) == {f.name for f in dataclasses.fields(TrainConfig)} | {"config"}
    said = ("(default: ", "Default: ")
    assert [name for name, text in helps.items() if name != "config" and not any(d in text for d in said)] == []
    assert helps["group_by_length"].endswith("(default: on)") and helps["label_columns"].endswith("(default: None)")


def test_unknown_pooling_or_head_is_refused_before_anything_is_loaded(tmp_path, monkeypatch):
    import train

    monkeypatch.setattr(train, "load_splits", lambda cfg: pytest.fail("data was read"))
    with pytest.raises(
        ConfigError, match="--pooling 'attention' is unknown; choose one of: cls, cls_mean, last, max, mean"
    ):
        train.main(["--pooling", "attention", "--output_dir", str(tmp_path / "run")])
    with pytest.raises(ConfigError, match="--head 'deep' is unknown; choose one of: linear, mlp"):
        train.main(["--head", "deep", "--output_dir", str(tmp_path / "run")])
    # A typo gets the name it is closest to, as an unknown --config key does.
    with pytest.raises(ConfigError, match=r"--pooling 'meen' is unknown \(did you mean mean\?\); choose one of"):
        train.main(["--pooling", "meen", "--output_dir", str(tmp_path / "run")])
    with pytest.raises(ConfigError, match=r"--report_to 'tensorbord' is unknown \(did you mean tensorboard\?\)"):
        train.main(["--report_to", "tensorbord", "--output_dir", str(tmp_path / "run")])


def test_model_setting_defaults_are_the_model_configs():
    """config.py cannot import model.py (no torch there), so its defaults for model settings are checked here."""
    import dataclasses

    from model import MODEL_DEFAULTS, EncoderClassifierConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.metadata.get("model")}
    # Except pooling: the flag's "auto" is resolved per checkpoint before a model config is built, and the config's
    # own default stays "cls", what a saved best_model/config.json without a pooling key means.
    assert {k: defaults[k] for k in MODEL_DEFAULTS} == MODEL_DEFAULTS | {"pooling": "auto"}
    assert all(getattr(EncoderClassifierConfig(), k) == v for k, v in MODEL_DEFAULTS.items())


def test_config_file_unknown_key_suggests(tmp_path):
    (tmp_path / "bad.yaml").write_text("learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rat \\(did you mean learning_rate\\?\\)"):
        parse_config(["--config", str(tmp_path / "bad.yaml")])


# ---- data and labels ---------------------------------------------------------------------------------------------


def test_label_space_rules():
    assert build_label_space(["pos", "neg", "pos"], None) == (["neg", "pos"], {"neg": 0, "pos": 1})
    assert build_label_space([3, 1, 3], None) == (["1", "3"], {1: 0, 3: 1})
    # Ids, and the names themselves (a split written by hand may give those).
    assert build_label_space([0, 2], ["a", "b", "c"]) == (["a", "b", "c"], {0: 0, 1: 1, 2: 2, "a": 0, "b": 1, "c": 2})
    assert build_label_space(["b"], ["a", "b"])[1] == {"a": 0, "b": 1}
    with pytest.raises(UsageError, match="out of range for the 2 label names"):
        build_label_space([0, 5], ["a", "b"])


def test_real_data_with_labels_json():
    data = load_splits(TrainConfig(dataset=str(SHARED_DATA / "emotion"), max_train_samples=50, max_eval_samples=20))
    assert data.label_names == ["sadness", "joy", "love", "anger", "fear", "surprise"]
    assert [len(data.splits[s]) for s in ("train", "validation", "test")] == [50, 20, 20]
    assert data.splits["train"][0]["text"] == "i didnt feel humiliated" and data.splits["train"][0]["label"] == 0


def test_carved_validation_is_stratified_seeded_and_disjoint(tmp_path):
    rows = [(f"text number {i}", "common" if i % 4 else "rare") for i in range(200)]
    path = write_csv(tmp_path / "all.csv", rows)
    a = load_splits(TrainConfig(dataset=str(path), validation_split_ratio=0.2, seed=1))
    b = load_splits(TrainConfig(dataset=str(path), validation_split_ratio=0.2, seed=1))
    c = load_splits(TrainConfig(dataset=str(path), validation_split_ratio=0.2, seed=2))
    val = a.splits["validation"]
    assert len(val) == 40 and sum(1 for y in val["label"] if a.label_names[y] == "rare") == 10  # 25% as in train
    assert set(val["text"]).isdisjoint(a.splits["train"]["text"]) and len(a.splits["train"]) == 160
    assert list(val["text"]) == list(b.splits["validation"]["text"]) != list(c.splits["validation"]["text"])
    assert any("carved 40 of 200" in n for n in a.notes) and "test" not in a.splits
    # The same rows in another format and folder carve alike; --max_train_samples keeps the first of the rows left
    # for training and leaves the carved validation split as it is.
    import pandas as pd

    other = tmp_path / "elsewhere"
    other.mkdir()
    pd.read_csv(path).to_parquet(other / "train.parquet")
    d = load_splits(TrainConfig(dataset=str(other), validation_split_ratio=0.2, seed=1, max_train_samples=5))
    assert list(d.splits["validation"]["text"]) == list(val["text"])
    assert list(d.splits["train"]["text"]) == list(a.splits["train"]["text"][:5])


def test_a_validation_split_too_small_to_choose_a_model_on_is_warned_about(tmp_path):
    """A carve of 2 rows (12 train rows at the default ratio 0.1) picks the best model on noise: said."""
    rows = [(f"text number {i}", "a" if i % 2 else "b") for i in range(12)]
    path = write_csv(tmp_path / "all.csv", rows)
    data = load_splits(TrainConfig(dataset=str(path)))
    assert len(data.splits["validation"]) == 2
    assert any(n.startswith("warning: the validation split has 2 rows (fewer than 10)") for n in data.notes)
    # Enough rows, or fewer than the classes: both as expected.
    big = write_csv(tmp_path / "big.csv", [(f"text {i}", "ab"[i % 2]) for i in range(200)])
    assert not any(n.startswith("warning:") for n in load_splits(TrainConfig(dataset=str(big))).notes)
    many = write_csv(tmp_path / "many.csv", [(f"text {i}", f"class{i % 30}") for i in range(200)])
    notes = load_splits(TrainConfig(dataset=str(many))).notes
    assert any(n.startswith("warning: the validation split has 20 rows (fewer than 30)") for n in notes)


def test_split_digests_follow_the_rows_not_the_folder(tmp_path):
    """A copied dataset folder is the same data (equal digests); a test row edited in the copy changes the test
    split's digest only."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(REPO / "sample_data", copy)
    original = split_digests(load_splits(TrainConfig(dataset=str(REPO / "sample_data"))).splits)
    assert split_digests(load_splits(TrainConfig(dataset=str(copy))).splits) == original
    lines = (copy / "test.csv").read_text().splitlines(keepends=True)
    (copy / "test.csv").write_text("".join([lines[0], lines[1].replace(",", " again,", 1), *lines[2:]]))
    edited = split_digests(load_splits(TrainConfig(dataset=str(copy))).splits)
    assert edited["test"] != original["test"]
    assert {k: v for k, v in edited.items() if k != "test"} == {k: v for k, v in original.items() if k != "test"}


def test_folder_with_dev_split_and_empty_text(tmp_path):
    write_csv(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg"), ("   ", "pos"), ("fine", "pos")])
    write_csv(tmp_path / "dev.csv", [("nice", "pos"), ("awful", "neg")])
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert len(data.splits["train"]) == 3 and len(data.splits["validation"]) == 2
    assert "dropped 1 row of the train split with empty text" in data.notes


@pytest.mark.parametrize(
    "setup, flags, message",
    [
        (
            "missing_column",
            ["--text_column", "txt"],
            "--text_column 'txt' is not a column of the train split .* Did you mean 'text'",
        ),
        ("unknown_label", [], "the test split has labels not seen in train in .label.: 'neutral' \\(1x\\)"),
        ("missing_path", [], "no such file or folder"),
        ("null_label", [], "1 row with no label"),
        ("corrupt", [], "cannot read"),
        ("too_long", ["--max_seq_length", "4096"], "--max_seq_length 4096 exceeds the model's limit of 128"),
        ("no_train", [], "no train file found"),
        ("empty_split", [], "test.csv holds no rows \\(an empty split\\)"),
        ("blank_text", ["--empty_text", "error"], "the train split has 1 row with empty or whitespace-only text"),
        ("out_of_range", [], "label ids \\[7\\] are out of range for the 2 label names"),
        ("not_an_id", [], "labels .*1.5 are neither integer ids nor names"),
        (
            "one_class",
            [],
            "the train split's 'label' column holds one class \\('pos'\\): a classifier needs two or more",
        ),
    ],
)
def test_bad_input_fails_before_any_model_is_built(setup, flags, message, tiny_bert, tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_csv(data / "train.csv", [("good", "pos"), ("bad", "neg")] * 4)
    write_csv(data / "test.csv", [("good", "pos"), ("meh", "neutral")])
    if setup == "missing_path":
        data = tmp_path / "nowhere"
    elif setup == "null_label":
        (data / "train.csv").write_text("text,label\ngood,pos\nbad,\n")
    elif setup == "no_train":
        (data / "train.csv").rename(data / "training_data.csv")
    elif setup == "empty_split":
        (data / "test.csv").write_text("text,label\n")
    elif setup == "blank_text":
        (data / "train.csv").write_text("text,label\ngood,pos\n   ,neg\nbad,neg\n")
    elif setup in ("out_of_range", "not_an_id"):
        (data / "labels.json").write_text('{"label": ["neg", "pos"]}')
        (data / "train.csv").write_text(
            "text,label\ngood,1\nbad,0\n" + ("odd,7\n" if setup == "out_of_range" else "odd,1.5\n")
        )
        (data / "test.csv").write_text("text,label\ngood,1\n")
    elif setup == "one_class":
        write_csv(data / "train.csv", [("good", "pos"), ("fine", "pos")] * 4)
        write_csv(data / "test.csv", [("good", "pos")])
    elif setup == "corrupt":
        (data / "train.parquet").write_bytes(b"not a parquet file")
        (data / "train.csv").unlink()
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=message):
        train.main(tiny_args(tiny_bert, tmp_path / "run", data, *flags))
    assert not (tmp_path / "run" / "config.json").exists()


def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            "--dataset",
            str(tmp_path / "missing.csv"),
            "--output_dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --dataset {tmp_path / 'missing.csv'}: no such file or folder."]
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "--run_dir", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "is not a run directory" in proc.stderr and "Traceback" not in proc.stderr


# ---- model and optimizer -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert", "modernbert"])
def test_no_weight_decay_on_biases_and_norms_by_module_type(arch, tmp_path):
    model = EncoderClassifier.from_backbone(str(make_tiny_model(tmp_path / arch, arch)), {0: "a", 1: "b"})
    no_decay = model.no_decay_parameter_names()
    norm_params = {
        f"{m}.{p}"
        for m, mod in model.named_modules()
        if isinstance(mod, torch.nn.LayerNorm)
        for p, _ in mod.named_parameters(recurse=False)
    }
    assert norm_params and norm_params <= no_decay
    if arch == "modernbert":  # its norms are named attn_norm / mlp_norm / final_norm, not LayerNorm
        assert {n for n in no_decay if "attn_norm" in n or "mlp_norm" in n or "final_norm" in n}
    for name, _ in model.named_parameters():
        expected_no_decay = name.endswith("bias") or name in norm_params
        assert (name in no_decay) == expected_no_decay, name
    optimizer = train.build_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert len(decay_of) == len(list(model.parameters()))
    assert all(decay_of[id(p)] == (0.0 if n in no_decay else 0.1) for n, p in model.named_parameters())


@pytest.mark.parametrize("max_norm", [1e-3, 1e6, float("inf")], ids=["clipped", "not-clipped", "no-clipping"])
def test_clipping_folded_into_the_fused_step_updates_as_clip_then_step(tiny_bert, max_norm):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    torch.manual_seed(0)
    models = [EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"}) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    for model in models:
        model.eval()  # no dropout: both models get the same gradients
    optimizers = [train.build_optimizer(m, TrainConfig(weight_decay=0.01), torch.device("cpu")) for m in models]
    accelerator = SimpleNamespace(scaler=None, distributed_type=DistributedType.NO, clip_grad_norm_=None)
    batch = {"input_ids": torch.randint(5, 60, (4, 12)), "labels": torch.tensor([0, 1, 1, 0])}
    for step in range(3):
        for model in models:
            model(**batch).loss.backward()
        reference = torch.nn.utils.clip_grad_norm_(models[0].parameters(), max_norm)
        optimizers[0].step()
        norm, grad_scale = train.clip_gradients(accelerator, models[1], optimizers[1], max_norm)  # never accelerate's
        train.step_clipped(optimizers[1], grad_scale)
        assert not hasattr(optimizers[1], "grad_scale")  # set for that step only
        # The norm before clipping, as torch reports it (later steps start from weights that may differ by rounding).
        assert torch.equal(norm, reference) if step == 0 else torch.allclose(norm, reference, rtol=1e-5)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
    # The moments as well as the weights: Adam's step hardly depends on the gradients' scale, its moments do.
    for key in ("param", "exp_avg", "exp_avg_sq"):
        ours, theirs = (
            [p if key == "param" else optimizer.state[p][key] for p in model.parameters()]
            for model, optimizer in ((models[1], optimizers[1]), (models[0], optimizers[0]))
        )
        scale = max(float(t.detach().abs().max()) for t in theirs)
        for mine, reference in zip(ours, theirs, strict=True):
            if max_norm > 1:  # nothing clipped: the same bits
                assert torch.equal(mine, reference), key
            else:  # clipped: a division instead of a multiply, so rounding only (to the largest value's scale)
                torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-5 * scale)


def test_backbone_weights_loaded_and_pooler_dropped(tiny_bert):
    from transformers import AutoModel

    model = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"})
    reference = AutoModel.from_pretrained(tiny_bert).state_dict()
    state = model.backbone.state_dict()
    assert not any(k.startswith("pooler") for k in state)
    assert all(torch.equal(v, reference[k]) for k, v in state.items())


# ---- metrics -----------------------------------------------------------------------------------------------------


def test_metrics_against_hand_computed_values():
    labels = np.array([0, 0, 1, 1, 2])
    logits = np.log(np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]]))
    m = compute_metrics(labels, logits, ["a", "b", "c"])
    # preds 0,1,1,1,2: class a P=1 R=.5 F1=2/3; b P=2/3 R=1 F1=.8; c F1=1.
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 0.8 + 1) / 5)
    assert m["macro_precision"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.8, 0.2, 0.8, 0.6, 0.6])))
    assert m["num_samples"] == 5 and m["per_class"]["b"]["recall"] == 1.0


# ---- samplers ----------------------------------------------------------------------------------------------------


def test_length_grouped_batches_cover_everything_once_longest_first():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 100, size=1001).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=32, seed=3)
    sampler.set_epoch(0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1001))
    assert max(lengths[i] for i in batches[0]) == max(lengths)
    assert [len(b) for b in batches[:-1]] == [32] * 31 and len(batches[-1]) == 1001 % 32
    assert batches == list(sampler)  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert len(sampler) == len(batches)


@pytest.mark.parametrize("group_by_length", [True, False])
def test_every_seed_and_epoch_has_its_own_batch_order(group_by_length):
    # Seeds are a campaign's independent repeats: seed 2's first epoch must not replay seed 1's second.
    lengths = np.random.default_rng(0).integers(5, 100, size=300).tolist()
    orders = []
    for seed in range(1, 6):
        sampler = LengthGroupedBatchSampler(lengths, batch_size=32, seed=seed, group_by_length=group_by_length)
        for epoch in range(4):
            sampler.set_epoch(epoch)
            orders.append(tuple(i for b in sampler for i in b))
    assert len(set(orders)) == len(orders)


def test_eval_batches_sorted_longest_first():
    lengths = [3, 9, 1, 7, 5]
    batches = list(SortedBatchSampler(lengths, batch_size=2))
    assert batches == [[1, 3], [4, 0], [2]]


@pytest.mark.parametrize("name", ["emotion", "sst2"])
def test_length_grouping_padding_ratio_on_real_data(name, minilm_path):
    from transformers import AutoTokenizer

    from data import tokenize_splits

    data = load_splits(TrainConfig(dataset=str(SHARED_DATA / name), max_train_samples=16000))
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    lengths = tokenize_splits({"train": data.splits["train"]}, tokenizer, 128)["train"]["length"]
    grouped = LengthGroupedBatchSampler(lengths, 32, seed=0)
    random = LengthGroupedBatchSampler(lengths, 32, seed=0, group_by_length=False)
    assert padding_ratio(lengths, list(grouped)) <= 1.05
    assert padding_ratio(lengths, list(random)) >= 1.8  # what the common recipe pays


def test_length_grouped_batches_shard_whole_across_two_ranks():
    from accelerate.data_loader import BatchSamplerShard

    lengths = np.random.default_rng(1).integers(3, 60, size=203).tolist()
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=0)
    batches = list(sampler)  # 12 full batches + one of 11, the short one last
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 7  # equal step counts, so DDP ranks never wait on each other
    # Each rank gets whole batches of the grouped order, alternating; nothing is lost.
    assert shards[0][:6] == batches[0:12:2] and shards[1][:6] == batches[1:12:2]
    seen = [i for shard in shards for batch in shard for i in batch]
    assert set(seen) == set(range(203))
    # Only the last round is completed with repeated rows (Accelerate's even_batches), here 16 + 16 - 11 of them.
    assert len(seen) - 203 == 21


# ---- curves.png ----------------------------------------------------------------------------------------------------


def test_curves_draw_the_metric_that_chose_the_best_model_and_mark_its_step(tmp_path, monkeypatch):
    """A run that keeps its lowest validation loss: the curves must show that loss and where best_model/ comes from,
    not only macro-F1 and accuracy (which may peak elsewhere)."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import report

    lines = []
    for step, (loss, f1) in zip((2, 4, 6), ((0.9, 0.3), (0.5, 0.4), (0.7, 0.6)), strict=True):
        lines.append({"step": step, "loss": loss + 0.1, "lr": 1e-5, "grad_norm": 1.0})
        lines.append({"step": step, "eval_loss": loss, "eval_macro_f1": f1, "eval_accuracy": f1})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (tmp_path / "results.json").write_text(json.dumps({"metric": "loss", "best_step": 4}))
    drawn = {}
    monkeypatch.setattr(report, "atomic_savefig", lambda fig, path, dpi=100: drawn.update(fig=fig))
    report.plot_curves(tmp_path)
    curves = {line.get_label(): line for ax in drawn["fig"].axes for line in ax.get_lines()}
    assert list(curves["validation loss"].get_ydata()) == [0.9, 0.5, 0.7]
    best = curves["best loss 0.5000 (step 4)"]
    assert (list(best.get_xdata()), list(best.get_ydata())) == ([4], [0.5])
    assert list(curves["validation macro_f1"].get_ydata()) == [0.3, 0.4, 0.6]


def test_ctrl_c_in_a_script_is_one_line_and_exit_130(capsys):
    """Ctrl-C while evaluate.py scores (or report.py, compare.py work) printed a KeyboardInterrupt traceback."""

    def interrupted(_: list[str] | None) -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stop:
        utils.run_cli(interrupted)
    assert stop.value.code == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"


def test_a_default_run_folder_stays_under_the_runs_root_whatever_the_dataset_path(tmp_path, monkeypatch):
    """--dataset .. named the run folder outputs/../MODEL/..., outside outputs/: a parent folder is named by its own
    name."""
    from pathlib import Path

    from utils import default_run_dir

    (tmp_path / "reviews" / "work").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "reviews" / "work")
    for dataset, name in (("..", "reviews"), ("../", "reviews"), (".", "run"), ("../work", "work"), ("org/set", "set")):
        run_dir = default_run_dir("outputs", dataset, "m", 1, "20261205-000000")
        assert run_dir == Path("outputs") / name / "m" / "20261205-000000-seed1", dataset


def test_json_files_keep_names_as_written_and_survive_an_undecodable_path(tmp_path):
    """config.json and metrics.jsonl hold names in UTF-8 as written; a path with a byte no encoding decodes (Python
    keeps it as a lone surrogate) is written as its JSON escape and reads back equal, instead of failing the write."""
    record = {"dataset": "/data/caf\udce9/train.csv", "classes": ["négatif", "喜び"], "note": "a\\b"}
    utils.atomic_write_json(tmp_path / "config.json", record)
    utils.append_jsonl(tmp_path / "metrics.jsonl", record)
    for name in ("config.json", "metrics.jsonl"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert "négatif" in text and json.loads(text) == record, name
