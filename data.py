"""Read any supported source into train/validation/test, build the label space, tokenize once, batch by length.

Sources: a Hugging Face dataset id, a local folder with ``train``/``validation`` (or ``dev``, ``valid``,
``val``)/``test`` files, or one local file; formats parquet, csv, tsv, json, jsonl. Names of integer labels come
from the dataset's ``ClassLabel`` feature or a ``labels.json`` (``{"<label_column>": [names...]}``) beside the files;
its optional ``teacher_labels`` list gives the order of ``--teacher_column`` probabilities. In csv/tsv only an empty
cell is missing ("NA", "None" are text), and cached rows are keyed on the files' content, not their mtime.

The path through this file: ``load_splits(cfg)`` -> ``tokenize_splits(...)`` -> ``build_dataloaders(...)``;
``load_unlabeled(...)`` reads the files that ``evaluate.py --input`` labels. With ``--long_text windows``,
``tokenize_splits`` cuts long texts into windows (``encode_windows``): one row per window, carrying its document's
``idx`` and label and its position ``window``. ``loss_weights(cfg, data)`` resolves ``--class_weights`` and
``--pos_weight`` to numbers from the training rows.
"""

from __future__ import annotations

import ast
import csv
import difflib
import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from config import TrainConfig
from utils import ConfigError, UsageError, counted, missing_local_path

