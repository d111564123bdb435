"""evaluate.py --input on a file that has labels: another dataset's test set scored against the run's labels, exactly
as the run's own test split is scored."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

import evaluate
import train
from conftest import REPO, SHARED_DATA, tiny_args, write_csv

EMOTION = SHARED_DATA / "emotion"
TREC = SHARED_DATA / "trec"
SCORES = ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "num_samples")


def same_scores(got: dict, want: dict, keys: tuple[str, ...] = SCORES) -> None:
    """The metrics a user compares agree: counts and F1 exactly, the mean loss to float rounding."""
    assert {k: got[k] for k in keys} == {k: want[k] for k in keys}
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


@pytest.fixture(scope="module")
def emotion_run(tiny_bert, tmp_path_factory):
    """A tiny model trained on emotion, and its test split's scores (the first 40 rows)."""
    out = tmp_path_factory.mktemp("labeled") / "run"
    flags = ["--max_train_samples", "200", "--max_eval_samples", "40", "--num_train_epochs", "1"]
    train.main(tiny_args(tiny_bert, out, EMOTION, *flags))
    return out, evaluate.main(["--run_dir", str(out), "--split", "test"])


def test_a_labeled_file_is_scored_as_the_split_it_holds(emotion_run, tmp_path, capsys):
    out, split = emotion_run
    rows = pd.read_parquet(EMOTION / "test.parquet").head(40)
    names = json.loads((EMOTION / "labels.json").read_text())["label"]
    # Labels written as names in a csv, and as the ids the dataset uses in a jsonl, read as the same classes.
    as_names = tmp_path / "held_out.csv"
    rows.assign(label=[names[i] for i in rows["label"]]).to_csv(as_names, index=False)
    as_ids = tmp_path / "ids.jsonl"
    rows.to_json(as_ids, orient="records", lines=True)
    for path in (as_names, as_ids):
        summary = evaluate.main(["--run_dir", str(out), "--input", str(path)])
        same_scores(summary, split)
        assert summary["num_predictions"] == 40
    scores = json.loads((out / "eval_held_out.json").read_text())
    same_scores(scores, split)
    assert scores["unscored_rows"] == {"no_label": 0, "no_text": 0} and (out / "confusion_held_out.png").is_file()
    predicted = [json.loads(line) for line in (out / "predictions_held_out.jsonl").read_text().splitlines()]
    by_split = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    # The prediction stays "label" (as for a file without labels); the gold, its probability and the loss are added.
    assert [r["label"] for r in predicted] == [r["pred"] for r in by_split]
    assert [r["gold"] for r in predicted] == [names[i] for i in rows["label"]] == [r["gold"] for r in by_split]
    assert [r["loss"] for r in predicted] == pytest.approx([r["loss"] for r in by_split], rel=1e-5)

    # A column named otherwise is named on the command line.
    renamed = tmp_path / "renamed.csv"
    rows.rename(columns={"label": "emotion"}).to_csv(renamed, index=False)
    same_scores(evaluate.main(["--run_dir", str(out), "--input", str(renamed), "--label_column", "emotion"]), split)
    capsys.readouterr()
    assert "eval" not in evaluate.main(["--run_dir", str(out), "--input", str(renamed)])  # no label column: predicted
    # ... and the log says why no score came, with the flag that gives one.
    why = "has no column 'label' (the run's label column), so it is predicted, not scored: name its label column with"
    assert f"{why} --label_column to score it" in capsys.readouterr().err


