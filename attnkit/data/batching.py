"""Token-budget batches of sentence pairs: bucketed, padded, shardable and resumable.

Notation: ``B`` examples per batch, ``S`` padded source length, ``T`` padded
target length.

What one example becomes (``x`` source ids, ``y`` target ids, no specials)::

    src     = x + [eos]              padded with pad_id to S     src_valid_lens = len(x) + 1
    tgt_in  = [bos] + y              padded with pad_id to T     (decoder input, teacher forcing)
    tgt_out = y + [eos]              padded with pad_id to T     tgt_valid_lens = len(y) + 1

``tgt_in`` and ``tgt_out`` are the same sequence shifted by one, so position
``t`` of the decoder reads ``tgt_in[:, t]`` and is scored against ``tgt_out[:, t]``.

**Token budget.** A batch costs ``B * max(S, T)`` tokens — padding included,
counted on the longer of the two sides — and never exceeds
``BatchingConfig.max_tokens``. To keep padding low, examples are sorted by
length inside *pools* (the whole dataset, or ``sort_pool_size`` examples) and
cut greedily into batches; the order of batches is then shuffled. Sorting is by
the longer side, then the shorter side.

**Determinism.** The batches of epoch ``e`` depend only on the data, the config
and ``(seed, e)`` (numpy's ``default_rng([seed, e])``): any process, any rank,
any restart computes the same plan.

**Resuming.** :class:`BucketBatcher` is also an iterator over the current
epoch. Its :meth:`~BucketBatcher.state_dict` — ``{"epoch", "position", "seed",
"fingerprint"}``, plain ints and a string — restored with
:meth:`~BucketBatcher.load_state_dict` yields exactly the batches that were not
yet handed out.

**Sharding.** :func:`shard` splits *each global batch* among ``world_size``
ranks by example (rank ``r`` takes rows ``r, r + world_size, …`` of the
length-sorted batch, which balances tokens). Together the ranks process the same
global batches, in the same order, as one process. Every sub-batch carries the
global token count, so a rank can normalize its summed loss by
``global_num_tokens``; under DDP, which *averages* gradients across ranks,
multiply that loss by ``world_size`` to get the single-process gradient. Set
``BatchingConfig.batch_multiple = world_size`` so every rank gets the same number
of examples.

**Filtering.** Examples whose source or target is longer than ``max_sentence_tokens`` (or
that could not fit the token budget even alone) are removed and counted in
:attr:`BucketBatcher.report`, never dropped silently.

**Resampling.** Given ``resample`` (an epoch -> that epoch's examples, e.g.
:class:`attnkit.data.tokenizer.SampledPairs`: a new subword segmentation each epoch),
the batches of epoch ``e`` are planned on the lengths of ``resample(e)``, drawn when
the epoch is first planned. The examples given are still the ones filtered; a drawn
example over the length limit keeps its given segmentation for that epoch instead of
being dropped, and is counted (:meth:`BucketBatcher.resampled_report`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from attnkit._values import check_int, check_positive_int
from attnkit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "Batch",
    "BatchingConfig",
    "BucketBatcher",
    "FilterReport",
    "collate",
    "padding_fraction",
    "shard",
    "shard_batch",
]


@dataclass(frozen=True)
class BatchingConfig:
    """How examples are grouped into batches.

    Attributes:
        max_tokens: budget per batch, ``B * max(S, T)`` including padding.
        max_sentence_tokens: longest source or target (ids, before ``<bos>``/``<eos>``) that
            is kept; longer examples are filtered and counted. ``None``: only
            examples that cannot fit ``max_tokens`` alone are filtered.
        seed: seeds the per-epoch shuffles.
        shuffle: ``False`` gives the same length-sorted batches, in order, every
            epoch (for evaluation).
        sort_pool_size: the shuffled examples are sorted by length in
            consecutive pools of this many before being cut into batches;
            ``None`` sorts the whole dataset (least padding, least variety), 1
            does not sort at all.
        batch_multiple: examples per batch are rounded down to a multiple of this
            when the budget allows; set it to the number of ranks when sharding.
    """

    max_tokens: int
    max_sentence_tokens: int | None = None
    seed: int = 0
    shuffle: bool = True
    sort_pool_size: int | None = None
    batch_multiple: int = 1

    def __post_init__(self) -> None:
        check_positive_int("max_tokens", self.max_tokens)
        check_positive_int("max_sentence_tokens", self.max_sentence_tokens, allow_none=True)
        check_positive_int("sort_pool_size", self.sort_pool_size, allow_none=True)
        check_positive_int("batch_multiple", self.batch_multiple)
        check_int("seed", self.seed)
        if self.max_sentence_tokens is not None and self.max_sentence_tokens + 1 > self.max_tokens:
            raise ValueError(
                f"max_tokens must be >= max_sentence_tokens + 1 = "
                f"{self.max_sentence_tokens + 1} so that the "
                f"longest kept example fits a batch, got max_tokens={self.max_tokens}"
            )


@dataclass(frozen=True)
class Batch:
    """One padded batch (see the module docstring for the layout).

    Attributes:
        src: ``(B, S)`` long, source ids + ``<eos>``, right-padded.
        src_valid_lens: ``(B,)`` long, non-pad positions of each ``src`` row.
        tgt_in: ``(B, T)`` long, ``<bos>`` + target ids, right-padded.
        tgt_out: ``(B, T)`` long, target ids + ``<eos>``, right-padded.
        tgt_valid_lens: ``(B,)`` long, non-pad positions of each target row.
        num_tokens: target tokens to predict here, ``tgt_valid_lens.sum()``.
        global_num_tokens: ``num_tokens`` of the global batch this one was
            sharded from (equal to ``num_tokens`` when not sharded).
        indices: dataset index of each row.
    """

    src: torch.Tensor
    src_valid_lens: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    tgt_valid_lens: torch.Tensor
    num_tokens: int
    global_num_tokens: int
    indices: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of examples ``B``."""
        return len(self.indices)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with every tensor moved to ``device``."""

        def mv(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Batch(
            mv(self.src), mv(self.src_valid_lens), mv(self.tgt_in), mv(self.tgt_out),
            mv(self.tgt_valid_lens), self.num_tokens, self.global_num_tokens, self.indices,
        )  # fmt: skip


def _pad(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, width)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def collate(
    examples: Sequence[tuple[Sequence[int], Sequence[int]]],
    indices: Sequence[int],
    *,
    pad_id: int = PAD_ID,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
) -> Batch:
    """Build the :class:`Batch` of ``examples[i] for i in indices``."""
    src = [list(examples[i][0]) + [eos_id] for i in indices]
    tgt = [list(examples[i][1]) for i in indices]
    tgt_in, tgt_out = [[bos_id] + y for y in tgt], [y + [eos_id] for y in tgt]
    tgt_lens = torch.tensor([len(y) for y in tgt_out], dtype=torch.long)
    n = int(tgt_lens.sum())
    return Batch(
        src=_pad(src, pad_id),
        src_valid_lens=torch.tensor([len(x) for x in src], dtype=torch.long),
        tgt_in=_pad(tgt_in, pad_id),
        tgt_out=_pad(tgt_out, pad_id),
        tgt_valid_lens=tgt_lens,
        num_tokens=n,
        global_num_tokens=n,
        indices=tuple(int(i) for i in indices),
    )


def padding_fraction(batches: Iterable[Batch]) -> float:
    """Fraction of ``src`` + ``tgt_out`` slots that hold padding (0.0 for no slots)."""
    slots = real = 0
    for b in batches:
        slots += b.src.numel() + b.tgt_out.numel()
        real += int(b.src_valid_lens.sum()) + int(b.tgt_valid_lens.sum())
    return 0.0 if slots == 0 else 1.0 - real / slots


def shard_batch(batch: Batch, rank: int, world_size: int) -> Batch:
    """Rank ``rank``'s part of ``batch``: rows ``rank, rank + world_size, …``.

    Columns beyond the part's own longest row are trimmed. A rank whose part is
    empty (only when ``batch.size < world_size``) gets a batch with zero rows.

    Raises:
        ValueError: unless ``0 <= rank < world_size``.
    """
    check_positive_int("world_size", world_size)
    check_int("rank", rank, minimum=0, maximum=world_size - 1)
    rows = torch.tensor(range(rank, batch.size, world_size), dtype=torch.long)  # (B_r,)
    s_len = int(batch.src_valid_lens[rows].max()) if len(rows) else 0
    t_len = int(batch.tgt_valid_lens[rows].max()) if len(rows) else 0
    tgt_lens = batch.tgt_valid_lens[rows]
    return Batch(
        src=batch.src[rows, :s_len],  # (B_r, S_r)
        src_valid_lens=batch.src_valid_lens[rows],
        tgt_in=batch.tgt_in[rows, :t_len],  # (B_r, T_r)
        tgt_out=batch.tgt_out[rows, :t_len],  # (B_r, T_r)
        tgt_valid_lens=tgt_lens,
        num_tokens=int(tgt_lens.sum()),
        global_num_tokens=batch.global_num_tokens,
        indices=tuple(batch.indices[i] for i in rows.tolist()),
    )


def shard(batches: Iterable[Batch], rank: int, world_size: int) -> Iterator[Batch]:
    """:func:`shard_batch` applied to every batch of ``batches``, lazily."""
    for b in batches:
        yield shard_batch(b, rank, world_size)


@dataclass(frozen=True)
class FilterReport:
    """Examples removed before batching.

    Attributes:
        num_examples: examples given.
        kept: examples that take part in batches.
        too_long: examples removed because the source or target exceeded the
            length limit ``max_sentence_tokens`` (effective:
            ``min(max_sentence_tokens, max_tokens - 1)``).
        max_sentence_tokens: that effective limit.
        examples: the first few removed dataset indices.
    """

    num_examples: int
    kept: int
    too_long: int
    max_sentence_tokens: int
    examples: list[int] = field(default_factory=list)

    def summary(self) -> str:
        more = " ..." if self.too_long > len(self.examples) else ""
        where = f" (indices {', '.join(map(str, self.examples))}{more})" if self.too_long else ""
        return (
            f"{self.kept} of {self.num_examples} examples kept; {self.too_long} longer than "
            f"{self.max_sentence_tokens} tokens removed{where}"
        )


Examples = Sequence[tuple[Sequence[int], Sequence[int]]]


def _sizes(examples: Examples, limit: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``max(S, T)`` and ``min(S, T)`` of each example alone (0 where it is over
    ``limit``), and the indices of the examples with a side longer than ``limit``."""
    cost = np.zeros(len(examples), dtype=np.int64)
    short = np.zeros(len(examples), dtype=np.int64)
    over = []
    for i, (x, y) in enumerate(examples):
        if len(x) > limit or len(y) > limit:
            over.append(i)
        else:
            cost[i] = max(len(x), len(y)) + 1
            short[i] = min(len(x), len(y)) + 1
    return cost, short, over


