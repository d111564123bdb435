"""csv/tsv cells typed as the user wrote them: labels that pandas would read as one number ("01", "1"), leading
zeros, texts that pandas would read as booleans, a column typed differently from one 10,000-row block to the next,
and the training texts given with more than one label."""

from __future__ import annotations

import dataclasses

import pytest

from config import TrainConfig
from conftest import write_csv
from data import input_labels, load_files, load_splits, load_unlabeled, trained_label_maps
from utils import UsageError


def _labelled(folder, labels, texts=None):
    """A train and a validation csv, each holding one row per label of ``labels`` (in that order)."""
    texts = texts or [f"sentence number {i}" for i in range(len(labels))]
    for split in ("train", "validation"):
        write_csv(folder / f"{split}.csv", list(zip(texts, labels, strict=True)))
    return TrainConfig(dataset=str(folder))


@pytest.mark.parametrize(
    ("labels", "names", "twice"),
    [
        (["01", "1", "2"] * 4, ["01", "1", "2"], "'01' and '1'"),
        (["1", "1.0", "2"] * 4, ["1", "1.0", "2"], "'1' and '1.0'"),
    ],
)
def test_labels_that_spell_one_number_two_ways_are_two_classes_and_a_warning(tmp_path, labels, names, twice):
    """Read as numbers, "01" and "1" (or "1" and "1.0") would be one class without a word: they stay the texts the
    user wrote, two classes, and the log says they spell one number."""
    data = load_splits(_labelled(tmp_path, labels))
    assert data.label_names == names
    assert data.splits["train"]["label"][:3] == [0, 1, 2]
    assert (
        f"warning: the labels {twice} spell one number two ways: they are trained as two classes; write them one "
        "way in every split if they are one"
    ) in data.notes


def test_labels_with_leading_zeros_keep_them_in_the_names_and_in_an_input_file(tmp_path):
    """Codes such as "007" are names: the model's classes keep their zeros, and evaluate.py --input scores a file
    that writes them so."""
    cfg = _labelled(tmp_path / "data", ["007", "010", "100"] * 4)
    data = load_splits(cfg)
    assert data.label_names == ["007", "010", "100"]
    new = write_csv(tmp_path / "new.csv", [("a new one", "010"), ("another", "007"), ("no label", None)])
    rows = load_unlabeled(str(new), cfg, None, ("label",))
    trained = trained_label_maps(cfg, data.spec.levels)
    assert input_labels(rows, data.spec, trained) == [1, 0, None]


def test_a_label_spelled_otherwise_than_in_train_is_refused_naming_train_s_spelling(tmp_path):
    """Train's "007" and a validation file's 7 are other labels now that cells are read as written: the refusal
    says which label of train the number spells."""
    write_csv(tmp_path / "train.csv", [(f"row {i}", ["007", "010"][i % 2]) for i in range(12)])
    write_csv(tmp_path / "validation.csv", [(f"val {i}", [7, 10][i % 2]) for i in range(4)])
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path)))
    assert str(err.value) == (
        "the validation split has labels not seen in train in 'label': 7 (2x), 10 (2x). Add examples of them to "
        "train or remove those rows. (7 is '007' in train: write each label one way in every file.)"
    )


def test_canonical_integer_labels_are_read_as_ids_as_before(tmp_path):
    """Labels 0, 1, 2 (and 0.0, 1.0 from a float column written by pandas) stay the integer ids they were."""
    data = load_splits(_labelled(tmp_path / "ints", ["2", "0", "1"] * 4))
    assert data.label_names == ["0", "1", "2"]
    assert data.spec.value_ids == [[[0, 0], [1, 1], [2, 2]]]
    assert data.splits["train"]["label"][:3] == [2, 0, 1]
    data = load_splits(_labelled(tmp_path / "floats", ["1.0", "0.0"] * 4))
    assert data.label_names == ["0", "1"] and data.splits["train"]["label"][:2] == [1, 0]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_texts_that_pandas_reads_as_booleans_are_texts(tmp_path, suffix):
    """A review that says "true" is a text, even where every text of the column is such a word."""
    import pandas as pd

    rows = [("true", "yes"), ("False", "no"), ("TRUE", "yes"), ("false", "no")] * 3
    for split in ("train", "validation"):
        frame = pd.DataFrame(rows, columns=["text", "label"])
        frame.to_csv(tmp_path / f"{split}{suffix}", sep="\t" if suffix == ".tsv" else ",", index=False)
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.splits["train"]["text"][:4] == ["true", "False", "TRUE", "false"]