# Names a split is taken under only when none of its names above is there: eval.csv beside validation.csv is another
# file (named in the log as unread), not a second validation split.
FALLBACK_ALIASES = {"validation": ("eval",)}
SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "dev", "valid", "val"),
    "test": ("test",),
}
# The version of how files become rows, recorded with each run: a reader that changed (version 2: tsv read without
# csv quoting, "eval" as validation, unlabeled splits left out; version 3: integer id lists in csv cells read as ids,
# empty-string labels as missing; version 4: a class of one row kept for training by the validation carve, the
# ClassLabel names of parquet files, and each split's ClassLabel ids read through its own names; version 5: labels
# written as whole numbers in text, "1.0", read as the ids, and "-1" or -1.0 as hidden labels; version 6: csv/tsv
# cells read as written unless every cell of the column is a number written as pandas writes one, so "007" and "01"
# beside "1" stay text, and a "true" is a text) can give other rows from the same files, and evaluate.py must not
# blame the data.
DATA_READER = 6
SOURCE_ROW = "__row__"  # a split's column: each row's place in its file (reported as idx); a name no user column takes
# Fewer validation rows than this make the best-model choice mostly noise: said in the run's log.
MIN_VALIDATION_ROWS = 10
SHARD_SUFFIX = re.compile(r"[-_]\d+(-of-\d+)?$")  # train-00000-of-00002, train_1: shards of one split
FORMATS = {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
# Batches per mega-batch (sorted by length inside). transformers' LengthGroupedSampler uses 50; on MiniLM/emotion
# (150 steps, seeds 42/1/2/3) 50 gave validation macro-F1 0.024 below random batches on average and padding 1.03,
# while 200 gave parity (-0.001) and padding 1.01. Ties in length stay in random order, so batches still change
# from epoch to epoch even when the whole dataset fits in one mega-batch.
MEGA_BATCH_MULT = 200


@dataclass
class SplitData:
    """Normalised splits (columns ``text`` [, ``text_pair``], ``label`` as int id, ``idx``) and their label names."""

    splits: dict[str, Any]
    label_names: list[str]
    notes: list[str] = field(default_factory=list)
    spec: Any = None  # LabelSpec: problem type, label columns, levels and their names
    # Model config entries of the loss weights resolved from train (loss_weights: class_weights / pos_weight).
    loss_weights: dict[str, Any] = field(default_factory=dict)
    # Per evaluated split, how many of its texts are also training texts (see split_overlap).
    overlap: dict[str, int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Reading sources


def column_values(ds: Any, name: str) -> list[Any]:
    """A dataset column as a Python list, read in one go (iterating a ``datasets`` Column formats row by row: about
    100x slower, seconds on a 67k-row training set)."""
    return ds[name][:]


def split_digests(splits: dict[str, Any]) -> dict[str, str]:
    """Per split, a digest of the rows as a run sees them (every column, in order): equal digests are the same rows,
    wherever the files live, so a copied dataset folder is recognised as the same data and an edited one as other."""
    digests = {}
    for split, ds in splits.items():
        h = hashlib.sha256()
        for name in sorted(set(ds.column_names) - {SOURCE_ROW}):  # positions only: the rows hold the content
            h.update(json.dumps([name, column_values(ds, name)], default=str).encode())
        digests[split] = h.hexdigest()[:16]
    return digests


def _split_files(folder: Path) -> dict[str, list[Path]]:
    """Map split names to the data files in ``folder`` named after them (``train.csv``, ``dev-00000.parquet``...)."""
    found: dict[str, list[Path]] = {}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    for split, aliases in SPLIT_ALIASES.items():
        named: dict[str, list[Path]] = {}  # the split's files by their name without a shard suffix
        for group in (aliases, FALLBACK_ALIASES.get(split, ())):
            for alias in group if not named else ():
                for p in files:
                    if p.stem.lower() == alias or p.stem.lower().startswith((f"{alias}-", f"{alias}_")):
                        named.setdefault(SHARD_SUFFIX.sub("", p.stem.lower()), []).append(p)
        # validation.csv beside dev.csv or validation_old.csv: scoring on one, or on both merged, while the user tuned
        # on the other. Shards of one name (train-00000-of-00002.parquet, ...) are one split.
        if len(named) > 1:
            listed = ", ".join(p.name for matches in named.values() for p in matches)
            raise UsageError(
                f"{folder} holds several {split} splits ({listed}); keep one (named {' or '.join(aliases)}, shards "
                "as NAME-00000-of-00002) and rename or move the others."
            )
        if named:
            found[split] = next(iter(named.values()))
    return found


def _holds_train(folder: Path) -> bool:
    """Whether ``folder`` holds a train file of a format read here (readable or not)."""
    try:
        return "train" in _split_files(folder)
    except UsageError:  # several train files: still the data's folder
        return True
    except OSError:
        return False


def content_hash(files: list[Path]) -> str:
    """A digest of the files' bytes (read in chunks), so caches follow what a file holds, not its path and mtime."""
    import xxhash  # a dependency of datasets, and far faster than hashlib on large files

    digest = xxhash.xxh3_128()
    for path in files:
        # The size delimits each file, so moving bytes from one file to the next changes the digest.
        digest.update(f"{path.stat().st_size}:".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def holds_no_rows(file: Path) -> bool:
    """Whether ``file`` is empty of rows before any parser sees it: no bytes (or only whitespace) in a text format,
    0 rows in a parquet file's metadata. The parsers' own errors for these name no cause."""
    if FORMATS.get(file.suffix.lower()) == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_metadata(file).num_rows == 0
        except Exception:  # not parquet at all: the loader's error says so
            return False
    return file.stat().st_size < 65536 and not file.read_bytes().strip()  # a large file holds something


def leading_blank_lines(file: Path) -> int:
    """How many blank (or whitespace-only) lines a text file starts with."""
    count = 0
    with open(file, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                break
            count += 1
    return count


# A whole field in csv quotes with a doubled quote inside ("he said ""hi"""): csv quoting, as pandas writes a tsv.
CSV_QUOTED_FIELD = re.compile(rb'(?:^|\t)"(?:[^"\t\n]|"")*""(?:[^"\t\n]|"")*"(?=\t|\r?\n|$)', re.MULTILINE)
# A field in quotes holding a tab or line break, which only csv quoting can hold.
CSV_QUOTED_BREAK = re.compile(rb'(?:^|\t)"(?:[^"]|"")*[\t\n](?:[^"]|"")*"(?=\t|\r?\n|$)', re.MULTILINE)


def csv_quoted(files: list[Path]) -> bool:
    """Whether tab-separated ``files`` quote fields as csv does (pandas' to_csv(sep="\t")), rather than hold plain
    lines whose double quotes are text."""
    for path in files:
        content = path.read_bytes()
        if CSV_QUOTED_FIELD.search(content) or CSV_QUOTED_BREAK.search(content):
            return True
    return False


def json_kind(value: Any) -> str | None:
    """A parsed JSON value's type as pyarrow names it (ints and floats are both "number"); None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def first_mixed_json_column(files: list[Path]) -> tuple[str, Path, int, Any, str] | None:
    """The first top-level column of json/jsonl ``files`` whose values are of two JSON types, as (column, file, row,
    value, the type rows before it held); None when there is none or a file does not parse as rows of objects."""
    seen: dict[str, str] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8-sig") as f:
                if f.read(4096).lstrip().startswith("["):  # a json array of rows
                    f.seek(0)
                    rows = json.load(f)
                else:  # json lines
                    f.seek(0)
                    rows = (json.loads(line) for line in f if line.strip())
                for i, row in enumerate(rows):
                    if not isinstance(row, dict):
                        return None
                    for column, value in row.items():
                        kind = json_kind(value)
                        if kind is not None and seen.setdefault(column, kind) != kind:
                            return column, path, i, value, seen[column]
        except (ValueError, UnicodeDecodeError):  # not json at all: the loader's own error says so
            return None
    return None


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """The logger ``name`` (and its children) silent below CRITICAL for the block: a library's own log line of an
    error this project reports itself."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """datasets' progress bars off for the block, as they were after it."""
    import datasets

    was_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def csv_header(path: Path, delimiter: str, quoting: int) -> list[str]:
    """The names on the first line of a csv/tsv file that is not blank; [] where it cannot be read (the loader's own
    error says why)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return next((row for row in csv.reader(f, delimiter=delimiter, quoting=quoting) if row), [])
    except (UnicodeDecodeError, csv.Error):
        return []


def other_columns(files: list[Path], delimiter: str, quoting: int) -> str | None:
    """The refusal of a split's csv/tsv files where a later one lacks a column of the first (in any order they may be
    one split); None otherwise. The columns are read under the first file's header: a column that a later file lacks
    fails the read without naming the file, while one only a later file has is left out, as the run reads none."""
    first = set(csv_header(files[0], delimiter, quoting))
    for path in files[1:]:
        if lacks := first - set(csv_header(path, delimiter, quoting)):
            return (
                f"the files of one split have other columns: {files[0]} has {', '.join(map(repr, sorted(lacks)))}, "
                f"which {path} lacks; give every file of a split the same header."
            )
    return None


def duplicate_header(path: Path, delimiter: str, quoting: int) -> str | None:
    """The refusal of a csv/tsv header that names one column twice: pandas reads the second as NAME.1, so the run
    would read the first without a word; None when every name is its own."""
    if twice := repeated_name(csv_header(path, delimiter, quoting)):
        name, first, second = twice
        return (
            f"{path}'s header names {name!r} twice (columns {first} and {second}): the second would be read as "
            f"'{name}.1' and the first used without a word; rename or drop one."
        )
    return None


def repeated_name(names: list[str]) -> tuple[str, int, int] | None:
    """The first column name given twice in ``names`` and its two positions (from 1); None when each is its own.
    Nameless columns (a spreadsheet's trailing commas) are "Unnamed: N" each, so not repeated."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if name in seen and name:
            return name, seen[name], i
        seen[name] = i
    return None


def duplicate_parquet_column(path: Path) -> str | None:
    """The refusal of a parquet file whose schema names one column twice (pyarrow writes one, but reading it fails
    naming neither the column nor the fix); None when every name is its own, or the file is not parquet."""
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except Exception:  # not parquet at all: the loader's error says so
        return None
    if twice := repeated_name(names):
        name, first, second = twice
        return f"{path} names the column {name!r} twice (columns {first} and {second}); rename or drop one."
    return None


def utf8(path: Path) -> bool:
    """Whether ``path`` is UTF-8 text (a byte-order mark allowed), decoded in chunks."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def not_utf8(files: list[Path]) -> str:
    """The refusal of ``files`` that are not UTF-8, with the conversion that fits: Excel's "Unicode text" export is
    UTF-16 (with a byte-order mark), which converted from latin-1 would be garbled."""
    names = ", ".join(map(str, files))
    for path in files:
        with open(path, "rb") as f:
            if f.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                return (
                    f"cannot read {names}: it is UTF-16 text, not UTF-8. Save it as UTF-8 (e.g. iconv -f UTF-16 -t "
                    "UTF-8 FILE > NEW, or Excel's 'CSV UTF-8' format)."
                )
    return (
        f"cannot read {names}: it is not UTF-8 text. Save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > NEW, or "
        "encoding='utf-8' in pandas' to_csv)."
    )


def json_rows_problem(path: Path) -> str | None:
    """Why a json/jsonl file holds no rows of named columns, as a refusal; None when it does (or does not parse: the
    loader's own error says so). datasets reads one object of columns (pandas' ``to_json()`` default) as one row, and
    a list of lists as a column of lists, so either would be refused later for a wrong column."""
    rows = "as JSON lines (pandas: to_json(FILE, orient='records', lines=True))"
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = f.read(4096).lstrip()
            if head.startswith("[") and head[1:].lstrip().startswith("["):
                return (
                    f"{path} is a JSON list of lists (rows without column names): write each row as an object naming "
                    f"its columns, {rows}."
                )
            if not head.startswith("{"):
                return None
            f.seek(0)
            first = next(line for line in f if line.strip())
            try:
                if isinstance(json.loads(first), dict) and any(line.strip() for line in f):
                    return None  # json lines
            except ValueError:
                pass  # an object written over several lines
            f.seek(0)
            whole = json.load(f)
    except ValueError:  # not json, or not UTF-8 (a UnicodeDecodeError): the loader's error says so, with the fix
        return None
    if not whole or not all(isinstance(v, list | dict) for v in whole.values()):
        return None  # one row
    keys = ", ".join(repr(k) for k in list(whole)[:5]) + (", ..." if len(whole) > 5 else "")
    under = next((k for k, v in whole.items() if isinstance(v, list) and v and isinstance(v[0], dict)), None)
    where = f" (the rows look to be the list under {under!r})" if under is not None else ""
    return f"{path} is one JSON object (keys: {keys}), not rows{where}: write one object per row naming its columns, {rows}, or a JSON list of such objects."


class NoRows(UsageError):
    """A data file (or every file of a split) that holds no rows: an empty split, or nothing to predict."""


def load_files(files: list[Path], keep_blank_lines: bool = False, labels: Collection[str] = ()) -> Any:
    """Load local files of one format into a ``datasets.Dataset`` (arrow-cached, so later maps are cached too);
    ``keep_blank_lines``: a blank line of a csv is a row (of empty cells), as evaluate.py --input needs one output
    line per input line; ``labels``: the label columns, whose csv cells are numbers only where they are ids."""
    import datasets

    suffixes, original = {p.suffix.lower() for p in files}, files
    if len(suffixes) != 1:
        raise UsageError(f"mixed file formats for one split: {', '.join(map(str, files))}; use one format per split.")
    # An empty shard among others (Spark, Dask and split(1) write them) is nothing to read; a split of only empty
    # files is an empty split.
    files = [p for p in original if not holds_no_rows(p)]
    if not files:
        raise NoRows(f"{', '.join(map(str, original))} holds no rows (an empty split); add rows or remove the file.")
    suffix = suffixes.pop()
    if FORMATS[suffix] == "json":
        # pyarrow's json reader keeps bytes that are not UTF-8 in its strings: the file loads, and the first read of
        # a text fails deep in a later step.
        if bad := [p for p in files if not utf8(p)]:
            raise UsageError(not_utf8(bad))
        if problem := next(filter(None, map(json_rows_problem, files)), None):
            raise UsageError(problem)
    # A .tsv is plain tab-separated lines (GLUE's files, IANA's text/tab-separated-values): a double quote is text.
    # Read with csv quoting, one stray quote would open a field that swallows the lines after it, without a word.
    # A tsv that pandas wrote (to_csv(sep="\t")) quotes csv-style instead, and is read so.
    kwargs: dict[str, Any] = {}
    if suffix == ".tsv":
        kwargs = {"delimiter": "\t", "quoting": csv.QUOTE_MINIMAL if csv_quoted(files) else csv.QUOTE_NONE}
    if FORMATS[suffix] == "parquet" and (problem := next(filter(None, map(duplicate_parquet_column, files)), None)):
        raise UsageError(problem)
    if FORMATS[suffix] == "csv":
        delimiter, quoting = kwargs.get("delimiter", ","), kwargs.get("quoting", csv.QUOTE_MINIMAL)
        if problem := next(filter(None, (duplicate_header(p, delimiter, quoting) for p in files)), None):
            raise UsageError(problem)
        if problem := other_columns(files, delimiter, quoting):
            raise UsageError(problem)
        # pandas reads "NA", "None", "null", "N/A", "NaN"... as missing by default: texts vanish and a class named
        # "None" becomes a null label. Only an empty cell is missing here.
        kwargs |= {"keep_default_na": False, "na_values": [""]}
        if keep_blank_lines:
            # Blank lines after the header are rows; those before it are not (pandas would take one as the header).
            kwargs |= {"skip_blank_lines": False, "skiprows": leading_blank_lines(files[0])}
    # datasets keys its cache (and so every fingerprint downstream, our token cache included) on path + mtime; a file
    # edited with its mtime kept (cp -p, rsync -a, tar x) would come back stale. The content digest as the config
    # name gives changed bytes a new cache entry, while unchanged files still hit the old one.
    name = f"content-{content_hash(files)}"
    try:
        if FORMATS[suffix] == "csv":
            kwargs["features"] = text_features(files[0], kwargs)
        # The reader logs its own error before raising it; the error line below says it once, with the fix. Its bar
        # says "Generating train split" for every file read (load_dataset's split="train"), a test split's too.
        with quiet_logger("datasets"), no_progress_bars():
            ds = datasets.load_dataset(
                FORMATS[suffix], name=name, data_files=[str(p) for p in files], split="train", **kwargs
            )
    except Exception as err:  # pyarrow, pandas and json raise many types; all mean "cannot read this file"
        if "corresponds to no data" in str(err):  # a header-only csv, an empty jsonl
            raise NoRows(
                f"{', '.join(map(str, files))} holds no rows (an empty split); add rows or remove the file."
            ) from err
        chain, cause = [], err
        while cause is not None and len(chain) < 10:  # datasets wraps the decoder's error in its own
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        if any(isinstance(e, UnicodeDecodeError) for e in chain):
            raise UsageError(not_utf8(files)) from err
        # datasets before 4.7 (no Json type) reads a json column of one JSON type only: a text written as the number
        # 2020 or a lone label string in a column of label lists fails in pyarrow ("changed from string to number in
        # row 3", a row counted from a block of the file, not its start), or for a json array in pandas.
        if FORMATS[suffix] == "json" and not hasattr(datasets, "Json") and (mixed := first_mixed_json_column(files)):
            column, path, row, value, before = mixed
            raise UsageError(
                f"cannot read {path}: its {column!r} values are of more than one JSON type ({before} in earlier rows, "
                f"then {value!r:.40} ({json_kind(value)}) in row {row}), which datasets {datasets.__version__} cannot "
                f"read (4.7 and later can). Write every {column!r} value one way (a number meant as text in quotes, a "
                "lone label of a label-list column in a list), or drop the column if the run does not read it."
            ) from err
        # pyarrow names a broken jsonl line as a "row" counted from 0 within a block: the line an editor shows is
        # found by reading the lines.
        if suffix == ".jsonl" and (bad := first_bad_json_line(files)):
            path, line, why = bad
            raise UsageError(
                f"cannot read {path}: line {line} is not valid JSON ({why}); fix or remove that line."
            ) from err
        # datasets' own wrapper ("An error occurred while generating the dataset") says nothing: the reader's does.
        wrapper = "An error occurred while generating the dataset"
        root = next((e for e in chain if str(e).strip() and not str(e).startswith(wrapper)), err)
        first_line = str(root).strip().splitlines()[0].rstrip(".") if str(root).strip() else type(err).__name__
        raise UsageError(
            f"cannot read {', '.join(map(str, files))}: {first_line}. Check that the file is valid {suffix[1:]}."
        ) from err
    return number_columns(ds, labels) if FORMATS[suffix] == "csv" else ds


def text_features(path: Path, read_csv: dict[str, Any]) -> Any:
    """Every column of a csv/tsv file's header as text, under the names pandas gives them read with ``read_csv``.
    pandas types each 10,000-row block of a column on its own, and loses what a cell spells: "01" and "1" become one
    class, "007" the name "7", a review "true" a bool, and a block of numbers (or of empty cells) before a block of
    texts fails to load. number_columns types the columns written as numbers through and through afterwards."""
    import datasets
    import pandas as pd
    import pyarrow as pa

    # Read from the first row, not the header alone: a row with more cells than the header makes pandas put the
    # first ones in index columns (__index_level_0__), which the refusal of the wrong columns names.
    names = pa.Table.from_pandas(pd.read_csv(path, nrows=1, **read_csv).head(0)).column_names  # no cell converted
    return datasets.Features(dict.fromkeys(names, datasets.Value("string")))


# An integer as Python and pandas write one: no sign but "-", no leading zero, no separators.
CANONICAL_INTEGER = re.compile(r"0|-?[1-9]\d*")


def number_kind(values: list[Any]) -> type | None:
    """``int`` or ``float`` where every filled cell of a csv column read as text is a number written as pandas
    writes one ("7", "-1"; "0.25", "1.0", "1e-05"; spaces around allowed) and no two cells spell one number; None
    for any other column (a text, "007", "+1", "1" beside "1.0"), whose cells keep their spelling."""
    first = next((v for v in values if isinstance(v, str) and v.strip()), "")
    try:
        float(first)  # a text column is told by its first filled cell, without a pass over its rows
    except ValueError:
        return None
    cells = {v.strip() for v in values if isinstance(v, str) and v.strip()}
    if cells and all(CANONICAL_INTEGER.fullmatch(c) for c in cells):
        return int if all(-(2**63) <= int(c) < 2**63 for c in cells) else None
    numbers = set()
    for cell in cells:
        try:
            number = float(cell)
        except ValueError:
            return None
        if not (CANONICAL_INTEGER.fullmatch(cell) or (math.isfinite(number) and repr(number) == cell)):
            return None
        numbers.add(number)
    return float if cells and len(numbers) == len(cells) else None


def whole_cells(cells: list[Any]) -> bool:
    """Whether every filled cell of a csv column of numbers spells a whole number ("1", "1.0"): ids, as a float
    column written by pandas holds them."""
    return all(float(c).is_integer() for c in cells if isinstance(c, str) and c.strip())


def number_columns(ds: Any, labels: Collection[str] = ()) -> Any:
    """A csv split read as text (see load_files) with its columns of numbers typed as numbers: integer labels are
    the ids they were, and a text column of numbers is still refused as the wrong column. An empty or
    whitespace-only cell of such a column is missing. A column of ``labels`` holding numbers that are not all whole
    (section codes 2.1, 3.1) keeps its text: those are names, whose spelling ("2" beside "2.0") a float loses."""
    import datasets
    import pyarrow.compute as pc

    kinds = {}
    for name, feature in ds.features.items():
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            continue
        column = ds.data.column(name)  # as loaded: no selection of rows to go through
        # The first rows tell most text columns, without reading every row of them (unless they are all empty: a
        # file labelled further down); the others by their distinct cells (a 0/1 column of 67k rows holds two), not
        # a Python pass over every row of each.
        head = [v for v in column.slice(0, 1000).to_pylist() if v is not None and v.strip()]
        if head and not number_kind(head):
            continue
        cells = pc.unique(pc.utf8_trim_whitespace(column)).to_pylist()
        if (kind := number_kind(cells)) and not (kind is float and name in labels and not whole_cells(cells)):
            kinds[name] = kind
    if not kinds:
        return ds
    features = ds.features.copy()
    for name, kind in kinds.items():
        features[name] = datasets.Value("int64" if kind is int else "float64")
    with no_progress_bars():  # a step of reading the file, whose own bar is off too
        return ds.map(
            lambda batch: {
                name: [kind(v) if isinstance(v, str) and v.strip() else None for v in batch[name]]
                for name, kind in kinds.items()
            },
            batched=True,
            features=features,
            desc="csv numbers",
        )


def first_bad_json_line(files: list[Path]) -> tuple[Path, int, str] | None:
    """The first line (counted from 1) of the JSON-lines ``files`` that is no JSON value, with the decoder's reason."""
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as err:
                        return path, number, err.msg
    return None


def _ids_and_names(mapping: dict) -> bool:
    """Whether ``mapping`` maps names to ids (a label2id) or ids to names (an id2label)."""
    ids = all(isinstance(v, int) and not isinstance(v, bool) for v in mapping.values())
    return bool(mapping) and (ids or all(INTEGER_TEXT.fullmatch(k) for k in mapping))


def _labels_json(folder: Path) -> dict[str, list[str]]:
    """Label names from ``labels.json`` beside the data: ``{"<column>": [...], ...}``, or a plain list ("")."""
    path = folder / "labels.json"
    if not path.is_file():
        return {}
    try:
        # utf-8-sig: the byte-order mark Windows editors write, which the data files may hold too, is read past.
        content = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as err:
        raise UsageError(not_utf8([path])) from err
    except json.JSONDecodeError as err:
        raise UsageError(f"cannot parse {path}: {err}.") from err
    if isinstance(content, list):
        return {"": [str(x) for x in content]}
    if isinstance(content, dict):
        # A model config's id2label ({"0": "neg"}) or a label2id per column: its names would be dropped unsaid.
        if content and all(isinstance(v, str) for v in content.values()) and all(map(INTEGER_TEXT.fullmatch, content)):
            key, name = next(iter(content.items()))
            raise UsageError(
                f'{path} maps {key!r} to {name!r}, ... (an id2label): write {{"label": [names in id order]}}, '
                "keyed by the label column."
            )
        id_maps = [k for k, v in content.items() if isinstance(v, dict) and _ids_and_names(v)]
        if mapped := next(iter(id_maps), None):
            raise UsageError(
                f'{path}\'s {mapped!r} is a mapping, not a list of names: write {{"{mapped}": [names in id order]}}.'
            )
        return {k: [str(x) for x in v] for k, v in content.items() if isinstance(v, list)}
    raise UsageError(
        f"{path} holds a {type(content).__name__}, not label names: write a list of names, or "
        '{"<label column>": [names...]}.'
    )


def check_cache() -> None:
    """Refuse a datasets cache this process cannot write: datasets takes a lock file there even to read a cached
    dataset (and the token ids are cached there), and its error would name the data file, not the cache."""
    import tempfile

    import datasets

    cache = Path(datasets.config.HF_DATASETS_CACHE)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as err:
        raise UsageError(
            f"the datasets cache {cache} is not writable ({err.strerror or type(err).__name__}): datasets writes "
            "there even to read a cached dataset. Point HF_DATASETS_CACHE at a writable folder (e.g. "
            "HF_DATASETS_CACHE=/tmp/hf_datasets)."
        ) from err


def load_raw_splits(dataset: str, labels: Collection[str] = ()) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The available splits of ``dataset`` as ``datasets.Dataset`` objects, and the label names the source gives
    per column (``labels.json`` or ``ClassLabel`` features; key "" for a plain list). A split whose ``ClassLabel``
    numbers the classes otherwise than train's holds train's ids for them. ``labels``: the label columns (see
    load_files)."""
    check_cache()
    splits, names = _load_raw_splits(dataset, labels)
    return _align_class_labels(splits), names


def _align_class_labels(splits: dict[str, Any]) -> dict[str, Any]:
    """Each split's ``ClassLabel`` ids re-expressed as train's ids for the same names: splits encoded one at a time
    (``class_encode_column`` on each, which numbers the classes that split holds) give one id other classes, and
    read by id every row would be scored against another class. A used id whose name train's feature lacks is an
    error."""
    import datasets

    train = _class_label_names(splits["train"])
    for split, ds in splits.items():
        for column, names in _class_label_names(ds).items():
            if split == "train" or column not in train or list(names) == list(train[column]):
                continue
            values = column_values(ds, column)
            listed = not hasattr(ds.features[column], "names")  # a list of ClassLabel ids per row
            flat = [x for v in values for x in (v or [])] if listed else values
            used = {v for v in flat if v is not None and v >= 0}  # -1: no label (GLUE's hidden test labels)
            if unknown := sorted({names[v] for v in used} - set(train[column])):
                raise UsageError(
                    f"the {split} split's {column!r} holds classes that train's ClassLabel does not name: "
                    f"{', '.join(map(repr, unknown[:5]))} (train's: {', '.join(train[column][:8])}); add examples of "
                    "them to train or remove those rows."
                )
            to_train = [train[column].index(name) if name in train[column] else -1 for name in names]

            def as_train(v: Any, m: list[int] = to_train) -> Any:
                """One id in train's numbering (a missing or -1 label stays as it is)."""
                return m[v] if v is not None and v >= 0 else v

            features = ds.features.copy()
            aligned = datasets.ClassLabel(names=list(train[column]))
            features[column] = replace(features[column], feature=aligned) if listed else aligned
            ds = ds.map(
                lambda batch, c=column, f=as_train, many=listed: {
                    c: [[f(x) for x in v] if many and v is not None else f(v) for v in batch[c]]
                },
                batched=True,
                features=features,
                desc=f"{split} {column!r} as train's class ids",
            )
        splits[split] = ds
    return splits


def _load_raw_splits(dataset: str, labels: Collection[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The splits and label names of ``dataset`` as its source holds them (see load_raw_splits)."""
    path = Path(dataset).expanduser()
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        return _load_saved(path)
    if path.is_dir():
        files = _split_files(path)
        if "train" not in files:
            packed = sorted(
                p.name for p in path.glob("train*.*") if p.suffix.lower() in {".gz", ".bz2", ".xz", ".zip", ".zst"}
            )
            hint = f" ({', '.join(packed)} is compressed: unpack it)" if packed else ""
            other = sorted(
                p.name
                for p in path.glob("train*.*")
                if p.is_file() and p.suffix.lower() not in {*FORMATS, ".gz", ".bz2", ".xz", ".zip", ".zst"}
            )
            if other and not hint:  # train.txt, train.xlsx: no reader here
                hint = f" ({other[0]} is not a format read here: save it as .csv, .tsv, .jsonl or .parquet)"
            # A dataset repository cloned from the hub keeps its files in data/ (or one folder per config).
            nested = [sub for sub in sorted(path.iterdir()) if sub.is_dir() and _holds_train(sub)]
            if nested and not hint:
                hint = f" (its folder {nested[0].name}/ holds one: pass --dataset {nested[0]})"
            raise UsageError(
                f"--dataset {dataset}: no train file found; expected train.<ext> (ext: {', '.join(FORMATS)}) in that "
                f"folder{hint}."
            )
        splits = {split: load_files(paths, labels=labels) for split, paths in files.items()}
        return splits, _labels_json(path) or _class_label_names(splits["train"])
    if path.is_file():
        if path.suffix.lower() not in FORMATS:
            raise UsageError(
                f"--dataset {dataset}: unsupported file type {path.suffix!r}; use one of {', '.join(FORMATS)}."
            )
        train = load_files([path], labels=labels)
        return {"train": train}, _labels_json(path.parent) or _class_label_names(train)
    if path.suffix.lower() in FORMATS or missing_local_path(dataset):
        raise UsageError(f"--dataset {dataset}: no such file or folder.")
    return _load_hub(dataset)


def _load_hub(dataset: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Load a hub dataset id (needs network or the local HF cache)."""
    import datasets

    try:
        loaded = datasets.load_dataset(dataset)
    except Exception as err:  # offline mode, unknown id, auth: one line is more useful than the stack
        raise UsageError(
            f"--dataset {dataset}: not a local file or folder, and loading it from the Hugging Face hub failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Pass a local folder or file instead."
        ) from err
    return _named_splits(loaded, dataset)


def _load_saved(path: Path) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """A folder written by ``DatasetDict.save_to_disk`` (or a single ``Dataset``'s, taken as the train split)."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as err:  # a folder copied in part, or written by another datasets major version
        raise UsageError(
            f"--dataset {path}: cannot load it with datasets.load_from_disk ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})."
        ) from err
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    splits, names = _named_splits(loaded, str(path))
    return splits, _labels_json(path) or names


def _named_splits(loaded: Any, dataset: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The train/validation/test splits of a ``DatasetDict`` (under any of their aliases), and the label names its
    ``ClassLabel`` features give."""
    splits = {}
    for split, aliases in SPLIT_ALIASES.items():
        present = [alias for alias in aliases if alias in loaded]
        present = present or [alias for alias in FALLBACK_ALIASES.get(split, ()) if alias in loaded]
        if len(present) > 1:  # validation and dev: which one?
            raise UsageError(
                f"--dataset {dataset}: it has several {split} splits ({', '.join(present)}); save it with one."
            )
        if present:
            splits[split] = loaded[present[0]]
    if "train" not in splits:
        raise UsageError(f"--dataset {dataset}: it has no train split (splits: {', '.join(loaded)}).")
    return splits, _class_label_names(splits["train"])


class ClassLabelNames(list):
    """Label names from a ``ClassLabel`` feature: the column holds their ids by definition, whatever the names."""


def _class_label(feature: Any) -> Any:
    """The ``ClassLabel`` of a column's feature: the feature itself, or the items' of a list column (a multi-label
    column such as go_emotions' ``labels``); None for any other column."""
    if hasattr(feature, "names"):
        return feature
    item = getattr(feature, "feature", None)
    return item if hasattr(item, "names") else None


def _class_label_names(train: Any) -> dict[str, list[str]]:
    """The label names of the train split's ``ClassLabel`` columns (a parquet file written by ``datasets`` keeps
    them in its schema, as a saved ``DatasetDict`` does), lists of them included, per column."""
    found = {name: _class_label(f) for name, f in train.features.items()}
    return {name: ClassLabelNames(label.names) for name, label in found.items() if label is not None}


# ----------------------------------------------------------------------------------------------------------------
# Normalising columns and labels


# What each column flag names, for the fix a missing-column error gives.
COLUMN_HOLDS = {
    "text_column": "the texts",
    "text_pair_column": "the second texts",
    "label_column": "the labels",
    "label_columns": "a level's labels",
    "teacher_column": "the teacher's probabilities",
}


def split_source(dataset: str, split: str) -> str:
    """Where ``dataset``'s ``split`` is read from, for messages: its files in a dataset folder, the data file itself,
    else the dataset (a hub id, a folder saved by datasets)."""
    path = Path(dataset).expanduser()
    if path.is_file():
        return dataset
    if path.is_dir() and not any((path / n).is_file() for n in ("dataset_dict.json", "state.json")):
        files = _split_files(path).get(split, [])
        if files:
            return str(files[0]) + (f" and {len(files) - 1} more shards" if len(files) > 1 else "")
    return dataset


# Columns pandas adds to a header's own: index columns of rows longer than the header, and nameless header cells.
PANDAS_FILLER = re.compile(r"__index_level_\d+__|Unnamed: \d+")


# Column names of the two texts of a sentence pair in common datasets (GLUE's, SNLI's, BERT's examples).
PAIR_COLUMNS = (
    ("premise", "hypothesis"),
    ("sentence1", "sentence2"),
    ("question1", "question2"),
    ("question", "sentence"),
    ("text_a", "text_b"),
    ("text", "text_pair"),
)


def pair_columns(columns: list[str]) -> tuple[str, str] | None:
    """The first and second text of a sentence pair among ``columns``, by their usual names; None where none is."""
    return next((pair for pair in PAIR_COLUMNS if set(pair) <= set(columns)), None)


def headerless(ds: Any) -> str | None:
    """Why a file's first line looks like a row of data rather than a header (a column named by one of its own
    values, or by a number), or None: pandas took the first row of a file without a header for the names."""
    for name in ds.column_names:
        if whole_number(name) is not None:
            return f"{name!r} is a number"
        if name in {str(v) for v in column_values(ds, name)}:
            return f"{name!r} is also a value of its column"
    return None


def check_columns(ds: Any, split: str | None, wanted: dict[str, str], source: str, taken: tuple[str, ...] = ()) -> None:
    """Raise a UsageError naming each missing column, where it is missing (``split`` of the dataset ``source``, or
    the evaluate.py --input file ``source`` when ``split`` is None) and the flag that names the right one, with close
    matches from the file's columns other than ``taken`` (an --input file's gold labels)."""
    missing = {flag: column for flag, column in wanted.items() if column not in ds.column_names}
    if not missing:
        return
    columns = ", ".join(ds.column_names)
    where = f"the --input file {source} (columns: {columns})"
    if split is not None:
        where = f"the {split} split ({split_source(source, split)}; columns: {columns})"
    # One column whose name holds the others: a .csv not separated by commas, or a .tsv not by tabs. A comma inside
    # some texts of a ';'-separated file gives rows more fields than the header: pandas makes them index columns.
    named = [c for c in ds.column_names if not PANDAS_FILLER.fullmatch(c)]
    if len(named) == 1 and (sep := next((c for c in ";\t|," if c in named[0]), None)):
        flag, column = next(iter(missing.items()))
        raise UsageError(
            f"--{flag} {column!r} is not a column of {where}. The file looks separated by {sep!r}: save it as .csv "
            "with commas or as .tsv with tabs."
        )
    if len(missing) == len(wanted) and (why := headerless(ds)):
        # Data rows only: the flags would name the first row's values, and that row would be lost.
        flags = " and ".join(f"--{flag} {column!r}" for flag, column in missing.items())
        raise UsageError(
            f"{flags} {'are not columns' if len(missing) > 1 else 'is not a column'} of {where}: its first line looks "
            f"like a row of data, not a header ({why}); add a header line that names the columns "
            f"({', '.join(wanted.values())})."
        )
    # Training data only: an --input file is read with the run's own text columns.
    pair = None
    if split is not None and "text_column" in missing and "text_pair_column" not in wanted:
        pair = pair_columns(ds.column_names)
    if len(missing) > 1 and len(ds.column_names) > 1:
        # No guess from names here: "text" is closest to "target", often the label column (columns review, target);
        # only the same names in another case (Text, Label) are.
        flags = " and ".join(f"--{flag} {column!r}" for flag, column in missing.items())
        folded = {c.casefold(): c for c in ds.column_names}
        cased = {flag: folded.get(column.casefold()) for flag, column in missing.items()}
        # A header written "text , label" (spaces after the commas, as a hand-written file has): pandas keeps them.
        trimmed = {c.strip(): c for c in ds.column_names if c != c.strip()}
        spaced = [trimmed.get(column) for column in missing.values()]
        if None not in spaced:
            hint = (
                f"; the header's names hold spaces around them ({', '.join(map(repr, spaced))}): remove them from the "
                "header line"
            )
        elif pair:
            rest = " and ".join(f"--{flag}" for flag in missing if flag != "text_column")
            hint = (
                f"; the columns {pair[0]!r} and {pair[1]!r} are a sentence pair: pass --text_column {pair[0]} "
                f"--text_pair_column {pair[1]}, and name the other column{'s' * (len(missing) > 2)} with {rest}"
            )
        elif None not in cased.values():
            hint = "; column names are case-sensitive: pass " + " ".join(f"--{f} {c}" for f, c in cased.items())
        else:
            hint = f"; name the columns to read with {' and '.join(f'--{flag}' for flag in missing)}"
        raise UsageError(f"{flags} are not columns of {where}{hint}.")
    for flag, column in wanted.items():
        if column not in ds.column_names:
            option = flag.split("[")[0]  # label_columns[1] is the second of --label_columns
            # A column another flag reads already is no guess (the text column for a missing --text_pair_column);
            # quoted, so that a name's spaces show ('text ' for text).
            others = (set(wanted.values()) | set(taken)) - {column}
            left = [c for c in ds.column_names if c not in others and not PANDAS_FILLER.fullmatch(c)]
            # The one column no other flag reads is the guess where no name is close (columns text, target), in
            # train only: a test file's one other column is its row ids (a competition's id, text), not its labels.
            lone = left if len(left) == 1 and split in (None, "train") else []
            close = difflib.get_close_matches(column, left, n=3, cutoff=0.5) or lone
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            hint += f" Pass the column that holds {COLUMN_HOLDS[option]} with --{option}."
            if pair and option == "text_column":
                # Read as one text, an NLI or paraphrase pair would lose its second half without a word.
                hint = (
                    f" The columns {pair[0]!r} and {pair[1]!r} are a sentence pair: pass --text_column {pair[0]} "
                    f"--text_pair_column {pair[1]}."
                )
            if split not in (None, "train") and option.startswith("label_column") and not close:
                # An unlabeled test set (a competition's) cannot be scored; it can still be predicted.
                hint = (
                    " A split without labels cannot be scored: move that file out of the dataset folder, and after "
                    "training predict it with python evaluate.py --run_dir RUN --input FILE."
                )
            raise UsageError(f"--{flag} {column!r} is not a column of {where}.{hint}")


def _is_integer(value: Any) -> bool:
    """True for ints and numpy ints, but not bools."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


INTEGER_TEXT = re.compile(r"-?\d+")
# The cells pandas reads as booleans: a csv's 0/1 columns written by pandas hold True and False.
BOOLEAN_TEXT = {"True": 1, "TRUE": 1, "true": 1, "False": 0, "FALSE": 0, "false": 0}
WHOLE_NUMBER_TEXT = re.compile(r"-?\d+(\.0+)?")  # "3", "3.0": a float column cast to text writes ids so


def whole_number(value: Any) -> int | None:
    """The integer a label written as a whole number in text stands for ("3", "3.0", " -1 "); None for any other."""
    if isinstance(value, str) and WHOLE_NUMBER_TEXT.fullmatch(text := value.strip()):
        return int(text.split(".")[0])
    return None


def hidden_label(value: Any) -> bool:
    """GLUE's mark of a hidden label, -1, however a file spells it: an integer, -1.0 (a float column) or text."""
    if isinstance(value, str):
        return whole_number(value) == -1
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool) and value == -1


def label_key(value: Any, keys: dict[Any, int]) -> Any:
    """``value`` as the label map ``keys`` spells it: a csv split read as numbers where train was read as text (one
    "N/A" label makes pandas read a whole file as text), or the other way round, still finds its class."""
    if value in keys or not keys:
        return value
    text_keys = isinstance(next(iter(keys)), str)
    flag = BOOLEAN_TEXT.get(value.strip()) if isinstance(value, str) else None
    if flag is not None and flag in keys:
        # Train's ids 0 and 1 (an --input file's map holds them beside the names "0" and "1") and a split's True or
        # False, as when pandas read those cells as booleans.
        return flag
    if text_keys and isinstance(value, bool | np.bool_ | str) and (flag := _binary(value)) is not None:
        # True/False however a split spells it (a jsonl's boolean, a csv's "true" read as written) finds the class
        # train spelled another way, as when pandas read every csv boolean as True/False.
        spelled = next((text for text, v in BOOLEAN_TEXT.items() if v == flag and text in keys), None)
        return spelled or (value if isinstance(value, str) else str(bool(value)))
    if (
        text_keys
        and isinstance(value, int | float | np.integer | np.floating)
        and float(value).is_integer()
        and not spelled_twice(value, keys)
    ):
        text = str(int(value))
        # A split of whole codes only (1.0, 2.0) is read as numbers where train's, beside a 1.5, kept them as text.
        return text if text in keys else one_spelling(int(value), keys) or text
    if (
        (number := whole_number(value)) is not None
        and (not text_keys or str(number) in keys)
        and not spelled_twice(value, keys)
    ):
        return number if not text_keys else str(number)  # "1.0" for the id 1, or for train's text "1"
    return value


def one_spelling(number: int, keys: dict[Any, int]) -> str | None:
    """The one text key that writes ``number`` with zero decimals ("2.0" or "2.00" for 2), or None where none or
    several do. Not "007" for 7: leading zeros are another label's spelling, refused naming it (spelling_hint)."""
    found = [k for k in keys if isinstance(k, str) and re.fullmatch(rf"{number}\.0+", k.strip()) is not None]
    return found[0] if len(found) == 1 else None


def spelled_twice(value: Any, keys: dict[Any, int]) -> bool:
    """True for a label written as a whole number ("001", "1.0", or 1.0 from a csv column of such numbers) that is no
    key itself, where two or more keys spell its number as text ("01" and "1", two classes of a csv read as written):
    which of them it means cannot be told. An integer is not: its writer wrote "1"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        number = int(value)
    elif not isinstance(value, str) or value in keys or (number := whole_number(value)) is None:
        return False
    return sum(isinstance(k, str) and whole_number(k) == number for k in keys) > 1


def _by_name_or_id(labels: set[int], names: list[str]) -> str:
    """How integer labels read against integer-like names from labels.json: "id" (a position in the list) or
    "name"; refused where both readings fit and differ."""
    if not all(INTEGER_TEXT.fullmatch(name) for name in names) or names == [str(i) for i in range(len(names))]:
        return "id"
    as_ids = all(0 <= v < len(names) for v in labels)
    as_names = {str(v) for v in labels} <= set(names)
    if as_ids and as_names:
        raise UsageError(
            f"labels.json lists integers as label names ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}) "
            f"and the labels ({', '.join(map(str, sorted(labels)[:5]))}) could be either their positions or the names "
            "themselves; list the names in id order as the labels' own values (label i is names[i]), or remove "
            "labels.json to name each class by its value."
        )
    return "name" if as_names else "id"


def build_label_space(train_labels: list[Any], names: list[str] | None) -> tuple[list[str], dict[Any, int]]:
    """Label names and the map from raw label values to ids, decided from the train split."""
    if train_labels and all(isinstance(v, float | np.floating) and float(v).is_integer() for v in train_labels):
        # 0.0/1.0 from a float column (a parquet or a dataframe's) are the ids 0/1; later splits' floats find the
        # same map entries, since 1.0 == 1 hashes alike.
        train_labels = [int(v) for v in train_labels]
    if train_labels and all(isinstance(v, bool | np.bool_) for v in train_labels):
        # True/False labels (a csv's, a jsonl's or a parquet bool column): the classes "False" and "True", in that
        # order, so that False is id 0 as it is 0 in a 0/1 column; later splits find them through label_key.
        train_labels = [str(bool(v)) for v in train_labels]
    numbers = {v: whole_number(v) for v in set(train_labels)} if all(isinstance(v, str) for v in train_labels) else {}
    if (
        numbers
        and None not in numbers.values()
        and len(set(numbers.values())) == len(numbers)  # "1" beside "1.0": one id twice, or two classes? Left as text
        and (names is not None or any("." in v for v in numbers))
        and not set(numbers) & set(names or ())
    ):
        # "0", "1" (a jsonl's or a string column's) beside names that are not those texts, or "0.0", "1.0" (a float
        # column cast to text): the ids, as 0.0/1.0 floats are, and as later splits' and an --input file's "1" or
        # "1.0" already are (label_key).
        train_labels = [numbers[v] for v in train_labels]
    if names is not None:
        # Two ids with one name would be merged in every metric and prediction file, silently.
        if twice := sorted(name for name, n in Counter(names).items() if n > 1):
            raise UsageError(
                f"the label names given (labels.json or ClassLabel) list {', '.join(map(repr, twice[:5]))} more than "
                "once; each class needs its own name."
            )
        if (
            all(_is_integer(v) for v in train_labels)
            and not isinstance(names, ClassLabelNames)
            and _by_name_or_id({int(v) for v in train_labels}, names) == "name"
        ):
            # labels.json ["1", ..., "5"] over star ratings 1..5: the values are the names, not positions.
            return names, {int(name): i for i, name in enumerate(names)}
        if all(_is_integer(v) for v in train_labels):
            bad = sorted({int(v) for v in train_labels if not 0 <= v < len(names)})
            if bad:
                raise UsageError(
                    f"label ids {bad[:5]} are out of range for the {len(names)} label names given; fix the labels or labels.json."
                )
            # A split written by hand may give the names themselves ("pos" where train has 1): they are its
            # classes too. Integer names are left out: "1" stays the id 1, as label_key reads it.
            by_name = {name: i for i, name in enumerate(names) if not INTEGER_TEXT.fullmatch(name)}
            return names, {i: i for i in range(len(names))} | by_name
        odd = {repr(v): v for v in train_labels if v not in names}  # by repr: a nested column's dict is no key
        # A csv column of ids and a 1.5 is read as written, its ids as text "0", "1": those are ids, and the cells that
        # are neither are named as the file writes them (1.5, not '1.5').
        numbers = {shown: number_value(v) for shown, v in odd.items()}
        strange = sorted(
            {
                str(odd[shown]) if n is not None else shown
                for shown, n in numbers.items()
                if n is None or n != n.to_integral_value() or not 0 <= n < len(names)
            }
            or odd
        )
        if strange:
            raise UsageError(
                f"labels {', '.join(strange[:5])} are neither integer ids nor names from the label names given "
                f"({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); fix the labels or labels.json."
            )
        return names, {name: i for i, name in enumerate(names)}
    # Checked before the set of values is taken: a dict (a nested column's) cannot be in one.
    if not all(_is_integer(v) or isinstance(v, str) for v in train_labels):
        kinds = sorted({type(v).__name__ for v in train_labels})
        fraction = next((v for v in train_labels if isinstance(v, float | np.floating)), None)
        # Codes such as 2.1 in a float column (a parquet's, a jsonl's unquoted numbers): their spelling is gone
        # ("2.10" is 2.1), so they are refused rather than guessed; as strings they are names.
        fix = (
            f" If they are names (codes such as {fraction!r}), write the labels as strings (in a jsonl in quotes; "
            "pandas: the column's .astype(str) before saving)."
            if fraction is not None
            else ""
        )
        shown = f" (e.g. {fraction!r})" if fraction is not None else ""
        raise UsageError(
            f"labels must be strings or integers, found {', '.join(kinds)}{shown}; check --label_column.{fix}"
        )
    values = sorted(set(train_labels), key=lambda v: (not _is_integer(v), v if _is_integer(v) else str(v)))
    texts = all(isinstance(v, str) for v in values)  # not read as the ids they spell above
    if texts and numbers and None not in numbers.values() and len(set(numbers.values())) == len(numbers):
        # Ratings or levels "1".."12" written as text: in the order of their numbers, as integer labels are ("2"
        # before "10", which text order puts first); other texts keep text order.
        values.sort(key=numbers.__getitem__)
    if any(_is_integer(v) for v in values) and any(isinstance(v, str) for v in values):
        # 1 and "1", or 0 and "neg", would become separate classes of one task.
        ints = [v for v in values if _is_integer(v)][:3]
        strs = [v for v in values if isinstance(v, str)][:3]
        raise UsageError(
            f"labels mix integers ({', '.join(map(repr, ints))}) and strings ({', '.join(map(repr, strs))}); "
            "write every label one way (all names or all integer ids)."
        )
    # "pos " beside "pos" (a spreadsheet cell's trailing space) would be a class of its own, scored apart.
    spelled: dict[str, list[str]] = {}
    for v in values:
        if isinstance(v, str):
            spelled.setdefault(v.strip(), []).append(v)
    if same := next((both for both in spelled.values() if len(both) > 1), None):
        raise UsageError(
            f"labels {same[0]!r} and {same[1]!r} differ only by spaces around them; strip them in the data (as they "
            "are, they would be separate classes)."
        )
    return [str(v) for v in values], {v: i for i, v in enumerate(values)}


def spelling_hint(unknown: list[Any], known: list[Any], where: str) -> str:
    """The hint for unknown labels that are known ones spelled otherwise, " ('pos ' is 'pos' in train: strip the
    spaces around labels.)" or the case's; "" where none is. ``where`` names the known ones ("in train")."""
    # Train's "pos " and a file's "pos": the spaces are invisible in a message unless named.
    stripped = {k.strip(): k for k in known if isinstance(k, str)}
    spaced = [(v, stripped[v.strip()]) for v in unknown if isinstance(v, str) and v.strip() in stripped]
    if spaced:
        return f" ({spaced[0][0]!r} is {spaced[0][1]!r} {where}: strip the spaces around labels.)"
    folded = {k.casefold(): k for k in known if isinstance(k, str)}
    cased = [(v, folded[v.casefold()]) for v in unknown if isinstance(v, str) and v.casefold() in folded]
    if cased:
        return f" ({cased[0][0]!r} is {cased[0][1]!r} {where}: labels are case-sensitive.)"
    # Train's "007" (a csv's labels are read as written) and a file's 7; or "01" and "1", both classes, and a file's
    # "001". Not a file's "2.10" for train's "2.1": together they are decimal codes, two labels (spelled_numbers).
    texts = [k for k in known if isinstance(k, str)]
    spelled = spelled_numbers(list(dict.fromkeys(texts + [str(v) for v in unknown if number_value(v) is not None])))
    numbers: dict[Any, list[str]] = {}
    for k in dict.fromkeys(texts):
        if k in spelled:
            numbers.setdefault(spelled[k], []).append(k)
    renumbered = [(v, numbers[spelled[str(v)]]) for v in unknown if spelled.get(str(v)) in numbers]
    return "".join(
        f" ({v!r} is {' or '.join(map(repr, ks))} {where}: write each label one way in every file.)"
        for v, ks in renumbered[:1]
    )


def number_value(value: Any) -> Decimal | None:
    """The number a label spells ("007", "1.0", 7), for saying which labels spell one number; None for any other.
    Exact: a float would make ids above 2**53 (9007199254740992 and 9007199254740993) one number."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        value = repr(value)  # 0.1 as written, not its binary expansion
    try:
        number = Decimal(value) if isinstance(value, int | str) else None
    except InvalidOperation:  # a text, or "1/2"
        return None
    return number if number is not None and number.is_finite() else None


def _check_known(
    values: list[Any], value_to_id: dict[Any, int], split: str, column: str, names: list[str] | None = None
) -> None:
    """Refuse labels that train never showed: a model cannot predict them and metrics would silently lie. ``names``:
    the labels of the column's level, listed where a hierarchy has several columns of labels to tell apart."""
    unknown = Counter(v for v in values if label_key(v, value_to_id) not in value_to_id)
    if unknown:
        shown = ", ".join(f"{v!r} ({n}x)" for v, n in unknown.most_common(5))
        if names is not None:
            shown += f" (train's {column!r} labels: {listed(names)})"
        hint = spelling_hint(list(unknown), list(value_to_id), "in train")
        raise UsageError(
            f"the {split} split has labels not seen in train in {column!r}: {shown}. "
            f"Add examples of them to train or remove those rows.{hint}"
        )


def listed(names: list[Any], limit: int = 8) -> str:
    """The first ``limit`` label names, comma-separated, "..." marking the rest."""
    return ", ".join(map(str, names[:limit])) + (", ..." if len(names) > limit else "")


def _check_hidden(values: list[Any], value_to_id: dict[Any, int], split: str, column: str) -> None:
    """Refuse a split some of whose rows are -1 (GLUE's mark of a hidden label) where train has no -1: unlabeled
    rows, which a named count says better than "a label not seen in train". A whole split of -1 is left out before."""
    hidden = sum(hidden_label(v) and label_key(v, value_to_id) not in value_to_id for v in values)
    if hidden:
        # Refused, as a split's empty labels are: its scores (results.json, compared across runs) would silently
        # cover fewer rows than its file holds. evaluate.py --input scores a file's labeled rows, and says so.
        raise UsageError(
            f"the {split} split has {hidden} of its {len(values)} rows labeled -1 (unlabeled; train has no -1) in "
            f"{column!r}: label them, drop them, or make every label of the split -1 to leave it out of the run (then "
            "predict it, unscored, with python evaluate.py --run_dir RUN --input FILE)."
        )


def case_notes(spec: Any) -> list[str]:
    """Warnings for label names that differ only by case ("Pos" and "pos"): maybe one class typed two ways, which
    would be trained and scored as two."""
    notes = []
    for level in spec.levels:
        spellings: dict[str, list[str]] = {}
        for name in level["labels"]:
            spellings.setdefault(str(name).casefold(), []).append(str(name))
        for same in (names for names in spellings.values() if len(names) > 1):
            shown = " and ".join(map(repr, sorted(same)))
            notes.append(
                f"warning: the labels {shown} differ only by case: they are trained as two classes; write them one "
                "way in every split if they are one"
            )
    return notes


def spelled_numbers(names: list[str]) -> dict[str, Any]:
    """For each of one column's labels ``names`` that spells a number, what tells which number it means: the number
    ("01" and "1" mean one), or where the column holds decimal codes, the number and its decimals."""
    numbers = {name: number for name in names if (number := number_value(name)) is not None}
    # Section or version numbers ("2.1" and "2.10") are codes: a fraction written with more or fewer digits is
    # another code, which no writer of numbers would do within one column. Where a column shows that, only
    # spellings with as many decimals ("02.1" and "2.1") are one code written two ways.
    digits = {name: n.as_tuple().exponent for name, n in numbers.items()}
    fractions: dict[Decimal, set[Any]] = {}
    for name, number in numbers.items():
        if number != number.to_integral_value():
            fractions.setdefault(number, set()).add(digits[name])
    codes = any(len(lengths) > 1 for lengths in fractions.values())
    return {name: (number, digits[name]) if codes else number for name, number in numbers.items()}


def number_notes(spec: Any) -> list[str]:
    """Warnings for label names that spell one number two ways ("01" and "1", "1" and "1.0"): read as text, as
    written, they are two classes where the user may have meant one. Not for decimal codes ("2.1" and "2.10")."""
    notes = []
    for level in spec.levels:
        spellings: dict[Any, list[str]] = {}
        for name, number in spelled_numbers(list(map(str, level["labels"]))).items():
            spellings.setdefault(number, []).append(name)
        for same in (names for names in spellings.values() if len(names) > 1):
            notes.append(
                f"warning: the labels {' and '.join(map(repr, same))} spell one number two ways: they are trained as "
                "two classes; write them one way in every split if they are one"
            )
    return notes


def conflict_notes(texts: list[tuple[str, ...]], ids: list[Any], spec: Any) -> list[str]:
    """A warning counting the training texts (``texts``: train's row_texts; ``ids``: their labels, an id, a
    hierarchy's list of level ids or a multi-label row's multi-hot list) given with more than one label, with the
    first as an example: noise or mistakes, which the model is taught both ways."""
    if spec.problem_type not in (
        "single_label_classification",
        "hierarchical_classification",
        "multi_label_classification",
    ):
        return []
    first: dict[tuple[str, ...], tuple[Any, ...]] = {}
    mixed: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}  # in the order their second label is met
    for row, label in zip(texts, ids, strict=True):
        label = tuple(label) if isinstance(label, list) else (label,)
        if (seen := first.setdefault(row, label)) != label and label not in (known := mixed.setdefault(row, [seen])):
            known.append(label)
    if not mixed:
        return []
    row, labels = next(iter(mixed.items()))
    if (
        spec.problem_type == "multi_label_classification"
    ):  # multi-hot rows: each set by its class names, in the order met
        classes = spec.levels[0]["labels"]
        names = ", ".join("+".join(str(classes[i]) for i, on in enumerate(label) if on) or "none" for label in labels)
        what = "label set"
    else:
        # Named at the finest level where they differ: a hierarchy's two fine classes under one coarse class.
        level = max(i for i in range(len(spec.levels)) if len({label[i] for label in labels}) > 1)
        names = ", ".join(spec.levels[level]["labels"][i] for i in sorted({label[level] for label in labels}))
        what = "label"
    return [
        f"warning: {len(mixed)} training text{'s' * (len(mixed) > 1)} appear{'s' * (len(mixed) == 1)} with more than "
        f"one {what} (e.g. {shortened(' / '.join(row))!r}: {names}): the model is taught each of them; fix the labels "
        "of those that are mistakes"
    ]


JOINERS = (",", "|", ";")  # how a multi-label row is often written into one text cell


def joined_notes(spec: Any) -> list[str]:
    """A warning where most classes of a one-label-per-row column join several names by one separator ("sports,news")
    and the names recur across them: a multi-label column written as text, trained as one class per combination. A
    warning, not a refusal: a class name may hold a comma ("Arts, Culture")."""
    if spec.problem_type != "single_label_classification":
        return []
    names = [str(name) for name in spec.levels[0]["labels"]]
    for sep in JOINERS:
        joined = [n for n in names if sep in n and all(part.strip() for part in n.split(sep))]
        parts = Counter(part.strip() for n in joined for part in {p.strip() for p in n.split(sep)})
        # Most classes joined, and most of their names in two or more of them (topics such as "Arts, Culture"
        # share none).
        if len(joined) * 2 <= len(names) or sum(n > 1 for n in parts.values()) * 2 < len(parts):
            continue
        shown = ", ".join(map(repr, joined[:3])) + (", ..." if len(joined) > 3 else "")
        example = json.dumps([part.strip() for part in joined[0].split(sep)])
        return [
            f"warning: {len(joined)} of the {len(names)} classes in {spec.columns[0]!r} join names with {sep!r} "
            f"({shown}), names that recur across them: each combination is trained as a class of its own. If a row "
            f"may hold several labels, write them as a list ({example}, in a csv cell too) and pass --multi_label"
        ]
    return []


def carve_validation(
    train: Any, strata: list[Any], ratio: float, seed: int, classes: bool = True
) -> tuple[Any, Any, str]:
    """Split a stratified validation set off train (plain random split when the classes are too small to stratify).
    ``classes``: the strata are classes, so a class of one row keeps it for training (carved off, it would be a
    validation class that training never shows, and it would stop every other class from being stratified); label
    sets of multi-label rows are often unique, so those are only stratified where each set has two rows."""
    from sklearn.model_selection import train_test_split

    # As scikit-learn rounds: the validation part up, the rest for training; both must keep at least one row.
    held_out = math.ceil(ratio * len(train))
    if not 0 < held_out < len(train):
        raise UsageError(
            f"--validation_split_ratio {ratio} of {len(train)} train rows leaves "
            f"{'no validation' if held_out == 0 else 'no training'} rows; choose a ratio such as 0.1."
        )
    counts = Counter(strata)
    alone = [i for i, s in enumerate(strata) if counts[s] < 2] if classes else []
    pool = np.asarray([i for i, s in enumerate(strata) if counts[s] >= 2]) if alone else np.arange(len(train))
    if len(pool) - held_out < 1:  # too few rows of classes with two or more: carved from every row, as before
        alone, pool = [], np.arange(len(train))
    pool_classes = Counter(strata[i] for i in pool)
    # scikit-learn stratifies only with a row of each class on both sides.
    least = min(len(pool) * ratio, len(pool) - held_out)
    ok = min(pool_classes.values()) >= 2 and least >= len(pool_classes)
    train_idx, val_idx = train_test_split(
        pool, test_size=held_out, random_state=seed, stratify=[strata[i] for i in pool] if ok else None
    )
    how = "stratified" if ok else "random (a class has too few rows to stratify)"
    if alone:
        how += f"; {len(alone)} row{'s' * (len(alone) > 1)} of classes with one row kept for training"
    note = f"no validation split: carved {len(val_idx)} of {len(train)} train rows as validation ({how}, seed {seed})"
    return train.select(sorted([*train_idx, *alone])), train.select(sorted(val_idx)), note


@dataclass
class LabelSpec:
    """How labels are read and encoded: the problem type and, per level (hierarchical) or once, the label names."""

    problem_type: str  # single_label_classification | multi_label_classification | hierarchical_classification
    columns: list[str]
    levels: list[dict[str, Any]]  # [{"name": column, "labels": [names]}], coarse to fine; one entry otherwise
    parents: list[list[int]] = field(default_factory=list)  # per level >= 1: parent id of each label id
    # Per level, the [label value, id] pairs train's labels were read by (1 and "1" differ): what a file scored
    # later (evaluate.py --input) needs where integer names leave open whether an integer is a name or a position.
    value_ids: list[list[list[Any]]] = field(default_factory=list)


def binaries(values: list[Any]) -> list[float | None]:
    """Each value of a 0/1 label column as 0.0 or 1.0 (see _zero_one), None where it is no such value; worked out once
    per distinct value, as a wide multi-label file holds millions of cells."""
    try:
        flags = {v: _zero_one(v) for v in set(values)}
    except TypeError:  # a cell that cannot be hashed (a list) is no 0/1 value
        return [None] * len(values)
    return [None if (flag := flags[v]) is None else float(flag) for v in values]


def _zero_one(value: Any) -> int | None:
    """0 or 1 for a cell of a 0/1 label column: a 0/1 value (see _binary), or one written as a whole number ("1",
    "1.0", "0"), which a csv column holds as text when its cells spell one number two ways ("1" beside "1.0")."""
    if (flag := _binary(value)) is not None or not isinstance(value, str):
        return flag
    text = value.strip()
    return int(float(text)) if WHOLE_NUMBER_TEXT.fullmatch(text) and float(text) in (0, 1) else None


def _binary(value: Any) -> int | None:
    """0 or 1 for a 0/1 label value (int, bool, float or a csv's "True"/"False"), None for anything else."""
    if isinstance(value, str):
        return BOOLEAN_TEXT.get(value.strip())
    if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating) and value in (0, 1):
        return int(value)
    return None


def _two_or_more(level_names: list[str], column: str) -> None:
    """A softmax over one class learns nothing (its loss is always 0): stop before any model is built."""
    if len(level_names) < 2:
        held = f" ({level_names[0]!r})" if level_names else ""
        raise UsageError(
            f"the train split's {column!r} column holds one class{held}: a classifier needs two or more. Check "
            "--label_column, or list every class in labels.json if train lacks some."
        )


# From this many train rows on, a label column whose every value is its own is an id or a text column: one class per
# row leaves nothing to learn (and no validation row of a training class), however the model is built. Not fewer: a
# smoke test's first 10-20 rows of a 50- or 77-class set (trec's fine labels, banking77) often hold 10-20 classes.
MIN_ROWS_FOR_IDS = 100


def _not_ids(values: list[Any], column: str) -> None:
    """Refuse a one-label-per-row column in which every train row has a value of its own (a row id, a text)."""
    if len(values) >= MIN_ROWS_FOR_IDS and len(set(values)) == len(values):
        shown = ", ".join(repr(v) for v in values[:3])
        raise UsageError(
            f"every one of the train split's {len(values)} rows has its own {column!r} value ({shown}, ...): an id "
            "or a text, not a label; name the label column with --label_column."
        )


def _label_spec(train: Any, cfg: TrainConfig, names: dict) -> tuple[LabelSpec, list[dict]]:
    """Decide the problem type and label spaces from train; also return the value->id maps per level."""
    label_column, label_columns = cfg.label_column, cfg.label_columns
    if label_columns and cfg.multi_label:  # one 0/1 column per label
        return LabelSpec(
            "multi_label_classification", label_columns, [{"name": "labels", "labels": list(label_columns)}]
        ), []
    if label_columns:  # hierarchical, coarse to fine
        # Several 0/1 columns are one column per label (multi-label), not levels of a hierarchy: training them as
        # levels would fit one binary softmax per label and report hierarchy metrics, without a word.
        if all({_zero_one(v) for v in column_values(train, column)} <= {0, 1} for column in label_columns):
            raise UsageError(
                f"--label_columns {' '.join(label_columns)} all hold 0/1 values: one column per label. Add "
                "--multi_label to train them as a multi-label task (several columns without it are the coarse-to-fine "
                "levels of a hierarchy)."
            )
        levels, maps = [], []
        for column in label_columns:
            level_names, value_to_id = build_label_space(column_values(train, column), names.get(column))
            _two_or_more(level_names, column)
            levels.append({"name": column, "labels": level_names})
            maps.append(value_to_id)
        return LabelSpec("hierarchical_classification", label_columns, levels), maps
    values = column_values(train, label_column)
    given = names.get(label_column) or names.get("")
    if any(isinstance(v, list) for v in values):  # a column of label lists: multi-label
        _check_label_lists(values, "train", label_column)
        flat = [x for v in values for x in (v or [])]
        level_names, value_to_id = build_label_space(flat, given)
        if not level_names:  # a model of no outputs: nothing to learn, and no metric is defined
            raise UsageError(
                f"every row of the train split has an empty list in {label_column!r}: there is no label to learn. "
                "Check --label_column and the train file."
            )
        return LabelSpec(
            "multi_label_classification", [label_column], [{"name": label_column, "labels": level_names}]
        ), [value_to_id]
    if cfg.multi_label:  # asked for, but nothing here is multi-label: training single-label would ignore the flag
        # The value shown is one that joins names ("sports,news"), where one does: what the user meant as a list.
        value = next((v for v in values if isinstance(v, str) and any(sep in v for sep in JOINERS)), values[0])
        sep = next((sep for sep in JOINERS if isinstance(value, str) and sep in value), None)
        example = json.dumps([part.strip() for part in value.split(sep)]) if sep else '["sports", "news"]'
        raise UsageError(
            f"--multi_label: the train split's {label_column!r} column holds one label per row, not lists of labels "
            f"(it reads {shortened(repr(value))} as one label). Give the labels as lists (e.g. {shortened(example)}), "
            "or one 0/1 column per label with --label_columns, or drop --multi_label."
        )
    level_names, value_to_id = build_label_space(values, given)
    _two_or_more(level_names, label_column)
    _not_ids(values, label_column)
    return LabelSpec("single_label_classification", [label_column], [{"name": label_column, "labels": level_names}]), [
        value_to_id
    ]


def shortened(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, "..." marking a cut, for a value quoted in a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_label_lists(values: list[Any], split: str, column: str) -> None:
    """A multi-label column holds a list per row (or nothing): a lone string would be read as its characters."""
    for i, value in enumerate(values):
        if value is not None and not isinstance(value, list):
            raise UsageError(
                f"row {i} of the {split} split: {column!r} holds lists of labels, but this row holds {value!r:.60} "
                f"({type(value).__name__}); write it as a list, e.g. [{value!r:.40}]."
            )


def _check_one_label(values: list[Any], rows: list[int], split: str, column: str) -> None:
    """A column of one label per row in train holds no list in another split (a multi-label row pasted in); ``rows``:
    each value's row in its file, to name it by."""
    for i, value in zip(rows, values, strict=True):
        if isinstance(value, list | dict):
            raise UsageError(
                f"row {i} of the {split} split: {column!r} holds a list ({value!r:.60}) where train holds one label per "
                "row; write one label there, or lists in every split for a multi-label task."
            )


def _encode(ds: Any, split: str, spec: LabelSpec, maps: list[dict]) -> Any:
    """Replace the raw label column(s) by one ``label`` column: an id, a list of level ids, or a multi-hot list."""
    columns = {c: column_values(ds, c) for c in spec.columns}
    if spec.problem_type in ("single_label_classification", "hierarchical_classification"):
        rows = column_values(ds, SOURCE_ROW) if SOURCE_ROW in ds.column_names else list(range(len(ds)))
        for column in spec.columns:
            _check_one_label(columns[column], rows, split, column)
    if spec.problem_type == "single_label_classification":
        _check_hidden(columns[spec.columns[0]], maps[0], split, spec.columns[0])
        _check_known(columns[spec.columns[0]], maps[0], split, spec.columns[0])
        encoded = [maps[0][label_key(v, maps[0])] for v in columns[spec.columns[0]]]
    elif spec.problem_type == "hierarchical_classification":
        for column, value_to_id, level in zip(spec.columns, maps, spec.levels, strict=True):
            _check_hidden(columns[column], value_to_id, split, column)
            _check_known(columns[column], value_to_id, split, column, level["labels"])
        encoded = [
            [m[label_key(v, m)] for m, v in zip(maps, row, strict=True)] for row in zip(*columns.values(), strict=True)
        ]
    elif maps:  # a column of label lists
        _check_label_lists(columns[spec.columns[0]], split, spec.columns[0])
        lists = [v or [] for v in columns[spec.columns[0]]]
        _check_known([x for v in lists for x in v], maps[0], split, spec.columns[0])
        size = len(spec.levels[0]["labels"])
        ids = [{maps[0][label_key(x, maps[0])] for x in v} for v in lists]
        encoded = [[1.0 if i in row else 0.0 for i in range(size)] for row in ids]
    else:  # 0/1 columns
        flags = {c: binaries(vals) for c, vals in columns.items()}
        if bad := {c for c, values in flags.items() if None in values}:
            raise UsageError(
                f"--multi_label columns must hold 0/1 values; {', '.join(sorted(bad))} in the {split} split do not."
            )
        encoded = [list(row) for row in zip(*flags.values(), strict=True)]
    # The new fingerprint from the source's and the label maps (what the encoding is a function of): left to
    # datasets, it would hash the whole encoded list, a second on a 67k-row training set.
    from datasets.fingerprint import Hasher

    fingerprint = Hasher.hash(("labels-v1", ds._fingerprint, spec.problem_type, spec.columns, maps))
    return ds.remove_columns(spec.columns).add_column("label", encoded, new_fingerprint=fingerprint)


def _level_parents(train_labels: list[list[int]], levels: list[dict]) -> list[list[int]]:
    """For each finer level, the parent (coarser-level id) each label co-occurs with most in train. Levels given fine
    to coarse are refused: each "child" would then sit under several parents, and the map would mean nothing."""
    parents = []
    for level in range(1, len(levels)):
        pairs = Counter((row[level], row[level - 1]) for row in train_labels)
        under = Counter(child for child, _ in pairs)  # how many parents each label sits under
        over = Counter(parent for _, parent in pairs)  # how many children each parent has
        if sum(n > 1 for n in under.values()) > len(under) / 2 and all(n == 1 for n in over.values()):
            coarse, fine = levels[level - 1]["name"], levels[level]["name"]
            raise UsageError(
                f"--label_columns goes from coarse to fine, but each {coarse!r} value sits under one {fine!r} value "
                f"and most {fine!r} values under several {coarse!r}: list them as --label_columns {fine} {coarse}."
            )
        best: dict[int, tuple[int, int]] = {}
        for (child, parent), n in pairs.items():
            if n > best.get(child, (-1, 0))[1]:
                best[child] = (parent, n)
        parents.append([best.get(i, (0, 0))[0] for i in range(len(levels[level]["labels"]))])
    return parents


def _check_teacher(ds: Any, split: str, num_labels: int) -> None:
    """Teacher probability lists must have one non-negative entry per label (or be missing)."""
    for i, probs in enumerate(column_values(ds, "teacher")):
        # NaN arrives as None inside a list read from parquet/jsonl; either is no probability.
        valid = probs is None or all(isinstance(p, int | float) and math.isfinite(p) and p >= 0 for p in probs)
        if probs is not None and (len(probs) != num_labels or not valid):
            raise UsageError(
                f"row {i} of the {split} split: --teacher_column needs {num_labels} non-negative probabilities, "
                f"got {probs!r:.80}."
            )


def _align_teacher(ds: Any, teacher_labels: list[str] | None, label_names: list[str]) -> tuple[Any, str]:
    """Teacher probabilities in label-id order: checked against labels.json's ``teacher_labels`` (the order the
    teacher wrote them in) and reordered to the label ids when that lists the same names in another order."""
    if teacher_labels is None:
        return ds, (
            f"teacher probabilities are taken in label-id order {label_names}; "
            "list the teacher's order as teacher_labels in labels.json to have it checked"
        )
    if teacher_labels == label_names:
        return ds, "teacher probabilities follow teacher_labels of labels.json, which is the label-id order"
    perm = [teacher_labels.index(name) for name in label_names]  # label id -> position in the teacher's list
    reordered = [None if probs is None else [probs[j] for j in perm] for probs in column_values(ds, "teacher")]
    note = f"teacher probabilities reordered from teacher_labels order {teacher_labels} to label-id order {label_names}"
    return ds.remove_columns("teacher").add_column("teacher", reordered), note


def _missing(value: Any) -> bool:
    """A missing cell: None, the NaN a csv reader or a float column holds there, or an empty (whitespace-only)
    string, which is what an empty csv cell is in a jsonl or parquet file."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _parse_list(value: Any, items: type | tuple[type, ...] = str | int) -> list[Any] | None:
    """``'["a", "b"]'`` or ``"['a', 'b']"`` (a list written into a csv cell by json or pandas) as a list whose items
    are of types ``items`` (never bools); None for anything else."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(text)
        except (ValueError, SyntaxError, RecursionError):
            continue
        if isinstance(parsed, list) and all(isinstance(x, items) and not isinstance(x, bool) for x in parsed):
            return parsed
    return None


def _teacher_lists_from_text(ds: Any) -> Any:
    """Teacher probabilities written into csv cells (pandas' to_csv writes ``"[0.3, 0.7]"``) read as lists of
    numbers; a cell that is not such a list is refused, naming its row."""
    values = column_values(ds, "teacher")
    if not any(isinstance(v, str) for v in values):
        return ds
    lists = []
    for row, value in enumerate(values):
        if _missing(value):  # an empty cell: this row has no teacher
            lists.append(None)
            continue
        if (parsed := _parse_list(value, int | float)) is None:
            raise UsageError(
                f"row {row} of the train split: --teacher_column needs a list of probabilities, one per label, "
                f"such as [0.3, 0.7], got {value!r:.60}."
            )
        lists.append([float(p) for p in parsed])
    return ds.remove_columns("teacher").add_column("teacher", lists)


def _label_lists_from_text(ds: Any, column: str, split: str) -> Any:
    """A label column whose every cell is a list written as text (a csv cannot hold lists) read as those lists; a
    cell that is not a list among cells that are is refused, as a lone string in a column of lists is."""
    values = column_values(ds, column)
    if not values or not all(isinstance(v, str) for v in values):
        return ds
    parsed = [_parse_list(v) for v in values]
    if all(p is None for p in parsed):
        return ds
    if (row := next((i for i, p in enumerate(parsed) if p is None), None)) is not None:
        # Left as text, the whole column would be one-of-n labels named by the lists' text ("['news', 'sports']").
        cell = values[row]
        fix = (
            "a list holds label names or integer ids only"
            if cell.strip().startswith("[")
            else f"write it as a list, e.g. [{cell!r:.40}]"
        )
        raise UsageError(
            f"row {row} of the {split} split: {column!r} holds lists of labels, but this row holds {cell!r:.60}; {fix}."
        )
    # Lists of integers stay integers: ids into labels.json (or names by value), as the same lists in a jsonl are.
    # Anything else is text, so one column holds one type.
    if not all(isinstance(x, int) for p in parsed for x in p):
        parsed = [[str(x) for x in p] for p in parsed]
    return ds.remove_columns(column).add_column(column, parsed)


def _as_text(ds: Any, name: str, where: str, column: str, flag: str) -> Any:
    """``ds`` with column ``name`` holding text: a column without any text (numbers, lists: a wrong column) is
    refused, a few numbers among texts (a jsonl row whose text is 2020) become their text, and missing cells (None, a
    csv's NaN) stay missing, counted as empty text later."""
    values = column_values(ds, name)
    odd = [v for v in values if not (_missing(v) or isinstance(v, str))]
    if not odd:
        return ds
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in odd)
    if not numbers or not any(isinstance(v, str) for v in values):
        # A column of numbers only is most often the wrong column (an id, the label); years or product codes meant
        # as texts can be given, but not as a csv column of numbers only, which is typed as numbers, quoted or not.
        fix = (
            " If these numbers are the texts (years, codes), write them as strings in a jsonl or parquet file (a csv "
            f"or tsv column of numbers only is read as numbers, quoted or not), e.g. pandas.read_csv(FILE, dtype={{{column!r}: str}})"
            ".to_json(NEW, orient='records', lines=True)."
            if numbers
            else ""
        )
        raise UsageError(
            f"the {column!r} column of {where} holds {type(odd[0]).__name__} values, not text "
            f"(e.g. {odd[0]!r:.40}, {counted(len(odd), 'row')}): check --{flag}.{fix}"
        )
    import datasets

    # Declared as strings: datasets reads a mixed jsonl column as Json, which would decode "2020" back to a number.
    features = ds.features.copy()
    features[name] = datasets.Value("string")
    return ds.map(
        lambda batch: {name: [v if _missing(v) or isinstance(v, str) else str(v) for v in batch[name]]},
        batched=True,
        features=features,
        desc=f"numbers in {column!r} as text",
    )


def broken_rows_hint(source: str) -> str:
    """Why a csv/tsv ``source`` has rows without a label that its author does not see: a carriage return inside an
    unquoted text (a bare ``\\r``, not a Windows line end) ends the row there, so its rest becomes a row of its own;
    "" where the file holds none."""
    path = Path(source)
    if not path.is_file() or FORMATS.get(path.suffix.lower()) != "csv":
        return ""
    content = path.read_bytes()
    if b"\n" not in content or not re.search(rb"\r(?!\n)", content):  # no line ends but \r: old Mac files, read well
        return ""
    return (
        f" {path} holds a carriage return (\\r) inside a line, which pandas reads as the end of a row: replace those "
        "inside texts with spaces, or quote the texts."
    )


def _normalise_split(ds: Any, split: str, cfg: TrainConfig) -> tuple[Any, str | None]:
    """One split's configured columns renamed to ``text`` [, ``text_pair``] [, ``teacher``], rows with empty text
    dropped (or refused with --empty_text error); also the note saying how many were dropped."""
    wanted = {"text_column": cfg.text_column}
    if cfg.text_pair_column:
        wanted["text_pair_column"] = cfg.text_pair_column
    for i, column in enumerate(cfg.label_columns or [cfg.label_column]):
        wanted[f"label_columns[{i}]" if cfg.label_columns else "label_column"] = column
    # Teacher probabilities only matter for training; validation and test files need not carry them.
    teacher = {"teacher_column": cfg.teacher_column} if cfg.teacher_column and split == "train" else {}
    check_columns(ds, split, wanted | teacher, cfg.dataset)
    if len(ds) == 0:
        raise UsageError(f"the {split} split of {cfg.dataset} is empty.")
    for label in cfg.label_columns or [cfg.label_column]:
        nulls = sum(_missing(v) for v in column_values(ds, label))
        if nulls:
            raise UsageError(
                f"the {split} split has {counted(nulls, 'row')} with no label in {label!r}; fill or drop them."
                + broken_rows_hint(split_source(cfg.dataset, split))
            )
    renames = {cfg.text_column: "text", **({cfg.text_pair_column: "text_pair"} if cfg.text_pair_column else {})}
    ds = ds.select_columns(list((wanted | teacher).values()))
    if not cfg.label_columns:
        ds = _label_lists_from_text(ds, cfg.label_column, split)
    # The row's place in its file (blank and empty-text rows counted), for predictions files to point back to.
    ds = ds.add_column(SOURCE_ROW, list(range(len(ds))))
    ds = ds.rename_columns(
        {k: v for k, v in renames.items() if k != v} | ({cfg.teacher_column: "teacher"} if teacher else {})
    )
    if teacher:
        ds = _teacher_lists_from_text(ds)
    text_cols = ["text"] + (["text_pair"] if cfg.text_pair_column else [])
    for name, column in zip(text_cols, [cfg.text_column, cfg.text_pair_column], strict=False):
        ds = _as_text(ds, name, f"the {split} split", column, f"{name}_column")
    filled = {c: [isinstance(t, str) and bool(t.strip()) for t in column_values(ds, c)] for c in text_cols}
    keep = [all(row) for row in zip(*filled.values(), strict=True)]
    empty = len(keep) - sum(keep)
    if not empty:
        return ds, None
    # A pair's empty cells may all be in its second text: a user searching the first column would find none.
    where = ""
    if cfg.text_pair_column:
        counts = {
            column: n
            for c, column in zip(text_cols, [cfg.text_column, cfg.text_pair_column], strict=True)
            if (n := filled[c].count(False))
        }
        # Per column where both have empty cells (a row may have both); one column's count is the rows' count.
        where = " in " + ", ".join(
            f"{column!r}" + (f" ({n})" if len(counts) > 1 else "") for column, n in counts.items()
        )
    if cfg.empty_text == "error":
        raise UsageError(
            f"the {split} split has {counted(empty, 'row')} with empty or whitespace-only text{where}; remove them or "
            "pass --empty_text drop."
        )
    ds = ds.select([i for i, ok in enumerate(keep) if ok])
    if len(ds) == 0:
        raise UsageError(f"every row of the {split} split has empty text{where}; check --text_column.")
    return ds, f"dropped {counted(empty, 'row')} of the {split} split with empty text{where}"


def _attach_teacher(train: Any, teacher_labels: list[str] | None, label_names: list[str]) -> tuple[Any, str]:
    """Check train's teacher probabilities and put them in label-id order; also the note saying which order."""
    if teacher_labels is not None and (
        sorted(teacher_labels) != sorted(label_names) or len(set(teacher_labels)) != len(teacher_labels)
    ):
        raise UsageError(
            f"labels.json's teacher_labels {teacher_labels} are not the label names {label_names} (label-id "
            "order); list each label name once in teacher_labels, in the order of the teacher's probabilities."
        )
    _check_teacher(train, "train", len(label_names))
    return _align_teacher(train, teacher_labels, label_names)


def unmatched_files(dataset: str) -> list[str]:
    """Data files in a dataset folder that no split takes (``eval.csv``, ``testing.csv``), or splits of a saved
    ``DatasetDict`` (MNLI's ``validation_matched``): said in the log."""
    folder = Path(dataset).expanduser()
    if (folder / "dataset_dict.json").is_file():
        try:
            names = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
        except (ValueError, KeyError, TypeError):  # load_from_disk's own error says what is wrong
            return []
        taken = {alias for aliases in SPLIT_ALIASES.values() for alias in aliases}
        if not taken & set(SPLIT_ALIASES["validation"]) & set(names):
            taken |= set(FALLBACK_ALIASES["validation"])
        return [name for name in names if name not in taken]
    if not folder.is_dir() or (folder / "state.json").is_file():
        return []
    taken = {p for paths in _split_files(folder).values() for p in paths} | {folder / "labels.json"}
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS and p not in taken)


def sibling_splits(dataset: str) -> list[str]:
    """The other splits' files beside a --dataset file that is its folder's train file (``data/train.csv`` given
    where ``data/validation.csv`` and ``data/test.csv`` are): a single file is read alone."""
    file = Path(dataset).expanduser()
    if not file.is_file():
        return []
    try:
        files = _split_files(file.parent)
    except UsageError:  # two files for one split: named when that folder is given
        return []
    if file not in files.get("train", []):
        return []
    return [p.name for split, paths in files.items() if split != "train" for p in paths]


def _unlabeled(ds: Any, train: Any, cfg: TrainConfig) -> bool:
    """A validation or test split without labels: every label missing, or -1 (GLUE's hidden test labels) where
    train has no -1."""
    columns = cfg.label_columns or [cfg.label_column]
    if not len(ds) or any(c not in ds.column_names or c not in train.column_names for c in columns):
        return False  # check_columns names what is missing
    values = column_values(ds, columns[0])
    if all(_missing(v) for v in values):
        return True
    # -1 as text ("-1": a jsonl's, a string column's) or -1.0 (a float column) is the same mark.
    return all(map(hidden_label, values)) and not any(map(hidden_label, column_values(train, columns[0])))


# From this share of a split on, texts it shares with train are a warning (the shared sets hold 0-2% of such rows).
OVERLAP_WARNING = 0.01


def row_texts(ds: Any) -> list[tuple[str, ...]]:
    """Each row's text (with its pair), with runs of whitespace and the ends ignored: the rows' texts as compared
    across rows and splits."""
    columns = [column_values(ds, c) for c in ("text", "text_pair") if c in ds.column_names]
    return [tuple(" ".join(str(t).split()) for t in row) for row in zip(*columns, strict=True)]


def split_overlap(splits: dict[str, Any], train_texts: list[tuple[str, ...]] | None = None) -> dict[str, int]:
    """Per split other than train, how many of its rows have a text (with its pair) that a training row has too,
    spacing aside: a score over them measures what the model memorised, not how it generalises. ``train_texts``:
    train's row_texts, where already known."""
    seen = set(row_texts(splits["train"]) if train_texts is None else train_texts)
    return {split: sum(t in seen for t in row_texts(ds)) for split, ds in splits.items() if split != "train"}


def _overlap_notes(overlap: dict[str, int], splits: dict[str, Any]) -> list[str]:
    """One line per split that shares texts with train: a warning from OVERLAP_WARNING of its rows on."""
    notes = []
    for split, shared in overlap.items():
        if shared:
            share = shared / len(splits[split])
            line = (
                f"{shared} of the {split} split's {len(splits[split])} texts ({share:.1%}) also appear in train: "
                f"{'the best state is chosen' if split == 'validation' else 'its scores are'} partly on examples "
                "the model trained on"
            )
            if share >= OVERLAP_WARNING:
                line = f"warning: {line}; remove them from {split} (or from train) to measure generalisation"
            notes.append(line)
    return notes


def copy_notes(texts: list[tuple[str, ...]], labels: list[Any]) -> list[str]:
    """A line counting the training rows (``texts``: train's row_texts, ``labels``: their labels) that repeat an
    earlier row's text and label, a warning from OVERLAP_WARNING of the rows on: a file written twice over trains
    each example twice, without a word."""
    rows = Counter(
        (text, tuple(label) if isinstance(label, list) else label) for text, label in zip(texts, labels, strict=True)
    )
    copies = len(texts) - len(rows)
    if not copies:
        return []
    (text, _), times = rows.most_common(1)[0]
    share = copies / len(texts)
    line = (
        f"{copies} of the {len(texts)} train rows ({share:.1%}) repeat another row's text and label (e.g. "
        f"{shortened(' / '.join(text))!r}, {times} times): each copy trains as one more example; drop the copies "
        "(pandas drop_duplicates) unless they are meant to weigh more"
    )
    return [f"warning: {line}" if share >= OVERLAP_WARNING else line]


def _class_coverage(splits: dict[str, Any], spec: LabelSpec, cfg: TrainConfig) -> list[str]:
    """After the validation carve and the row limits: warn of a train split left with one class, and say which
    classes validation lacks (its macro-F1, which picks the best state, averages over the classes it holds)."""
    if spec.problem_type == "multi_label_classification":
        return []
    finest = spec.levels[-1]["labels"]
    present = {}
    for split, ds in splits.items():
        labels = column_values(ds, "label")
        present[split] = {row[-1] if isinstance(row, list) else row for row in labels}
    notes = []
    if len(present["train"]) < 2:
        # Refused for the whole train split (_two_or_more); after a limit it is most often a quick trial run.
        limited = (
            f" (--max_train_samples {cfg.max_train_samples} keeps the first rows)" if cfg.max_train_samples else ""
        )
        notes.append(
            f"warning: the {counted(len(splits['train']), 'row')} left for training hold{'s' * (len(splits['train']) == 1)} one class "
            f"({finest[next(iter(present['train']))]!r}){limited}: the model can only learn to predict it; train on "
            "more rows, or shuffle the train file so that its first rows hold every class"
        )
    lacking = [finest[i] for i in sorted(present["train"] - present.get("validation", present["train"]))]
    if lacking:
        notes.append(
            f"warning: the validation split holds no row of {len(lacking)} of the {len(present['train'])} classes "
            f"train has ({', '.join(map(repr, lacking[:5]))}{', ...' if len(lacking) > 5 else ''}): the best state is "
            "chosen without them; give a validation split with every class (or --max_eval_samples over more rows)"
        )
        if any(hidden_label(name) for name in lacking):  # -1 beside other classes, in train only: GLUE's mark
            notes[-1] += (
                "; the class '-1' may be unlabeled rows (GLUE marks a hidden label -1), trained here as a class of "
                "its own: drop them from train if so"
            )
    for split in ("validation", "test"):
        # Classes that labels.json or a ClassLabel names while the training rows hold none (a split's own label
        # unseen in train is refused in _encode unless the names list it): the model cannot learn to predict them.
        if unseen := [finest[i] for i in sorted(present.get(split, set()) - present["train"])]:
            limited = f" (--max_train_samples {cfg.max_train_samples})" if cfg.max_train_samples else ""
            notes.append(
                f"warning: the {split} split holds {len(unseen)} class{'es' * (len(unseen) > 1)} that the "
                f"{len(splits['train'])} training rows{limited} never show ({', '.join(map(repr, unseen[:5]))}"
                f"{', ...' if len(unseen) > 5 else ''}): the model cannot learn to predict "
                f"{'them' if len(unseen) > 1 else 'it'}, and its {split} scores count {'them' if len(unseen) > 1 else 'it'} as missed"
            )
    return notes


def _unused_classes(splits: dict[str, Any], spec: LabelSpec) -> list[str]:
    """A warning naming the classes the label names (labels.json or ClassLabel) list and no split holds, before any
    row limit: names of a larger label set or of another version of the data give the model outputs it never learns."""
    if spec.problem_type == "multi_label_classification" and not spec.value_ids:  # 0/1 columns: the names are columns
        return []
    finest, held = spec.levels[-1]["labels"], set()
    for ds in splits.values():
        for row in column_values(ds, "label"):
            if spec.problem_type == "multi_label_classification":  # multi-hot
                held.update(i for i, v in enumerate(row) if v)
            else:  # an id, or a hierarchy's ids, finest last
                held.add(row[-1] if isinstance(row, list) else row)
    if not (unused := [name for i, name in enumerate(finest) if i not in held]):
        return []
    return [
        f"warning: the label names (labels.json or ClassLabel) list {len(unused)} class{'es' * (len(unused) > 1)} "
        f"that no split holds ({', '.join(map(repr, unused[:5]))}{', ...' if len(unused) > 5 else ''}): the model "
        f"gets an output for {'each' if len(unused) > 1 else 'it'} that it cannot learn to predict; remove "
        f"{'them' if len(unused) > 1 else 'it'} from the names if the data has none"
    ]


def keep_class_order(spec: LabelSpec, maps: list[dict[Any, int]], recorded: list[list[str]] | None) -> list[str]:
    """Number each level's classes in the order a run ``recorded`` (its levels' names, the finest last), where this
    version would number the same classes otherwise (integer labels written as text sorted as text before): a resume
    or a rescoring keeps the ids of the run's model. Returns the notes to log."""
    notes = []
    if not recorded or not maps:  # 0/1 columns per label: their order is the flags'
        return notes
    for level, value_to_id, order in zip(reversed(spec.levels), reversed(maps), reversed(recorded), strict=False):
        names, order = level["labels"], [str(name) for name in order]
        if order == names or sorted(order) != sorted(names):
            continue  # the same order, or other classes (a resume or a rescoring refuses those, naming them)
        if any(str(value) != names[i] for value, i in value_to_id.items()):
            # Ids into a list of names (labels.json): that list's order is the data's meaning, not a choice of this
            # version's; a reordered list is an edit, which the run's split digests refuse.
            continue
        renumbered = {value: order.index(names[i]) for value, i in value_to_id.items()}
        value_to_id.clear()
        value_to_id.update(renumbered)
        level["labels"] = order
        notes.append(
            f"the classes of {level['name']!r} keep the order the run recorded ({', '.join(order[:6])}"
            f"{', ...' if len(order) > 6 else ''}), its model's ids; this version would order them "
            f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}"
        )
    return notes


