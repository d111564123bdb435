"""Inputs read the way the user wrote them: typed config files, literal CSV text, edited files, teacher label order."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest

import evaluate
import train
from config import ConfigError, TrainConfig, parse_config
from conftest import REPO, tiny_args, write_csv
from data import load_splits, load_unlabeled, tokenize_splits
from utils import UsageError, run_cli

# ---------------------------------------------------------------------------------------------------------------
# --config files: every value converted with its field's type, as the command line would


def test_config_file_values_get_the_field_types(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    # PyYAML (YAML 1.1) reads 5e-5 as a string and 500 as an int; both must land as the fields' types.
    yaml_file.write_text(
        "learning_rate: 5e-5\n"
        "checkpointing_steps: 500\n"
        "max_steps: '40'\n"
        "num_train_epochs: 2\n"
        "group_by_length: 'false'\n"
        "warmup_steps: null\n"
        "label_columns: [coarse, fine]\n"
        "level_loss_weights: ['1', 0.5]\n"
    )
    cfg = parse_config(["--config", str(yaml_file)])
    assert cfg.learning_rate == 5e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.checkpointing_steps == "500"
    assert cfg.max_steps == 40 and cfg.num_train_epochs == 2.0 and isinstance(cfg.num_train_epochs, float)
    assert cfg.group_by_length is False and cfg.warmup_steps is None
    assert cfg.label_columns == ["coarse", "fine"] and cfg.level_loss_weights == [1.0, 0.5]
    # JSON files take the same path; command-line flags still win over the file.
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"learning_rate": "1e-4", "eval_steps": "7", "seed": 3}))
    cfg = parse_config(["--config", str(json_file), "--seed", "5"])
    assert (cfg.learning_rate, cfg.eval_steps, cfg.seed) == (1e-4, 7, 5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("learning_rate: abc", "learning_rate: expected a float, got 'abc'"),
        ("max_steps: 2.5", "max_steps: expected an int or null, got 2.5"),
        ("seed: null", "seed: expected an int, got null"),
        ("multi_label: maybe", "multi_label: expected true or false, got 'maybe'"),
        ("label_columns: coarse", "label_columns: expected a list of strings or null, got 'coarse'"),
        ("level_loss_weights: [1, x]", "level_loss_weights: expected a list of floats or null, got [1, 'x']"),
    ],
)
def test_bad_config_file_value_is_a_config_error_naming_key_and_type(tmp_path, line, message):
    path = tmp_path / "run.yaml"
    path.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        parse_config(["--config", str(path)])
    assert str(err.value) == f"--config {path}: {message}"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("run.yaml", "learning_rate: 1e-4\nseed: 1\nlearning_rate: 5e-5\n"),
        ("run.json", '{"learning_rate": 1e-4, "seed": 1, "learning_rate": 5e-5}'),
    ],
)
def test_a_config_file_key_given_twice_is_refused(tmp_path, name, text):
    """YAML and JSON parsers keep the last of two equal keys without a word: one of the two values would be lost."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"cannot parse it .*'learning_rate' is given twice.*keep one"):
        parse_config(["--config", str(path)])


def test_a_config_file_merge_key_and_its_overrides_are_no_duplicates(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("<<: {learning_rate: 1.0e-4, seed: 3}\nlearning_rate: 2.0e-4\n")
    cfg = parse_config(["--config", str(path)])
    assert (cfg.learning_rate, cfg.seed) == (2e-4, 3)


def test_bad_config_file_value_is_one_error_line_and_exit_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: abc\n")
    monkeypatch.setattr(sys, "argv", ["train.py", "--config", str(path)])
    with pytest.raises(SystemExit) as stopped:
        run_cli(train.main)
    assert stopped.value.code == 2
    assert capsys.readouterr().err == f"error: --config {path}: learning_rate: expected a float, got 'abc'\n"


# ---------------------------------------------------------------------------------------------------------------
# evaluate.py --split train scores the rows the run trained on


def test_evaluate_train_split_uses_the_runs_max_train_samples(tiny_bert, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, "--max_train_samples", "12", "--num_train_epochs", "1"))
    run_cfg = TrainConfig(dataset=str(REPO / "sample_data"), max_train_samples=12)
    trained_on = load_splits(run_cfg).splits["train"]["text"]

    metrics = evaluate.main(["--run_dir", str(out), "--split", "train"])
    assert metrics["num_samples"] == 12
    scored = [json.loads(line)["text"] for line in (out / "predictions_train.jsonl").read_text().splitlines()]
    assert scored == trained_on
    # --max_samples narrows it further, still to the first rows the run trained on.
    assert evaluate.main(["--run_dir", str(out), "--split", "train", "--max_samples", "5"])["num_samples"] == 5


