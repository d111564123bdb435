"""Numbers users can trust: fp32 master weights whatever the stored dtype, honest resume guards, early stopping that
survives a resume, sample counts, accumulation that weighs every example alike, a best model that describes
itself, and a refusal when the requested distributed engine is not the one in effect."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
import train_probe
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel

import evaluate
import train
from conftest import REPO, make_tiny_model, tiny_args
from model import EncoderClassifier


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def probe():
    """train.py's test hooks, removed after the test."""
    yield train_probe
    train_probe.uninstall()


# ---- master weights are fp32 whatever dtype the backbone was stored in -------------------------------------------


@pytest.mark.parametrize("stored", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_half_precision_backbone_trains_fp32_master_weights(stored, precision, tmp_path, monkeypatch, probe):
    from transformers import AutoModel

    backbone = make_tiny_model(tmp_path / "tiny", "bert")
    AutoModel.from_pretrained(backbone, dtype=torch.float32).to(stored).save_pretrained(backbone)
    assert next(iter(load_file(backbone / "model.safetensors").values())).dtype == stored
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", precision)
    dtypes = {}

    def record(accelerator, model, optimizer, finished):
        dtypes.update({n: p.dtype for n, p in accelerator.unwrap_model(model).named_parameters()})
        return train_probe.ORIGINALS["release"](accelerator, model, optimizer, finished)

    monkeypatch.setattr(train, "release_training_state", record)
    out = tmp_path / "run"
    results = train.main(tiny_args(backbone, out, None, "--max_steps", "3", "--eval_steps", "3"))
    assert set(dtypes.values()) == {torch.float32}
    saved = load_file(out / "best_model" / "model.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.float32}
    # One AdamW step moves every trainable entry of fp32 master weights (a bf16 weight swallows small updates).
    initial = load_file(backbone / "model.safetensors")
    pretrained = {k: v for k, v in initial.items() if not k.startswith("pooler.")}  # the classifier pools itself
    moved = [(saved[f"backbone.{k}"].float() != v.float()).float().mean().item() for k, v in pretrained.items()]
    assert min(moved) > 0.9
    # The reload is the validated model: same dtype, same score, in a fresh evaluation.
    assert json.loads((out / "best_model" / "config.json").read_text()).get("dtype") in (None, "float32")
    again = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    assert again["loss"] == pytest.approx(results["validation"]["loss"], rel=1e-6)


# ---- resume guards ------------------------------------------------------------------------------------------------

GUARD_FLAGS = ["--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"]


@pytest.fixture
def interrupted_run(tiny_bert, tmp_path, probe):
    """A run stopped by SIGTERM right after its checkpoint at step 5 (of 12)."""
    out = tmp_path / "interrupted"
    probe.install(block_at=5, self_signal=True)
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, out, None, *GUARD_FLAGS, "--checkpointing_steps", "5"))
    probe.uninstall()
    return out


@pytest.mark.parametrize(
    "changed, named",
    [
        (["--learning_rate", "2e-3"], ["learning_rate"]),
        # Same steps per epoch (8 rows per step either way), so a step-count check alone accepts it.
        (["--per_device_train_batch_size", "8", "--gradient_accumulation_steps", "1"], ["gradient_accumulation_steps"]),
        (["--seed", "7"], ["seed"]),
        (["--max_seq_length", "16"], ["max_seq_length"]),
    ],
)
def test_resume_refuses_changed_settings_and_names_them(interrupted_run, tiny_bert, changed, named, monkeypatch):
    args = tiny_args(tiny_bert, interrupted_run, None, *GUARD_FLAGS, *changed, "--resume_from_checkpoint", "latest")
    # Before the model is built (loading a large one takes a while), as the rest of the bad input is.
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(ValueError, match="--resume_from_checkpoint") as err:
        train.main(args)
    assert all(name in str(err.value) for name in named), str(err.value)


