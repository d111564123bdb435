"""Every launch mode computes on its share of the CPU cores; the pooling matches the checkpoint (--pooling auto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import evaluate
import model
import train
import utils
from config import ConfigError
from conftest import REPO, _vocab, free_port, make_tiny_model, tiny_args, train_pair_run, write_csv
from model import EncoderClassifier, EncoderClassifierConfig

# ---- CPU threads ------------------------------------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    """torch's thread count is process-wide: put it back after a test that sets it."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def cpu_accelerator(processes: int = 1) -> SimpleNamespace:
    """What tune_cpu reads of an Accelerator on a CPU."""
    return SimpleNamespace(device=torch.device("cpu"), mixed_precision="no", num_processes=processes)


def test_cpu_threads_are_the_share_of_the_physical_cores(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    cores = utils.cpu_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))
    assert "physical cores" in utils.tune_cpu(cpu_accelerator())
    assert torch.get_num_threads() == cores
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun and accelerate launch set it
    utils.tune_cpu(cpu_accelerator(2))
    assert torch.get_num_threads() == max(1, cores // 2)
    assert utils.tune_cpu(cpu_accelerator(2), threads=1).startswith("CPU threads per process: 1 (--cpu_threads)")
    assert torch.get_num_threads() == 1


@pytest.fixture
def restore_cudnn_sdp():
    before = torch.backends.cuda.cudnn_sdp_enabled()
    yield
    torch.backends.cuda.enable_cudnn_sdp(before)


def test_a_gpu_run_attends_without_cudnns_per_shape_graphs_unless_asked(restore_cudnn_sdp, monkeypatch):
    """On a GPU, SDPA's cuDNN kernel (a graph built per new batch shape) is switched off and a mixed-precision log
    says so; TORCH_CUDNN_SDPA_ENABLED=1 keeps it, and evaluate.py passes the run's recorded choice. The CPU threads
    are left alone."""
    gpu = SimpleNamespace(device=torch.device("cuda"), mixed_precision="bf16", num_processes=1)
    threads = torch.get_num_threads()
    monkeypatch.delenv("TORCH_CUDNN_SDPA_ENABLED", raising=False)
    torch.backends.cuda.enable_cudnn_sdp(True)
    assert "not cuDNN's" in utils.tune_cpu(gpu)
    assert not torch.backends.cuda.cudnn_sdp_enabled() and torch.get_num_threads() == threads
    torch.backends.cuda.enable_cudnn_sdp(True)
    assert utils.tune_cpu(SimpleNamespace(device=torch.device("cuda"), mixed_precision="no")) is None  # fp32: no line
    assert not torch.backends.cuda.cudnn_sdp_enabled()
    for value in ("1", "true"):
        monkeypatch.setenv("TORCH_CUDNN_SDPA_ENABLED", value)
        assert utils.tune_cpu(gpu) is None and torch.backends.cuda.cudnn_sdp_enabled()
    monkeypatch.setenv("TORCH_CUDNN_SDPA_ENABLED", "0")
    assert "not cuDNN's" in utils.tune_cpu(gpu) and not torch.backends.cuda.cudnn_sdp_enabled()
    # A run's recorded choice wins over the environment, so a reload computes as the run did.
    assert utils.tune_cpu(gpu, cudnn_attention=True) is None and torch.backends.cuda.cudnn_sdp_enabled()
    assert "not cuDNN's" in utils.tune_cpu(gpu, cudnn_attention=False)


def test_evaluate_reloads_a_gpu_run_with_the_attention_kernel_it_trained_with():
    """config.json's resolved.cudnn_attention as recorded; a GPU run from before it was recorded ran with torch's
    own choice (cuDNN allowed); a CPU run has none to reproduce."""
    assert evaluate.run_cudnn_attention({"device": "cuda:0", "cudnn_attention": False}) is False
    assert evaluate.run_cudnn_attention({"device": "cuda:0"}) is True
    assert evaluate.run_cudnn_attention({"device": "cpu", "cudnn_attention": None}) is None
    assert evaluate.run_cudnn_attention({"device": "cpu"}) is None


def test_the_users_omp_num_threads_is_kept(restore_threads, monkeypatch):
    # Set by the user for `python train.py` (pytest's parent is no launcher): torch read it, nothing overrides it.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    assert not utils.omp_threads_set_by_launcher()
    assert "OMP_NUM_THREADS=1" in utils.tune_cpu(cpu_accelerator())
    assert torch.get_num_threads() == 1


FAULTS_PROBE = """
import resource, sys
sys.path.insert(0, sys.argv[1])
import torch
from transformers import BertConfig, BertModel
import utils
kept = sys.argv[2] == "keep" and utils.keep_freed_memory()  # as tune_cpu calls it: after torch is imported
torch.manual_seed(0)
config = BertConfig(hidden_size=384, num_hidden_layers=2, num_attention_heads=12, intermediate_size=1536)
model = BertModel(config)  # BERT's vocabulary: a 47 MB word-embedding gradient, freed every step as train.py does
enough = int(sys.argv[3]) if len(sys.argv) > 3 else None  # a steady-state count past which more steps add nothing
faults = []
for _ in range(14):  # MiniLM-sized activations at batch 32 x 128 tokens
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(input_ids=torch.randint(0, 1000, (32, 128))).last_hidden_state.square().mean().backward()
    model.zero_grad(set_to_none=True)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    if enough is not None and sum(faults[6:]) > enough:
        break
# The steady state: the first steps grow the heap, and on some CPUs (AVX2 kernels, for one) it takes a few more steps.
print(kept, sum(faults[6:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_memory_is_reused_without_page_faults():
    """With keep_freed_memory (what tune_cpu sets on a CPU run), training steps reuse the memory the step before
    freed; with glibc's default, every step maps tens of thousands of fresh zeroed pages again."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc malloc")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if thp.exists() and "[always]" in thp.read_text():
        pytest.skip("transparent huge pages for every mapping: few faults with or without the setting")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    env["HF_HUB_OFFLINE"] = "1"

    def probe(mode: str, *enough: int) -> tuple[bool, int]:
        argv = [sys.executable, "-c", FAULTS_PROBE, str(REPO), mode, *map(str, enough)]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
        kept, faults = out.split()
        return kept == "True", int(faults)

    keep = probe("keep")
    # Steps only add faults: once the default's steady state is past both bounds below, its last steps cannot change
    # either verdict, so it stops there (most of the time after 2 or 3 of its 8 steady-state steps).
    default = probe("default", max(20_000, 3 * keep[1]))
    # Over the last 8 of 14 steps (Intel Xeon, 2 cores): default 147,234 and 219,428 with AVX2 kernels; kept 2 and
    # 3,074 (ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2).
    assert default[1] > 20_000  # the scenario does fault without the setting
    # A third, not zero: a CI machine (another CPU) still faulted ~4,000 pages a step with the setting, sporadically
    # (buffers above the 32 MiB ceiling, such as the 47 MB embedding gradient, are mapped whenever the heap has no
    # free chunk that large), against ~16,600 without it.
    assert keep[0] and keep[1] < default[1] / 3


def test_a_users_own_malloc_tuning_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert not utils.keep_freed_memory()
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert not utils.keep_freed_memory()


ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
ACCELERATE += ["--dynamo_backend", "no"]
LAUNCHERS = {
    "python": [sys.executable],
    "accelerate-1": [*ACCELERATE, "--num_processes", "1"],
    "accelerate-1-flag": [*ACCELERATE, "--num_processes", "1", "--num_cpu_threads_per_process", "1"],
    "accelerate-2": [*ACCELERATE, "--multi_gpu", "--num_processes", "2"],
    "torchrun-2": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
}
SHARE = object()  # the expected count: physical_cores() / local processes


def physical_cores() -> int:
    """The physical cores of this process's affinity set, counted here independently of utils.cpu_cores."""
    import psutil

    return max(1, len(os.sched_getaffinity(0)) * psutil.cpu_count(logical=False) // psutil.cpu_count())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "flags", "env_extra", "expected"),
    [
        pytest.param("python", [], {}, SHARE, id="python"),
        # accelerate launch sets OMP_NUM_THREADS=1 for its child
        pytest.param("accelerate-1", [], {}, SHARE, id="accelerate-1"),
        pytest.param("accelerate-1", ["--cpu_threads", "1"], {}, 1, id="accelerate-1-cpu_threads"),
        pytest.param("accelerate-1", [], {"OMP_NUM_THREADS": "1"}, 1, id="accelerate-1-user-OMP_NUM_THREADS"),
        pytest.param("accelerate-1-flag", [], {}, 1, id="accelerate-1-num_cpu_threads_per_process"),
        pytest.param("accelerate-2", [], {}, SHARE, id="accelerate-2"),
        # torchrun sets OMP_NUM_THREADS=1 for nproc_per_node > 1
        pytest.param("torchrun-2", [], {}, SHARE, id="torchrun-2"),
    ],
)
def test_every_launch_mode_trains_on_its_share_of_the_cores(tiny_bert, tmp_path, mode, flags, env_extra, expected):
    processes = 2 if mode.endswith("-2") else 1
    if expected is SHARE:
        expected = max(1, physical_cores() // processes)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LOCAL_WORLD_SIZE")}
    env |= {"HF_HUB_OFFLINE": "1", "PROBE_FINAL": str(tmp_path / "final.pt"), "PROBE_THREADS": str(tmp_path / "t")}
    if processes == 2:
        env["ACCELERATE_USE_CPU"] = "true"  # two gloo ranks on a CPU-only machine
    out = tmp_path / "run"
    args = tiny_args(tiny_bert, out, None, "--max_steps", "2", "--pooling", "cls", *flags)
    port = ["--main_process_port", free_port()] if mode == "accelerate-2" else []
    proc = subprocess.run(
        [*LAUNCHERS[mode], *port, str(REPO / "tests" / "train_probe.py"), *args],
        env=env | env_extra,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert int((tmp_path / "t").read_text()) == expected  # what the main process trained with
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["cpu_threads"] == expected
    assert resolved["cudnn_attention"] is None  # README: recorded for a GPU's attention kernel, null on a CPU
    log = (out / "train.log").read_text()
    assert f"CPU threads per process: {expected} (" in log
    assert "freed memory kept for reuse" in log or not utils.keep_freed_memory()
    if mode == "accelerate-1" and not flags and not env_extra:  # scoring launched the same way gets them too
        scored = subprocess.run(
            [*LAUNCHERS[mode], str(REPO / "evaluate.py"), "--run_dir", str(out), "--split", "validation"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert scored.returncode == 0, (scored.stdout + scored.stderr)[-3000:]
        assert f"CPU threads per process: {expected} (" in scored.stdout + scored.stderr


def write_many_lengths(folder: Path) -> Path:
    """train/validation/test csv files whose texts spread over ~16 padded lengths (2 to 110 words)."""
    import random

    words = [w for w in _vocab() if w.isalpha() and len(w) > 2]
    rng = random.Random(0)
    for split, rows in (("train", 128), ("validation", 32), ("test", 32)):
        texts = [" ".join(rng.choices(words, k=2 + (i * 7) % 109)) for i in range(rows)]
        write_csv(folder / f"{split}.csv", [(t, ("short", "long")[len(t.split()) > 55]) for t in texts])
    return folder


@pytest.mark.slow
def test_bf16_kernels_are_built_once_per_batch_shape(tiny_bert, tmp_path):
    """oneDNN builds a bf16 kernel per matmul shape; later epochs, evaluations and the final scoring must find
    them in its cache rather than build them again (a cache smaller than the run's shapes rebuilds every epoch)."""
    data = write_many_lengths(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONEDNN", "ACCELERATE_"))}
    # What `accelerate launch --mixed_precision bf16` hands the process it starts, without the launcher's own process.
    env |= {"HF_HUB_OFFLINE": "1", "ONEDNN_VERBOSE": "profile_create", "ACCELERATE_MIXED_PRECISION": "bf16"}

    def kernel_builds(epochs: int) -> int:
        out = tmp_path / f"run{epochs}"
        args = tiny_args(tiny_bert, out, data, "--max_seq_length", "128", "--num_train_epochs", str(epochs))
        proc = subprocess.run(
            [sys.executable, str(REPO / "train.py"), *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        assert json.loads((out / "config.json").read_text())["resolved"]["mixed_precision"] == "bf16"
        return proc.stdout.count("create:cache_miss")

    one = kernel_builds(1)
    if one == 0:
        pytest.skip("no oneDNN bf16 kernels on this CPU")
    three = kernel_builds(3)
    # The same shapes every epoch (batches regroup, so a few may first appear later): two more epochs add few builds.
    assert three < 1.3 * one, (one, three)


# ---- pooling ----------------------------------------------------------------------------------------------------


def old_sentence_transformers_folder(model: Path, folder: Path) -> Path:
    """A sentence-transformers 1.x folder of ``model``: the encoder in 0_Transformer/ (modules.json names it), mean
    pooling, nothing at the top."""
    import shutil

    shutil.copytree(model, folder / "0_Transformer")
    write_sentence_transformers_files(folder, mean_tokens=True)
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([{**modules[0], "path": "0_Transformer"}, *modules[1:]]))
    return folder


def write_sentence_transformers_files(path: Path, **modes: bool) -> Path:
    """Add what sentence-transformers saves beside a model: modules.json and the Pooling module's config."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    config = {"word_embedding_dimension": 32} | {f"pooling_mode_{k}": v for k, v in modes.items()}
    (path / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return path


def make_tiny_model_without_pooler(path: Path) -> Path:
    """A tiny random BERT saved the way a backbone trained without its pooler is: no pooler weights."""
    from transformers import BertConfig, BertModel

    make_tiny_model(path)
    BertModel(BertConfig.from_pretrained(path), add_pooling_layer=False).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_bert_without_pooler(tmp_path_factory) -> Path:
    return make_tiny_model_without_pooler(tmp_path_factory.mktemp("no_pooler"))


@pytest.mark.parametrize(
    ("modes", "expected"),
    [
        ({"mean_tokens": True}, "mean"),
        ({"cls_token": True}, "cls"),
        ({"max_tokens": True}, "max"),
        ({"cls_token": True, "mean_tokens": True}, "cls_mean"),
        ({"mean_sqrt_len_tokens": True}, None),  # none of ours: the next rule of auto, with a note
    ],
)
def test_auto_takes_the_sentence_transformers_pooling(tmp_path, modes, expected):
    every = {"cls_token": False, "mean_tokens": False, "max_tokens": False, "mean_sqrt_len_tokens": False}
    for path, fallback in (
        (make_tiny_model(tmp_path / "p"), "pooler"),
        (make_tiny_model_without_pooler(tmp_path / "n"), "cls"),
    ):
        write_sentence_transformers_files(path, **(every | modes))
        name, why = model.resolve_pooling(str(path))
        assert name == (expected or fallback)
        if expected is None:
            assert "mean_sqrt_len_tokens" in why and "no equivalent" in why


def test_auto_says_which_sentence_transformers_modules_after_the_pooling_go_unused(tmp_path):
    path = write_sentence_transformers_files(make_tiny_model(tmp_path / "st"), mean_tokens=True)
    modules = json.loads((path / "modules.json").read_text())
    dense = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    (path / "modules.json").write_text(
        json.dumps([*modules[:2], dense, {**modules[2], "idx": 3, "path": "3_Normalize"}])
    )
    name, why = model.resolve_pooling(str(path))
    assert name == "mean"
    assert why.endswith("mean_tokens; its Dense and Normalize modules after the pooling are not used")
    # A modules.json cut off by a copy is named, not read as another model's.
    (path / "modules.json").write_text('[{"idx": 0, "na')
    with pytest.raises(ValueError, match=r"modules.json is not valid JSON"):
        model.resolve_pooling(str(path))


def test_auto_takes_the_pretrained_pooler_when_the_checkpoint_has_its_weights(tiny_bert):
    # conftest's tiny BERT is a BertModel saved with its (randomly initialised) pooler.
    assert {"pooler.dense.weight", "pooler.dense.bias"} <= model.checkpoint_weight_names(str(tiny_bert))
    assert model.resolve_pooling(str(tiny_bert))[0] == "pooler"


def test_auto_takes_cls_without_pooler_weights(tiny_bert_without_pooler, tmp_path):
    assert not any("pooler" in n for n in model.checkpoint_weight_names(str(tiny_bert_without_pooler)))
    assert model.resolve_pooling(str(tiny_bert_without_pooler))[0] == "cls"
    # An architecture without a pooler at all.
    assert model.resolve_pooling(str(make_tiny_model(tmp_path / "distil", "distilbert")))[0] == "cls"


def test_auto_follows_modernberts_classifier_pooling(tiny_modernbert, tmp_path):
    """ModernBERT has no pretrained pooler; ModernBertForSequenceClassification pools by its config's
    classifier_pooling (ModernBERT-base's own config says mean), so auto does too, unless sentence-transformers
    says otherwise."""
    import shutil

    folder = Path(shutil.copytree(tiny_modernbert, tmp_path / "mb"))
    for pooling in ("mean", "cls"):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"classifier_pooling": pooling}))
        assert model.resolve_pooling(str(folder)) == (pooling, f"auto: ModernBERT's classifier_pooling, {pooling}")
    (folder / "config.json").write_text(json.dumps(config | {"classifier_pooling": "mean"}))
    classifier = EncoderClassifier.from_backbone(str(folder), {0: "a", 1: "b"}, pooling="auto")
    assert classifier.config.pooling == "mean" and isinstance(classifier.pooler, model.MeanPooling)
    # A sentence-transformers pooling is what the checkpoint was trained with: it comes first.
    write_sentence_transformers_files(folder, cls_token=True)
    assert model.resolve_pooling(str(folder))[0] == "cls"


def test_auto_reads_xlnets_cls_token_at_the_end(tmp_path):
    """XLNet's tokenizer puts <cls> after the text (its classifier reads the last token): auto pools that token, for
    right-padded rows (ours) and left-padded ones (XLNet's own tokenizer), not the first word."""
    from transformers import XLNetConfig, XLNetModel

    XLNetModel(XLNetConfig(vocab_size=40, d_model=16, n_layer=1, n_head=2, d_inner=32)).save_pretrained(tmp_path)
    name, why = model.resolve_pooling(str(tmp_path))
    assert name == "last" and "last token" in why
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)  # (batch, seq, hidden)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    pooler = model.POOLERS["last"](3)
    assert torch.equal(pooler(hidden, right), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(pooler(hidden, left), torch.stack([hidden[0, 3], hidden[1, 3]]))


def test_the_minilm_package_resolves_to_mean(minilm_path):
    name, why = model.resolve_pooling(str(minilm_path))
    assert name == "mean" and "sentence-transformers" in why


def test_a_pair_run_on_a_sentence_transformers_checkpoint_keeps_its_pooling(tiny_bert, tmp_path):
    """A sentence pair is pooled as one text is: the pretrained pooler in its place scored higher on one pair task of
    three and far lower on another (the README's quality section)."""
    import shutil

    folder = write_sentence_transformers_files(Path(shutil.copytree(tiny_bert, tmp_path / "st")), mean_tokens=True)
    rows = [("a good film", "good", "yes"), ("a bad film", "good", "no")] * 8
    out = train_pair_run(folder, tmp_path, rows)
    assert json.loads((out / "config.json").read_text())["resolved"]["pooling"] == "mean"
    assert EncoderClassifierConfig.from_pretrained(out / "best_model").pooling == "mean"


def test_a_resumed_auto_run_keeps_the_pooling_it_began_with(tiny_bert, tmp_path, monkeypatch):
    """A run begun by a version that resolved auto otherwise (mean for a pair, say) resumes with its own pooling:
    the checkpoint's weights fit no other model."""
    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "step_000005"
    checkpoint.mkdir(parents=True)
    (checkpoint / "meta.json").write_text(json.dumps({"step": 5, "settings": {}}))
    (run / "config.json").write_text(json.dumps({"user_config": {}, "resolved": {"pooling": "mean"}}))
    monkeypatch.setattr(train, "prepare_run_dir", lambda cfg, accelerator: (run, checkpoint))
    seen = []

    def load_inputs(cfg, class_order=None):
        seen.append(cfg.pooling)
        raise utils.UsageError("read")

    monkeypatch.setattr(train, "load_inputs", load_inputs)
    with pytest.raises(utils.UsageError, match="read"):
        train.main(tiny_args(tiny_bert, run, None, "--resume_from_checkpoint", "latest"))
    with pytest.raises(utils.UsageError, match="read"):  # an explicit choice is the user's
        train.main(tiny_args(tiny_bert, run, None, "--resume_from_checkpoint", "latest", "--pooling", "cls"))
    assert seen == ["mean", "cls"]
    assert train.recorded_pooling(checkpoint) == "mean"
    (run / "config.json").write_text("{")  # damaged: auto resolves again
    assert train.recorded_pooling(checkpoint) is None


def test_an_older_sentence_transformers_layout_trains_from_its_transformer_folder(tiny_bert, tmp_path):
    """sentence-transformers 1.x saved the encoder in 0_Transformer/ (named by modules.json), nothing at the top: the
    encoder is read from there, the pooling from the Pooling module, as for today's layout."""
    import shutil

    folder = old_sentence_transformers_folder(tiny_bert, tmp_path / "old_st")
    out = tmp_path / "run"
    train.main(tiny_args(folder, out, None, "--num_train_epochs", "1"))
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["pooling"] == "mean" and config["resolved"]["model_path"] == str(folder)
    assert "pooling: mean (auto: the checkpoint's sentence-transformers pooling, mean_tokens" in (
        (out / "train.log").read_text()
    )
    # The pretrained encoder was loaded, not a random one: its weights are where training started from.
    classifier = EncoderClassifier.from_backbone(str(folder), {0: "a", 1: "b"}, pooling="auto")
    stored = load_file(str(tiny_bert / "model.safetensors"))
    assert torch.equal(
        classifier.backbone.embeddings.word_embeddings.weight, stored["embeddings.word_embeddings.weight"]
    )
    # A modules.json whose Transformer folder is gone: one line naming the folder, before any model is built.
    shutil.rmtree(folder / "0_Transformer")
    with pytest.raises(
        utils.UsageError,
        match=r"its modules.json names 0_Transformer/ as the encoder.s folder, which is no such folder; restore",
    ):
        train.main(tiny_args(folder, tmp_path / "run2", None))


def test_pooler_without_pooler_weights_is_one_line_before_the_model_is_built(
    tiny_bert_without_pooler, tmp_path, monkeypatch
):
    def never(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(EncoderClassifier, "from_backbone", never)
    with pytest.raises(ConfigError, match=r"--pooling pooler: .* has no pretrained pooler") as err:
        train.main(tiny_args(tiny_bert_without_pooler, tmp_path / "run", None, "--pooling", "pooler"))
    assert "\n" not in str(err.value)


def test_pooler_pooling_starts_from_the_checkpoint_and_trains(tiny_bert):
    stored = load_file(str(tiny_bert / "model.safetensors"))
    classifier = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"}, pooling="auto")
    assert classifier.config.pooling == "pooler" and isinstance(classifier.pooler, model.PretrainedPooling)
    assert classifier.backbone.pooler is None  # the backbone's own copy stays dropped: one pooler, ours
    assert torch.equal(classifier.pooler.dense.weight, stored["pooler.dense.weight"])
    assert torch.equal(classifier.pooler.dense.bias, stored["pooler.dense.bias"])
    # The optimizer sees the layer (pooling and head group) and a step moves it.
    names = {n for n, p in classifier.named_parameters() if p.requires_grad}
    assert {"pooler.dense.weight", "pooler.dense.bias"} <= names
    optimizer = torch.optim.AdamW(classifier.parameter_groups(1e-3, 0.01))
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    classifier(input_ids=ids, attention_mask=(ids != 0).long(), labels=torch.tensor([0, 1])).loss.backward()
    optimizer.step()
    assert not torch.equal(classifier.pooler.dense.weight, stored["pooler.dense.weight"])
    # --freeze backbone leaves it training with pooling and head, at --head_learning_rate.
    frozen = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"}, pooling="auto")
    frozen.freeze("backbone")
    trained = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert {"pooler.dense.weight", "pooler.dense.bias"} <= trained
    assert trained == {n for n in names if not n.startswith("backbone.")}
    lrs = frozen.parameter_learning_rates(1e-3, head_learning_rate=1e-2)
    assert lrs["pooler.dense.weight"] == lrs["pooler.dense.bias"] == 1e-2


def test_auto_run_records_the_pooling_and_reloads_it(tiny_bert, tmp_path):
    out = tmp_path / "run"
    results = train.main(tiny_args(tiny_bert, out, None, "--num_train_epochs", "1", "--eval_steps", "3"))
    config = json.loads((out / "config.json").read_text())
    assert config["user_config"]["pooling"] == "auto" and config["resolved"]["pooling"] == "pooler"
    assert "pooling: pooler (auto: the checkpoint's pretrained pooler)" in (out / "train.log").read_text()
    assert json.loads((out / "best_model" / "config.json").read_text())["pooling"] == "pooler"
    # best_model/ holds the trained pooler (ours, not the backbone's), moved away from the checkpoint's weights.
    saved = load_file(str(out / "best_model" / "model.safetensors"))
    assert not any(k.startswith("backbone.pooler.") for k in saved)
    stored = load_file(str(tiny_bert / "model.safetensors"))
    assert not torch.equal(saved["pooler.dense.weight"], stored["pooler.dense.weight"])
    reloaded = EncoderClassifier.from_pretrained(out / "best_model")
    assert isinstance(reloaded.pooler, model.PretrainedPooling)
    assert torch.equal(reloaded.pooler.dense.weight, saved["pooler.dense.weight"])
    metrics = evaluate.main(["--split", "validation", "--run_dir", str(out)])
    for key in ("macro_f1", "accuracy", "loss", "num_samples"):
        assert metrics[key] == results["validation"][key], key


def test_a_saved_config_without_a_pooling_key_means_cls():
    saved = EncoderClassifierConfig(pooling="mean").to_dict()
    del saved["pooling"]  # a best_model/config.json written before the key was always saved
    assert EncoderClassifierConfig.from_dict(saved).pooling == "cls"
