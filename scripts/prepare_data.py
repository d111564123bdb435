"""Turn a hub dataset or a local file/folder into the unified layout train.py reads, with a short data report.

    python scripts/prepare_data.py reviews.jsonl data/reviews --text_column review --label_column stars
    python scripts/prepare_data.py dair-ai/emotion data/emotion --val_ratio 0.1 --test_ratio 0.1

Writes ``OUT/train.parquet``, ``OUT/validation.parquet``, ``OUT/test.parquet`` (columns ``text`` [, ``text_pair``],
``label`` as an integer id), ``OUT/labels.json`` (``{"label": [names]}``), and ``OUT/report.md`` /
``OUT/report.json`` / ``OUT/lengths.png``: rows and label distribution per split, token-length percentiles for
``--tokenizer``, the share of documents longer than ``--max_seq_length`` and the windows per document that
``train.py --long_text windows`` would cut them into (with ``--window_stride``, as train.py's default). Missing validation/test splits are carved from train, seeded and stratified by label when every
class has at least 2 rows and the carved split has a row for each class, else at random; the report says which
(``notes``, and ``carved`` in report.json). An existing OUT is refused unless ``--overwrite``, and even then when
it holds other split files train.py would read (the source folder itself).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import TrainConfig  # noqa: E402
from data import (  # noqa: E402
    FORMATS,
    SOURCE_ROW,
    _check_known,
    _normalise_split,
    _split_files,
    _unlabeled,
    build_label_space,
    carve_validation,
    column_values,
    encode_windows,
    label_key,
    load_raw_splits,
    window_room,
)
from utils import UsageError, atomic_savefig, atomic_write_json, atomic_write_text, resolve_model_path, run_cli  # noqa: E402


def other_split_files(folder: Path) -> list[Path]:
    """The data files in ``folder`` that train.py reads as a split, other than the ones written here."""
    written = {f"{split}.parquet" for split in ("train", "validation", "test")}
    try:
        found = _split_files(folder)
    except UsageError:  # several files of one split: all of them are in the way
        found = {"": [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FORMATS]}
    return [p for files in found.values() for p in files if p.name not in written]


def carve(ds: Any, ratio: float, seed: int, label_column: str) -> tuple[Any, Any, str]:
    """Split ``ratio`` of ``ds`` off as train.py carves a missing validation split; also say how it was split."""
    keep, held, note = carve_validation(ds, column_values(ds, label_column), ratio, seed)
    return keep, held, split_method(note)


def split_method(note: str) -> str:
    """``stratified`` or ``random (why)``, read from the note of data.carve_validation (the one place that knows)."""
    match = re.search(r"\((stratified|random(?: \([^)]*\))?)", note)
    # A reworded note is passed on whole rather than guessed at: the report must never claim a stratification.
    return match.group(1) if match else note


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Prepare the folder and return the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="Hub dataset id, local folder or local file.")
    parser.add_argument("out", help="Output folder.")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--text_pair_column", default=None)
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--val_ratio", type=float, default=0.1, help="Fraction carved as validation when missing.")
    parser.add_argument("--test_ratio", type=float, default=0.1, help="Fraction carved as test when missing.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--tokenizer", default="sentence-transformers/all-MiniLM-L6-v2", help="For length stats.")
    parser.add_argument(
        "--max_seq_length", type=int, default=128, help="Report documents longer than this and their windows."
    )
    parser.add_argument(
        "--window_stride",
        type=int,
        default=None,
        help="Tokens consecutive windows share, as train.py's flag (default: max_seq_length // 4).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace the files of an existing OUT.")
    args = parser.parse_args(argv)
    for name in ("val_ratio", "test_ratio"):
        if not 0 < getattr(args, name) < 1:
            raise UsageError(f"--{name} must be in (0, 1).")
    if args.max_seq_length < 1:
        raise UsageError(f"--max_seq_length {args.max_seq_length} must be positive (tokens of one window).")
    if args.window_stride is not None and args.window_stride < 0:
        raise UsageError(f"--window_stride {args.window_stride} must be >= 0 (tokens shared by two windows).")
    stride = args.window_stride if args.window_stride is not None else args.max_seq_length // 4
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise UsageError(f"{out} is not empty; choose another folder or pass --overwrite.")
    if out.is_dir() and (others := sorted(p.name for p in other_split_files(out))):
        # In place (OUT is the source) or over another dataset: train.py would read these beside the parquet splits
        # written here and refuse the folder, or read two datasets as one.
        raise UsageError(
            f"{out} holds {', '.join(others)}, which train.py would read beside the prepared splits; give another "
            f"output folder (not the source's) or move {'it' if len(others) == 1 else 'them'}."
        )

    raw, names = load_raw_splits(args.source, [args.label_column])
    # Every split read and checked as train.py reads it: missing columns and labels refused, rows without text
    # dropped (and said), label lists written into csv cells read as lists, a split of hidden labels left out.
    cfg = TrainConfig(
        dataset=args.source,
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
    )
    notes, carved = [], {}
    for split in [s for s in raw if s != "train" and _unlabeled(raw[s], raw["train"], cfg)]:
        del raw[split]
        notes.append(f"the {split} split has no labels (every one missing or -1, which train never uses): left out")
    for split, ds in raw.items():
        raw[split], note = _normalise_split(ds, split, cfg)
        raw[split] = raw[split].remove_columns(SOURCE_ROW)
        notes += [note] if note else []
    if any(isinstance(v, list) for v in column_values(raw["train"], args.label_column)):
        raise UsageError(
            f"the train split's {args.label_column!r} column holds lists of labels (multi-label); prepare_data.py "
            "writes one label id per row: give the data to train.py as it is (--dataset), which reads label lists."
        )
    # Carve test first, then validation from what is left, so both ratios are of the original train size.
    test_carved = "test" not in raw
    if test_carved and "validation" not in raw and args.val_ratio + args.test_ratio >= 1:
        raise UsageError(
            f"--val_ratio {args.val_ratio:g} and --test_ratio {args.test_ratio:g} carve all of train and leave no "
            "training rows; choose ratios whose sum is below 1 (0.1 and 0.1, say)."
        )
    if test_carved:
        raw["train"], raw["test"], how = carve(raw["train"], args.test_ratio, args.seed, args.label_column)
        carved["test"] = {"ratio": args.test_ratio, "method": how, "seed": args.seed}
        notes.append(f"test carved from train ({args.test_ratio:.0%}, {how}, seed {args.seed})")
    if "validation" not in raw:
        ratio = args.val_ratio / (1 - args.test_ratio) if test_carved else args.val_ratio
        raw["train"], raw["validation"], how = carve(raw["train"], ratio, args.seed, args.label_column)
        carved["validation"] = {"ratio": args.val_ratio, "method": how, "seed": args.seed}
        notes.append(f"validation carved from train ({args.val_ratio:.0%}, {how}, seed {args.seed})")

    given = names.get(args.label_column) or names.get("")
    label_names, value_to_id = build_label_space(column_values(raw["train"], args.label_column), given)
    for split in ("validation", "test"):  # before anything is written: a refusal leaves no folder behind
        _check_known(column_values(raw[split], args.label_column), value_to_id, split, args.label_column)
    renames = {args.label_column: "label"}  # the texts are named text and text_pair already
    report: dict[str, Any] = {"source": args.source, "notes": notes, "carved": carved, "labels": label_names}
    report["splits"] = {}
    from transformers import AutoTokenizer

    from model import encoder_folder

    # An older sentence-transformers model keeps its tokenizer in 0_Transformer/, where train.py reads it too.
    tokenizer = AutoTokenizer.from_pretrained(encoder_folder(resolve_model_path(args.tokenizer)))
    if (room := window_room(tokenizer, args.max_seq_length, pair=args.text_pair_column is not None)) < 1:
        raise UsageError(
            f"--max_seq_length {args.max_seq_length} leaves no room for text beside the tokenizer's "
            f"{args.max_seq_length - room} special tokens; give a longer one (128, say)."
        )
    if stride >= room:
        raise UsageError(f"--window_stride {stride} must be below the {room} text tokens of a --max_seq_length window.")
    out.mkdir(parents=True, exist_ok=True)  # only now: a refusal above leaves no folder behind
    lengths_by_split = {}
    for split in ("train", "validation", "test"):
        ds = raw[split]
        ds = ds.map(
            lambda b: {"__label": [value_to_id[label_key(v, value_to_id)] for v in b[args.label_column]]}, batched=True
        )
        ds = ds.remove_columns(args.label_column).rename_column("__label", args.label_column)
        ds = ds.rename_columns({k: v for k, v in renames.items() if k != v})
        ds.to_parquet(str(out / f"{split}.parquet"))
        pair = column_values(ds, "text_pair") if "text_pair" in ds.column_names else None
        lengths = [len(ids) for ids in tokenizer(column_values(ds, "text"), pair, verbose=False)["input_ids"]]
        lengths_by_split[split] = lengths
        counts = Counter(column_values(ds, "label"))
        report["splits"][split] = {
            "rows": len(ds),
            "label_distribution": {label_names[i]: counts.get(i, 0) / len(ds) for i in range(len(label_names))},
            "token_length_percentiles": percentiles(lengths),
            "long_documents": long_documents(lengths, args.max_seq_length),
            # The windows train.py would make: data.encode_windows is the function its tokenization calls.
            "windows_per_document": windows_per_document(tokenizer, ds, args.max_seq_length, stride),
        }
    report["max_seq_length"], report["window_stride"] = args.max_seq_length, stride
    atomic_write_json(out / "labels.json", {"label": label_names})
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", report_markdown(report))
    plot_lengths(lengths_by_split, out / "lengths.png", args.tokenizer, args.max_seq_length)
    print(report_markdown(report))
    return report


def percentiles(lengths: list[int]) -> dict[str, float]:
    """Token-length percentiles (50/90/95/99/max)."""
    import numpy as np

    arr = np.asarray(lengths)
    return {f"p{q}": float(np.percentile(arr, q)) for q in (50, 90, 95, 99)} | {"max": int(arr.max())}


def long_documents(lengths: list[int], max_seq_length: int) -> dict[str, Any]:
    """How many documents (and what share) are longer than ``max_seq_length`` tokens, special tokens included."""
    longer = sum(n > max_seq_length for n in lengths)
    return {"count": longer, "share": longer / len(lengths)}


def windows_per_document(tokenizer: Any, ds: Any, max_seq_length: int, stride: int) -> dict[str, float]:
    """Windows per document under ``--long_text windows``: mean, p50, p95, max, and the total."""
    import numpy as np

    pairs = column_values(ds, "text_pair") if "text_pair" in ds.column_names else None
    _, rows = encode_windows(tokenizer, column_values(ds, "text"), pairs, max_seq_length, stride)
    per_doc = np.bincount(rows, minlength=len(ds))
    summary = {"mean": float(per_doc.mean())} | {f"p{q}": float(np.percentile(per_doc, q)) for q in (50, 95)}
    return summary | {"max": int(per_doc.max()), "total": int(per_doc.sum())}


def report_markdown(report: dict[str, Any]) -> str:
    """Rows, label proportions, token-length percentiles, long documents and their windows per split."""
    lines = [f"# Data report: {report['source']}", ""] + [f"- {n}" for n in report["notes"]] + [""]
    limit, stride = report["max_seq_length"], report["window_stride"]
    lines += [
        f"Long documents: longer than --max_seq_length {limit} tokens; windows: what --long_text windows makes of "
        f"each document (--window_stride {stride}).",
        "",
    ]
    header = " | ".join(report["labels"]) + f" | p50 | p95 | max tokens | > {limit} tokens | windows/doc (mean, max)"
    lines += [f"| split | rows | {header} |", "|" + "---|" * (len(report["labels"]) + 7)]
    for split, info in report["splits"].items():
        dist = " | ".join(f"{info['label_distribution'][n]:.1%}" for n in report["labels"])
        p, long, w = info["token_length_percentiles"], info["long_documents"], info["windows_per_document"]
        lines.append(
            f"| {split} | {info['rows']} | {dist} | {p['p50']:.0f} | {p['p95']:.0f} | {p['max']} | "
            f"{long['share']:.1%} | {w['mean']:.2f}, {w['max']} |"
        )
    return "\n".join(lines) + "\n"


def plot_lengths(
    lengths_by_split: dict[str, list[int]], path: Path, tokenizer: str, max_seq_length: int | None = None
) -> None:
    """Histogram of token lengths per split, on bins the splits share, with ``max_seq_length`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.5))
    # One set of edges for every split: bars of each split's own widths make densities that do not compare.
    every = [n for lengths in lengths_by_split.values() for n in lengths]
    edges = np.histogram_bin_edges(every, bins=50) if every else 50
    for split, lengths in lengths_by_split.items():
        ax.hist(lengths, bins=edges, histtype="step", linewidth=1.5, label=split, density=True)
    if max_seq_length:  # past it a text is cut (or windowed)
        ax.axvline(max_seq_length, color="black", linestyle=":", label=f"--max_seq_length {max_seq_length}")
    ax.set_xlabel(f"tokens ({tokenizer})")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    run_cli(main)
