"""Train every dataset x model x seed combination, one run directory each, resumable; then run scripts/report.py.

    python scripts/run_matrix.py --datasets ../shared/data/emotion ../shared/data/sst2 \\
        --models sentence-transformers/all-MiniLM-L6-v2 --seeds 1 2 3 --output_dir outputs/matrix \\
        --num_train_epochs 2 --max_seq_length 64          # any other flag goes to train.py
    python scripts/run_matrix.py --config matrix.yaml     # datasets/models may carry their own train.py flags
    python scripts/run_matrix.py --config matrix.yaml --launcher "accelerate launch --num_processes 2"

matrix.yaml::

    output_dir: outputs/matrix
    datasets:
      - path: ../shared/data/emotion
      - {path: ../shared/data/trec, label_column: label_coarse}   # extra keys are train.py flags for this dataset
    models: [sentence-transformers/all-MiniLM-L6-v2]              # or {path: ..., name: ..., learning_rate: ...}
    seeds: [1, 2]
    train_args: {max_train_samples: 64, num_train_epochs: 1}
    variants:                                                     # optional: named sets of train.py flags
      linear-head: {head: linear}
      mlp-head: {head: mlp}
    grid: {learning_rate: [2e-5, 5e-5]}                           # optional: every point is a run (a model entry
                                                                  # may carry its own grid: too)

With variants and grids a run goes to ``<output_dir>/<dataset>/<model>/<variant>,<key>=<value>.../seed<k>/`` and
its ``matrix.json`` names the variant and the grid point; ``report.py`` shows a variant as ``<model> [<variant>]``
and picks each model's grid point on validation only.

Runs go to ``<output_dir>/<dataset>/<model>/seed<k>/``. A run's identity is all of its settings, so folder names
never merge two datasets or models: a folder is named after the last path component (``emotion``; a dataset with
another label column gets it appended, ``trec-label_coarse``), with parent folders added when two entries of the
matrix share that name (``org1-bert-base`` and ``org2-bert-base``), a short hash of the entry when even the full path
is shared (one model with two learning rates), and a short hash of the full path when the folder already holds runs
of another dataset or model from an earlier matrix. ``name:`` in an entry sets the folder name.

A run whose ``results.json`` exists is skipped, so running the matrix again retrains nothing; an interrupted run with
checkpoints resumes from them; one that failed before its first checkpoint starts over. Before anything runs, each
planned run is compared with the ``config.json`` of a run already in its folder (finished or not): if a setting that
changes what is learned differs (say ``train_args`` were edited), the matrix refuses with exit code 2 rather than
report the old results as the new settings' or resume them with other settings; use another ``--output_dir``, give
the entry its own ``name:``, or delete the folder. A failed run does not stop the others; the failures are listed at
the end and the exit code is 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import TrainConfig, build_parser, load_config_file  # noqa: E402
from utils import (  # noqa: E402
    BOOKKEEPING_SETTINGS,
    LABEL_SETTINGS,
    UsageError,
    atomic_write_json,
    checkpoint_dirs,
    label_suffix,
    short_hash,
    source_key,
    unique_names,
)


@dataclass
class Entry:
    """One dataset or model of the matrix: what to pass, the folder name the user gave (if any), its train.py flags."""

    path: str
    name: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The entry as one string: its resolved path and its own flags."""
        return json.dumps([source_key(self.path), self.args], sort_keys=True, default=str)


@dataclass
class Run:
    """One planned run: its folder, its train.py flags and the user_config they parse to."""

    run_dir: Path
    argv: list[str]
    settings: dict[str, Any]
    entry: dict[str, Any] | None = None  # {"variant": name, "grid": point} for matrix.json, None for a plain run


def parse_entry(item: str | dict[str, Any], kind: str) -> Entry:
    """A plain string, or a mapping with ``path`` (and optional ``name``) plus per-entry train.py flags."""
    if isinstance(item, str):
        return Entry(path=item)
    if not isinstance(item, dict) or "path" not in item:
        raise UsageError(f"each of {kind} must be a string or a mapping with a 'path' key, got {item!r}.")
    args = {k: v for k, v in item.items() if k not in ("path", "name", "grid")}
    grid = check_grid(item.get("grid") or {}, f"{kind} entry {item['path']}")
    return Entry(path=str(item["path"]), name=item.get("name") or None, args=args, grid=grid)


