"""Collect every run under a folder into one results table (mean ± std over seeds), learning curves and a heatmap.

    python scripts/report.py outputs/matrix
    python scripts/report.py outputs/matrix --baseline all-MiniLM-L6-v2     # adds Δ test macro-F1 columns
    (the baseline is a model name as the table shows it, or its full path)

Writes ``results.csv`` (one row per dataset x model, numeric columns) and ``results.md`` (the same table for
reading, the per-dataset winner in bold) into the folder, ``curves.png`` into each run directory (loss, learning
rate, gradient norm and the validation metrics from ``metrics.jsonl``, the one that chose ``best_model/`` marked at
its best step), ``heatmap_test_macro_f1.png``, and per dataset
``per_class_f1_<dataset>.png``: the test F1 of every class in every run the table averages (validation when a run has
no test split), where a rare class that one setting learns and another misses shows at a glance.

A row is one experiment: the full dataset path, its label column(s), the full model path and every other setting
that changes what is learned, the launch's mixed precision and process count included (``results.csv`` lists them
in ``dataset_path``, ``model_path`` and ``settings``, and the run folders in ``run_dirs``, a JSON list); only seeds are averaged. A dataset
or model that the run_matrix.py plan named (``name:``, recorded in matrix.json) goes by that name; other names are short when that is unambiguous (``emotion``, ``trec-label_coarse``, ``bert-base``),
and get their parent folders (``v1-reviews``, ``org1-bert-base``) or a short hash when two paths share a short name;
runs of one dataset and model with other settings are told apart by those settings (``minilm (learning_rate=1e-05)``).
A seed trained twice for one row (say the same settings in two folders) counts once: the run with the newest
``results.json`` is kept and a warning names the folders. Seeds of one row that ran on different library versions,
devices, CPU thread counts or model files (config.json's ``resolved``) get a warning, a ``†`` beside the seed count and a
``mixed`` column naming them.

Input files that run_matrix.py --score_inputs scored with each run's best model (``RUN/eval_<name>.json``) get a
column each, ``held-out <name> <metric>``: the mean ± std over seeds of the selection metric on that file, with
``(k/n seeds)`` and a warning when only some of the row's seeds have its scores; the rows of a dataset none of whose
runs scored the file (another dataset's: ``--score_inputs DATASET=FILE``) leave its cells blank.

The winner of a dataset is the model with the best mean *validation* score by the runs' own metric (macro-F1 by
default; models that tie on it are all winners), the number a researcher may select on; its test score is reported beside it, never used to choose. The val→test gap column shows how much of the
validation score survives on test.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import METRICS, TrainConfig  # noqa: E402
from utils import (  # noqa: E402
    BOOKKEEPING_SETTINGS,
    EVALUATE_SPLIT_FILES,
    LABEL_SETTINGS,
    UsageError,
    atomic_savefig,
    atomic_write_text,
    counted,
    label_suffix,
    plot_text,
    read_run_config,
    run_cli,
    set_title_inside,
    source_key,
    undrawable_characters,
    unique_names,
)

# Keys that are not a row's "other settings": bookkeeping never changes what a run learns, seeds are what a row
# averages over, and the dataset and model paths are keyed on separately (resolved).
NOT_SETTINGS = BOOKKEEPING_SETTINGS | {"seed", "dataset", "model_name_or_path"}
# What the launcher decided for a run (config.json's resolved block): it changes what is learned as much as a flag.
# The effective batch follows from these and the batch flags (already settings): naming it too would make each point
# of a batch-size grid a model of its own.
LAUNCH_SETTINGS = ("mixed_precision", "num_processes")
DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
# Two means over seeds this close (absolutely, or relative to a loss's size) are one score: far above a sum's rounding
# (1e-16), far below any difference a validation split of even a million rows can show (1e-6).
TIE_TOLERANCE = 1e-9
COLUMNS = [
    ("val_macro_f1", "validation", "macro_f1"),
    ("val_accuracy", "validation", "accuracy"),
    ("test_macro_f1", "test", "macro_f1"),
    ("test_accuracy", "test", "accuracy"),
]


def load_runs(root: Path) -> list[dict[str, Any]]:
    """One record per finished run (a folder with results.json and config.json) under ``root``."""
    runs = []
    for results_path in sorted(root.rglob("results.json")):
        run_dir = results_path.parent
        config_path = run_dir / "config.json"
        if not config_path.is_file():
            # Without config.json there is no dataset, model or setting to put the run in a row by.
            print(
                f"warning: {run_dir} left out: it has a results.json but no config.json, so its dataset, model and "
                "settings are unknown; restore its config.json or delete the folder.",
                file=sys.stderr,
            )
            continue
        try:
            results = json.loads(results_path.read_text(encoding="utf-8"))
            config = json.loads(config_path.read_text(encoding="utf-8"))
            user, resolved = config["user_config"], config.get("resolved") or {}
            entry = read_matrix_entry(run_dir)
            lacking = sorted({"best_step"} - results.keys() | {"dataset", "model_name_or_path", "seed"} - user.keys())
            problem = f"it lacks {', '.join(lacking)}" if lacking else None
            if odd := [s for s in ("validation", "test") if not isinstance(results.get(s), dict | None)]:
                problem = f"its {' and '.join(odd)} {'is' if len(odd) == 1 else 'are'} no mapping of scores"
            # Sorted and averaged below: a number written as text (an edited file) would end the table in a traceback.
            numbers = {"seed": user.get("seed"), "best_step": results.get("best_step")}
            numbers |= {k: results.get(k) for k in ("train_runtime_s", "train_samples_per_s")}
            if odd := [f"{k} {v!r}" for k, v in numbers.items() if v is not None and not finite(v)]:
                problem = f"{', '.join(odd)} {'is' if len(odd) == 1 else 'are'} no number"
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            problem = f"{type(err).__name__}: {err}"
        if problem:
            # A file cut off by a full disk or a kill: the table goes on without the run, and says so.
            print(
                f"warning: {run_dir} left out: its results.json, config.json or matrix.json cannot be read "
                f"({problem}); rerun the run or delete its folder.",
                file=sys.stderr,
            )
            continue
        # A setting added to train.py after the run is missing from its config; it ran as that setting's default runs
        # (a new flag's default keeps what train.py did before), so it joins the rows of the default, as run_matrix.py
        # takes it for the planned run.
        user = DEFAULTS | user
        settings = {k: v for k, v in user.items() if k not in NOT_SETTINGS | switched_off(user)}
        settings |= {k: resolved[k] for k in LAUNCH_SETTINGS if k in resolved}
        # train.py records the local dataset resolved to an absolute path, so a relative path given from another
        # working directory still names the same folder; the model is resolved here when it is a local path.
        dataset = source_key(resolved.get("dataset") or user["dataset"])
        model = source_key(user["model_name_or_path"])
        record = {
            "run_dir": run_dir,
            "settings": settings,
            "dataset_path": dataset,
            "labels": label_suffix(user),
            "model_path": model,
            "identity": json.dumps([dataset, model, settings], sort_keys=True, default=str),
            "seed": user["seed"],
            "finished": results_path.stat().st_mtime_ns,
            "best_step": results["best_step"],
            # A matrix run's variant name and grid point (matrix.json, written by run_matrix.py).
            **entry,
            # The metric the run selected its best model by, and its validation score: what the winner is chosen on.
            "metric": results.get("metric", "macro_f1"),
            "val_selected": (results.get("validation") or {}).get(results.get("metric", "macro_f1")),
            "train_runtime_s": results.get("train_runtime_s"),
            "train_samples_per_s": results.get("train_samples_per_s"),
        }
        if record["val_selected"] is None:
            # Without it the run cannot take part in choosing a grid point or a winner, and a row would average its
            # other scores beside its seeds' validation scores over fewer seeds, without a word.
            print(
                f"warning: {run_dir} left out: its results.json has no validation {record['metric']}, the score its "
                "best model was selected by; rerun the run or delete its folder.",
                file=sys.stderr,
            )
            continue
        for column, split, key in COLUMNS:
            record[column] = (results.get(split) or {}).get(key)
        scores = {c: record[c] for c, _, _ in COLUMNS}
        if record["metric"] not in {key for _, split, key in COLUMNS if split == "validation"}:
            # The score the run was selected by (validation loss, say): grid points and winners are chosen on it.
            scores[f"validation {record['metric']}"] = record["val_selected"]
        if odd := [c for c, value in scores.items() if value is not None and not finite(value)]:
            print(
                f"warning: {run_dir} left out: {', '.join(odd)} in its results.json is not a finite number.",
                file=sys.stderr,
            )
            continue
        record["test_num_samples"] = (results.get("test") or {}).get("num_samples")
        # What the run saw of its data: runs of one row that differ here trained on a dataset edited in place.
        digests = resolved.get("split_digests") or {}
        # (The test split's digest only: a carved validation split, and so train, differ from seed to seed.)
        record["data_seen"] = {
            "labels": resolved.get("label_names"),
            "rows": resolved.get("split_sizes"),
            "test_rows": digests.get("test"),
        }
        # What computed the run: a row whose seeds ran on other library versions or model files (a peer's run copied
        # in, a library upgraded mid-campaign, a model folder replaced) is flagged; not recorded is unknown.
        record["versions"] = resolved.get("versions") if isinstance(resolved.get("versions"), dict) else {}
        record["model_files"] = resolved.get("model_files")
        # The device kind (cuda:0 and cuda:1 are one kind) and a CPU run's thread count: other kernels, another
        # dropout stream, sums in another order, so numbers that differ by rounding or more.
        device = resolved.get("device")
        record["hardware"] = {"device": str(device).split(":")[0]} if device else {}
        if resolved.get("cpu_threads"):
            record["hardware"]["CPU threads"] = resolved["cpu_threads"]
        # Every split's digest: two datasets whose runs saw the same rows are one dataset in two folders.
        record["data_digest"] = json.dumps(digests, sort_keys=True) if digests else None
        scored = results.get("test") or results.get("validation") or {}
        record["per_class_split"] = "test" if results.get("test") else "validation"
        # A class without a row in the split has no F1 (scikit-learn's report gives 0): left blank in the plot.
        record["per_class_f1"] = {
            name: None if r.get("support") == 0 else r.get("f1-score")
            for name, r in (scored.get("per_class") or {}).items()
        }
        record["heldout"] = heldout_scores(run_dir)
        runs.append(record)
    warn_if_unfinished(root)
    name_runs(runs)
    for run in runs:
        if run["variant"]:
            run["model"] = f"{run['model']} [{run['variant']}]"
    name_experiments(runs)
    return runs


def heldout_scores(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The scored --input files of a run (evaluate.py's eval_<name>.json beside predictions_<name>.jsonl), by name."""
    scores = {}
    for path in sorted(run_dir.glob("eval_*.json")):
        if EVALUATE_SPLIT_FILES.fullmatch(path.name):  # the run's own splits (and their subsets)
            continue
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text(encoding="utf-8"))
            # Only what evaluate.py --input wrote: a user's own eval_*.json is not a held-out score.
            if isinstance(record, dict) and {"input", "predictions", "unscored_rows"} <= record.keys():
                scores[path.stem.removeprefix("eval_")] = record
                # A score that is no finite number (a nan, an edited file) is no score: the seed lacks it, as a run's
                # nan test score leaves the run out, rather than a mean of nan or a crash.
                for metric in [m for m in METRICS if m in record and not finite(record[m])]:
                    print(f"warning: {path}: {metric} is not a finite number; left out.", file=sys.stderr)
                    del record[metric]
    return scores


