"""The classifier: an encoder backbone, a pooling and a head, saved and reloaded as one self-contained model.

Adding a pooling or a head is one small ``nn.Module`` plus one line in ``POOLERS`` or ``HEADS``::

    class LastTokenPooling(nn.Module):
        def __init__(self, hidden_size: int):
            super().__init__()
            self.output_dim = hidden_size

        def forward(self, hidden, mask):  # (batch, seq, hidden), (batch, seq) -> (batch, hidden)
            last = mask.sum(dim=1) - 1
            return hidden[torch.arange(hidden.size(0), device=hidden.device), last]

    POOLERS["last"] = LastTokenPooling

This file imports only torch and transformers: ``save_pretrained`` copies it into ``best_model/`` so that
``AutoModelForSequenceClassification.from_pretrained(best_model, trust_remote_code=True)`` works anywhere.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
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


class ClsMeanPooling(nn.Module):
    """The first token's vector concatenated with the masked mean: (batch, 2 * hidden)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_dim = 2 * hidden_size
        self.cls, self.mean = ClsPooling(hidden_size), MeanPooling(hidden_size)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cls(hidden, mask), self.mean(hidden, mask)], dim=-1)


POOLERS: dict[str, type[nn.Module]] = {
    "cls": ClsPooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "cls_mean": ClsMeanPooling,
}


# ----------------------------------------------------------------------------------------------------------------
# Heads: (batch, input_dim) -> (batch, num_labels)


