"""The two interfaces of decoding, as :class:`typing.Protocol`\\ s:

* :class:`StepDecoder` — a model that decodes step by step, what greedy and beam search
  (:mod:`attnkit.decode.search`) drive: :class:`attnkit.models.Transformer` and
  :class:`attnkit.models.BahdanauSeq2Seq`;
* :class:`SentenceTranslator` — sentences in, translations out, what the commands
  translate with: attnkit's :class:`attnkit.decode.translator.Translator` and
  :class:`attnkit.export.ctranslate2_translator.CTranslate2Translator`. What only some
  of them can do, they say in capability attributes, which callers ask instead of
  telling the translators apart by their type or engine name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = ["STEP_METHODS", "SentenceTranslator", "StepDecoder", "check_step_decoder"]


@runtime_checkable
class StepDecoder(Protocol):
    """A model that decodes step by step; ``state`` is the model's own (its caches).

    ``encode(src (B, S), src_valid_lens (B,) | None)`` → the encoding;
    ``init_state(encoding, src_valid_lens)`` → the state before the first step;
    ``decode_step(tokens (B, t), state)`` → ``(logits (B, t, V), state)`` (search feeds
    the last token only, ``t = 1``); ``reorder_state(state, indices (n,))`` → the state
    of the rows ``indices`` (beams reordered, finished sentences dropped). A decoder whose
    ``decode_step`` gives log-probabilities rather than logits says so with a class
    attribute ``gives_log_probs = True`` (the search then does not normalize them again).
    """

    def encode(self, src: torch.Tensor, src_valid_lens: torch.Tensor | None = None) -> Any: ...

    def init_state(self, enc: Any, src_valid_lens: torch.Tensor | None) -> Any: ...

    def decode_step(self, tgt: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]: ...

    def reorder_state(self, state: Any, indices: torch.Tensor) -> Any: ...


#: The methods of :class:`StepDecoder`, in the order a search calls them.
STEP_METHODS = ("encode", "init_state", "decode_step", "reorder_state")


def check_step_decoder(model: object) -> None:
    """Raise ``TypeError`` naming the :class:`StepDecoder` methods ``model`` lacks (before
    a search starts, rather than deep inside it)."""
    missing = [m for m in STEP_METHODS if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(f"model must decode step by step ({', '.join(STEP_METHODS)}; "
                        f"attnkit.decode.protocols.StepDecoder); {type(model).__name__} has "
                        f"no {', '.join(missing)}")


@runtime_checkable
class SentenceTranslator(Protocol):
    """Translates sentences, one output per input, in input order."""

    #: whether ``translate_n_best(sentences, n_best=, beam_size=, max_output_len=, alpha=,
    #: progress=)`` gives the ``n_best`` best ``(translation, score)`` of each sentence
    supports_n_best: bool

    #: the attnkit model config whose search runs in this process, from which the memory
    #: of a search is estimated before decoding (:func:`attnkit.models.sizes.decoding_memory`);
    #: ``None``: an engine that holds its own memory
    memory_config: Any

    def translate(self, sentences: list[str], *, beam_size: int = 1,
                  max_output_len: int | None = None, alpha: float = 0.6,
                  progress: Callable[[int], object] | None = None,
                  stop: str = "best_ended") -> list[str]:
        """``stop``: the beam's stop rule (:data:`attnkit.decode.search.STOP_RULES`); an
        engine that has not got one raises ``ValueError`` naming it."""

    def overlong(self, sentences: list[str]) -> list[int]:
        """Indices of ``sentences`` too long for the model (cut when translated)."""