def finite(value: Any) -> bool:
    """True for an int or float that is neither nan nor infinite (a bool is no score)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def warn_if_unfinished(root: Path) -> None:
    """Warn about run folders under ``root`` without a results.json (failed, interrupted or still training): the
    table leaves them out, so a row has fewer seeds than planned, or a dataset is missing, without it."""
    failed = {path.parent for path in root.rglob("failed.json")}  # run_matrix.py's record of a run that exited non-zero
    unfinished = set()
    for path in root.rglob("config.json"):
        if path.parent in failed or (path.parent / "results.json").is_file():
            continue
        with contextlib.suppress(ValueError):  # a damaged config.json: not known to be a run's
            if read_run_config(path.parent) is not None:  # a model's config.json is no run's
                unfinished.add(path.parent)
    failed = {d for d in failed if not (d / "results.json").is_file()}  # retrained since it failed
    if not failed and not unfinished:
        return
    listed = sorted(map(str, failed | unfinished))
    shown = ", ".join(listed[:3]) + (f" and {len(listed) - 3} more" if len(listed) > 3 else "")
    print(
        f"warning: {counted(len(listed), 'run')} under {root} {'has' if len(listed) == 1 else 'have'} no results.json "
        f"and {'is' if len(listed) == 1 else 'are'} left out ({len(failed)} "
        f"failed, {len(unfinished)} interrupted or still training): {shown}; run the matrix again to finish them "
        "(its --status names each), or delete their folders.",
        file=sys.stderr,
    )


def switched_off(user: dict[str, Any]) -> set[str]:
    """The settings of a user_config that no flag of the run put to use (TrainConfig.switched_off): an older
    train.py recorded --focal_gamma without --loss focal, say, where it changed nothing, so it names no experiment."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}  # a key a later train.py dropped is still a setting
    cfg = TrainConfig(**{k: v for k, v in user.items() if k in known})
    return {name for names in cfg.switched_off().values() for name in names}


