"""From a model config to modules: :func:`build_model`, and :func:`count_parameters`."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from torch import nn

from .family import family_of

__all__ = ["build_model", "count_parameters"]


def build_model(config: Any, *, backend: str = "auto") -> nn.Module:
    """The model a config describes (freshly initialized): the module class of its family
    (:mod:`attnkit.models.family`) built from every field."""
    cls = family_of(config).module_class()
    kwargs = {f.name: getattr(config, f.name) for f in fields(config)}
    src, tgt = kwargs.pop("src_vocab_size"), kwargs.pop("tgt_vocab_size")
    return cls(src, tgt, backend=backend, **kwargs)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters, each shared tensor counted once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters()
               if p.requires_grad or not trainable_only)