def test_a_max_samples_above_the_rows_the_run_used_is_said_with_both_numbers(tiny_bert, tmp_path, capsys):
    """Fewer rows scored than asked must not pass for the number asked (beside another run's --max_samples 10)."""
    out = tmp_path / "run"
    flags = ("--max_train_samples", "12", "--max_eval_samples", "6", "--num_train_epochs", "1")
    train.main(tiny_args(tiny_bert, out, None, *flags))
    capsys.readouterr()
    assert evaluate.main(["--run_dir", str(out), "--split", "test", "--max_samples", "10"])["num_samples"] == 6
    note = "--max_samples 10 is more than the 6 rows of the test split the run scored (its --max_eval_samples 6): "
    note += "scoring those 6 (--input with the test split's file scores all its rows)"
    assert note in capsys.readouterr().err
    assert evaluate.main(["--run_dir", str(out), "--split", "train", "--max_samples", "20"])["num_samples"] == 12
    assert "20 is more than the 12 rows of the train split the run trained on (its --max_train_samples 12)" in (
        capsys.readouterr().err
    )
    assert evaluate.main(["--run_dir", str(out), "--split", "test", "--max_samples", "6"])["num_samples"] == 6
    assert "--max_samples" not in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# CSV/TSV: only an empty cell is missing; "NA", "None", "null" are text and class names