def test_resume_refuses_another_model_head_or_data(tiny_bert, tmp_path, probe):
    # Precision and the number of processes are compared the same way (resolved values in the checkpoint's settings);
    # accelerate's process-wide state keeps an in-process test from changing them.
    data = tmp_path / "data"
    shutil.copytree(REPO / "sample_data", data)
    out = tmp_path / "run"
    probe.install(block_at=5, self_signal=True)
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, out, data, *GUARD_FLAGS, "--checkpointing_steps", "5"))
    probe.uninstall()
    resume = [*GUARD_FLAGS, "--resume_from_checkpoint", "latest"]
    # The same architecture and tokenizer with other weights is another model; the same files elsewhere are not.
    other = shutil.copytree(tiny_bert, tmp_path / "other")
    (other / "model.safetensors").unlink()
    AutoModel.from_config(AutoConfig.from_pretrained(other)).save_pretrained(other)
    with pytest.raises(ValueError, match=r"other settings \(model_files: "):
        train.main(tiny_args(other, out, data, *resume))
    with pytest.raises(ValueError, match=r"other settings .*model_files"):
        train.main(tiny_args(make_tiny_model(tmp_path / "roberta", "roberta"), out, data, *resume))
    with pytest.raises(ValueError, match=r"other settings .*head: checkpoint 'linear', now 'mlp'"):
        train.main(tiny_args(tiny_bert, out, data, *resume, "--head", "mlp"))
    # Rows edited in place: the validation split picks the best state, so it is part of the run as train is.
    original = (data / "validation.csv").read_text()
    (data / "validation.csv").write_text(original.replace("The midfielder was injured", "The keeper was injured"))
    with pytest.raises(ValueError, match=r"other settings .*split_digests"):
        train.main(tiny_args(tiny_bert, out, data, *resume))
    (data / "validation.csv").write_text(original)
    train_rows = (data / "train.csv").read_text().splitlines(keepends=True)
    (data / "train.csv").write_text("".join([train_rows[0], train_rows[1].replace(" ", "  ", 1), *train_rows[2:]]))
    with pytest.raises(ValueError, match=r"other settings .*split_digests"):
        train.main(tiny_args(tiny_bert, out, data, *resume))
    # The same rows in files written again, elsewhere (a dataset copied anew to a requeued job's scratch), resume.
    (data / "train.csv").write_text("".join(train_rows))
    # So does the model copied there too.
    copied = shutil.copytree(data, tmp_path / "scratch" / "data")
    os.utime(copied / "validation.csv", (time.time() + 60, time.time() + 60))
    model_copy = shutil.copytree(tiny_bert, tmp_path / "scratch" / "model")
    assert train.main(tiny_args(model_copy, out, copied, *resume))["global_step"] == 12


def test_resume_refuses_a_checkpoint_of_an_older_version(interrupted_run, tiny_bert):
    meta_file = interrupted_run / "checkpoints" / "step_000005" / "meta.json"
    meta = json.loads(meta_file.read_text())
    # Written before batches were seeded by (seed, epoch) and the data compared by content.
    old = {k: v for k, v in meta["settings"].items() if k not in ("split_digests", "batch_order")}
    meta_file.write_text(json.dumps(meta | {"settings": old | {"train_data_fingerprint": "1088e081065bf1bd"}}))
    args = tiny_args(tiny_bert, interrupted_run, None, *GUARD_FLAGS, "--resume_from_checkpoint", "latest")
    with pytest.raises(
        ValueError, match=r"written by an older train.py \(its settings lack split_digests, batch_order"
    ):
        train.main(args)


def test_a_checkpoint_with_settings_its_run_never_used_resumes(interrupted_run, tiny_bert):
    """A run started when --focal_gamma, --window_pooling, --distill_alpha and --consistent_decoding were taken (and
    ignored) without the flag that uses them recorded them: it resumes without them, as it computes the same."""
    meta_file = interrupted_run / "checkpoints" / "step_000005" / "meta.json"
    meta = json.loads(meta_file.read_text())
    ignored = {"focal_gamma": 3.0, "window_pooling": "max", "distill_alpha": 0.9, "consistent_decoding": True}
    args = tiny_args(tiny_bert, interrupted_run, None, *GUARD_FLAGS, "--resume_from_checkpoint", "latest")
    # Where the flag that uses one is given, it is compared as every setting is.
    meta_file.write_text(json.dumps(meta | {"settings": meta["settings"] | ignored | {"loss": "focal"}}))
    with pytest.raises(ValueError, match=r"other settings \(focal_gamma: checkpoint 3.0, now 2.0\)"):
        train.main([*args, "--loss", "focal"])
    meta_file.write_text(json.dumps(meta | {"settings": meta["settings"] | ignored}))
    assert train.main(args)["global_step"] == 12


