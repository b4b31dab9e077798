"""From a model config to modules: :func:`build_model`, and :func:`count_parameters`."""

from __future__ import annotations

from dataclasses import fields

from torch import nn

from .bahdanau import BahdanauSeq2Seq
from .config import BahdanauConfig, TransformerConfig
from .transformer import Transformer

__all__ = ["build_model", "count_parameters"]


def build_model(config: TransformerConfig | BahdanauConfig, *, backend: str = "auto"
                ) -> nn.Module:
    """The model a config describes (freshly initialized); every field is used."""
    classes = {TransformerConfig: Transformer, BahdanauConfig: BahdanauSeq2Seq}
    if type(config) not in classes:
        raise TypeError(
            f"config must be a TransformerConfig or BahdanauConfig; got {type(config).__name__}"
        )
    kwargs = {f.name: getattr(config, f.name) for f in fields(config)}
    src, tgt = kwargs.pop("src_vocab_size"), kwargs.pop("tgt_vocab_size")
    return classes[type(config)](src, tgt, backend=backend, **kwargs)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters, each shared tensor counted once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)
