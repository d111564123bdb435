"""The classifier: an encoder backbone, a pooling and a head, saved and reloaded as one self-contained model.

Adding a pooling or a head is one small ``nn.Module`` plus one line in ``POOLERS`` or ``HEADS`` (a head's own
hyperparameter is one more field in config.py's TrainConfig, marked ``model=True``: it is stored in the model config,
where the head reads it, and saved with the model)::

    class MeanSqrtLenPooling(nn.Module):
        def __init__(self, hidden_size: int):
            super().__init__()
            self.output_dim = hidden_size

        def forward(self, hidden, mask):  # (batch, seq, hidden), (batch, seq) -> (batch, hidden)
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0).sqrt()

    POOLERS["mean_sqrt_len"] = MeanSqrtLenPooling

This file imports only torch and transformers: ``save_pretrained`` copies it into ``best_model/`` so that
``AutoModelForSequenceClassification.from_pretrained(best_model, trust_remote_code=True)`` works anywhere.
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import cached_file

# ----------------------------------------------------------------------------------------------------------------
# Dropout on CPU: torch's CPU bernoulli draws one generator value per element, which made dropout 13% of a MiniLM
# training step on a 2-core CPU (scripts/profile_step.py), and SDPA with dropout on CPU draws its attention mask the
# same way. The same Bernoulli(1 - p) mask from 16 random bits per element, four elements per 64-bit draw, costs a
# third of that; the keep probability is exact to 1/65536. The mask is held as 0/1 (in the activation's dtype, or
# bytes for the attention probabilities) and applied by one multiply each way: torch.where over a bool mask is a
# scalar loop on CPU, four times slower than a vectorised multiply (8.9 against 2.1 ms for a 32 x 12 x 128 x 128 fp32
# attention tensor on 2 cores). Other devices keep torch's own kernels.


def dropout_keep_mask(x: torch.Tensor, p: float, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The Bernoulli(1 - p) keep mask of training-mode dropout for ``x`` (CPU), from 16 random bits per element: 0/1
    in ``dtype`` (default x's), or bool."""
    n = x.numel()
    # The full 64-bit range, so all four 16-bit lanes of a draw are uniform (random_() alone leaves the sign bit 0).
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None).view(torch.int16)[:n].view(x.shape)
    threshold = -32768 + round(p * 65536)
    if dtype == torch.bool:
        return bits >= threshold
    return torch.ge(bits, threshold, out=torch.empty(x.shape, dtype=dtype or x.dtype))


class ApplyMask(torch.autograd.Function):
    """``x * mask * scale`` and its gradient ``grad * mask * scale``, each one pass (the scale multiplied in fp32,
    as ``x * scale`` would be, so a bf16 ``x`` is rounded once). A bool mask is read as 0/1 bytes."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
        mask = mask.view(torch.uint8) if mask.dtype == torch.bool else mask
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.addcmul(x.new_zeros(()), x, mask, value=scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (mask,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, mask, value=ctx.scale), None, None


def cpu_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of a CPU tensor with the 16-bit mask (2**-16 <= p <= 1 - 2**-16)."""
    return ApplyMask.apply(x, dropout_keep_mask(x, p), 1.0 / (1.0 - p))


def _fast_mask_applies(p: float, x: torch.Tensor) -> bool:
    """The 16-bit mask serves training-mode dropout on CPU for p it can express (others keep torch's kernel)."""
    return x.device.type == "cpu" and 2**-16 <= p <= 1 - 2**-16


class CpuDropout(nn.Dropout):
    """``nn.Dropout`` with the faster mask on CPU; the native kernel everywhere else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not _fast_mask_applies(self.p, x):
            return super().forward(x)
        return cpu_dropout(x, self.p)


def use_cpu_dropout(module: nn.Module) -> None:
    """Swap every plain ``nn.Dropout`` under ``module`` for ``CpuDropout`` (same p; no parameters change)."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, CpuDropout(child.p))
        else:
            use_cpu_dropout(child)