def check_grid(grid: Any, where: str) -> dict[str, list[Any]]:
    """A grid is a mapping of train.py flags to non-empty lists of values."""
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UsageError(f"grid of {where} must map train.py flags to non-empty lists, got {grid!r}.")
    return grid


def parse_variants(variants: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """``variants:`` as (name, train.py flags) pairs; no variants is one unnamed variant with no flags."""
    if not variants:
        return [(None, {})]
    if isinstance(variants, list):  # [{name: ..., flag: value}, ...]
        if not all(isinstance(v, dict) and v.get("name") for v in variants):
            raise UsageError("each of variants must be a mapping with a 'name' and train.py flags.")
        variants = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in variants}
    if not isinstance(variants, dict) or not all(isinstance(f, dict) for f in variants.values()):
        raise UsageError(f"variants must map names to train.py flags, got {variants!r}.")
    return [(str(name), flags) for name, flags in variants.items()]


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid's values ([{}] for no grid)."""
    keys = sorted(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def point_folder(variant: str | None, point: dict[str, Any]) -> str | None:
    """The folder of a variant and grid point (``mlp-head,learning_rate=2e-05``), or None for neither."""
    parts = ([variant] if variant else []) + [f"{k}={v}" for k, v in sorted(point.items())]
    return ",".join(parts).replace("/", "_").replace(" ", "") if parts else None


def entry_names(entries: list[Entry], kind: str) -> list[str]:
    """Folder names: a given ``name`` as is, else the short name, made distinct between entries (utils.unique_names)."""
    suffix = label_suffix if kind == "datasets" else (lambda args: "")
    auto = [(source_key(e.path), suffix(e.args), e.identity) for e in entries if e.name is None]
    derived = iter(unique_names(auto))
    names = [e.name if e.name is not None else next(derived) for e in entries]
    owners: dict[str, Entry] = {}
    for entry, name in zip(entries, names, strict=True):
        other = owners.setdefault(name, entry)
        if other.identity != entry.identity:
            raise UsageError(
                f"two {kind} would share the folder {name!r} ({other.path} and {entry.path}, or their flags differ); "
                "give each its own 'name:'."
            )
    return names


def flags(args: dict[str, Any]) -> list[str]:
    """train.py command-line flags from a mapping (lists become repeated values, booleans bare flags)."""
    out: list[str] = []
    for key, value in args.items():
        if isinstance(value, bool):
            out += [f"--{key}" if value else f"--no-{key}"]
        elif isinstance(value, list):
            out += [f"--{key}", *map(str, value)]
        elif value is not None:
            out += [f"--{key}", str(value)]
    return out


def planned_settings(argv: list[str]) -> dict[str, Any]:
    """The user_config train.py will record for ``argv``; an unknown flag or a bad value type is an error up front."""
    # train.py's own parser, but not TrainConfig.validate: that imports the model registries (torch, ~5 s), and
    # train.py validates each run anyway; the matrix driver stays light on a login node.
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):  # argparse prints usage and exits; keep only its last line
            values = vars(build_parser(TrainConfig, "").parse_args(argv))
    except SystemExit:
        message = (stderr.getvalue().strip().splitlines() or ["invalid flags"])[-1].split("error: ", 1)[-1]
        raise UsageError(f"train.py flags of the matrix: {message}; see python train.py --help.") from None
    values.pop("config", None)
    return dataclasses.asdict(TrainConfig(**values))


