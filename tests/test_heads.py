"""Pooling and head registries, freezing, layer-wise learning rates, and the self-contained best_model/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import evaluate
import train
from config import TrainConfig
from conftest import make_tiny_model, tiny_args
from model import HEADS, POOLERS, CpuDropout, EncoderClassifier, has_pretrained_pooler


@pytest.fixture(scope="module", params=["bert", "modernbert"])
def backbone(request, tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp(request.param), request.param)


def batch():
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 3, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


@pytest.mark.parametrize("pooling", sorted(POOLERS))
@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_pooling_and_head_trains_saves_and_reloads(pooling, head, backbone, tmp_path):
    if pooling == "pooler" and not has_pretrained_pooler(str(backbone)):  # ModernBERT has no pooler to start from
        with pytest.raises(ValueError, match="no pretrained pooler"):
            EncoderClassifier.from_backbone(str(backbone), {0: "a", 1: "b", 2: "c"}, pooling=pooling, head=head)
        return
    model = EncoderClassifier.from_backbone(str(backbone), {0: "a", 1: "b", 2: "c"}, pooling=pooling, head=head)
    out = model(**batch(), labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("backbone.embeddings"))
    model.save_pretrained(tmp_path)
    reloaded = EncoderClassifier.from_pretrained(tmp_path)
    assert (reloaded.config.pooling, reloaded.config.head) == (pooling, head)
    model.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch()).logits, reloaded(**batch()).logits)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls_mean"])
def test_pooling_ignores_padding(pooling):
    layer = POOLERS[pooling](4)
    hidden = torch.randn(1, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    garbage = hidden.clone()
    garbage[:, 3:] = 1e4  # whatever sits at padded positions must not matter
    assert torch.allclose(layer(hidden, mask), layer(garbage, mask))
    assert torch.allclose(layer(hidden, mask), layer(hidden[:, :3], torch.ones(1, 3, dtype=torch.long)))
    assert layer(hidden, mask).shape == (1, layer.output_dim)


def test_layer_discovery_without_bert_names(tmp_path):
    for arch, n in [("bert", 2), ("roberta", 2), ("distilbert", 2), ("modernbert", 2), ("electra", 2)]:
        model = EncoderClassifier.from_backbone(str(make_tiny_model(tmp_path / arch, arch)), {0: "a", 1: "b"})
        assert len(model.encoder_layers()) == n
        depths = model.parameter_depths()
        assert {depths[n] for n in depths if n.startswith("head.")} == {4}
        assert min(depths.values()) == 0


def test_layer_lr_decay_and_head_learning_rate(backbone):
    model = EncoderClassifier.from_backbone(str(backbone), {0: "a", 1: "b"})
    cfg = TrainConfig(learning_rate=1e-4, layer_lr_decay=0.5, head_learning_rate=1e-3)
    lrs = model.parameter_learning_rates(cfg.learning_rate, cfg.layer_lr_decay, cfg.head_learning_rate)
    layers = model.encoder_layers()
    names = {id(p): n for n, p in model.named_parameters()}
    top = {lrs[names[id(p)]] for p in layers[-1].parameters()}
    below = {lrs[names[id(p)]] for p in layers[0].parameters()}
    embeddings = {lrs[names[id(p)]] for p in model.embedding_parameters()}
    assert top == {1e-4} and below == {5e-5} and embeddings == {2.5e-5}
    assert {lrs[n] for n in lrs if n.startswith("head.")} == {1e-3}
    optimizer = train.build_optimizer(model, cfg, torch.device("cpu"))
    assert {g["lr"] for g in optimizer.param_groups} == {1e-4, 5e-5, 2.5e-5, 1e-3}


def test_the_logged_learning_rate_is_learning_rate_on_its_schedule_under_layer_decay(tiny_bert, tmp_path):
    # The embeddings' group comes first, at learning_rate x decay^layers: that is not the run's learning rate.
    flags = ["--layer_lr_decay", "0.5", "--head_learning_rate", "1e-2", "--warmup_steps", "0", "--logging_steps", "1"]
    train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--num_train_epochs", "1", *flags))
    logs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in logs if "lr" in r}
    steps = max(lrs)  # linear decay from --learning_rate 1e-3 to 0 over the run's steps
    assert lrs == pytest.approx({s: 1e-3 * (steps - s) / steps for s in range(1, steps + 1)})


@pytest.mark.parametrize(
    "freeze, flags",
    [
        ("embeddings", ["--freeze", "embeddings"]),
        ("layers", ["--freeze_layers", "1"]),
        ("backbone", ["--freeze", "backbone"]),
    ],
)
def test_frozen_parameters_stay_bit_identical(freeze, flags, backbone, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(backbone, out, None, "--num_train_epochs", "1", *flags))
    saved = load_file(out / "best_model" / "model.safetensors")
    pretrained = AutoModel.from_pretrained(backbone).state_dict()
    first_layer = "layers.0." if "modernbert" in backbone.name else "encoder.layer.0."
    frozen_prefix = {"embeddings": ("embeddings.",), "layers": ("embeddings.", first_layer), "backbone": ("",)}[freeze]
    frozen = [k for k in pretrained if k.startswith(frozen_prefix) and not k.startswith("pooler")]
    trained = [k for k in pretrained if not k.startswith(frozen_prefix) and not k.startswith("pooler")]
    assert frozen and all(torch.equal(saved[f"backbone.{k}"], pretrained[k]) for k in frozen)
    assert all(not torch.equal(saved[f"backbone.{k}"], pretrained[k]) for k in trained if k.endswith("weight"))
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    assert resolved["frozen_parameters"] == sum(pretrained[k].numel() for k in frozen)


def test_frozen_parameters_get_no_optimizer_state(tiny_bert):
    model = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"})
    model.freeze("none", 1)
    optimizer = train.build_optimizer(model, TrainConfig(), torch.device("cpu"))
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert all((id(p) in in_optimizer) == p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in model.embedding_parameters())


def test_freeze_layers_beyond_the_backbone_is_a_usage_error(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match="--freeze_layers 5 exceeds the backbone's 2 layers"):
        train.main(tiny_args(tiny_bert, tmp_path / "run", None, "--freeze_layers", "5"))


def test_roberta_positions_start_after_the_padding_index(tmp_path):
    # RoBERTa numbers positions from padding_idx + 1: 130 position embeddings with padding_idx 0 take 129 tokens.
    backbone = make_tiny_model(tmp_path / "roberta", "roberta")
    tokenizer_config = backbone / "tokenizer_config.json"
    tokenizer_config.write_text(json.dumps(json.loads(tokenizer_config.read_text()) | {"model_max_length": 1000}))
    long_texts = tmp_path / "long.csv"
    long_texts.write_text("text,label\n" + "".join(f"{' '.join(['goal'] * 200)},{i % 2}\n" for i in range(40)))
    with pytest.raises(ValueError, match="--max_seq_length 130 exceeds the model's limit of 129"):
        train.main(tiny_args(backbone, tmp_path / "refused", long_texts, "--max_seq_length", "130"))
    results = train.main(
        tiny_args(backbone, tmp_path / "run", long_texts, "--max_seq_length", "129", "--max_steps", "1")
    )
    assert results["global_step"] == 1


def test_albert_shared_layers_are_not_frozen_one_by_one(tmp_path):
    backbone = make_tiny_model(tmp_path / "albert", "albert")
    for flags in (["--freeze_layers", "1"], ["--layer_lr_decay", "0.5"]):
        with pytest.raises(ValueError, match=r"runs 1 shared layer 2 times \(ALBERT-style\)"):
            train.main(tiny_args(backbone, tmp_path / "run", None, *flags))


def test_albert_pretrained_pooler_is_found_and_used(tmp_path):
    backbone = make_tiny_model(tmp_path / "albert", "albert")  # ALBERT's pooler is a Linear (then tanh), no .dense
    assert has_pretrained_pooler(str(backbone))
    model = EncoderClassifier.from_backbone(str(backbone), {0: "a", 1: "b"}, pooling="pooler")
    pretrained = AutoModel.from_pretrained(backbone)
    assert torch.equal(model.pooler.dense.weight, pretrained.pooler.weight)


@pytest.mark.parametrize(
    "arch, projection", [("electra", "embeddings_project"), ("albert", "embedding_hidden_mapping_in")]
)
def test_embedding_projections_belong_to_the_embeddings(tmp_path, arch, projection):
    model = EncoderClassifier.from_backbone(str(make_tiny_model(tmp_path / arch, arch)), {0: "a", 1: "b"})
    depths = model.parameter_depths()
    assert {d for n, d in depths.items() if projection in n} == {0}
    model.freeze("embeddings")
    assert not any(p.requires_grad for n, p in model.named_parameters() if projection in n)


TEXTS = [
    "the striker scored a goal",
    "rain is expected tomorrow",
    "a new phone was released",
    "fresh bread and soup",
    # Longer than the run's --max_seq_length (32): a reload must cut it where training did, not at 512.
    " ".join(["the striker scored a goal and"] * 6 + ["rain and fresh bread and soup"] * 6),
    " ".join(["fresh bread and soup with"] * 6 + ["a new phone was released today"] * 6),
]


def test_best_model_loads_with_trust_remote_code_outside_the_repository(tiny_bert, tmp_path):
    out = tmp_path / "run"
    train.main(tiny_args(tiny_bert, out, None, "--num_train_epochs", "1", "--pooling", "mean", "--head", "mlp"))
    script = textwrap.dedent(f"""
        import importlib.util, json
        assert importlib.util.find_spec("train") is None  # this repository is not importable here
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
        model = AutoModelForSequenceClassification.from_pretrained({str(out / "best_model")!r}, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained({str(out / "best_model")!r})
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
        print(json.dumps([classify(t, truncation=True)[0] for t in {TEXTS!r}]))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    piped = json.loads(proc.stdout.strip().splitlines()[-1])
    # The README's promise: for a single-label model the pipeline picks the class evaluate.py predicts.
    (tmp_path / "new.csv").write_text("text\n" + "\n".join(TEXTS) + "\n")
    evaluate.main(["--run_dir", str(out), "--input", str(tmp_path / "new.csv")])
    rows = [json.loads(line) for line in (out / "predictions_new.jsonl").read_text().splitlines()]
    assert [p["label"] for p in piped] == [row["label"] for row in rows]
    assert [p["score"] for p in piped] == pytest.approx([row["probability"] for row in rows], abs=1e-5)
    assert {p["label"] for p in piped} <= {"food", "sports", "technology", "weather"}


def test_a_head_with_its_own_setting_is_a_class_a_registry_line_and_a_field(tiny_bert, tmp_path, monkeypatch):
    """The README's recipe for a new head: nothing but the class, HEADS[...] and one model=True field."""
    from dataclasses import dataclass

    from torch import nn

    from config import option
    from model import HEADS

    class GatedHead(nn.Module):
        def __init__(self, input_dim, num_labels, config):
            super().__init__()
            self.gate = nn.Linear(input_dim, config.gate_size)
            self.up = nn.Linear(config.gate_size, input_dim)
            self.dropout = nn.Dropout(config.classifier_dropout)
            self.classifier = nn.Linear(input_dim, num_labels)

        def forward(self, pooled):
            gated = pooled * torch.sigmoid(self.up(torch.relu(self.gate(pooled))))
            return self.classifier(self.dropout(gated))

    @dataclass
    class WithGate(TrainConfig):
        gate_size: int = option(64, "Gated head: width of the gate.", model=True)

    monkeypatch.setitem(HEADS, "gated", GatedHead)
    monkeypatch.setattr(train, "TrainConfig", WithGate)  # as if the field were written in config.py
    monkeypatch.setattr(evaluate, "TrainConfig", WithGate)
    out = tmp_path / "run"
    results = train.main(
        tiny_args(tiny_bert, out, None, "--num_train_epochs", "1", "--head", "gated", "--gate_size", "5")
    )
    assert json.loads((out / "best_model" / "config.json").read_text())["gate_size"] == 5
    reloaded = EncoderClassifier.from_pretrained(out / "best_model")
    assert reloaded.head.gate.out_features == 5
    again = evaluate.main(["--split", "test", "--run_dir", str(out)])
    assert again["macro_f1"] == results["test"]["macro_f1"]


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_dropout_is_dropout_with_the_same_keep_rate_in_every_lane(p):
    """The faster CPU mask keeps each element with probability 1 - p (each of the four 16-bit lanes of a 64-bit
    draw alike), scales kept values by 1 / (1 - p), passes gradients through the same mask, follows the seed, and is
    the identity in eval mode."""
    torch.manual_seed(0)
    dropout = CpuDropout(p).train()
    x = torch.ones(1_600_000, requires_grad=True)
    y = dropout(x)
    kept = y != 0
    for lane in range(4):  # a lane that never drops (one random bit short) would show here
        assert abs(kept[lane::4].float().mean().item() - (1 - p)) < 0.005, lane
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y)
    assert dropout(torch.ones(4, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert torch.equal(dropout.eval()(x), x)


def test_cpu_dropout_attention_keeps_a_one_byte_mask_for_backward():
    """The (batch, heads, query, key) tensors kept for backward: the probabilities for softmax's gradient, the dropped
    ones for v's, and the mask as bytes; a float mask would add 4 bytes per element, growing with length squared."""
    import model as model_module

    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True) for _ in range(3))
    saved = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model_module.sdpa_cpu_dropout(torch.nn.Module(), q, k, v, None, dropout=0.1, scaling=0.3, is_causal=False)
    square = sorted(str(t.dtype) for t in saved if t.numel() == 2 * 3 * 16 * 16)
    assert square == ["torch.float32", "torch.float32", "torch.uint8"]