NA_ROWS = [
    ("NA", "None"),
    ("None", "None"),
    ("null", "None"),
    ("N/A", "None"),
    ("NaN", "None"),
    ("the weather is fine", "weather"),
    ("rain again today", "weather"),
    ("", "weather"),  # truly empty: dropped as empty text
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_na_like_strings_in_csv_are_text_and_labels(tmp_path, suffix):
    import pandas as pd

    folder = tmp_path / "data"
    folder.mkdir()
    sep = "\t" if suffix == ".tsv" else ","
    for split in ("train", "validation"):
        pd.DataFrame(NA_ROWS, columns=["text", "label"]).to_csv(folder / f"{split}{suffix}", sep=sep, index=False)
    data = load_splits(TrainConfig(dataset=str(folder)))
    assert data.label_names == ["None", "weather"]
    assert data.splits["train"]["text"] == [
        "NA",
        "None",
        "null",
        "N/A",
        "NaN",
        "the weather is fine",
        "rain again today",
    ]
    assert "dropped 1 row of the train split with empty text" in data.notes


def test_rows_dropped_for_an_empty_second_text_name_its_column(tmp_path):
    """A pair task whose second text is empty in some rows: the note (and the --empty_text error) names the column,
    so that a user looking through the first text column for empty cells finds none is not sent the wrong way."""
    rows = [(f"question {i}", "" if i in (1, 4) else f"answer {i}", ["no", "yes"][i % 2]) for i in range(8)]
    write_csv(tmp_path / "train.csv", rows, header=("question", "answer", "label"))
    write_csv(tmp_path / "validation.csv", rows[:1] + rows[2:4], header=("question", "answer", "label"))
    cfg = TrainConfig(dataset=str(tmp_path), text_column="question", text_pair_column="answer")
    assert "dropped 2 rows of the train split with empty text in 'answer'" in load_splits(cfg).notes
    with pytest.raises(UsageError, match=r"the train split has 2 rows with empty or whitespace-only text in 'answer'"):
        load_splits(dataclasses.replace(cfg, empty_text="error"))


def test_na_like_strings_in_unlabeled_input_are_text(tmp_path):
    path = write_csv(tmp_path / "new.csv", [("NA",), ("None",), ("",), ("sunny",)], header=("text",))
    ds = load_unlabeled(str(path), TrainConfig(), None)
    assert ds["text"] == ["NA", "None", "", "sunny"]


def test_a_folder_given_as_input_is_named_a_folder(tmp_path):
    # A user pointing --input at a dataset folder was told it did not exist.
    write_csv(tmp_path / "data" / "test.csv", [("sunny",)], header=("text",))
    with pytest.raises(UsageError, match=r"^--input .*data is a folder; give one of its files \(--input .*data/FILE\)"):
        load_unlabeled(str(tmp_path / "data"), TrainConfig(), None)
    with pytest.raises(UsageError, match=r"^--input .*missing.csv: no such file"):
        load_unlabeled(str(tmp_path / "missing.csv"), TrainConfig(), None)


# ---------------------------------------------------------------------------------------------------------------
# A data file edited in place with its mtime kept is read again; an unchanged one hits the caches


def test_edited_file_with_restored_mtime_is_not_served_from_cache(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    folder = tmp_path / "data"
    train_csv = folder / "train.csv"
    old = [(f"sunny day {i}", "weather") if i % 2 else (f"match won {i}", "sports") for i in range(10)]
    write_csv(train_csv, old)
    write_csv(folder / "validation.csv", old[:4])
    data = load_splits(TrainConfig(dataset=str(folder)))
    tokenized = tokenize_splits(data.splits, tokenizer, 32)
    assert data.splits["train"]["text"][0] == "match won 0"

    # Unchanged data: the second load reads the cached token ids rather than writing them again.
    cache_file = tokenized["train"].cache_files[0]["filename"]
    written = os.stat(cache_file).st_mtime_ns
    again = tokenize_splits(load_splits(TrainConfig(dataset=str(folder))).splits, tokenizer, 32)
    assert again["train"].cache_files[0]["filename"] == cache_file and os.stat(cache_file).st_mtime_ns == written

    # Same size, new texts and swapped labels, mtime restored (what cp -p, rsync -a and tar x do).
    stat = os.stat(train_csv)
    new = [(f"rainy day {i}", "sports") if i % 2 else (f"match tied{i}", "weather") for i in range(10)]
    write_csv(train_csv, new)
    assert os.stat(train_csv).st_size == stat.st_size
    os.utime(train_csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    data = load_splits(TrainConfig(dataset=str(folder)))
    assert data.splits["train"]["text"] == [text for text, _ in new]
    assert [data.label_names[i] for i in data.splits["train"]["label"]] == [label for _, label in new]
    tokenized = tokenize_splits(data.splits, tokenizer, 32)
    expected = tokenizer(list(data.splits["train"]["text"]), truncation=True, max_length=32)["input_ids"]
    assert tokenized["train"]["input_ids"] == expected


def test_two_runs_tokenizing_one_dataset_at_once_never_read_a_half_written_cache(tiny_bert, tmp_path, monkeypatch):
    """Parallel runs of one dataset share the token cache (same data, tokenizer and length: one key). The first is
    held mid-write while the second tokenizes: the second must not load the first's unfinished file, and both must
    end with the same, complete token ids."""
    import threading

    import datasets
    from datasets.arrow_writer import ArrowWriter
    from transformers import AutoTokenizer

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "data"
    write_csv(
        folder / "train.csv", [(f"sunny day {i}", "weather") if i % 2 else (f"match {i}", "sports") for i in range(40)]
    )
    splits = {"train": load_splits(TrainConfig(dataset=str(folder))).splits["train"]}
    cache = tmp_path / "cache" / "tokenized"
    writing, go_on = threading.Event(), threading.Event()
    finalize = ArrowWriter.finalize

    def held_finalize(self, *args, **kwargs):
        """The first run's writer stops before its file is complete, until the second run has finished."""
        if threading.current_thread().name == "first":
            writing.set()
            assert go_on.wait(60)
        return finalize(self, *args, **kwargs)

    monkeypatch.setattr(ArrowWriter, "finalize", held_finalize)
    first: dict = {}
    thread = threading.Thread(
        target=lambda: first.update(tokenize_splits(splits, AutoTokenizer.from_pretrained(tiny_bert), 32)), name="first"
    )
    thread.start()
    try:
        assert writing.wait(60)
        assert list(cache.iterdir())  # the first run's unfinished file is there
        second = tokenize_splits(splits, AutoTokenizer.from_pretrained(tiny_bert), 32)
    finally:
        go_on.set()
        thread.join(60)
    expected = AutoTokenizer.from_pretrained(tiny_bert)(list(splits["train"]["text"]), truncation=True, max_length=32)
    assert first["train"]["input_ids"] == second["train"]["input_ids"] == expected["input_ids"]
    # One finished file under the shared key, no leftovers; a third run reads it.
    [cached] = list(cache.iterdir())
    third = tokenize_splits(splits, AutoTokenizer.from_pretrained(tiny_bert), 32)
    assert third["train"].cache_files[0]["filename"] == str(cached)
    assert third["train"]["input_ids"] == expected["input_ids"]


def test_the_token_cache_follows_the_tokenizer_not_its_folder(tiny_bert, tmp_path):
    """The token cache is keyed on what the tokenizer does, not where it was read from: the run's best_model/ copy
    (evaluate.py's tokenizer) and a second model folder with the same vocabulary read the token ids train.py wrote;
    another vocabulary put at the same path does not."""
    import shutil

    from transformers import AutoTokenizer

    data = load_splits(TrainConfig(dataset=str(REPO / "sample_data"))).splits
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    tokenizer.model_max_length = 32  # as train.py sets it, and best_model/ saves it
    first = tokenize_splits(data, tokenizer, 32)["test"].cache_files[0]["filename"]
    tokenizer.save_pretrained(tmp_path / "best_model")
    shutil.copytree(tiny_bert, tmp_path / "other_model")
    for folder in ("best_model", "other_model"):
        again = tokenize_splits(data, AutoTokenizer.from_pretrained(tmp_path / folder), 32)
        assert again["test"].cache_files[0]["filename"] == first, folder

    vocab = (tmp_path / "other_model" / "vocab.txt").read_text().splitlines()
    (tmp_path / "other_model" / "tokenizer.json").unlink()  # rebuilt from vocab.txt: the words in another order
    (tmp_path / "other_model" / "vocab.txt").write_text("\n".join(vocab[:5] + vocab[:4:-1]) + "\n")
    other = AutoTokenizer.from_pretrained(tmp_path / "other_model")
    assert other("sunny day")["input_ids"] != tokenizer("sunny day")["input_ids"]
    tokenized = tokenize_splits(data, other, 32)
    assert tokenized["test"].cache_files[0]["filename"] != first
    expected = other(list(data["test"]["text"]), truncation=True, max_length=32)["input_ids"]
    assert tokenized["test"]["input_ids"] == expected


def test_an_unwritable_datasets_cache_is_named_not_the_data_file(tmp_path, monkeypatch):
    """datasets writes a lock file in its cache even to read a warm one: a cache it cannot write (a read-only mount,
    a path under a file) is said up front, naming the cache and HF_DATASETS_CACHE, not blamed on the data file."""
    import datasets

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(blocker / "cache"))
    with pytest.raises(UsageError, match=r"^the datasets cache .*a_file/cache is not writable .*HF_DATASETS_CACHE"):
        load_splits(TrainConfig(dataset=str(REPO / "sample_data")))
    with pytest.raises(UsageError, match=r"^the datasets cache .*a_file/cache is not writable .*HF_DATASETS_CACHE"):
        load_unlabeled(str(REPO / "sample_data" / "test.csv"), TrainConfig(), None)


# ---------------------------------------------------------------------------------------------------------------
# Distillation: teacher probabilities follow the label ids; labels.json's teacher_labels declares the teacher's order


def _teacher_data(folder, teacher_labels=None):
    """jsonl with labels neg/pos (ids: sorted names, neg=0, pos=1) and teacher probabilities, one row without."""
    folder.mkdir()
    rows = [
        {"text": f"{'great fun' if i % 2 else 'awful bore'} {i}", "label": "pos" if i % 2 else "neg", "teacher": None}
        for i in range(12)
    ]
    for i, row in enumerate(rows[1:], 1):
        row["teacher"] = [0.3, 0.7] if i % 2 else [0.9, 0.1]
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "train.jsonl").write_text(lines)
    (folder / "validation.jsonl").write_text(lines)
    if teacher_labels is not None:
        (folder / "labels.json").write_text(json.dumps({"label": ["neg", "pos"], "teacher_labels": teacher_labels}))
    return folder


def test_teacher_column_help_says_the_probability_order():
    help_text = TrainConfig.__dataclass_fields__["teacher_column"].metadata["help"]
    assert "sorted label names" in help_text and "teacher_labels" in help_text


def test_teacher_labels_order_is_checked_and_reordered_to_label_ids(tmp_path):
    same = load_splits(
        TrainConfig(dataset=str(_teacher_data(tmp_path / "same", ["neg", "pos"])), teacher_column="teacher")
    )
    assert same.splits["train"]["teacher"][:3] == [None, [0.3, 0.7], [0.9, 0.1]]
    data = load_splits(
        TrainConfig(dataset=str(_teacher_data(tmp_path / "swapped", ["pos", "neg"])), teacher_column="teacher")
    )
    # The teacher said [p(pos), p(neg)]: id 0 is neg, so each list is flipped.
    assert data.splits["train"]["teacher"][:3] == [None, [0.7, 0.3], [0.1, 0.9]]
    assert any("teacher_labels" in note for note in data.notes)


def test_teacher_probabilities_written_into_csv_cells_are_read_as_lists(tmp_path):
    # pandas' to_csv writes a column of lists as "[0.3, 0.7]" and a missing one as an empty cell.
    import pandas as pd

    folder = _teacher_data(tmp_path / "jsonl", ["pos", "neg"])
    as_csv = tmp_path / "csv"
    as_csv.mkdir()
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        pd.DataFrame(rows).to_csv(as_csv / f"{split}.csv", index=False)
    (as_csv / "labels.json").write_text((folder / "labels.json").read_text())
    data = load_splits(TrainConfig(dataset=str(as_csv), teacher_column="teacher"))
    assert data.splits["train"]["teacher"][:3] == [None, [0.7, 0.3], [0.1, 0.9]]
    (as_csv / "train.csv").write_text('text,label,teacher\nfun,pos,"[0.3, 0.7]"\nbore,neg,0.9\nok,pos,\n')
    with pytest.raises(UsageError, match=r"row 1 of the train split: --teacher_column needs a list .*got '0.9'"):
        load_splits(TrainConfig(dataset=str(as_csv), teacher_column="teacher"))


def test_teacher_labels_with_other_names_are_refused(tmp_path):
    folder = _teacher_data(tmp_path / "d", ["negative", "positive"])
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(folder), teacher_column="teacher"))
    message = str(err.value)
    assert "['negative', 'positive']" in message and "['neg', 'pos']" in message and "labels.json" in message