def load_splits(cfg: TrainConfig, class_order: list[list[str]] | None = None) -> SplitData:
    """Load, check and normalise the data ``cfg`` describes (source, columns, label kind, validation carve, row
    limits); every bad-input error is raised here, before any model is built. ``class_order``: the class names per
    level a run recorded (resumed or rescored), whose ids the classes keep."""
    raw, names = load_raw_splits(cfg.dataset, cfg.label_columns or [cfg.label_column])
    notes: list[str] = []
    if ignored := unmatched_files(cfg.dataset):
        notes.append(
            f"not read (no split is named so): {', '.join(ignored)}; name files (or a saved DatasetDict's splits) "
            "train, validation (or dev, valid, val, eval) and test"
        )
    if beside := sibling_splits(cfg.dataset):
        folder = Path(cfg.dataset).expanduser().parent
        notes.append(
            f"warning: --dataset {cfg.dataset} is one file, so validation is carved from it and there is no test "
            f"split, though {', '.join(beside)} beside it {'are' if len(beside) > 1 else 'is'} that folder's; pass "
            f"--dataset {folder} to read its splits"
        )
    for split in [s for s in raw if s != "train" and _unlabeled(raw[s], raw["train"], cfg)]:
        # A benchmark's hidden test labels (GLUE writes -1): nothing to score, so not a reason to stop the run.
        del raw[split]
        notes.append(
            f"the {split} split has no labels (every one missing or -1, which train never uses): it is not read "
            f"(no {split} metrics); predict it after training with python evaluate.py --run_dir RUN --input FILE"
        )
    pair = pair_columns(raw["train"].column_names)
    if pair and not cfg.text_pair_column and cfg.text_column in pair and cfg.label_column not in pair:
        second = pair[1] if cfg.text_column == pair[0] else pair[0]
        notes.append(
            f"warning: the train split also has {second!r}, the second text of the pair {pair[0]!r}/{pair[1]!r}: it is "
            f"not read, so each row is trained on {cfg.text_column!r} alone; pass --text_pair_column {second} to read "
            "the pair"
        )
    splits: dict[str, Any] = {}
    for split, ds in raw.items():
        splits[split], note = _normalise_split(ds, split, cfg)
        notes += [note] if note else []
    spec, maps = _label_spec(splits["train"], cfg, names)
    notes += keep_class_order(spec, maps, class_order)
    spec.value_ids = [[[k.item() if isinstance(k, np.generic) else k, i] for k, i in m.items()] for m in maps]
    notes += case_notes(spec) + number_notes(spec) + joined_notes(spec)
    if (other := sorted(set(names) - {"", "teacher_labels"})) and not set(spec.columns) & set(names):
        # Often a renamed label column: say so rather than name the classes by their raw values without a word.
        if all(isinstance(names[c], ClassLabelNames) for c in other):  # the dataset's own, of another column
            notes.append(
                f"the data's ClassLabel names the labels of {other}, not of {spec.columns}: labels named by their values"
            )
        else:  # a file written to name these labels: a key that misses the column (a typo) is worth a warning
            key = spec.columns[0] if len(spec.columns) == 1 else spec.columns
            notes.append(
                f"warning: labels.json names the labels of {other}, not of {spec.columns}: the classes are named by "
                f"their values ({', '.join(map(str, spec.levels[0]['labels'][:5]))}"
                f"{', ...' if len(spec.levels[0]['labels']) > 5 else ''}); key its list by {key!r} if it names them"
            )
    splits = {split: _encode(ds, split, spec, maps) for split, ds in splits.items()}
    notes += _unused_classes(splits, spec)
    if spec.problem_type == "hierarchical_classification":
        spec.parents = _level_parents(column_values(splits["train"], "label"), spec.levels)
    if cfg.teacher_column:
        splits["train"], note = _attach_teacher(splits["train"], names.get("teacher_labels"), spec.levels[-1]["labels"])
        notes.append(note)
    if "validation" not in splits:
        labels = column_values(splits["train"], "label")
        # Stratify by the label, the finest level of a hierarchy, or (multi-label) the label set.
        strata = [
            row[-1]
            if spec.problem_type == "hierarchical_classification"
            else tuple(row)
            if isinstance(row, list)
            else row
            for row in labels
        ]
        classes = spec.problem_type != "multi_label_classification"
        train, val, note = carve_validation(splits["train"], strata, cfg.validation_split_ratio, cfg.seed, classes)
        splits["train"], splits["validation"] = (
            train,
            val.remove_columns([c for c in ("teacher",) if c in val.column_names]),
        )
        notes.append(note)
    elif cfg.validation_split_ratio != TrainConfig.validation_split_ratio:
        notes.append(
            f"warning: --validation_split_ratio {cfg.validation_split_ratio} is not used: the data has a validation "
            "split, so none is carved from train"
        )
    if "test" not in splits:
        notes.append("no test split: test metrics will be skipped")
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples, "test": cfg.max_eval_samples}
    for split, limit in limits.items():
        if split in splits and limit is not None and limit < len(splits[split]):
            splits[split] = splits[split].select(range(limit))
        elif split in splits and limit is not None and limit > len(splits[split]):
            # Said, so that a limit above the data (a campaign's one limit over datasets of several sizes) is not
            # read as a run on that many rows.
            flag = "--max_train_samples" if split == "train" else "--max_eval_samples"
            notes.append(
                f"{flag} {limit} is above the {counted(len(splits[split]), split + ' row')}: all of them are used"
            )
    notes += _class_coverage(splits, spec, cfg)
    # The same text with two labels, and validation or test texts that are training texts: both compare train's texts.
    train_texts = row_texts(splits["train"])
    train_labels = column_values(splits["train"], "label")
    notes += conflict_notes(train_texts, train_labels, spec) + copy_notes(train_texts, train_labels)
    overlap = split_overlap(splits, train_texts)
    notes += _overlap_notes(overlap, splits)
    enough = max(MIN_VALIDATION_ROWS, len(spec.levels[-1]["labels"]))  # and at least one row per class
    if "validation" in splits and (rows := len(splits["validation"])) < enough:
        notes.append(
            f"warning: the validation split has {counted(rows, 'row')} (fewer than {enough}): the best model is chosen on "
            f"{counted(rows, 'example')}, which is mostly noise; give a larger validation split, --validation_split_ratio or "
            "--max_eval_samples."
        )
    # idx lets evaluation restore the original row order after length-sorted, sharded batching.
    splits = {split: ds.add_column("idx", list(range(len(ds)))) for split, ds in splits.items()}
    return SplitData(splits=splits, label_names=spec.levels[-1]["labels"], notes=notes, spec=spec, overlap=overlap)