def test_a_text_column_of_numbers_only_is_still_the_wrong_column(tmp_path):
    """A csv column whose every cell is a number is most often an id or the label column: refused as before."""
    write_csv(tmp_path / "train.csv", [(i, 1990 + i, i % 2) for i in range(12)], header=("id", "text", "label"))
    with pytest.raises(UsageError, match=r"^the 'text' column of the train split holds int values, not text"):
        load_splits(TrainConfig(dataset=str(tmp_path)))


def test_a_column_typed_otherwise_after_10000_rows_is_read_as_one_column(tmp_path):
    """pandas types each 10,000-row block of a csv on its own: texts that are numbers up to there, or integer labels
    up to a "neutral", or a column left empty up to there (an optional note), failed as 'Failed to parse string'.
    The whole column is read as the text it is."""
    rows = [(str(i), i % 2, None) for i in range(10_000)]
    rows += [("a real sentence", "neutral", "from the forum"), ("another", 1, "")]
    write_csv(tmp_path / "train.csv", rows, header=("text", "label", "note"))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["0", "1", "neutral"]
    texts = data.splits["train"]["text"][:] + data.splits["validation"]["text"][:]
    assert len(texts) == 10_002 and {"0", "9999", "a real sentence", "another"} <= set(texts)


def test_training_texts_given_two_labels_are_counted_with_an_example(tmp_path):
    """Noisy data is real (a text labelled twice by two annotators): one warning line, never a refusal."""
    rows = [(f"text {i}", ["joy", "sadness", "anger"][i % 3]) for i in range(30)]
    rows += [("i feel ok", "joy"), ("i feel  ok ", "sadness"), ("meh", "anger"), ("meh", "anger")]
    rows += [("what a day", "anger"), ("what a day", "joy"), ("what a day", "joy")]
    write_csv(tmp_path / "train.csv", rows)
    write_csv(tmp_path / "validation.csv", rows[:12])
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    said = [note for note in data.notes if "more than one label" in note]
    assert said == [
        "warning: 2 training texts appear with more than one label (e.g. 'i feel ok': joy, sadness): the model "
        "is taught each of them; fix the labels of those that are mistakes"
    ]
    # One label per text: no line.
    data = load_splits(dataclasses.replace(TrainConfig(dataset=str(tmp_path)), max_train_samples=30))
    assert not [note for note in data.notes if "more than one label" in note]


def test_booleans_written_by_pandas_are_still_the_0_1_columns_of_multi_label(tmp_path):
    """csv cells are read as written, yet a 0/1 column that pandas wrote as True/False is still a label column of
    --multi_label."""
    rows = [(f"row {i}", i % 2 == 0, i % 3 == 0) for i in range(12)]
    for split in ("train", "validation"):
        write_csv(tmp_path / f"{split}.csv", rows, header=("text", "sports", "news"))
    data = load_splits(TrainConfig(dataset=str(tmp_path), label_columns=["sports", "news"], multi_label=True))
    assert data.splits["train"]["label"][:4] == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]


def test_boolean_labels_keep_their_spelling_and_find_their_class_in_any_split(tmp_path):
    """A csv's "true"/"false" labels are the classes as written; a split that writes them as booleans (a jsonl's)
    or another way ("TRUE") is read as the same classes."""
    import json

    write_csv(tmp_path / "train.csv", [(f"row {i}", ["false", "true"][i % 2]) for i in range(12)])
    rows = [{"text": f"val {i}", "label": i % 2 == 1} for i in range(4)]
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    write_csv(tmp_path / "test.csv", [("shouting", "TRUE"), ("quiet", "False")])
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["false", "true"]
    assert data.splits["validation"]["label"][:] == [0, 1, 0, 1] and data.splits["test"]["label"][:] == [1, 0]


def test_large_integer_labels_that_are_other_numbers_are_not_said_to_spell_one(tmp_path):
    """Ids above 2**53 are other numbers though a float rounds them to one: two classes, and no warning that they
    spell one number two ways."""
    ids = ["9007199254740993", "9007199254740992", str(2**64), str(2**64 + 1)]
    data = load_splits(_labelled(tmp_path, ids * 3))
    assert data.label_names == ["9007199254740992", "9007199254740993", str(2**64), str(2**64 + 1)]
    assert not [note for note in data.notes if "spell one number" in note]


