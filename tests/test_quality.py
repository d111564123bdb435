"""scripts/quality.py and scripts/trainer_recipe.py: both recipes run on the same rows, the table pairs seeds, and a
rerun keeps the runs it has."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import quality


def test_paired_interval_is_the_t_interval_of_the_seed_differences():
    mean, low, high = quality.paired([0.01, 0.03, -0.01, 0.02, 0.00])
    assert mean == pytest.approx(0.01)
    # t(0.975, 4) = 2.776; stdev = 0.01581; half-width 2.776 * 0.01581 / sqrt(5) = 0.01963
    assert (low, high) == pytest.approx((0.01 - 0.01963, 0.01 + 0.01963), abs=2e-5)
    assert quality.paired([0.02]) == (0.02, None, None)  # one pair measures no spread: no interval


def test_one_seed_shows_no_spread_and_no_interval():
    """One seed per recipe: the table's std and the paired interval are not measured, so they read n/a rather than
    "± 0.0000" and "[+0.0200, +0.0200]"; the JSON has null for them."""
    cfg = quality.QualityConfig(recipes=["ours", "trainer"], seeds=[1])
    cfg.validate()
    rows = [
        {"recipe": recipe, "dataset": "sst2", "seed": 1, "seconds": 10.0, "test_accuracy": f1, "test_macro_f1": f1}
        for recipe, f1 in (("ours", 0.82), ("trainer", 0.80))
    ]
    text, summary = quality.table(rows, cfg)
    assert "test macro-F1 (mean ± std, 1 seed) |" in text.splitlines()[0], text
    assert "| sst2 | ours | 0.8200 ± n/a | 0.8200 | +0.0200 [n/a: 1 seed] | 10 |" in text.splitlines(), text
    assert "| sst2 | trainer | 0.8000 ± n/a | 0.8000 | — | 10 |" in text.splitlines(), text
    assert summary["sst2"]["ours"]["std"] is None
    assert summary["sst2"]["ours"]["paired_delta"] == {
        "mean": pytest.approx(0.02),
        "low": None,
        "high": None,
        "seeds": 1,
    }


def test_unknown_recipe_or_reference_is_one_clear_error():
    with pytest.raises(quality.UsageError, match="unknown recipes"):
        quality.main(["--recipes", "ours", "lightning"])
    with pytest.raises(quality.UsageError, match="--reference trainer is not among"):
        quality.main(["--recipes", "ours"])


@pytest.mark.slow
def test_ours_and_the_trainer_recipe_on_the_same_rows_then_a_rerun_keeps_them(tiny_bert, tmp_path, capsys):
    args = ["--datasets", f"{REPO.parent / 'shared' / 'data' / 'trec'}:label_coarse", "--seeds", "1"]
    args += ["--model_name_or_path", str(tiny_bert), "--output_dir", str(tmp_path), "--num_train_epochs", "1"]
    args += ["--max_train_samples", "48", "--max_eval_samples", "24", "--max_seq_length", "24"]
    summary = quality.main(args)
    rows = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["recipe"] for r in rows] == ["ours", "trainer"]
    # The same test rows: ours scored 24 predictions, and the Trainer's accuracy is a multiple of 1/24.
    predictions = (
        (tmp_path / "trec-label_coarse" / "ours" / "seed1" / "predictions_test.jsonl").read_text().splitlines()
    )
    assert len(predictions) == 24
    assert (rows[1]["test_accuracy"] * 24) == pytest.approx(round(rows[1]["test_accuracy"] * 24))
    ours = summary["trec-label_coarse"]["ours"]
    delta = rows[0]["test_macro_f1"] - rows[1]["test_macro_f1"]
    assert ours["paired_delta"]["mean"] == pytest.approx(delta)
    assert "| trec-label_coarse | ours |" in (tmp_path / "quality.md").read_text()
    capsys.readouterr()
    quality.main(args)  # nothing is run again
    assert "seed 1 ours" not in capsys.readouterr().out
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2


def fake_runs(monkeypatch):
    """quality.run_one replaced by a run that scores 0.5 + seed / 100 (ours) or 0.5 (the Trainer) at once."""
    ran = []

    def run_one(cfg, recipe, dataset, seed):
        ran.append((recipe, dataset, seed))
        f1 = 0.5 + seed / 100 if recipe == "ours" else 0.5
        row = {"recipe": recipe, "dataset": quality.dataset_name(dataset), "seed": seed, "seconds": 1.0}
        return (
            row
            | {"test_macro_f1": f1, "test_accuracy": f1, "validation_macro_f1": f1}
            | {"settings": quality.run_settings(cfg, dataset)}
        )

    monkeypatch.setattr(quality, "run_one", run_one)
    return ran


def test_two_label_columns_of_one_dataset_are_two_tasks(tmp_path, monkeypatch):
    """trec:label_coarse and trec:label_fine are two tasks: both are run and each gets its own row (before, both
    were named trec, and the second was taken as already run)."""
    ran = fake_runs(monkeypatch)
    trec = REPO.parent / "shared" / "data" / "trec"
    args = ["--datasets", f"{trec}:label_coarse", f"{trec}:label_fine", "--seeds", "1", "--output_dir", str(tmp_path)]
    summary = quality.main(args)
    assert [(recipe, seed) for recipe, _, seed in ran] == [("ours", 1), ("trainer", 1)] * 2
    assert sorted(summary) == ["trec-label_coarse", "trec-label_fine"]


def test_a_rerun_with_other_settings_is_refused_not_mixed_with_the_recorded_runs(tmp_path, monkeypatch):
    """runs.jsonl keeps each run's settings; a rerun into the same folder with another --max_train_samples (or an
    older file without settings) is refused before any run, instead of counting those runs as this command's."""
    ran = fake_runs(monkeypatch)
    args = ["--datasets", str(REPO / "sample_data"), "--seeds", "1", "--output_dir", str(tmp_path)]
    quality.main([*args, "--max_train_samples", "100"])
    assert len(ran) == 2
    quality.main([*args, "--max_train_samples", "100"])  # the same settings: nothing to run again
    assert len(ran) == 2
    with pytest.raises(quality.UsageError) as refused:
        quality.main([*args, "--max_train_samples", "200"])
    assert str(refused.value) == (
        f"{tmp_path / 'runs.jsonl'} holds ours on sample_data seed 1 run with other settings (max_train_samples 100, "
        "not 200); these runs would be counted as this command's: pass another --output_dir, or move that folder "
        "away to start over."
    )
    assert len(ran) == 2
    a, b = tmp_path / "a" / "data", tmp_path / "b" / "data"
    with pytest.raises(quality.UsageError, match="would share the name data"):
        quality.main(["--datasets", str(a), str(b), "--output_dir", str(tmp_path / "other")])