def test_resume_refuses_loss_weights_other_than_the_checkpoints(tiny_bert, tmp_path, probe, monkeypatch):
    """Flags compare equal (--class_weights balanced) while the weights they resolve to differ (a train.py that
    computed "balanced" over rows, not windows): the resume must not go on silently with other weights."""
    out = tmp_path / "run"
    flags = [*GUARD_FLAGS, "--class_weights", "balanced", "--eval_steps", "2"]
    probe.install(block_at=5, self_signal=True)
    with pytest.raises(SystemExit):
        train.main(tiny_args(tiny_bert, out, None, *flags, "--checkpointing_steps", "5"))
    probe.uninstall()
    checkpoint = out / "checkpoints" / "step_000005"
    meta = json.loads((checkpoint / "meta.json").read_text())
    recorded = meta["settings"]["loss_weights"]["class_weights"]
    assert json.loads((out / "config.json").read_text())["resolved"]["loss_weights"]["class_weights"] == recorded
    # A checkpoint written before the weights were recorded: its best_model/ copy holds the ones it trained with.
    older = {k: v for k, v in meta["settings"].items() if k != "loss_weights"}
    (checkpoint / "meta.json").write_text(json.dumps(meta | {"settings": older}))
    config_file = checkpoint / "best_model" / "config.json"
    config = json.loads(config_file.read_text())
    assert config["class_weights"] == recorded
    config_file.unlink()  # a hard link to the run's best_model/config.json: write a file of its own
    config_file.write_text(json.dumps(config | {"class_weights": [[w * 2 for w in recorded[0]]]}))
    args = tiny_args(tiny_bert, out, None, *flags, "--resume_from_checkpoint", "latest")
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(train.UsageError, match=r"trained with other loss weights .*\(class_weights: checkpoint \[\["):
        train.main(args)
    # The checkpoint's own record wins over its best_model/ copy, compared to float rounding as the copy is (a
    # version that sums the same counts in another order resumes).
    nudged = [[w * (1 + 1e-12) for w in recorded[0]]]
    settings = meta["settings"] | {"loss_weights": {"class_weights": nudged}}
    (checkpoint / "meta.json").write_text(json.dumps(meta | {"settings": settings}))
    monkeypatch.undo()
    assert train.main(args)["global_step"] == 12


def test_a_checkpoint_cut_off_by_a_kill_is_never_resumed_from(interrupted_run, tiny_bert):
    partial = interrupted_run / "checkpoints" / ".step_000009.tmp"  # save_state was writing it when the kill came
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"cut off")
    assert [p.name for p in train.checkpoint_dirs(interrupted_run)] == ["step_000005"]
    args = tiny_args(tiny_bert, interrupted_run, None, *GUARD_FLAGS, "--resume_from_checkpoint", "latest")
    assert train.main(args)["global_step"] == 12
    steps = [r["step"] for r in read_jsonl(interrupted_run / "metrics.jsonl") if "loss" in r]
    assert steps == [10, 12]  # resumed at step 5, not at the cut-off step 9
    assert not partial.exists()  # a model and its optimizer state's worth of disk: removed by the resume