def test_rows_without_a_label_or_text_are_predicted_but_not_scored(emotion_run, tmp_path):
    out, split = emotion_run
    rows = pd.read_parquet(EMOTION / "test.parquet").head(40)
    extra = pd.DataFrame({"text": ["no label on this one", "   "], "label": [None, 1]})
    path = tmp_path / "partial.csv"
    pd.concat([rows, extra]).to_csv(path, index=False)  # the missing label makes the column floats: 0.0, 1.0, ...
    summary = evaluate.main(["--run_dir", str(out), "--input", str(path)])
    assert summary["num_predictions"] == 42
    same_scores(summary, split)
    assert json.loads((out / "eval_partial.json").read_text())["unscored_rows"] == {"no_label": 1, "no_text": 1}
    lines = [json.loads(line) for line in (out / "predictions_partial.jsonl").read_text().splitlines()]
    assert len(lines) == 42 and "gold" in lines[0] and "gold" not in lines[40] and "gold" not in lines[41]

    # A benchmark's hidden test labels (GLUE writes -1) are no labels: the file is predicted, as it was before.
    hidden = tmp_path / "hidden.tsv"
    rows.assign(label=-1).to_csv(hidden, sep="\t", index=False)
    summary = evaluate.main(["--run_dir", str(out), "--input", str(hidden)])
    assert "eval" not in summary and summary["num_predictions"] == 40 and not (out / "eval_hidden.json").exists()

    # Predicting the same file without scoring removes the scores of the earlier predictions.
    summary = evaluate.main(["--run_dir", str(out), "--input", str(path), "--predict_only"])
    assert "eval" not in summary and not (out / "eval_partial.json").exists()
    assert not (out / "confusion_partial.png").exists()


def test_a_labeled_file_with_labels_the_model_lacks_is_one_line(emotion_run, tmp_path):
    out, _ = emotion_run
    path = write_csv(tmp_path / "other.csv", [("so bored today", "boredom"), ("what a joy", "joy")])
    with pytest.raises(
        ValueError, match=r"holds labels this model was not trained on: 'boredom' \(1x\).*--predict_only"
    ):
        evaluate.main(["--run_dir", str(out), "--input", str(path)])
    assert not (out / "predictions_other.jsonl").exists()
    # A label the model has, spelled otherwise: the refusal names the spelling, as a split's refusal does.
    write_csv(tmp_path / "cased.csv", [("what a joy", "Joy"), ("so sad", "sadness")])
    with pytest.raises(ValueError, match=r"or pass --predict_only .*\('Joy' is 'joy' among the model's labels: labels"):
        evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "cased.csv")])
    assert "eval" not in evaluate.main(["--run_dir", str(out), "--input", str(path), "--predict_only"])
    with pytest.raises(ValueError, match=r"--label_column 'text' is the --input file's text column"):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--label_column", "text"])
    with pytest.raises(
        ValueError,
        match=r"^--label_column 'gold' is not a column of the --input file .*other.csv \(columns: text, label\)\. "
        r"Did you mean 'label'\? Pass the column that holds the labels with --label_column\.$",
    ):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--label_column", "gold"])
    # Scores written over the run's own test scores would pass for them (scripts read eval_test.json).
    with pytest.raises(ValueError, match=r"would write eval_test.json, a name the run's own split scores use"):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--output", str(out / "test.jsonl")])
    with pytest.raises(ValueError, match=r"--label_column .* --predict_only"):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--predict_only", "--label_column", "label"])


def test_input_labels_spelled_otherwise_than_the_models_name_the_spelling():
    """The --input refusal of " pos" or "Pos" for the model's "pos" carries the hint a split's refusal gives."""
    import datasets

    from data import LabelSpec, input_labels

    spec = LabelSpec("single_label_classification", ["label"], [{"name": "label", "labels": ["neg", "pos"]}])
    for value, hint in (
        (" pos", "(' pos' is 'pos' among the model's labels: strip the spaces around labels.)"),
        ("Pos", "('Pos' is 'pos' among the model's labels: labels are case-sensitive.)"),
    ):
        with pytest.raises(ValueError) as err:
            input_labels(datasets.Dataset.from_dict({"label": ["neg", value]}), spec)
        assert str(err.value).endswith(f"or pass --predict_only to predict without scoring. {hint}")


def test_an_input_minus_one_is_the_class_minus_one_where_the_run_trained_one():
    """A run trained on "-1", "0", "1" as text (a jsonl's sentiment) reads its csv test split's -1 (or -1.0) as the
    class "-1": --input on that file scores those rows too, not as hidden labels left out (other scores than
    results.json's). A model without a class -1 still takes -1 for a hidden label."""
    import datasets

    from data import LabelSpec, input_labels

    spec = LabelSpec("single_label_classification", ["label"], [{"name": "label", "labels": ["-1", "0", "1"]}])
    trained = [{"-1": 0, "0": 1, "1": 2}]  # config.json's resolved.label_values of a run that read text
    for values in ([-1, 0, 1], [-1.0, 0.0, 1.0], ["-1.0", "0.0", "1.0"], ["-1", "0", "1"]):
        assert input_labels(datasets.Dataset.from_dict({"label": values}), spec, trained) == [0, 1, 2], values
    spec = LabelSpec("single_label_classification", ["label"], [{"name": "label", "labels": ["neg", "pos"]}])
    for values in ([-1, 1], [-1.0, 1.0], ["-1", "pos"], ["-1.0", "pos"]):
        assert input_labels(datasets.Dataset.from_dict({"label": values}), spec) == [None, 1], values


