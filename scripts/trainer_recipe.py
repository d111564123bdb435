"""The HF Trainer's recipe on this project's data splits: the peer that scripts/quality.py and
``scripts/benchmark.py --against trainer`` measure us against.

    python scripts/trainer_recipe.py --dataset ../shared/data/sst2 --seed 1 --recipe default --output_dir /tmp/t

``--recipe default``: what a Trainer user gets with the same hyper-parameters and nothing else set:
AutoModelForSequenceClassification (the checkpoint's pretrained pooler + a new linear layer), fp32, random batches,
the Trainer's default optimizer (fused AdamW on torch >= 2.8), evaluation each epoch and the best validation state
reloaded at the end by the same metric as ours (so both recipes select their model the same way).
``--recipe best``: the Trainer at its fastest settings: bf16 where the device has it, ``group_by_length``, fused
AdamW, the evaluation batch size given, and on a GPU attention without cuDNN's kernel (as ours). Both read the splits through ``data.load_splits`` (same rows, same
carved validation, same label ids as train.py) and tokenize at ``--max_seq_length``. The last stdout line is JSON:
validation and test macro-F1 and accuracy, and the seconds of the whole run.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from config import DEFAULT_MODEL, TrainConfig, option, parse_config  # noqa: E402


@dataclass
class RecipeConfig:
    """The shared hyper-parameters (meaning what they mean for train.py) and which Trainer recipe to run."""

    dataset: str = option(str(REPO.parent / "shared" / "data" / "sst2"), "Dataset (as train.py's --dataset).")
    model_name_or_path: str = option(DEFAULT_MODEL, "Encoder (as train.py's --model_name_or_path).")
    label_column: str = option("label", "Label column (as train.py's).")
    text_column: str = option("text", "Text column (as train.py's).")
    text_pair_column: str | None = option(None, "Second text column of a sentence-pair task (as train.py's).")
    output_dir: str = option("outputs/trainer_recipe", "Where the Trainer writes its checkpoints.")
    recipe: str = option(
        "default", "default (fp32, random batches) or best (bf16, group_by_length).", ("default", "best")
    )
    seed: int = option(42, "Seed of the head, batch order and dropout.")
    num_train_epochs: float = option(3.0, "Epochs.")
    learning_rate: float = option(5e-5, "Peak learning rate.")
    warmup_ratio: float = option(0.1, "Share of the steps with linear warmup.")
    weight_decay: float = option(0.01, "AdamW weight decay.")
    per_device_train_batch_size: int = option(32, "Training batch size.")
    per_device_eval_batch_size: int = option(128, "Evaluation batch size.")
    max_seq_length: int = option(128, "Truncation length.")
    max_train_samples: int | None = option(None, "First N training rows (as train.py's).")
    max_eval_samples: int | None = option(None, "First N validation and test rows (as train.py's).")


def run(cfg: RecipeConfig) -> dict[str, Any]:
    """Train and evaluate with the HF Trainer; returns the scores and the wall time of the whole run."""
    start = time.perf_counter()
    import numpy as np
    import torch
    from benchmark import auto_precision
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from data import SOURCE_ROW, load_splits
    from model import encoder_folder
    from utils import resolve_model_path, tune_gpu

    data = load_splits(
        TrainConfig(
            dataset=cfg.dataset,
            label_column=cfg.label_column,
            text_column=cfg.text_column,
            text_pair_column=cfg.text_pair_column,
            seed=cfg.seed,
            max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples,
        )
    )
    # The encoder's own folder: an older sentence-transformers model keeps it in 0_Transformer/, as train.py reads it.
    model_path = encoder_folder(resolve_model_path(cfg.model_name_or_path))
    tokenizer = AutoTokenizer.from_pretrained(model_path)

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        """Token ids at the shared truncation length; padding is the collator's, per batch."""
        pair = batch.get("text_pair")
        return tokenizer(batch["text"], pair, truncation=True, max_length=cfg.max_seq_length)

    splits = {
        name: ds.map(tokenize, batched=True).rename_column("label", "labels").remove_columns(["idx", SOURCE_ROW])
        for name, ds in data.splits.items()
    }
    set_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=len(data.label_names),
        id2label=dict(enumerate(data.label_names)),
        label2id={n: i for i, n in enumerate(data.label_names)},
    )

    def metrics(prediction: Any) -> dict[str, float]:
        """macro-F1 and accuracy, as train.py reports them."""
        predicted = np.argmax(prediction.predictions, axis=-1)
        return {
            "macro_f1": f1_score(prediction.label_ids, predicted, average="macro"),
            "accuracy": accuracy_score(prediction.label_ids, predicted),
        }

    best = cfg.recipe == "best"
    # The same settings under either generation's names: transformers 5 takes a warmup share as a float
    # warmup_steps and the batch order as train_sampling_strategy; transformers 4 as warmup_ratio and group_by_length.
    if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters:
        version_args = {
            "warmup_steps": cfg.warmup_ratio,
            "train_sampling_strategy": "group_by_length" if best else "random",
        }
    else:
        version_args = {"warmup_ratio": cfg.warmup_ratio, "group_by_length": best}
    args = TrainingArguments(
        output_dir=cfg.output_dir,
        seed=cfg.seed,
        num_train_epochs=cfg.num_train_epochs,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        logging_strategy="epoch",
        report_to="none",
        bf16=best and auto_precision() == "bf16",  # the same rule as our recipe's --mixed_precision auto
        use_cpu=not torch.cuda.is_available(),  # the Trainer refuses bf16 on a CPU unless told it is one
        optim="adamw_torch_fused",
        dataloader_num_workers=0,
        disable_tqdm=True,
        **version_args,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=metrics,
    )
    if best:
        # At its best the Trainer attends as our GPU runs do: without cuDNN's attention kernel (unless
        # TORCH_CUDNN_SDPA_ENABLED=1 asks for it), whose per-shape graph builds would slow its length-grouped batches
        # and not ours. Nothing to do off a GPU.
        tune_gpu(trainer.accelerator)
    trainer.train()
    out: dict[str, Any] = {"recipe": f"trainer-{cfg.recipe}", "seed": cfg.seed, "bf16": args.bf16}
    for split in ("validation", "test"):
        if split in splits:
            scores = trainer.evaluate(splits[split], metric_key_prefix=split)
            out[split] = {"macro_f1": scores[f"{split}_macro_f1"], "accuracy": scores[f"{split}_accuracy"]}
    out["seconds"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the recipe and print its JSON line."""
    cfg = parse_config(argv, RecipeConfig, __doc__)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = run(cfg)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    from utils import run_cli

    run_cli(main)
