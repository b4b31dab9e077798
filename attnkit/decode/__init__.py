"""Inference: load a run, translate (greedy or beam search), capture attention.

* :mod:`~attnkit.decode.protocols` — what decoding works with: a
  :class:`StepDecoder` (``encode`` / ``init_state`` / ``decode_step`` /
  ``reorder_state``) and a :class:`SentenceTranslator` with its capabilities.
* :mod:`~attnkit.decode.search` — greedy and beam search over any
  :class:`StepDecoder`, and the ``n_best`` best hypotheses with their scores, under the
  search constraints (no repeated n-gram, a repetition penalty).
* :mod:`~attnkit.decode.ensemble` — :class:`EnsembleDecoder`, several models decoding as
  one :class:`StepDecoder` (the mean of their log-probabilities at every step).
* :mod:`~attnkit.decode.translator` — :func:`load_translator` rebuilds a model
  from a checkpoint's model section alone; :class:`Translator` translates
  sentences and captures attention weights for pictures; :class:`EnsembleTranslator`
  translates with several runs of one tokenizer.
* :mod:`~attnkit.decode.precision` — what a model translates in (fp32, bf16 autocast,
  int8 dynamically quantized linear layers) and the recorded choice of ``auto``.
"""

from .._lazy import lazy_attributes

_WHERE = {
    **dict.fromkeys(["SentenceTranslator", "StepDecoder"], ".protocols"),
    **dict.fromkeys(["beam_search", "greedy_search", "n_best_search"], ".search"),
    "EnsembleDecoder": ".ensemble",
    **dict.fromkeys(["EnsembleTranslator", "Translator", "capture_for_pair", "load_translator",
                     "translate_n_best", "translate_sentences"], ".translator"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)