# ----------------------------------------------------------------------------------------------------------------
# Loss weights for imbalanced labels, resolved to numbers from the training rows (or a file)


def balanced_weights(labels: list[int], num_classes: int) -> list[float]:
    """scikit-learn's ``balanced`` class weights, ``n_rows / (n_classes * count)`` over the classes present in
    ``labels``, in label-id order; a class absent from them gets 1 (it adds no training loss either way)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=np.asarray(labels))
    found = dict(zip(present.tolist(), weights.tolist(), strict=True))
    return [float(found.get(i, 1.0)) for i in range(num_classes)]


def _file_weights(mapping: Any, names: list[str], where: str) -> list[float]:
    """Weights in label-id order from a ``{label: weight}`` mapping (unlisted labels: 1); UsageError naming what is
    wrong."""
    if not isinstance(mapping, dict):
        raise UsageError(f"{where} must be a JSON object of label -> weight, got {type(mapping).__name__}.")
    unknown = sorted(set(map(str, mapping)) - set(names))
    if unknown:
        raise UsageError(
            f"{where} names labels that the data does not have: {', '.join(unknown[:5])} (labels: "
            f"{', '.join(names[:8])}{', ...' if len(names) > 8 else ''})."
        )
    # json reads Infinity, NaN and 1e400 as floats: they would make the loss nan at the first step.
    bad = {
        k: v
        for k, v in mapping.items()
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
    }
    if bad:
        raise UsageError(f"{where}: weights must be finite numbers >= 0, got {bad}.")
    weights = [float(mapping.get(name, 1.0)) for name in names]
    if not any(weights):
        raise UsageError(
            f"{where}: every label weighs 0, so no row adds to the loss and the model would not train; give at least "
            "one label a weight > 0 (an unlisted label weighs 1)."
        )
    return weights


def loss_weights(cfg: TrainConfig, data: SplitData, windows: Any | None = None) -> tuple[dict[str, Any], list[str]]:
    """The model config entries of ``--class_weights`` (one list per level, in label-id order) and ``--pos_weight``
    (one per label), resolved from the training rows (``windows``: the tokenized train windows) or the file; also
    lines for the log. ConfigError where the problem type has no use for the flag."""
    problem, levels = data.spec.problem_type, data.spec.levels
    multi = problem == "multi_label_classification"
    if cfg.class_weights != "none" and multi:
        raise ConfigError("--class_weights is for one-of-n labels; for multi-label data use --pos_weight balanced.")
    if cfg.pos_weight != "none" and not multi:
        raise ConfigError(f"--pos_weight is for multi-label data ({problem} here); use --class_weights instead.")
    # Under --long_text windows training sees every window as a row, so "balanced" is over the windows: the weighted
    # rows of an epoch then average 1, as they do without windows (long documents of a class bring more of them).
    labels = column_values(data.splits["train"] if windows is None else windows, "label")
    unit = "rows" if windows is None else "windows"
    if cfg.pos_weight == "balanced":
        positives = np.asarray(labels).sum(axis=0)  # (num_labels,)
        # negatives / positives: the weight that makes a label's positive and negative terms weigh the same in the
        # loss (torch's BCEWithLogitsLoss recipe); a label with no positive row keeps 1.
        weights = [float((len(labels) - p) / p) if p else 1.0 for p in positives]
        names = levels[0]["labels"]
        values = ", ".join(f"{n}={w:.3g}" for n, w in zip(names, weights, strict=True))
        note = f"pos_weight (balanced over {len(labels)} training {unit}): {values}"
        return {"pos_weight": weights}, [note]
    if cfg.class_weights == "none":
        return {}, []
    per_level = [[row[i] for row in labels] for i in range(len(levels))] if len(levels) > 1 else [labels]
    if cfg.class_weights == "balanced":
        weights = [balanced_weights(ids, len(level["labels"])) for ids, level in zip(per_level, levels, strict=True)]
        how = f"balanced over {len(labels)} training {unit}"
    else:
        try:
            given = json.loads(Path(cfg.class_weights).read_text(encoding="utf-8-sig"))  # a BOM is no part of it
        except UnicodeDecodeError as err:
            raise UsageError(f"--class_weights {not_utf8([Path(cfg.class_weights)])}") from err
        except json.JSONDecodeError as err:
            raise UsageError(f"--class_weights {cfg.class_weights}: cannot parse it ({err}).") from err
        where = f"--class_weights {cfg.class_weights}"
        if len(levels) > 1:
            if not isinstance(given, dict) or not set(given) <= {level["name"] for level in levels}:
                raise UsageError(
                    f"{where}: hierarchical labels need one mapping per level column, "
                    f'{{"{levels[0]["name"]}": {{label: weight}}, ...}}; got keys {sorted(given)[:5] if isinstance(given, dict) else given!r:.80}.'
                )
            weights = [
                _file_weights(given.get(lv["name"], {}), lv["labels"], f"{where} [{lv['name']}]") for lv in levels
            ]
        else:
            weights = [_file_weights(given, levels[0]["labels"], where)]
        how = f"from {cfg.class_weights}"
    notes = [
        f"class weights ({how}){' ' + level['name'] if len(levels) > 1 else ''}: "
        + ", ".join(f"{n}={w:.3g}" for n, w in zip(level["labels"], ws, strict=True))
        for level, ws in zip(levels, weights, strict=True)
    ]
    return {"class_weights": weights}, notes


def load_unlabeled(
    path: str, cfg: TrainConfig, limit: int | None, label_columns: tuple[str, ...] = (), label_flag: str | None = None
) -> Any:
    """A file to predict (evaluate.py --input) as a dataset with ``text`` (, ``text_pair``) and ``idx`` columns,
    read with the run's text columns, plus those of ``label_columns`` the file has, as they are; ``limit`` keeps the
    first rows. ``label_flag``: the flag that named ``label_columns`` on the command line, which the file must have."""
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"--input {path} is a folder; give one of its files (--input {path.rstrip('/')}/FILE).")
    if not file.is_file():
        raise UsageError(f"--input {path}: no such file.")
    if file.suffix.lower() not in FORMATS:
        raise UsageError(f"--input {path}: unsupported file type {file.suffix!r}; use one of {', '.join(FORMATS)}.")
    check_cache()
    try:
        ds = load_files([file], keep_blank_lines=True, labels=label_columns)
    except NoRows as err:  # a split's wording ("an empty split", "remove the file") would not fit a file to predict
        raise UsageError(
            f"--input {path} holds no rows, so there is nothing to predict; give a file with a row per text."
        ) from err
    text_column, text_pair_column = cfg.text_column, cfg.text_pair_column
    wanted = {"text_column": text_column, **({"text_pair_column": text_pair_column} if text_pair_column else {})}
    named = {label_flag: label_columns[0]} if label_flag and label_columns else {}  # --label_column names one
    check_columns(ds, None, wanted | named, path, label_columns)
    ds = ds.select_columns(list(wanted.values()) + [c for c in label_columns if c in ds.column_names])
    for flag, column in wanted.items():
        ds = _as_text(ds, column, f"the --input file {path}", column, flag)
    ds = ds.rename_columns({c: n for c, n in [(text_column, "text"), (text_pair_column, "text_pair")] if c and c != n})
    # Rows with no text still get a prediction row (of an empty string) so the output lines up with the input; so do
    # rows whose second text is missing.
    texts = [c for c in ("text", "text_pair") if c in ds.column_names]
    ds = ds.map(lambda b: {c: [t or "" for t in b[c]] for c in texts}, batched=True)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.add_column("idx", list(range(len(ds))))


def trained_label_maps(cfg: TrainConfig, levels: list[dict[str, Any]]) -> list[dict[Any, int]] | None:
    """The maps from label values to ids the run built from its train split (``cfg`` is the run's own config), read
    again from its data; None when that data cannot be read or no longer gives the model's label names ``levels``."""
    try:
        raw, names = load_raw_splits(cfg.dataset, cfg.label_columns or [cfg.label_column])
        train, _ = _normalise_split(raw["train"], "train", replace(cfg, teacher_column=None))
        spec, maps = _label_spec(train, cfg, names)
        keep_class_order(spec, maps, [level["labels"] for level in levels])
    except Exception:  # moved, deleted, offline, edited: whatever the cause, the label names decide instead
        return None
    same = [level["labels"] for level in spec.levels] == [level["labels"] for level in levels]
    return maps if same and len(maps) == len(levels) else None


def integers_ambiguous(names: list[str]) -> bool:
    """True when label names that are integers make an integer label either a name or a position: labels.json's
    "1".."5" over ids 0..4, or star ratings 1..5 named by their values (the run's train split tells which)."""
    return any(INTEGER_TEXT.fullmatch(name) for name in names) and names != [str(i) for i in range(len(names))]


def label_name_map(names: list[str], trained: dict[Any, int] | None = None) -> dict[Any, int]:
    """A trained model's label names as a map from an --input file's label values to ids: each name, and each
    integer as the run read its own labels. ``trained`` is the map the run built from its train split; without it an
    integer is the name it spells where a name is an integer (star ratings 1..5 trained without labels.json), else
    the id it is."""
    by_name = {name: i for i, name in enumerate(names)}
    if trained is not None:
        # The run's own map first, so label_key converts as training did (its keys' type decides); names that are
        # no integers are added, since they cannot be read as anything else.
        return trained | {name: i for name, i in by_name.items() if not INTEGER_TEXT.fullmatch(name)}
    if integer_names := {int(name): i for name, i in by_name.items() if INTEGER_TEXT.fullmatch(name)}:
        return by_name | integer_names
    return by_name | {i: i for i in range(len(names))}


def _input_label(value: Any, value_to_id: dict[Any, int], unknown: Counter, hidden: bool = True) -> int | None:
    """One label value of an --input file as an id (None when missing); a value the model does not know is counted
    in ``unknown``."""
    if _missing(value):
        return None
    if spelled_twice(value, value_to_id):  # checked first: 1.0 would find the int key 1 of a map without the run's
        unknown[value] += 1
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)  # a float column (a parquet's, or a csv's written "1.0") holds the ids as floats
    if value not in value_to_id and (number := whole_number(value)) is not None:
        value = number  # an id written as text (a jsonl's "3", or "3.0"), as the run's own splits read one
    key = label_key(value, value_to_id)
    # A hidden label, as GLUE's test files write them (a row's, not one label of a list's), unless the model has a
    # class -1: a run that read "-1" as text reads its own split's -1 as that class (label_key), so this file does too.
    if hidden and key not in value_to_id and hidden_label(value):
        return None
    if key not in value_to_id:
        unknown[value] += 1
        return None
    return value_to_id[key]