@pytest.mark.parametrize("backbone", ["bert", "distilbert", "roberta", "modernbert"])
def test_every_dropout_of_the_classifier_is_the_cpu_dropout_with_its_p(backbone, tmp_path):
    """The swap covers the backbone's and the head's dropout modules and keeps each one's probability."""
    path = make_tiny_model(tmp_path / backbone, backbone)
    plain = AutoModel.from_pretrained(path)
    expected = sorted(m.p for m in plain.modules() if isinstance(m, torch.nn.Dropout))
    model = EncoderClassifier.from_backbone(str(path), {0: "a", 1: "b"}, classifier_dropout=0.25)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is CpuDropout for m in dropouts)
    assert sorted(m.p for m in model.backbone.modules() if isinstance(m, torch.nn.Dropout)) == expected
    assert 0.25 in [m.p for m in model.head.modules() if isinstance(m, torch.nn.Dropout)]


def test_cpu_dropout_attention_is_sdpa_attention_with_the_mask_on_the_probabilities(monkeypatch):
    """With every probability kept, the CPU-dropout attention computes what transformers' SDPA attention computes
    (padding keys masked), scaled by 1 / (1 - p); with the mask, output and gradients are those of the composed
    ops: softmax, each probability kept or zeroed and kept ones scaled by 1 / (1 - p), times v."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    import model as model_module

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[0, ..., 3:] = False  # the first row's last two tokens are padding
    module = torch.nn.Module()
    expected, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3, is_causal=False)
    probabilities = []
    keep_all = lambda x, p, dtype=None: probabilities.append(x) or torch.ones_like(x, dtype=dtype)  # noqa: E731
    monkeypatch.setattr(model_module, "dropout_keep_mask", keep_all)
    got, _ = model_module.sdpa_cpu_dropout(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    assert torch.allclose(got * 0.9, expected, atol=1e-6)
    assert got.is_contiguous()  # as transformers' SDPA returns it, in fp32 as in bf16
    assert torch.equal(probabilities[0][0, ..., 3:], torch.zeros(3, 5, 2))  # no weight on padding keys
    monkeypatch.undo()

    torch.manual_seed(1)
    before = [t.detach().clone() for t in (q, k, v)]
    got, _ = model_module.sdpa_cpu_dropout(module, q, k, v, mask, dropout=0.1, scaling=0.3)
    assert all(torch.equal(t, b) for t, b in zip((q, k, v), before, strict=True))  # the inputs are left as they were
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, (q, k, v), grad)
    scores = (q @ k.transpose(2, 3) * 0.3).masked_fill(~mask, torch.finfo(torch.float32).min)
    probs = torch.softmax(scores, -1)
    torch.manual_seed(1)
    keep = model_module.dropout_keep_mask(probs, 0.1).bool()
    assert 0.85 < keep.float().mean().item() < 0.95
    reference = (torch.where(keep, probs / 0.9, 0) @ v).transpose(1, 2)
    assert torch.allclose(got, reference, atol=1e-6)
    for mine, theirs in zip(got_grads, torch.autograd.grad(reference, (q, k, v), grad), strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)
    dropped = torch.softmax(torch.randn(64, 12, 40, 40), -1)
    out = model_module.cpu_dropout(dropped, 0.1)
    assert abs((out != 0).float().mean().item() - 0.9) < 0.005
    assert torch.allclose(out[out != 0], dropped[out != 0] / 0.9)


def test_the_classifier_scores_the_same_with_either_attention_outside_training(tiny_bert):
    """Outside training (and on a GPU) the registered attention is transformers' SDPA: same logits as the default."""
    model = EncoderClassifier.from_backbone(str(tiny_bert), {0: "a", 1: "b"}).eval()
    import model as model_module

    if not model_module.takes_attention_functions(model.backbone.config):
        pytest.skip("transformers 4: BERT picks from its own attention classes")
    assert model.backbone.config._attn_implementation == "sdpa_cpu_dropout"
    ids = torch.tensor([[2, 5, 6, 3, 0, 0], [2, 5, 6, 7, 8, 3]])
    logits = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    model.backbone.set_attn_implementation("sdpa")
    assert torch.allclose(model(input_ids=ids, attention_mask=(ids != 0).long()).logits, logits, atol=1e-6)


def test_cpu_dropout_attention_stays_finite_when_a_padding_query_sees_no_key(tmp_path):
    """ModernBERT's local layers: a padding query whose whole sliding window is padding attends to no key; with
    attention dropout in training on CPU that row must not turn the sequence (and the loss) into NaN."""
    path = make_tiny_model(tmp_path / "modernbert", "modernbert")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"attention_dropout": 0.1, "local_attention": 4}))
    torch.manual_seed(0)
    model = EncoderClassifier.from_backbone(str(path), {0: "a", 1: "b"}).train()
    ids = torch.tensor([[2] + [5] * 14 + [3], [2, 5, 3] + [0] * 13])  # the second row: 13 padding tokens
    out = model(input_ids=ids, attention_mask=(ids != 0).long(), labels=torch.tensor([0, 1]))
    out.loss.backward()
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