def read_matrix_entry(run_dir: Path) -> dict[str, Any]:
    """``variant`` (None when the run is no variant), ``grid`` (the grid point's settings, {} without a grid) and
    ``dataset_name`` and ``given_model`` (the names the plan's ``name:`` gave the dataset and the model, else None)."""
    path = run_dir / "matrix.json"
    entry = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    # The plan's name: of its dataset (run_matrix.py records it since it did; None for older runs and a plain run).
    given = {"dataset_name": entry.get("dataset"), "given_model": entry.get("model")}
    return {"variant": entry.get("variant"), "grid": entry.get("grid") or {}} | given


def point_key(grid: dict[str, Any]) -> str:
    """A grid point as one string (its settings sorted)."""
    return json.dumps(grid, sort_keys=True, default=str)


def select_grid_points(runs: list[dict[str, Any]], warn: bool = False) -> dict[tuple[str, str], dict[str, Any]]:
    """For each (dataset, model): the grid point with the best mean VALIDATION score over seeds, by the runs' own
    metric and its direction (config.METRICS); test scores never take part. Means within TIE_TOLERANCE tie, and the tie
    goes to the first point in sorted order (margin 0). Also the runner-up and the margin.
    Points selected by different metrics cannot be ranked: none is chosen (``warn``: and a warning says so)."""
    groups: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        # A point is one experiment: runs whose settings differ are never one point's seeds.
        groups.setdefault((run["dataset"], run["model"]), {}).setdefault(run["identity"], []).append(run)
    chosen = {}
    for pair, points in groups.items():
        scored = []
        for members in points.values():
            members = one_run_per_seed(members, quiet=True)
            score = mean_std([m["val_selected"] for m in members])[0]
            if score is not None:
                scored.append({"grid": members[0]["grid"], "runs": members, "score": score})
        if not scored:
            continue
        if len(metrics := sorted({p["runs"][0]["metric"] for p in scored})) > 1:
            if warn:
                print(
                    f"warning: {pair[0]} / {pair[1]}: its grid points select their best state by different metrics "
                    f"({', '.join(metrics)}), whose validation scores do not rank against each other, so no point "
                    "competes; give each metric a variant of its own instead.",
                    file=sys.stderr,
                )
            continue
        metric = metrics[0]
        sign = -1 if METRICS.get(metric) == "min" else 1
        # Ties go to the point listed first in a stable order (the sorted point key), never to the test score. Means
        # that differ only in their last bits tie: 0.8 and 0.9 average to 0.8500000000000001, 0.85 twice to 0.85, and
        # that rounding must not choose (the dataset's winner is tied alike).
        scored.sort(key=lambda p: (-sign * p["score"], point_key(p["grid"])))
        at_top = [p for p in scored if tied(p["score"], scored[0]["score"])]
        scored = sorted(at_top, key=lambda p: point_key(p["grid"])) + scored[len(at_top) :]
        best, runner_up = scored[0], scored[1] if len(scored) > 1 else None
        margin = None if runner_up is None else sign * (best["score"] - runner_up["score"])
        margin = 0.0 if runner_up is not None and tied(best["score"], runner_up["score"]) else margin
        chosen[pair] = best | {"metric": metric, "runner_up": runner_up, "margin": margin}
        # A point's mean over seed 1 alone (its other seeds failed, or are still to run) against another's over seeds
        # 1-3: the choice may rest on a lucky seed. Said, as for the winner of a dataset.
        seeds = {grid_text(p["grid"]): sorted(m["seed"] for m in p["runs"]) for p in scored}
        if len({tuple(v) for v in seeds.values()}) > 1:
            chosen[pair]["seeds_differ"] = "; ".join(f"{g}: {', '.join(map(str, v))}" for g, v in sorted(seeds.items()))
            if warn:
                print(
                    f"warning: {pair[0]} / {pair[1]}: its grid points ran different seeds "
                    f"({chosen[pair]['seeds_differ']}); the point selected on validation compares means over different "
                    "seeds: run the missing seeds to compare them alike.",
                    file=sys.stderr,
                )
    return chosen


def tied(a: float, b: float) -> bool:
    """Whether two means over seeds are one score: equal but for the rounding of their sums (the last bits)."""
    return math.isclose(a, b, rel_tol=TIE_TOLERANCE, abs_tol=TIE_TOLERANCE)


