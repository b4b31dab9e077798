"""What a model config costs in memory, known before anything is allocated.

:func:`model_size` counts the parameters and buffers (positional tables) that
:func:`attnkit.models.build_model` would create, exactly, by building the model
on PyTorch's ``meta`` device (shapes without storage). Layers of one stack are
identical, so only one and two layers per stack are built and the count is
extrapolated: a config with a million layers is counted as fast as one with two.
:func:`check_buildable` says, the same way, whether the modules accept a config at all.

:func:`training_memory` and :func:`decoding_memory` turn the counts into bytes:

* training keeps fp32 weights, their gradients and Adam's two moments (16 bytes
  per parameter) and the buffers, before the first batch: a lower bound, so a
  run refused on it cannot fit;
* decoding keeps the weights; per beam, the encoder outputs it attends to and
  the scores of every next-token candidate; per beam and step, its tokens and,
  for the Transformer, the self-attention key/value cache of every decoder
  layer: what the longest outputs allowed need (a search whose beams all end
  early needs less).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

from .family import FAMILIES, family_of

__all__ = ["SIZE_FIELDS", "MemoryEstimate", "ModelSize", "blame", "check_buildable",
           "decoding_memory", "model_size", "training_memory"]

FLOAT = 4  # bytes of an fp32 value
LONG = 8  # bytes of a token id
TOO_MANY = 2 ** 63  # more elements than a tensor can index

#: the fields that scale a model, per config class (the ones :func:`blame` may name;
#: declared by each family, :attr:`attnkit.models.family.Family.size_fields`)
SIZE_FIELDS: dict[type, tuple[str, ...]] = {f.config: f.size_fields for f in FAMILIES.values()}


@dataclass(frozen=True)
class ModelSize:
    """Scalar parameters and buffer values of a model; ``overflow``: some tensor would have
    more than 2^63 elements, and the counts are only that lower bound."""

    parameters: int
    buffers: int
    overflow: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a job needs: ``weights`` (with gradients and optimizer state when training)
    and ``activations`` (the decoding state)."""

    weights: int
    activations: int
    overflow: bool = False

    @property
    def total(self) -> int:
        return self.weights + self.activations


@functools.lru_cache(maxsize=64)  # a config is checked each time a training config is made
def _meta_counts(config) -> tuple[int, int]:
    """Parameter and buffer counts of ``config``'s model built on the meta device (configs
    are frozen, so a count is kept per config)."""
    import torch

    from .build import build_model

    with torch.device("meta"):
        model = build_model(config)
    return (sum(p.numel() for p in model.parameters()),
            sum(b.numel() for b in model.buffers()))


def model_size(config) -> ModelSize:
    """Exact parameter and buffer counts of ``build_model(config)``, allocating nothing.

    Raises:
        TypeError: ``config`` is no model config.
        ValueError / TypeError: the modules refuse the config (as ``build_model`` would).
    """
    stacks = family_of(config).layer_fields
    one = dataclasses.replace(config, **{f: 1 for stack in stacks for f in stack})
    try:
        base = _meta_counts(one)
        params, buffers = base
        for stack in stacks:  # every layer after the first of a stack is the same
            extra = getattr(config, stack[0]) - 1
            if extra:
                two = _meta_counts(dataclasses.replace(one, **dict.fromkeys(stack, 2)))
                params += extra * (two[0] - base[0])
                buffers += extra * (two[1] - base[1])
    except RuntimeError as e:  # a shape whose element count overflows int64
        if "overflow" not in str(e).lower():
            raise
        return ModelSize(TOO_MANY, 0, overflow=True)
    return ModelSize(params, buffers)


def check_buildable(config) -> None:
    """Return when :func:`attnkit.models.build_model` builds ``config``; otherwise raise the
    modules' own reason, e.g. for ALiBi with another score. A config is checked field by
    field when it is made, but only the modules know which combinations they refuse, so
    the model is built on the ``meta`` device (:func:`model_size`): nothing is allocated,
    and a million layers cost no more than two.

    Raises:
        ValueError / TypeError: why the modules refuse ``config``.
    """
    model_size(config)


def training_memory(config) -> MemoryEstimate:
    """At least what training ``config`` needs before its first batch: fp32 weights, their
    gradients and Adam's two moments, and the buffers. Activations depend on the data
    (the batches' sizes) and are not counted."""
    size = model_size(config)
    return MemoryEstimate(16 * size.parameters + FLOAT * size.buffers, 0, size.overflow)


def decoding_memory(config, *, rows: int, steps: int, source_len: int = 2) -> MemoryEstimate:
    """What decoding ``rows`` beams (sentences × beam size) of sources of ``source_len``
    ids for up to ``steps`` tokens needs: the weights; per row, the encoder's outputs it
    attends to (and the RNN's state, or the Transformer's cross-attention keys and
    values) and the scores of every next-token candidate (logits, log-probabilities,
    their sums and indices); per row and step, the token rows (held twice while beams
    are reordered) and the Transformer's self-attention cache."""
    size = model_size(config)
    state_per_row, state_per_step = family_of(config).decoding_state(config, source_len)
    per_row = config.tgt_vocab_size * (3 * FLOAT + LONG) + FLOAT * state_per_row
    per_step = 2 * LONG + FLOAT * state_per_step
    return MemoryEstimate(FLOAT * (size.parameters + size.buffers),
                          rows * (per_row + steps * per_step), size.overflow)


def blame(config, reference, cost: Callable[[object], int]) -> str | None:
    """The size field of ``config`` above its value in ``reference`` (e.g. the preset's)
    whose reference value lowers ``cost`` the most; ``None`` when no field is above it."""
    family = family_of(config)
    best, lowest = None, cost(config)
    for name in family.size_fields:
        if getattr(config, name) <= getattr(reference, name):
            continue
        try:  # fields that must stay equal (an RNN's layers) are lowered together
            c = cost(dataclasses.replace(
                config, **{f: getattr(reference, f) for f in family.tied(name)}))
        except (TypeError, ValueError):  # e.g. num_hiddens no longer divisible by num_heads
            continue
        if c < lowest:
            best, lowest = name, c
    return best
