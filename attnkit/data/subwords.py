"""Subword sampling of a sentencepiece model with attnkit's own random numbers.

sentencepiece can sample a segmentation itself (``encode(..., enable_sampling=True)``),
but its seeded generator does not give the same draw in another process: 0.2.3 keeps an
``absl::BitGen``, which absl salts anew in every process, and 0.2.1 seeds a thread's
generator once, when the thread first draws, so a later ``set_random_generator_seed``
does not reach it. The ranks of a run would batch different data, and a resumed run
would not see the segmentation the stopped one saw. Here every draw comes from a numpy
generator, so it depends on the seed and the text only:

* a **unigram** model (Kudo 2018): each word's segmentation is drawn from all of them
  with probability ∝ ``p(x) ** alpha`` (forward filtering, backward sampling over the
  word's lattice; sentencepiece's ``nbest_size = -1``);
* a **BPE** model (BPE-dropout, Provilkov et al. 2020): the merges are applied in order of
  priority and each is skipped with probability ``alpha``; as in sentencepiece, a
  skipped pair stays skipped until a merge beside it makes a new pair.

Words are the runs of pieces that start with ``▁`` in the model's own segmentation (a
model trained with sentencepiece's default ``split_by_whitespace`` has no piece across
them). A word that holds an unknown character keeps the model's segmentation. Every
draw spells the same string as ``encode``'s pieces, so it decodes to the same text.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["BPE", "UNIGRAM", "SubwordSampler", "model_type"]

#: ``TrainerSpec.model_type`` values of sentencepiece's model protobuf
UNIGRAM, BPE = 1, 2
_MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
_WORD_START = "\u2581"  # ▁


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _field(buf: bytes, number: int) -> int | bytes | None:
    """The first value of field ``number`` in a serialized protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        if key >> 3 == number:
            return value
    return None


def model_type(model_proto: bytes) -> int:
    """``trainer_spec.model_type`` of a serialized sentencepiece model (1 unigram, 2 BPE,
    3 word, 4 char; unigram when unset, protobuf's default)."""
    spec = _field(model_proto, 2)  # ModelProto.trainer_spec
    kind = _field(spec, 3) if isinstance(spec, bytes) else None  # TrainerSpec.model_type
    return kind if isinstance(kind, int) else UNIGRAM


class _Uniforms:
    """Floats in ``[0, 1)`` from a numpy generator, drawn a block at a time."""

    def __init__(self, rng: np.random.Generator, block: int = 1 << 16) -> None:
        self.rng, self.block = rng, block
        self._next = iter(()).__next__

    def __call__(self) -> float:
        try:
            return self._next()
        except StopIteration:
            self._next = iter(self.rng.random(self.block).tolist()).__next__
            return self._next()