@pytest.mark.parametrize("flags", [("True", "False"), ("true", "false")])
def test_booleans_of_a_split_find_train_s_integer_ids_0_and_1(tmp_path, flags):
    """Train's labels 1/0 and a split that writes them True/False (pandas writes a bool column so) are one class
    each, as when pandas read the cells as booleans."""
    cfg = TrainConfig(dataset=str(tmp_path / "data"))
    write_csv(tmp_path / "data" / "train.csv", [(f"row {i}", i % 2) for i in range(12)])
    write_csv(tmp_path / "data" / "validation.csv", [(f"val {i}", flags[i % 2]) for i in range(4)])
    data = load_splits(cfg)
    assert data.label_names == ["0", "1"] and data.splits["validation"]["label"][:] == [1, 0, 1, 0]
    # evaluate.py --input, with the run's data at hand and without it.
    new = write_csv(tmp_path / "new.csv", [("a new one", flags[0]), ("another", flags[1]), ("no label", None)])
    rows = load_unlabeled(str(new), cfg, None, ("label",))
    assert input_labels(rows, data.spec, trained_label_maps(cfg, data.spec.levels)) == [1, 0, None]
    assert input_labels(rows, data.spec) == [1, 0, None]


def test_an_id_column_of_integers_beyond_64_bits_loads_as_text(tmp_path):
    """Ids above 2**63 (hashes, snowflake ids) fit no integer column: the file loads and they keep their digits."""
    rows = [(str(2**64 + i), f"sentence {i}", i % 2) for i in range(12)]
    write_csv(tmp_path / "train.csv", rows, header=("id", "text", "label"))
    ds = load_files([tmp_path / "train.csv"])
    assert ds.features["id"].dtype in ("string", "large_string") and ds["id"][:2] == [str(2**64), str(2**64 + 1)]
    assert load_splits(TrainConfig(dataset=str(tmp_path))).label_names == ["0", "1"]


def test_training_texts_given_two_labels_in_a_hierarchy_are_counted(tmp_path):
    """--label_columns coarse fine: a text given two fine labels (trec's train holds one) is said as in one level."""
    rows = [(f"text {i}", ["NUM", "LOC"][i % 2], ["NUM:date", "LOC:city"][i % 2]) for i in range(12)]
    rows += [("when was it", "NUM", "NUM:date"), ("when was it", "NUM", "NUM:period")]
    for split in ("train", "validation"):
        write_csv(tmp_path / f"{split}.csv", rows, header=("text", "coarse", "fine"))
    data = load_splits(TrainConfig(dataset=str(tmp_path), label_columns=["coarse", "fine"]))
    assert [note for note in data.notes if "more than one label" in note] == [
        "warning: 1 training text appears with more than one label (e.g. 'when was it': NUM:date, NUM:period): the "
        "model is taught each of them; fix the labels of those that are mistakes"
    ]


def test_0_1_columns_left_empty_for_their_first_1000_rows_still_score(tmp_path):
    """An --input file labelled only further down (rows without labels are predicted, not scored): its 0/1 columns
    are still numbers, not refused as other values."""
    rows = [(f"row {i}", i % 2, i % 3 == 0) for i in range(12)]
    for split in ("train", "validation"):
        write_csv(tmp_path / "data" / f"{split}.csv", rows, header=("text", "sports", "news"))
    cfg = TrainConfig(dataset=str(tmp_path / "data"), label_columns=["sports", "news"], multi_label=True)
    data = load_splits(cfg)
    rows = [(f"new {i}", None, None) for i in range(1000)] + [("scored", 1, 0)]
    new = write_csv(tmp_path / "new.csv", rows, header=("text", "sports", "news"))
    labels = input_labels(load_unlabeled(str(new), cfg, None, ("sports", "news")), data.spec)
    assert labels[-2:] == [None, [1.0, 0.0]]


def test_a_malformed_csv_is_one_error_line_without_the_reader_s_own_log(tmp_path, capfd):
    """An unquoted comma in a text: datasets logged its own 'Failed to read file ... ParserError' line above the
    error line that says the same."""
    _labelled(tmp_path, ["pos", "neg"] * 3)
    lines = (tmp_path / "train.csv").read_text().splitlines()
    (tmp_path / "train.csv").write_text("\n".join([*lines[:3], "prices rose, then fell,pos", *lines[3:]]) + "\n")
    capfd.readouterr()
    with pytest.raises(UsageError, match=r"Expected 2 fields in line 4, saw 3\. Check that the file is valid csv\."):
        load_splits(TrainConfig(dataset=str(tmp_path)))
    out, err = capfd.readouterr()
    assert "Failed to read file" not in out + err and "ParserError" not in out + err, out + err


