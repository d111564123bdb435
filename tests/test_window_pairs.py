"""--long_text windows on sentence pairs whose first text fills the window: they are truncated, and the run says so."""

from __future__ import annotations

import json

import train
from conftest import tiny_args, write_csv


def test_pairs_truncated_instead_of_windowed_are_counted_and_warned_of(tiny_bert, tmp_path):
    long_first = " ".join(["the striker scored twice in the second half"] * 3)  # 27 tokens
    long_second = " ".join(["our goalkeeper saved a penalty in the final minute"] * 3)  # 27 tokens
    short_first = "the striker scored"
    rows = [(long_first if i % 2 else short_first, long_second, ["sports", "food"][i % 2]) for i in range(12)]
    for split in ("train", "validation"):
        write_csv(tmp_path / "data" / f"{split}.csv", rows, header=("text", "second", "label"))
    out = tmp_path / "run"
    flags = ["--text_pair_column", "second", "--long_text", "windows", "--max_seq_length", "24"]
    train.main(tiny_args(tiny_bert, out, tmp_path / "data", *flags, "--max_steps", "1"))
    windows = json.loads((out / "config.json").read_text())["resolved"]["windows"]
    # 24 tokens less 3 special ones leave 21: the 27-token first texts leave the second none, so those 6 pairs are
    # truncated as --long_text truncate does; the 3-token ones leave 18 and are windowed.
    assert windows["train"] == {"documents": 12, "windows": windows["train"]["windows"], "cut": 6, "truncated": 6}
    log = (out / "train.log").read_text()
    assert "long_text windows: train: 6 pair documents were truncated instead, as --long_text truncate does" in log
