"""Row limits above the data: the run says it used every row, so the limit is not read as its size."""

from __future__ import annotations

from config import TrainConfig
from conftest import REPO
from data import load_splits


def test_a_row_limit_above_the_split_is_noted_and_keeps_every_row():
    cfg = TrainConfig(dataset=str(REPO / "sample_data"), max_train_samples=1000, max_eval_samples=10)
    data = load_splits(cfg)
    assert {split: len(ds) for split, ds in data.splits.items()} == {"train": 48, "validation": 10, "test": 10}
    assert "--max_train_samples 1000 is above the 48 train rows: all of them are used" in data.notes
    # A limit that cuts a split is no news.
    assert not [note for note in data.notes if note.startswith("--max_eval_samples")]