# ---------------------------------------------------------------------------------------------------------------
# Texts shared between splits: a test score partly made of examples the model trained on


def test_texts_of_validation_and_test_found_in_train_are_counted_and_said(tiny_bert, tmp_path):
    """A test row that is a training row (a copy, or the same text with other spacing) is scored on memory: the run
    says how many each split holds, as a warning from 1% of the split on, and config.json records the counts."""
    train_rows = [(f"training sentence number {i} about topic {i % 3}", f"c{i % 2}") for i in range(40)]
    folder = tmp_path / "data"
    write_csv(folder / "train.csv", train_rows)
    # 3 of 12 test texts are training texts (one with other spacing); validation shares one with test only.
    test_rows = [(f"held out text {i}", f"c{i % 2}") for i in range(9)]
    test_rows += [train_rows[0], train_rows[5], ("training  sentence number 7 about  topic 1 ", "c1")]
    write_csv(folder / "test.csv", test_rows)
    write_csv(folder / "validation.csv", [(f"held out text {i}", f"c{i % 2}") for i in range(8, 20)])
    data = load_splits(TrainConfig(dataset=str(folder)))
    assert data.overlap == {"validation": 0, "test": 3}
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, folder, "--max_steps", "1", "--warmup_ratio", "0"))
    said = [line for line in (out / "train.log").read_text().splitlines() if "also appear in train" in line]
    assert len(said) == 1 and " WARNING " in said[0], said
    assert "3 of the test split's 12 texts (25.0%)" in said[0]
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["split_overlap"] == {"validation": 0, "test": 3}
    # The real sets carry a few such rows: below 1% they are an info line, not a warning.
    assert load_splits(TrainConfig(dataset=str(REPO.parent / "shared/data/emotion"))).overlap == {
        "validation": 5,
        "test": 11,
    }