def test_a_labeled_file_of_a_hierarchy_is_scored_on_every_level(tiny_bert, tmp_path):
    out = tmp_path / "run"
    flags = ["--label_columns", "label_coarse", "label_fine", "--max_train_samples", "200", "--max_eval_samples", "30"]
    train.main(tiny_args(tiny_bert, out, TREC, *flags, "--num_train_epochs", "1"))
    split = evaluate.main(["--run_dir", str(out), "--split", "test"])
    path = tmp_path / "questions.parquet"
    pd.read_parquet(TREC / "test.parquet").head(30).to_parquet(path)
    summary = evaluate.main(["--run_dir", str(out), "--input", str(path)])
    same_scores(summary, split, (*SCORES, "label_coarse.macro_f1", "level_consistency"))
    with pytest.raises(ValueError, match=r"has the label column label_coarse but not label_fine"):
        pd.read_parquet(path).drop(columns="label_fine").to_parquet(tmp_path / "coarse.parquet")
        evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "coarse.parquet")])


def test_a_labeled_file_of_a_multi_label_run_is_scored(tiny_bert, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    topics = [("goal match team", "sports"), ("chip software code", "tech"), ("rain wind snow", "weather")]
    rows = [
        {"text": f"{topics[i % 3][0]} {topics[(i // 3) % 3][0]} {i}", "tags": sorted({topics[i % 3][1], "tech"})}
        for i in range(90)
    ]
    for split, part in [("train", rows[:60]), ("validation", rows[60:75]), ("test", rows[75:])]:
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--label_column", "tags", "--num_train_epochs", "1"))
    split = evaluate.main(["--run_dir", str(out), "--split", "test"])
    # A csv holds each row's labels as a list written as text.
    path = tmp_path / "tagged.csv"
    pd.DataFrame(rows[75:]).assign(tags=lambda d: d["tags"].map(json.dumps)).to_csv(path, index=False)
    same_scores(evaluate.main(["--run_dir", str(out), "--input", str(path)]), split)
    gold = json.loads((out / "predictions_tagged.jsonl").read_text().splitlines()[0])["gold"]
    assert gold == rows[75]["tags"]
    # A -1 inside a list is no hidden label (a row's is): it is a label the model lacks, not one to drop unsaid.
    (tmp_path / "minus.csv").write_text('text,tags\ngoal match,"[""sports"", -1]"\n')
    with pytest.raises(ValueError, match=r"not trained on: -1 \(1x\)"):
        evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "minus.csv")])


def test_a_labeled_file_of_zero_one_columns_is_scored(tiny_bert, tmp_path):
    rows = [(f"row {i} goal" if i % 2 else f"row {i} rain", i % 2, 1 - i % 2, int(i % 3 == 0)) for i in range(60)]
    path = write_csv(tmp_path / "all.csv", rows, header=("text", "sports", "weather", "misc"))
    out = tmp_path / "run"
    flags = ["--label_columns", "sports", "weather", "misc", "--multi_label", "--num_train_epochs", "1"]
    train.main(tiny_args(tiny_bert, out, path, *flags))
    summary = evaluate.main(["--run_dir", str(out), "--input", str(path)])
    assert summary["num_samples"] == 60 and 0 <= summary["macro_f1"] <= 1
    gold = [json.loads(line)["gold"] for line in (out / "predictions_all.jsonl").read_text().splitlines()]
    assert gold[:2] == [["weather", "misc"], ["sports"]]
    with pytest.raises(ValueError, match=r"--label_column: this run reads its labels from the columns sports"):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--label_column", "sports"])
    bad = write_csv(tmp_path / "bad.csv", [("x", 1, 0, 2)], header=("text", "sports", "weather", "misc"))
    with pytest.raises(ValueError, match=r"'misc' column must hold 0/1 values"):
        evaluate.main(["--run_dir", str(out), "--input", str(bad)])


