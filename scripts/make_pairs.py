"""A sentence-pair dataset built from a single-sentence one: pair inputs for timing and for accuracy comparisons.

    python scripts/make_pairs.py --source ../shared/data/sst2 --output_dir outputs/sst2-pairs
    python scripts/make_pairs.py --source ../shared/data/emotion --pairing label_name --min_words 1 \
        --output_dir outputs/emotion-claims

``--pairing same_label`` (the default) pairs two training sentences of at least --min_words words (``sentence1``,
``sentence2``) with the label ``same`` when both carry the same label, else ``different``: longer inputs than either
sentence, and a hard task (both sentences' classes must be found and compared). ``--pairing label_name`` pairs each
sentence with a class name (``sentence2``: its own class for half the rows, drawn by the seed, another class for the
rest, drawn as often as the classes occur, so that a name alone says little about the answer) with the label ``yes`` when the name is the sentence's class, else ``no``: a learnable
entailment-style task, as zero-shot classifiers are trained on. Train, validation and test rows come from disjoint
sentences of the source's training split, drawn in a seeded order. The output is a dataset folder as train.py reads
it (parquet splits and labels.json): train with ``--text_column sentence1 --text_pair_column sentence2``.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import option, parse_config  # noqa: E402
from utils import UsageError  # noqa: E402


@dataclass
class PairsConfig:
    """Where the sentences come from, where the pairs go, and how many."""

    source: str = option(str(REPO.parent / "shared" / "data" / "sst2"), "Dataset folder with train.parquet.")
    output_dir: str = option("outputs/sst2-pairs", "Folder for the pair dataset (must not exist yet).")
    text_column: str = option("text", "Sentence column of the source.")
    label_column: str = option("label", "Label column of the source.")
    min_words: int = option(12, "Only sentences of at least this many words.")
    train_pairs: int = option(4000, "Training pairs.")
    eval_pairs: int = option(500, "Validation pairs and test pairs (each).")
    seed: int = option(0, "Seed of the sentence order (and of the class names drawn by --pairing label_name).")
    pairing: str = option(
        "same_label",
        "same_label: two sentences, 'same' when their classes are; label_name: a sentence and a class name, 'yes' when "
        "it is the sentence's.",
        choices=("same_label", "label_name"),
    )


def class_names(source: Path, label_column: str, labels: list[Any]) -> dict[Any, str]:
    """Each source label's name: from labels.json beside the source when its labels are ids, else the label itself."""
    names_file = source.parent / "labels.json"
    if names_file.is_file() and all(isinstance(label, int) for label in labels):
        names = json.loads(names_file.read_text(encoding="utf-8")).get(label_column)
        if isinstance(names, list) and all(0 <= label < len(names) for label in labels):
            return {label: str(names[label]) for label in set(labels)}
    return {label: str(label) for label in set(labels)}


def make_pairs(cfg: PairsConfig) -> dict[str, int]:
    """Write the pair splits and labels.json; returns the rows per split."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(cfg.output_dir)
    if out.exists():
        raise UsageError(f"{out} exists; choose a new --output_dir (nothing is overwritten).")
    if cfg.train_pairs < 1 or cfg.eval_pairs < 1:
        raise UsageError(f"--train_pairs {cfg.train_pairs} and --eval_pairs {cfg.eval_pairs} must be at least 1.")
    source = Path(cfg.source) / "train.parquet"
    if not source.is_file():
        raise UsageError(f"--source {cfg.source} holds no train.parquet; give a dataset folder as train.py reads it.")
    columns = pq.read_schema(source).names
    for flag, column in (("--text_column", cfg.text_column), ("--label_column", cfg.label_column)):
        if column not in columns:
            raise UsageError(f"{flag} {column!r} is not a column of {source} (its columns: {', '.join(columns)}).")
    rows = pq.read_table(source, columns=[cfg.text_column, cfg.label_column]).to_pylist()
    rows = [r for r in rows if len(str(r[cfg.text_column]).split()) >= cfg.min_words]
    random.Random(cfg.seed).shuffle(rows)
    sizes = {"train": cfg.train_pairs, "validation": cfg.eval_pairs, "test": cfg.eval_pairs}
    per_pair = 2 if cfg.pairing == "same_label" else 1
    if len(rows) < per_pair * sum(sizes.values()):
        raise UsageError(
            f"{len(rows)} sentences of {cfg.min_words}+ words make fewer than the {sum(sizes.values())} pairs asked; "
            "lower --train_pairs, --eval_pairs or --min_words."
        )
    names = class_names(source, cfg.label_column, [r[cfg.label_column] for r in rows])
    if cfg.pairing == "label_name" and len(set(names.values())) < 2:
        raise UsageError(
            f"--pairing label_name needs two classes or more; {source} has one: {next(iter(names.values()))}."
        )
    # Other classes are drawn in proportion to their rows: drawn uniformly, a rare class's name would mostly be a
    # "no" and a frequent one's a "yes", an answer the name alone would give.
    pool = [names[r[cfg.label_column]] for r in rows]
    draw = random.Random(cfg.seed + 1)  # its own stream: the sentence order is the same for either pairing
    out.mkdir(parents=True)
    start = 0
    for split, n in sizes.items():
        chunk = rows[start : start + per_pair * n]
        start += per_pair * n
        if cfg.pairing == "same_label":
            pairs: list[dict[str, Any]] = [
                {
                    "sentence1": a[cfg.text_column],
                    "sentence2": b[cfg.text_column],
                    "label": int(a[cfg.label_column] == b[cfg.label_column]),
                }
                for a, b in zip(chunk[0::2], chunk[1::2], strict=True)
            ]
        else:
            pairs = []
            for row in chunk:
                own = names[row[cfg.label_column]]
                matches = draw.random() < 0.5
                name = own
                while not matches and name == own:
                    name = draw.choice(pool)
                pairs.append({"sentence1": row[cfg.text_column], "sentence2": name, "label": int(matches)})
        pq.write_table(pa.Table.from_pylist(pairs), out / f"{split}.parquet")
    label_names = ["different", "same"] if cfg.pairing == "same_label" else ["no", "yes"]
    (out / "labels.json").write_text(
        json.dumps({"label": label_names}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return sizes


def main(argv: list[str] | None = None) -> dict[str, int]:
    """Build the pairs and print the rows per split as JSON."""
    cfg = parse_config(argv, PairsConfig, __doc__)
    sizes = make_pairs(cfg)
    print(json.dumps(sizes))
    return sizes


if __name__ == "__main__":
    from utils import run_cli

    run_cli(main)
