"""The statistical verdict of a campaign: does model A beat model B, on which datasets, and how surely.

    python scripts/compare.py outputs/matrix --a "mine" --b all-MiniLM-L6-v2     # A vs B, each at its selected grid point
    python scripts/compare.py outputs/matrix --a mine --b base --rope 0.005 --bootstrap 2000 --seed 1
    python scripts/compare.py outputs/matrix --a mine --b base --aso_bootstrap 200   # faster ASO (deepsig default: 1000)
    python scripts/compare.py outputs/matrix --all                                # rank every model (Friedman + Nemenyi)
    python scripts/compare.py outputs/matrix --a mine --b base --on ood       # on a scored input (RUN/eval_ood.json)

A model NAME is the ``model`` column of scripts/report.py (a matrix variant is ``"<model> [<variant>]"``), exactly or
as a unique substring. Each model is compared at the grid point that scripts/report.py selects on mean VALIDATION
score (test scores never choose); runs are paired by (dataset, seed), and a dataset where either side has no runs is
listed and skipped. The score compared is the test ``--metric`` (macro_f1 or accuracy).

Per dataset: the mean ± std over seeds of Δ = A − B; a paired bootstrap CI of Δ over the test examples (the same
resampled examples for A and B and for every seed, metric recomputed from ``predictions_test.jsonl``) with its
p-value, Holm-corrected across datasets; ASO ε_min over the seed scores (deepsig); and whether validation ranks the
grid points of A and B as test does (Kendall τ, and a flag when the validation winner loses on test). A dataset is
won when Δ survives both the example bootstrap (Holm) and the seeds (ASO ε_min < 0.2, so ≥ 2 paired seeds: one
seed never wins a dataset).
Across datasets: the Bayesian signed-rank test (baycomp) on the per-dataset mean scores with a ROPE (--rope), and
Wilcoxon's signed-rank test from 6 datasets on. When nothing is decided, the number of seeds a paired t-test would need
to detect the observed Δ (80% power) is printed. Runs compared on a dataset that ran on different library versions,
devices or CPU thread counts (config.json's ``resolved``) get a warning, and the verdict a CAUTION naming the datasets.

Prints a per-dataset summary, the verdict and, as the LAST line, one JSON object (``p_a_better``, ``p_equivalent``,
``p_b_better``, ``datasets_a_wins``, ``datasets_b_wins``, ``per_dataset``, ``verdict``, ...). Writes
``compare_<a>_vs_<b>.md``, ``.csv`` and ``.png`` (Δ per dataset with its interval) into --output_dir (default ROOT).
``--all`` writes ``compare_all.md``, ``compare_all.csv`` and, from 5 datasets and 3 models on, the critical-difference
diagram ``compare_all_cd.png``. Under ``--on NAME`` each name ends in ``_on_<NAME>`` (``compare_all_on_ood.md``), so
the test verdict's files stay beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import re
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import report  # noqa: E402  (scripts/report.py: run records and grid-point selection)

from utils import HelpFormatter, UsageError, atomic_savefig, atomic_write_text, counted, run_cli  # noqa: E402

# Test metrics that can be recomputed from gold/pred in predictions_test.jsonl, and so bootstrapped (both: higher is
# better, so no direction is needed here).
COMPARABLE = ("macro_f1", "accuracy")
ASO_TAU = 0.2  # deepsig's recommended ε_min threshold: 0.5 has a high type-I error (Ulmer et al. 2022)
DECISIVE = 0.95  # posterior probability at which the Bayesian test is read as a decision (Benavoli et al. 2017)
POWER = 0.8
MIN_WILCOXON_DATASETS = 6  # below this, the exact Wilcoxon test cannot reach p < 0.05 two-sided
MIN_AUTORANK_DATASETS = 5  # autorank refuses fewer rows
SETUP = "library versions, devices or CPU thread counts"  # what versions_differ compares between the runs


# ---- reading runs -------------------------------------------------------------------------------------------------


def finest(label: Any) -> Any:
    """A hierarchical label (dict level -> label) as its finest (last) level; others unchanged."""
    return list(label.values())[-1] if isinstance(label, dict) else label


def read_predictions(run_dir: Path, split: str = "test") -> dict[int, tuple[Any, Any]] | None:
    """``idx -> (gold, pred)`` from a run's ``predictions_<split>.jsonl`` (or a scored input's: rows without a gold
    label are not scored); None when missing or unlabeled."""
    path = Path(run_dir) / f"predictions_{split}.jsonl"
    if not path.is_file():
        return None
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # a file cut off mid-line: no bootstrap on part of the test set
            return None
        if "gold" not in record:
            continue  # a split without labels has none; an input's row without a label is predicted, not scored
        # An --input file's predictions keep the prediction as "label" (evaluate.py), a split's as "pred".
        rows[int(record["idx"])] = (finest(record["gold"]), finest(record.get("pred", record.get("label"))))
    return rows or None


def label_names(run_dir: Path) -> list[str]:
    """The run's label names from config.json's ``resolved`` (empty when not recorded)."""
    path = Path(run_dir) / "config.json"
    resolved = (json.loads(path.read_text(encoding="utf-8")).get("resolved") or {}) if path.is_file() else {}
    return [str(n) for n in resolved.get("label_names") or []]


def by_seed(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The runs of one grid point keyed by seed (report keeps one run per seed; the first wins if not)."""
    out: dict[int, dict[str, Any]] = {}
    for record in records:
        out.setdefault(int(record["seed"]), record)
    return out


def scored_seeds(point: dict[str, Any], metric: str) -> dict[int, dict[str, Any]]:
    """The runs of a selected grid point that have a test ``metric``, by seed."""
    return {s: r for s, r in by_seed(point["runs"]).items() if r.get(f"test_{metric}") is not None}


def seed_sets(points: dict[str, dict[str, Any]], metric: str) -> str:
    """Each model's seeds with a score, for a reason that says why nothing pairs: ``a: seeds 1, 2; b: seeds 3``."""
    listed = {name: sorted(scored_seeds(point, metric)) for name, point in points.items()}
    return "; ".join(f"{name}: seeds {', '.join(map(str, s))}" if s else f"{name}: none" for name, s in listed.items())


def different_test_sets(points: list[dict[str, Any]]) -> str | None:
    """Why the selected runs' test scores cannot be compared, or None: they scored different numbers of test rows
    (another --max_eval_samples), other rows (another or an edited test file: the test split's digest) or under other
    label names. What a run did not record is unknown, not different."""
    seen: dict[str, dict[str, set[str]]] = {"numbers of rows": {}, "test data": {}, "label names": {}}
    for point in points:
        for run in point["runs"]:
            recorded = (run.get("test_num_samples"), run["data_seen"]["test_rows"], run["data_seen"]["labels"])
            for what, value in zip(seen, recorded, strict=True):
                if value is not None:
                    shown = "/".join(map(str, value)) if isinstance(value, list) else str(value)
                    seen[what].setdefault(str(run["model"]), set()).add(shown)
    for what, by_model in seen.items():
        if len(set().union(*by_model.values())) > 1:
            listed = ", ".join(f"{m}: {' | '.join(sorted(v))}" for m, v in sorted(by_model.items()))
            return f"the runs were tested on different {what} ({listed}); compare runs on one test set"
    return None