def _one_label_each(values: list[Any], column: str, what: str) -> None:
    """Refuse lists or mappings where one label is expected (another task's column), naming the first."""
    if (odd := next((v for v in values if isinstance(v, list | dict)), None)) is not None:
        raise UsageError(
            f"the --input file's {column!r} column holds {type(odd).__name__}s such as {odd!r:.60}, but this model "
            f"takes {what}; check --label_column, or pass --predict_only to predict without scoring."
        )


def _named_values(ds: Any, column: str) -> list[Any]:
    """A column's values, ``ClassLabel`` ids (a parquet file ``datasets`` wrote) as the names the file gives them: its
    own numbering need not be the model's. A missing or -1 id stays as it is."""
    values = column_values(ds, column)
    if (label := _class_label(ds.features[column])) is None:
        return values

    def name(v: Any) -> Any:
        """One id as its name."""
        return label.names[v] if _is_integer(v) and v >= 0 else v

    return [[name(x) for x in v] if isinstance(v, list) else name(v) for v in values]


def input_labels(ds: Any, spec: LabelSpec, trained: list[dict[Any, int]] | None = None) -> list[Any]:
    """The gold labels of an --input file's rows (columns ``spec.columns``, the model's label names in
    ``spec.levels``), encoded as training encodes them: an id, a list of level ids or a multi-hot list; None for a row
    without a label. ``trained``: the run's own maps per level (see trained_label_maps), where integer names need
    them. Labels the model was not trained on are refused, naming them."""
    columns = [_named_values(ds, c) for c in spec.columns]
    unknowns: list[Counter] = [Counter() for _ in spec.levels]  # per level: a hierarchy's are told apart
    unknown = unknowns[0]
    maps = [label_name_map(level["labels"], trained[i] if trained else None) for i, level in enumerate(spec.levels)]
    if spec.problem_type != "multi_label_classification":  # one id per level (one level unless a hierarchy)
        for values, column in zip(columns, spec.columns, strict=True):
            _one_label_each(values, column, "one label per row")
        per_level = [
            [_input_label(v, m, counted) for v in values]
            for values, m, counted in zip(columns, maps, unknowns, strict=True)
        ]
        encoded = [None if None in row else list(row) for row in zip(*per_level, strict=True)]
        if spec.problem_type == "single_label_classification":
            encoded = [None if row is None else row[0] for row in encoded]
    elif len(spec.columns) == 1:  # a column of label lists (a csv writes them as text)
        value_to_id, size, encoded = maps[0], len(spec.levels[0]["labels"]), []
        _one_label_each([x for v in columns[0] if isinstance(v, list) for x in v], spec.columns[0], "label names")
        for row, value in enumerate(columns[0]):
            labels = value if isinstance(value, list) else None if _missing(value) else _parse_list(value)
            if labels is None and not _missing(value):
                raise UsageError(
                    f"row {row} of the --input file: {spec.columns[0]!r} holds lists of labels for this model, but "
                    f"this row holds {value!r:.60}; write it as a list, e.g. [{value!r:.40}]."
                )
            ids = None if labels is None else {_input_label(x, value_to_id, unknown, hidden=False) for x in labels}
            encoded.append(None if ids is None else [1.0 if i in ids else 0.0 for i in range(size)])
    else:  # one 0/1 column per label
        encoded = []
        for row in zip(*columns, strict=True):
            if any(_missing(v) for v in row):
                encoded.append(None)
            elif all(_zero_one(v) is not None for v in row):
                encoded.append([float(_zero_one(v)) for v in row])
            else:
                bad = next(c for c, v in zip(spec.columns, row, strict=True) if _zero_one(v) is None)
                raise UsageError(f"the --input file's {bad!r} column must hold 0/1 values, as in training.")
    if any(unknowns):
        # Each level's unknown values against that level's labels only: a coarse label is no fine one.
        hierarchy = spec.problem_type == "hierarchical_classification"
        said, hints = [], []
        for column, level, counted in zip(spec.columns, spec.levels, unknowns, strict=False):
            if not counted:
                continue
            shown = ", ".join(f"{v!r} ({n}x)" for v, n in counted.most_common(5))
            whose = f"its {column!r} labels" if hierarchy else "its labels"
            said.append(
                f"{column!r} column{' holds labels this model was not trained on' if not said else ''}: "
                f"{shown} ({whose}: {listed(level['labels'])})"
            )
            hints.append(spelling_hint(list(counted), level["labels"], "among the model's labels"))
        raise UsageError(
            f"the --input file's {', and its '.join(said)}; write them as the model's label names or ids, or pass "
            f"--predict_only to predict without scoring.{next(filter(None, hints), '')}"
        )
    return encoded