def test_resume_from_a_checkpoint_path_continues_in_its_run_folder(interrupted_run, tiny_bert, tmp_path):
    checkpoint = interrupted_run / "checkpoints" / "step_000005"
    args = tiny_args(tiny_bert, interrupted_run, None, *GUARD_FLAGS)
    at = args.index("--output_dir")
    del args[at : at + 2]  # no --output_dir: the checkpoint says which run it belongs to
    results = train.main([*args, "--resume_from_checkpoint", str(checkpoint)])
    assert results["global_step"] == 12
    assert json.loads((interrupted_run / "results.json").read_text())["global_step"] == 12
    steps = [r["step"] for r in read_jsonl(interrupted_run / "metrics.jsonl") if "loss" in r]
    assert steps == [10, 12]
    # Another --output_dir than the checkpoint's own run is refused, not trained into.
    with pytest.raises(ValueError, match="belongs to the run"):
        train.main(
            [
                *tiny_args(tiny_bert, tmp_path / "elsewhere", None, *GUARD_FLAGS),
                "--resume_from_checkpoint",
                str(checkpoint),
            ]
        )


# ---- early stopping survives a resume -----------------------------------------------------------------------------


def test_resumed_early_stopped_run_stays_stopped(tiny_bert, tmp_path):
    out = tmp_path / "run"
    flags = ["--max_steps", "20", "--eval_steps", "2", "--checkpointing_steps", "2", "--learning_rate", "1e-12"]
    flags += ["--early_stopping_patience", "1", "--classifier_dropout", "0"]
    first = train.main(tiny_args(tiny_bert, out, None, *flags))
    assert first["stopped_early"] and first["global_step"] == 4
    # A crash after the stop decision (the checkpoint of step 4 holds it) and before results.json: resume.
    (out / "results.json").unlink()
    # --overwrite_output_dir (a campaign's flags, repeated at its restart) does not wipe the run it resumes.
    resume = ["--resume_from_checkpoint", "latest", "--overwrite_output_dir"]
    again = train.main(tiny_args(tiny_bert, out, None, *flags, *resume))
    assert again["stopped_early"] and again["global_step"] == 4 and again["best_step"] == 2
    assert "--overwrite_output_dir has no effect on a resume" in (out / "train.log").read_text()


# ---- sample counts ------------------------------------------------------------------------------------------------