def star_ratings(folder, labels, names=None):
    """A small dataset whose label column holds ``labels(i)`` for row i (a labels.json of ``names`` when given)."""
    words = ["awful", "bad", "okay", "good", "great"]
    for split, size, start in [("train", 100, 0), ("validation", 25, 1000), ("test", 25, 2000)]:
        rows = [(f"{words[i % 5]} film {start + i}", labels(i, split)) for i in range(size)]
        write_csv(folder / f"{split}.csv", rows)
    if names is not None:
        (folder / "labels.json").write_text(json.dumps({"label": names}))
    return folder


@pytest.mark.parametrize(
    "labels, names, without_data",
    [
        # labels.json names the ids 0..4 "1".."5": an integer in the file is an id, as the run read it. Without the
        # run's data an integer is the name it spells, so the file's 0 is no label of this model.
        (lambda i, split: i % 5, ["1", "2", "3", "4", "5"], r"not trained on: 0 \(5x\)"),
        # Names "1", "2" and "n/a" (so the train file is read as text); a test file without "n/a" reads as numbers.
        (lambda i, split: ["1", "2", "n/a"][i % 3 if split != "test" else i % 2], None, None),
    ],
    ids=["labels_json_ids", "integer_and_text_names"],
)
def test_integer_label_names_are_read_as_the_run_read_them(tiny_bert, tmp_path, capsys, labels, names, without_data):
    data = star_ratings(tmp_path / "data", labels, names)
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--num_train_epochs", "1"))
    split = evaluate.main(["--run_dir", str(out), "--split", "test"])
    test_file = tmp_path / "test.csv"
    test_file.write_bytes((data / "test.csv").read_bytes())
    same_scores(evaluate.main(["--run_dir", str(out), "--input", str(test_file)]), split)
    gold = [json.loads(line)["gold"] for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    assert [
        json.loads(line)["gold"] for line in (out / "predictions_test_input.jsonl").read_text().splitlines()
    ] == gold

    # config.json records how the run read each label value: the run's data is not needed to read them alike.
    moved = data.rename(tmp_path / "moved")
    capsys.readouterr()
    same_scores(evaluate.main(["--run_dir", str(out), "--input", str(test_file)]), split)
    assert "cannot be read again" not in capsys.readouterr().err

    # A run trained before that was recorded reads its data again, and without it integers are the names they spell,
    # as the log says.
    config = json.loads((out / "config.json").read_text())
    del config["resolved"]["label_values"]
    (out / "config.json").write_text(json.dumps(config))
    moved.rename(data)
    same_scores(evaluate.main(["--run_dir", str(out), "--input", str(test_file)]), split)
    data.rename(moved)
    capsys.readouterr()
    if without_data:
        with pytest.raises(ValueError, match=without_data):
            evaluate.main(["--run_dir", str(out), "--input", str(test_file)])
    else:
        same_scores(evaluate.main(["--run_dir", str(out), "--input", str(test_file)]), split)
    assert "cannot be read again to tell whether it read an integer label as a name" in capsys.readouterr().err


def test_label_values_that_are_not_labels_are_one_line(emotion_run, tmp_path):
    out, split = emotion_run
    rows = pd.read_parquet(EMOTION / "test.parquet").head(40)
    # Ids written as text (a jsonl's "3", or "3.0" from a float column) are the ids they spell, as the run's own
    # splits read them.
    for spelled in (str, lambda i: f"{i}.0"):
        as_text = tmp_path / "text_ids.jsonl"
        rows.assign(label=rows["label"].map(spelled)).to_json(as_text, orient="records", lines=True)
        same_scores(evaluate.main(["--run_dir", str(out), "--input", str(as_text)]), split)
    # A list (another task's multi-label column) where this model takes one label.
    lists = tmp_path / "lists.jsonl"
    lists.write_text('{"text": "so happy", "label": ["joy", "love"]}\n')
    with pytest.raises(ValueError, match=r"'label' column holds lists .* one label per row"):
        evaluate.main(["--run_dir", str(out), "--input", str(lists)])


def test_a_scored_input_never_writes_over_a_file_it_did_not_write(emotion_run, tmp_path):
    out, _ = emotion_run
    rows = pd.read_parquet(EMOTION / "test.parquet").head(10)
    path = tmp_path / "texts.jsonl"
    rows.to_json(path, orient="records", lines=True)
    kept = {p: p.read_bytes() for p in (out / "config.json", out / "results.json", out / "metrics.jsonl", path)}
    # The run's own files, and the input itself, are not predictions files to replace.
    for taken in ("config.json", "results.json", "metrics.jsonl"):
        with pytest.raises(ValueError, match=rf"--output .*{taken} is a file evaluate.py did not write"):
            evaluate.main(["--run_dir", str(out), "--input", str(path), "--output", str(out / taken)])
    with pytest.raises(ValueError, match=r"--output .*texts.jsonl is the --input file"):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--output", str(path)])
    # The scores beside an --output elsewhere: a file of that name that is not an earlier score is the user's.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "eval_preds.json").write_text('{"my": "notes"}\n')
    kept[mine / "eval_preds.json"] = (mine / "eval_preds.json").read_bytes()
    with pytest.raises(ValueError, match=r"eval_preds.json is not a file evaluate.py wrote"):
        evaluate.main(["--run_dir", str(out), "--input", str(path), "--output", str(mine / "preds.jsonl")])
    # An input named as the scores of its own --output would be written over by them.
    own = mine / "eval_own.json"
    rows.to_json(own, orient="records")
    kept[own] = own.read_bytes()
    with pytest.raises(ValueError, match=r"eval_own.json is the --input file"):
        evaluate.main(["--run_dir", str(out), "--input", str(own), "--output", str(mine / "own.jsonl")])
    assert {p: p.read_bytes() for p in kept} == kept
    # Scores evaluate.py wrote there are its to replace: the same command again succeeds.
    again = ["--run_dir", str(out), "--input", str(path), "--output", str(mine / "again.jsonl")]
    assert evaluate.main(again)["num_samples"] == evaluate.main(again)["num_samples"] == 10


def test_a_labeled_parquet_with_its_own_class_label_numbering_is_read_by_name(emotion_run, tmp_path):
    """A parquet file datasets wrote numbers its ClassLabel its own way (here: only the classes it holds, sorted by
    name); read as the model's ids, every row would be scored against another class."""
    import datasets

    out, split = emotion_run
    rows = pd.read_parquet(EMOTION / "test.parquet").head(40)
    names = json.loads((EMOTION / "labels.json").read_text())["label"]
    ds = datasets.Dataset.from_dict({"text": list(rows["text"]), "label": [names[i] for i in rows["label"]]})
    ds = ds.class_encode_column("label")
    assert ds.features["label"].names != names
    ds.to_parquet(tmp_path / "encoded.parquet")
    same_scores(evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "encoded.parquet")]), split)


