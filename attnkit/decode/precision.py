"""The precision a loaded model translates in, and the recorded choice of ``auto``.

* ``fp32`` — the weights as trained.
* ``bf16`` — bfloat16 autocast around the search: matrix products in bfloat16, softmax,
  log-probabilities and scores in fp32 (:func:`running`). Fast on CPUs whose bf16
  matmuls measure faster than fp32 (:func:`attnkit.runtime.choose_precision`); elsewhere
  PyTorch takes a slow path, and :func:`bf16_note` says so.
* ``int8`` — every ``nn.Linear`` of a copy of the model replaced by PyTorch's dynamically
  quantized one (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations
  quantized per call, fp32 in and out; :func:`quantized_int8`). Embeddings, norms and
  recurrent cells stay fp32.
* ``auto`` — the fastest of those whose BLEU on the run's validation sentences is within
  :data:`AUTO_BLEU_TOLERANCE` of fp32's, as ``attnkit evaluate --precision auto``
  measured and recorded it for this checkpoint's weights on this machine
  (:func:`record_choice`, :func:`recorded_choice`): measured once, never at each
  translation.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from .._cpu import cache_dir, cpu_model
from .._io import json_bytes, write_atomic
from ..nn.multihead import fused_weights

__all__ = ["AUTO_BLEU_TOLERANCE", "PRECISIONS", "best_within_tolerance", "bf16_note",
           "choice_key", "quantized_int8", "record_choice", "recorded_choice", "running"]

PRECISIONS = ("fp32", "bf16", "int8")  # what a model can translate in; "auto" picks one
AUTO_BLEU_TOLERANCE = 0.3  # BLEU points below fp32's that auto still accepts
_RECORDS = "precision-choices.json"


@functools.cache
def _int8_linear() -> type:
    """PyTorch's dynamically quantized linear layer that still answers ``weight`` and
    ``bias`` with the float tensors it was made from: model code that reads them (a
    dtype check, projections fused into one matrix) keeps working, in fp32, while a
    call of the layer runs in int8. The float weights stay in memory for those readers
    (a tied output projection shares them with the embedding anyway). Made on first use:
    importing torch's quantized modules costs time, and a torch may lack them."""

    linear_dynamic = torch.ops.quantized.linear_dynamic.default

    class Int8Linear(torch.ao.nn.quantized.dynamic.Linear):
        weight = property(lambda self: self._float[0])
        bias = property(lambda self: self._float[1])

        @classmethod
        def from_float(cls, mod: nn.Linear, use_precomputed_fake_quant: bool = False):
            q = super().from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)
            q._float = (mod.weight, mod.bias)
            return q

        @classmethod
        def fused(cls, *layers: Int8Linear) -> Int8Linear:
            """One int8 layer for several of the same input (a decoding step's q/k/v
            product, :func:`attnkit.nn.multihead.fused_step_linear`): their float weights
            stacked, quantized again as one matrix."""
            weight, bias = fused_weights(*layers)
            stacked = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None,
                                device="meta")  # no initial values: the stack is its weights
            stacked.weight = nn.Parameter(weight.detach(), requires_grad=False)
            if bias is not None:
                stacked.bias = nn.Parameter(bias.detach(), requires_grad=False)
            stacked.qconfig = torch.ao.quantization.default_dynamic_qconfig  # quantize_dynamic's
            with warnings.catch_warnings():  # torch's notices that the API is deprecated
                warnings.simplefilter("ignore")
                return cls.from_float(stacked)

        def step_forward(self, x: torch.Tensor) -> torch.Tensor:
            """``self(x)`` for a float32 ``x``, the same operator and arguments as
            ``forward`` (torch's, for qint8 weights of module version 4), without the
            module call and ``forward``'s checks: 5–15 µs less a call at 64 rows, and a
            decoding step makes 16 (:func:`attnkit.nn.multihead.step_linear`)."""
            return linear_dynamic(x, self._packed_params._packed_params, True)

        def extra_repr(self) -> str:
            return f"in_features={self.in_features}, out_features={self.out_features}, int8"

    if getattr(Int8Linear, "_version", None) != 4:  # another torch's layer: its own call
        Int8Linear.step_forward = Int8Linear.__call__

    return Int8Linear


