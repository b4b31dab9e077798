"""Backend registry and the documented choice made by ``backend="auto"``.

Backends are chosen explicitly: ``"reference"`` always serves; asking for a
backend that does not exist, or that cannot serve a call, raises a
``ValueError`` saying why; there is no silent fallback. ``"auto"`` walks
:data:`AUTO_ORDER` and takes the first backend that can serve the call;
:func:`explain_backend` returns that decision and the reasons for every
backend it passed over, :func:`select_backend` the backend alone.

The rules of ``auto`` (fastest first, as :data:`BUILT_IN` lists them; each backend says
why it passes):

1. ``sdpa`` — every score with a dot-product form (dot, scaled dot, bilinear,
   distance): PyTorch's fused kernel on only the rows and keys each sequence
   needs (padding skipped). Passes on scores without ``Score.as_dot``
   (additive, custom scores) and on calls without values.
2. ``chunked`` — everything else (additive and custom scores): blocked,
   never materializes ``(B, Nq, Nk, h)``, recomputes in backward, memory
   bounded by ``max_block_bytes``. Passes on small additive calls (fewer than
   ``chunked.SMALL_ADDITIVE_TERMS`` = 2 million query-key-feature terms), where
   the reference is faster (BENCHMARKS.md, "Small additive calls go to
   `reference`").
3. ``reference`` — always serves; the readable, materializing oracle.

``triton`` is tried before them: fused Triton kernels, taken for additive scores on
CUDA tensors only (it passes on CPU tensors, and dot-product scores stay on ``sdpa``).

Meta tensors (shapes without data, for estimating sizes), calls inside
``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``) and calls under
``torch.jit.trace`` are served by ``reference`` alone: the fast backends plan
from the lengths' values, which these cannot show (or would fix into a trace),
and pass on them naming the reason, so ``auto`` picks ``reference`` and an
explicit fast backend raises ``ValueError`` saying so.

Second-order gradients (``create_graph=True``): ``reference``, ``sdpa`` and
``chunked`` give exact ones; ``triton``, and ``sdpa`` with dropout, raise one
line naming the backend and ``backend="reference"``.

A backend registered with ``auto_position`` (e.g. a GPU kernel) is placed
where its rules say. ``attnkit.explain_backend(...)`` shows the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._lazy import deprecated_alias
from .._names import BACKEND_NAMES
from .._values import check_choice
from .base import AttentionCall, Backend, first_order_only, second_order_error, zero_output
from .chunked import ChunkedBackend
from .reference import (
    ReferenceBackend,
    float_weights,
    reference_weights,
    to_input_dtype,
    weighted_values,
)
from .sdpa import SDPABackend
from .triton import TritonBackend

__all__ = [
    "AUTO_ORDER",
    "BUILT_IN",
    "AttentionCall",
    "Backend",
    "BackendChoice",
    "available_backends",
    "check_backend_name",
    "explain_backend",
    "explain_choice",
    "first_order_only",
    "float_weights",
    "get_backend",
    "register_backend",
    "reference_weights",
    "second_order_error",
    "select_backend",
    "to_input_dtype",
    "weighted_values",
    "zero_output",
]

#: The built-in backends, in the order ``backend="auto"`` tries them (the rules above):
#: the fastest first, and last ``reference``, which serves every call.
BUILT_IN: tuple[Backend, ...] = (TritonBackend(), SDPABackend(), ChunkedBackend(),
                                 ReferenceBackend())
if tuple(b.name for b in BUILT_IN) != BACKEND_NAMES:  # pragma: no cover - caught by any import
    raise RuntimeError("BUILT_IN and attnkit._names.BACKEND_NAMES disagree")

_REGISTRY: dict[str, Backend] = {b.name: b for b in BUILT_IN}

#: Preference order of ``backend="auto"``: the first backend that can serve
#: a call wins. :data:`BUILT_IN`'s order, with the backends registered with an
#: ``auto_position`` inserted there.
AUTO_ORDER: list[str] = [b.name for b in BUILT_IN]


def register_backend(backend: Backend, *, auto_position: int | None = None) -> None:
    """Add a backend; with ``auto_position`` also insert it into :data:`AUTO_ORDER`."""
    _REGISTRY[backend.name] = backend
    if auto_position is not None and backend.name not in AUTO_ORDER:
        AUTO_ORDER.insert(auto_position, backend.name)


def available_backends() -> list[str]:
    return sorted(_REGISTRY)


def check_backend_name(name: str) -> str:
    """``name`` if it is ``"auto"`` or a registered backend's: the one check of a
    ``backend=`` argument (whether that backend can serve a call is checked per call)."""
    return check_choice("backend", name, ("auto", *available_backends()))


def get_backend(name: str) -> Backend:
    """The registered backend ``name`` (``"auto"`` is resolved by :func:`explain_backend`)."""
    return _REGISTRY[check_choice("backend", name, available_backends())]


@dataclass(frozen=True)
class BackendChoice:
    """What ``backend="auto"`` (or an explicit name) resolves to, and why."""

    name: str
    requested: str
    passed_over: dict[str, str] = field(default_factory=dict)
    #: how the chosen backend serves the call, where it has several ways (else None)
    how: str | None = None

    def __str__(self) -> str:
        lines = [f"{self.requested} -> {self.name}"]
        lines += [f"  how: {self.how}"] if self.how else []
        lines += [f"  not {n}: {why}" for n, why in self.passed_over.items()]
        return "\n".join(lines)


def explain_backend(call: AttentionCall, backend: str = "auto") -> BackendChoice:
    """Resolve ``backend`` for ``call`` without running it: the backend, how it would
    serve the call, and why ``auto`` passed over the ones before it."""
    if check_backend_name(backend) != "auto":
        b = get_backend(backend)
        why = b.unsupported_reason(call)
        if why is not None:
            raise ValueError(f"backend={backend!r} cannot serve this call: {why}")
        return BackendChoice(backend, backend, how=b.describe(call))
    passed = {}
    for name in AUTO_ORDER:
        b = _REGISTRY[name]
        why = b.unsupported_reason(call) or b.auto_reason(call)
        if why is None:
            return BackendChoice(name, "auto", passed, how=b.describe(call))
        passed[name] = why
    raise AssertionError("the reference backend serves every call")  # pragma: no cover


def select_backend(call: AttentionCall, backend: str = "auto") -> Backend:
    """The backend that :func:`explain_backend` names, to run ``call``."""
    return _REGISTRY[explain_backend(call, backend).name]


explain_choice = deprecated_alias(explain_backend, "attnkit.backends.explain_choice",
                                  "attnkit.backends.explain_backend")