def test_a_class_of_one_row_stays_in_train_when_validation_is_carved(tmp_path):
    """A class with a single row cannot be on both sides of the carve: it stays for training (a validation class the
    model never trained on, on some seeds, otherwise) and the other classes are still stratified."""
    rows = [(f"common row {i}", ["a", "b"][i % 2]) for i in range(20)] + [("the only rare row", "rare")]
    data_file = write_csv(tmp_path / "reviews.csv", rows)
    for seed in range(4):
        data = load_splits(TrainConfig(dataset=str(data_file), validation_split_ratio=0.5, seed=seed))
        assert "the only rare row" in data.splits["train"]["text"][:]
        held = data.splits["validation"]["label"][:]
        assert len(held) == 11 and {held.count(0), held.count(1)} == {5, 6}  # stratified: a 10, b 10 (rare 1)
        assert (
            f"no validation split: carved 11 of 21 train rows as validation (stratified; 1 row of classes with one row "
            f"kept for training, seed {seed})" in data.notes
        )


def test_a_carve_that_leaves_fewer_training_rows_than_classes_is_random_not_a_traceback(tmp_path):
    """A large --validation_split_ratio may leave too few training rows to hold every class: scikit-learn cannot
    stratify that, so the carve is random and the log says so (the run warns of its one-class train split)."""
    data_file = write_csv(tmp_path / "three.csv", [(f"row {i}", "abc"[i % 3]) for i in range(21)])
    data = load_splits(TrainConfig(dataset=str(data_file), validation_split_ratio=0.95))
    assert len(data.splits["train"]) == 1 and len(data.splits["validation"]) == 20
    assert any("random (a class has too few rows to stratify)" in note for note in data.notes)