class LinearHead(nn.Module):
    """Dropout then one linear layer."""

    def __init__(self, input_dim: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(input_dim, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class MLPHead(nn.Module):
    """A residual MLP block on the pooled vector (LayerNorm -> dropout -> Linear -> GELU -> Linear, added back),
    then dropout and the classifier."""

    def __init__(self, input_dim: int, num_labels: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(input_dim, input_dim)
        self.act = nn.GELU()
        self.down = nn.Linear(input_dim, input_dim)
        self.classifier = nn.Linear(input_dim, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        hidden = pooled + self.down(self.act(self.up(self.dropout(self.norm(pooled)))))  # (batch, input_dim)
        return self.classifier(self.dropout(hidden))


HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "mlp": MLPHead}


# ----------------------------------------------------------------------------------------------------------------


class EncoderClassifierConfig(PretrainedConfig):
    """Backbone config (embedded as a dict, so no backbone directory is needed to rebuild), pooling, head, labels."""

    model_type = "encoder_classifier"

    def __init__(
        self,
        backbone_config: dict | None = None,
        pooling: str = "cls",
        head: str = "linear",
        classifier_dropout: float = 0.1,
        levels: list[dict] | None = None,
        level_parents: list[list[int]] | None = None,
        level_loss_weights: list[float] | None = None,
        consistent_decoding: bool = False,
        thresholds: list[float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
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


class EncoderClassifier(PreTrainedModel):
    """Encoder backbone -> pooling -> head. ``__init__`` only builds; ``from_backbone`` loads pretrained weights."""

    config_class = EncoderClassifierConfig
    base_model_prefix = "classifier_model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: EncoderClassifierConfig):
        super().__init__(config)
        backbone_config = AutoConfig.for_model(**config.backbone_config)
        self.backbone = AutoModel.from_config(backbone_config, dtype=torch.float32)
        # The classifier pools last_hidden_state itself; a backbone pooler would be parameters without gradients
        # (DDP's "unused parameters" error) and weights saved for nothing.
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None
        # Only BERT-style backbones take token_type_ids; DistilBERT and ModernBERT reject the argument.
        self._takes_token_types = "token_type_ids" in inspect.signature(self.backbone.forward).parameters
        self.pooler = POOLERS[config.pooling](backbone_config.hidden_size)
        if config.problem_type == "hierarchical_classification":
            # One head per level, all reading the same pooled vector.
            self.heads = nn.ModuleList(
                HEADS[config.head](self.pooler.output_dim, len(level["labels"]), config.classifier_dropout)
                for level in config.levels
            )
        else:
            self.head = HEADS[config.head](self.pooler.output_dim, config.num_labels, config.classifier_dropout)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise head layers (the backbone's own are overwritten by pretrained weights or the checkpoint)."""
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            if module.bias is not None:
                module.bias.data.zero_()

    def encoder_layers(self) -> nn.ModuleList:
        """The backbone's stack of transformer layers, found by shape (the longest ModuleList of one layer type), so
        BERT's ``encoder.layer``, DistilBERT's ``transformer.layer`` and ModernBERT's ``layers`` all work."""
        stacks = [
            m
            for m in self.backbone.modules()
            if isinstance(m, nn.ModuleList) and len(m) and len({type(x) for x in m}) == 1
        ]
        if not stacks:
            raise ValueError(f"no stack of layers found in {type(self.backbone).__name__}")
        return max(stacks, key=len)

    def embeddings(self) -> nn.Module:
        """The backbone's embedding block (word, position, type embeddings and their norm)."""
        return getattr(self.backbone, "embeddings", None) or self.backbone.get_input_embeddings()

    def parameter_depths(self) -> dict[str, int]:
        """Depth of each parameter for layer-wise learning rates: embeddings 0, layer k k+1, the rest of the
        backbone (e.g. a final norm) num_layers + 1, pooling and head num_layers + 2."""
        layers = self.encoder_layers()
        top = len(layers) + 1
        owner = {id(p): 0 for p in self.embeddings().parameters()}
        for k, layer in enumerate(layers):
            owner.update({id(p): k + 1 for p in layer.parameters()})
        backbone = {id(p) for p in self.backbone.parameters()}
        return {name: owner.get(id(p), top if id(p) in backbone else top + 1) for name, p in self.named_parameters()}

    @classmethod
    def from_backbone(
        cls,
        backbone_name_or_path: str,
        id2label: dict[int, str],
        pooling: str = "cls",
        head: str = "linear",
        classifier_dropout: float = 0.1,
        problem_type: str = "single_label_classification",
        **task: Any,
    ) -> EncoderClassifier:
        """Build the classifier and load the pretrained backbone weights: the one place they are read, for training.
        ``task`` holds the hierarchical settings (levels, level_parents, level_loss_weights, consistent_decoding)."""
        # transformers loads a checkpoint in its stored dtype; training needs fp32 master weights.
        pretrained = AutoModel.from_pretrained(backbone_name_or_path, dtype=torch.float32)
        config = EncoderClassifierConfig(
            backbone_config=pretrained.config.to_dict(),
            pooling=pooling,
            head=head,
            classifier_dropout=classifier_dropout,
            id2label={int(i): name for i, name in id2label.items()},
            label2id={name: int(i) for i, name in id2label.items()},
            problem_type=problem_type,
            **task,
        )
        model = cls(config)
        missing, unexpected = model.backbone.load_state_dict(pretrained.state_dict(), strict=False)
        unexpected = [k for k in unexpected if not k.startswith("pooler.")]
        if missing or unexpected:
            raise RuntimeError(f"backbone weights do not match its config: missing={missing} unexpected={unexpected}")
        return model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> ClassifierOutput:
        """Logits (batch, num_labels; the finest level's for a hierarchy) and, with ``labels``, the task's loss:
        cross-entropy, binary cross-entropy (multi-label) or the weighted sum of per-level cross-entropies."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self._takes_token_types else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = self.pooler(hidden, attention_mask)  # (batch, pooled_dim)
        problem = self.config.problem_type
        # Losses in float32 even under autocast: the log-softmax of bf16 logits loses the small differences.
        if problem == "hierarchical_classification":
            per_level = [head(pooled) for head in self.heads]  # each (batch, labels of that level)
            loss = None
            if labels is not None:  # (batch, levels)
                weights = self.config.level_loss_weights
                loss = sum(
                    w * F.cross_entropy(z.float(), labels[:, i])
                    for i, (w, z) in enumerate(zip(weights, per_level, strict=True))
                )
            return ClassifierOutput(loss=loss, logits=per_level[-1], level_logits=torch.cat(per_level, dim=-1))
        logits = self.head(pooled)  # (batch, num_labels)
        loss = None
        if labels is not None and problem == "multi_label_classification":
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        elif labels is not None:
            loss = F.cross_entropy(logits.float(), labels)
        return ClassifierOutput(loss=loss, logits=logits)


@dataclass
class ClassifierOutput(SequenceClassifierOutput):
    """SequenceClassifierOutput plus, for a hierarchy, every level's logits side by side (batch, sum of levels)."""

    level_logits: torch.Tensor | None = None


def distillation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_probs: torch.Tensor,
    has_teacher: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """Mean over rows of ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE``; rows without a teacher
    get plain CE. The teacher's probabilities are softened like logits: ``p^(1/T)`` renormalised."""
    logits = logits.float()
    ce = F.cross_entropy(logits, labels, reduction="none")  # (batch,)
    soft = teacher_probs.float().clamp_min(1e-12) ** (1.0 / temperature)
    soft = soft / soft.sum(dim=-1, keepdim=True)  # (batch, num_labels)
    log_student = F.log_softmax(logits / temperature, dim=-1)
    kl = (soft * (soft.log() - log_student)).sum(dim=-1) * temperature**2  # (batch,)
    return torch.where(has_teacher, alpha * kl + (1 - alpha) * ce, ce).mean()


# Local registration (``AutoModelForSequenceClassification.from_pretrained(best_model)`` in this process) and
# auto_map registration (the saved folder carries this file for ``trust_remote_code=True`` elsewhere).
AutoConfig.register(EncoderClassifierConfig.model_type, EncoderClassifierConfig, exist_ok=True)
AutoModelForSequenceClassification.register(EncoderClassifierConfig, EncoderClassifier, exist_ok=True)
EncoderClassifierConfig.register_for_auto_class()
EncoderClassifier.register_for_auto_class("AutoModelForSequenceClassification")