def test_the_text_columns_reach_both_recipes():
    """A sentence-pair dataset: both train.py and trainer_recipe.py get the same text and pair columns."""
    cfg = quality.QualityConfig(text_column="sentence1", text_pair_column="sentence2")
    cfg.validate()
    flags = quality.shared_flags(cfg, "/data/pairs", 1)
    assert flags[flags.index("--text_column") + 1] == "sentence1"
    assert flags[flags.index("--text_pair_column") + 1] == "sentence2"
    import trainer_recipe

    recipe = trainer_recipe.parse_config(flags, trainer_recipe.RecipeConfig)
    assert (recipe.text_column, recipe.text_pair_column) == ("sentence1", "sentence2")


def test_each_variant_of_ours_changes_only_its_own_flag(tmp_path):
    """The variants measure one part of the recipe each: the pooling ones fix --pooling, the fp32 ones launch without
    autocast, the random ones turn length grouping off; everything else is ours."""
    cfg = quality.QualityConfig(recipes=list(quality.OURS), reference="ours")
    cfg.validate()
    base, _ = quality.command(cfg, "ours", "/data/x", 1, tmp_path)
    for recipe, (pooling, precision_off, random) in {
        "ours-pooler": ("pooler", False, False),
        "ours-mean": ("mean", False, False),
        "ours-cls": ("cls", False, False),
        "ours-fp32": (None, True, False),
        "ours-random": (None, False, True),
    }.items():
        command, scores = quality.command(cfg, recipe, "/data/x", 1, tmp_path)
        assert scores == tmp_path / "results.json"
        assert (command[command.index("--pooling") + 1] if "--pooling" in command else None) == pooling, recipe
        assert (command[command.index("--mixed_precision") + 1] == "no") == precision_off, recipe
        assert ("--no-group_by_length" in command) == random, recipe
        assert set(command) - set(base) <= {"--pooling", pooling, "no", "--no-group_by_length"}, recipe