def grid_text(grid: dict[str, Any]) -> str:
    """A grid point as ``k=v, k=v`` (``-`` without a grid)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(grid.items())) or "-"


def plan_names(runs: list[dict[str, Any]], keys: list[str], field: str) -> list[str | None]:
    """Each run's plan name (``field`` of its matrix.json): its own, else the one name its ``keys`` entry (a dataset,
    a model path) was given by its other runs (runs trained before names were recorded join the named ones), else
    None. Two plan entries of one path with names of their own keep them apart (``bert-slow``, ``bert-fast``)."""
    given: dict[str, set[str]] = {}
    for run, key in zip(runs, keys, strict=True):
        if run.get(field):
            given.setdefault(key, set()).add(str(run[field]))
    out: list[str | None] = []
    for run, key in zip(runs, keys, strict=True):
        only = next(iter(given[key])) if len(given.get(key, ())) == 1 else None
        out.append(str(run[field]) if run.get(field) else only)
    return out


def name_runs(runs: list[dict[str, Any]]) -> None:
    """Set each run's display ``dataset`` and ``model``: each by the name the plan gave it (``name:``), else short;
    either made distinct where two different datasets (or models) would share it."""
    identities = [json.dumps([r["dataset_path"], *(r["settings"].get(k) for k in LABEL_SETTINGS)]) for r in runs]
    # A given name stands as the whole name (no label suffix: the plan's name says what it means); two datasets of
    # one name, from two plans in one folder, get their hashes as derived names do.
    datasets = [
        (name, "", json.dumps([identity, name])) if name else (r["dataset_path"], r["labels"], identity)
        for r, identity, name in zip(runs, identities, plan_names(runs, identities, "dataset_name"), strict=True)
    ]
    paths = [r["model_path"] for r in runs]
    models = [
        (name, "", json.dumps([path, name])) if name else (path, "", path)
        for path, name in zip(paths, plan_names(runs, paths, "given_model"), strict=True)
    ]
    for run, dataset, model in zip(runs, unique_names(datasets), unique_names(models), strict=True):
        run["dataset"], run["model"] = dataset, model


def name_experiments(runs: list[dict[str, Any]]) -> None:
    """Tell apart the experiments of one display model by the settings that differ between them: ``row`` names a
    table row (every such setting, ``minilm (learning_rate=1e-05, weight_decay=0.1)``), ``model`` the model that
    competes for a dataset and that compare.py names (all but the grid point, whose value validation selects:
    ``minilm (learning_rate=1e-05)``), ``model_name`` the bare model (``minilm``)."""
    # The settings that differ between two experiments of a model on any one dataset name it on every dataset, so
    # that one experiment carries one name across datasets (compare.py pairs them by it).
    by_pair: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for run in runs:
        by_pair.setdefault((run["dataset"], run["model"]), {}).setdefault(run["identity"], run["settings"])
    varying: dict[str, set[str]] = {}
    for (_, model), experiments in by_pair.items():
        keys = {k for settings in experiments.values() for k in settings}
        differ = {k for k in keys if len({json.dumps(s.get(k), default=str) for s in experiments.values()}) > 1}
        varying.setdefault(model, set()).update(differ)
    for run in runs:
        keys = sorted(varying[run["model"]])
        run["model_name"] = run["model"]
        run["row"] = with_settings(run["model"], run["settings"], keys)
        run["model"] = with_settings(run["model"], run["settings"], [k for k in keys if k not in run["grid"]])


def with_settings(name: str, settings: dict[str, Any], keys: list[str]) -> str:
    """``name (k=v, ...)`` for ``keys`` of ``settings``, or ``name`` without keys."""
    return f"{name} ({', '.join(f'{k}={settings.get(k)}' for k in keys)})" if keys else name


def one_run_per_seed(members: list[dict[str, Any]], quiet: bool = False) -> list[dict[str, Any]]:
    """The runs of one row, one per seed: a seed trained twice keeps its newest result, with a warning."""
    by_seed: dict[Any, list[dict[str, Any]]] = {}
    for run in members:
        by_seed.setdefault(run["seed"], []).append(run)
    kept = []
    for seed, runs in by_seed.items():
        runs.sort(key=lambda r: (r["finished"], str(r["run_dir"])))  # the folder name breaks mtime ties
        kept.append(runs[-1])
        if len(runs) > 1 and not quiet:
            print(
                f"warning: {runs[-1]['dataset']} / {runs[-1]['model']} seed {seed} was trained {len(runs)} times with "
                f"the same settings ({', '.join(str(r['run_dir']) for r in runs)}); using {runs[-1]['run_dir']} "
                "(newest results.json). Delete the others to silence this.",
                file=sys.stderr,
            )
    return kept


def averaged_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs the table averages: one per seed of each row (a seed trained twice keeps its newest run)."""
    by_identity: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_identity.setdefault(run["identity"], []).append(run)
    return [run for members in by_identity.values() for run in one_run_per_seed(members, quiet=True)]


def warn_if_data_changed(members: list[dict[str, Any]]) -> None:
    """Warn when the seeds of one row saw different label names, split sizes or test rows (the data was edited in
    place)."""
    seen: dict[str, list[Any]] = {}
    # What a run did not record (the test digest, before runs recorded it) is unknown, not different: compared only
    # when every run of the row has it.
    known = [k for k in ("labels", "rows", "test_rows") if all(r["data_seen"][k] is not None for r in members)]
    for run in members:
        if known:
            seen.setdefault(json.dumps({k: run["data_seen"][k] for k in known}, sort_keys=True), []).append(run["seed"])
    if len(seen) > 1:
        listed = "; ".join(f"seeds {', '.join(map(str, seeds))}: {versions}" for versions, seeds in seen.items())
        print(
            f"warning: {members[0]['dataset']} / {members[0]['model']}: its runs saw different data ({listed}); the "
            "dataset changed between runs, so this row averages two datasets. Retrain the older runs (delete their "
            "folders) or train into another --output_dir.",
            file=sys.stderr,
        )


def environment_differences(
    groups: dict[str, list[dict[str, Any]]], versions: bool = True, model_files: bool = True
) -> list[str]:
    """Where the runs of ``groups`` (a label, ``seed 1`` or a model's name, to its runs) ran on other library
    ``versions``, devices or CPU thread counts, or other ``model_files``, one phrase each: ``torch 2.13.0 (seed 1),
    2.14.1 (seed 2)``, ``device cpu (seed 1), cuda (seed 2)``. What a run did not record (a run older than the record,
    the thread count of a GPU run) is unknown, not different."""
    seen: dict[str, dict[str, list[str]]] = {}
    for label, members in groups.items():
        for run in members:
            recorded = dict(run.get("versions") or {}) | dict(run.get("hardware") or {}) if versions else {}
            if model_files and run.get("model_files"):
                recorded["model files"] = run["model_files"]
            for key, value in recorded.items():
                labels = seen.setdefault(key, {}).setdefault(str(value), [])
                if label not in labels:
                    labels.append(label)
    return [
        f"{key} " + ", ".join(f"{value} ({', '.join(labels)})" for value, labels in values.items())
        for key, values in seen.items()
        if len(values) > 1
    ]