class BucketBatcher:
    """Plans, builds and iterates token-budget batches of tokenized pairs.

    Args:
        examples: ``(source_ids, target_ids)`` pairs without special tokens.
        config: a :class:`BatchingConfig`.
        pad_id, bos_id, eos_id: special ids of the tokenizer(s).
        resample: ``epoch -> examples`` of that epoch, as many and in the same order
            as ``examples`` (see *Resampling* in the module docstring); its ``repr``
            enters the fingerprint. ``None``: ``examples`` every epoch.

    Typical use::

        batcher = BucketBatcher(examples, BatchingConfig(max_tokens=4096, max_sentence_tokens=100))
        print(batcher.report.summary())
        for epoch in range(n_epochs):
            for batch in batcher:        # one pass = the rest of the current epoch
                ...
                save(..., data_state=batcher.state_dict())
    """

    def __init__(
        self,
        examples: Sequence[tuple[Sequence[int], Sequence[int]]],
        config: BatchingConfig,
        *,
        pad_id: int = PAD_ID,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
        resample: Callable[[int], Examples] | None = None,
    ) -> None:
        if not isinstance(config, BatchingConfig):
            raise TypeError(f"config must be a BatchingConfig, got {type(config).__name__}")
        self.examples = examples
        self.config = config
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        limit = config.max_tokens - 1
        if config.max_sentence_tokens is not None:
            limit = min(limit, config.max_sentence_tokens)
        # max(S, T) of each example alone, and min(S, T): the secondary sort key
        cost, short, dropped = _sizes(examples, limit)
        self._kept = np.flatnonzero(cost).astype(np.int64)
        self._cost, self._short = cost, short
        self.report = FilterReport(len(examples), len(self._kept), len(dropped), limit,
                                   dropped[:5])
        digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode())
        digest.update(self._kept.tobytes())
        digest.update(cost.tobytes())
        if resample is not None:
            digest.update(repr(resample).encode())
        self.fingerprint = digest.hexdigest()[:16]
        self.resample = resample
        self.epoch = 0
        self.position = 0
        self._plan_cache: tuple[int, list[list[int]]] | None = None
        # (epoch, its examples, their cost and short, the draws over the limit)
        self._drawn: tuple[int, Examples, np.ndarray, np.ndarray, list[int]] | None = None

    # ------------------------------------------------------------ resampling
    def _epoch_examples(self, epoch: int) -> tuple[Examples, np.ndarray, np.ndarray]:
        """The examples of ``epoch`` and their ``cost`` and ``short`` (see *Resampling*)."""
        if self.resample is None:
            return self.examples, self._cost, self._short
        if self._drawn is None or self._drawn[0] != epoch:
            drawn = list(self.resample(epoch))
            if len(drawn) != len(self.examples):
                raise ValueError(f"resample({epoch}) gave {len(drawn)} examples; the "
                                 f"batcher was made with {len(self.examples)}")
            cost, short, over = _sizes(drawn, self.report.max_sentence_tokens)
            kept = set(self._kept.tolist())
            over = [i for i in over if i in kept]  # the rest are filtered anyway
            for i in over:  # too long as drawn: the given segmentation, not a lost example
                drawn[i] = self.examples[i]
                cost[i], short[i] = self._cost[i], self._short[i]
            self._drawn = (epoch, drawn, cost, short, over)
        return self._drawn[1:4]

    def resampled_report(self, epoch: int) -> str | None:
        """How many examples of ``epoch`` were drawn longer than the length limit and kept
        their given segmentation (with the first few indices); ``None`` when none was, or
        without ``resample``."""
        if self.resample is None:
            return None
        self._epoch_examples(epoch)
        over = self._drawn[4] if self._drawn is not None else []
        if not over:
            return None
        more = " ..." if len(over) > 5 else ""
        return (f"epoch {epoch}: {len(over)} example(s) drawn longer than "
                f"{self.report.max_sentence_tokens} tokens kept their deterministic "
                f"segmentation (indices {', '.join(map(str, over[:5]))}{more})")

    # ------------------------------------------------------------------ plans
    def plan(self, epoch: int) -> list[list[int]]:
        """Dataset indices of every batch of ``epoch``, in order."""
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        cfg = self.config
        _, cost, short = self._epoch_examples(epoch)
        rng = np.random.default_rng([cfg.seed, epoch]) if cfg.shuffle else None
        order = rng.permutation(self._kept) if rng is not None else self._kept
        pool = cfg.sort_pool_size or max(len(order), 1)
        pools = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            # stable sort by cost, then by the shorter side; full ties keep the
            # shuffled order, so batches differ from epoch to epoch
            chunk = chunk[np.lexsort((short[chunk], cost[chunk]))]
            pools.append(chunk)
        batches = self._cut(np.concatenate(pools).tolist() if pools else [], cost)
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._plan_cache = (epoch, batches)
        return batches

    def _cut(self, ordered: list[int], cost: np.ndarray) -> list[list[int]]:
        """Greedy cut of (mostly length-sorted) indices into batches within the budget."""
        budget, k = self.config.max_tokens, self.config.batch_multiple
        out: list[list[int]] = []
        cur: list[int] = []
        cur_max = 0
        for i in ordered:
            c = int(cost[i])
            if cur and (len(cur) + 1) * max(cur_max, c) > budget:
                keep = len(cur) - len(cur) % k if len(cur) >= k else len(cur)
                out.append(cur[:keep])
                cur = cur[keep:]  # fewer than k examples carried over
                cur_max = max((int(cost[j]) for j in cur), default=0)
                if cur and (len(cur) + 1) * max(cur_max, c) > budget:
                    out.append(cur)
                    cur, cur_max = [], 0
            cur.append(i)
            cur_max = max(cur_max, c)
        if cur:
            out.append(cur)
        return out

    def num_batches(self, epoch: int) -> int:
        """Number of batches in ``epoch``."""
        return len(self.plan(epoch))

    def batches_for_epoch(self, epoch: int) -> Iterator[Batch]:
        """All batches of ``epoch``, built lazily (does not touch the iterator state)."""
        for idx in self.plan(epoch):
            yield self.collate(idx, epoch=epoch)

    def collate(self, indices: Sequence[int], *, epoch: int | None = None) -> Batch:
        """The :class:`Batch` of the given dataset indices (as drawn for ``epoch`` when
        resampling; ``None``: the examples given)."""
        examples = self.examples if epoch is None else self._epoch_examples(epoch)[0]
        return collate(
            examples, indices, pad_id=self.pad_id, bos_id=self.bos_id, eos_id=self.eos_id
        )

    def padding_fraction(self, epoch: int) -> float:
        """Padding share of ``src`` + ``tgt_out`` slots over all batches of ``epoch``."""
        slots = real = 0
        examples = self._epoch_examples(epoch)[0]
        for idx in self.plan(epoch):
            xs = [len(examples[i][0]) + 1 for i in idx]
            ys = [len(examples[i][1]) + 1 for i in idx]
            slots += len(idx) * (max(xs) + max(ys))
            real += sum(xs) + sum(ys)
        return 0.0 if slots == 0 else 1.0 - real / slots

    # -------------------------------------------------------------- iteration
    def __iter__(self) -> Iterator[Batch]:
        """Yield the rest of the current epoch, advancing :attr:`position`.

        The position moves *before* each batch is handed out, so a
        ``state_dict()`` taken while a batch is being used resumes after it.
        After the last batch the state moves to ``(epoch + 1, 0)``.
        """
        epoch, start = self.epoch, self.position
        plan = self.plan(epoch)
        for pos in range(start, len(plan)):
            if pos + 1 == len(plan):
                self.epoch, self.position = self.epoch + 1, 0
            else:
                self.position = pos + 1
            yield self.collate(plan[pos], epoch=epoch)
        if start >= len(plan):  # nothing was left in this epoch (or no data at all)
            self.epoch, self.position = self.epoch + 1, 0

    def __len__(self) -> int:
        """Batches left in the current epoch."""
        return self.num_batches(self.epoch) - self.position

    def state_dict(self) -> dict:
        """``{"epoch", "position", "seed", "fingerprint"}``; JSON-serializable."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.config.seed,
            "fingerprint": self.fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from a :meth:`state_dict`.

        Raises:
            ValueError: if the state was made with other data or another config
                (its fingerprint or seed differs), or the position is out of range.
        """
        missing = {"epoch", "position", "seed", "fingerprint"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}")
        if state["fingerprint"] != self.fingerprint or state["seed"] != self.config.seed:
            raise ValueError(
                "state was saved for different data or batching config: fingerprint/seed "
                f"{state['fingerprint']}/{state['seed']} != {self.fingerprint}/{self.config.seed}"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.num_batches(epoch):
            raise ValueError(
                f"state epoch/position must be >= 0 and within the epoch's "
                f"{self.num_batches(max(epoch, 0))} batches, got {epoch}/{position}"
            )
        self.epoch, self.position = epoch, position
