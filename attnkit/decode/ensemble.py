"""Several models decoding as one: :class:`EnsembleDecoder`, a
:class:`attnkit.decode.protocols.StepDecoder` over a list of them, which greedy and beam
search (:mod:`attnkit.decode.search`) drive as they drive one model.

At every step each member scores the same hypotheses and the ensemble's score of a token is
the mean of the members' log-probabilities, ``mean_m log_softmax(logits_m)``: OpenNMT-py's
rule (the geometric mean of the members' distributions, not normalized again; fairseq
averages the probabilities instead). The search takes these as the step's
log-probabilities (``gives_log_probs``), so a hypothesis' score is the sum of its tokens'
mean log-probabilities, and an ensemble of a model with itself decodes what the model does.
The search constraints (:class:`attnkit.decode.search.Constraints`) reshape these means as
they reshape one model's logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .protocols import check_step_decoder

__all__ = ["EnsembleDecoder"]


class EnsembleDecoder(torch.nn.Module):
    """The members ``models`` (:class:`~attnkit.decode.protocols.StepDecoder`\\ s of one
    target vocabulary; families and sizes may differ) decoding together.

    Its encoding and state are tuples, one item per member; ``decode_step`` returns the
    mean of the members' log-probabilities ``(B, t, V)`` (module docs) and
    ``reorder_state`` reorders every member's state by the same rows.

    Raises:
        ValueError: no member.
        TypeError: a member that does not decode step by step (naming its methods).
    """

    #: ``decode_step`` gives log-probabilities, which a search does not normalize again
    gives_log_probs = True

    def __init__(self, models: Sequence[torch.nn.Module]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model; got none")
        for m in models:
            check_step_decoder(m)
        self.members = torch.nn.ModuleList(models)

    def encode(self, src: torch.Tensor, src_valid_lens: torch.Tensor | None = None) -> tuple:
        return tuple(m.encode(src, src_valid_lens) for m in self.members)

    def init_state(self, enc: tuple, src_valid_lens: torch.Tensor | None) -> tuple:
        return tuple(m.init_state(e, src_valid_lens)
                     for m, e in zip(self.members, enc, strict=True))

    def decode_step(self, tgt: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
        """The mean of the members' log-probabilities ``(B, t, V)`` for the next tokens."""
        steps = [m.decode_step(tgt, s) for m, s in zip(self.members, state, strict=True)]
        sizes = [logits.shape[-1] for logits, _ in steps]
        if len(set(sizes)) > 1:
            raise ValueError(f"the ensemble's members score target vocabularies of different "
                             f"sizes {sizes}; ensemble only models of one target vocabulary")
        logp = torch.stack([torch.log_softmax(logits.float(), -1) for logits, _ in steps])
        return logp.mean(0), tuple(s for _, s in steps)

    def reorder_state(self, state: tuple, indices: torch.Tensor) -> tuple:
        return tuple(m.reorder_state(s, indices)
                     for m, s in zip(self.members, state, strict=True))