# ----------------------------------------------------------------------------------------------------------------
# Tokenization, batching


@dataclass(frozen=True)
class Windowing:
    """How long texts become windows (``--long_text windows``): ``stride`` tokens shared by consecutive windows (the
    tokenizer's ``stride``), and at most ``max_train_windows`` windows per document in the train split."""

    stride: int
    max_train_windows: int | None = None


def windowing(cfg: TrainConfig, every: bool = False) -> Windowing | None:
    """The run's windowing, or None when long texts are truncated; ``every``: no window limit on the train split
    (evaluation reads every window)."""
    if cfg.long_text != "windows":
        return None
    stride = cfg.window_stride if cfg.window_stride is not None else cfg.max_seq_length // 4
    return Windowing(stride, None if every else cfg.max_windows_per_doc)


def window_room(tokenizer: Any, max_seq_length: int, pair: bool) -> int:
    """Tokens of text one window holds: the length limit less the special tokens ([CLS], [SEP]...)."""
    return max_seq_length - tokenizer.num_special_tokens_to_add(pair=pair)


def encode_windows(
    tokenizer: Any, texts: list[str], pairs: list[str] | None, max_seq_length: int, stride: int
) -> tuple[dict[str, list], list[int]]:
    """Token ids of the windows of every row, in row order, and the row of each window. A text longer than
    ``max_seq_length`` becomes windows of ``max_seq_length`` tokens (special tokens included) where each window
    starts with the last ``stride`` text tokens of the one before; the last holds what is left. A pair windows its
    second text and repeats the first whole in every window; a pair whose first text leaves no more than ``stride``
    tokens for the second cannot advance through it, so it is truncated (longest text first) as ``--long_text
    truncate`` does: one window."""
    rows = list(range(len(texts)))
    if pairs is None:
        windowed, fallback = rows, []
    else:
        fallback = unwindowable_pairs(tokenizer, texts, max_seq_length, stride)
        windowed = sorted(set(rows) - set(fallback))
    per_row: list[list[dict[str, list[int]]]] = [[] for _ in rows]
    if windowed:
        pick = (lambda xs: [xs[i] for i in windowed]) if fallback else (lambda xs: xs)
        out = tokenizer(
            pick(texts),
            pick(pairs) if pairs is not None else None,
            truncation="only_second" if pairs is not None else True,
            max_length=max_seq_length,
            stride=stride,
            return_overflowing_tokens=True,
        )
        if "overflow_to_sample_mapping" not in out:
            raise UsageError(
                f"--long_text windows needs a fast tokenizer (one that returns overflowing tokens); "
                f"{type(tokenizer).__name__} does not. Use --long_text truncate."
            )
        for k, row in enumerate(out["overflow_to_sample_mapping"]):
            per_row[windowed[row]].append({name: out[name][k] for name in out if name != "overflow_to_sample_mapping"})
    if fallback:
        out = tokenizer(
            [texts[i] for i in fallback], [pairs[i] for i in fallback], truncation=True, max_length=max_seq_length
        )
        for k, row in enumerate(fallback):
            per_row[row].append({name: out[name][k] for name in out})
    names = [n for n in tokenizer.model_input_names if n in per_row[0][0]] if rows else []
    encoded = {name: [w[name] for windows in per_row for w in windows] for name in names}
    return encoded, [row for row, windows in enumerate(per_row) for _ in windows]