def test_an_evaluated_class_that_the_training_rows_never_show_is_warned_of(tmp_path):
    """labels.json may name classes train lacks (so their rows are not refused): validation and test rows of such a
    class are warned of, since the model cannot learn to predict them."""
    folder = tmp_path / "data"
    write_csv(folder / "train.csv", [(f"row {i}", i % 2) for i in range(12)])
    write_csv(folder / "validation.csv", [(f"val {i}", i % 2) for i in range(12)])
    write_csv(folder / "test.csv", [(f"test {i}", i % 3) for i in range(12)])
    (folder / "labels.json").write_text(json.dumps({"label": ["neg", "pos", "mixed"]}))
    data = load_splits(TrainConfig(dataset=str(folder)))
    assert data.label_names == ["neg", "pos", "mixed"]
    unseen = [note for note in data.notes if "never show" in note]
    assert unseen == [
        "warning: the test split holds 1 class that the 12 training rows never show ('mixed'): the model cannot "
        "learn to predict it, and its test scores count it as missed"
    ]
    # A class no split holds at all (labels.json of a larger label set, or of another version of the data).
    (folder / "labels.json").write_text(json.dumps({"label": ["neg", "pos", "mixed", "neutral"]}))
    data = load_splits(TrainConfig(dataset=str(folder), max_train_samples=4))
    assert [note for note in data.notes if "no split holds" in note] == [
        "warning: the label names (labels.json or ClassLabel) list 1 class that no split holds ('neutral'): the "
        "model gets an output for it that it cannot learn to predict; remove it from the names if the data has none"
    ]