def test_label_names_read_otherwise_by_a_newer_reader_say_so(tiny_bert, tmp_path):
    """A run trained by an older data reader whose labels now read with other names is told that the reader changed
    (ClassLabel names of parquet files are read since version 4), not only asked whether the data did."""
    data = tmp_path / "data"
    rows = [(f"{'great fun' if i % 2 else 'awful bore'} {i}", i % 2) for i in range(24)]
    for split in ("train", "validation", "test"):
        write_csv(data / f"{split}.csv", rows)
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--num_train_epochs", "1"))
    (data / "labels.json").write_text(json.dumps(["neg", "pos"]))
    with pytest.raises(ValueError, match=r"differ from the model's \['0', '1'\]; was the dataset changed\?"):
        evaluate.main(["--run_dir", str(out), "--split", "test"])
    config = json.loads((out / "config.json").read_text())
    config["resolved"]["data_reader"] = 3
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"trained by an older data reader \(version 3, now 6: ClassLabel names"):
        evaluate.main(["--run_dir", str(out), "--split", "test"])


def test_a_run_that_recorded_integer_text_classes_in_text_order_is_scored_with_its_own_ids(tmp_path):
    """Levels "1".."12" written as text were ordered as text ("10" before "2") by earlier versions: such a run's split
    is read again with the ids its model has, not renumbered (which would score every row against another class)."""
    from types import SimpleNamespace

    from config import TrainConfig
    from data import load_splits, split_digests

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "validation", "test"):
        rows = [{"text": f"level {1 + i % 12} item {i}", "label": str(1 + i % 12)} for i in range(24)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text_order = sorted(str(n) for n in range(1, 13))
    run_cfg = TrainConfig(dataset=str(data))
    # What such a run recorded: its model's label names, and the digest of its test rows under those ids.
    recorded = load_splits(run_cfg, [text_order]).splits
    resolved = {"dataset": str(data), "split_digests": split_digests({"test": recorded["test"]})}
    model_config = SimpleNamespace(id2label=dict(enumerate(text_order)), num_labels=12)
    rows, names = evaluate.load_scored_split(evaluate.EvalConfig(split="test"), run_cfg, resolved, model_config)
    assert names == text_order
    assert [text_order[i] for i in rows["label"]] == [str(1 + i % 12) for i in range(24)]


def test_numbers_in_a_file_scored_by_a_run_trained_on_names_are_read_as_ids_and_said(tmp_path, monkeypatch):
    """A run trained on "neg"/"pos" scores a file that writes 0/1: read as the model's ids (the file may number its
    classes otherwise, which would invert every score), so the warning gives the mapping; a run that read numbers
    itself, or a file that writes the names, says nothing."""
    import datasets

    from config import TrainConfig
    from data import LabelSpec

    spec = LabelSpec("single_label_classification", ["label"], [{"name": "label", "labels": ["neg", "pos"]}])
    cfg = evaluate.EvalConfig(input=str(tmp_path / "scores.csv"))
    numbers = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, 1]})
    names = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": ["pos", "neg", "pos"]})
    for raw, recorded, warned in (
        (numbers, [[["neg", 0], ["pos", 1]]], True),
        (names, [[["neg", 0], ["pos", 1]]], False),
        (numbers, [[[0, 0], [1, 1]]], False),  # the run read ids (parquet ids with labels.json names)
    ):
        warnings: list[str] = []  # the module's logger, whatever handlers an earlier run's setup left on it
        monkeypatch.setattr(evaluate.logger, "warning", lambda text, *args, out=warnings: out.append(text % args))
        gold = evaluate.input_gold(cfg, raw, spec, TrainConfig(dataset=str(tmp_path)), recorded)
        assert gold == [1, 0, 1]
        said = [w for w in warnings if "read as the model's ids" in w]
        assert said == (
            [
                f"{cfg.input} writes its 'label' column as numbers, which the run never read (it trained on the "
                "names): read as the model's ids, 0 = 'neg', 1 = 'pos'; if the file numbers its classes otherwise, "
                "write the names"
            ]
            if warned
            else []
        )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_input_labels_map_to_the_classes_as_training_spelled_them(tmp_path, fmt):
    """A csv run keeps "01" and "1" as two classes: an --input file's "01" is the class "01" and its "1" the class
    "1" (from config.json's label_values, or from the label names where the run recorded none), whatever the file's
    format; a run whose classes are the ids 0/1/2 (a parquet int column) reads a file's "1" as the id 1."""
    from config import TrainConfig
    from data import load_splits, load_unlabeled

    def input_file(name: str, labels: list) -> str:
        """A file of ``fmt`` holding one row per label of ``labels``."""
        frame = pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": labels})
        path = tmp_path / f"{name}.{fmt}"
        {"csv": lambda: frame.to_csv(path, index=False), "parquet": lambda: frame.to_parquet(path)}.get(
            fmt, lambda: frame.to_json(path, orient="records", lines=True)
        )()
        return str(path)

    def gold(run: TrainConfig, data, path: str, recorded) -> list:
        """The gold class names evaluate.py --input reads from ``path`` for ``run``."""
        cfg = evaluate.EvalConfig(input=path)
        names = data.label_names
        levels = [{"name": "label", "labels": names}]
        spec = type(data.spec)("single_label_classification", ["label"], levels)
        raw = load_unlabeled(path, run, None, ("label",))
        return [names[i] for i in evaluate.input_gold(cfg, raw, spec, run, recorded)]

    texts = tmp_path / "texts"
    write_csv(texts / "train.csv", [(f"text {i}", ["01", "1", "2"][i % 3]) for i in range(12)])
    run = TrainConfig(dataset=str(texts))
    data = load_splits(run)
    assert data.label_names == ["01", "1", "2"]
    recorded = json.loads(json.dumps(data.spec.value_ids))  # as config.json holds them
    gone = TrainConfig(dataset=str(tmp_path / "moved"))  # a run without label_values whose data is gone
    for labels in (["01", "1", "2", "1"], ["1", "2"], ["01", "2"]):
        path = input_file("held_out", labels)
        assert gold(run, data, path, recorded) == labels
        assert gold(gone, data, path, None) == labels

    ids = tmp_path / "ids"
    ids.mkdir()
    pd.DataFrame({"text": [f"text {i}" for i in range(12)], "label": [i % 3 for i in range(12)]}).to_parquet(
        ids / "train.parquet"
    )
    run = TrainConfig(dataset=str(ids))
    data = load_splits(run)
    assert data.label_names == ["0", "1", "2"]
    recorded = json.loads(json.dumps(data.spec.value_ids))
    for labels, classes in ((["1", "2", "0"], ["1", "2", "0"]), ([1, 0], ["1", "0"])):
        assert gold(run, data, input_file("numbers", labels), recorded) == classes


