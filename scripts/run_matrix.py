"""Train every dataset x model x seed combination, one run directory each, resumable; then run scripts/report.py.

    python scripts/run_matrix.py --datasets ../shared/data/emotion ../shared/data/sst2 \\
        --models sentence-transformers/all-MiniLM-L6-v2 --seeds 1 2 3 --output_dir outputs/matrix \\
        --num_train_epochs 2 --max_seq_length 64          # any other flag goes to train.py
    python scripts/run_matrix.py --config matrix.yaml     # datasets/models may carry their own train.py flags
    python scripts/run_matrix.py --config matrix.yaml --launcher "accelerate launch --num_processes 2"
    python scripts/run_matrix.py --config matrix.yaml --score_inputs ood_test.csv   # each run's best model scores it
    python scripts/run_matrix.py --config matrix.yaml --score_inputs sst2=reviews.csv emotion=tweets.csv  # per dataset

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
                                                                  # or a dataset entry may carry its own grid: too)
    score_inputs: [emotion=tweets.csv]                            # optional: as --score_inputs (which replaces it)

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
changes what is learned differs (say ``train_args`` were edited, or the launcher sets another mixed precision or
process count than the run's ``config.json`` records), the matrix refuses with exit code 2 rather than
report the old results as the new settings' or resume them with other settings; use another ``--output_dir``, give
the entry its own ``name:``, or delete the folder. A failed run does not stop the others; the failures are listed at
the end and the exit code is 1. SIGINT or SIGTERM sent to the matrix (Ctrl-C, ``kill <pid>``) starts no further run
and passes SIGTERM to the running ones, which stop at a checkpoint; the matrix exits 130 (143) and the same command
resumes them.

Executors: ``--executor sequential`` (the default: one run after another) or ``--executor local --max_parallel N``
(N runs at once on this machine, each on its own GPU(s) via ``CUDA_VISIBLE_DEVICES`` (``--gpus_per_run``), or on a
CPU-only machine on its share of the cores via ``OMP_NUM_THREADS``). ``--runs_per_gpu K`` puts K runs of one GPU on
each GPU at once, for small models that leave a GPU mostly idle: the slots go GPU 0, GPU 1, ..., GPU 0, GPU 1, ...,
so a ``--max_parallel`` below their count spreads the runs over the GPUs first. Several runs at once, GPU or not,
each get their share of the cores through ``OMP_NUM_THREADS``. Either way a run is claimed before it trains
(an exclusive ``flock`` on ``<run>/.claim``, released by the kernel if the holder dies), so two invocations of one
plan never train the same run at once: the second skips what the first is training (and refuses it when the first
trains it with other settings). ``--status`` prints done / running / failed / interrupted / queued per run of the
plan without training anything.

``--executor slurm`` submits the unfinished runs as one Slurm job array through submitit (``--slurm_partition``,
``--slurm_time``, ``--gpus_per_run``, ``--slurm_array_parallelism``; any other ``--slurm_<name> VALUE`` goes to
submitit as ``slurm_<name>``). Each array task claims its run and trains it through the launcher; before the time
limit or on preemption Slurm signals the task, which stops the trainer at a checkpoint and requeues itself, and the
requeued task resumes exactly. The jobs and their log files are recorded in ``<output_dir>/jobs.json``, which
``--status`` reads (no Slurm command needed); ``--wait`` follows the runs of the plan until none is queued or running
(an earlier submission's jobs included). ``--slurm_cluster local``
(or ``debug``) runs the same path on this machine through submitit's local (or in-process debug) executor.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import fcntl
import io
import itertools
import json
import os
import pickle
import queue
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import TrainConfig, build_parser, check_registry_names, load_config_file  # noqa: E402
from utils import (  # noqa: E402
    BOOKKEEPING_SETTINGS,
    EVALUATE_SPLIT_FILES,
    LABEL_SETTINGS,
    ConfigError,
    HelpFormatter,
    UsageError,
    atomic_write_json,
    checkpoint_dirs,
    counted,
    cpu_cores,
    flock_within,
    label_suffix,
    missing_local_path,
    not_a_hub_id,
    resolve_model_path,
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
    dataset_name: str = ""  # the plan's name of its dataset (its name:, else its short name): --score_inputs DATASET=
    named: bool = False  # the dataset's name is the entry's name: (matrix.json records it for report.py)
    model_name: str | None = None  # the plan's name: of its model, when it gives one (matrix.json records it too)
    inputs: list[str] = field(default_factory=list)  # the --score_inputs files of its dataset


MATRIX_KEYS = ("output_dir", "datasets", "models", "seeds", "train_args", "variants", "grid", "score_inputs")
# Set by the matrix for each run: the same key among a config's train.py flags would be silently replaced.
MATRIX_OWNED = {"dataset", "model_name_or_path", "seed", "output_dir", "runs_root"}


def close_to(name: str, choices: Any) -> str:
    """`` (did you mean x?)`` for a near miss among ``choices``, else nothing."""
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def check_flag_names(args: dict[str, Any], where: str) -> None:
    """train.py flags in the config: exact TrainConfig field names, none of those the matrix sets for each run."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in args:
        if key in MATRIX_OWNED:
            raise UsageError(
                f"{where} sets {key}, which the matrix sets for each run; use datasets, models, seeds or output_dir."
            )
        if key not in known:
            raise UsageError(f"{where}: {key!r} is not a train.py flag{close_to(key, known)}.")


def check_matrix(cfg: dict[str, Any]) -> None:
    """The config's shape: known keys, lists where lists belong, seeds distinct integers."""
    if unknown := sorted(set(cfg) - set(MATRIX_KEYS)):
        raise UsageError(
            f"the matrix config has the unknown key {unknown[0]!r}{close_to(unknown[0], MATRIX_KEYS)}; "
            f"its keys are {', '.join(MATRIX_KEYS)}."
        )
    for key in ("datasets", "models"):
        if cfg.get(key) is not None and not isinstance(cfg[key], list):
            raise UsageError(f"{key} must be a list (of paths, or of mappings with a 'path'), got {cfg[key]!r}.")
    seeds = cfg.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(type(s) is int for s in seeds):
            raise UsageError(f"seeds must be a non-empty list of integers, got {seeds!r}.")
        if twice := sorted({s for s in seeds if seeds.count(s) > 1}):
            raise UsageError(f"seeds lists {', '.join(map(str, twice))} more than once; each seed is one run.")
    if cfg.get("output_dir") is not None and not isinstance(cfg["output_dir"], str):
        raise UsageError(f"output_dir must be a path, got {cfg['output_dir']!r}.")
    inputs = cfg.get("score_inputs")
    if inputs is not None and not (isinstance(inputs, list) and all(isinstance(i, str) for i in inputs)):
        raise UsageError(f"score_inputs must be a list of FILE or DATASET=FILE entries, got {inputs!r}.")
    train_args = cfg.get("train_args")
    if train_args is not None and not isinstance(train_args, dict):
        raise UsageError(f"train_args must map train.py flags to values, got {train_args!r}.")
    check_flag_names(train_args or {}, "train_args")


def parse_entry(item: str | dict[str, Any], kind: str) -> Entry:
    """A plain string, or a mapping with ``path`` (and optional ``name``) plus per-entry train.py flags."""
    if not isinstance(item, str | dict) or (isinstance(item, dict) and "path" not in item):
        raise UsageError(f"each of {kind} must be a string or a mapping with a 'path' key, got {item!r}.")
    path = item if isinstance(item, str) else item["path"]
    if not isinstance(path, str) or not path.strip():
        # str(None) would become a dataset called 'None' that only the run's start refuses.
        raise UsageError(f"the {kind} entry {item!r} needs a 'path' naming a folder, file or hub id.")
    if isinstance(item, str):
        return Entry(path=item)
    args = {k: v for k, v in item.items() if k not in ("path", "name", "grid")}
    check_flag_names(args, f"the {kind} entry {item['path']}")
    name = item.get("name")
    if name is not None and (
        not isinstance(name, str)
        or "/" in name
        or "\\" in name
        or name.strip() in ("", ".", "..")
        or name != name.strip()
    ):
        # The name is one folder under the output dir: a path there would put runs outside the campaign, a blank one
        # names nothing the table can show, and 'bert ' would stand beside 'bert' as another model looking alike.
        raise UsageError(
            f"name {name!r} of the {kind} entry {item['path']} must be a plain folder name (not empty, no '/', not "
            "'.' or '..', no spaces at its ends)."
        )
    grid = check_grid(item.get("grid") or {}, f"{kind} entry {item['path']}")
    return Entry(path=str(item["path"]), name=item.get("name") or None, args=args, grid=grid)


def check_grid(grid: Any, where: str) -> dict[str, list[Any]]:
    """A grid is a mapping of train.py flags to non-empty lists of values."""
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise UsageError(f"grid of {where} must map train.py flags to non-empty lists, got {grid!r}.")
    check_flag_names(grid, f"the grid of {where}")
    return grid