def test_a_class_label_of_another_column_is_named_as_such(tmp_path):
    """A parquet whose ClassLabel names another column than --label_column: the note names the ClassLabel, not a
    labels.json the folder does not have."""
    import datasets

    from config import TrainConfig
    from data import load_splits

    data = tmp_path / "data"
    rows = {
        "text": [f"text {i}" for i in range(30)],
        "topic": [i % 2 for i in range(30)],
        "stars": [i % 3 for i in range(30)],
    }
    ds = datasets.Dataset.from_dict(rows).cast_column("topic", datasets.ClassLabel(names=["news", "sport"]))
    data.mkdir()
    ds.to_parquet(data / "train.parquet")
    notes = load_splits(TrainConfig(dataset=str(data), label_column="stars")).notes
    assert (
        "the data's ClassLabel names the labels of ['topic'], not of ['stars']: labels named by their values" in notes
    )


def test_a_labels_json_keyed_by_another_name_than_the_label_column_is_a_warning(tmp_path):
    """labels.json written as {"labels": [...]} for the column 'label': the run named its classes 0, 1, 2 with an
    info line only, though the file was written to name them."""
    data = tmp_path / "data"
    write_csv(data / "train.csv", [(f"text {i}", i % 3) for i in range(30)])
    (data / "labels.json").write_text(json.dumps({"labels": ["sad", "happy", "angry"]}))
    loaded = load_splits(TrainConfig(dataset=str(data)))
    assert loaded.label_names == ["0", "1", "2"]
    assert (
        "warning: labels.json names the labels of ['labels'], not of ['label']: the classes are named by their "
        "values (0, 1, 2); key its list by 'label' if it names them"
    ) in loaded.notes


def test_a_train_file_given_alone_names_the_split_files_beside_it(tmp_path):
    """--dataset data/train.csv: validation was carved from it and test.csv left out without a word."""
    rows = [(f"text {i}", i % 2) for i in range(20)]
    for split in ("train", "validation", "test"):
        write_csv(tmp_path / "data" / f"{split}.csv", rows)
    notes = load_splits(TrainConfig(dataset=str(tmp_path / "data" / "train.csv"))).notes
    assert (
        f"warning: --dataset {tmp_path}/data/train.csv is one file, so validation is carved from it and there is no "
        f"test split, though validation.csv, test.csv beside it are that folder's; pass --dataset {tmp_path}/data "
        "to read its splits"
    ) in notes
    assert not [n for n in load_splits(TrainConfig(dataset=str(tmp_path / "data"))).notes if "one file" in n]


def test_a_labels_json_saved_by_a_windows_editor_is_read_and_one_not_utf8_is_named(tmp_path):
    """A byte-order mark (Notepad's UTF-8) was refused as unparsable, though the data files beside it may hold one;
    a latin-1 file was a UnicodeDecodeError traceback."""
    data = tmp_path / "data"
    write_csv(data / "train.csv", [(f"text {i}", i % 2) for i in range(20)])
    (data / "labels.json").write_bytes('\ufeff{"label": ["café", "bar"]}\r\n'.encode())
    assert load_splits(TrainConfig(dataset=str(data))).label_names == ["café", "bar"]
    (data / "labels.json").write_bytes('{"label": ["café", "bar"]}'.encode("latin-1"))
    with pytest.raises(UsageError) as refused:
        load_splits(TrainConfig(dataset=str(data)))
    assert str(refused.value).startswith(f"cannot read {data / 'labels.json'}: it is not UTF-8 text. Save it as UTF-8")