def test_non_ascii_class_names_are_written_as_utf8_and_read_back_where_the_locale_is_ascii(tiny_bert, tmp_path):
    """Class names such as 'négatif' or '喜び' stand in the run's JSON files as written (UTF-8), not as \\u00e9
    escapes, and read back equal; evaluate.py reads and writes them so under a locale that is not UTF-8 (a C locale,
    or Windows), where a file opened without its encoding would fail or garble them."""
    names = ["négatif", "positif", "喜び"]
    data = tmp_path / "data"
    for split in ("train", "validation"):
        write_csv(data / f"{split}.csv", [(f"row {i} {names[i % 3]}", names[i % 3]) for i in range(12)])
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--max_steps", "1"))
    path = write_csv(tmp_path / "avis.csv", [("row 1 négatif", "négatif"), ("row 2 喜び", "喜び")])
    ascii_locale = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "evaluate.py"), "--run_dir", str(out), "--input", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **ascii_locale},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    def written(name: str) -> str:
        """A file of the run as UTF-8 text, which holds the class names literally."""
        text = (out / name).read_bytes().decode("utf-8")
        assert all(n in text for n in ("négatif", "喜び")), name
        return text

    assert json.loads(written("config.json"))["resolved"]["label_names"] == names
    assert set(json.loads(written("results.json"))["validation"]["per_class"]) >= set(names)
    assert json.loads(written("eval_avis.json"))["per_class"]["négatif"]["support"] == 1
    rows = [json.loads(line) for line in written("predictions_avis.jsonl").splitlines()]
    assert [r["gold"] for r in rows] == ["négatif", "喜び"] and {r["label"] for r in rows} <= set(names)
    assert json.loads((out / ".evaluate_outputs.json").read_text(encoding="utf-8"))["inputs"]


