"""Input validation shared by the public entry points.

Every check raises at the public boundary with a message that names the
argument, what was expected and what was given, so nothing fails deep inside
torch. Shape symbols (B, Nq, Nk, Dq, …) are those of the one glossary,
``docs/shapes.md``. Checks of plain values (sizes, probabilities) live in the
torch-free :mod:`attnkit._values`.
"""

from __future__ import annotations

import torch

CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")


def hidden_values_reason(x: torch.Tensor) -> str | None:
    """Why the values of ``x`` cannot be read here (``None``: they can).

    Meta tensors have none; inside a ``torch.func`` transform (``vmap``, ``grad``,
    ``jacrev``…) a tensor stands for many, or reading it would cut the transform;
    under ``torch.jit.trace`` a value read becomes a constant of the trace, right for
    the example inputs only. Code that branches on values must not branch there.
    """
    if x.device.type == "meta":
        return "meta tensors carry no data"
    if torch._C._functorch.is_functorch_wrapped_tensor(x):
        return "inside a torch.func transform (vmap, grad, jacrev...)"
    if torch.jit.is_tracing():
        return "under torch.jit.trace (a value read would be fixed into the trace)"
    return None


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` in plain Python (raises ``RuntimeError`` the same way).

    PyTorch's own version loads its symbolic-shape machinery (sympy) on first
    use, half a second that a one-sentence ``attnkit translate`` would pay.
    """
    out: list[int] = []
    for shape in shapes:
        shape = tuple(int(n) for n in shape)
        if len(shape) > len(out):
            out = [1] * (len(shape) - len(out)) + out
        for i, n in enumerate(shape, start=len(out) - len(shape)):
            if out[i] == 1:
                out[i] = n
            elif n != 1 and n != out[i]:
                raise RuntimeError(f"shapes {shapes} cannot be broadcast together")
    return tuple(out)


def shape_str(shape) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def check_is_tensor(name: str, x, what: str = "a torch.Tensor") -> torch.Tensor:
    """``x`` if it is a tensor; else a ``TypeError`` naming ``name``, ``what`` was
    expected (``"a torch.Tensor of token ids"``) and the type given."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be {what}; got {type(x).__name__}")
    return x


def check_tensor(name: str, x, *, min_ndim: int = 3, floating: bool = True) -> None:
    check_is_tensor(name, x)
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype; got {x.dtype}")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dims (B, ..., N, D); "
            f"got shape {shape_str(x.shape)}"
        )


def check_row_indices(name: str, indices, rows: int) -> torch.Tensor:
    """``indices`` if it is a 1-D integer tensor of rows in ``[0, rows)`` (a selection of a
    batch's rows, as beam search reorders a decoder state); else one ``ValueError`` or
    ``TypeError`` naming ``name``, instead of ``index_select``'s."""
    check_is_tensor(name, indices, "a 1-D torch.Tensor of row indices")
    if indices.ndim != 1 or indices.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{name} must be a 1-D int64 tensor of row indices; got "
                         f"{shape_str(indices.shape)} {indices.dtype}")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= rows):
        raise ValueError(f"{name} must lie in [0, {rows}) (the rows held); got min "
                         f"{int(indices.min())}, max {int(indices.max())}")
    return indices


def check_token_ids(name: str, tokens, vocab_size: int) -> None:
    """Refuse ``tokens`` that are not a ``(B, N)`` int64 / int32 tensor of ids in
    ``[0, vocab_size)`` (an embedding would fail deep inside torch, or on CUDA with an
    assertion far from the call), naming ``name``."""
    check_is_tensor(name, tokens, "a torch.Tensor of token ids")
    if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"{name} must be a (B, N) int64 tensor of token ids; got {shape_str(tokens.shape)} "
            f"{tokens.dtype}"
        )
    if tokens.numel() and tokens.device.type != "meta" and (  # meta: no ids to check
            int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size):
        raise ValueError(
            f"{name} ids must lie in [0, {vocab_size}); got min {int(tokens.min())}, "
            f"max {int(tokens.max())}"
        )


def check_same_device(**tensors) -> None:
    items = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor)]
    if not items:
        return
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(
                f"{name} must be on the same device as {first_name} ({first.device}); "
                f"got {t.device}"
            )


def check_same_dtype(**tensors) -> None:
    """One floating dtype for all given tensors (``None`` entries skipped).

    Mixed precision is not promoted silently (fp16 queries against fp32 keys
    would run the scores in one precision or the other depending on the
    backend): the ``TypeError`` names every argument with its dtype.
    """
    items = [(k, v) for k, v in tensors.items() if v is not None]
    if len({t.dtype for _, t in items}) <= 1:
        return
    names = [k for k, _ in items]
    listed = ", ".join(names[:-1]) + " and " + names[-1]
    dtypes = ", ".join(str(t.dtype) for _, t in items)
    first_name, first = items[0]
    odd = ", ".join(f"{k} is {t.dtype}" for k, t in items[1:] if t.dtype != first.dtype)
    raise TypeError(
        f"{listed} must share one dtype; got {dtypes} ({first_name} is {first.dtype}, {odd}); "
        f"cast them to one dtype, e.g. .to({first.dtype})"
    )


def check_module_dtype(module: str, param_dtype: torch.dtype, **inputs) -> None:
    """Floating ``inputs`` in the dtype of ``module``'s parameters (``None`` entries skipped).

    A layer such as ``nn.Linear`` fails deep inside torch on an fp16 input to
    fp32 weights ("expected m1 and m2 to have the same dtype"); this names the
    input, both dtypes and the ways out. Under ``torch.autocast`` on the
    input's device, torch casts per op, so nothing is checked. A dtype
    comparison only: no data is read.
    """
    for name, x in inputs.items():
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            continue
        if x.dtype == param_dtype or _autocasting(x.device.type):
            continue
        raise TypeError(
            f"{name} has dtype {x.dtype} but the parameters of {module} are {param_dtype}; "
            f"cast the module to the input's dtype (module{_cast(x.dtype)}), or the input to "
            f"the module's ({name}{_cast(param_dtype)}), or run under torch.autocast"
        )


def _cast(dtype: torch.dtype) -> str:
    """The shortest call that casts a tensor or module to ``dtype``: ``.half()``…"""
    short = {torch.float16: "half", torch.bfloat16: "bfloat16", torch.float32: "float",
             torch.float64: "double"}
    return f".{short[dtype]}()" if dtype in short else f".to({dtype})"


def _autocasting(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast (meta…)
        return False


def check_feature_sizes(queries: torch.Tensor, keys: torch.Tensor) -> None:
    """Dq, Dk >= 1: a score of zero features is undefined (scaled dot divides by √0)."""
    if queries.shape[-1] == 0 or keys.shape[-1] == 0:
        raise ValueError(
            "queries and keys must have feature sizes Dq, Dk >= 1 (a score over zero "
            f"features is undefined); got queries {shape_str(queries.shape)} and keys "
            f"{shape_str(keys.shape)}"
        )


def check_qkv(queries, keys, values=None) -> tuple[int, ...]:
    """Validate query/key/value shapes and dtypes; return the broadcast batch shape.

    Empty axes other than the feature sizes of queries and keys are accepted
    (``B``, ``Nq``, ``Nk`` or ``Dv`` = 0; see "Empty axes" in ``docs/shapes.md``).
    """
    check_tensor("queries", queries)
    check_tensor("keys", keys)
    if values is not None:
        check_tensor("values", values)
    check_same_device(queries=queries, keys=keys, values=values)
    if values is not None and keys.shape[-2] != values.shape[-2]:
        raise ValueError(
            "keys and values must have the same number of positions Nk (dim -2); "
            f"got keys {shape_str(keys.shape)} and values {shape_str(values.shape)}"
        )
    shapes = [queries.shape[:-2], keys.shape[:-2]]
    if values is not None:
        shapes.append(values.shape[:-2])
    try:
        batch = broadcast_shapes(*shapes)
    except RuntimeError:
        given = ", ".join(
            f"{n} {shape_str(t.shape)}"
            for n, t in (("queries", queries), ("keys", keys), ("values", values))
            if t is not None
        )
        raise ValueError(
            "queries, keys and values must have equal (or broadcastable) leading batch "
            f"dims before (N, D); got {given}"
        ) from None
    check_same_dtype(queries=queries, keys=keys, values=values)
    check_feature_sizes(queries, keys)
    return tuple(batch)


def check_valid_lens(valid_lens, batch_size: int | None, num_queries: int | None,
                     num_keys: int, device: torch.device | None, *,
                     bound: str = "Nk") -> torch.Tensor | None:
    """Validate ``valid_lens``: counts of valid keys, ``(B,)`` or ``(B, Nq)``, in ``[0, Nk]``.

    ``batch_size`` ``None``: any ``B`` (the mask builders take ``B`` from
    ``valid_lens`` itself); ``num_queries`` ``None``: only ``(B,)`` is accepted.
    ``bound`` names the upper limit in the range message: ``"Nk"`` for a call
    with keys, ``"num_keys"`` for a mask builder. ``device`` ``None``: any.
    """
    shapes = [(batch_size,)] + ([] if num_queries is None else [(batch_size, num_queries)])
    symbols = "(B,)" if num_queries is None else "(B,) or (B, Nq)"
    return _check_lengths(valid_lens, "valid_lens", symbols, shapes, (bound, num_keys),
                          "valid keys", device)


def check_query_valid_lens(query_valid_lens, batch_size: int, num_queries: int,
                           device: torch.device) -> torch.Tensor | None:
    """Validate ``query_valid_lens``: counts of real queries, ``(B,)``, in ``[0, Nq]``."""
    return _check_lengths(query_valid_lens, "query_valid_lens", "(B,)", [(batch_size,)],
                          ("Nq", num_queries), "real queries", device)


def _check_lengths(lens, name: str, symbols: str, shapes: list[tuple[int | None, ...]],
                   bound: tuple[str, int], counts: str,
                   device: torch.device | None) -> torch.Tensor | None:
    """Lengths ``name`` of one of ``shapes`` (spelled ``symbols``), values in ``[0, bound]``.

    ``bound`` is ``(symbol, value)``, e.g. ``("Nk", 11)``; ``counts`` says what
    the lengths count, for the dtype message. A ``None`` in ``shapes`` is a
    size left free. Lists and tuples become tensors. The value range is not
    checked where the values cannot be read (:func:`hidden_values_reason`: meta
    tensors, ``torch.func`` transforms, tracing); shapes still are.
    """
    if lens is None:
        return None
    if isinstance(lens, (list, tuple)):
        lens = torch.tensor(lens, device=device)
    if not isinstance(lens, torch.Tensor):
        scalar = " (a scalar)" if isinstance(lens, (int, float)) else ""
        raise TypeError(f"{name} must be an integer tensor of shape {symbols}; "
                        f"got {type(lens).__name__} {lens!r}{scalar}")
    if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        raise TypeError(f"{name} must have an integer dtype (counts of {counts}); "
                        f"got {lens.dtype}")
    if not any(_shape_matches(lens.shape, s) for s in shapes):
        raise ValueError(f"{name} must have shape {symbols}{_spelled(shapes)}; "
                         f"got {_given_shape(lens)}")
    if device is not None and lens.device != device:
        raise ValueError(
            f"{name} must be on the same device as queries ({device}); got {lens.device}")
    if lens.numel() and hidden_values_reason(lens) is None:
        lo, hi = int(lens.min()), int(lens.max())
        symbol, limit = bound
        if lo < 0 or hi > limit:
            raise ValueError(f"{name} values must lie in [0, {symbol}] = [0, {limit}]; "
                             f"got min {lo}, max {hi}")
    return lens


def _shape_matches(shape, expected: tuple[int | None, ...]) -> bool:
    return len(shape) == len(expected) and all(
        e is None or int(n) == e for n, e in zip(shape, expected))


def _spelled(shapes: list[tuple[int | None, ...]]) -> str:
    """`` = (2,) or (2, 3)``; a free size shows as its symbol: `` = (B,) or (B, 3)``."""
    def one(s):
        inner = ", ".join("B" if n is None else str(n) for n in s)
        return f"({inner},)" if len(s) == 1 else f"({inner})"
    if all(n is None for s in shapes for n in s):
        return ""  # nothing known beyond the symbols
    return " = " + " or ".join(one(s) for s in shapes)


def _given_shape(x: torch.Tensor) -> str:
    """The shape of ``x`` as a message shows it; a 0-d tensor says so."""
    if x.ndim == 0:
        return "a 0-d tensor (a scalar); give one length per sequence, shape (B,)"
    return shape_str(x.shape)


def check_bool_mask(mask) -> torch.Tensor:
    """``mask`` if it is a boolean tensor (True = may attend); ``TypeError`` otherwise."""
    check_is_tensor("mask", mask, "a boolean torch.Tensor")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool (True = may attend); got {mask.dtype}")
    return mask


def check_mask(mask, target_shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    """Validate a boolean mask broadcastable to `target_shape` = (*batch, Nq, Nk)."""
    if mask is None:
        return None
    check_bool_mask(mask)
    try:
        out = broadcast_shapes(mask.shape, target_shape)
    except RuntimeError:
        out = None
    if out is None or tuple(out) != tuple(target_shape):
        raise ValueError(
            f"mask must be broadcastable to (*batch, Nq, Nk) = {shape_str(target_shape)}; "
            f"got {shape_str(mask.shape)}"
        )
    if mask.device != device:
        raise ValueError(
            f"mask must be on the same device as queries ({device}); got {mask.device}")
    return mask


def normalize_causal(causal) -> str | None:
    """Map the `causal` argument to None, "top_left" or "bottom_right"."""
    if causal is None or causal is False:
        return None
    if causal is True:
        return "top_left"
    if isinstance(causal, str) and causal in CAUSAL_ALIGNMENTS:
        return causal
    raise ValueError(
        "causal must be False, True (= 'top_left'), 'top_left' or 'bottom_right'; "
        f"got {causal!r}"
    )