def test_shards_of_one_split_with_other_columns_are_refused_naming_both(tmp_path):
    """Columns are read under the first file's header: one that a later file lacks failed as "Field 'note' does not
    exist in schema", naming no file; one that only a later file has is left out, as before."""
    rows = [(f"sentence number {i}", ["pos", "neg"][i % 2]) for i in range(8)]
    write_csv(tmp_path / "validation.csv", rows)
    first, second = tmp_path / "train-00000-of-00002.csv", tmp_path / "train-00001-of-00002.csv"

    def write(path, header, extra=""):
        path.write_text(header + "\n" + "".join(f"{t},{label}{extra}\n" for t, label in rows))

    write(first, "text,label,note", ",x")
    write(second, "text,label")
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path)))
    assert str(err.value) == (
        f"the files of one split have other columns: {first} has 'note', which {second} lacks; give every file of a "
        "split the same header."
    )
    write(first, "text,label")
    write(second, "text,label,note", ",x")
    assert load_splits(TrainConfig(dataset=str(tmp_path))).splits["train"].num_rows == 16
    # The same columns in another order load, as before.
    second.write_text("label,text\n" + "".join(f"{label},{t}\n" for t, label in rows))
    assert len(load_splits(TrainConfig(dataset=str(tmp_path))).splits["train"]) == 16


def test_training_texts_given_two_label_sets_in_multi_label_are_counted(tmp_path):
    """--multi_label: a text given two label sets is noise the model is taught both ways, as with one label."""
    rows = [(f"row {i}", i % 2, int(i % 3 == 0)) for i in range(12)]
    rows += [("big match news", 1, 1), ("big match news", 1, 0), ("quiet day", 0, 0), ("quiet day", 0, 0)]
    for split in ("train", "validation"):
        write_csv(tmp_path / f"{split}.csv", rows, header=("text", "sports", "news"))
    data = load_splits(TrainConfig(dataset=str(tmp_path), label_columns=["sports", "news"], multi_label=True))
    assert [note for note in data.notes if "more than one label" in note] == [
        "warning: 1 training text appears with more than one label set (e.g. 'big match news': sports+news, "
        "sports): the model is taught each of them; fix the labels of those that are mistakes"
    ]


def test_an_input_file_missing_the_pair_column_is_not_told_to_read_its_labels_as_text(tmp_path):
    """A pair model's --input with premise and label only: 'Did you mean 'label'?' offered the gold labels as the
    second text."""
    new = write_csv(tmp_path / "new.csv", [("a cat sat", "yes"), ("a dog ran", "no")], header=("premise", "label"))
    cfg = TrainConfig(text_column="premise", text_pair_column="hypothesis")
    with pytest.raises(UsageError) as err:
        load_unlabeled(str(new), cfg, None, ("label",))
    assert str(err.value) == (
        f"--text_pair_column 'hypothesis' is not a column of the --input file {new} (columns: premise, label). Pass "
        "the column that holds the second texts with --text_pair_column."
    )


def test_reading_a_file_draws_no_generating_train_split_bar(tmp_path, capfd):
    """datasets drew 'Generating train split: N examples' for every file read, an --input file or a test split."""
    new = write_csv(tmp_path / "new.csv", [("a cat sat", 1), ("a dog ran", 0)])
    capfd.readouterr()
    assert len(load_unlabeled(str(new), TrainConfig(), None)) == 2  # its column of numbers typed as numbers
    out, err = capfd.readouterr()
    assert "Generating" not in out + err and "csv numbers" not in out + err, err