def test_a_label_that_spells_the_number_of_two_classes_is_refused_naming_both(tmp_path):
    """A run that trained "01" and "1" as two classes cannot tell which of them a file's "001" or "1.0" is: refused,
    naming both, where it was scored as "1" without a word (in a split, and in an --input file)."""
    import datasets

    from config import TrainConfig
    from data import LabelSpec, input_labels, load_splits
    from utils import UsageError

    spec = LabelSpec("single_label_classification", ["label"], [{"name": "label", "labels": ["01", "1", "2"]}])
    for trained in ([{"01": 0, "1": 1, "2": 2}], None):
        for value in ("001", "1.0", 1.0):  # 1.0: a csv column of numbers written "1.0", "2.0" is read as floats
            with pytest.raises(UsageError) as err:
                input_labels(
                    datasets.Dataset.from_dict({"label": ["2" if isinstance(value, str) else 2.0, value]}),
                    spec,
                    trained,
                )
            assert f"not trained on: {value!r} (1x)" in str(err.value)
            assert str(err.value).endswith(
                f"({value!r} is '01' or '1' among the model's labels: write each label one way in every file.)"
            )
    write_csv(tmp_path / "train.csv", [(f"row {i}", ["01", "1", "2"][i % 3]) for i in range(12)])
    for value in ("001", "1.0"):
        write_csv(tmp_path / "validation.csv", [("row a", value), ("row b", "2")])
        with pytest.raises(
            UsageError, match=rf"not seen in train in 'label': '?{value}'? \(1x\)\. .* is '01' or '1' in"
        ):
            load_splits(TrainConfig(dataset=str(tmp_path)))
    # A file's "1" is the class "1", and an int column's 1 too (its writer wrote "1").
    assert input_labels(datasets.Dataset.from_dict({"label": ["1", "01"]}), spec) == [1, 0]
    assert input_labels(datasets.Dataset.from_dict({"label": [1, 2]}), spec) == [1, 2]