def unwindowable_pairs(tokenizer: Any, texts: list[str], max_seq_length: int, stride: int) -> list[int]:
    """The rows of a pair batch whose first text (``texts``) leaves no more than ``stride`` tokens of a window for the
    second: windows could not advance through it (the fast tokenizer panics), so they are truncated instead."""
    firsts = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    room = window_room(tokenizer, max_seq_length, pair=True)
    return [i for i, ids in enumerate(firsts) if room - len(ids) <= stride]


def truncated_pairs(tokenizer: Any, texts: list[str], pairs: list[str], max_seq_length: int, stride: int) -> set[int]:
    """The rows of a pair batch that encode_windows truncates instead of windowing and that do not fit whole: text
    of these documents is cut off as under --long_text truncate."""
    return longer_than(
        tokenizer, texts, pairs, unwindowable_pairs(tokenizer, texts, max_seq_length, stride), max_seq_length
    )


def longer_than(
    tokenizer: Any, texts: list[str], pairs: list[str] | None, rows: list[int], max_seq_length: int
) -> set[int]:
    """Those of ``rows`` whose text (and pair), tokenized whole, take more than ``max_seq_length`` tokens."""
    if not rows:
        return set()
    whole = tokenizer([texts[i] for i in rows], [pairs[i] for i in rows] if pairs is not None else None, verbose=False)[
        "input_ids"
    ]
    return {row for row, ids in zip(rows, whole, strict=True) if len(ids) > max_seq_length}