def multi_label_data(folder: Path) -> Path:
    """60 rows tagged with one or two of three labels, in train/validation/test jsonl files."""
    folder.mkdir(parents=True)
    topics = [("goal", "sports"), ("rain", "weather"), ("chip", "tech")]
    rows = []
    for i in range(60):
        a, b = topics[i % 3], topics[(i // 3) % 3]
        rows.append({"text": f"{a[0]} {b[0]} number {i}", "tags": sorted({a[1], b[1]})})
    for split, part in [("train", rows[:40]), ("validation", rows[40:50]), ("test", rows[50:])]:
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return folder


@pytest.mark.parametrize("task", ["multi_label", "hierarchical", "early_stop"])
def test_throughput_counts_examples_not_label_entries(task, tiny_bert, tmp_path):
    out = tmp_path / "run"
    if task == "multi_label":
        args = tiny_args(tiny_bert, out, multi_label_data(tmp_path / "ml"), "--label_column", "tags")
        expected, last = 2 * 40, 10  # 2 epochs of 40 rows; 5 steps an epoch
    elif task == "hierarchical":
        trec = REPO.parent / "shared" / "data" / "trec"
        args = tiny_args(tiny_bert, out, trec, "--label_columns", "label_coarse", "label_fine")
        args += ["--max_train_samples", "40", "--max_eval_samples", "16"]
        expected, last = 2 * 40, 10
    else:
        args = tiny_args(tiny_bert, out, None, "--max_steps", "20", "--eval_steps", "2", "--learning_rate", "1e-12")
        args += ["--early_stopping_patience", "1", "--classifier_dropout", "0", "--logging_steps", "3"]
        expected, last = 4 * 8, 4  # stopped at step 4 of batch 8; step 4 is in an unfinished logging window
    results = train.main(args)
    assert results["global_step"] == last
    assert results["train_samples_per_s"] * results["train_runtime_s"] == pytest.approx(expected, rel=1e-6)
    logged = [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert logged[-1] == last  # the last (possibly partial) logging window is logged too


# ---- accumulation weighs the last, partial group like a full one --------------------------------------------------


@pytest.mark.parametrize("rows", [40, 41])
def test_partial_accumulation_group_matches_one_big_batch(tmp_path, probe, rows):
    backbone = make_tiny_model(tmp_path / "tiny", "bert")
    config = json.loads((backbone / "config.json").read_text())
    # No dropout anywhere: the two runs draw different masks otherwise.
    (backbone / "config.json").write_text(
        json.dumps(config | {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})
    )
    # 40 rows; batches 4 x accumulation 4 = groups of 4, 4, 2 micro-batches; the same rows as batches of 16 (16, 16,
    # 8) without accumulation, since random (ungrouped) batches of 4 are the batches of 16 cut in four. 41 rows: the
    # last group's micro-batches hold 4, 4 and 1 rows, each row weighing 1/9 as in the big run's last batch of 9.
    common = ["--max_train_samples", str(rows), "--num_train_epochs", "2", "--no-group_by_length"]
    common += ["--classifier_dropout", "0", "--logging_steps", "1", "--max_grad_norm", "0"]
    finals = {}
    for name, flags in [
        ("accumulated", ["--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "4"]),
        ("big", ["--per_device_train_batch_size", "16", "--gradient_accumulation_steps", "1"]),
    ]:
        probe.install(final=str(tmp_path / f"{name}.pt"))
        data = REPO.parent / "shared" / "data" / "emotion"
        train.main(tiny_args(backbone, tmp_path / name, data, *common, *flags, "--max_eval_samples", "16"))
        finals[name] = torch.load(tmp_path / f"{name}.pt")
    for key, big in finals["big"].items():
        assert torch.allclose(finals["accumulated"][key], big, atol=2e-6), key
    losses = [[r["loss"] for r in read_jsonl(tmp_path / n / "metrics.jsonl") if "loss" in r] for n in finals]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


# ---- best_model/ describes itself; a resume reconciles it with the checkpoint --------------------------------------


def test_best_model_is_self_describing_and_reconciled_on_resume(tiny_bert, tmp_path, monkeypatch):
    out = tmp_path / "run"
    flags = ["--max_steps", "10", "--eval_steps", "2", "--checkpointing_steps", "4", "--metric_for_best_model", "loss"]
    real_save, real_evaluate = train.save_best_model, train.evaluate
    saves = []

    def save_then_crash(accelerator, model, tokenizer, path, record):
        real_save(accelerator, model, tokenizer, path, record)
        saves.append(record["step"])
        if record["step"] > 4:  # a hard crash right after a new best_model/, after the checkpoint of step 4
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_best_model", save_then_crash)
    # The scenario needs a new best after the checkpoint of step 4, whatever the tiny model's losses do.
    monkeypatch.setattr(train, "is_better", lambda metric, new, old: True)
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_args(tiny_bert, out, None, *flags))
    monkeypatch.undo()
    described = json.loads((out / "best_model" / "best.json").read_text())
    assert described["step"] == saves[-1] > 4 and described["metric"] == "loss" and "validation" in described

    # The replay after the resume does not reproduce step 6's score exactly (as on GPUs, where kernels are not
    # deterministic): here every later evaluation looks worse, so best_model/ is never saved again.
    def worse(*args, **kwargs):
        metrics = real_evaluate(*args, **kwargs)
        return metrics | {"loss": metrics["loss"] + 10.0}

    monkeypatch.setattr(train, "evaluate", worse)
    results = train.main(tiny_args(tiny_bert, out, None, *flags, "--resume_from_checkpoint", "latest"))
    described = json.loads((out / "best_model" / "best.json").read_text())
    assert results["best_step"] == described["step"] <= 4
    # What results.json says about validation is what the saved best model scores.
    again = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    assert again["loss"] == pytest.approx(results["validation"]["loss"], rel=1e-6)


def test_missing_best_model_after_a_crash_mid_swap_is_restored_on_resume(tiny_bert, tmp_path):
    out = tmp_path / "run"
    flags = ["--max_steps", "8", "--eval_steps", "2", "--checkpointing_steps", "4", "--metric_for_best_model", "loss"]
    train.main(tiny_args(tiny_bert, out, None, *flags))
    reference = json.loads((out / "results.json").read_text())
    logged = [(r["step"], sorted(r)) for r in read_jsonl(out / "metrics.jsonl")]
    losses = {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r}
    # --metric_for_best_model loss keeps the lowest validation loss (the earliest of equal ones).
    evals = [(r["eval_loss"], r["step"]) for r in read_jsonl(out / "metrics.jsonl") if "eval_loss" in r]
    assert len(evals) == 4 and reference["best_step"] == min(evals)[1]
    # The window of a directory swap: the old copy moved away, the new one not yet in place.
    shutil.move(out / "best_model", out / ".best_model.old")
    (out / "results.json").unlink()
    for late in train.checkpoint_dirs(out)[1:]:
        shutil.rmtree(late)
    results = train.main(tiny_args(tiny_bert, out, None, *flags, "--resume_from_checkpoint", "latest"))
    assert results["best_step"] == reference["best_step"]
    assert results["validation"]["loss"] == pytest.approx(reference["validation"]["loss"], rel=1e-6)
    # The evaluations of steps 6 and 8 and the log line of step 8, written after the checkpoint of step 4, were
    # dropped from metrics.jsonl at the resume and logged again: each event once, as in the run before.
    assert [(r["step"], sorted(r)) for r in read_jsonl(out / "metrics.jsonl")] == logged
    assert {r["step"]: r["loss"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r} == pytest.approx(losses)


# ---- the distributed engine asked for is the one in effect ---------------------------------------------------------


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_requested_engine_that_is_not_in_effect_is_refused(engine, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv(f"ACCELERATE_USE_{engine}", "true")
    with pytest.raises(ValueError, match=engine):
        train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--max_steps", "1"))
    assert not (tmp_path / "run" / "best_model").exists()


def test_an_accumulation_set_by_the_launcher_that_differs_from_the_flag_is_refused(tiny_bert, tmp_path, monkeypatch):
    """accelerate takes ACCELERATE_GRADIENT_ACCUMULATION_STEPS (set by a DeepSpeed config or `accelerate launch
    --gradient_accumulation_steps`) over the Accelerator's argument: the loop would then step every 3 micro-batches
    on a schedule sized for every one, end the epochs before the last step, and never evaluate or save a model."""
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "3")
    monkeypatch.setattr(EncoderClassifier, "from_backbone", lambda *a, **k: pytest.fail("a model was built"))
    with pytest.raises(
        ValueError, match=r"ACCELERATE_GRADIENT_ACCUMULATION_STEPS=3 .* --gradient_accumulation_steps 1"
    ):
        train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--gradient_accumulation_steps", "1"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("in_file", "refused"),
    [
        ({"gradient_accumulation_steps": 4}, "gives gradient_accumulation_steps 4"),
        ({}, r"gives gradient_accumulation_steps 1 \(1 when it sets none\)"),
        ({"gradient_accumulation_steps": "auto"}, None),
        ({"gradient_accumulation_steps": 2}, None),
    ],
)
def test_a_deepspeed_configs_accumulation_that_differs_from_the_flag_is_refused(
    in_file, refused, tmp_path, monkeypatch
):
    """accelerate puts a DeepSpeed JSON's gradient_accumulation_steps (1 where it has none) in place of the
    Accelerator's only in prepare(), after the schedule and the epochs were sized on the flag's: the check must see
    it before any model is built. ("auto" takes the flag's.)"""
    from types import SimpleNamespace

    from accelerate.utils import DeepSpeedPlugin

    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 2}, **in_file}))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", str(path))
    plugin = DeepSpeedPlugin()  # as accelerate builds it from `accelerate launch --deepspeed_config_file`
    accelerator = SimpleNamespace(gradient_accumulation_steps=2, state=SimpleNamespace(deepspeed_plugin=plugin))
    if refused is None:
        train.check_accumulation(accelerator, 2)
        return
    with pytest.raises(
        train.UsageError,
        match=rf"the DeepSpeed config {path} {refused}.*, --gradient_accumulation_steps 2; .* to 2 or \"auto\"",
    ):
        train.check_accumulation(accelerator, 2)