def test_a_0_1_column_spelling_1_two_ways_is_still_a_multi_label_column(tmp_path):
    """'1' beside '1.0' keeps a csv column as text (two spellings of one number): its cells are still 0 and 1."""
    rows = [(f"row {i}", i % 2, ["1", "1.0", "0"][i % 3]) for i in range(12)]
    for split in ("train", "validation"):
        write_csv(tmp_path / f"{split}.csv", rows, header=("text", "a", "b"))
    data = load_splits(TrainConfig(dataset=str(tmp_path), label_columns=["a", "b"], multi_label=True))
    assert data.splits["train"]["label"][:3] == [[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]


def test_decimal_codes_as_labels_are_classes_as_written_in_every_split_and_an_input_file(tmp_path):
    """Section or version codes 2.1, 3.1, 4.2 written as plain numbers are labels, not floats to refuse: the classes
    are the codes as written, a validation split's find them, and evaluate.py --input scores a '2.1' as '2.1'."""
    cfg = _labelled(tmp_path / "data", ["2.1", "3.1", "4.2", "2"] * 3)
    data = load_splits(cfg)
    assert data.label_names == ["2", "2.1", "3.1", "4.2"]
    assert data.splits["train"]["label"][:4] == [1, 2, 3, 0]
    assert data.splits["validation"]["label"][:4] == [1, 2, 3, 0]
    new = write_csv(tmp_path / "new.csv", [("a", "4.2"), ("b", "2.1"), ("c", None), ("d", "2")])
    rows = load_unlabeled(str(new), cfg, None, ("label",))
    trained = trained_label_maps(cfg, data.spec.levels)
    assert input_labels(rows, data.spec, trained) == [3, 1, None, 0]


def test_a_parquet_column_of_decimal_labels_is_refused_saying_how_to_write_them(tmp_path):
    """A float column holds no spelling to keep (2.10 is 2.1): the refusal says to write the labels as strings."""
    import pandas as pd

    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [2.1, 3.1, 2.1, 3.1]}).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path)))
    assert str(err.value) == (
        "labels must be strings or integers, found float (e.g. 2.1); check --label_column. If they are names (codes "
        "such as 2.1), write the labels as strings (in a jsonl in quotes; pandas: the column's .astype(str) before "
        "saving)."
    )


def test_a_decimal_code_with_another_number_of_decimals_is_not_said_to_be_train_s(tmp_path):
    """'2.10' beside train's '2.1' is another section code, not '2.1' written otherwise: the refusal names it
    without claiming they are one label."""
    write_csv(tmp_path / "train.csv", [(f"row {i}", ["2.1", "3.1"][i % 2]) for i in range(12)])
    write_csv(tmp_path / "validation.csv", [(f"val {i}", ["2.10", "3.1"][i % 2]) for i in range(4)])
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path)))
    assert str(err.value) == (
        "the validation split has labels not seen in train in 'label': '2.10' (2x). Add examples of them to train or "
        "remove those rows."
    )
    new = write_csv(tmp_path / "new.csv", [("a", "2.10"), ("b", "3.1")])
    cfg = _labelled(tmp_path / "codes", ["2.1", "3.1"] * 4)
    data = load_splits(cfg)
    with pytest.raises(UsageError) as err:
        input_labels(load_unlabeled(str(new), cfg, None, ("label",)), data.spec)
    assert str(err.value).endswith("pass --predict_only to predict without scoring.")


def test_a_non_id_among_ids_named_by_labels_json_is_refused_alone(tmp_path):
    """Where labels.json names the classes, a csv label column of ids 0, 1 and a 1.5 is kept as written (not whole
    numbers): the refusal names the 1.5 alone, not the ids beside it."""
    (tmp_path / "labels.json").write_text('{"label": ["neg", "pos"]}')
    (tmp_path / "train.csv").write_text("text,label\ngood,1\nbad,0\nodd,1.5\n")
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path)))
    assert str(err.value) == (
        "labels 1.5 are neither integer ids nor names from the label names given (neg, pos); fix the labels or "
        "labels.json."
    )


def test_codes_written_with_zero_decimals_find_train_s_class_in_a_split_of_whole_codes_only(tmp_path):
    """Train's codes 1.0, 1.5, 2.0 are text (1.5 is no whole number); a validation file holding only 1.0 and 2.0 is read
    as numbers, and its 2.0 was refused as unseen ("2.0 is '2.0' in train"): it finds train's '2.0', in a split and
    in an --input file."""
    folder = tmp_path / "data"
    write_csv(folder / "train.csv", [(f"sentence {i}", code) for i, code in enumerate(["1.0", "1.5", "2.0"] * 4)])
    write_csv(folder / "validation.csv", [(f"other {i}", code) for i, code in enumerate(["1.0", "2.0"] * 3)])
    cfg = TrainConfig(dataset=str(folder))
    data = load_splits(cfg)
    assert data.label_names == ["1.0", "1.5", "2.0"]
    assert data.splits["validation"]["label"] == [0, 2] * 3
    new = write_csv(tmp_path / "new.csv", [("a", "2.0"), ("b", "1.0")])
    rows = load_unlabeled(str(new), cfg, None, ("label",))
    assert input_labels(rows, data.spec, trained_label_maps(cfg, data.spec.levels)) == [2, 0]