def warn_if_test_sets_differ(runs: list[dict[str, Any]]) -> None:
    """Warn when the rows of one dataset were tested on different test rows or with different label names (another
    --max_eval_samples, a test file edited between models): their test scores are not comparable."""
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_dataset.setdefault(run["dataset"], []).append(run)
    for dataset, members in sorted(by_dataset.items()):
        known = [k for k in ("labels", "test_rows") if all(r["data_seen"][k] is not None for r in members)]
        seen: dict[str, set[str]] = {}
        for run in members:
            seen.setdefault(json.dumps({k: run["data_seen"][k] for k in known}, sort_keys=True), set()).add(run["row"])
        listed_rows = [row for rows in seen.values() for row in rows]
        if len(seen) < 2 or len(listed_rows) != len(set(listed_rows)):
            continue  # one test set; or a row whose own seeds saw two, which warn_if_data_changed names
        listed = "; ".join(f"{', '.join(sorted(rows))}: {version}" for version, rows in seen.items())
        print(
            f"warning: {dataset}: its rows saw different test data ({listed}); their test scores are not comparable "
            "(compare.py leaves the dataset out). Retrain them on one test set.",
            file=sys.stderr,
        )


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the non-missing values (no std for a single value)."""
    present = [v for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), statistics.stdev(present) if len(present) > 1 else None


def pick_model(name: str, models: list[str], flag: str) -> str:
    """The display name ``name`` designates: an exact match, else the one model that contains it."""
    if name in models:
        return name
    found = [m for m in models if name in m]
    if len(found) == 1:
        return found[0]
    listing = ", ".join(repr(m) for m in models)
    if not found:
        raise UsageError(f"{flag} {name!r} matches no model; the models under this folder are: {listing}.")
    raise UsageError(
        f"{flag} {name!r} is ambiguous: it matches {', '.join(repr(m) for m in found)}; give the full name."
    )


def resolve_baseline(baseline: str, rows: list[dict[str, Any]]) -> str:
    """The model ``--baseline`` designates: a model path, a name of the table's model column (a row's full name, or
    its model's name, whose selected grid point then stands for it), or a unique part of one."""
    by_path = [r for r in rows if r["selected"] and r["model_path"] in (baseline, source_key(baseline))]
    if by_path:
        # Variants (or a hand-run sweep) of one model share its path: within a dataset the path names several rows.
        per_dataset: dict[str, set[str]] = {}
        for r in by_path:
            per_dataset.setdefault(r["dataset"], set()).add(r["model"])
        if several := next((names for names in per_dataset.values() if len(names) > 1), None):
            raise UsageError(
                f"--baseline {baseline!r} is the model of several rows ({', '.join(map(repr, sorted(several)))}); "
                "give one of their names."
            )
        return baseline
    models, full = sorted({r["competitor"] for r in rows}), sorted({r["model"] for r in rows})
    if baseline in models or baseline in full:
        return baseline
    # A part of a model's name first (its grid rows contain it too); a model entered twice with other flags is two
    # models, so a part of both is ambiguous, and the error lists their names.
    return pick_model(baseline, models if any(baseline in m for m in models) else full, "--baseline")


def find_baseline(rows: list[dict[str, Any]], baseline: str) -> dict[str, Any] | None:
    """The row of ``baseline`` among one dataset's competing rows: by the name the table shows, else by its model's
    name (a grid's selected point), else by the full model path."""
    named = [r for r in rows if r["model"] == baseline] or [r for r in rows if r["competitor"] == baseline]
    by_path = [r for r in rows if r["model_path"] in (baseline, source_key(baseline))]
    matches = named or by_path
    return matches[0] if len(matches) == 1 else None


