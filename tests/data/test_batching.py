"""Tests for attnkit.data.batching: layout, budget, determinism, sharding, resumption."""

from __future__ import annotations

import json
import random

import pytest
import torch

from attnkit.data.batching import (
    BatchingConfig,
    BucketBatcher,
    collate,
    padding_fraction,
    shard,
    shard_batch,
)

from .._data import DATA

MULTI30K = DATA / "multi30k"


def random_examples(n: int, seed: int, max_len: int = 30) -> list[tuple[list[int], list[int]]]:
    """Pairs whose target length is the source length +- 3, like real translations."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = rng.randint(0, max_len)
        t = min(max(1, s + rng.randint(-3, 3)), max_len)
        xs = [rng.randrange(4, 50) for _ in range(s)]
        out.append((xs, [rng.randrange(4, 50) for _ in range(t)]))
    return out


def test_collate_layout_by_hand():
    examples = [([5, 6], [7]), ([8], [9, 10, 11])]
    b = collate(examples, [0, 1], pad_id=0, bos_id=2, eos_id=3)
    assert b.src.tolist() == [[5, 6, 3], [8, 3, 0]]
    assert b.src_valid_lens.tolist() == [3, 2]
    assert b.tgt_in.tolist() == [[2, 7, 0, 0], [2, 9, 10, 11]]
    assert b.tgt_out.tolist() == [[7, 3, 0, 0], [9, 10, 11, 3]]
    assert b.tgt_valid_lens.tolist() == [2, 4]
    assert b.num_tokens == b.global_num_tokens == 6 and b.indices == (0, 1) and b.size == 2
    assert all(t.dtype == torch.long for t in (b.src, b.tgt_in, b.tgt_out, b.src_valid_lens))
    # padding share of src + tgt_out slots: (1 + 2) pad of (6 + 8)
    assert padding_fraction([b]) == pytest.approx(3 / 14)


def test_every_batch_fits_the_budget_and_each_example_appears_once():
    examples = random_examples(500, seed=0)
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=97, seed=1))
    for epoch in range(2):
        seen = []
        for b in batcher.batches_for_epoch(epoch):
            assert b.size * max(b.src.shape[1], b.tgt_in.shape[1]) <= 97
            assert b.src.shape[1] == int(b.src_valid_lens.max())  # no all-padding column
            seen.extend(b.indices)
        assert sorted(seen) == list(range(500))


def test_sorting_keeps_padding_low():
    examples = random_examples(2000, seed=1)
    sorted_all = BucketBatcher(examples, BatchingConfig(max_tokens=256, seed=0))
    pooled = BucketBatcher(examples, BatchingConfig(max_tokens=256, seed=0, sort_pool_size=200))
    unsorted = BucketBatcher(examples, BatchingConfig(max_tokens=256, seed=0, sort_pool_size=1))
    fractions = [b.padding_fraction(0) for b in (sorted_all, pooled, unsorted)]
    assert fractions[0] < fractions[1] < fractions[2]
    assert fractions[2] > 0.3  # random grouping wastes a third or more
    # the planner's figure is the one measured on the padded tensors
    assert fractions[1] == pytest.approx(padding_fraction(pooled.batches_for_epoch(0)))


def test_plans_depend_only_on_seed_and_epoch():
    examples = random_examples(300, seed=2)
    cfg = BatchingConfig(max_tokens=128, seed=5)
    a, b = BucketBatcher(examples, cfg), BucketBatcher(examples, cfg)
    assert a.plan(0) == b.plan(0) and a.plan(3) == b.plan(3)
    assert a.plan(0) != a.plan(1)
    assert a.plan(0) != BucketBatcher(examples, BatchingConfig(max_tokens=128, seed=6)).plan(0)
    fixed = BucketBatcher(examples, BatchingConfig(max_tokens=128, shuffle=False))
    assert fixed.plan(0) == fixed.plan(1)
    costs = [max(len(examples[i][0]), len(examples[i][1])) for idx in fixed.plan(0) for i in idx]
    assert costs == sorted(costs)


def test_too_long_examples_are_counted_not_silently_dropped():
    examples = [([4] * 3, [5] * 3), ([4] * 9, [5]), ([4], [5] * 7), ([4] * 6, [5] * 6)]
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=64, max_sentence_tokens=6))
    rep = batcher.report
    assert (rep.num_examples, rep.kept, rep.too_long, rep.examples) == (4, 2, 2, [1, 2])
    assert rep.summary() == "2 of 4 examples kept; 2 longer than 6 tokens removed (indices 1, 2)"
    assert sorted(i for idx in batcher.plan(0) for i in idx) == [0, 3]
    # without max_sentence_tokens, only what cannot fit the budget alone is removed
    assert BucketBatcher(examples, BatchingConfig(max_tokens=9)).report.examples == [1]


def test_batch_multiple_gives_equal_example_counts():
    examples = random_examples(1000, seed=3)
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=200, batch_multiple=4))
    sizes = [len(idx) for idx in batcher.plan(0)]
    assert sum(s % 4 != 0 for s in sizes) <= 1  # only the very last cut may be short


def test_shards_partition_the_global_batch_and_keep_the_loss():
    examples = random_examples(400, seed=4)
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=300, batch_multiple=3, seed=2))
    weight = torch.rand(50, dtype=torch.float64)  # a per-token "loss" for each target id

    def summed_loss(b):
        mask = torch.arange(b.tgt_out.shape[1]) < b.tgt_valid_lens[:, None]  # (B, T)
        return (weight[b.tgt_out] * mask).sum()

    world = 3
    for b in batcher.batches_for_epoch(0):
        parts = [shard_batch(b, r, world) for r in range(world)]
        assert sorted(i for p in parts for i in p.indices) == sorted(b.indices)
        assert sum(p.num_tokens for p in parts) == b.num_tokens
        assert all(p.global_num_tokens == b.num_tokens for p in parts)
        for p in parts:
            for row, i in enumerate(p.indices):
                g = b.indices.index(i)
                s, t = int(p.src_valid_lens[row]), int(p.tgt_valid_lens[row])
                assert torch.equal(p.src[row, :s], b.src[g, :s])
                assert torch.equal(p.tgt_in[row, :t], b.tgt_in[g, :t])
        # per-rank sum / global token count, summed over ranks = the 1-process loss
        ranks = sum(summed_loss(p) / p.global_num_tokens for p in parts)
        assert torch.allclose(ranks, summed_loss(b) / b.num_tokens, rtol=1e-12, atol=0)
    lazily = list(shard(batcher.batches_for_epoch(0), 1, world))
    assert [p.indices for p in lazily] == [b.indices[1::3] for b in batcher.batches_for_epoch(0)]


def test_shard_smaller_than_world_and_bad_rank():
    b = collate([([5], [6])], [0])
    assert shard_batch(b, 0, 2).size == 1
    empty = shard_batch(b, 1, 2)
    assert empty.size == 0 and empty.src.shape == (0, 0) and empty.num_tokens == 0
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, 1\]; got 2"):
        shard_batch(b, 2, 2)


class Redraw:
    """A stand-in for a subword sampler: each epoch every example gets other ids and a
    length a few ids off its own, the same for the same epoch; ``too_long`` examples
    are drawn with 50 source ids in ``epochs``."""

    def __init__(self, examples, too_long=(), epochs=()):
        self.examples, self.too_long, self.epochs = examples, set(too_long), set(epochs)

    def __repr__(self):
        return f"Redraw(too_long={sorted(self.too_long)})"

    def __call__(self, epoch):
        rng = random.Random(epoch)
        out = []
        for i, (x, y) in enumerate(self.examples):
            n = 50 if i in self.too_long and epoch in self.epochs else \
                max(1, len(x) + rng.randint(-3, 3))
            out.append(([rng.randrange(4, 50) for _ in range(n)], [epoch + 4] * len(y)))
        return out


def rows(batch):
    """What a batch holds: its examples and their ids."""
    return batch.indices, batch.src.tolist(), batch.tgt_out.tolist()


@pytest.mark.parametrize("resampled", [False, True])
def test_resume_gives_exactly_the_remaining_batches(resampled):
    examples = random_examples(300, seed=5)
    cfg = BatchingConfig(max_tokens=150, seed=9)
    redraw = Redraw(examples) if resampled else None
    full = BucketBatcher(examples, cfg, resample=redraw)
    reference = [rows(b) for _ in range(2) for b in full]  # epochs 0 and 1
    assert full.state_dict()["epoch"] == 2 and full.state_dict()["position"] == 0

    first = BucketBatcher(examples, cfg, resample=redraw)
    got = []
    for b in first:
        got.append(rows(b))
        if len(got) == 4:
            break
    state = json.loads(json.dumps(first.state_dict()))  # survives a JSON checkpoint
    assert state["epoch"] == 0 and state["position"] == 4

    resumed = BucketBatcher(examples, cfg, resample=Redraw(examples) if resampled else None)
    resumed.load_state_dict(state)
    assert len(resumed) == full.num_batches(0) - 4
    got += [rows(b) for _ in range(2) for b in resumed]
    assert got == reference


def test_each_epoch_is_batched_on_the_lengths_drawn_for_it():
    examples = random_examples(400, seed=7)
    redraw = Redraw(examples)
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=97, seed=1), resample=redraw)
    plain = BucketBatcher(examples, BatchingConfig(max_tokens=97, seed=1))
    for epoch in range(2):
        drawn, seen = redraw(epoch), []
        for b in batcher.batches_for_epoch(epoch):
            assert b.size * max(b.src.shape[1], b.tgt_in.shape[1]) <= 97
            for r, i in enumerate(b.indices):  # the ids drawn for the epoch, then <eos>
                assert b.src[r, : b.src_valid_lens[r]].tolist() == drawn[i][0] + [3]
            assert b.tgt_out[:, 0].tolist() == [epoch + 4] * b.size
            seen.extend(b.indices)
        assert sorted(seen) == list(range(400))
        assert batcher.plan(epoch) != plain.plan(epoch)  # other lengths, other batches
    assert batcher.padding_fraction(0) == pytest.approx(
        padding_fraction(batcher.batches_for_epoch(0)))
    assert batcher.fingerprint != plain.fingerprint  # a state of the one fits not the other
    with pytest.raises(ValueError, match="different data or batching config"):
        batcher.load_state_dict(plain.state_dict())


def test_a_draw_over_the_length_limit_keeps_the_given_segmentation_and_is_counted():
    examples = random_examples(60, seed=8, max_len=20)
    examples[5] = ([4] * 25, [5] * 3)  # filtered: over max_sentence_tokens as given
    redraw = Redraw(examples, too_long=[3, 5, 9], epochs=[1])
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=200, max_sentence_tokens=24),
                            resample=redraw)
    assert batcher.report.too_long == 1 and batcher.report.examples == [5]
    assert batcher.resampled_report(0) is None
    assert batcher.resampled_report(1) == ("epoch 1: 2 example(s) drawn longer than 24 tokens "
                                           "kept their deterministic segmentation (indices "
                                           "3, 9)")
    by_index = {i: (b.src[r], b.tgt_out[r]) for b in batcher.batches_for_epoch(1)
                for r, i in enumerate(b.indices)}
    assert sorted(by_index) == [i for i in range(60) if i != 5]  # none lost, 5 still filtered
    for i in (3, 9):
        src, tgt = by_index[i]
        assert src[: len(examples[i][0])].tolist() == examples[i][0]
        assert tgt[: len(examples[i][1])].tolist() == examples[i][1]
    with pytest.raises(ValueError, match=r"^resample\(0\) gave 59 examples; the batcher "
                                         r"was made with 60$"):
        BucketBatcher(examples, BatchingConfig(max_tokens=200),
                      resample=lambda epoch: redraw(epoch)[1:]).plan(0)


def test_state_at_the_end_of_an_epoch_moves_on():
    examples = random_examples(100, seed=6)
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=150, seed=1))
    n0 = batcher.num_batches(0)
    batcher.load_state_dict({**batcher.state_dict(), "position": n0})
    assert list(batcher) == [] and (batcher.epoch, batcher.position) == (1, 0)
    assert [b.indices for b in batcher] == [tuple(i) for i in batcher.plan(1)]
    with pytest.raises(ValueError, match="within the epoch's"):
        batcher.load_state_dict({**batcher.state_dict(), "position": 10_000})


def test_state_from_other_data_is_rejected():
    cfg = BatchingConfig(max_tokens=150, seed=9)
    state = BucketBatcher(random_examples(50, seed=0), cfg).state_dict()
    with pytest.raises(ValueError, match="different data or batching config"):
        BucketBatcher(random_examples(50, seed=1), cfg).load_state_dict(state)
    with pytest.raises(ValueError, match="missing keys"):
        BucketBatcher(random_examples(50, seed=0), cfg).load_state_dict({"epoch": 0})


def test_config_validation():
    with pytest.raises(ValueError, match="max_tokens must be a positive int; got 0"):
        BatchingConfig(max_tokens=0)
    with pytest.raises(ValueError, match="max_tokens must be >= max_sentence_tokens \\+ 1 = 101"):
        BatchingConfig(max_tokens=100, max_sentence_tokens=100)
    with pytest.raises(TypeError, match="config must be a BatchingConfig, got dict"):
        BucketBatcher([], {"max_tokens": 10})


@pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"{MULTI30K} absent")
def test_real_multi30k_batches():
    from attnkit.data.corpus import load_multi30k
    from attnkit.data.tokenizer import WordTokenizer

    pairs = load_multi30k(MULTI30K, "train", "de", "en", tokenized=True).pairs
    src_tok = WordTokenizer.train([s for s, _ in pairs], min_freq=2)
    tgt_tok = WordTokenizer.train([t for _, t in pairs], min_freq=2)
    examples = [(src_tok.encode(s), tgt_tok.encode(t)) for s, t in pairs]
    batcher = BucketBatcher(examples, BatchingConfig(max_tokens=4096, max_sentence_tokens=40,
                                                     seed=0))
    assert batcher.report.kept + batcher.report.too_long == 29000
    assert 0 < batcher.report.too_long < 100  # a few very long captions
    assert batcher.padding_fraction(0) < 0.15
    for idx in batcher.plan(0):
        cost = max(max(len(examples[i][0]), len(examples[i][1])) + 1 for i in idx)
        assert len(idx) * cost <= 4096