def test_the_trainers_best_recipe_attends_through_the_shared_gpu_settings(tiny_bert, tmp_path, monkeypatch):
    """--recipe best sets attention as our runs do by calling utils.tune_gpu with the Trainer's accelerator (one
    place for the cuDNN switch), before any step trains."""
    import trainer_recipe
    import transformers

    import utils

    class Tuned(Exception):
        pass

    def tune_gpu(accelerator, cudnn_attention=None):
        raise Tuned(accelerator)

    monkeypatch.setattr(utils, "tune_gpu", tune_gpu)
    monkeypatch.setattr(transformers.Trainer, "train", lambda *a, **k: pytest.fail("trained before tune_gpu"))
    flags = ["--dataset", str(REPO / "sample_data"), "--model_name_or_path", str(tiny_bert), "--recipe", "best"]
    flags += ["--max_seq_length", "24", "--output_dir", str(tmp_path / "trainer")]
    with pytest.raises(Tuned) as tuned:
        trainer_recipe.run(trainer_recipe.parse_config(flags, trainer_recipe.RecipeConfig))
    assert tuned.value.args[0].device.type == "cpu"  # the Trainer's own accelerator


def test_a_hub_dataset_rerun_from_another_folder_keeps_its_runs(tmp_path, monkeypatch):
    """A hub id is recorded as given, not as a path under the working folder: the same command from another folder
    finds its runs (before, it was refused as run "with other settings"); a local folder is recorded absolute, so a
    relative spelling of it from elsewhere is the same dataset too."""
    ran = fake_runs(monkeypatch)
    out = tmp_path / "out"
    for here in ("a", "b"):
        (tmp_path / here).mkdir()
        monkeypatch.chdir(tmp_path / here)
        quality.main(["--datasets", "org/reviews:stars", "--seeds", "1", "--output_dir", str(out)])
    assert len(ran) == 2  # the second folder ran nothing again
    row = json.loads((out / "runs.jsonl").read_text().splitlines()[0])
    assert (row["dataset"], row["settings"]["dataset"]) == ("reviews-stars", "org/reviews")
    (tmp_path / "a" / "data").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    quality.main(["--datasets", "data", "--seeds", "1", "--output_dir", str(out / "local")])
    monkeypatch.chdir(tmp_path)
    quality.main(["--datasets", "a/data/", "--seeds", "1", "--output_dir", str(out / "local")])
    assert len(ran) == 4


def test_runs_recorded_with_a_hub_id_under_the_working_folder_are_kept(tmp_path, monkeypatch):
    """runs.jsonl files written when a hub id was recorded as a path under the working folder still match that id."""
    ran = fake_runs(monkeypatch)
    monkeypatch.chdir(tmp_path)
    cfg = quality.QualityConfig(datasets=["org/reviews"], seeds=[1])
    cfg.validate()
    older = quality.run_settings(cfg, "org/reviews") | {"dataset": "/elsewhere/org/reviews"}
    rows = [{"recipe": r, "dataset": "reviews", "seed": 1, "settings": older} for r in ("ours", "trainer")]
    quality.check_recorded(cfg, rows, tmp_path / "runs.jsonl")  # not refused
    other = older | {"dataset": "/elsewhere/other/reviews"}
    with pytest.raises(quality.UsageError, match="dataset '/elsewhere/other/reviews', not 'org/reviews'"):
        quality.check_recorded(cfg, [{**rows[0], "settings": other}], tmp_path / "runs.jsonl")
    assert ran == []