def quantized_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) whose ``nn.Linear`` layers are int8 dynamically
    quantized (``torch.ao.quantization.quantize_dynamic``); ``model`` is left as it is.

    Raises:
        ValueError: the model is not on the CPU (PyTorch quantizes for the CPU only).
    """
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"precision int8 runs on the CPU only; the model is on {device}")
    engines = torch.backends.quantized.supported_engines
    if torch.backends.quantized.engine == "none" and engines:
        torch.backends.quantized.engine = next(e for e in engines if e != "none")
    float_copy = copy.deepcopy(model).eval()
    with warnings.catch_warnings():  # torch's notices that this API is deprecated, not ours
        warnings.filterwarnings("ignore", message=".*quantiz", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*quantiz", category=DeprecationWarning)
        try:
            quantize, layer = torch.ao.quantization.quantize_dynamic, _int8_linear()
        except (AttributeError, ImportError):
            raise ValueError(f"precision int8 needs PyTorch's dynamic quantization "
                             f"(torch.ao.quantization), which torch {torch.__version__} does "
                             "not have; use fp32 or bf16") from None
        return quantize(float_copy, {nn.Linear}, dtype=torch.qint8, mapping={nn.Linear: layer})


def running(precision: str):
    """The context a model of ``precision`` translates in: bf16 autocast for ``bf16``,
    nothing for the others (their weights are what they run)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def bf16_note() -> str | None:
    """One line when this CPU runs bf16 slowly (its bf16 matmuls measure slower than
    fp32, or ``ATTNKIT_CPU_BF16=none``), ``None`` when it runs it fast."""
    from ..runtime import choose_precision

    chosen = choose_precision("auto", torch.device("cpu"))
    if chosen.bf16:
        return None
    return (f"--precision bf16 runs, but slowly: {chosen.reason}; fp32 or int8 translate "
            "faster here")


def best_within_tolerance(measured: dict[str, dict]) -> str:
    """The fastest precision of ``measured`` (``{precision: {"bleu", "sentences_per_s"}}``,
    fp32 among them) whose BLEU is at most :data:`AUTO_BLEU_TOLERANCE` below fp32's."""
    floor = measured["fp32"]["bleu"] - AUTO_BLEU_TOLERANCE
    fit = [p for p, m in measured.items() if m["bleu"] >= floor]
    return max(fit, key=lambda p: measured[p]["sentences_per_s"])


# ---------------------------------------------------------------- recorded choices
def choice_key(weights_digest: str) -> str:
    """What a choice of ``auto`` holds for: these weights (their SHA-256), this CPU
    (model and instruction set) and this torch."""
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{weights_digest}|{cpu_model()}|{isa}|torch {torch.__version__}"


def _records() -> dict:
    try:
        found = json.loads((cache_dir() / _RECORDS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def recorded_choice(weights_digest: str) -> dict | None:
    """The record :func:`record_choice` left for these weights on this machine (its
    ``"precision"`` one of :data:`PRECISIONS`), ``None`` when there is none or it is
    not one attnkit wrote."""
    record = _records().get(choice_key(weights_digest))
    if isinstance(record, dict) and record.get("precision") in PRECISIONS:
        return record
    return None


def record_choice(weights_digest: str, record: dict) -> Path:
    """Keep ``record`` (``"precision"`` and what it was chosen from) for these weights on
    this machine in attnkit's cache folder, beside the other records; the file written.

    Raises:
        OSError: the cache folder or file cannot be written (the choice then holds for
            this call only).
    """
    path = cache_dir() / _RECORDS
    records = _records()
    records[choice_key(weights_digest)] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json_bytes(records))
    return path