def recorded_settings(run_dir: Path) -> dict[str, Any] | None:
    """The user_config a run folder's config.json recorded, or None when there is no readable one."""
    try:
        return json.loads((run_dir / "config.json").read_text())["user_config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def same_dataset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two user_configs train on one dataset with one label space (what a dataset folder stands for)."""
    return source_key(a["dataset"]) == source_key(b["dataset"]) and all(a.get(k) == b.get(k) for k in LABEL_SETTINGS)


def same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two user_configs start from one model."""
    return source_key(a["model_name_or_path"]) == source_key(b["model_name_or_path"])


def free_name(parent: Path, name: str, levels: int, settings: dict[str, Any], kind: str) -> str:
    """``name``, or ``name-<hash of the full path>`` when ``parent/name`` already holds runs of another dataset or
    model (kind ``dataset`` or ``model``), from an earlier matrix or batch_train.sh. Reruns find the same folder."""
    if kind == "dataset":
        same, identity = same_dataset, [source_key(settings["dataset"]), *(settings.get(k) for k in LABEL_SETTINGS)]
    else:
        same, identity = same_model, [source_key(settings["model_name_or_path"])]
    hashed = f"{name}-{short_hash(json.dumps(identity))}"

    def runs_in(folder: Path) -> list[dict[str, Any]]:
        """The recorded user_configs of the runs ``levels`` folders below ``folder``."""
        # Any depth: variant and grid-point folders sit between the model folder and the seed folders.
        found = (recorded_settings(p.parent) for p in folder.rglob("config.json") if p.parent.name.startswith("seed"))
        return [r for r in found if r and "dataset" in r and "model_name_or_path" in r]

    if any(same(r, settings) for r in runs_in(parent / hashed)):
        return hashed
    return name if all(same(r, settings) for r in runs_in(parent / name)) else hashed


def plan(cfg: dict[str, Any], extra: list[str]) -> list[Run]:
    """Every run of the matrix: its folder, its train.py arguments and the settings they mean."""
    datasets = [parse_entry(d, "datasets") for d in cfg.get("datasets") or []]
    models = [parse_entry(m, "models") for m in cfg.get("models") or []]
    seeds = cfg.get("seeds") or [42]
    variants, grid = parse_variants(cfg.get("variants")), check_grid(cfg.get("grid") or {}, "the matrix")
    if not datasets or not models:
        raise UsageError("the matrix needs at least one dataset and one model (--datasets/--models or the config).")
    root = Path(cfg.get("output_dir") or "outputs/matrix")
    dataset_names, model_names = entry_names(datasets, "datasets"), entry_names(models, "models")
    runs = []
    for dataset, dataset_name in zip(datasets, dataset_names, strict=True):
        for model, model_name in zip(models, model_names, strict=True):
            base = {**(cfg.get("train_args") or {}), **dataset.args, **model.args}
            base |= {"dataset": dataset.path, "model_name_or_path": model.path}
            points = [(v, p) for v in variants for p in grid_points(grid | model.grid)]
            for ((variant, variant_flags), point), seed in itertools.product(points, seeds):
                args = base | variant_flags | point
                settings = planned_settings([*flags(args | {"seed": seed}), *extra])
                # A train.py flag among the extra ones (or an abbreviation such as --model) would silently win over
                # the matrix's own value and put another experiment in this folder.
                own = {"dataset": dataset.path, "model_name_or_path": model.path, "seed": seed}
                if overridden := [k for k, v in own.items() if str(settings[k]) != str(v)]:
                    raise UsageError(
                        f"the train.py flags given to the matrix set {', '.join(overridden)}, which the matrix sets "
                        "for each run; use --datasets, --models and --seeds (or the config's lists) instead."
                    )
                # Derived names also avoid folders that runs of another dataset/model already hold; given ones don't.
                data_dir = dataset_name if dataset.name else free_name(root, dataset_name, 2, settings, "dataset")
                model_dir = model_name if model.name else free_name(root / data_dir, model_name, 1, settings, "model")
                folder = point_folder(variant, point)
                run_dir = root / data_dir / model_dir / (folder or "") / f"seed{seed}"
                run_args = args | {"seed": seed, "output_dir": str(run_dir), "runs_root": str(root)}
                entry = {"variant": variant, "grid": point} if folder else None
                runs.append(Run(run_dir, flags(run_args) + extra, settings, entry))
    return runs


def differences(recorded: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """Settings (not bookkeeping) where a recorded user_config differs from the planned one, one phrase each."""
    diffs = []
    # Keys only one side knows (a field added to train.py since that run) cannot be compared and are left out.
    for key in sorted((recorded.keys() & planned.keys()) - BOOKKEEPING_SETTINGS):
        before, after = recorded[key], planned[key]
        if key in ("dataset", "model_name_or_path"):
            before, after = source_key(before), source_key(after)
        if before != after:
            diffs.append(f"{key} {json.dumps(before)} there, {json.dumps(after)} planned")
    return diffs


def check_existing_runs(runs: list[Run]) -> None:
    """Refuse, before anything runs, a plan that would skip or resume a run trained with other settings."""
    clashes = []
    for run in runs:
        recorded = recorded_settings(run.run_dir)
        if recorded is not None and (diffs := differences(recorded, run.settings)):
            clashes.append(f"{run.run_dir} ({'; '.join(diffs)})")
    if clashes:
        more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
        raise UsageError(
            f"{len(clashes)} planned run(s) would reuse a folder trained with other settings: {clashes[0]}{more}. "
            "A run's identity is all of its settings: use another --output_dir, give the entry its own 'name:', "
            "or delete the folder to retrain it."
        )


def resume_flags(run_dir: Path) -> list[str]:
    """How to restart an unfinished run: resume from its checkpoints, or start over in its folder."""
    if not run_dir.exists():
        return []
    if checkpoint_dirs(run_dir):
        return ["--resume_from_checkpoint", "latest"]
    return ["--overwrite_output_dir"]


def main(argv: list[str] | None = None) -> int:
    """Run the matrix; returns the number of failed runs."""
    # No abbreviations: --seed or --dataset meant for train.py must not be taken for --seeds or --datasets.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--config", help="YAML/JSON with datasets, models, seeds, train_args, output_dir.")
    parser.add_argument("--datasets", nargs="+", help="Datasets (train.py --dataset values).")
    parser.add_argument("--models", nargs="+", help="Models (train.py --model_name_or_path values).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Seeds (default 42).")
    parser.add_argument("--output_dir", help="Root of the run directories (default outputs/matrix).")
    parser.add_argument("--launcher", default=None, help='Prefix command, e.g. "accelerate launch --num_processes 2".')
    parser.add_argument("--dry_run", action="store_true", help="Print the commands without running them.")
    args, extra = parser.parse_known_args(argv)
    cfg = load_config_file(args.config) if args.config else {}
    for key in ("datasets", "models", "seeds", "output_dir"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    launcher = shlex.split(args.launcher) if args.launcher else [sys.executable]
    runs = plan(cfg, extra)
    check_existing_runs(runs)
    failed, skipped, done = [], 0, 0
    for i, run in enumerate(runs, 1):
        run_dir, run_args = run.run_dir, run.argv
        if (run_dir / "results.json").is_file():
            skipped += 1
            print(f"[{i}/{len(runs)}] skip {run_dir} (results.json exists)", flush=True)
            continue
        command = [*launcher, str(REPO / "train.py"), *run_args, *resume_flags(run_dir)]
        if run.entry is not None and not args.dry_run:  # the variant and grid point, for report.py and compare.py
            atomic_write_json(run_dir / "matrix.json", run.entry)
        print(f"[{i}/{len(runs)}] {shlex.join(command)}", flush=True)
        if args.dry_run:
            continue
        start = time.perf_counter()
        proc = subprocess.run(command)
        if proc.returncode == 0:
            done += 1
            results = json.loads((run_dir / "results.json").read_text())
            test = results.get("test") or {}
            print(
                f"[{i}/{len(runs)}] done in {time.perf_counter() - start:.0f}s: validation macro_f1 "
                f"{results['validation']['macro_f1']:.4f}, test macro_f1 {test.get('macro_f1', float('nan')):.4f}",
                flush=True,
            )
        else:
            failed.append((run_dir, proc.returncode))
            print(f"[{i}/{len(runs)}] FAILED (exit {proc.returncode}): {run_dir}", flush=True)
    print(f"matrix: {done} trained, {skipped} skipped, {len(failed)} failed of {len(runs)} runs")
    for run_dir, code in failed:
        print(f"  failed (exit {code}): {run_dir}  (see {run_dir / 'train.log'})")
    if not args.dry_run:
        print(f"table: python {REPO / 'scripts' / 'report.py'} {cfg.get('output_dir') or 'outputs/matrix'}")
    return len(failed)


if __name__ == "__main__":
    try:
        sys.exit(1 if main() else 0)
    except (UsageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