class SubwordSampler:
    """Draws segmentations for one sentencepiece processor and one ``alpha`` in (0, 1].

    Args:
        processor: a loaded ``sentencepiece.SentencePieceProcessor``.
        model_proto: its serialized model (says whether it is unigram or BPE).
        alpha: unigram: the exponent on each segmentation's probability; BPE: the
            probability that a merge is skipped.

    Raises:
        ValueError: the model is neither unigram nor BPE (a word or char model has one
            segmentation only).
    """

    def __init__(self, processor, model_proto: bytes, alpha: float) -> None:
        kind = model_type(model_proto)
        if kind not in (UNIGRAM, BPE):
            raise ValueError(f"subword sampling needs a unigram or bpe sentencepiece model; "
                             f"this one is {_MODEL_TYPES.get(kind, kind)}")
        self._sp, self.alpha, self.bpe = processor, alpha, kind == BPE
        normal = (i for i in range(processor.get_piece_size())
                  if not (processor.is_control(i) or processor.is_unknown(i)
                          or processor.is_unused(i) or processor.is_byte(i)))
        self._pieces = {processor.id_to_piece(i): (i, processor.get_score(i)) for i in normal}
        self._longest = max((len(p) for p in self._pieces), default=1)
        # kept between draws (a training set is drawn again every epoch): the words of
        # each text, and what each word's draws start from (its lattice, or its pairs)
        self._texts: dict[str, list[tuple[str | None, list[int]]]] = {}
        self._prepared: dict[str, list | None] = {}

    def sample(self, texts: Sequence[str], rng: np.random.Generator) -> list[list[int]]:
        """Ids of each of ``texts``, drawn with ``rng`` in order."""
        uniforms = _Uniforms(rng)
        draw = self._draw_bpe if self.bpe else self._draw_unigram
        out = []
        for text in texts:
            if text not in self._texts:
                self._texts[text] = self._words(text)
            ids: list[int] = []
            for word, fixed in self._texts[text]:
                drawn = None if word is None else draw(word, uniforms)
                ids.extend(fixed if drawn is None else drawn)
            out.append(ids)
        return out

    def _words(self, text: str) -> list[tuple[str | None, list[int]]]:
        """The words of ``text`` with the model's ids of each; the word is ``None`` where a
        piece is not an ordinary one (an unknown character): that word is not drawn."""
        ids = list(self._sp.encode(text))
        pieces = self._sp.encode(text, out_type=str)
        starts = [k for k, p in enumerate(pieces) if k == 0 or p.startswith(_WORD_START)]
        words = []
        for a, b in zip(starts, [*starts[1:], len(pieces)]):
            ordinary = all(self._pieces.get(p, (None,))[0] == i
                           for p, i in zip(pieces[a:b], ids[a:b]))
            words.append(("".join(pieces[a:b]) if ordinary else None, ids[a:b]))
        return words

    # ---------------------------------------------------------------- unigram
    def _lattice(self, word: str) -> list | None:
        """Per end position ``j`` of ``word``: the pieces ending there as ``(starts, ids,
        cumulative probabilities)`` of the backward step; ``None`` if ``word`` cannot be
        spelled with the pieces."""
        n = len(word)
        ends: list[list[tuple[int, int, float]]] = [[] for _ in range(n + 1)]
        for i in range(n):
            for j in range(i + 1, min(n, i + self._longest) + 1):
                hit = self._pieces.get(word[i:j])
                if hit is not None:
                    ends[j].append((i, hit[0], self.alpha * hit[1]))
        forward = [0.0] + [-math.inf] * n  # log of the summed weight of all prefixes
        for j in range(1, n + 1):
            terms = [forward[i] + w for i, _, w in ends[j] if forward[i] > -math.inf]
            if terms:
                top = max(terms)
                forward[j] = top + math.log(sum(math.exp(t - top) for t in terms))
        if forward[n] == -math.inf:
            return None
        table: list = [None]
        for j in range(1, n + 1):
            edges = [(i, k, w) for i, k, w in ends[j] if forward[i] > -math.inf]
            cum = list(itertools.accumulate(math.exp(forward[i] + w - forward[j])
                                            for i, _, w in edges))
            cum = [c / cum[-1] for c in cum] if cum else cum  # sums to 1 up to rounding
            table.append(([i for i, _, _ in edges], [k for _, k, _ in edges], cum,
                          len(edges) - 1))
        return table

    def _draw_unigram(self, word: str, uniforms: _Uniforms) -> list[int] | None:
        table = self._prepared.get(word, False)
        if table is False:
            table = self._prepared[word] = self._lattice(word)
        if table is None:
            return None
        j, out = len(word), []
        while j > 0:
            starts, ids, cum, last = table[j]
            k = bisect.bisect_right(cum, uniforms())
            k = last if k > last else k
            out.append(ids[k])
            j = starts[k]
        return out[::-1]

    # -------------------------------------------------------------------- BPE
    def _pairs(self, word: str) -> list[tuple[float, int, str, str]] | None:
        """The heap of the pairs of ``word``'s characters that make a piece: ``(-score,
        left, left symbol, right symbol)``; ``None`` if a character is not a piece."""
        if any(c not in self._pieces for c in word):
            return None
        heap = [(-self._pieces[a + b][1], left, a, b)
                for left, (a, b) in enumerate(zip(word, word[1:])) if a + b in self._pieces]
        heapq.heapify(heap)
        return heap

    def _draw_bpe(self, word: str, uniforms: _Uniforms) -> list[int] | None:
        """Merges by priority (the highest score, then the leftmost), each skipped with
        probability ``alpha``; a linked list of symbols and a heap of candidate pairs, as
        sentencepiece's own BPE does."""
        start = self._prepared.get(word, False)
        if start is False:
            start = self._prepared[word] = self._pairs(word)
        if start is None:
            return None
        pieces, heap = self._pieces, list(start)
        symbols: list[str | None] = list(word)
        after = [*range(1, len(word)), -1]  # the next live symbol, -1 at the end
        before = list(range(-1, len(word) - 1))

        def offer(left: int) -> None:
            right = after[left]
            if right != -1:
                a, b = symbols[left], symbols[right]
                hit = pieces.get(a + b)  # type: ignore[operator]
                if hit is not None:
                    heapq.heappush(heap, (-hit[1], left, a, b))  # type: ignore[arg-type]

        while heap:
            _, left, a, b = heapq.heappop(heap)
            right = after[left]
            if symbols[left] != a or right == -1 or symbols[right] != b:
                continue  # one of the two was merged since
            if uniforms() < self.alpha:
                continue  # dropped: offered again only once a merge beside it makes a new pair
            symbols[left], symbols[right] = a + b, None
            after[left] = after[right]
            if after[right] != -1:
                before[after[right]] = left
            if before[left] != -1:
                offer(before[left])
            offer(left)
        return [pieces[s][0] for s in symbols if s is not None]