def copied_datasets(points_by_dataset: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Datasets whose runs saw exactly the rows (train, validation and test) a run of an earlier dataset saw: a copied
    folder. A test across datasets takes them as independent evidence, so each copy is skipped, with the reason."""
    first_seen: dict[str, str] = {}
    copies = {}
    for dataset, points in points_by_dataset.items():
        digests = {run.get("data_digest") for point in points for run in point["runs"]} - {None}
        if original := next((first_seen[d] for d in sorted(digests) if d in first_seen), None):
            copies[dataset] = f"its runs saw the same rows as {original}'s (a copy of that dataset): counted once"
            continue
        first_seen |= dict.fromkeys(digests, dataset)
    return copies


def pick_model(name: str, runs: list[dict[str, Any]], flag: str) -> str:
    """The model ``name`` designates: a model of report.py (a row's name, or for a grid the model's name that its
    selection section shows), exactly or as a unique part of one."""
    models = sorted({r["model"] for r in runs})
    if name not in models and (point := next((r for r in runs if r["row"] == name and r["grid"]), None)):
        # One grid point of a model: the model competes at the point validation selects, which may be another.
        raise UsageError(
            f"{flag} {name!r} is a grid point of {point['model']!r}, which is compared at its grid point selected on "
            f"validation; pass {point['model']!r}."
        )
    return report.pick_model(name, models, flag)


SCORE_THEM = " (run_matrix.py --score_inputs with the same command scores the runs that lack them)"


def scored_on(runs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The runs of the datasets scored on the input ``name`` (run_matrix.py --score_inputs DATASET=FILE: another
    dataset's runs were never meant to score it), each with its scores of it (RUN/eval_<name>.json) where its test
    scores were, so the verdict judges them; a run of such a dataset without them has no score there."""
    names = sorted({n for run in runs for n in run["heldout"]})
    if name not in names:
        listed = ", ".join(names) or "none (run_matrix.py --score_inputs FILE scores them)"
        raise UsageError(f"--on {name}: no run has scores of {name}; scored inputs: {listed}.")
    datasets = {run["dataset"] for run in runs if name in run["heldout"]}
    if left := sorted({run["dataset"] for run in runs} - datasets):
        # Not an error: a DATASET=FILE file belongs to its dataset's runs alone. But a dataset given the file whose
        # scorings all failed looks the same from here, so it is named rather than dropped without a word.
        print(
            f"note: --on {name}: no run of {', '.join(left)} has scores of {name}, left out (if they were given the "
            "file, their scorings failed: run_matrix.py --status lists them)",
            file=sys.stderr,
        )
    runs = [run for run in runs if run["dataset"] in datasets]
    for run in runs:
        scores = run["heldout"].get(name) or {}
        for metric in COMPARABLE:
            run[f"test_{metric}"] = scores.get(metric)
        run["test_num_samples"] = scores.get("num_samples")
        # Runs scored on other files of one name were tested on other data: the dataset is skipped, with the files.
        run["data_seen"] = run["data_seen"] | {"test_rows": scores.get("input")}
        predictions = Path(str(scores.get("predictions") or f"predictions_{name}.jsonl"))
        run["scored_on"] = predictions.stem.removeprefix("predictions_")
    return runs


def mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    """Mean of ``key`` over the records that have it."""
    values = [r[key] for r in records if r.get(key) is not None]
    return seed_mean(values) if values else None


def seed_mean(values: list[float]) -> float:
    """A mean over seeds that does not depend on their order (an exactly rounded sum, as report.py's): two models
    with the same scores on other seeds tie, where np.mean's last bit would rank one first."""
    return statistics.fmean(values)


# ---- statistics core ----------------------------------------------------------------------------------------------


def indicators(labels: list[Any], vocab: dict[str, int]) -> np.ndarray:
    """Labels (one name, or a list of names for multi-label) as a (rows, labels) 0/1 matrix."""
    out = np.zeros((len(labels), len(vocab)))
    for i, label in enumerate(labels):
        for name in label if isinstance(label, list) else [label]:
            out[i, vocab[str(name)]] = 1.0
    return out


def weighted_scores(
    weights: np.ndarray, gold: np.ndarray, pred: np.ndarray, metric: str, multi_label: bool
) -> np.ndarray:
    """``metric`` of one run under each row of example weights (times each example was drawn): (B, n) -> (B,).

    Counting true/false positives through a matrix product scores all resamples at once, where sklearn's f1_score
    would take a Python call per resample; tests check both agree."""
    if metric == "accuracy":
        correct = (gold == pred).all(axis=1).astype(float)  # (n,): multi-label accuracy is subset accuracy
        return weights @ correct / weights.sum(axis=1)
    tp = weights @ (gold * pred)  # (B, labels)
    fp = weights @ ((1 - gold) * pred)
    fn = weights @ (gold * (1 - pred))
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
    if multi_label:
        return f1.mean(axis=1)  # every label counts, an absent one as 0 (sklearn on an indicator matrix)
    present = denom > 0  # single-label: sklearn averages over the labels present in gold or pred
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def bootstrap_weights(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` resamples of ``n`` examples with replacement, as (size, n) draw counts."""
    idx = rng.integers(0, n, size=(size, n))
    flat = (idx + n * np.arange(size)[:, None]).ravel()
    return np.bincount(flat, minlength=size * n).reshape(size, n).astype(float)


def paired_bootstrap(
    gold: np.ndarray,
    preds_a: list[np.ndarray],
    preds_b: list[np.ndarray],
    metric: str,
    multi_label: bool,
    n_boot: int,
    rng: np.random.Generator,
) -> tuple[float, np.ndarray]:
    """Δ = mean over seeds of A's metric minus B's on the full test set, and its ``n_boot`` bootstrap replicates.

    Every replicate resamples the test examples once and scores every run of both sides on that same resample: the
    test set is shared by all seeds and both models, so its sampling noise is common to them and must not average
    out over seeds."""
    n = len(gold)

    def delta(weights: np.ndarray) -> np.ndarray:
        """Mean-over-seeds difference under each row of weights."""
        a = np.mean([weighted_scores(weights, gold, p, metric, multi_label) for p in preds_a], axis=0)
        b = np.mean([weighted_scores(weights, gold, p, metric, multi_label) for p in preds_b], axis=0)
        return a - b

    point = float(delta(np.ones((1, n)))[0])
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))  # bounds the (chunk, n) weight matrix to ~16 MB
    replicates = []
    for start in range(0, n_boot, chunk):
        replicates.append(delta(bootstrap_weights(n, min(chunk, n_boot - start), rng)))
    return point, np.concatenate(replicates)


def bootstrap_summary(replicates: np.ndarray, alpha: float) -> dict[str, float]:
    """Percentile interval and two-sided p-value of H0: Δ = 0 from bootstrap replicates of Δ."""
    low, high = np.percentile(replicates, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    # (k + 1) / (B + 1): a bootstrap p-value is never 0 (Davison & Hinkley 1997, eq. 4.11).
    tail = min((replicates <= 0).sum(), (replicates >= 0).sum())
    p_value = min(1.0, 2 * (tail + 1) / (len(replicates) + 1))
    return {"ci_low": float(low), "ci_high": float(high), "p_value": p_value}


def aso_eps_min(
    scores_a: list[float], scores_b: list[float], n_boot: int, seed: int, alpha: float, comparisons: int
) -> tuple[float, float]:
    """deepsig's ASO ε_min of "A is stochastically better than B" over seeds, and of "B better than A"."""
    from deepsig import multi_aso  # imported here: deepsig imports torch, seconds that --help should not pay

    with warnings.catch_warnings():
        # Identical score lists make ASO warn "division by zero" once per bootstrap iteration; it returns 0.5.
        warnings.simplefilter("ignore")
        # multi_aso gets both directions from one bootstrap. Bonferroni over the datasets compared is applied here,
        # through the confidence level (use_bonferroni would only count the one pair of models).
        eps = multi_aso(
            {"A": scores_a, "B": scores_b},
            confidence_level=1 - alpha / comparisons,
            use_bonferroni=False,
            num_bootstrap_iterations=n_boot,
            show_progress=False,
            seed=seed,
        )
    return float(eps[0, 1]), float(eps[1, 0])


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels; it is a dependency of autorank anyway)."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def signed_rank_probs(x: np.ndarray, y: np.ndarray, rope: float, seed: int) -> tuple[float, float, float]:
    """baycomp's Bayesian signed-rank test: (P(x better), P(within ROPE), P(y better)) over datasets."""
    import baycomp

    if rope == 0 and np.array_equal(x, y):
        # Every posterior draw then gives each side exactly half, and baycomp's argmax picks one by a sum's last bit.
        return 0.5, 0.0, 0.5
    # baycomp compares y - x: its "left" is x higher by more than the ROPE (checked against its source).
    sample = baycomp.SignedRankTest(x, y, rope, random_state=seed)
    p_x, p_rope, p_y = sample.probs(with_rope=True)
    return float(p_x), float(p_rope), float(p_y)


def wilcoxon_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the per-dataset differences (1.0 when all are zero)."""
    if np.allclose(x, y):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ties and zero differences make scipy warn about its normal approximation
        return float(stats.wilcoxon(x, y).pvalue)


def kendall_tau(val: list[float], test: list[float]) -> float | None:
    """Kendall τ between validation and test scores of the same items (None below 2 items or when undefined)."""
    if len(val) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input warns and gives nan
        tau = stats.kendalltau(val, test).statistic
    return None if np.isnan(tau) else float(tau)


def seeds_needed(delta_mean: float, delta_std: float | None, alpha: float) -> int | None:
    """Seeds per model for a paired t-test to detect ``delta_mean`` with 80% power (None if it cannot be said)."""
    if delta_std is None or delta_mean == 0:
        return None
    if delta_std == 0:
        return 2  # no seed noise at all: any second seed confirms it
    from statsmodels.stats.power import TTestPower
    from statsmodels.tools.sm_exceptions import ConvergenceWarning  # importing it installs an "always" filter

    effect = abs(delta_mean) / delta_std
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a failed root search returns nan, handled below
        n = TTestPower().solve_power(effect_size=effect, alpha=alpha, power=POWER, alternative="two-sided")
    n = float(np.asarray(n).reshape(-1)[0])
    if not np.isfinite(n):
        # The solver's bracket starts at 2 observations: it fails for effects so large that 2 seeds already suffice.
        return 2 if effect >= 1 else None
    return max(2, math.ceil(n))


def seeds_text(n: int) -> str:
    """A seed count for people: past 1000 the exact number says only that Δ is lost in the seed noise."""
    return f"about {n}" if n <= 1000 else "more than 1000"


# ---- one dataset --------------------------------------------------------------------------------------------------


def prediction_arrays(
    runs_a: list[dict[str, Any]], runs_b: list[dict[str, Any]]
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray], bool] | str:
    """Gold and per-run prediction matrices over the test examples every run scored, or why there are none."""
    split = (runs_a + runs_b)[0].get("scored_on", "test")  # --on puts every run's scores on one input's name
    loaded = [read_predictions(r["run_dir"], r.get("scored_on", "test")) for r in runs_a + runs_b]
    missing = [str(r["run_dir"]) for r, rows in zip(runs_a + runs_b, loaded, strict=True) if rows is None]
    if missing:
        return f"no labeled predictions_{split}.jsonl in {', '.join(missing)}"
    common = sorted(set.intersection(*(set(rows) for rows in loaded)))
    if not common:
        return f"the runs' predictions_{split}.jsonl share no example idx"
    first = loaded[0]
    if any(rows[i][0] != first[i][0] for rows in loaded[1:] for i in common):
        return f"the runs' predictions_{split}.jsonl disagree on gold labels (different test data?)"
    multi_label = isinstance(first[common[0]][0], list)
    names = {str(n) for r in runs_a + runs_b for n in label_names(r["run_dir"])} if multi_label else set()
    for rows in loaded:
        for i in common:
            for label in rows[i]:
                names.update(str(n) for n in (label if isinstance(label, list) else [label]))
    vocab = {name: j for j, name in enumerate(sorted(names))}
    gold = indicators([first[i][0] for i in common], vocab)
    preds = [indicators([rows[i][1] for i in common], vocab) for rows in loaded]
    return gold, preds[: len(runs_a)], preds[len(runs_a) :], multi_label


def point_table(runs: list[dict[str, Any]], dataset: str, models: list[str], metric: str) -> list[dict[str, Any]]:
    """Every grid point of ``models`` on ``dataset``: mean validation and test ``metric`` over its seeds that have
    both (under --on a seed not yet scored on the input would weigh in its validation score alone)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        if r["dataset"] == dataset and r["model"] in models:
            groups.setdefault((r["model"], json.dumps(r.get("grid") or {}, sort_keys=True)), []).append(r)
    table = []
    for (model, grid), members in sorted(groups.items()):
        members = report.one_run_per_seed(members, quiet=True)  # a seed trained twice counts once, as in the table
        members = [m for m in members if None not in (m.get(f"val_{metric}"), m.get(f"test_{metric}"))]
        val, test = mean_of(members, f"val_{metric}"), mean_of(members, f"test_{metric}")
        if val is not None and test is not None:
            table.append({"model": model, "grid": json.loads(grid), "val": val, "test": test})
    return table


def compare_dataset(
    dataset: str,
    point_a: dict[str, Any],
    point_b: dict[str, Any],
    runs: list[dict[str, Any]],
    args: argparse.Namespace,
    rng: np.random.Generator,
    comparisons: int,
) -> dict[str, Any]:
    """Δ statistics of A vs B on one dataset over the seeds both sides ran (Holm and winner are set later)."""
    seeds_a, seeds_b = scored_seeds(point_a, args.metric), scored_seeds(point_b, args.metric)
    seeds = sorted(set(seeds_a) & set(seeds_b))
    runs_a, runs_b = [seeds_a[s] for s in seeds], [seeds_b[s] for s in seeds]
    key = f"test_{args.metric}"
    score_a = [r[key] for r in runs_a]
    score_b = [r[key] for r in runs_b]
    deltas = np.subtract(score_a, score_b)
    out: dict[str, Any] = {
        "seeds": seeds,
        "unpaired_seeds": sorted(set(seeds_a) ^ set(seeds_b)),
        "a_grid": point_a["grid"],
        "b_grid": point_b["grid"],
        "a_selection_margin": point_a.get("margin"),
        "b_selection_margin": point_b.get("margin"),
        "a_mean": seed_mean(score_a),
        "b_mean": seed_mean(score_b),
        "a_std": float(np.std(score_a, ddof=1)) if len(seeds) > 1 else None,
        "b_std": float(np.std(score_b, ddof=1)) if len(seeds) > 1 else None,
        # 0 when the means tie, by report.tied: 0.8 and 0.9 against 0.85 twice differ by 1e-16, ahead on no side.
        "delta_mean": 0.0
        if report.tied(seed_mean(score_a), seed_mean(score_b))
        else seed_mean(score_a) - seed_mean(score_b),
        "delta_std": float(deltas.std(ddof=1)) if len(seeds) > 1 else None,
        "delta_per_seed": [float(d) for d in deltas],
        "notes": [],
    }
    if out["unpaired_seeds"]:
        out["notes"].append(f"seeds {out['unpaired_seeds']} have a {scored_label(args)} on one side only: left out")
    # Under --on a run scored before the input was added has none of its scores: a mean over fewer seeds than ran.
    ran = set(by_seed(point_a["runs"])) | set(by_seed(point_b["runs"]))
    if unscored := sorted(ran - set(seeds_a) - set(seeds_b)):
        out["notes"].append(
            f"seeds {unscored} have no {scored_label(args)} on either side: left out{SCORE_THEM * bool(args.on)}"
        )
    for side, point in ((args.a, point_a), (args.b, point_b)):
        if point.get("seeds_differ"):
            out["notes"].append(
                f"{side}'s grid point was selected among points that ran different seeds ({point['seeds_differ']})"
            )
    # Library versions change kernels, tokenizers and defaults, a device or thread count the kernels and the dropout
    # stream: a Δ between runs on other set-ups may be theirs.
    differ = report.environment_differences({args.a: runs_a, args.b: runs_b}, model_files=False)
    out["versions_differ"] = "; ".join(differ) or None
    for side, side_runs in ((args.a, runs_a), (args.b, runs_b)):
        seeds_of = {f"seed {r['seed']}": [r] for r in side_runs}
        if files := report.environment_differences(seeds_of, versions=False):
            out["notes"].append(f"{side}'s seeds ran on different {'; '.join(files)} (its model folder changed?)")
    arrays = prediction_arrays(runs_a, runs_b)
    if isinstance(arrays, str):
        out |= {"ci_low": None, "ci_high": None, "p_value": None}
        out["notes"].append(f"bootstrap not computed: {arrays}")
    else:
        gold, preds_a, preds_b, multi_label = arrays
        point, replicates = paired_bootstrap(gold, preds_a, preds_b, args.metric, multi_label, args.bootstrap, rng)
        out |= bootstrap_summary(replicates, args.alpha) | {"n_test_examples": len(gold), "delta_recomputed": point}
        if abs(point - out["delta_mean"]) > 1e-4:
            out["notes"].append(
                f"Δ recomputed from predictions ({point:+.4f}) differs from results.json ({out['delta_mean']:+.4f})"
            )
    if len(seeds) >= 2:
        out["aso_eps_min_a"], out["aso_eps_min_b"] = aso_eps_min(
            score_a, score_b, args.aso_bootstrap, args.seed, args.alpha, comparisons
        )
    else:
        out["aso_eps_min_a"] = out["aso_eps_min_b"] = None
        out["notes"].append("ASO not computed: it needs ≥ 2 paired seeds")
    # Validation vs test: do the grid points of A and B rank the same way on both splits?
    table = point_table(runs, dataset, [args.a, args.b], args.metric)
    out["val_test_tau"] = kendall_tau([p["val"] for p in table], [p["test"] for p in table])
    out["n_grid_points"] = len(table)
    val = {side: mean_of(rs, f"val_{args.metric}") for side, rs in (("A", runs_a), ("B", runs_b))}
    test = {"A": out["a_mean"], "B": out["b_mean"]}
    out["a_val_test_drop"] = val["A"] - test["A"] if val["A"] is not None else None
    out["b_val_test_drop"] = val["B"] - test["B"] if val["B"] is not None else None
    # Means equal but for their last bits tie (report.tied), as grid points and a dataset's winner do.
    val_winner = None if None in val.values() or report.tied(val["A"], val["B"]) else max(val, key=val.get)
    test_winner = None if report.tied(test["A"], test["B"]) else max(test, key=test.get)
    out["val_winner"], out["test_winner"] = val_winner, test_winner
    out["val_winner_loses_on_test"] = val_winner is not None and test_winner is not None and val_winner != test_winner
    return out


def resamples_needed(comparisons: int, alpha: float) -> int:
    """The fewest bootstrap resamples whose smallest p, 2 / (B + 1), stays below ``alpha`` after Holm over
    ``comparisons`` datasets (which multiplies the smallest p by their number)."""
    n = math.floor(2 * comparisons / alpha)
    return n if 2 * comparisons / (n + 1) < alpha else n + 1


def decide(per_dataset: dict[str, dict[str, Any]], alpha: float, n_boot: int) -> None:
    """Holm-correct the bootstrap p-values across datasets and set each dataset's ``significant`` and ``winner``
    (a win needs ≥ 2 paired seeds: one seed says nothing of the seed noise)."""
    tested = [d for d, r in per_dataset.items() if r["p_value"] is not None]
    for dataset, p in zip(tested, holm([per_dataset[d]["p_value"] for d in tested]), strict=True):
        per_dataset[dataset]["p_holm"] = p
    floor = 2 / (n_boot + 1)  # bootstrap_summary's p when no resample falls on the other side of 0
    for r in per_dataset.values():
        r.setdefault("p_holm", None)
        r["significant"] = r["p_holm"] is not None and r["p_holm"] < alpha
        side = "A" if r["delta_mean"] > 0 else "B"
        # Δ beyond every resample, yet not significant: the number of resamples decided that, not the data.
        at_floor = r["p_value"] is not None and r["p_value"] <= floor * (1 + 1e-9)
        r["resamples_too_few"] = at_floor and not r["significant"] and r["delta_mean"] != 0
        if r["resamples_too_few"]:
            r["notes"].append(
                f"{side} is ahead in all {n_boot} bootstrap resamples, but {n_boot} resamples cannot give a p below "
                f"{floor:.3g}, which Holm over {len(tested)} datasets raises to {r['p_holm']:.3g} ≥ α = {alpha:g}: "
                f"rerun with --bootstrap {resamples_needed(len(tested), alpha)} or more"
            )
        eps = r["aso_eps_min_a"] if side == "A" else r["aso_eps_min_b"]
        # A win must survive both noises: the test examples drawn (bootstrap) and the seeds (ASO, which needs ≥ 2
        # paired seeds: without it a single lucky seed would win the dataset).
        ahead = r["significant"] and r["delta_mean"] != 0
        r["winner"] = side if ahead and eps is not None and eps < ASO_TAU else None
        if ahead and eps is None:
            r["notes"].append(
                f"no win with {len(r['seeds'])} paired seed: {side} is ahead beyond the test-example bootstrap, but a "
                "win needs ≥ 2 paired seeds (ASO over seeds)"
            )


# ---- A vs B ------------------------------------------------------------------------------------------------------


def compare_pair(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """The full A-vs-B result: per-dataset statistics, the tests across datasets, power advice and the verdict."""
    selection = report.select_grid_points(runs)
    datasets = sorted({r["dataset"] for r in runs})
    skipped: dict[str, str] = {}
    pairs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for dataset in datasets:
        point_a, point_b = selection.get((dataset, args.a)), selection.get((dataset, args.b))
        lacking = [name for name, point in ((args.a, point_a), (args.b, point_b)) if not point or not point["runs"]]
        if lacking:
            skipped[dataset] = f"no runs of {' and '.join(lacking)}"
        elif not set(scored_seeds(point_a, args.metric)) & set(scored_seeds(point_b, args.metric)):
            listed = seed_sets({args.a: point_a, args.b: point_b}, args.metric)
            skipped[dataset] = f"no seed with a {scored_label(args)} on both sides ({listed})"
        elif reason := different_test_sets([point_a, point_b]):
            skipped[dataset] = reason
        else:
            pairs[dataset] = (point_a, point_b)
    for dataset, reason in copied_datasets({d: list(points) for d, points in pairs.items()}).items():
        skipped[dataset] = reason
        del pairs[dataset]
    rng = np.random.default_rng(args.seed)
    per_dataset = {d: compare_dataset(d, a, b, runs, args, rng, comparisons=len(pairs)) for d, (a, b) in pairs.items()}
    decide(per_dataset, args.alpha, args.bootstrap)
    result: dict[str, Any] = {"a": args.a, "b": args.b, "metric": scored_label(args), "rope": args.rope}
    result |= {"alpha": args.alpha, "datasets_compared": list(per_dataset), "datasets_skipped": skipped}
    notes: list[str] = []
    x = np.array([r["a_mean"] for r in per_dataset.values()])
    y = np.array([r["b_mean"] for r in per_dataset.values()])
    if len(per_dataset) >= 2:
        result["p_a_better"], result["p_equivalent"], result["p_b_better"] = signed_rank_probs(
            x, y, args.rope, args.seed
        )
        if len(per_dataset) < 5:
            notes.append(
                f"only {len(per_dataset)} datasets: the Bayesian signed-rank posterior leans on its prior (a pseudo-"
                "dataset with Δ = 0), so it is cautious"
            )
    else:
        result["p_a_better"] = result["p_equivalent"] = result["p_b_better"] = None
        notes.append(f"the Bayesian signed-rank test across datasets needs ≥ 2 datasets, found {len(per_dataset)}")
    if len(per_dataset) >= MIN_WILCOXON_DATASETS:
        result["wilcoxon_p"] = wilcoxon_p(x, y)
    else:
        result["wilcoxon_p"] = None
        notes.append(f"Wilcoxon across datasets needs ≥ {MIN_WILCOXON_DATASETS} datasets, found {len(per_dataset)}")
    result["datasets_a_wins"] = sum(r["winner"] == "A" for r in per_dataset.values())
    result["datasets_b_wins"] = sum(r["winner"] == "B" for r in per_dataset.values())
    result["datasets_a_ahead"] = sum(r["delta_mean"] > 0 for r in per_dataset.values())
    result["datasets_b_ahead"] = sum(r["delta_mean"] < 0 for r in per_dataset.values())
    result["conclusion"] = conclusion(result, args.a, args.b)
    # Power advice only when nothing was decided: how many seeds would make the observed Δ detectable.
    advise = result["conclusion"] in ("not distinguishable", "not computed")
    for dataset, r in per_dataset.items():
        undecided = advise and r["winner"] is None
        r["seeds_needed"] = seeds_needed(r["delta_mean"], r["delta_std"], args.alpha) if undecided else None
        if undecided and r["delta_std"] is None:
            notes.append(f"{dataset}: seeds needed not estimated: the seed noise needs ≥ 2 paired seeds")
        elif undecided and r["seeds_needed"] is None:
            notes.append(f"{dataset}: Δ = {r['delta_mean']:+.4f} is too small for any practical number of seeds")
        elif undecided and r["resamples_too_few"]:
            r["seeds_needed"] = None  # its note names the --bootstrap that decides it
        elif undecided and r["seeds_needed"] <= len(r["seeds"]) and r["p_value"] is not None and not r["significant"]:
            # The seeds already agree enough and the bootstrap over the test examples is what did not separate A and
            # B (when it did, ASO's seed check held the win back, and more seeds are the right advice).
            notes.append(
                f"{dataset}: the {len(r['seeds'])} seeds run are as many as the seed noise needs; the test split's size "
                "(the bootstrap interval) is what leaves Δ undecided: more seeds would not settle it, more test rows would"
            )
            r["seeds_needed"] = None
    result["per_dataset"] = per_dataset
    result["notes"] = notes + [f"{d}: {n}" for d, r in per_dataset.items() for n in r["notes"]]
    result["versions_differ"] = {d: r["versions_differ"] for d, r in per_dataset.items() if r["versions_differ"]}
    result["verdict"] = verdict(result, args.a, args.b)
    return result


def scored_label(args: argparse.Namespace) -> str:
    """What the verdict scores: the test metric, or a scored input's (--on)."""
    return f"{scored_data(args)} {args.metric}"


def scored_data(args: argparse.Namespace) -> str:
    """The data the verdict scores, as its text names it: ``test``, or ``held-out <name>`` under --on."""
    return f"held-out {args.on}" if args.on else "test"


def conclusion(result: dict[str, Any], a: str, b: str) -> str:
    """What the Bayesian test across datasets decides at ``DECISIVE`` posterior probability."""
    if result["p_a_better"] is None:
        return "not computed"
    if result["p_a_better"] >= DECISIVE:
        return f"{a} is better"
    if result["p_b_better"] >= DECISIVE:
        return f"{b} is better"
    if result["p_equivalent"] >= DECISIVE:
        return "practically equivalent"
    return "not distinguishable"


def verdict(result: dict[str, Any], a: str, b: str) -> str:
    """The plain-language one-liner."""
    n = len(result["per_dataset"])
    if n == 0:
        return f"no dataset has runs of both {a} and {b}: nothing to compare"
    # A dataset whose bootstrap could not run (predictions missing) cannot be won: said here, or the count of
    # significant wins reads as if it had been tested and found no difference.
    untested = [d for d, r in result["per_dataset"].items() if r.get("ci_low") is None]
    not_tested = f"; not tested on {len(untested)} of {counted(n, 'dataset')}, {', '.join(untested)}: no bootstrap, "
    not_tested += "see the notes"
    head = (
        f"{a} > {b} on {result['datasets_a_ahead']}/{n} datasets and {b} > {a} on {result['datasets_b_ahead']}/{n} "
        f"(significant wins: {result['datasets_a_wins']} vs {result['datasets_b_wins']}{not_tested if untested else ''})"
    )
    if result["p_a_better"] is None:
        text = f"{head}; across datasets: not computed (the Bayesian signed-rank test needs ≥ 2 datasets, found {n})"
    else:
        text = (
            f"{head}; across datasets P({a} better) = {result['p_a_better']:.2f}, P(equivalent within "
            f"±{result['rope']:g}) = {result['p_equivalent']:.2f}, P({b} better) = {result['p_b_better']:.2f}: "
            f"{result['conclusion']}"
        )
    return text + one_seed_caution(result["per_dataset"]) + versions_caution(result["versions_differ"])


def one_seed_caution(per_dataset: dict[str, dict[str, Any]]) -> str:
    """The verdict's caution when the scores of some datasets are one seed's (empty when none are): a mean over one
    seed says nothing of the seed noise, which the verdict would otherwise seem to have weighed."""
    single = [d for d, r in per_dataset.items() if len(r["seeds"]) == 1]
    if not single:
        return ""
    return (
        f"; CAUTION: on {len(single)} of {counted(len(per_dataset), 'dataset')} ({', '.join(single)}) the scores compared rest "
        "on one seed per model, so the seed noise is unmeasured: run more seeds"
    )


def versions_caution(differ: dict[str, str]) -> str:
    """The verdict's caution when runs it compares ran on other library versions, devices or CPU thread counts
    (empty when none did)."""
    if not differ:
        return ""
    return (
        f"; CAUTION: the runs compared ran on different {SETUP} on {counted(len(differ), 'dataset')} "
        f"({', '.join(differ)}), which may account for the differences"
    )


# ---- --all -------------------------------------------------------------------------------------------------------


def rank_all(runs: list[dict[str, Any]], args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Rank every model at its selected grid point over the datasets where all of them ran."""
    selection = report.select_grid_points(runs)
    models = sorted({r["model"] for r in runs})
    datasets = sorted({r["dataset"] for r in runs})
    key = f"test_{args.metric}"
    complete, skipped, notes = [], {}, []
    paired: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (dataset, model) -> the runs of the seeds all ran
    for dataset in datasets:
        points = [selection.get((dataset, m)) for m in models]
        lacking = [m for m, p in zip(models, points, strict=True) if not p or mean_of(p["runs"], key) is None]
        if lacking:
            skipped[dataset] = f"no {scored_label(args)} for {', '.join(lacking)}"
            continue
        # Runs are paired by (dataset, seed), as for A vs B: a model's seed that another lacks (failed, or added
        # later to one model) would compare a mean over other seeds.
        by_model = [scored_seeds(p, args.metric) for p in points]
        common = sorted(set.intersection(*(set(s) for s in by_model)))
        if not common:
            listed = seed_sets(dict(zip(models, points, strict=True)), args.metric)
            skipped[dataset] = f"no seed with a {scored_label(args)} for every model ({listed})"
        elif reason := different_test_sets(points):
            skipped[dataset] = reason
        else:
            complete.append(dataset)
            paired |= {(dataset, m): [runs[s] for s in common] for m, runs in zip(models, by_model, strict=True)}
            if unpaired := sorted(set().union(*by_model) - set(common)):
                notes.append(
                    f"{dataset}: seeds {unpaired} left out: not run (with a {scored_label(args)}) by every model"
                )
            ran = set().union(*(by_seed(p["runs"]) for p in points))
            if unscored := sorted(ran - set().union(*by_model)):
                notes.append(
                    f"{dataset}: seeds {unscored} have no {scored_label(args)} for any model: left out"
                    + SCORE_THEM * bool(args.on)
                )
    for dataset, reason in copied_datasets({d: [selection[(d, m)] for m in models] for d in complete}).items():
        skipped[dataset] = reason
        complete.remove(dataset)
    scores = np.array([[mean_of(paired[(d, m)], key) for m in models] for d in complete]).reshape(
        len(complete), len(models)
    )
    # Rank 1 is the best test score on a dataset; ties share the mean rank.
    ranks = np.array([stats.rankdata(-row) for row in scores]).reshape(scores.shape)
    order = np.argsort(ranks.mean(axis=0)) if len(complete) else np.arange(len(models))
    ranking = [
        {
            "model": models[j],
            "mean_rank": float(ranks[:, j].mean()) if len(complete) else None,
            "mean_score": float(scores[:, j].mean()) if len(complete) else None,
        }
        for j in order
    ]
    per_dataset = {}
    for i, dataset in enumerate(complete):
        points = [selection[(dataset, m)] for m in models]
        val = [mean_of(paired[(dataset, m)], f"val_{args.metric}") for m in models]
        test = list(scores[i])
        have_val = all(v is not None for v in val)
        val_winner = sole_best(models, val) if have_val else None
        test_winner = sole_best(models, test)
        differ = report.environment_differences({m: paired[(dataset, m)] for m in models}, model_files=False)
        per_dataset[dataset] = {
            "seeds": [r["seed"] for r in paired[(dataset, models[0])]],
            "versions_differ": "; ".join(differ) or None,
            "scores": dict(zip(models, map(float, test), strict=True)),
            "grids": {m: p["grid"] for m, p in zip(models, points, strict=True)},
            "val_test_tau": kendall_tau(val, test) if have_val else None,
            "val_winner": val_winner,
            "test_winner": test_winner,
            "val_winner_loses_on_test": val_winner is not None
            and not report.tied(test[models.index(val_winner)], max(test)),
        }
    result: dict[str, Any] = {"models": models, "metric": scored_label(args), "datasets_compared": complete}
    result |= {"datasets_skipped": skipped, "ranking": ranking, "per_dataset": per_dataset}
    result["friedman_p"] = result["critical_difference"] = result["omnibus"] = result["posthoc"] = None
    if len(complete) >= MIN_AUTORANK_DATASETS and len(models) >= 2:
        result |= run_autorank(scores, complete, models, args, out_dir, notes)
    else:
        notes.append(f"autorank needs ≥ {MIN_AUTORANK_DATASETS} datasets with every model, found {len(complete)}")
    best = ranking[0]["model"] if ranking else None
    pairwise = {}
    if best is not None and len(complete) >= 2:
        for j, model in enumerate(models):
            if model != best:
                x, y = scores[:, models.index(best)], scores[:, j]
                p_best, p_eq, p_other = signed_rank_probs(x, y, args.rope, args.seed)
                pairwise[model] = {"p_best_better": p_best, "p_equivalent": p_eq, "p_other_better": p_other}
    elif best is not None:
        notes.append(f"the Bayesian signed-rank test needs ≥ 2 datasets with every model, found {len(complete)}")
    result["pairwise_vs_best"] = pairwise
    result["notes"] = notes
    result["versions_differ"] = {d: r["versions_differ"] for d, r in per_dataset.items() if r["versions_differ"]}
    result["verdict"] = verdict_all(result, best, args.rope) + one_seed_caution(per_dataset)
    result["verdict"] += versions_caution(result["versions_differ"])
    return result


def sole_best(models: list[str], scores: list[float]) -> str | None:
    """The model with the highest score, or None when several share it (as A vs B names no winner of a tie)."""
    at_top = [m for m, score in zip(models, scores, strict=True) if report.tied(score, max(scores))]
    return at_top[0] if len(at_top) == 1 else None


def run_autorank(
    scores: np.ndarray, datasets: list[str], models: list[str], args: argparse.Namespace, out_dir: Path, notes: list
) -> dict[str, Any]:
    """Friedman + Nemenyi (autorank, forced non-parametric) and the critical-difference diagram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from autorank import autorank, plot_stats

    frame = pd.DataFrame(scores, index=datasets, columns=models)
    # autorank prints its choices even with verbose=False; stdout is kept for our lines and the final JSON.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # normality tests on a handful of rows warn
        # Forced non-parametric: with few datasets normality cannot be judged, and Friedman + Nemenyi is the
        # field's standard for many models on many datasets (Demšar 2006).
        ranked = autorank(frame, alpha=args.alpha, verbose=False, force_mode="nonparametric", random_state=args.seed)
    # All-equal columns give a nan p-value: reported as not computed.
    p_value = float(ranked.pvalue) if ranked.pvalue is not None and np.isfinite(ranked.pvalue) else None
    if ranked.omnibus == "wilcoxon":
        # Of two models autorank tests one-sided towards the one the data show ahead, which halves the p of a
        # question asked after the fact: the two-sided test A vs B reports is the one that answers "do they differ".
        p_value = wilcoxon_p(scores[:, 0], scores[:, 1])
    out = {"friedman_p": p_value, "omnibus": ranked.omnibus, "posthoc": ranked.posthoc}
    out["critical_difference"] = float(ranked.cd) if ranked.cd is not None else None
    if ranked.posthoc == "nemenyi":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ax = plot_stats(ranked, allow_insignificant=True)
        path = out_dir / f"{file_stem('compare_all', args)}_cd.png"
        atomic_savefig(ax.figure, path, dpi=120)
        plt.close(ax.figure)
        out["cd_diagram"] = str(path)
    else:
        notes.append(f"no critical-difference diagram: autorank ran {ranked.omnibus} (two models)")
    return out


def verdict_all(result: dict[str, Any], best: str | None, rope: float) -> str:
    """The plain-language one-liner of --all: each pair of the first model and another says P(better), P(equivalent)
    and what they decide, as A vs B does."""
    n = len(result["datasets_compared"])
    if best is None or n == 0:
        return "no dataset has runs of every model: nothing to rank"
    first = result["ranking"][0]["mean_rank"]
    # Models of one mean rank share it: naming the one sorted first would call it better.
    tied = [r["model"] for r in result["ranking"] if r["mean_rank"] == first]
    who = f"{best} ranks first" if len(tied) == 1 else f"{', '.join(tied)} share the first rank"
    head = f"{who} (mean rank {first:.2f} of {len(result['models'])} over {counted(n, 'dataset')})"
    if result["friedman_p"] is not None:
        head += f"; {result['omnibus']} p = {result['friedman_p']:.3g}"
        if result["critical_difference"] is not None:
            head += f", Nemenyi CD = {result['critical_difference']:.2f}"
    if result["pairwise_vs_best"]:
        side = "vs" if len(tied) == 1 else f"{best} vs"  # of several firsts, the pairs are the first listed's
        parts = [
            f"{side} {m}: P(better) = {p['p_best_better']:.2f}, P(equivalent within ±{rope:g}) = "
            f"{p['p_equivalent']:.2f}: "
            + conclusion({"p_a_better": p["p_best_better"], "p_b_better": p["p_other_better"]} | p, best, m)
            for m, p in result["pairwise_vs_best"].items()
        ]
        head += "; " + "; ".join(parts)
    return head


# ---- output ------------------------------------------------------------------------------------------------------


def slug(name: str) -> str:
    """A model name as a file-name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def file_stem(stem: str, args: argparse.Namespace) -> str:
    """The report files' name: a verdict on a scored input (--on) gets its own, so the test verdict's stay."""
    return f"{stem}_on_{slug(args.on)}" if args.on else stem


def own_stem(out_dir: Path, stem: str, title: str) -> str:
    """``stem``, or ``stem`` with a digest of ``title`` where a report of that name holds another comparison: names
    that differ only in characters a file name leaves out ('my model', 'my_model') must not replace each other's."""
    existing = out_dir / f"{stem}.md"
    try:
        first = existing.read_text(encoding="utf-8").split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return stem  # none yet (or unreadable: written over, as before)
    return stem if first == title else f"{stem}-{hashlib.sha1(title.encode()).hexdigest()[:8]}"


def num(value: Any, digits: int = 4, signed: bool = False) -> str:
    """A number for a table (``-`` when missing)."""
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def json_safe(obj: Any) -> Any:
    """Plain JSON: numpy scalars as Python numbers, NaN/inf as null, paths and tuples as strings/lists."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


PAIR_COLUMNS = [
    "dataset", "seeds", "a_mean", "a_std", "b_mean", "b_std", "delta_mean", "delta_std", "ci_low", "ci_high",
    "p_value", "p_holm", "aso_eps_min_a", "aso_eps_min_b", "significant", "winner", "val_test_tau",
    "val_winner_loses_on_test", "a_val_test_drop", "b_val_test_drop", "seeds_needed", "a_grid", "b_grid",
    "versions_differ",
]  # fmt: skip


def versions_markdown(differ: dict[str, str]) -> list[str]:
    """A warning paragraph per dataset whose compared runs ran on different set-ups (none when none did)."""
    return [
        f"**Warning:** on {report.md(d)} the runs compared ran on different {SETUP}: {report.md(what)}."
        for d, what in differ.items()
    ] + ([""] if differ else [])


def skipped_and_notes_markdown(result: dict[str, Any]) -> list[str]:
    """A report's last sections: the datasets left out and why, and what could not be computed (none when empty)."""
    lines = []
    if result["datasets_skipped"]:
        lines += ["", "## Skipped datasets", ""]
        lines += [f"- {report.md(d)}: {report.md(why)}" for d, why in result["datasets_skipped"].items()]
    if result["notes"]:
        lines += ["", "## Could not compute / notes", ""] + [f"- {report.md(n)}" for n in result["notes"]]
    return lines


def pair_markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    """The A-vs-B report as Markdown; names are escaped, so a '*' or '|' in one reads as itself."""
    a, b, what = report.md(result["a"]), report.md(result["b"]), report.md(scored_data(args))
    lines = [
        f"# {a} vs {b}",
        "",
        f"**Verdict:** {report.md(result['verdict'])}",
        "",
        *versions_markdown(result["versions_differ"]),
        f"Score: {result['metric']}, each model at its grid point selected on mean validation score. Δ = A − B "
        f"(A = {a}, B = {b}). Bootstrap: {args.bootstrap} resamples of the {what} examples (seed {args.seed}), "
        f"{100 * (1 - args.alpha):g}% percentile interval; p Holm-corrected across datasets. ASO ε_min (deepsig, "
        f"{args.aso_bootstrap} iterations) over seeds: < {ASO_TAU} means that side is almost stochastically better. "
        f"A dataset is won when p (Holm) < {args.alpha:g} and the winner's ε_min < {ASO_TAU}, with ≥ 2 paired seeds.",
        "",
        "| dataset | seeds | A | B | Δ mean ± std | CI | p (Holm) | ε_min A>B / B>A | won by "
        f"| val/{what} τ | val winner loses on {what} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, r in result["per_dataset"].items():
        std = f" ± {r['delta_std']:.4f}" if r["delta_std"] is not None else ""
        ci = f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if r["ci_low"] is not None else "-"
        won = {"A": a, "B": b}.get(r["winner"], "-")
        flag = "**yes**" if r["val_winner_loses_on_test"] else "no"
        lines.append(
            f"| {report.md(dataset)} | {len(r['seeds'])} | {num(r['a_mean'])} | {num(r['b_mean'])} | {r['delta_mean']:+.4f}{std} "
            f"| {ci} | {num(r['p_holm'], 3)} | {num(r['aso_eps_min_a'], 2)} / {num(r['aso_eps_min_b'], 2)} | {won} "
            f"| {num(r['val_test_tau'], 2)} | {flag} |"
        )
    lines += ["", "## Across datasets", ""]
    if result["p_a_better"] is not None:
        lines.append(
            f"Bayesian signed-rank test (baycomp, ROPE ±{result['rope']:g}): P({a} better) = {result['p_a_better']:.3f}, "
            f"P(equivalent) = {result['p_equivalent']:.3f}, P({b} better) = {result['p_b_better']:.3f} → "
            f"{report.md(result['conclusion'])} (decision at {DECISIVE})."
        )
    else:
        lines.append("Bayesian signed-rank test: not computed (needs ≥ 2 datasets).")
    wil = result["wilcoxon_p"]
    lines.append(
        f"Wilcoxon signed-rank p = {wil:.4f}." if wil is not None else "Wilcoxon: not computed (< 6 datasets)."
    )
    lines += ["", f"## Validation vs {what}", ""]
    lines += [
        f"| dataset | A grid point | B grid point | A val→{what} drop | B val→{what} drop | val winner | {what} winner |"
    ]
    lines += ["|---|---|---|---|---|---|---|"]
    for dataset, r in result["per_dataset"].items():
        lines.append(
            f"| {report.md(dataset)} | {report.md(report.grid_text(r['a_grid']))} | {report.md(report.grid_text(r['b_grid']))} "
            f"| {num(r['a_val_test_drop'], signed=True)} "
            f"| {num(r['b_val_test_drop'], signed=True)} | {r['val_winner'] or '-'} | {r['test_winner'] or '-'} |"
        )
    advice = [(d, r["seeds_needed"]) for d, r in result["per_dataset"].items() if r["seeds_needed"] is not None]
    if advice:
        lines += ["", "## Power", ""]
        lines += [f"- {report.md(d)}: {seeds_text(n)} seeds per model to detect Δ = {result['per_dataset'][d]['delta_mean']:+.4f} "
                  f"(paired t, {POWER:.0%} power, α = {args.alpha:g})" for d, n in advice]  # fmt: skip
    return "\n".join(lines + skipped_and_notes_markdown(result)) + "\n"


def pair_csv(result: dict[str, Any], path: Path) -> None:
    """One row per dataset."""
    rows = []
    for dataset, r in result["per_dataset"].items():
        row = {"dataset": dataset} | {k: r.get(k) for k in PAIR_COLUMNS[1:]}
        row["seeds"] = len(r["seeds"])
        row["a_grid"], row["b_grid"] = report.grid_text(r["a_grid"]), report.grid_text(r["b_grid"])
        rows.append(row)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PAIR_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def pair_plot(result: dict[str, Any], rope: float, path: Path, what: str = "test") -> None:
    """Δ per dataset: the bootstrap interval as a bar, the mean as a dot, each seed's Δ as a cross, the ROPE shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["per_dataset"])
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.5 * max(len(names), 1)))
    ax.axvspan(-rope, rope, color="0.9", label=f"ROPE ±{rope:g}")
    ax.axvline(0, color="0.5", lw=0.8)
    for i, name in enumerate(names):
        r = result["per_dataset"][name]
        if r["ci_low"] is not None:
            ax.plot([r["ci_low"], r["ci_high"]], [i, i], color="C0", lw=3, solid_capstyle="butt")
        ax.plot(r["delta_per_seed"], [i] * len(r["delta_per_seed"]), "x", color="C1", ms=5)
        ax.plot([r["delta_mean"]], [i], "o", color="C3" if r["winner"] else "k")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(f"Δ {result['metric']} ({result['a']} − {result['b']})")
    ax.set_title(f"bar: bootstrap CI over {what} examples; x: seeds; dot: mean (red: won)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def all_markdown(result: dict[str, Any], what: str = "test") -> str:
    """The --all report as Markdown; ``what`` names the data scored (test, or a held-out input under --on)."""
    lines = [
        f"# Ranking of {counted(len(result['models']), 'model')}",
        "",
        f"**Verdict:** {report.md(result['verdict'])}",
        "",
    ]
    lines += versions_markdown(result["versions_differ"])
    lines += [f"Score: {result['metric']} at each model's grid point selected on validation; rank 1 is best.", ""]
    lines += ["| model | mean rank | mean score | P(best better) | P(equivalent) |", "|---|---|---|---|---|"]
    for row in result["ranking"]:
        pair = result["pairwise_vs_best"].get(row["model"], {})
        lines.append(
            f"| {report.md(row['model'])} | {num(row['mean_rank'], 2)} | {num(row['mean_score'])} "
            f"| {num(pair.get('p_best_better'), 3)} | {num(pair.get('p_equivalent'), 3)} |"
        )
    if result["omnibus"] is not None:
        lines += ["", f"{result['omnibus']} p = {num(result['friedman_p'], 4)}; post-hoc: {result['posthoc'] or '-'}"]
        if result["critical_difference"] is not None:
            lines[-1] += f", critical difference = {result['critical_difference']:.3f} (see compare_all_cd.png)"
    lines += ["", f"## Validation vs {what}", "", f"| dataset | τ (models) | val winner | {what} winner | flag |"]
    lines += ["|---|---|---|---|---|"]
    for dataset, r in result["per_dataset"].items():
        flag = f"**val winner loses on {what}**" if r["val_winner_loses_on_test"] else ""
        lines.append(
            f"| {report.md(dataset)} | {num(r['val_test_tau'], 2)} | {report.md(r['val_winner'] or '-')} | {report.md(r['test_winner'] or '-')} "
            f"| {flag} |"
        )
    return "\n".join(lines + skipped_and_notes_markdown(result)) + "\n"


def all_csv(result: dict[str, Any], path: Path) -> None:
    """One row per dataset, one column per model's score."""
    models = result["models"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", *models, "val_test_tau", "val_winner_loses_on_test", "versions_differ"])
        for dataset, r in result["per_dataset"].items():
            scores = [r["scores"][m] for m in models]
            writer.writerow([dataset, *scores, r["val_test_tau"], r["val_winner_loses_on_test"], r["versions_differ"]])


# ---- CLI ---------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags, checked: either --all or both --a and --b."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("root", help="Folder searched recursively for finished runs (as scripts/report.py does).")
    parser.add_argument("--a", help="Model A (a name from report.py's model column, or a unique part of it).")
    parser.add_argument("--b", help="Model B.")
    parser.add_argument("--all", action="store_true", help="Rank every model instead of comparing two.")
    parser.add_argument("--rope", type=float, default=0.01, help="Region of practical equivalence for Δ (±).")
    parser.add_argument("--metric", default="macro_f1", choices=COMPARABLE, help="Test metric compared.")
    parser.add_argument("--alpha", type=float, default=0.05, help="Significance level (family-wise, Holm).")
    parser.add_argument("--output_dir", help="Where the report files go (default: ROOT).")
    parser.add_argument("--bootstrap", type=int, default=1000, help="Resamples of the test examples per dataset.")
    parser.add_argument("--aso_bootstrap", type=int, default=1000, help="deepsig ASO bootstrap iterations.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap, ASO and the Bayesian sampler.")
    parser.add_argument(
        "--on", metavar="NAME", help="Judge the scores on a scored input file (RUN/eval_<NAME>.json) instead of test."
    )
    args = parser.parse_args(argv)
    if args.all and (args.a or args.b):
        raise UsageError("--all ranks every model: drop --a/--b, or drop --all to compare two models.")
    if not args.all and not (args.a and args.b):
        raise UsageError("give both --a NAME and --b NAME (or --all to rank every model).")
    # A nan ROPE passes every comparison and gave baycomp's posterior a side on identical scores.
    for flag, ok, rule in (
        ("rope", math.isfinite(args.rope) and args.rope >= 0, "a number ≥ 0"),
        ("alpha", 0 < args.alpha < 1, "in (0, 1)"),
        ("bootstrap", args.bootstrap >= 1, "≥ 1"),
        ("aso_bootstrap", args.aso_bootstrap >= 1, "≥ 1"),
    ):
        if not ok:
            raise UsageError(f"--{flag} {getattr(args, flag):g} must be {rule}.")
    if not 0 <= args.seed < 2**32:  # numpy's, deepsig's and baycomp's generators take no other
        raise UsageError(f"--seed {args.seed} must be in [0, 2**32).")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Compare two models (or rank all), write the report files, print the summary and the JSON line."""
    args = parse_args(argv)
    root = Path(args.root)
    if (missing := report.not_a_campaign_folder(root)) is not None:
        raise UsageError(missing)
    runs = report.load_runs(root)
    if not runs:
        raise UsageError(f"no finished runs (results.json + config.json) under {root}; pass the matrix's output_dir.")
    if args.on:
        runs = scored_on(runs, args.on)
    out_dir = Path(args.output_dir) if args.output_dir else root
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as err:
        raise UsageError(f"--output_dir {out_dir}: a file is in the way ({err.filename}); choose a folder.") from None
    if args.all:
        if len(models := sorted({r["model"] for r in runs})) < 2:
            raise UsageError(
                f"--all ranks two models or more; every run under {root}{f' scored on {args.on}' if args.on else ''} "
                f"is of one model, {models[0]}: nothing to rank."
            )
        result = rank_all(runs, args, out_dir)
        files = [out_dir / f"{file_stem('compare_all', args)}.{ext}" for ext in ("md", "csv")]
        atomic_write_text(files[0], all_markdown(result, scored_data(args)))
        all_csv(result, files[1])
        files += [Path(result["cd_diagram"])] if result.get("cd_diagram") else []
        for row in result["ranking"]:
            print(
                f"{row['model']}: mean rank {num(row['mean_rank'], 2)}, mean {result['metric']} {num(row['mean_score'])}"
            )
    else:
        args.a, args.b = pick_model(args.a, runs, "--a"), pick_model(args.b, runs, "--b")
        if args.a == args.b:
            raise UsageError(f"--a and --b both name {args.a!r}; compare two different models.")
        result = compare_pair(runs, args)
        # Appended, not with_suffix: a name with a dot (learning_rate=0.001, bge-small-en-v1.5) has no suffix.
        stem = file_stem(f"compare_{slug(args.a)}_vs_{slug(args.b)}", args)
        text = pair_markdown(result, args)
        stem = own_stem(out_dir, stem, text.split("\n", 1)[0])
        files = [out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "png")]
        atomic_write_text(files[0], text)
        pair_csv(result, files[1])
        pair_plot(result, args.rope, files[2], scored_data(args))
        if result["per_dataset"]:
            print(f"Δ = {args.a} − {args.b} in {result['metric']}, per dataset:")
        for dataset, r in result["per_dataset"].items():
            ci = f"CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if r["ci_low"] is not None else "no CI"
            won = {"A": args.a, "B": args.b}.get(r["winner"], "no winner")
            flag = f"; validation winner loses on {scored_data(args)}" if r["val_winner_loses_on_test"] else ""
            print(
                f"{dataset}: Δ {r['delta_mean']:+.4f} (seeds {', '.join(map(str, r['seeds']))}), {ci}, p(Holm) {num(r['p_holm'], 3)}: {won}{flag}"
            )
            if r["seeds_needed"] is not None:
                print(
                    f"  {seeds_text(r['seeds_needed'])} seeds per model would detect Δ {r['delta_mean']:+.4f} (80% power)"
                )
    for dataset, what in result["versions_differ"].items():
        print(
            f"warning: {dataset}: the runs compared ran on different {SETUP} ({what}); a difference may be the "
            "set-ups' rather than the models'. Retrain one side on the other's set-up.",
            file=sys.stderr,
        )
    for dataset, why in result["datasets_skipped"].items():
        print(f"skipped {dataset}: {why}")
    for note in result["notes"]:
        print(f"note: {note}")
    print(result["verdict"])
    print(f"wrote {', '.join(str(f) for f in files)}")
    result["files"] = [str(f) for f in files]
    print(json.dumps(json_safe(result)))
    return result


if __name__ == "__main__":
    run_cli(main)