@pytest.mark.parametrize(
    ("names", "stem"),
    [
        (["joy", "sadness"], "heldout_sentence_pairs_paraphrase_detection_2026_release_candidate_v2"),
        # Long class names push the matrix right of the picture's centre, and the title with it.
        (["a customer asking for a refund of the order", "praise"], "heldout_reviews_2026_release_candidate_v2"),
        (["joy", "sadness"], "HELDOUT_SENTENCE_PAIRS_PARAPHRASE_DETECTION_2026_WWW"),  # wider characters
    ],
)
def test_confusion_title_fits_a_long_input_and_run_name(tmp_path, monkeypatch, names, stem):
    """The title (the scored split or --input file, and the run folder's name) ran off both edges of
    confusion_<name>.png for a long file or run name: it wraps inside the figure and still names both whole."""
    import numpy as np

    run = "emotion-minilm-l6-lr2e-5-batch32-warmup0.1-label_smoothing0.1-seed42"
    drawn = {}

    def keep_title(fig, path, dpi=100):
        fig.canvas.draw()  # as saved
        box = fig.axes[0].title.get_window_extent()
        drawn["inside"] = 0 <= box.x0 and box.x1 <= fig.bbox.width and box.y1 <= fig.bbox.height
        drawn["title"] = fig.axes[0].get_title()

    monkeypatch.setattr(evaluate, "atomic_savefig", keep_title)
    gold = np.array([0, 1, 1])
    assert evaluate.plot_confusion(gold, gold, names, tmp_path / f"confusion_{stem}.png", f"{stem} ({run})")
    assert drawn["inside"], drawn
    assert stem in drawn["title"].replace("\n", "") and run in drawn["title"].replace("\n", ""), drawn


@pytest.mark.parametrize("how", ["flag", "config_file"])
def test_split_test_given_beside_an_input_file_is_refused_though_test_is_the_default(tmp_path, how):
    """--split test is the default, so asking for it beside --input went unseen: the file was scored and the user read
    its scores as the run's test split's. Given on the command line or in a --config file, it is refused."""
    if how == "flag":
        argv = ["--run_dir", str(tmp_path), "--split", "test", "--input", str(tmp_path / "x.csv")]
    else:
        (tmp_path / "eval.json").write_text(json.dumps({"split": "test"}))
        argv = ["--config", str(tmp_path / "eval.json"), "--run_dir", str(tmp_path), "--input", str(tmp_path / "x.csv")]
    with pytest.raises(ValueError, match=r"--split test scores a split of the run's data; --input predicts a file"):
        evaluate.main(argv)


def test_scoring_a_file_whole_says_the_runs_splits_were_cut_by_max_eval_samples(emotion_run, tmp_path, capsys):
    """A run trained with --max_eval_samples 40 scored its first 40 test rows; the whole test file given to --input
    is scored on every row: the two scores differ, and the output says why."""
    out, _ = emotion_run
    whole = tmp_path / "test.jsonl"
    pd.read_parquet(EMOTION / "test.parquet").head(120).to_json(whole, orient="records", lines=True)
    capsys.readouterr()
    evaluate.main(["--run_dir", str(out), "--input", str(whole)])
    said = "the run's validation and test splits were cut to their first 40 rows (--max_eval_samples 40)"
    assert f"{said}; {whole} is scored whole (120 rows)" in capsys.readouterr().err
    evaluate.main(["--run_dir", str(out), "--input", str(whole), "--max_samples", "60"])
    assert f"{said}; {whole} is scored on its first 60 rows (--max_samples 60)" in capsys.readouterr().err