def cut_rows(tokenizer: Any, out: Any, texts: list[str], pairs: list[str] | None, max_seq_length: int) -> list[bool]:
    """Per row of ``out`` (a call of ``tokenizer`` truncating at ``max_seq_length``): whether tokens were cut off, of
    either text of a pair."""
    lengths = [len(ids) for ids in out["input_ids"]]
    full = [i for i, n in enumerate(lengths) if n >= max_seq_length]  # a row shorter than the limit lost nothing
    cut = [False] * len(lengths)
    if out.encodings is not None:  # a fast tokenizer keeps what it cut off in each Encoding: no second pass
        for i in full:
            cut[i] = bool(out.encodings[i].overflowing)
    else:  # a slow tokenizer keeps nothing: the rows at the limit, tokenized whole
        for i in longer_than(tokenizer, texts, pairs, full, max_seq_length):
            cut[i] = True
    return cut


def cut_counts(tokenized: dict[str, Any]) -> dict[str, int]:
    """Per split of truncated token ids (``--long_text truncate``): the rows that lost tokens at ``max_seq_length``."""
    return {
        split: int(np.asarray(column_values(ds, "cut"), dtype=bool).sum())
        for split, ds in tokenized.items()
        if "cut" in ds.column_names
    }


def cut_notes(
    counts: dict[str, int],
    sizes: dict[str, int],
    max_seq_length: int,
    pairs: bool,
    fix: str = "--long_text windows reads them whole",
) -> list[str]:
    """One line per split whose rows lost tokens at ``max_seq_length`` (``counts``, of ``sizes`` rows), ending with
    ``fix``: truncation is the default, and otherwise cuts texts without a word."""
    noun = "pair" if pairs else "text"
    return [
        f"{split}: {cut} of {counted(sizes[split], noun)} ({cut / sizes[split]:.1%}) cut at --max_seq_length "
        f"{max_seq_length}; {fix}"
        for split, cut in counts.items()
        if cut
    ]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what the tokenizer does (the token cache's key): not changed by using it, nor by where it was read
    from, so the run's best_model/ copy and another model with the same vocabulary find the token ids cached."""
    from datasets.fingerprint import Hasher

    # transformers 4's fast tokenizers keep the last call's truncation and padding in their Rust state, which the
    # hash sees: the same tokenizer hashed differently once it had been used, and cached token ids were missed. So
    # the hash is taken with both cleared, then they are put back (a saved tokenizer.json keeps the checkpoint's).
    backend = getattr(tokenizer, "_tokenizer", None)
    if not all(hasattr(backend, name) for name in ("truncation", "padding", "no_truncation", "no_padding")):
        return Hasher.hash(tokenizer)  # a slow tokenizer: no such state, and its vocabulary may be only a file path
    # The backend holds the vocabulary and every rule; the folder's path and files (name_or_path, vocab_file), the
    # arguments it was built from (init_kwargs, which a save adds the last call's truncation to) and
    # model_max_length (every call here passes max_length) do not change a token id.
    state = {
        k: v
        for k, v in vars(tokenizer).items()
        if k not in ("name_or_path", "init_kwargs", "model_max_length") and not k.endswith("_file")
    }
    truncation, padding = backend.truncation, backend.padding
    backend.no_truncation()
    backend.no_padding()
    try:
        return Hasher.hash((type(tokenizer).__qualname__, state))
    finally:
        if truncation is not None:
            backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**padding)


def tokenize_splits(
    splits: dict[str, Any], tokenizer: Any, max_seq_length: int, windows: Windowing | None = None
) -> dict[str, Any]:
    """Tokenize every split once (batched, cached by ``datasets``), no padding; adds a ``length`` column. With
    ``windows``, a row longer than ``max_seq_length`` becomes several rows, one per window, each with the row's
    label, ``idx`` and teacher and its position ``window`` (0, 1, ...) in the document."""
    input_names = list(tokenizer.model_input_names)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        """Token ids of a batch of rows (no padding) and their lengths."""
        pair = batch.get("text_pair")
        out = tokenizer(batch["text"], pair, truncation=True, max_length=max_seq_length)
        encoded = {name: out[name] for name in input_names if name in out}
        encoded["length"] = [len(ids) for ids in out["input_ids"]]
        encoded["cut"] = cut_rows(tokenizer, out, batch["text"], pair, max_seq_length)  # for the log's counts
        return encoded

    def encode_windowed(batch: dict[str, list], limit: int | None) -> dict[str, list]:
        """The windows of a batch of rows, each carrying its row's other columns and its position in the row."""
        encoded, rows = encode_windows(tokenizer, batch["text"], batch.get("text_pair"), max_seq_length, windows.stride)
        first = {row: k for k, row in reversed(list(enumerate(rows)))}  # a row's windows are consecutive
        positions = [k - first[row] for k, row in enumerate(rows)]
        keep = [k for k, p in enumerate(positions) if limit is None or p < limit]
        out = {name: [values[k] for k in keep] for name, values in encoded.items()}
        for column in ("label", "idx", "teacher"):
            if column in batch:
                out[column] = [batch[column][rows[k]] for k in keep]
        out["window"] = [positions[k] for k in keep]
        per_doc = Counter(rows)
        out["doc_windows"] = [per_doc[rows[k]] for k in keep]  # before the limit: for the log's counts
        if (pairs := batch.get("text_pair")) is not None:  # for the log's counts too
            cut = truncated_pairs(tokenizer, batch["text"], pairs, max_seq_length, windows.stride)
            out["doc_truncated"] = [rows[k] in cut for k in keep]
        out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    import datasets
    from datasets.fingerprint import Hasher

    # The cache key is the split's content fingerprint + tokenizer + length limit (+ the windowing), so a second run
    # (or evaluate.py) on the same data reads the token ids from disk instead of tokenizing again.
    cache_dir = Path(datasets.config.HF_DATASETS_CACHE) / "tokenized"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_hash = tokenizer_fingerprint(tokenizer)
    tokenized = {}
    for split, ds in splits.items():
        if windows is None:
            drop = [c for c in ds.column_names if c not in ("label", "idx", "teacher")]
            # v3: rows carry ``cut`` (an earlier cache file lacks it, so the log could not count them).
            key = Hasher.hash((ds._fingerprint, tokenizer_hash, max_seq_length, input_names, "v3"))
            function, kwargs = encode, {}
        else:
            # A row becomes any number of windows, so every input column is replaced (label, idx and teacher are
            # repeated per window by encode_windowed).
            drop = list(ds.column_names)
            limit = windows.max_train_windows if split == "train" else None
            spec = ("windows", windows.stride, limit)
            key = Hasher.hash((ds._fingerprint, tokenizer_hash, max_seq_length, input_names, spec, "v2"))
            function, kwargs = encode_windowed, {"fn_kwargs": {"limit": limit}}
        tokenized[split] = ds.map(
            function,
            batched=True,
            remove_columns=drop,
            desc=f"Tokenizing {split}",
            new_fingerprint=key,
            cache_file_name=str(cache_dir / f"{key}.arrow"),
            **kwargs,
        )
    return tokenized


def window_counts(tokenized: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per split of windowed token ids: documents, windows used, documents cut into more than one window, and pairs
    truncated instead (their first text leaves the second no room to advance)."""
    counts = {}
    for split, ds in tokenized.items():
        first = np.asarray(column_values(ds, "window")) == 0  # one row per document: its first window
        whole = np.asarray(column_values(ds, "doc_windows"))[first]  # (documents,): windows before a limit
        counts[split] = {"documents": len(whole), "windows": len(ds), "cut": int((whole > 1).sum())}
        if "doc_truncated" in ds.column_names:
            counts[split]["truncated"] = int(np.asarray(column_values(ds, "doc_truncated"), dtype=bool)[first].sum())
    return counts


class LengthGroupedBatchSampler:
    """Training batches of similar lengths: shuffle, sort inside mega-batches, cut batches, shuffle batch order.

    The batch holding the longest example comes first (an out-of-memory error shows at step 1, not hours in) and
    the one short batch last (accelerate's sharding expects it there; across processes it completes that batch and
    the last round with rows from the first batches, so a few rows train twice per epoch). Seeded by
    ``(seed, epoch)``; call ``set_epoch`` before each epoch.
    """

    ORDER = "seed-epoch"  # how an epoch's order is seeded; recorded in checkpoints, which resume only the same one

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.drop_last = False
        self.epoch = 0
        self._drawn: tuple[int, list[list[int]]] | None = None  # (epoch, its batches): drawn once per epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose permutation ``__iter__`` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def batches(self) -> list[list[int]]:
        """This epoch's batches of dataset indices."""
        # (seed, epoch), not seed + epoch, which gave seed s at epoch e the batches of seed s + 1 at epoch e - 1.
        # Epoch 0's order is what seed alone gives (numpy pads the entropy with zeros).
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        if self.group_by_length:
            mega = self.batch_size * MEGA_BATCH_MULT
            # Stable sort, longest first, inside each mega-batch.
            order = np.concatenate(
                [
                    chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                    for chunk in np.split(order, range(mega, len(order), mega))
                ]
            )
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if not self.group_by_length:
            return batches
        short = batches.pop() if len(batches[-1]) < self.batch_size else None
        batches = [batches[i] for i in rng.permutation(len(batches))]
        if batches:
            longest = int(np.argmax([self.lengths[b].max() for b in batches]))
            batches.insert(0, batches.pop(longest))
        return batches + ([short] if short is not None else [])

    def __iter__(self):
        # train.py reads an epoch's batch sizes before the loader iterates it: the same draw serves both. Copies,
        # since accelerate's sharding extends a short last batch in place.
        if self._drawn is None or self._drawn[0] != self.epoch:
            self._drawn = (self.epoch, self.batches())
        yield from (list(b) for b in self._drawn[1])


class SortedBatchSampler:
    """Evaluation batches in descending length order (least padding); ``idx`` restores the row order later."""

    def __init__(self, lengths: list[int], batch_size: int):
        order = np.argsort(-np.asarray(lengths), kind="stable")
        self.batch_size = batch_size
        self.drop_last = False
        self._batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return len(self._batches)

    def __iter__(self):
        yield from self._batches


class PadCollator:
    """Pad token ids to the longest row of the batch (optionally to a multiple of 8 for tensor cores)."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(r["length"] for r in rows)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = {}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in rows[0]:
                fill = self.pad_token_id if key == "input_ids" else 0
                tensor = torch.full((len(rows), width), fill, dtype=torch.long)  # (batch, seq)
                for i, r in enumerate(rows):
                    tensor[i, : len(r[key])] = torch.as_tensor(r[key])
                batch[key] = tensor
        if "label" in rows[0]:  # absent for unlabeled input (evaluate.py --input)
            # ids -> long (batch,) or (batch, levels); multi-hot floats -> float (batch, num_labels)
            batch["labels"] = torch.tensor([r["label"] for r in rows])
        teachers = [r.get("teacher") for r in rows]
        width = next((len(t) for t in teachers if t is not None), None)
        if width is not None:  # distillation: rows without teacher probabilities fall back to cross-entropy
            batch["teacher"] = torch.tensor([t if t is not None else [0.0] * width for t in teachers])
            batch["teacher_mask"] = torch.tensor([t is not None for t in teachers])
        batch["idx"] = torch.tensor([r["idx"] for r in rows], dtype=torch.long)
        if "window" in rows[0]:  # --long_text windows: the window's position in its document
            batch["window"] = torch.tensor([r["window"] for r in rows], dtype=torch.long)
        return batch


def padding_ratio(lengths: list[int], batches: list[list[int]]) -> float:
    """Padded tokens computed over real tokens for a list of batches (1.0 means no padding)."""
    lengths_arr = np.asarray(lengths)
    padded = sum(len(b) * lengths_arr[b].max() for b in batches)
    return float(padded / lengths_arr.sum())


def train_dataloader(ds: Any, collate: PadCollator, batch_size: int, seed: int, group_by_length: bool) -> DataLoader:
    """Shuffled training batches, grouped by length unless ``group_by_length`` is False."""
    sampler = LengthGroupedBatchSampler(
        column_values(ds, "length"), batch_size, seed=seed, group_by_length=group_by_length
    )
    # A private generator: creating a loader iterator then draws its seed from here, not from the global RNG, so a
    # resumed run's dropout masks match the uninterrupted run's.
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator().manual_seed(seed))


def eval_dataloader(ds: Any, collate: PadCollator, batch_size: int) -> DataLoader:
    """Length-sorted evaluation batches."""
    sampler = SortedBatchSampler(column_values(ds, "length"), batch_size)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator().manual_seed(0))


def build_dataloaders(
    tokenized: dict[str, Any],
    tokenizer: Any,
    cfg: TrainConfig,
    pad_multiple: int | None,
    train: bool = True,
    eval_batch_size: int | None = None,
) -> tuple[DataLoader | None, dict[str, DataLoader]]:
    """The training loader (the "train" split, when ``train``) and an evaluation loader for every other split;
    with ``train=False`` every split is evaluated and the training loader is None."""
    collate = PadCollator(tokenizer.pad_token_id, pad_multiple)
    train_dl = None
    if train:
        train_dl = train_dataloader(
            tokenized["train"], collate, cfg.per_device_train_batch_size, cfg.seed, cfg.group_by_length
        )
    # Validation before test whatever order the splits were read in (a carved validation is added last).
    order = [s for s in SPLIT_ALIASES if s in tokenized] + [s for s in tokenized if s not in SPLIT_ALIASES]
    batch_size = eval_batch_size or cfg.per_device_eval_batch_size
    eval_dls = {
        split: eval_dataloader(tokenized[split], collate, batch_size)
        for split in order
        if not (train and split == "train")
    }
    return train_dl, eval_dls