def parse_variants(variants: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """``variants:`` as (name, train.py flags) pairs; no variants is one unnamed variant with no flags."""
    if not variants:
        return [(None, {})]
    if isinstance(variants, list):  # [{name: ..., flag: value}, ...]
        if not all(isinstance(v, dict) and v.get("name") for v in variants):
            raise UsageError("each of variants must be a mapping with a 'name' and train.py flags.")
        names = [str(v["name"]) for v in variants]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise UsageError(f"variants lists the name {twice[0]!r} more than once; give each variant its own name.")
        variants = {v["name"]: {k: x for k, x in v.items() if k != "name"} for v in variants}
    if not isinstance(variants, dict) or not all(isinstance(f, dict) for f in variants.values()):
        raise UsageError(f"variants must map names to train.py flags, got {variants!r}.")
    for name, variant_flags in variants.items():
        check_flag_names(variant_flags, f"the variant {name!r}")
    return [(str(name), flags) for name, flags in variants.items()]


def entries_grid(grid: dict[str, list[Any]], dataset: Entry, model: Entry) -> dict[str, list[Any]]:
    """The grid of one dataset x model: the matrix's, with a dataset entry's and a model entry's own grids replacing
    it for the flags they name. A flag that an entry sets and the grid too, or that both entries grid over, is
    refused: one of the two values would be dropped from every run without a word."""
    if both := sorted(dataset.grid.keys() & model.grid.keys()):
        raise UsageError(
            f"the datasets entry {dataset.path} and the models entry {model.path} both have a grid over "
            f"{', '.join(both)}: give the values in one of them."
        )
    grids = [("the matrix's grid", grid), (f"the datasets entry {dataset.path}'s own grid", dataset.grid)]
    grids += [(f"the models entry {model.path}'s own grid", model.grid)]
    for kind, entry in (("datasets", dataset), ("models", model)):
        # The last grid over a flag is the one its runs take.
        for name, flags in reversed(grids):
            if both := sorted(entry.args.keys() & flags.keys()):
                fix = "set it in one place"
                if flags is grid:
                    fix = f"for other values on this entry give it its own grid (grid: {{{both[0]}: [...]}})"
                raise UsageError(
                    f"the {kind} entry {entry.path} sets {', '.join(both)}, which {name} sets too: the grid's values "
                    f"would replace it in every run; {fix}."
                )
    return grid | dataset.grid | model.grid


def check_set_once(dataset: Entry, model: Entry, variant: str | None, variant_flags: dict[str, Any]) -> None:
    """Refuse a flag given two values for one run by the dataset entry, the model entry and the variant: the later
    one would replace the other in every run without a word."""
    sources = [(f"the datasets entry {dataset.path}", dataset.args), (f"the models entry {model.path}", model.args)]
    sources += [(f"the variant {variant!r}", variant_flags)] if variant else []
    for i, (first, first_args) in enumerate(sources):
        for second, second_args in sources[i + 1 :]:
            if clash := sorted(
                k for k in first_args.keys() & second_args.keys() if differ(first_args[k], second_args[k])
            ):
                flag = clash[0]
                raise UsageError(
                    f"{first} and {second} both set {', '.join(clash)} ({first_args[flag]!r} and "
                    f"{second_args[flag]!r}): the runs would take the second without a word; set it in one place."
                )


def differ(a: Any, b: Any) -> bool:
    """Whether two config values of one flag differ as train.py reads them: YAML reads 5e-5 as a string and 5.0e-5 as
    a number, one learning rate."""
    if a == b:
        return False
    if any(isinstance(v, bool) or not isinstance(v, str | int | float) for v in (a, b)):
        return True
    try:
        return float(a) != float(b)
    except ValueError:  # a text that is no number, unequal to the other value
        return True


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid's values ([{}] for no grid)."""
    keys = sorted(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def point_folder(variant: str | None, point: dict[str, Any]) -> str | None:
    """The folder of a variant and grid point (``mlp-head,learning_rate=2e-05``; values as train.py parses them, so
    that ``2e-5`` and ``2.0e-5`` name one folder), or None for neither."""
    parts = ([variant] if variant else []) + [f"{k}={v}" for k, v in sorted(point.items())]
    return ",".join(parts).replace("/", "_").replace(" ", "") if parts else None


def older_folder(parent: Path, spelled: str | None, folder: str | None) -> str | None:
    """``folder``, or ``spelled`` (the grid point's folder named after the config's text, as earlier versions did)
    when runs already sit there and not in ``folder``: reused, and compared with the plan like any run folder."""
    if spelled == folder or not (parent / spelled).is_dir():
        return folder
    if not (parent / folder).is_dir():
        return spelled
    print(
        f"warning: {parent / spelled} and {parent / folder} hold runs of one grid point (the first named before grid "
        f"folders were named after parsed values); the matrix uses {parent / folder}, report.py counts a seed once.",
        file=sys.stderr,
    )
    return folder


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


def json_file(path: Path) -> dict[str, Any]:
    """A JSON object file's content; {} when it is missing, unreadable or no object."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def model_length_limit(model: str, length: int) -> int | None:
    """The longest input train.py lets ``model`` take, when ``length`` tokens may be more and the model is a local
    folder with a config.json; None when they surely fit or the folder cannot be read here (train.py checks it)."""
    folder = Path(resolve_model_path(model))
    config = json_file(folder / "config.json")
    if not config:
        return None
    # train.py's limit is the tokenizer's and the positions' (less those RoBERTa-like models number from their
    # padding index on), the lower one. Read from the files, that bound never exceeds it; only a length beyond it
    # needs the architecture (torch, seconds) to tell the positions' offset.
    positions, pad = config.get("max_position_embeddings"), config.get("pad_token_id")
    offset = pad + 1 if isinstance(pad, int) and pad >= 0 else 0
    limits = [
        json_file(folder / "tokenizer_config.json").get("model_max_length"),
        positions - offset if isinstance(positions, int) else None,
    ]
    limits = [int(n) for n in limits if isinstance(n, int | float) and 0 < n < 1_000_000]
    if length <= (min(limits) if limits else 512):
        return None
    try:
        from transformers import AutoConfig, AutoTokenizer

        from model import meta_backbone, position_offset
        from train import max_model_length

        backbone_config = AutoConfig.from_pretrained(str(folder))
        offset = position_offset(meta_backbone(backbone_config))
        return max_model_length(AutoTokenizer.from_pretrained(str(folder)), backbone_config, offset)
    except Exception:  # no torch here, or a model train.py refuses for another reason at the run's start
        return None


def check_model_length(cfg: TrainConfig) -> None:
    """Refuse a --max_seq_length beyond a local model's limit, with the line train.py gives."""
    limit = model_length_limit(cfg.model_name_or_path, cfg.max_seq_length)
    if limit is not None and cfg.max_seq_length > limit:
        raise ConfigError(
            f"--max_seq_length {cfg.max_seq_length} exceeds the model's limit of {limit}; use at most {limit}."
        )


def planned_settings(argv: list[str], check: str = "error", where: str = "a run") -> dict[str, Any]:
    """The user_config train.py will record for ``argv``; an unknown flag, a bad value type or a combination train.py
    refuses (TrainConfig.validate) is an error up front, or with ``check`` "warn" a warning when only a file named by
    a flag is missing, and with "ignore" (--status) only the flags are parsed."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):  # argparse prints usage and exits; keep only its last line
            values = vars(build_parser(TrainConfig, "").parse_args(argv))
    except SystemExit:
        message = (stderr.getvalue().strip().splitlines() or ["invalid flags"])[-1].split("error: ", 1)[-1]
        raise UsageError(f"train.py flags of the matrix: {message}; see python train.py --help.") from None
    values.pop("config", None)
    cfg = TrainConfig(**values)
    if check != "ignore":
        # Refused here, each failing run of the matrix would fail alone at its start, minutes or a Slurm queue later.
        try:
            cfg.validate()
            with contextlib.suppress(ImportError):  # a login node without torch: train.py checks each run at start
                check_registry_names(cfg, skip_defaults=True)
            check_model_length(cfg)
        except ConfigError as err:
            if check == "warn" and "no such file" in str(err):  # Slurm: the compute nodes may mount what we do not
                print(f"warning: {err}", file=sys.stderr)
            else:
                raise UsageError(f"train.py would refuse {where} of the matrix: {err}") from None
    return dataclasses.asdict(cfg)


def recorded_settings(run_dir: Path) -> dict[str, Any] | None:
    """The user_config a run folder's config.json recorded, or None when there is no readable one."""
    try:
        return json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["user_config"]
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


def plan(cfg: dict[str, Any], extra: list[str], paths: str = "error") -> list[Run]:
    """Every run of the matrix: its folder, its train.py arguments and the settings they mean. A dataset or model path
    missing here is an error, a warning, or (``paths`` "ignore", for --status) nothing."""
    check_matrix(cfg)
    datasets = [parse_entry(d, "datasets") for d in cfg.get("datasets") or []]
    models = [parse_entry(m, "models") for m in cfg.get("models") or []]
    seeds = cfg.get("seeds") or [42]
    variants, grid = parse_variants(cfg.get("variants")), check_grid(cfg.get("grid") or {}, "the matrix")
    if not datasets or not models:
        raise UsageError("the matrix needs at least one dataset and one model (--datasets/--models or the config).")
    for kind, entry in [("datasets", d) for d in datasets] + [("models", m) for m in models]:
        # Checked here rather than by each run: a wrong path would otherwise fail every run (or every Slurm job).
        path = entry.path
        if missing_local_path(path):
            message = f"{kind} entry {path}: no such file or folder (from {Path.cwd()}; {not_a_hub_id(path)})"
            if paths == "error":
                raise UsageError(message + ".")
            if paths == "warn":  # Slurm: the compute nodes may mount what this login node does not
                print(f"warning: {message} on this machine.", file=sys.stderr)
    root = Path(cfg.get("output_dir") or "outputs/matrix")
    dataset_names, model_names = entry_names(datasets, "datasets"), entry_names(models, "models")
    runs = []
    for dataset, dataset_name in zip(datasets, dataset_names, strict=True):
        for model, model_name in zip(models, model_names, strict=True):
            base = {**(cfg.get("train_args") or {}), **dataset.args, **model.args}
            base |= {"dataset": dataset.path, "model_name_or_path": model.path}
            own_grid = entries_grid(grid, dataset, model)
            for variant, variant_flags in variants:
                check_set_once(dataset, model, variant, variant_flags)
                # A grid over a flag the variant also sets would replace the variant's value in every folder of it.
                if both := sorted(variant_flags.keys() & own_grid.keys()):
                    raise UsageError(
                        f"the variant {variant!r} and the grid both set {', '.join(both)}: the grid's values would "
                        "replace the variant's in every run; set it in one place."
                    )
            points = [(v, p) for v in variants for p in grid_points(own_grid)]
            for ((variant, variant_flags), point), seed in itertools.product(points, seeds):
                args = base | variant_flags | point
                where = f"the runs of {dataset_name} x {model_name}" + (f", variant {variant}" if variant else "")
                where += "".join(f", {k} {v}" for k, v in point.items())
                settings = planned_settings([*flags(args | {"seed": seed}), *extra], paths, where)
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
                # The grid point with the types train.py gives it: YAML reads 2e-4 as a string and 2.0e-4 as a
                # number, one learning rate that must name one folder.
                parsed = {k: settings[k] for k in point}
                folder = older_folder(
                    root / data_dir / model_dir, point_folder(variant, point), point_folder(variant, parsed)
                )
                run_dir = root / data_dir / model_dir / (folder or "") / f"seed{seed}"
                run_args = args | {"seed": seed, "output_dir": str(run_dir), "runs_root": str(root)}
                entry = {"variant": variant, "grid": parsed} if folder else None
                named = dataset.name is not None
                runs.append(Run(run_dir, flags(run_args) + extra, settings, entry, dataset_name, named, model.name))
    check_distinct(runs)
    for run in runs:
        # A file where a folder of the run goes: its claim would fail in a worker thread, after the plan was accepted.
        folder = next(p for p in [run.run_dir, *run.run_dir.parents] if p.exists() or p == p.parent)
        if not folder.is_dir():
            raise UsageError(
                f"cannot make the run folder {run.run_dir}: {folder} is a file; move it or choose another --output_dir."
            )
    return runs


# The train.py flags that decide how a dataset is read and checked (data.load_splits): one check per distinct set.
DATA_FLAGS = (
    "dataset",
    "text_column",
    "text_pair_column",
    "label_column",
    "label_columns",
    "multi_label",
    "teacher_column",
    "empty_text",
    "max_train_samples",
    "max_eval_samples",
    "validation_split_ratio",
    "class_weights",
    "pos_weight",
)


def check_data(runs: list[Run], warn: bool = False) -> None:
    """Read each local dataset of the runs as train.py will, so a missing column or a label train.py refuses is one
    line before anything starts rather than the same failure in every run of it. Hub ids are left to the runs; with
    ``warn`` (Slurm: the compute nodes may see other files and caches than this login node) a refusal is a warning."""
    try:
        from data import load_splits
    except ImportError:  # a login node without torch: each run checks its data at start
        return
    checked = set()
    for run in runs:
        settings = run.settings
        key = json.dumps({k: settings.get(k) for k in DATA_FLAGS}, sort_keys=True, default=str)
        if key in checked or not Path(str(settings["dataset"])).expanduser().exists():
            continue
        checked.add(key)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                load_splits(TrainConfig(**settings))
        except UsageError as err:
            message = f"train.py would refuse the runs of {run.dataset_name} ({run.run_dir}): {err}"
            if not warn:
                raise UsageError(message) from None
            print(f"warning: {message}", file=sys.stderr)
        except Exception as err:  # a reader this machine lacks, say: each run reads its data at start
            print(
                f"warning: {run.dataset_name} could not be checked here ({type(err).__name__}: {err})", file=sys.stderr
            )


def check_distinct(runs: list[Run]) -> None:
    """Refuse two planned runs in one folder (one would be skipped as done) or with the same settings (one
    experiment under two labels)."""
    folders: dict[Path, Run] = {}
    settings: dict[str, Run] = {}
    for run in runs:
        if (other := folders.setdefault(run.run_dir, run)) is not run:
            raise UsageError(
                f"two planned runs share the folder {run.run_dir} ({describe_entry(other)} and {describe_entry(run)}: "
                "names that differ only in '/' or spaces, or an entry listed twice); rename or remove one."
            )
        key = json.dumps(run.settings, sort_keys=True, default=str)
        if (other := settings.setdefault(key, run)) is not run:
            raise UsageError(
                f"two planned runs have the same settings: {describe_entry(other)} in {other.run_dir} and "
                f"{describe_entry(run)} in {run.run_dir} (a variant that sets only defaults, or a value listed "
                "twice); remove one."
            )


def warn_if_pooling_resolves_alike(runs: list[Run]) -> None:
    """Warn about two planned runs that differ only in pooling where "auto" resolves to the other's choice: one
    experiment under two labels. Resolving reads the checkpoint (model.py, torch), so it runs only for such pairs."""
    by_rest: dict[str, list[Run]] = {}
    for run in runs:
        by_rest.setdefault(json.dumps(run.settings | {"pooling": None}, sort_keys=True, default=str), []).append(run)
    pairs = [
        (a, b)
        for group in by_rest.values()
        for a in group
        for b in group
        if a.settings["pooling"] == "auto" != b.settings["pooling"]
    ]
    if not pairs:
        return
    from model import resolve_pooling  # here: torch costs seconds that other plans should not pay

    for auto, other in pairs:
        model = other.settings["model_name_or_path"]
        try:
            resolved = resolve_pooling(resolve_model_path(model), "auto")[0]
        except Exception:  # a model this machine cannot read (a Slurm node's path, a hub id not cached): train.py says
            continue
        if resolved == other.settings["pooling"]:
            print(
                f"warning: {describe_entry(auto)} and {describe_entry(other)} train the same model: pooling auto "
                f"resolves to {resolved} for {model} ({auto.run_dir}, {other.run_dir}); remove one.",
                file=sys.stderr,
            )


def describe_entry(run: Run) -> str:
    """A run's variant and grid point as the config wrote them, or its dataset and model."""
    if run.entry:
        return json.dumps({"variant": run.entry["variant"], **run.entry["grid"]}, default=str)
    return f"{run.settings['dataset']}, {run.settings['model_name_or_path']}"


def differences(recorded: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """Settings (not bookkeeping) where a recorded user_config differs from the planned one, one phrase each."""
    diffs = []
    # Keys only one side knows (a field added to train.py since that run) cannot be compared and are left out; so
    # are settings no flag of the plan puts to use (an older train.py took --focal_gamma without --loss focal).
    unused = {name for names in TrainConfig(**planned).switched_off().values() for name in names}
    for key in sorted((recorded.keys() & planned.keys()) - BOOKKEEPING_SETTINGS - unused):
        before, after = recorded[key], planned[key]
        if key in ("dataset", "model_name_or_path"):
            before, after = source_key(before), source_key(after)
        if before != after:
            diffs.append(f"{key} {json.dumps(before)} there, {json.dumps(after)} planned")
    return diffs


def launch_settings(launcher: list[str]) -> dict[str, str]:
    """The mixed precision and process count ``launcher`` gives each run (what config.json's ``resolved`` records),
    as far as they can be told before it runs: a count that follows the GPUs a node has, say, is left out."""
    options = launcher_options(launcher)
    names = [Path(token).name for token in launcher]
    accelerate = "accelerate.commands.launch" in launcher or any(
        name == "accelerate" and launcher[i + 1 : i + 2] == ["launch"] for i, name in enumerate(names)
    )
    if accelerate:
        # Its flags, else its config file's values, else "no" precision (accelerate's own order).
        told = "mixed_precision" in options and "num_processes" in options
        config = {} if told else accelerate_config(options)
        out = {"mixed_precision": options.get("mixed_precision") or config.get("mixed_precision") or "no"}
        processes = options.get("num_processes") or config.get("num_processes")
        # --num_processes alone does not start several processes: without --multi_gpu (or a multi-process config)
        # accelerate runs one on a CPU (--cpu, or no GPU) and decides by the GPUs present otherwise. Only a count
        # it will surely start is compared.
        distributed = "multi_gpu" in options or str(config.get("distributed_type", "")).startswith("MULTI_")
        return out | ({"num_processes": str(processes)} if processes and distributed else {})
    # Unlaunched, Accelerator() reads the precision from the environment (the local executor passes it on).
    out = {"mixed_precision": os.environ.get("ACCELERATE_MIXED_PRECISION", "no")}
    if "torchrun" in names or "torch.distributed.run" in launcher:
        processes = options.get("nproc_per_node", "1")
        return out | ({"num_processes": processes} if processes.isdigit() else {})
    return out | ({"num_processes": "1"} if len(launcher) == 1 else {})  # plain python: one process


def launched_processes(launcher: list[str]) -> int | None:
    """How many processes ``launcher`` surely starts for each run (launch_settings), or None when it cannot be told."""
    count = launch_settings(launcher).get("num_processes", "")
    return int(count) if count.isdigit() else None


def launch_differences(run_dir: Path, launch: dict[str, str]) -> list[str]:
    """Where the launch a run folder's config.json recorded differs from the planned one, one phrase each."""
    try:
        resolved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["resolved"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        f"{key} {json.dumps(resolved[key])} there, {json.dumps(value) if key == 'mixed_precision' else value} planned "
        "by the launcher"
        for key, value in launch.items()
        if key in resolved and str(resolved[key]) != value
    ]


def check_existing_runs(runs: list[Run], launch: dict[str, str]) -> None:
    """Refuse, before anything runs, a plan that would skip or resume a run trained with other settings (its flags,
    or the launcher's precision and process count)."""
    clashes = []
    for run in runs:
        recorded = recorded_settings(run.run_dir)
        if recorded is not None and (
            diffs := differences(recorded, run.settings) + launch_differences(run.run_dir, launch)
        ):
            clashes.append(f"{run.run_dir} ({'; '.join(diffs)})")
    if clashes:
        more = f" and {len(clashes) - 1} more" if len(clashes) > 1 else ""
        raise UsageError(
            f"{counted(len(clashes), 'planned run')} would reuse a folder trained with other settings: {clashes[0]}{more}. "
            "A run's identity is all of its settings: use another --output_dir, give the entry its own 'name:', "
            "or delete the folder to retrain it."
        )


def resume_flags(run_dir: Path) -> list[str]:
    """How to restart an unfinished run: resume from its checkpoints, or start over in its folder."""
    if not (run_dir / "config.json").exists() and not checkpoint_dirs(run_dir):
        return []  # nothing of a run yet (the folder may hold only the matrix's claim and notes)
    if checkpoint_dirs(run_dir):
        return ["--resume_from_checkpoint", "latest"]
    return ["--overwrite_output_dir"]


CLAIM = ".claim"  # flock-ed by whoever trains the run; holds its host and pid for --status
FAILED = "failed.json"  # written when a run exits non-zero: exit code and the last lines of its log
OUTPUT = "output.log"  # everything the run printed (errors before train.log exists included)


CLAIM_PATIENCE_S = 3.0  # how long a claim to train waits out another holder before taking the run for theirs


@contextlib.contextmanager
def claim(run_dir: Path, settings: dict[str, Any] | None = None) -> Iterator[bool]:
    """Hold the run's exclusive claim while the block runs; yields False when another process holds it (a claim to
    train, with ``settings``, waits CLAIM_PATIENCE_S for it first). The claim records the holder and the settings it
    trains with; a probe (no ``settings``) records nothing."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / CLAIM, "a+") as handle:
        # A status probe (run_state: --status, --wait's polls, settings None) holds the lock for an instant: a claim
        # to train tries again for a while before taking the run for another process's, or a Slurm task starting
        # at that instant would skip its run and leave it untrained.
        # flock, not a create-if-absent file: the kernel drops it when the holder dies, so a crashed matrix leaves
        # nothing stuck (on NFS, Linux maps it to a POSIX lock the server also releases).
        if not flock_within(handle, CLAIM_PATIENCE_S if settings is not None else 0):
            yield False
            return
        if settings is None:  # a probe: the holder's record stays that of the last process to train the run
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
            return
        handle.seek(0)
        handle.truncate()
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "settings": settings}
        handle.write(json.dumps(holder, default=str))
        handle.flush()
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def settings_clash(run: Run, mine: bool) -> str | None:
    """Why a claimed (or held elsewhere) run must not be trained or skipped as planned: another invocation trains it,
    or has trained it since the plan was checked, with other settings. None when the settings agree."""
    if mine:
        other, how = recorded_settings(run.run_dir), "was trained meanwhile"
    else:
        try:
            other = json.loads((run.run_dir / CLAIM).read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError, AttributeError):
            other = None
        how = "is being trained by another process"
    diffs = differences(other, run.settings) if other else []
    return f"{how} with other settings ({'; '.join(diffs)})" if diffs else None


def run_state(run_dir: Path) -> str:
    """done, running (claimed by a live process), failed, interrupted (checkpoints, not running) or queued."""
    if (run_dir / "results.json").is_file():
        return "done"
    if (run_dir / CLAIM).is_file():
        with claim(run_dir) as mine:
            if not mine:
                return "running"
    if (run_dir / FAILED).is_file():
        return "failed"
    return "interrupted" if checkpoint_dirs(run_dir) else "queued"


def describe(run: Run, jobs: dict[str, dict[str, Any]]) -> tuple[str, str, list[str]]:
    """A run's state, a note on its submitted job (if any) and on the inputs it has no scores of, and the lines that
    explain a failure."""
    state = run_state(run.run_dir)
    record = jobs.get(str(run.run_dir.resolve()))
    note = f"(job {record['job_id']})" if record else ""
    if state == "done" and (missing := unscored(run.run_dir, run.inputs)):
        note = f"{note} (no scores of {', '.join(input_name(f) for f in missing)})".lstrip()
    if state == "failed":
        failure = read_json(run.run_dir / FAILED)
        return state, note, [f"exit {failure['exit_code']}; last lines of {failure['log']}:", *failure["tail"]]
    if record and state in ("queued", "interrupted"):
        ended = job_outcome(record)
        if ended is not None and ended[0] != "success":
            # The job ended without the run's own failure record: killed, out of requeues, or broken before it.
            return "failed", note, [f"job ended ({ended[0]}); last lines of {record['stderr']}:", *ended[1]]
        if ended is None and not Path(record["stdout"]).exists() and state == "queued":
            note = f"(job {record['job_id']}, not started)"
    return state, note, []


def print_status(runs: list[Run], root: Path) -> dict[str, int]:
    """One line per run of the plan with its state (the last log lines of a failed run), then the counts."""
    counts: dict[str, int] = {}
    jobs = job_records(root)
    for run in runs:
        state, note, lines = describe(run, jobs)
        counts[state] = counts.get(state, 0) + 1
        print(f"{state:<11} {run.run_dir} {note}".rstrip())
        print("".join(f"            {line}\n" for line in lines[:1]), end="")
        print("".join(f"              {line}\n" for line in lines[1:]), end="")
    print(
        "status: "
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        + f" of {counted(len(runs), 'run')}"
    )
    return counts


FOLLOW_INTERVAL_S = 5.0  # between two looks at the runs under --wait


def in_flight(runs: list[Run], root: Path) -> dict[Path, str]:
    """The runs of the plan that a job still has queued or running ("<job id> <state>", as squeue lists it), or that
    a process is training (its claim held: "<run folder> being trained")."""
    flying = in_slurm_queue(runs, root, quiet=True)
    training = (r.run_dir for r in runs if r.run_dir not in flying and run_state(r.run_dir) == "running")
    return flying | {run_dir: f"{run_dir} being trained" for run_dir in training}


def follow(runs: list[Run], root: Path, jobs: list[Any], interval: float | None = None) -> dict[str, int]:
    """Until every submitted job has ended and no run of the plan is queued or running in another (an earlier
    submission's): one line per run state change and a summary line after each change."""
    seen: dict[Path, str] = {}
    while True:
        # Squeue only once this submission's jobs have ended: until then there is no end to look for.
        finished = all(job.done() for job in jobs) and not in_flight(runs, root)
        records = job_records(root)
        changed = False
        for run in runs:
            state, note, lines = describe(run, records)
            if seen.get(run.run_dir) != state:
                seen[run.run_dir], changed = state, True
                print(f"{state:<11} {run.run_dir} {note}".rstrip() + (f": {lines[-1]}" if lines else ""), flush=True)
        counts: dict[str, int] = {}
        for state in seen.values():
            counts[state] = counts.get(state, 0) + 1
        if changed or finished:
            print(
                "status: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f" of {len(runs)}", flush=True
            )
        if finished:
            return counts
        time.sleep(FOLLOW_INTERVAL_S if interval is None else interval)


def visible_gpus() -> list[str]:
    """The GPUs this machine lets runs use: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip()]
    if shutil.which("nvidia-smi"):
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]
    return []


def core_share(processes: int) -> str:
    """OMP_NUM_THREADS for each of ``processes`` processes sharing this machine's physical cores (train.py's own
    count: a hyper-thread shares its core's vector units)."""
    return str(max(1, cpu_cores() // processes))


def device_slots(
    gpus_per_run: int,
    max_parallel: int | None,
    runs_per_gpu: int = 1,
    processes: int | None = None,
    runs: int | None = None,
) -> list[dict[str, str]]:
    """The environment of each parallel slot: its own GPU(s) (a group shared by ``runs_per_gpu`` slots), or on a
    CPU-only machine its share of the cores, split among every process of the runs at once (``processes`` per run,
    as the launcher starts them; None: one per GPU of the group). No more slots than the ``runs`` left to train: an
    idle slot would only shrink the others' share. A --max_parallel that cannot be met is said in one line."""
    gpus = visible_gpus()
    if not gpus:
        # Nothing to share or to group: the one knob of CPU-only parallelism is --max_parallel (a run of several
        # processes is the --launcher's to start).
        for flag, value in (("--runs_per_gpu", runs_per_gpu), ("--gpus_per_run", gpus_per_run)):
            if value > 1:
                raise UsageError(
                    f"{flag} {value}: no GPU is visible; on a CPU-only machine --max_parallel N runs N at once, each "
                    "on its share of the cores."
                )
        slots: list[dict[str, str]] = [{} for _ in range(max_parallel or 1)]
    else:
        if gpus_per_run > len(gpus):  # no group could be formed: nothing would run, and the matrix would say "0 failed"
            raise UsageError(
                f"--gpus_per_run {gpus_per_run}: only {counted(len(gpus), 'GPU')} "
                f"{'is' if len(gpus) == 1 else 'are'} visible ({','.join(gpus)})."
            )
        groups = [",".join(gpus[i : i + gpus_per_run]) for i in range(0, len(gpus) - gpus_per_run + 1, gpus_per_run)]
        # Round by round over the groups (0, 1, ..., 0, 1, ...): --max_parallel below the slot count keeps the first
        # slots, so runs spread over the GPUs before any GPU takes a second one.
        every = [{"CUDA_VISIBLE_DEVICES": group} for _ in range(runs_per_gpu) for group in groups]
        slots = every[:max_parallel]
        if max_parallel and max_parallel > len(every):
            where = f"the {counted(len(groups), 'GPU')} visible ({','.join(groups)})"
            if gpus_per_run > 1:
                where = f"the {counted(len(groups), 'group')} of {gpus_per_run} GPUs ({'; '.join(groups)})"
            more = "; --runs_per_gpu N puts N runs on each GPU" if gpus_per_run == 1 else ""
            print(
                f"note: --max_parallel {max_parallel}: {counted(len(every), 'run')} at once, {runs_per_gpu} on each of "
                f"{where}{more}.",
                file=sys.stderr,
            )
        processes = processes or gpus_per_run  # a run of several GPUs is one process per GPU
    if runs is not None and len(slots) > max(1, runs):
        if max_parallel and runs:
            print(
                f"note: --max_parallel {max_parallel}: {counted(runs, 'run')} at once, as the plan has "
                f"{counted(runs, 'run')} left to train.",
                file=sys.stderr,
            )
        slots = slots[: max(1, runs)]
    if len(slots) == 1:
        # A lone run sizes its threads itself (train.py: the physical cores of its processes); an OMP_NUM_THREADS
        # from here would count hyper-threads and pass for the user's own setting.
        return slots
    # Threads split so that every process of the runs at once together never oversubscribes the cores (each would
    # otherwise take all of them): on a GPU the runs' host sides (Python launching kernels, collation) compete too.
    every_process = len(slots) * (processes or 1)
    if every_process > cpu_cores() and not gpus:
        print(
            f"warning: {counted(len(slots), 'run')} at once of {counted(processes or 1, 'process')} each are "
            f"{every_process} processes on {counted(cpu_cores(), 'physical core')}: they take turns on the cores even at 1 thread each; "
            f"--max_parallel {max(1, cpu_cores() // (processes or 1))} fits them.",
            file=sys.stderr,
        )
    return [slot | {"OMP_NUM_THREADS": core_share(every_process)} for slot in slots]


def log_tail(path: Path, lines: int = 15) -> list[str]:
    """The last lines of a log file (empty when there is none)."""
    return path.read_text(errors="replace").splitlines()[-lines:] if path.is_file() else []


class Stop:
    """SIGINT or SIGTERM sent to the matrix (Ctrl-C, ``kill <pid>``, a container or scheduler stopping it): no run
    starts after it, and each running one is sent SIGTERM, so that train.py stops it at a checkpoint (its own
    handling) instead of leaving it orphaned, to die at its next line of output without one. The same command run
    again resumes it."""

    def __init__(self) -> None:
        self.signal: int | None = None
        # Each process, with what it scores ("FILE with RUN") or None when it trains: a stopped scoring is said as one.
        self.procs: dict[subprocess.Popen, str | None] = {}
        self.lock = threading.RLock()  # re-entrant: the handler runs in the main thread, between any two bytecodes
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Stop:
        """Catch SIGINT and SIGTERM (signal handlers can only be set from the main thread)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        """Give the signals back to their previous handlers."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        with self.lock:
            first, self.signal = self.signal is None, self.signal or signum
            running = {p: scoring for p, scoring in self.procs.items() if p.poll() is None}
            # SIGTERM whatever came: it is what every launcher passes on to train.py (the README's table); a
            # Ctrl-C at a terminal has reached the runs already, and a second signal changes nothing for them.
            for proc in running:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        if first:
            training = sum(scoring is None for scoring in running.values())
            said = (
                [f"{counted(training, 'running run')} asked to stop at a checkpoint"] if training or not running else []
            )
            # A scoring has no checkpoint: its run is finished and kept, and the same command scores the file again.
            said += [f"the scoring of {s} stopped (the run is finished and kept)" for s in running.values() if s]
            print(
                f"{signal.Signals(signum).name} received: no further run or scoring starts; {'; '.join(said)}",
                flush=True,
            )

    def start(self, command: list[str], env: dict[str, str], scoring: str | None = None) -> subprocess.Popen | None:
        """Start a run's process (``scoring``: the "FILE with RUN" it scores), or None once a stop was asked for."""
        with self.lock:
            if self.signal is not None:
                return None
            proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.procs[proc] = scoring
            return proc


def run_logged(
    command: list[str], env: dict[str, str], log: Path, echo: bool, stop: Stop, scoring: str | None = None
) -> int | None:
    """Run ``command`` with its output appended to ``log`` (and shown on the console when ``echo``: with several
    runs at once their lines would interleave); returns the exit code, or None when ``stop`` kept it from starting.
    ``scoring`` names the file and run a scoring command scores."""
    with open(log, "a", encoding="utf-8") as handle:
        proc = stop.start(command, env, scoring)
        if proc is None:
            return None
        for line in proc.stdout:
            handle.write(line)
            if echo:
                sys.stdout.write(line)
        return proc.wait()


def free_port() -> int:
    """A TCP port free on this machine now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


class Ports:
    """The rendezvous ports this process has given to launches still running. The kernel offers any port free at the
    moment it is asked, and a launcher binds it only seconds later (after importing torch), so two runs started at
    once could be offered one port: a port held here is never given to a second launch."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self, launcher: list[str]) -> Iterator[tuple[list[str], int | None]]:
        """``launcher`` on a rendezvous port of its own (own_port) while the block runs, and that port (None when
        the launcher keeps its own or chooses one itself)."""
        with self.lock:
            own, port = own_port(launcher, self.held)
            if port is not None:
                self.held.add(port)
        try:
            yield own, port
        finally:
            with self.lock:
                self.held.discard(port)


PORTS = Ports()
PORT_TRIES = 3  # launches of one command, each on a new port, when another process bound the port first


def port_taken(log: Path, start: int, port: int) -> bool:
    """Whether what a launch appended to ``log`` (from byte ``start`` on) says that another process had bound its
    rendezvous port first: torch's store fails with EADDRINUSE before any process of the run starts."""
    with contextlib.suppress(OSError), open(log, "rb") as handle:
        handle.seek(start)
        text = handle.read().decode(errors="replace")
        return f"port: {port}," in text and "EADDRINUSE" in text
    return False


def launch_on_own_port(
    launcher: list[str],
    build: Callable[[list[str]], list[str]],
    launch: Callable[[list[str]], int | None],
    log: Path,
    say: Callable[[str], None],
) -> int | None:
    """``launch(build(launcher on a port of its own))``, its output appended to ``log``; launched again on a new port
    (up to PORT_TRIES times, each said with ``say``) when another process, which this one cannot coordinate with
    (another matrix, another Slurm task on the node), bound the port between its choice and the launcher's bind."""
    for tries in range(1, PORT_TRIES + 1):
        start = log.stat().st_size if log.is_file() else 0
        with PORTS.lease(launcher) as (own, port):
            code = launch(build(own))
        if not code or port is None or tries == PORT_TRIES or not port_taken(log, start, port):
            return code
        say(
            f"port {port} was taken by another process before the launch could bind it (nothing ran); launching "
            "again on another port"
        )
    return code


def launcher_options(launcher: list[str]) -> dict[str, str]:
    """The launcher's ``--flag value`` / ``--flag=value`` options by underscored name (both launchers take either
    spelling); a flag without a value maps to ""."""
    options = {}
    for i, token in enumerate(launcher):
        if token.startswith("--"):
            name, sep, value = token[2:].partition("=")
            following = launcher[i + 1] if i + 1 < len(launcher) else ""
            options[name.replace("-", "_")] = value if sep else ("" if following.startswith("-") else following)
    return options


def accelerate_config(options: dict[str, str]) -> dict[str, Any]:
    """The accelerate config file the launch reads (its --config_file, else the user's default one), or {}."""
    from accelerate.commands.config import default_config_file

    path = Path(options.get("config_file") or default_config_file)
    if not path.is_file():
        return {}
    with contextlib.suppress(Exception):  # accelerate itself reports an unreadable config
        config = (
            json.loads(path.read_text(encoding="utf-8"))
            if path.suffix == ".json"
            else yaml.safe_load(path.read_text(encoding="utf-8"))
        )
        return config if isinstance(config, dict) else {}
    return {}


def own_port(launcher: list[str], held: set[int] | frozenset[int] = frozenset()) -> tuple[list[str], int | None]:
    """``launcher`` made to rendezvous on a free port not in ``held`` when it is ``accelerate launch`` or ``torchrun``
    on one machine and chooses no port, and the port given (None when none was). ``accelerate launch`` defaults to
    29500 (accelerate 1.15 moves to a free port when 29500 is taken, but runs started at the same moment all see it
    free), so of two multi-process runs started side by side on one machine, or two Slurm tasks on one node, the
    second could fail to bind it. torchrun gets ``--standalone`` (its own rendezvous on a free port). A launcher that
    names a port or another machine, on its command line or in its accelerate config file, is left as it is (the
    config's, unless the command line says ``--num_machines 1``): several machines must agree on one port."""
    options = launcher_options(launcher)
    for i, token in enumerate(launcher):
        name = Path(token).name
        if (name == "accelerate" and launcher[i + 1 : i + 2] == ["launch"]) or token == "accelerate.commands.launch":
            config = {} if options.get("num_machines") == "1" else accelerate_config(options)
            machines = options.get("num_machines") or str(config.get("num_machines", 1))
            named = {"main_process_port", "main_process_ip", "machine_rank"} & set(options)
            if named or machines != "1" or config.get("main_process_port") is not None:
                return launcher, None
            port = free_port()
            for _ in range(100):  # bounded: a port offered again and again still gets the retry on EADDRINUSE
                if port not in held:
                    break
                port = free_port()
            at = i + 1 + (name == "accelerate")
            return [*launcher[:at], "--main_process_port", str(port), *launcher[at:]], port
        if name == "torchrun" or token in ("torch.distributed.run", "torch.distributed.launch"):
            chosen = {"master_port", "master_addr", "rdzv_endpoint", "rdzv_backend", "standalone"} & set(options)
            if chosen or options.get("nnodes", "1") not in ("1", "1:1"):
                return launcher, None
            # Its own rendezvous binds port 0 and holds what the kernel gives: no port to choose, none to collide.
            return [*launcher[: i + 1], "--standalone", *launcher[i + 1 :]], None
    return launcher, None


def train_command(run: Run, launcher: list[str]) -> list[str]:
    """The command that trains (or resumes, or restarts) ``run``."""
    return [*launcher, str(REPO / "train.py"), *run.argv, *resume_flags(run.run_dir)]


def begin(run: Run) -> None:
    """What a claimed run's folder gets before it trains: its variant/grid point, and no stale failure."""
    # The variant, the grid point and the names the plan gives its dataset and model (report.py and compare.py show
    # them, not the paths' names).
    given = ({"dataset": run.dataset_name} if run.named else {}) | ({"model": run.model_name} if run.model_name else {})
    entry = (run.entry or {"variant": None, "grid": {}}) | given if given else run.entry
    if entry is not None:
        atomic_write_json(run.run_dir / "matrix.json", entry)
    (run.run_dir / FAILED).unlink(missing_ok=True)


def record_failure(run_dir: Path, code: int) -> None:
    """failed.json: the exit code and the last lines of the run's output, for --status."""
    log = run_dir / OUTPUT
    atomic_write_json(run_dir / FAILED, {"exit_code": code, "log": str(log), "tail": log_tail(log)})


def input_name(path: str) -> str:
    """The name evaluate.py --input gives a file's scores (RUN/eval_<name>.json): its stem, with ``_input`` after a
    split's name (as evaluate.input_destination does, so a test.csv never replaces the run's own eval_test.json)."""
    stem = Path(path).stem
    return f"{stem}_input" if EVALUATE_SPLIT_FILES.fullmatch(f"predictions_{stem}.jsonl") else stem


def assign_score_inputs(items: list[str], runs: list[Run], where: str = "--score_inputs") -> None:
    """Give each run the --score_inputs files of its dataset: ``DATASET=FILE`` (DATASET as the plan names it), or a
    plain FILE for a plan of one dataset; a plain FILE in a plan of several (whose runs read other labels), or a
    DATASET the plan does not have, is refused in one line, which starts with ``where`` (the flag, or the config's
    key)."""
    names = list(dict.fromkeys(run.dataset_name for run in runs))
    given: dict[str, list[str]] = {name: [] for name in names}
    for item in items:
        # The longest of the plan's names that the item starts with (a plan's `name:` may hold "=" itself); "~" is
        # expanded in FILE as the shell expands it only at the start of a word.
        named = max((n for n in names if item.startswith(f"{n}=")), key=len, default=None)
        name, sep, file = (named, "=", item[len(named) + 1 :]) if named else item.partition("=")
        file = os.path.expanduser(file)
        if not sep or Path(os.path.expanduser(item)).is_file():  # a file whose name holds "=" is a plain FILE
            if len(names) > 1:
                raise UsageError(
                    f"{where} {item}: the plan has {len(names)} datasets ({', '.join(names)}), whose runs read other "
                    f"labels; say whose runs score it: {where.split(': ')[-1]} DATASET=FILE (e.g. {names[0]}={item})."
                )
            name, file = names[0], os.path.expanduser(item)
        elif name not in given:
            missing = "no such file, and " if len(names) == 1 else ""
            raise UsageError(
                f"{where} {item}: {missing}the plan has no dataset {name!r}; the plan's datasets are "
                f"{', '.join(names)}."
            )
        given[name].append(file)
    files = {name: check_score_inputs(files, where) for name, files in given.items()}
    for run in runs:
        run.inputs = files[run.dataset_name]


def check_score_inputs(files: list[str], where: str = "--score_inputs") -> list[str]:
    """One dataset's --score_inputs files as absolute paths (a symlink kept as given: its name names the scores),
    refused in one line when one is missing, unreadable, of a type evaluate.py does not read, given twice (the same
    file under two names included), or named like another (their scores would take one eval_<name>.json)."""
    from data import FORMATS  # here: torch costs seconds that a matrix without --score_inputs should not pay

    names: dict[str, str] = {}
    real: dict[str, str] = {}
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise UsageError(f"{where} {file}: no such file.")
        if path.suffix.lower() not in FORMATS:
            raise UsageError(f"{where} {file}: evaluate.py reads {', '.join(FORMATS)} files, not {path.suffix!r}.")
        try:
            with open(path, "rb") as handle:
                if not handle.read(1):
                    raise UsageError(f"{where} {file}: the file is empty.")
        except OSError as err:
            raise UsageError(f"{where} {file}: cannot be read ({err.strerror}).") from None
        if (same := real.setdefault(real_path(file), file)) != file or files.count(file) > 1:
            how = f"and {file} are one file ({real_path(file)})" if same != file else "is given twice"
            raise UsageError(f"{where} {same} {how}; give it once.")
        if (name := input_name(file)) in names:
            raise UsageError(f"{where} {names[name]} and {file} would both be scored as eval_{name}.json; rename one.")
        names[name] = file
    return [os.path.abspath(f) for f in files]


def real_path(file: str) -> str:
    """The file a path names, links followed: what evaluate.py records as the ``input`` it scored."""
    return str(Path(file).resolve())


def scored_from(run_dir: Path, file: str) -> str | None:
    """The input file (its real path) whose scores RUN/eval_<name>.json holds for ``file``'s name (None when there
    are none)."""
    try:
        record = json.loads((run_dir / f"eval_{input_name(file)}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(record.get("input")) if isinstance(record, dict) else None


def unscored(run_dir: Path, inputs: list[str]) -> list[str]:
    """The inputs a finished run has no scores of yet (a run finished before --score_inputs named them), or scores
    older than the file (edited or written again since: its scores describe other rows)."""
    return [
        file for file in inputs if scored_from(run_dir, file) != real_path(file) or scored_before_change(run_dir, file)
    ]


def scored_before_change(run_dir: Path, file: str) -> bool:
    """Whether the file changed after the run's scores of it were written."""
    try:
        return Path(file).stat().st_mtime_ns > (run_dir / f"eval_{input_name(file)}.json").stat().st_mtime_ns
    except OSError:
        return False


def check_scored_elsewhere(runs: list[Run], where: str = "--score_inputs") -> None:
    """Refuse, before any run starts, inputs whose name a run's scores of another file already take: evaluate.py
    would refuse to replace them, run after run. ``where`` names what gave the inputs (the flag, or the config's
    key)."""
    for run in runs:
        for file in run.inputs:
            if (other := scored_from(run.run_dir, file)) not in (None, real_path(file)):
                raise UsageError(
                    f"{run.run_dir / f'eval_{input_name(file)}.json'} holds the scores of {other}, another file named "
                    f"like {file} (from {where}); rename {file} (its name names the scores) or delete those files."
                )


def scoring_failure(run_dir: Path, file: str, code: int) -> str | None:
    """Why scoring ``file`` with the run failed, or None: a non-zero exit, or an exit 0 that wrote no scores of it
    (evaluate.py only predicts a file without a label the run reads: its scores would be asked for on every rerun)."""
    if code != 0:
        return f"exit {code}"
    if scored_from(run_dir, file) != real_path(file):
        return f"no scores written: no row of {Path(file).name} has a label in the run's label column(s)"
    return None


def score_command(run: Run, launcher: list[str], file: str) -> list[str]:
    """The command that scores ``file`` with the run's best model, launched as the run was."""
    return [*launcher, str(REPO / "evaluate.py"), "--run_dir", str(run.run_dir), "--input", file]


def execute(runs: list[Run], launcher: list[str], slots: list[dict[str, str]], dry_run: bool) -> dict[str, list]:
    """Train the unfinished runs in plan order, one worker per slot, each run claimed first; returns what happened
    to each run."""
    outcome: dict[str, list] = {"trained": [], "skipped": [], "elsewhere": [], "failed": [], "clashed": []}
    outcome["stopped"] = []  # by a signal to the matrix (Stop)
    planned: list[Path] = []  # what a dry run would train: not an outcome either
    to_score: list[Path] = []  # finished runs a dry run would score --score_inputs with
    # Not a run's outcome: a run is trained or not.
    scoring: dict[str, list] = {"scored": [], "score_failed": [], "score_stopped": []}
    stop = Stop()
    todo: queue.Queue[tuple[int, Run]] = queue.Queue()
    for item in enumerate(runs, 1):
        todo.put(item)
    lock, durations = threading.Lock(), []

    def say(text: str) -> None:
        """One progress line (workers print whole lines)."""
        with lock:
            print(text, flush=True)

    def summary() -> str:
        """Counts so far and an ETA from the finished runs' mean duration."""
        left = len(runs) - sum(len(v) for v in outcome.values())
        eta = f", ETA {statistics.fmean(durations) * left / len(slots) / 60:.0f} min" if durations and left else ""
        return f"{len(outcome['trained'])} trained, {len(outcome['failed'])} failed, {left} left{eta}"

    def launch(
        tag: str,
        run: Run,
        slot: dict[str, str],
        what: str,
        build: Callable[[list[str]], list[str]],
        scoring: str | None = None,
    ) -> int | None:
        """Run the command ``build`` makes of the launcher (on a rendezvous port of its own: runs of this matrix or
        another may start at the same moment) in the slot's environment, its start said as ``what``; returns its
        exit code, or None when the matrix is stopping."""

        def start(command: list[str]) -> int | None:
            """One launch, said first."""
            say(f"{tag} {what} {shlex.join(command)}")
            return run_logged(command, {**os.environ, **slot}, run.run_dir / OUTPUT, len(slots) == 1, stop, scoring)

        return launch_on_own_port(launcher, build, start, run.run_dir / OUTPUT, lambda line: say(f"{tag} {line}"))

    def score(tag: str, run: Run, slot: dict[str, str]) -> None:
        """Score each input the finished run lacks scores of; a failure is recorded, the run stays as it is."""
        for file in unscored(run.run_dir, run.inputs):
            what = f"{file} with {run.run_dir}"
            code = launch(tag, run, slot, "score", lambda own, file=file: score_command(run, own, file), what)
            if code is None:
                return  # the matrix is stopping: the same command scores it
            if code != 0 and stop.signal is not None:
                scoring["score_stopped"].append(what)
                return
            if why := scoring_failure(run.run_dir, file, code):
                scoring["score_failed"].append((run.run_dir, file, why))
                say(f"{tag} scoring FAILED ({why}): {file} with {run.run_dir}")
            else:
                scoring["scored"].append((run.run_dir, file))

    def train(tag: str, run: Run, slot: dict[str, str]) -> None:
        """Train one claimed run in the slot's environment and record how it ended."""
        begin(run)
        start = time.perf_counter()
        environment = " ".join(f"{k}={v}" for k, v in slot.items())
        code = launch(tag, run, slot, f"start {environment}".strip(), lambda own: train_command(run, own))
        if code is None:
            say(f"{tag} not started: {run.run_dir} (the matrix is stopping)")
        elif code != 0 and stop.signal is not None:
            # Stopped by the signal (at a checkpoint, once train.py's loop runs): not a failure; it resumes.
            outcome["stopped"].append(run.run_dir)
            say(f"{tag} stopped (exit {code}): {run.run_dir}; the same command resumes it")
        elif code == 0:
            durations.append(time.perf_counter() - start)
            outcome["trained"].append(run.run_dir)
            results = json.loads((run.run_dir / "results.json").read_text(encoding="utf-8"))
            metric = results["metric"]
            test = (results.get("test") or {}).get(metric)
            tested = "no test split" if test is None else f"test {test:.4f}"
            say(
                f"{tag} done in {durations[-1]:.0f}s: validation {metric} {results['validation'][metric]:.4f}, "
                f"{tested} ({summary()})"
            )
            score(tag, run, slot)
        else:
            record_failure(run.run_dir, code)
            outcome["failed"].append((run.run_dir, code))
            say(f"{tag} FAILED (exit {code}): {run.run_dir} ({summary()})")

    def worker(slot: dict[str, str]) -> None:
        """Take the next run of the plan until none is left; a failed run never stops the others."""
        while stop.signal is None:
            try:
                index, run = todo.get_nowait()
            except queue.Empty:
                return
            tag = f"[{index}/{len(runs)}]"
            done = (run.run_dir / "results.json").is_file()
            if dry_run:
                files = unscored(run.run_dir, run.inputs) if done else run.inputs
                if not done:
                    say(f"{tag} {shlex.join(train_command(run, launcher))}")
                    planned.append(run.run_dir)
                elif files:  # finished, but the run below would score these: not a skip
                    say(
                        f"{tag} score {run.run_dir} (results.json exists; no scores of {', '.join(map(input_name, files))})"
                    )
                    to_score.append(run.run_dir)
                else:
                    say(f"{tag} skip {run.run_dir}")
                    outcome["skipped"].append(run.run_dir)
                for file in files:
                    say(f"{tag} {shlex.join(score_command(run, launcher, file))}")
                continue
            if done and not unscored(run.run_dir, run.inputs):
                outcome["skipped"].append(run.run_dir)
                say(f"{tag} skip {run.run_dir} (results.json exists)")
                continue
            with contextlib.ExitStack() as held:
                try:
                    mine = held.enter_context(claim(run.run_dir, run.settings))
                except OSError as err:
                    # A folder the matrix cannot write (permission, a full disk): this run fails, the others go on;
                    # the exception would end the worker's thread and leave the run counted nowhere.
                    why = f"{type(err).__name__}: {err}"
                    outcome["failed"].append((run.run_dir, why))
                    say(f"{tag} FAILED ({why}): {run.run_dir} ({summary()})")
                    continue
                if clash := settings_clash(run, mine):
                    outcome["clashed"].append((run.run_dir, clash))
                    say(f"{tag} REFUSED {run.run_dir}: it {clash}")
                elif not mine:
                    outcome["elsewhere"].append(run.run_dir)
                    say(f"{tag} skip {run.run_dir} (being trained by another process)")
                elif (run.run_dir / "results.json").is_file():  # finished (perhaps by another process) since the check
                    outcome["skipped"].append(run.run_dir)
                    if not unscored(run.run_dir, run.inputs):  # else its score lines say what happens to it
                        say(f"{tag} skip {run.run_dir} (results.json exists)")
                    score(tag, run, slot)
                else:
                    train(tag, run, slot)

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in slots]
    with stop:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    outcome["signal"] = [stop.signal] if stop.signal is not None else []  # after the workers: not a run's outcome
    return outcome | scoring | {"planned": planned, "to_score": to_score}


JOBS = "jobs.json"  # beside the plan: the Slurm (or submitit local) job of each submitted run, with its log paths
SUBMITIT = ".submitit"  # submitit's own folder under the output dir: pickled tasks, job logs, results


class RunTask:
    """One planned run as a submitit array task: claims it, trains it through the launcher, and on preemption or
    time-out (submitit's signal) stops it at a checkpoint and requeues itself; the requeued task resumes exactly."""

    def __init__(self, launcher: list[str], cwd: str, grace_s: float) -> None:
        self.launcher, self.cwd, self.grace_s = launcher, cwd, grace_s
        self.proc: subprocess.Popen | None = None
        self.scoring: str | None = None  # the --score_inputs file being scored, for the preemption's wording

    def __call__(self, run: Run) -> str:
        """Train ``run`` unless it is finished or being trained elsewhere, then score the inputs it has no scores
        of; returns what happened."""
        os.chdir(self.cwd)  # the plan's paths are relative to where run_matrix.py was started
        if (run.run_dir / "results.json").is_file() and not unscored(run.run_dir, run.inputs):
            return f"skipped {run.run_dir} (results.json exists)"
        with claim(run.run_dir, run.settings) as mine:
            if clash := settings_clash(run, mine):
                raise RuntimeError(f"{run.run_dir} {clash}; use another --output_dir")
            if not mine:
                return f"skipped {run.run_dir} (being trained by another process)"
            done = "scored" if (run.run_dir / "results.json").is_file() else "trained"
            if done == "trained":
                begin(run)
                if code := self.launch(run, lambda own: train_command(run, own)):
                    record_failure(run.run_dir, code)
                    raise RuntimeError(f"{run.run_dir} failed with exit code {code}; see {run.run_dir / OUTPUT}")
            failed = [
                f"{file} ({why})"
                for file in unscored(run.run_dir, run.inputs)
                if (why := scoring_failure(run.run_dir, file, self.score(run, file)))
            ]
        if failed:  # the run is finished and kept: --status says which scores it lacks, the same command scores them
            return f"{done} {run.run_dir}; scoring failed: {', '.join(failed)}; see {run.run_dir / OUTPUT}"
        return f"{done} {run.run_dir}"

    def score(self, run: Run, file: str) -> int:
        """Score ``file`` with the run's best model (evaluate.py --input); returns its exit code."""
        self.scoring = file
        try:
            return self.launch(run, lambda own: score_command(run, own, file))
        finally:
            self.scoring = None

    def launch(self, run: Run, build: Callable[[list[str]], list[str]]) -> int:
        """Run the command ``build`` makes of the launcher, on a rendezvous port of its own (array tasks may share a
        node), with its output appended to the run's output.log; returns its exit code."""
        log = run.run_dir / OUTPUT

        def say(line: str) -> None:
            """A line of the job's log."""
            print(line, flush=True)

        return launch_on_own_port(self.launcher, build, lambda command: self.start(run, command), log, say)

    def start(self, run: Run, command: list[str]) -> int:
        """Run ``command`` with its output appended to the run's output.log; returns its exit code."""
        print(f"start {shlex.join(command)}", flush=True)
        with open(run.run_dir / OUTPUT, "a", encoding="utf-8") as log:
            # Slurm signals every process of the step, and SIGUSR2's default action is to die: the trainer
            # ignores it (an ignored signal stays ignored across exec) and stops on our SIGTERM instead.
            self.proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: signal.signal(signal.SIGUSR2, signal.SIG_IGN),
            )
            # poll(), not wait(): wait() holds a lock that the checkpoint handler (same thread) would need.
            while (code := self.proc.poll()) is None:
                time.sleep(0.5)
        return code

    def exited(self) -> bool:
        """Whether the trainer has exited, without reaping it (the interrupted poll loop still owns that)."""
        try:
            return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def checkpoint(self, run: Run) -> submitit.helpers.DelayedSubmission:
        """submitit calls this on preemption or time-out: stop the trainer at a checkpoint, requeue the same run."""
        if self.proc is not None and not self.exited():
            # train.py (or the launcher, which passes it on) checkpoints after the current step and exits.
            self.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.grace_s
            while not self.exited() and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.scoring is not None:  # the run is finished and kept: only the scoring is redone
                print(
                    f"stopped the scoring of {self.scoring} with {run.run_dir} (the run is finished and kept); "
                    "requeued to score it again",
                    flush=True,
                )
            else:
                print(f"stopped at a checkpoint; requeued to resume {run.run_dir}", flush=True)
        # The requeued task starts afresh: its resume flags are worked out again from the checkpoints on disk.
        return submitit.helpers.DelayedSubmission(RunTask(self.launcher, self.cwd, self.grace_s), run)


def parse_minutes(value: str) -> int:
    """Slurm's time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) as whole minutes (rounded up) for submitit."""
    days, _, clock = value.rpartition("-")
    try:
        parts = [int(p) for p in clock.split(":")]
        if days:  # D-H, D-H:M, D-H:M:S
            hours, minutes, seconds = [*parts, 0, 0][:3]
            hours += int(days) * 24
        else:  # M, M:S, H:M:S
            hours, minutes, seconds = [0, *parts] if len(parts) == 2 else [0, *parts, 0] if len(parts) == 1 else parts
        if len(parts) > 3 or min(parts) < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"--slurm_time {value!r}: use minutes or Slurm's H:M:S / D-H:M:S (e.g. 4:00:00).") from None
    return max(1, hours * 60 + minutes + (seconds > 0))


def slurm_options(extra: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split ``--slurm_<name> VALUE`` options (passed to submitit as ``slurm_<name>``) from the train.py flags."""
    options, rest, items = {}, [], iter(extra)
    for item in items:
        if item.startswith("--slurm_"):
            key, _, value = item[2:].partition("=")
            value = value or next(items, None)
            if value is None:
                raise UsageError(f"{item} needs a value.")
            options[key] = yaml.safe_load(value)  # numbers as numbers, lists/dicts as YAML
        else:
            rest.append(item)
    return options, rest


def submit(
    runs: list[Run],
    root: Path,
    launcher: list[str],
    args: argparse.Namespace,
    options: dict[str, Any],
) -> list[Any]:
    """Submit the unfinished, unclaimed runs (and the finished ones that lack scores of their inputs) as one submitit
    job array; record each run's job beside the plan."""
    states = {r.run_dir: run_state(r.run_dir) for r in runs}
    queued = in_slurm_queue(runs, root)
    if queued:
        print(
            f"slurm executor: skipped {counted(len(queued), 'run')} whose Slurm job is still in the queue "
            f"({', '.join(queued.values())}); --status shows them"
        )
    todo = [
        r
        for r in runs
        if r.run_dir not in queued
        and (
            states[r.run_dir] not in ("done", "running")
            or (states[r.run_dir] == "done" and unscored(r.run_dir, r.inputs))
        )
    ]
    if not todo:
        print("slurm executor: nothing to submit (every run is done, being trained or queued)")
        return []
    minutes = parse_minutes(args.slurm_time)
    executor = submitit.AutoExecutor(folder=root / SUBMITIT / "%j", cluster=args.slurm_cluster)
    # The task imports this module by name (not as __main__), from the job's own Python.
    path_line = (
        f"export PYTHONPATH={shlex.quote(str(REPO / 'scripts'))}:{shlex.quote(str(REPO))}${{PYTHONPATH:+:$PYTHONPATH}}"
    )
    params: dict[str, Any] = {
        "name": f"matrix-{root.name}",
        "timeout_min": minutes,
        "gpus_per_node": args.gpus_per_run,
        "tasks_per_node": 1,  # one task per run: the launcher starts the processes of a multi-GPU run
        "slurm_signal_delay_s": args.slurm_signal_delay,
        "slurm_setup": [path_line],
        "local_setup": [path_line],
    }
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.slurm_array_parallelism:
        params["slurm_array_parallelism"] = args.slurm_array_parallelism
    try:
        executor.update_parameters(**(params | options))
    except (NameError, ValueError, TypeError) as err:  # submitit names the option it does not know
        raise UsageError(f"a --slurm_ option submitit does not take: {str(err).splitlines()[0]}") from None
    # Keep a margin inside the signal's lead (submitit's local executor: a fixed 30 s) for the trainer's checkpoint
    # write and the requeue itself.
    lead = args.slurm_signal_delay if args.slurm_cluster == "slurm" else 30
    task = RunTask(launcher, os.getcwd(), grace_s=max(10.0, lead - 20.0))
    for run in todo:
        if states[run.run_dir] != "done":  # a finished run submitted for its scores keeps its folder as it is
            begin(run)
    jobs = executor.map_array(task, todo)
    records = {
        str(run.run_dir.resolve()): {  # absolute: --status may be run from another folder
            "job_id": job.job_id,
            "cluster": args.slurm_cluster,
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
            "result": str(job.paths.result_pickle),
            "submitted": time.time(),
        }
        for run, job in zip(todo, jobs, strict=True)
    }
    with open(root / f".{JOBS}.lock", "a") as lock:  # two submissions at once must not lose each other's records
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = root / JOBS
        recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        atomic_write_json(path, recorded | records)
    first = jobs[0].job_id.split("_")[0]
    print(
        f"slurm executor ({args.slurm_cluster}): submitted {len(jobs)} of {counted(len(runs), 'run')} as job {first} "
        f"(time {minutes} min, {counted(args.gpus_per_run, 'GPU')} per run); records in {root / JOBS}; "
        f"follow with: python {shlex.quote(str(Path(__file__).resolve()))} ... --status"
    )
    return jobs


class Terminated(Exception):
    """SIGTERM while following the jobs (--wait), raised where the following is, as a Ctrl-C's KeyboardInterrupt is."""


def raise_terminated(signum: int, frame: Any) -> None:
    """The SIGTERM handler of --wait: its default action would end the process without a word on the jobs."""
    raise Terminated


def in_slurm_queue(runs: list[Run], root: Path, quiet: bool = False) -> dict[Path, str]:
    """The runs whose recorded Slurm job is still pending or running, as squeue lists it ("<job id> <state>"): such a
    run holds no claim until its job starts, and submitting it again would train it twice. ``quiet``: no warning
    when squeue cannot answer (none is then listed)."""
    records = job_records(root)
    jobs = {
        run.run_dir: record["job_id"]
        for run in runs
        if (record := records.get(str(run.run_dir.resolve()))) and record.get("cluster") == "slurm"
    }
    if not jobs:
        return {}
    arrays = ",".join(sorted({job.split("_")[0] for job in jobs.values()}))
    command = ["squeue", "--noheader", "--array", "--format=%i %T", "--jobs", arrays]
    try:
        listed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        listed = subprocess.CompletedProcess(command, 1, "", str(err))
    # squeue names a job that has left the queue "invalid" when it is the only one asked about.
    if listed.returncode != 0 and "invalid job id" not in listed.stderr.lower():
        if quiet:
            return {}
        print(
            f"warning: {shlex.join(command)} failed ({(listed.stderr.strip().splitlines() or ['no output'])[-1]}): "
            "a run whose job is still queued may be submitted again (its claim keeps it from training twice at once).",
            file=sys.stderr,
        )
        return {}
    states = dict(line.split(maxsplit=1) for line in listed.stdout.splitlines() if len(line.split()) == 2)
    return {run_dir: f"{job} {states[job]}" for run_dir, job in jobs.items() if job in states}


def stopped_following(jobs: list[Any], root: Path, cluster: str, signum: int = signal.SIGINT) -> None:
    """Say, after a Ctrl-C (or SIGTERM) during --wait, that only the following stopped, and how to see the runs
    through."""
    first = jobs[0].job_id.split("_")[0] if jobs else None
    if cluster == "slurm":
        # submit() skips the runs whose job squeue still lists: the same command submits no run twice.
        submitted = f"the {counted(len(jobs), 'submitted run')}" if jobs else "the runs of the plan"
        where = (
            f"{submitted} {'keeps' if len(jobs) == 1 else 'keep'} running under Slurm{f' (job {first})' if jobs else ''}; run the same command again to "
            "resubmit the runs whose job ended unfinished (each resumes from its last checkpoint, if it has one): it "
            "skips the runs done, queued or running, and --wait then follows the plan until none is queued or running"
        )
    elif not jobs:  # only runs of an earlier submission were followed: this process started none of them
        where = "the runs of the plan keep running"
    else:  # submitit's local jobs are children of this process: a signal to its whole group reaches them too
        name, how = ("Ctrl-C", "a terminal's does") if signum == signal.SIGINT else ("SIGTERM", "one to a group does")
        one = len(jobs) == 1
        jobs_keep = f"local job {first} keeps" if one else f"{len(jobs)} local jobs (the first {first}) keep"
        them, runs_stop = ("it", "its run stops") if one else ("them", "their runs stop")
        where = (
            f"submitit's {jobs_keep} running unless the {name} reached {them} too ({how}: {runs_stop} at a "
            f"checkpoint, and the same command resumes {them})"
        )
    # To look, --status rather than the same command: that one submits whatever is not done, queued or running (a run
    # whose job failed meanwhile, say), more than one who only wants to look asked for.
    print(
        f"{'interrupted' if signum == signal.SIGINT else 'terminated'}: stopped following the jobs; {where}. Their "
        "state: the same command with --status in place of --wait; the table once they have ended: "
        f"{report_command(root)}",
        flush=True,
    )


def job_records(root: Path) -> dict[str, dict[str, Any]]:
    """The submitted jobs recorded beside the plan, by run folder (empty when none were)."""
    path = root / JOBS
    return read_json(path) if path.is_file() else {}


def read_json(path: Path) -> Any:
    """A bookkeeping file of the matrix, with its name in the error when it cannot be parsed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UsageError(f"{path} cannot be parsed ({err}); delete it (the matrix writes it again).") from None


def job_outcome(record: dict[str, Any]) -> tuple[str, list[str]] | None:
    """A finished job's (outcome, last stderr lines) from submitit's result file, or None while it has none."""
    result = Path(record["result"])
    if not result.is_file():
        return None
    try:
        with open(result, "rb") as handle:
            outcome = pickle.load(handle)[0]
    except Exception:  # a partly written or foreign pickle: no verdict yet
        return None
    return outcome, log_tail(Path(record["stderr"]))


def check_misspelt_flags(extra: list[str], parser: argparse.ArgumentParser) -> None:
    """Refuse a flag that neither train.py (whole or abbreviated) nor the matrix takes and that is close to one of the
    matrix's: the matrix passes the flags it does not know to train.py, which would call it an unknown train.py
    flag."""
    train_flags = [flag for flag in build_parser(TrainConfig, "")._option_string_actions if flag.startswith("--")]
    matrix_flags = [flag for flag in parser._option_string_actions if flag.startswith("--")]
    for token in extra:
        flag = token.partition("=")[0]
        if not flag.startswith("--") or any(known.startswith(flag) for known in train_flags):
            continue
        if close := difflib.get_close_matches(flag, matrix_flags, n=1, cutoff=0.8):
            raise UsageError(f"{flag} is a flag of neither run_matrix.py nor train.py (did you mean {close[0]}?).")


def report_command(root: Path) -> str:
    """The command that tabulates the runs under ``root``, quoted for a shell (an output dir may hold spaces)."""
    return shlex.join(["python", str(REPO / "scripts" / "report.py"), str(root)])


def main(argv: list[str] | None = None) -> int:
    """Run the matrix; returns the number of failed runs."""
    # No abbreviations: --seed or --dataset meant for train.py must not be taken for --seeds or --datasets.
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter, allow_abbrev=False)
    parser.add_argument(
        "--config",
        help="YAML/JSON with datasets, models, seeds, train_args, output_dir (and variants, grid, score_inputs).",
    )
    parser.add_argument("--datasets", nargs="+", help="Datasets (train.py --dataset values).")
    parser.add_argument("--models", nargs="+", help="Models (train.py --model_name_or_path values).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Seeds (default: 42).")
    parser.add_argument("--output_dir", help="Root of the run directories (default: outputs/matrix).")
    parser.add_argument(
        "--launcher",
        help='Prefix command, e.g. "accelerate launch --num_processes 2" (default: this Python; with --gpus_per_run '
        "above 1 on GPUs, accelerate launch on the run's GPUs).",
    )
    parser.add_argument(
        "--executor", choices=("sequential", "local", "slurm"), default="sequential", help="How runs run."
    )
    parser.add_argument(
        "--max_parallel",
        type=int,
        help="local: runs at once (default: one per GPU group times --runs_per_gpu, else 1).",
    )
    parser.add_argument("--gpus_per_run", type=int, default=1, help="local, slurm: GPUs given to each run.")
    parser.add_argument(
        "--runs_per_gpu", type=int, help="local: runs sharing each GPU at once, for small models (default: 1)."
    )
    parser.add_argument("--slurm_partition", help="slurm: the partition to submit to.")
    parser.add_argument("--slurm_time", default="4:00:00", help="slurm: time limit of one job (requeued past it).")
    parser.add_argument("--slurm_array_parallelism", type=int, help="slurm: array tasks running at once.")
    parser.add_argument(
        "--slurm_signal_delay", type=int, default=120, help="slurm: seconds before the limit to checkpoint."
    )
    parser.add_argument(
        "--slurm_cluster",
        choices=("slurm", "local", "debug"),
        default="slurm",
        help="slurm: submitit's executor (local and debug run the same path on this machine, for tests).",
    )
    parser.add_argument(
        "--wait", action="store_true", help="slurm: follow the runs of the plan until none is queued or running."
    )
    parser.add_argument("--status", action="store_true", help="Print the state of every run of the plan and exit.")
    parser.add_argument("--dry_run", action="store_true", help="Print the commands without running them.")
    parser.add_argument(
        "--score_inputs",
        nargs="+",
        default=[],
        metavar="[DATASET=]FILE",
        help="Files with the runs' label column(s) that each finished run's best model scores (RUN/eval_<name>.json); "
        "DATASET=FILE (DATASET as the plan names it; needed when it has several) gives FILE to that dataset's runs.",
    )
    args, extra = parser.parse_known_args(argv)
    if (args.max_parallel is not None and args.max_parallel < 1) or args.gpus_per_run < 1:
        raise UsageError("--max_parallel and --gpus_per_run must be positive integers.")
    cfg = load_config_file(args.config) if args.config else {}
    for key in ("datasets", "models", "seeds", "output_dir"):
        if getattr(args, key):
            cfg[key] = getattr(args, key)
    options, extra = slurm_options(extra)  # --slurm_<anything> goes to submitit, not to train.py
    check_misspelt_flags(extra, parser)
    if options and args.executor != "slurm":
        raise UsageError(f"--{next(iter(options))} is an option of --executor slurm.")
    runs_per_gpu = 1 if args.runs_per_gpu is None else args.runs_per_gpu
    if runs_per_gpu < 1:
        raise UsageError(f"--runs_per_gpu must be a positive integer, got {runs_per_gpu}.")
    if args.runs_per_gpu is not None and args.executor != "local":
        raise UsageError("--runs_per_gpu is an option of --executor local.")
    if runs_per_gpu > 1 and args.gpus_per_run > 1:
        # Runs sharing a GPU take turns on it (without MPS the GPU time-slices between processes), and a DDP step
        # ends only when every rank's all-reduce has run: each step would wait on the slowest turn among its GPUs.
        raise UsageError(
            f"--runs_per_gpu {runs_per_gpu} with --gpus_per_run {args.gpus_per_run}: runs that share GPUs take turns "
            "on each of them, so a run on several GPUs would wait at every gradient all-reduce for its other GPUs "
            "to finish another run's work; share GPUs among runs of one GPU each."
        )
    if args.executor == "slurm":
        parse_minutes(args.slurm_time)  # refused here: a dry run checks what the submission would refuse
    launcher = shlex.split(args.launcher) if args.launcher else [sys.executable]
    local = args.executor == "local"
    gpu_groups = args.executor == "slurm" or (local and bool(visible_gpus()))
    if gpu_groups and not args.launcher and args.gpus_per_run > 1:
        # One run per GPU group (a Slurm array task's allocation, or a local slot's CUDA_VISIBLE_DEVICES): accelerate
        # starts one process per GPU of the group. --gpu_ids all and one machine whatever the user's accelerate
        # config says: the group is the slot's CUDA_VISIBLE_DEVICES, which the config's gpu_ids would replace.
        # --multi_gpu (DDP) unless the config asks for an engine, which that flag would silently override.
        engine = str(accelerate_config({}).get("distributed_type", "")) in ("FSDP", "DEEPSPEED", "MEGATRON_LM")
        launcher += ["-m", "accelerate.commands.launch", *([] if engine else ["--multi_gpu"])]
        launcher += ["--num_processes", str(args.gpus_per_run), "--gpu_ids", "all", "--num_machines", "1"]
    runs = plan(cfg, extra, paths="ignore" if args.status else "warn" if args.executor == "slurm" else "error")
    # The flag replaces the config's list, as --datasets replaces its datasets; paths are relative to here, as the
    # plan's other paths are.
    score_inputs = args.score_inputs or cfg.get("score_inputs") or []
    where = "--score_inputs" if args.score_inputs else f"--config {args.config}: score_inputs"
    if score_inputs:
        assign_score_inputs(score_inputs, runs, where)
    root = Path(cfg.get("output_dir") or "outputs/matrix")
    if args.status:
        return print_status(runs, root).get("failed", 0)
    slots = [{}]
    if local:
        left = sum(not (r.run_dir / "results.json").is_file() or bool(unscored(r.run_dir, r.inputs)) for r in runs)
        slots = device_slots(args.gpus_per_run, args.max_parallel, runs_per_gpu, launched_processes(launcher), left)
    check_existing_runs(runs, launch_settings(launcher))
    check_scored_elsewhere(runs, where)
    warn_if_pooling_resolves_alike(runs)
    check_data([r for r in runs if not (r.run_dir / "results.json").is_file()], warn=args.executor == "slurm")
    if args.executor == "slurm" and not args.dry_run:
        root.mkdir(parents=True, exist_ok=True)
        jobs = submit(runs, root, launcher, args, options)
        if args.slurm_cluster == "debug":  # submitit's debug jobs run in this process, when asked for a result
            for job in jobs:
                with contextlib.suppress(Exception):  # a failed run is reported below like any other
                    job.result()
        if not (args.wait or args.slurm_cluster == "debug"):
            return 0
        # Runs that an earlier submission still has queued or running are the plan's too: following only this
        # submission's jobs would end (or, with nothing new to submit, not start) while they still train.
        records, own = job_records(root), {job.job_id for job in jobs}
        earlier = {
            run_dir: state
            for run_dir, state in in_flight(runs, root).items()
            if records.get(str(run_dir.resolve()), {}).get("job_id") not in own
        }
        if not (jobs or earlier):
            return 0
        if earlier:
            ours = f"the {counted(len(jobs), 'submitted run')} and " if jobs else ""
            print(
                f"--wait: following {ours}the {counted(len(earlier), 'run')} an earlier submission has queued or "
                f"running ({', '.join(earlier.values())})",
                flush=True,
            )
        previous = signal.signal(signal.SIGTERM, raise_terminated)
        try:
            failed = follow(runs, root, jobs).get("failed", 0)
        except (KeyboardInterrupt, Terminated) as stopped:
            signum = signal.SIGTERM if isinstance(stopped, Terminated) else signal.SIGINT
            stopped_following(jobs, root, args.slurm_cluster, signum)
            raise SystemExit(128 + signum) from None  # as a shell reports a command stopped by the signal
        finally:
            signal.signal(signal.SIGTERM, previous)
        print(f"table: {report_command(root)}")
        return failed
    if local:
        described = "; ".join(" ".join(f"{k}={v}" for k, v in slot.items()) for slot in slots)
        many = f"{len(slots)} runs at once" if len(slots) > 1 else "1 run at a time"
        print(f"local executor: {many} ({described or 'environment as it is'})", flush=True)
    outcome = execute(runs, launcher, slots, args.dry_run)
    if args.dry_run:  # nothing ran: the counts of what would
        print(
            f"matrix (dry run): {len(outcome['planned'])} to train, "
            + (f"{len(outcome['to_score'])} to score, " if outcome["to_score"] else "")
            + f"{len(outcome['skipped'])} skipped (results.json exists) of {counted(len(runs), 'run')}; "
            "nothing was started"
        )
        return 0
    failed, score_failed = outcome["failed"], outcome["score_failed"]
    print(
        f"matrix: {len(outcome['trained'])} trained, {len(outcome['skipped'])} skipped, {len(failed)} failed"
        + (f", {len(outcome['clashed'])} refused" if outcome["clashed"] else "")
        + f" of {counted(len(runs), 'run')}"
        + (f" ({len(outcome['elsewhere'])} being trained elsewhere)" if outcome["elsewhere"] else "")
        + (
            f"; {counted(len(outcome['scored']), 'input score')} written, {len(score_failed)} failed"
            if score_inputs
            else ""
        )
    )
    for run_dir, code in failed:
        if isinstance(code, int):
            print(f"  failed (exit {code}): {run_dir}  (see {run_dir / OUTPUT})")
        else:  # the matrix's own error before any launch (its folder could not be claimed): no output.log
            print(f"  failed ({code}): {run_dir}")
    for run_dir, clash in outcome["clashed"]:
        print(f"  refused: {run_dir} {clash}; use another --output_dir")
    for run_dir, file, why in score_failed:
        # The run itself is finished and kept; the same command scores it again.
        print(f"  scoring failed ({why}): {file} with {run_dir}  (see {run_dir / OUTPUT})")
    if outcome["signal"]:
        [signum] = outcome["signal"]
        left = len(runs) - sum(len(outcome[k]) for k in ("trained", "skipped", "elsewhere", "failed", "clashed"))
        name, stopped, scorings = signal.Signals(signum).name, outcome["stopped"], outcome["score_stopped"]
        not_started = left - len(stopped)
        if scorings and not stopped and not not_started:  # only scoring was under way: no run to resume
            them = "it (the finished run is kept" if len(scorings) == 1 else "them (the finished runs are kept"
            print(
                f"matrix: interrupted by {name} while scoring: {counted(len(scorings), 'scoring')} stopped "
                f"({'; '.join(scorings)}); run the same command again to score {them}; only the files a run lacks "
                "scores of are scored)"
            )
        else:
            scored = f", {counted(len(scorings), 'scoring')} stopped ({'; '.join(scorings)})" if scorings else ""
            print(
                f"matrix: interrupted by {name}: {len(stopped)} stopped, {not_started} not started{scored}; run the "
                "same command again to resume (a stopped run resumes from its last checkpoint"
                + (", a stopped scoring is done again)" if scorings else ")")
            )
        raise SystemExit(128 + signum)  # as a shell reports a command stopped by the signal
    if outcome["trained"] or outcome["skipped"]:  # with no run finished, report.py would only say so
        print(f"table: {report_command(root)}")
    return len(failed) + len(outcome["clashed"]) + len(score_failed)


if __name__ == "__main__":
    # Run the imported module, not __main__: the Slurm tasks pickle its classes by name (run_matrix.RunTask).
    import run_matrix

    try:
        sys.exit(1 if run_matrix.main() else 0)
    except (UsageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