def sdpa_cpu_dropout(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except in training on CPU with attention dropout: there the attention of
    SDPA's math kernel (in fp32, as that kernel computes half-precision inputs on CPU) with the 16-bit dropout mask
    on the probabilities."""
    # As transformers' SDPA decides: causal only without a mask (a mask carries the pattern itself).
    flag = kwargs.get("is_causal")
    causal = attention_mask is None and (flag if flag is not None else getattr(module, "is_causal", True))
    special = causal or kwargs.get("position_bias") is not None or kwargs.get("softcap") is not None
    if not _fast_mask_applies(dropout, query) or special or getattr(module, "num_key_value_groups", 1) > 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    dtype = query.dtype
    with torch.autocast("cpu", enabled=False):  # fp32 here, whatever autocast the forward runs under
        # Every pass over the (batch, heads, query, key) tensors costs more than one over q, k or v (key length
        # times head size), so the scalars go on q and v: the softmax scale on q, dropout's 1 / (1 - p) on v.
        # q, k, v arrive as views of (batch, seq, heads, head_dim) projections: one pass each to a contiguous fp32
        # copy (a copy always, as the scalars are then multiplied in place), instead of a cast that keeps the strides
        # and the copy matmul makes on top of it.
        query, key, value = (
            t.to(torch.float32, memory_format=torch.contiguous_format, copy=True) for t in (query, key, value)
        )
        scores = torch.matmul(query.mul_(scale), key.transpose(2, 3))
        if attention_mask is not None:  # bool: True = attend; otherwise additive
            if attention_mask.dtype == torch.bool:
                # The dtype's minimum, not -inf: a query row with no key to attend to (a padding query whose whole
                # sliding window is padding) gets finite weights instead of NaN, which would spread to every row.
                bias = torch.zeros(attention_mask.shape, dtype=scores.dtype, device=scores.device)
                attention_mask = bias.masked_fill_(attention_mask.logical_not(), torch.finfo(scores.dtype).min)
            # In place: matmul's backward does not need its output, and an add passes the gradient through as is.
            scores = scores.add_(attention_mask.float())
        probs = torch.softmax(scores, dim=-1)
        # A bool mask here (1 byte per element, as torch.where's was): these tensors grow with the square of the
        # length, and a float mask kept for backward would take 4x the memory for ~1 ms less per layer and step.
        dropped = ApplyMask.apply(probs, dropout_keep_mask(probs, dropout, torch.bool), 1.0)
        out = torch.matmul(dropped, value.mul_(1.0 / (1.0 - dropout)))
    # (batch, seq, heads, head_dim) in the projections' dtype, cast and laid out in one pass (copy=True: without it an
    # fp32 run would get the transposed view back, as `to` counts a transposed 4-d tensor as contiguous-format).
    return out.transpose(1, 2).to(dtype, memory_format=torch.contiguous_format, copy=True), None


def takes_attention_functions(backbone_config: Any) -> bool:
    """Whether the backbone's class calls the attention function registered under its config's attn_implementation
    (transformers 5 encoders); transformers 4 encoders pick from their own attention classes, and some only fail at
    the first forward on a name they do not know (ModernBERT)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    try:
        backbone_class = MODEL_MAPPING[type(backbone_config)]
    except KeyError:
        return False
    return bool(getattr(backbone_class, "_supports_attention_backend", False))


# Registered under its own name (with SDPA's mask builder), so only models built here use it; None where this
# transformers has no registry for attention functions (the backbone then keeps its default attention).
try:
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    ATTENTION: str | None = "sdpa_cpu_dropout"
    AttentionInterface.register(ATTENTION, sdpa_cpu_dropout)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
except ImportError:
    ATTENTION = None


# ----------------------------------------------------------------------------------------------------------------
# Pooling: (batch, seq, hidden) token vectors + (batch, seq) attention mask -> (batch, output_dim)


class ClsPooling(nn.Module):
    """The first token's vector ([CLS] / <s>)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]


class MeanPooling(nn.Module):
    """The average of the real (unmasked) token vectors."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class MaxPooling(nn.Module):
    """The element-wise maximum over the real tokens (padding never wins)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        masked = hidden.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(hidden.dtype).min)  # (batch, seq, hidden)
        return masked.max(dim=1).values


class LastPooling(nn.Module):
    """The last real token's vector: where XLNet's tokenizer puts its <cls> (after the text, not before it)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # The highest position holding a real token, whichever side the rows were padded on.
        positions = torch.arange(mask.shape[1], device=mask.device)  # (seq,)
        last = (mask.bool() * positions).argmax(dim=1)  # (batch,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


class ClsMeanPooling(nn.Module):
    """The first token's vector concatenated with the masked mean: (batch, 2 * hidden)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = 2 * hidden_size
        self.cls, self.mean = ClsPooling(hidden_size), MeanPooling(hidden_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls(hidden, mask), self.mean(hidden, mask)], dim=-1)


class PretrainedPooling(nn.Module):
    """BERT's pooler: the first token's vector through a dense layer and tanh. ``from_backbone`` starts the layer from
    the checkpoint's trained pooler weights; it trains with the rest."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = hidden_size
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # (batch, hidden)


POOLERS: dict[str, type[nn.Module]] = {
    "cls": ClsPooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "cls_mean": ClsMeanPooling,
    "pooler": PretrainedPooling,
    "last": LastPooling,
}

# ----------------------------------------------------------------------------------------------------------------
# Pooling "auto": the one the checkpoint was trained for. These read only the model directory (or its hub repo).

# The modes a sentence-transformers Pooling module has switched on (its config.json's pooling_mode_* keys) -> ours.
SENTENCE_TRANSFORMERS_POOLINGS = {
    frozenset({"cls_token"}): "cls",
    frozenset({"mean_tokens"}): "mean",
    frozenset({"max_tokens"}): "max",
    frozenset({"cls_token", "mean_tokens"}): "cls_mean",
}
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def model_file(model_path: str, filename: str) -> str | None:
    """The local path of a file of a model directory or hub repo (cached), or None when the model has none."""
    return cached_file(
        model_path,
        filename,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )


def sentence_transformers_modules(model_path: str) -> list[dict[str, Any]] | None:
    """The modules of a sentence-transformers checkpoint in order (``modules.json``: Transformer, Pooling, then
    Dense, Normalize...); None when the model is no sentence-transformers model."""
    if (modules := model_file(model_path, "modules.json")) is None:
        return None
    try:
        found = json.loads(Path(modules).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{modules} is not valid JSON ({err})") from err
    return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else None


def encoder_folder(model_path: str) -> str:
    """Where the encoder's config, weights and tokenizer are: ``model_path``, or, in the older sentence-transformers
    layout (nothing at the top but modules.json and the modules' folders), the Transformer module's folder that
    modules.json names (``0_Transformer``). The Pooling module is read from ``model_path`` either way."""
    folder = Path(model_path)
    if not folder.is_dir() or (folder / "config.json").is_file():
        return model_path
    modules = sentence_transformers_modules(model_path) or []
    named = [m["path"] for m in modules if str(m.get("type", "")).endswith(".Transformer") and m.get("path")]
    return str(folder / named[0]) if named else model_path


def sentence_transformers_modes(model_path: str) -> frozenset[str] | None:
    """The pooling modes of a sentence-transformers checkpoint (``modules.json``'s Pooling module, e.g.
    ``{"mean_tokens"}``); None when the model is no sentence-transformers model."""
    found = [m for m in sentence_transformers_modules(model_path) or [] if is_pooling_module(m)]
    config = model_file(model_path, f"{found[0]['path']}/config.json") if found and found[0].get("path") else None
    if config is None:
        return None
    settings = json.loads(Path(config).read_text(encoding="utf-8"))
    return frozenset(
        k.removeprefix("pooling_mode_") for k, v in settings.items() if k.startswith("pooling_mode_") and v
    )


def is_pooling_module(module: dict[str, Any]) -> bool:
    """Whether a ``modules.json`` entry is sentence-transformers' Pooling module."""
    return str(module.get("type", "")).endswith(".Pooling")


def modules_after_pooling(model_path: str) -> list[str]:
    """The sentence-transformers modules that follow the Pooling one (Dense, Normalize), by class name: the
    classifier's head reads the pooled vector, so these are not used."""
    modules = sentence_transformers_modules(model_path) or []
    pooling = next((i for i, m in enumerate(modules) if is_pooling_module(m)), len(modules))
    return [str(m.get("type", "?")).rsplit(".", 1)[-1] for m in modules[pooling + 1 :]]


def checkpoint_weight_names(model_path: str) -> set[str]:
    """The names of the weights a checkpoint stores, read from a safetensors header or a shard index (a .bin state
    dict is memory-mapped), without loading them."""
    for name in WEIGHT_FILES:
        if (file := model_file(model_path, name)) is None:
            continue
        if name.endswith(".index.json"):
            return set(json.loads(Path(file).read_text(encoding="utf-8"))["weight_map"])
        if name.endswith(".safetensors"):
            with open(file, "rb") as handle:  # 8 bytes of header length, then the JSON header
                length = int.from_bytes(handle.read(8), "little")
                if length > os.fstat(handle.fileno()).st_size:  # not a safetensors file: never read that much
                    raise ValueError(f"{file} is no safetensors file (its header length runs past its end)")
                header = json.loads(handle.read(length))
            return set(header) - {"__metadata__"}
        return set(torch.load(file, map_location="cpu", mmap=True, weights_only=True))
    return set()


def meta_backbone(backbone_config: Any) -> nn.Module:
    """The backbone's architecture on the meta device: its modules, without memory or initialisation."""
    with torch.device("meta"):
        return AutoModel.from_config(backbone_config)


def layer_stack(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's stack of transformer layers, found by shape (the longest ModuleList of one layer type), so
    BERT's ``encoder.layer``, DistilBERT's ``transformer.layer`` and ModernBERT's ``layers`` all work. ALBERT's is
    one shared layer, whatever its config's num_hidden_layers."""
    stacks = [
        m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) and len({type(x) for x in m}) == 1
    ]
    if not stacks:
        raise ValueError(f"no stack of layers found in {type(backbone).__name__}")
    return max(stacks, key=len)


def position_offset(backbone: nn.Module) -> int:
    """Positions the embeddings use up before the first token: RoBERTa, XLM-R and MPNet number positions from
    padding_idx + 1, so they take max_position_embeddings - padding_idx - 1 tokens; 0 elsewhere."""
    positions = getattr(getattr(backbone, "embeddings", None), "position_embeddings", None)
    pad = getattr(positions, "padding_idx", None)
    return pad + 1 if isinstance(positions, nn.Embedding) and pad is not None else 0


def pretrained_pooler_dense(backbone: nn.Module) -> tuple[str, nn.Linear] | None:
    """The backbone's pooler layer ([CLS] through dense + tanh) and its weight's name: BERT's ``pooler.dense``,
    ALBERT's ``pooler`` (a Linear followed by its pooler_activation); None where the architecture has none."""
    pooler = getattr(backbone, "pooler", None)
    dense = getattr(pooler, "dense", pooler)
    if not isinstance(dense, nn.Linear):
        return None
    return "pooler.weight" if dense is pooler else "pooler.dense.weight", dense


def has_pretrained_pooler(model_path: str) -> bool:
    """Whether the backbone has a pretrained pooler (BERT's, ALBERT's) and its checkpoint stores that layer's weights
    (a backbone saved from random initialisation without them has nothing to start from)."""
    encoder = encoder_folder(model_path)
    backbone = meta_backbone(AutoConfig.from_pretrained(encoder))
    if (found := pretrained_pooler_dense(backbone)) is None:
        return False
    # A base model's checkpoint names it pooler.*, a task model's (bert-base-uncased's BertForPreTraining) bert.pooler.*
    stored = {found[0], f"{backbone.base_model_prefix}.{found[0]}"}
    return bool(stored & checkpoint_weight_names(encoder))


def modernbert_classifier_pooling(model_path: str) -> str | None:
    """A ModernBERT checkpoint's own ``classifier_pooling`` (cls or mean: what ModernBertForSequenceClassification
    pools with); None for other architectures."""
    config = AutoConfig.from_pretrained(encoder_folder(model_path))
    found = getattr(config, "classifier_pooling", None) if config.model_type == "modernbert" else None
    return found if found in ("cls", "mean") else None


def resolve_pooling(model_path: str, pooling: str = "auto") -> tuple[str, str]:
    """The pooling to build on the backbone at ``model_path`` and why, for the log. ``auto``: the checkpoint's
    sentence-transformers pooling, else ModernBERT's classifier_pooling, else XLNet's last token, else its pretrained
    pooler, else cls.
    ValueError for ``pooler`` on a backbone without pretrained pooler weights."""
    if pooling == "pooler" and not has_pretrained_pooler(model_path):
        raise ValueError(
            f"{model_path} has no pretrained pooler to start from (its architecture has no pooler layer, or its "
            "checkpoint stores no weights for it)"
        )
    if pooling != "auto":
        return pooling, "as asked"
    modes = sentence_transformers_modes(model_path)
    if modes is not None and (name := SENTENCE_TRANSFORMERS_POOLINGS.get(modes)):
        why = f"auto: the checkpoint's sentence-transformers pooling, {'+'.join(sorted(modes))}"
        if after := modules_after_pooling(model_path):
            plural = len(after) > 1
            why += f"; its {' and '.join(after)} module{'s' * plural} after the pooling {'are' if plural else 'is'} "
            why += "not used"
        return name, why
    why = "auto: "
    if modes is not None:
        why += f"its sentence-transformers pooling, {'+'.join(sorted(modes)) or 'none'}, has no equivalent here; "
    # ModernBERT has no pretrained pooler; its checkpoints name the pooling its classification model uses (mean in
    # ModernBERT-base's own config, where cls would be the fallback below).
    if found := modernbert_classifier_pooling(model_path):
        return found, why + f"ModernBERT's classifier_pooling, {found}"
    # XLNet's tokenizer appends <cls> after the text, and its own classifier reads that last token (summary_type
    # "last"): the first position is a word there, not a summary token.
    if getattr(AutoConfig.from_pretrained(encoder_folder(model_path)), "summary_type", None) == "last":
        return "last", why + "the checkpoint summarises with its last token (summary_type 'last')"
    if has_pretrained_pooler(model_path):
        return "pooler", why + "the checkpoint's pretrained pooler"
    return "cls", why + "no pretrained pooler weights in the checkpoint"


# ----------------------------------------------------------------------------------------------------------------
# Heads: (batch, input_dim) -> (batch, num_labels), built from (input_dim, num_labels, model config); a head reads
# its hyperparameters from the config (classifier_dropout, or a field of its own).


class LinearHead(nn.Module):
    """Dropout then one linear layer."""

    def __init__(self, input_dim: int, num_labels: int, config: PretrainedConfig):
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(input_dim, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class MLPHead(nn.Module):
    """A residual MLP block on the pooled vector (LayerNorm -> dropout -> Linear -> GELU -> Linear, added back),
    then dropout and the classifier."""

    def __init__(self, input_dim: int, num_labels: int, config: PretrainedConfig):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.up = nn.Linear(input_dim, input_dim)
        self.act = nn.GELU()
        self.down = nn.Linear(input_dim, input_dim)
        self.classifier = nn.Linear(input_dim, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        hidden = pooled + self.down(self.act(self.up(self.dropout(self.norm(pooled)))))  # (batch, input_dim)
        return self.classifier(self.dropout(hidden))


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MLPHead}

# ----------------------------------------------------------------------------------------------------------------
# Problem types: each one's loss per row, from the heads' logits (one tensor per head: one head, or one per hierarchy
# level); ``forward`` takes the mean, evaluate.py the same rows for the validation loss and per-example losses.
# ``teacher``/``teacher_mask`` are the distillation inputs (single-label only). The loss settings (label_smoothing,
# loss/focal_gamma, class_weights, pos_weight) are read from the model config. Every loss is computed in float32
# at least, even under autocast: the log-softmax of bf16 logits loses the small differences.


def upcast(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits as float32; float32 and float64 (evaluation computes in float64) unchanged."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def class_loss(logits: torch.Tensor, labels: torch.Tensor, config: PretrainedConfig, level: int = 0) -> torch.Tensor:
    """Per-row loss of one-of-n labels (batch,): cross-entropy with ``label_smoothing``, times ``(1 - p_gold)^gamma``
    with ``loss="focal"``, times the gold class's weight (``class_weights[level]``)."""
    logits = upcast(logits)
    loss = F.cross_entropy(logits, labels, reduction="none", label_smoothing=config.label_smoothing)
    if config.loss == "focal":
        gold_prob = torch.exp(-F.cross_entropy(logits, labels, reduction="none"))  # p_gold, without smoothing
        loss = (1 - gold_prob) ** config.focal_gamma * loss
    return loss * gold_class_weights(labels, config, level, logits)


def gold_class_weights(
    labels: torch.Tensor, config: PretrainedConfig, level: int, like: torch.Tensor
) -> torch.Tensor | float:
    """Each row's weight: its gold class's entry of ``class_weights[level]`` (1 without class weights)."""
    if not config.class_weights:
        return 1.0
    # A plain mean of weighted rows (not torch's sum(w * loss) / sum(w)): every row keeps its weight whatever else is
    # in its batch, so accumulation and batch size change nothing, and balanced weights average 1 over train.
    return like.new_tensor(config.class_weights[level])[labels]


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    has_teacher: torch.Tensor,
    alpha: float,
    temperature: float,
    hard: torch.Tensor | None = None,
    weights: torch.Tensor | float = 1.0,
    reduce: bool = True,
) -> torch.Tensor:
    """Mean over rows of ``weights * (alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * hard)``; rows without
    a teacher get ``weights * hard``. ``hard``: the rows' hard-label loss (default plain cross-entropy). The teacher's
    probabilities are softened like logits: ``p^(1/T)`` renormalised. ``reduce=False``: the rows, not their mean."""
    logits = upcast(logits)
    hard = F.cross_entropy(logits, labels, reduction="none") if hard is None else hard  # (batch,)
    soft = teacher_probs.to(logits.dtype).clamp_min(1e-12) ** (1.0 / temperature)
    soft = soft / soft.sum(dim=-1, keepdim=True)  # (batch, num_labels)
    log_student = F.log_softmax(logits / temperature, dim=-1)
    kl = (soft * (soft.log() - log_student)).sum(dim=-1) * temperature**2  # (batch,)
    rows = weights * torch.where(has_teacher, alpha * kl + (1 - alpha) * hard, hard)
    return rows.mean() if reduce else rows


def single_label_loss(
    logits: list[torch.Tensor],
    labels: torch.Tensor,
    config: PretrainedConfig,
    teacher: Any = None,
    teacher_mask: Any = None,
) -> torch.Tensor:
    """Cross-entropy (or focal) per row; with teacher probabilities, the distillation mix (rows without a teacher:
    the hard-label loss). A class weight weighs the row's whole loss."""
    if teacher is None:
        return class_loss(logits[0], labels, config)
    logits = upcast(logits[0])
    hard = F.cross_entropy(logits, labels, reduction="none", label_smoothing=config.label_smoothing)  # (batch,)
    alpha, temperature = config.distill_alpha, config.distill_temperature  # (focal is refused with a teacher)
    weights = gold_class_weights(labels, config, 0, logits)
    return distillation_loss(logits, labels, teacher, teacher_mask, alpha, temperature, hard, weights, reduce=False)


def multi_label_loss(
    logits: list[torch.Tensor], labels: torch.Tensor, config: PretrainedConfig, **_: Any
) -> torch.Tensor:
    """Binary cross-entropy averaged over the labels of each row, with ``pos_weight`` on the positive terms,
    targets smoothed towards 0.5 by ``label_smoothing``, and the focal factor ``(1 - p_t)^gamma`` per label."""
    logits = upcast(logits[0])
    targets = labels.to(logits.dtype)
    smoothed = targets * (1 - config.label_smoothing) + config.label_smoothing / 2
    pos_weight = logits.new_tensor(config.pos_weight) if config.pos_weight else None
    loss = F.binary_cross_entropy_with_logits(logits, smoothed, pos_weight=pos_weight, reduction="none")
    if config.loss == "focal":
        probs = torch.sigmoid(logits)
        p_true = probs * targets + (1 - probs) * (1 - targets)  # (batch, labels): probability of the gold value
        loss = (1 - p_true) ** config.focal_gamma * loss
    return loss.mean(dim=-1)


def hierarchical_loss(
    logits: list[torch.Tensor], labels: torch.Tensor, config: PretrainedConfig, **_: Any
) -> torch.Tensor:
    """The weighted sum of the levels' losses per row (labels: (batch, levels)); class weights per level."""
    weights = config.level_loss_weights
    return sum(
        w * class_loss(z, labels[:, i], config, level=i) for i, (w, z) in enumerate(zip(weights, logits, strict=True))
    )


# Problem type -> its loss per row. A new problem type is one loss here (plus its metrics object in evaluate.py).
LOSSES = {
    "single_label_classification": single_label_loss,
    "multi_label_classification": multi_label_loss,
    "hierarchical_classification": hierarchical_loss,
}

# The model settings' defaults, in one place: config.py's flags take them from here (this file is copied into
# best_model/ and cannot import config.py). Pooling: "cls" is what a saved config without the key means; the
# training flag's default, "auto", is resolved (resolve_pooling) before a config is built.
MODEL_DEFAULTS: dict[str, Any] = {
    "pooling": "cls",
    "head": "linear",
    "classifier_dropout": 0.1,
    "distill_alpha": 0.5,
    "distill_temperature": 2.0,
    "consistent_decoding": False,
    "loss": "cross_entropy",
    "focal_gamma": 2.0,
    "label_smoothing": 0.0,
    "window_pooling": "mean",
}


# ----------------------------------------------------------------------------------------------------------------


class EncoderClassifierConfig(PretrainedConfig):
    """Backbone config (embedded as a dict, so no backbone directory is needed to rebuild), pooling, head, labels."""

    model_type = "encoder_classifier"

    def __init__(
        self,
        backbone_config: dict | None = None,
        pooling: str = MODEL_DEFAULTS["pooling"],
        head: str = MODEL_DEFAULTS["head"],
        classifier_dropout: float = MODEL_DEFAULTS["classifier_dropout"],
        levels: list[dict] | None = None,
        level_parents: list[list[int]] | None = None,
        level_loss_weights: list[float] | None = None,
        consistent_decoding: bool = MODEL_DEFAULTS["consistent_decoding"],
        thresholds: list[float] | None = None,
        distill_alpha: float = MODEL_DEFAULTS["distill_alpha"],
        distill_temperature: float = MODEL_DEFAULTS["distill_temperature"],
        loss: str = MODEL_DEFAULTS["loss"],
        focal_gamma: float = MODEL_DEFAULTS["focal_gamma"],
        label_smoothing: float = MODEL_DEFAULTS["label_smoothing"],
        class_weights: list[list[float]] | None = None,
        pos_weight: list[float] | None = None,
        window_pooling: str = MODEL_DEFAULTS["window_pooling"],
        **kwargs,
    ):
        # kwargs also carry a head's own settings (TrainConfig fields marked model=True): PretrainedConfig keeps
        # unknown keys as attributes and saves them in config.json, so the head finds them again on reload.
        # transformers 4 rejects any problem_type but its own three: hierarchical_classification is set after. (The
        # others still go through transformers' checks, such as single-label needing two labels.)
        hierarchical = kwargs.get("problem_type") == "hierarchical_classification"
        if hierarchical:
            kwargs.pop("problem_type")
        super().__init__(**kwargs)
        if hierarchical:
            self.problem_type = "hierarchical_classification"
        # Master weights are fp32 whatever dtype the backbone checkpoint was stored in: mixed precision is autocast
        # only. A bf16/fp16 dtype left here would make from_config build (and reloads cast to) half precision.
        self.dtype = "float32"
        self.backbone_config = {**(backbone_config or {}), "dtype": "float32"}
        self.backbone_config.pop("torch_dtype", None)
        self.pooling = pooling
        self.head = head
        self.classifier_dropout = classifier_dropout
        # Hierarchical: [{"name": column, "labels": [...]}] coarse to fine; id2label holds the finest level.
        self.levels = levels or []
        self.level_parents = level_parents or []
        self.level_loss_weights = level_loss_weights or [1.0] * len(self.levels)
        self.consistent_decoding = consistent_decoding
        # Multi-label: per-label decision thresholds on the sigmoid, tuned on validation after training.
        self.thresholds = thresholds
        # Distillation (single-label with teacher probabilities): the KL weight and the temperature.
        self.distill_alpha = distill_alpha
        self.distill_temperature = distill_temperature
        # The loss (LOSSES reads these): focal or cross-entropy, label smoothing, and the class weights resolved to
        # numbers at training time (one list per level in label-id order: one level unless hierarchical) or the
        # multi-label positive weights (one per label), so a reload computes the same validation loss.
        self.loss = loss
        self.focal_gamma = focal_gamma
        self.label_smoothing = label_smoothing
        self.class_weights = class_weights
        self.pos_weight = pos_weight
        # Long documents cut into windows: how evaluation pools a document's window logits (evaluate.WINDOW_POOLINGS).
        self.window_pooling = window_pooling


# Layers that map the embeddings to the hidden size outside backbone.embeddings (ELECTRA's embeddings_project,
# ALBERT's encoder.embedding_hidden_mapping_in): frozen and decayed with the embeddings, not trained as a top layer.
EMBEDDING_PROJECTIONS = ("embeddings_project", "embedding_hidden_mapping_in")


class EncoderClassifier(PreTrainedModel):
    """Encoder backbone -> pooling -> head. ``__init__`` only builds; ``from_backbone`` loads pretrained weights."""

    config_class = EncoderClassifierConfig
    base_model_prefix = "backbone"  # model.base_model is the encoder
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: EncoderClassifierConfig):
        super().__init__(config)
        backbone_config = AutoConfig.for_model(**config.backbone_config)
        try:  # the CPU-dropout attention where the backbone takes a registered attention function
            attention = ATTENTION if takes_attention_functions(backbone_config) else None
            self.backbone = AutoModel.from_config(backbone_config, dtype=torch.float32, attn_implementation=attention)
        except (ValueError, ImportError, KeyError):
            # A failed build has already written the name into the config it was given: a fresh one for the default.
            backbone_config = AutoConfig.for_model(**config.backbone_config)
            self.backbone = AutoModel.from_config(backbone_config, dtype=torch.float32)
        # The classifier pools last_hidden_state itself; a backbone pooler would be parameters without gradients
        # (DDP's "unused parameters" error) and weights saved for nothing. (Pooling "pooler" holds its own copy.)
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None
        # Only BERT-style backbones take token_type_ids; DistilBERT and ModernBERT reject the argument. A backbone
        # pretrained with one type (RoBERTa, XLM-R) or none (DeBERTa-v3) reads every token as type 0, as without them;
        # a BERT-style tokenizer's type 1 for a pair's second text would index past its embeddings.
        takes = "token_type_ids" in inspect.signature(self.backbone.forward).parameters
        self._takes_token_types = takes and getattr(backbone_config, "type_vocab_size", None) not in (0, 1)
        self.pooler = POOLERS[config.pooling](backbone_config.hidden_size)
        if config.problem_type == "hierarchical_classification":
            # One head per level, all reading the same pooled vector.
            self.heads = nn.ModuleList(
                HEADS[config.head](self.pooler.output_dim, len(level["labels"]), config) for level in config.levels
            )
        else:
            self.head = HEADS[config.head](self.pooler.output_dim, config.num_labels, config)
        use_cpu_dropout(self)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise Linear (normal, std 0.02, zero bias) and LayerNorm (1, 0) layers of pooling and heads, as BERT
        does; any other parameter a head creates keeps the value its own ``__init__`` gave it. (The backbone's
        weights are then overwritten by the pretrained ones or by the checkpoint.)"""
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            if module.bias is not None:
                module.bias.data.zero_()

    def encoder_layers(self) -> nn.ModuleList:
        """The backbone's stack of transformer layers (see layer_stack)."""
        return layer_stack(self.backbone)

    def embeddings(self) -> list[nn.Module]:
        """The embedding stage: the backbone's embedding block (word, position, type embeddings and their norm) and
        the layer that maps it to the hidden size where that sits outside it (ELECTRA, ALBERT)."""
        block = getattr(self.backbone, "embeddings", None) or self.backbone.get_input_embeddings()
        projections = [m for n, m in self.backbone.named_modules() if n.rsplit(".", 1)[-1] in EMBEDDING_PROJECTIONS]
        return [block, *projections]

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The embedding stage's parameters."""
        return [p for module in self.embeddings() for p in module.parameters()]

    def parameter_depths(self) -> dict[str, int]:
        """Depth of each parameter for layer-wise learning rates: embeddings 0, layer k k+1, the rest of the
        backbone (e.g. a final norm) num_layers + 1, pooling and head num_layers + 2."""
        layers = self.encoder_layers()
        top = len(layers) + 1
        owner = {id(p): 0 for p in self.embedding_parameters()}
        for k, layer in enumerate(layers):
            owner.update({id(p): k + 1 for p in layer.parameters()})
        backbone = {id(p) for p in self.backbone.parameters()}
        return {name: owner.get(id(p), top if id(p) in backbone else top + 1) for name, p in self.named_parameters()}

    def freeze(self, freeze: str = "none", freeze_layers: int = 0) -> int:
        """Freeze the embeddings, the first ``freeze_layers`` layers, or the whole backbone; returns the number of
        frozen parameters."""
        frozen: list[nn.Module] = []
        if freeze == "backbone":
            frozen = [self.backbone]
        elif freeze == "embeddings" or freeze_layers:
            frozen = [*self.embeddings(), *self.encoder_layers()[:freeze_layers]]
        for module in frozen:
            module.requires_grad_(False)
        return sum(p.numel() for p in self.parameters() if not p.requires_grad)

    def no_decay_parameter_names(self) -> set[str]:
        """Biases and every parameter owned by a normalization module (chosen by type, not by name)."""
        norm_types = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, getattr(nn, "RMSNorm", nn.LayerNorm))
        names = set()
        for module_name, module in self.named_modules():
            # Custom norms (T5LayerNorm, the *RMSNorm classes of newer backbones) are not nn.LayerNorm subclasses.
            is_norm = isinstance(module, norm_types) or type(module).__name__.lower().endswith(("norm", "layernorm"))
            for param_name, _ in module.named_parameters(recurse=False):
                if is_norm or param_name == "bias":
                    names.add(f"{module_name}.{param_name}" if module_name else param_name)
        return names

    def parameter_learning_rates(
        self, learning_rate: float, layer_lr_decay: float = 1.0, head_learning_rate: float | None = None
    ) -> dict[str, float]:
        """Per-parameter learning rates: the top encoder layer (and anything above it in the backbone) at
        ``learning_rate``, each layer below at ``layer_lr_decay`` times the one above, the embeddings last; pooling
        and heads at ``head_learning_rate`` (default: ``learning_rate``)."""
        num_layers = len(self.encoder_layers())
        head_lr = head_learning_rate or learning_rate
        return {
            name: head_lr if depth == num_layers + 2 else learning_rate * layer_lr_decay ** max(0, num_layers - depth)
            for name, depth in self.parameter_depths().items()
        }

    def parameter_groups(
        self,
        learning_rate: float,
        weight_decay: float,
        layer_lr_decay: float = 1.0,
        head_learning_rate: float | None = None,
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups of the trainable parameters (frozen ones get no optimizer state), one per
        (weight decay, learning rate): no decay on biases and norms, layer-wise learning rates."""
        no_decay = self.no_decay_parameter_names()
        lrs = self.parameter_learning_rates(learning_rate, layer_lr_decay, head_learning_rate)
        grouped: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                decay = 0.0 if name in no_decay else weight_decay
                grouped.setdefault((decay, lrs[name]), []).append(param)
        return [{"params": ps, "weight_decay": wd, "lr": lr} for (wd, lr), ps in grouped.items()]

    @classmethod
    def from_backbone(
        cls,
        backbone_name_or_path: str,
        id2label: dict[int, str],
        problem_type: str = "single_label_classification",
        **settings: Any,
    ) -> EncoderClassifier:
        """Build the classifier and load the pretrained backbone weights: the one place they are read, for training.
        ``settings`` are EncoderClassifierConfig fields (pooling, head, classifier_dropout, a hierarchy's levels...)
        and any head's own settings."""
        if settings.get("pooling") == "auto":
            settings["pooling"] = resolve_pooling(backbone_name_or_path)[0]
        # transformers loads a checkpoint in its stored dtype; training needs fp32 master weights.
        pretrained, loading = AutoModel.from_pretrained(
            encoder_folder(backbone_name_or_path), dtype=torch.float32, output_loading_info=True
        )
        found = pretrained_pooler_dense(pretrained)
        if settings.get("pooling") == "pooler" and (
            found is None or any(k.endswith(found[0]) for k in loading["missing_keys"])
        ):
            raise ValueError(f"pooling 'pooler': {backbone_name_or_path} has no pretrained pooler weights")
        config = EncoderClassifierConfig(
            backbone_config=pretrained.config.to_dict(),
            id2label={int(i): name for i, name in id2label.items()},
            label2id={name: int(i) for i, name in id2label.items()},
            problem_type=problem_type,
            **settings,
        )
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(pretrained.state_dict(), strict=False)
        unexpected = [k for k in unexpected if not k.startswith("pooler.")]
        if missing or unexpected:
            raise RuntimeError(f"backbone weights do not match its config: missing={missing} unexpected={unexpected}")
        if config.pooling == "pooler":  # __init__ dropped the backbone's pooler: its trained layer lives on here
            model.pooler.dense.load_state_dict(found[1].state_dict())
        return model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        teacher: torch.Tensor | None = None,
        teacher_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> ClassifierOutput:
        """Logits (batch, num_labels; the finest level's for a hierarchy) and, with ``labels``, the problem type's
        loss (the mean of LOSSES' rows); ``teacher`` (batch, num_labels) probabilities and ``teacher_mask`` (batch,)
        add distillation."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._takes_token_types else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = self.pooler(hidden, attention_mask)  # (batch, pooled_dim)
        heads = self.heads if hasattr(self, "heads") else [self.head]  # one head per hierarchy level, else one
        logits = [head(pooled) for head in heads]  # each (batch, labels of its level)
        loss = None
        if labels is not None:
            extra = {"teacher": teacher, "teacher_mask": teacher_mask} if teacher is not None else {}
            loss = LOSSES[self.config.problem_type](logits, labels, self.config, **extra).mean()
        # A hierarchy's metrics need every level: level_logits holds them side by side.
        level_logits = torch.cat(logits, dim=-1) if len(logits) > 1 else None
        return ClassifierOutput(loss=loss, logits=logits[-1], level_logits=level_logits)


@dataclass
class ClassifierOutput(SequenceClassifierOutput):
    """SequenceClassifierOutput plus, for a hierarchy, every level's logits side by side (batch, sum of levels)."""

    level_logits: torch.Tensor | None = None


# Local registration (``AutoModelForSequenceClassification.from_pretrained(best_model)`` in this process) and
# auto_map registration (the saved folder carries this file for ``trust_remote_code=True`` elsewhere).
AutoConfig.register(EncoderClassifierConfig.model_type, EncoderClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(EncoderClassifierConfig, EncoderClassifier, exist_ok=True)
EncoderClassifierConfig.register_for_auto_class()
EncoderClassifier.register_for_auto_class("AutoModelForSequenceClassification")