def aggregate(runs: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """One row per experiment (all settings but the seed): metric means/stds over seeds, gap, steps, time, winner."""
    by_identity: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_identity.setdefault(run["identity"], []).append(run)
    # With a grid, only each model's point selected on validation competes for the dataset (and the baseline).
    chosen = {point["runs"][0]["identity"] for point in select_grid_points(runs, warn=True).values()}
    # A file is one dataset's (run_matrix.py --score_inputs DATASET=FILE): its column is that dataset's rows' only.
    inputs_of: dict[str, set[str]] = {}
    for run in runs:
        inputs_of.setdefault(run["dataset"], set()).update(run["heldout"])
    rows = []
    # Experiments of one dataset x model with other settings (a learning-rate sweep, say) are separate rows, named
    # by the settings that differ between them (name_experiments).
    for members in by_identity.values():
        first = members[0]
        members = one_run_per_seed(members)
        warn_if_data_changed(members)
        mixed = environment_differences({f"seed {m['seed']}": [m] for m in members})
        if mixed:
            print(
                f"warning: {first['dataset']} / {first['row']}: its seeds ran on different {'; '.join(mixed)}; the row "
                "averages runs of two set-ups. Retrain the odd seeds (delete their folders) with the others' set-up.",
                file=sys.stderr,
            )
        row: dict[str, Any] = {
            "dataset": first["dataset"],
            "model": first["row"],
            "model_name": first["model_name"],
            "competitor": first["model"],
            "seeds": len(members),
            "seed_list": json.dumps(sorted(m["seed"] for m in members)),
            "metric": first["metric"],
            "grid": point_key(first["grid"]) if first["grid"] else "",
            "selected": not first["grid"] or first["identity"] in chosen,
        }
        row["val_selected_mean"] = mean_std([m["val_selected"] for m in members])[0]
        for column, _, _ in COLUMNS:
            row[f"{column}_mean"], row[f"{column}_std"] = mean_std([m[column] for m in members])
        if row["val_macro_f1_mean"] is not None and row["test_macro_f1_mean"] is not None:
            row["val_test_gap"] = row["val_macro_f1_mean"] - row["test_macro_f1_mean"]
        else:
            row["val_test_gap"] = None
        for key in ("best_step", "train_runtime_s", "train_samples_per_s"):
            row[key] = mean_std([m[key] for m in members])[0]
        # The full identity, so a row can always be traced to exactly what was trained.
        row["dataset_path"], row["model_path"] = first["dataset_path"], first["model_path"]
        row["settings"] = json.dumps(first["settings"], sort_keys=True, default=str)
        # A JSON list: a folder name may hold spaces, commas or quotes.
        row["run_dirs"] = json.dumps(sorted(str(m["run_dir"]) for m in members))
        row["mixed"] = "; ".join(mixed)
        for name in sorted(inputs_of[first["dataset"]]):
            add_heldout(row, members, name)
        rows.append(row)
    rows.sort(key=lambda r: (r["dataset"], r["model"]))
    warn_if_test_sets_differ(averaged_runs(runs))
    warn_if_inputs_differ(averaged_runs(runs))
    baseline = resolve_baseline(baseline, rows) if baseline is not None else None
    baseline_found = False
    for dataset in {r["dataset"] for r in rows}:
        same = [r for r in rows if r["dataset"] == dataset and r["val_macro_f1_mean"] is not None and r["selected"]]
        # The winner is chosen on validation by the runs' own --metric_for_best_model (the direction from config's
        # table); rows selected by different metrics cannot be ranked against each other, so none wins then.
        metrics = {r["metric"] for r in same}
        ranked = [r for r in same if r["val_selected_mean"] is not None]
        sign = -1 if len(metrics) == 1 and METRICS.get(next(iter(metrics))) == "min" else 1
        top = max((sign * r["val_selected_mean"] for r in ranked), default=None) if len(metrics) == 1 else None
        # Models that tie on the best mean (two that predict alike, a score on few validation rows) are all bold:
        # picking one would crown whichever sorts first. (The means' last bit may differ with the summing order.)
        best = [r for r in ranked if top is not None and tied(sign * r["val_selected_mean"], top)]
        for r in same:
            r["winner"] = any(r is b for b in best)
        seeds = {r["model"]: json.loads(r["seed_list"]) for r in ranked}
        if best and len({tuple(v) for v in seeds.values()}) > 1:
            # A mean over seeds 1-3 against one over seed 1 alone (the others failed, or not run yet): the bold may
            # rest on a lucky seed. Said, not hidden: the table documents every run; compare.py pairs seeds.
            for r in best:
                r["winner_seeds_differ"] = True
            listed = "; ".join(f"{m}: {', '.join(map(str, v))}" for m, v in sorted(seeds.items()))
            print(
                f"warning: {dataset}: the models ran different seeds ({listed}); the bold winner compares means "
                "over different seeds: scripts/compare.py pairs them.",
                file=sys.stderr,
            )
        base = find_baseline(same, baseline) if baseline is not None else None
        baseline_found |= base is not None
        for r in same:
            if baseline is not None:
                has = (
                    base is not None and r["test_macro_f1_mean"] is not None and base["test_macro_f1_mean"] is not None
                )
                r["delta_test_macro_f1"] = r["test_macro_f1_mean"] - base["test_macro_f1_mean"] if has else None
                # A mean over seeds 1-3 minus the baseline's over seed 1: no paired difference, marked as the winner is.
                r["delta_seeds_differ"] = has and r["seed_list"] != base["seed_list"]
    if baseline is not None and not baseline_found:
        if point := next((r for r in rows if r["model"] == baseline and not r["selected"]), None):
            print(
                f"warning: --baseline {baseline} is a grid point that validation did not select; a model competes (and "
                f"serves as the baseline) at its selected point: pass the model's name ({point['competitor']}).",
                file=sys.stderr,
            )
        else:
            names = ", ".join(sorted({r["model"] for r in rows}))
            print(f"warning: --baseline {baseline} matches none of the rows that compete ({names}).", file=sys.stderr)
    return rows


def add_heldout(row: dict[str, Any], members: list[dict[str, Any]], name: str) -> None:
    """The row's mean ± std over seeds of the selection metric on the scored input ``name``, and which seeds it
    averages: a row whose seeds lack some of the scores says so (a warning, and the seeds in the cell)."""
    scored = [m for m in members if isinstance((m["heldout"].get(name) or {}).get(row["metric"]), int | float)]
    row[f"heldout_{name}_mean"], row[f"heldout_{name}_std"] = mean_std(
        [m["heldout"][name][row["metric"]] for m in scored]
    )
    row[f"heldout_{name}_seed_list"] = json.dumps(sorted(m["seed"] for m in scored))
    if scored and len(scored) < len(members):
        lacking = sorted(m["seed"] for m in members if not any(m is s for s in scored))
        print(
            f"warning: {row['dataset']} / {row['model']}: {'seed' if len(lacking) == 1 else 'seeds'} "
            f"{', '.join(map(str, lacking))} {'has' if len(lacking) == 1 else 'have'} no scores of "
            f"{name}; its held-out column averages {len(scored)} of {len(members)} seeds. Score "
            f"{'it' if len(lacking) == 1 else 'them'} with "
            "run_matrix.py --score_inputs (the same command again scores the runs that lack them).",
            file=sys.stderr,
        )


def warn_if_inputs_differ(runs: list[dict[str, Any]]) -> None:
    """Warn when the eval_<name>.json of some runs of one dataset came from another input file of that name: their
    held-out scores share a column but not a test set. Each dataset may have its own file of one name
    (--score_inputs DATASET=FILE); a row averages one dataset's runs only."""
    files: dict[tuple[str, str], dict[str, list[str]]] = {}
    for run in runs:
        for name, scores in run["heldout"].items():
            files.setdefault((run["dataset"], name), {}).setdefault(str(scores["input"]), []).append(
                str(run["run_dir"])
            )
    for (dataset, name), by_file in sorted(files.items()):
        if len(by_file) > 1:
            listed = "; ".join(f"{f} ({counted(len(d), 'run')}, e.g. {d[0]})" for f, d in sorted(by_file.items()))
            print(
                f"warning: the held-out scores of {name} on {dataset} came from different input files ({listed}); "
                "their column mixes test sets. Score every run on one file (delete the others' eval_<name>.json "
                "and run the matrix again with --score_inputs).",
                file=sys.stderr,
            )


def heldout_cell(row: dict[str, Any], name: str) -> str:
    """A held-out column's cell: mean ± std, and the seeds it averages when not all of the row's; blank for an input
    of another dataset."""
    if f"heldout_{name}_mean" not in row:
        return ""
    cell = fmt(row.get(f"heldout_{name}_mean"), row.get(f"heldout_{name}_std"))
    scored = len(json.loads(row.get(f"heldout_{name}_seed_list") or "[]"))
    return f"{cell} ({scored}/{row['seeds']} seeds)" if 0 < scored < row["seeds"] else cell


def md(text: Any) -> str:
    """``text`` (a name: a folder, a variant) for Markdown, in a table cell or a heading: a '|' would end the cell,
    backticks, '*', '#' and a '_' at a word's edge would start code, emphasis or a heading."""
    # '_' within a word styles nothing in Markdown (label_coarse): left as is, so names read as they are spelled.
    return re.sub(r"[\\`*#|]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", lambda m: "\\" + m.group(), str(text))


def fmt(mean: float | None, std: float | None = None, digits: int = 4) -> str:
    """``mean ± std`` (or ``-`` when missing)."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def markdown(rows: list[dict[str, Any]], baseline: str | None) -> str:
    """The results table as Markdown; the per-dataset winner (best mean validation score by the runs' metric) in bold."""
    header = ["dataset", "model", "seeds", "val macro-F1", "val acc", "test macro-F1", "test acc", "val→test gap"]
    header += ["best step", "train s", "samples/s"] + ([f"Δ test macro-F1 vs {md(baseline)}"] if baseline else [])
    # The scored inputs (aggregate gives a row the columns of its dataset's inputs), in name order.
    inputs = sorted(
        {
            k[len("heldout_") : -len("_mean")]
            for r in rows
            for k in r
            if k.startswith("heldout_") and k.endswith("_mean")
        }
    )
    metric = "/".join(sorted({r["metric"] for r in rows}))
    header += [f"held-out {md(name)} {metric}" for name in inputs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            md(r["dataset"]),
            (f"**{md(r['model'])}**" + (" ‡" if r.get("winner_seeds_differ") else ""))
            if r.get("winner")
            else md(r["model"]),
            f"{r['seeds']} †" if r["mixed"] else str(r["seeds"]),
            *(fmt(r[f"{c}_mean"], r[f"{c}_std"]) for c, _, _ in COLUMNS),
            fmt(r["val_test_gap"]),
            fmt(r["best_step"], digits=0),
            fmt(r["train_runtime_s"], digits=0),
            fmt(r["train_samples_per_s"], digits=1),
        ]
        if baseline:
            delta = r.get("delta_test_macro_f1")
            cells.append("-" if delta is None else f"{delta:+.4f}" + (" ‡" if r.get("delta_seeds_differ") else ""))
        cells += [heldout_cell(r, name) for name in inputs]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nMean ± sample standard deviation over seeds (a single seed shows no ±). Bold: the model with the best mean validation score on "
        "that dataset by the runs' own --metric_for_best_model (selected on validation, not on test; every model that ties on it). Gap: mean validation minus mean test macro-F1.\n"
    )
    if any(r.get("winner_seeds_differ") or r.get("delta_seeds_differ") for r in rows):
        note += (
            "‡ The models of this dataset ran different seeds (results.csv's `seed_list`): the winner's mean is over "
            "other seeds than its rivals', a Δ's over other seeds than the baseline's; `scripts/compare.py` pairs "
            "seeds.\n"
        )
    if inputs:
        note += (
            f"Held-out: the selection metric ({metric}) on each input file run_matrix.py --score_inputs scored with "
            "the run's best model (evaluate.py --input: RUN/eval_<name>.json); (k/n seeds) when only k of the row's "
            "seeds have its scores; blank where no run of the dataset was scored on the file (another dataset's).\n"
        )
    if any(r["mixed"] for r in rows):
        note += (
            "† The row's seeds ran on different library versions, devices, CPU thread counts or model files "
            "(results.csv's `mixed` says which).\n"
        )
    return "\n".join(lines) + "\n" + note


def selection_markdown(runs: list[dict[str, Any]]) -> str:
    """How each model's grid point was chosen (validation only): the point, its score, the runner-up's margin."""
    chosen = select_grid_points(runs)
    lines = []
    for (dataset, model), best in sorted(chosen.items()):
        if not best["grid"]:
            continue
        margin = (
            "the only point" if best["margin"] is None else f"{best['margin']:.4f} over {best['runner_up']['grid']}"
        )
        differ = f"; ‡ the points ran different seeds: {best['seeds_differ']}" if best.get("seeds_differ") else ""
        lines.append(
            f"- {dataset} / {model}: {best['grid']} (mean validation {best['metric']} {best['score']:.4f} over "
            f"{counted(len(best['runs']), 'seed')}; margin {margin}{differ})"
        )
    if not lines:
        return ""
    return "\nGrid points selected on validation only (test never takes part):\n\n" + "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The table with one numeric column per statistic."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(run_dir: Path) -> Path | None:
    """Loss, learning rate, gradient norm and validation metrics against the step, from metrics.jsonl; the metric
    that selected the best state (results.json's, validation loss included) is drawn with its best step marked."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a line cut off by a kill mid-write: the curves go without it
            records.append(json.loads(line))
    records = [r for r in records if isinstance(r, dict)]
    results = {}
    with contextlib.suppress(OSError, ValueError):  # no results.json: the curves go without the best step
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    results = results if isinstance(results, dict) else {}
    metric, best_step = results.get("metric", "macro_f1"), results.get("best_step")
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    panels = [("loss", train, "train loss"), ("lr", train, "learning rate"), ("grad_norm", train, "grad norm")]
    for ax, (key, rows, title) in zip(axes, panels, strict=False):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=title)
        ax.set_title(title)
        ax.set_xlabel("step")
    # Validation loss beside the train loss (one scale), the scores together; the metric that chose best_model/
    # among them, with its best step marked.
    for key in dict.fromkeys(["loss", "macro_f1", "accuracy", metric]):
        if rows := [r for r in evals if r.get(f"eval_{key}") is not None]:
            ax = axes[0] if key == "loss" else axes[3]
            ax.plot([r["step"] for r in rows], [r[f"eval_{key}"] for r in rows], marker="o", label=f"validation {key}")
    selecting = axes[0] if metric == "loss" else axes[3]
    if best := [r for r in evals if r["step"] == best_step and r.get(f"eval_{metric}") is not None]:
        value = best[-1][f"eval_{metric}"]
        label = f"best {metric} {value:.4f} (step {best_step})"
        selecting.plot([best_step], [value], marker="*", markersize=14, color="red", linestyle="none", label=label)
        for ax in (axes[0], axes[3]):  # the other panel's scores at the state best_model/ holds, too
            ax.axvline(best_step, color="red", linestyle=":", linewidth=1)
    axes[0].set_title("loss")
    # Two lines, a size smaller: on one line it ran past the figure's edge.
    axes[3].set_title(f"validation\n(best_model/ chosen by {metric})", fontsize=10)
    axes[3].set_xlabel("step")
    axes[0].legend(fontsize=7)
    axes[3].legend(fontsize=7)
    fig.suptitle(str(run_dir), fontsize=8)
    fig.tight_layout()
    out = run_dir / "curves.png"
    atomic_savefig(fig, out, dpi=90)
    plt.close(fig)
    return out


def plot_heatmap(rows: list[dict[str, Any]], path: Path) -> None:
    """Dataset x model heatmap of mean test macro-F1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = sorted({r["dataset"] for r in rows})
    models = sorted({r["model"] for r in rows})
    grid = np.full((len(datasets), len(models)), np.nan)
    for r in rows:
        if r["test_macro_f1_mean"] is not None:
            grid[datasets.index(r["dataset"]), models.index(r["model"])] = r["test_macro_f1_mean"]
    import textwrap

    labels = [textwrap.fill(m, 22) for m in models]
    label_lines = max(label.count("\n") + 1 for label in labels)
    # Dataset names wrapped too (a held-out set's long folder name left no room for the picture), the figure wider
    # by the width of the longest line (about 0.09 inch a character at the ticks' 10 points).
    names = [textwrap.fill(d, 28) for d in datasets]
    name_lines = max(name.count("\n") + 1 for name in names)
    widest = max(len(line) for name in names for line in name.splitlines())
    fig, ax = plt.subplots(
        figsize=(3 + 2.0 * len(models) + 0.09 * widest, 1.5 + 0.6 * len(datasets) * name_lines + 0.2 * label_lines)
    )
    image = ax.imshow(grid, cmap="viridis", vmin=np.nanmin(grid) if np.isfinite(grid).any() else 0, aspect="auto")
    ax.set_xticks(range(len(models)), labels, fontsize=8)
    ax.set_yticks(range(len(datasets)), names)
    for i in range(len(datasets)):
        for j in range(len(models)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", color="white")
    fig.colorbar(image, ax=ax, label="test macro-F1")
    ax.set_title("test macro-F1, mean over seeds")
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)


def run_label(run: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """A run's column name in the per-class plot: its row in the table (model and differing settings) and seed."""
    row = next((r for r in rows if str(run["run_dir"]) in json.loads(r["run_dirs"])), None)
    return f"{row['model'] if row else run['model']} seed {run['seed']}"


def plot_per_class_f1(runs: list[dict[str, Any]], rows: list[dict[str, Any]], root: Path) -> list[Path]:
    """Per dataset, a class x run heatmap of per-class F1 (test, else validation): ``per_class_f1_<dataset>.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import textwrap

    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    for dataset in sorted({r["dataset"] for r in runs}):
        members = sorted(
            (r for r in runs if r["dataset"] == dataset and r["per_class_f1"]),
            key=lambda r: (run_label(r, rows), str(r["run_dir"])),
        )
        if not members:
            continue
        classes = list(dict.fromkeys(name for r in members for name in r["per_class_f1"]))
        grid = np.array([[r["per_class_f1"].get(c, np.nan) for r in members] for c in classes], dtype=float)
        path = root / f"per_class_f1_{dataset.replace('/', '_')}.png"
        # A name the fonts cannot draw (Japanese without a Japanese font) would be empty boxes: drawn as its number.
        numbered = {i: name for i, name in enumerate(classes) if undrawable_characters(name)}
        if numbered:
            print(
                f"{path.name} numbers {counted(len(numbered), 'class')} whose name its fonts cannot draw: "
                + ", ".join(f"#{i} = {name!r}" for i, name in numbered.items()),
                file=sys.stderr,  # stdout is the table
            )
        labels = [textwrap.fill(run_label(r, rows), 24) for r in members]
        fig, ax = plt.subplots(figsize=(3 + 1.3 * len(members), 1.5 + 0.35 * len(classes)))
        image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(members)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_yticks(
            range(len(classes)), [f"#{i}" if i in numbered else plot_text(c) for i, c in enumerate(classes)], fontsize=8
        )
        if grid.size <= 400:  # the values themselves while they stay readable
            for i, j in np.argwhere(np.isfinite(grid)):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="white", fontsize=7)
        splits = sorted({r["per_class_split"] for r in members})
        fig.colorbar(image, ax=ax, label=f"{'/'.join(splits)} F1")
        title = f"{dataset}: per-class F1 by run"
        if np.isnan(grid).any():
            title += f"\n(blank: no {'/'.join(splits)} row of the class)"
        # Wrapped inside the picture: a held-out set's long folder name ran off both edges of a one-run picture.
        set_title_inside(fig, ax, title)
        atomic_savefig(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def not_a_campaign_folder(root: Path) -> str | None:
    """Why ``root`` cannot be a campaign's folder (missing, or a file), else None: a mistyped folder is not one
    without finished runs."""
    if root.is_dir():
        return None
    return f"{root}: {'not a folder' if root.exists() else 'no such folder'}; pass the matrix's output_dir."


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Build the table, the plots, and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="Folder searched recursively for run directories (results.json).")
    parser.add_argument("--baseline", help="Model name whose test macro-F1 the other models are compared with.")
    parser.add_argument("--no_plots", action="store_true", help="Skip the PNG files.")
    args = parser.parse_args(argv)
    root = Path(args.folder)
    if (missing := not_a_campaign_folder(root)) is not None:
        print(f"error: {missing}", file=sys.stderr)
        sys.exit(2)
    runs = load_runs(root)
    if not runs:
        print(f"error: no finished runs (results.json) under {root}", file=sys.stderr)
        sys.exit(2)
    try:
        rows = aggregate(runs, args.baseline)
    except UsageError as err:  # a --baseline that names no model or several: nothing is written
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    write_csv(rows, root / "results.csv")
    table = markdown(rows, args.baseline) + selection_markdown(runs)
    atomic_write_text(root / "results.md", table)
    plots = []
    if not args.no_plots:
        curves = [path for run in runs if (path := plot_curves(run["run_dir"]))]
        plot_heatmap(rows, root / "heatmap_test_macro_f1.png")
        plots = [str(root / "heatmap_test_macro_f1.png")]
        # Not a seed's older copy, which the table left out.
        plots += [str(path) for path in plot_per_class_f1(averaged_runs(runs), rows, root)]
        plots += [f"RUN/curves.png for {counted(len(curves), 'run')}"] if curves else []
    print(table)
    print(
        f"wrote {root / 'results.md'} and {root / 'results.csv'} ({counted(len(runs), 'run')}, "
        f"{counted(len(rows), 'row')})" + (f"; plots: {', '.join(plots)}" if plots else "")
    )
    return rows


if __name__ == "__main__":
    run_cli(main)
