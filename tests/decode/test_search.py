"""Decoding against exact oracles: a tiny Markov 'model' whose best output can be enumerated."""

import itertools
import math

import pytest
import torch

from attnkit.decode.search import beam_search, greedy_search, length_penalty
from attnkit.models import Transformer

BOS, EOS, V = 2, 3, 7


class MarkovModel(torch.nn.Module):
    """log p(next | last token, sentence): a fixed random table per source sentence."""

    def __init__(self, num_sentences, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        table = torch.randn(num_sentences, V, V, generator=g) * 2
        table[..., 0] = -1e9  # never <pad>
        table[..., 1] = -1e9  # never <unk>
        table[..., BOS] = -1e9
        self.register_buffer("table", torch.log_softmax(table, -1))
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, src, src_valid_lens):
        return src[:, 0]  # the sentence id

    def init_state(self, enc, src_valid_lens):
        return {"sent": enc}

    def decode_step(self, tokens, state):
        logp = self.table[state["sent"], tokens[:, -1]]  # (B, V)
        return logp[:, None, :], state

    def reorder_state(self, state, idx):
        return {"sent": state["sent"].index_select(0, idx)}


def brute_force_best(model, sent, max_len, alpha):
    """The best output within ``max_len`` tokens: one that ends (``n < max_len`` words and
    ``<eos>``) or one cut at the limit (``max_len`` words, scored without ``<eos>``)."""
    best, best_seq = -math.inf, None
    content = [4, 5, 6]
    for n in range(0, max_len + 1):
        for seq in itertools.product(content, repeat=n):
            toks = [BOS, *seq, EOS] if n < max_len else [BOS, *seq]
            lp = sum(float(model.table[sent, a, b]) for a, b in zip(toks, toks[1:]))
            score = lp / length_penalty(len(toks) - 1, alpha)
            if score > best:
                best, best_seq = score, list(seq)
    return best_seq


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.5])
def test_wide_beam_finds_the_exact_best_sequence(alpha):
    model = MarkovModel(4, seed=1)
    src = torch.arange(4)[:, None]
    got = beam_search(model, src, None, bos_id=BOS, eos_id=EOS, beam_size=64, max_output_len=4,
                      alpha=alpha)
    for s in range(4):
        assert got[s] == brute_force_best(model, s, 4, alpha), s


def seq_log_prob(model, sent, seq):
    toks = [BOS, *seq, EOS]
    return sum(float(model.table[sent, a, b]) for a, b in zip(toks, toks[1:]))


def test_greedy_is_the_argmax_chain_and_beam_of_one_never_worse():
    model = MarkovModel(5, seed=2)
    src = torch.arange(5)[:, None]
    greedy = greedy_search(model, src, None, bos_id=BOS, eos_id=EOS, max_output_len=6)
    beam1 = beam_search(model, src, None, bos_id=BOS, eos_id=EOS, beam_size=1, max_output_len=6,
                        alpha=0.0)
    ended = 0
    for s in range(5):  # hand-walk the argmax chain
        tok, chain, finished = BOS, [], False
        for _ in range(6):
            tok = int(model.table[s, tok].argmax())
            if tok == EOS:
                finished = True
                break
            chain.append(tok)
        assert greedy[s] == chain
        if finished:  # beam 1 follows the same chain, and may keep a better early <eos>
            ended += 1
            assert seq_log_prob(model, s, beam1[s]) >= seq_log_prob(model, s, chain) - 1e-9
    assert ended >= 1


def test_beam_scores_sorted_and_length_penalty_applied():
    model = MarkovModel(2, seed=3)
    hyps = beam_search(model, torch.arange(2)[:, None], None, bos_id=BOS, eos_id=EOS,
                       beam_size=3, max_output_len=5, alpha=0.6, return_all=True)
    for per in hyps:
        scores = [h.score for h in per]
        assert scores == sorted(scores, reverse=True)
        for h in per:
            if h.tokens and h.tokens[-1] != EOS:
                assert math.isclose(h.score, h.log_prob / length_penalty(len(h.tokens) + 1, 0.6),
                                    rel_tol=1e-6) or math.isclose(
                    h.score, h.log_prob / length_penalty(len(h.tokens), 0.6), rel_tol=1e-6)


def test_batched_decoding_equals_one_sentence_at_a_time():
    torch.manual_seed(0)
    model = Transformer(11, 11, num_hiddens=16, num_heads=2, ffn_num_hiddens=32,
                        num_encoder_layers=1, num_decoder_layers=2, dropout=0.0).eval()
    src = torch.randint(4, 11, (3, 7))
    lens = torch.tensor([7, 3, 5])
    src[1, 3:] = 0
    src[2, 5:] = 0
    for search in (greedy_search, beam_search):
        kw = dict(bos_id=BOS, eos_id=EOS, max_output_len=8)
        if search is beam_search:
            kw["beam_size"] = 3
        together = search(model, src, lens, **kw)
        alone = [search(model, src[i:i + 1, : int(lens[i])], lens[i:i + 1], **kw)[0]
                 for i in range(3)]
        assert together == alone


def test_decoding_errors():
    model = MarkovModel(1)
    with pytest.raises(ValueError, match=r"src must be a \(B, S\) long tensor"):
        greedy_search(model, torch.zeros(2, 3), None, bos_id=BOS, eos_id=EOS)
    with pytest.raises(ValueError, match=r"beam_size must be a positive int; got 0"):
        beam_search(model, torch.zeros(1, 1, dtype=torch.long), None, bos_id=BOS, eos_id=EOS,
                    beam_size=0)
    with pytest.raises(ValueError, match=r"src_valid_lens must have shape \(1,\)"):
        greedy_search(model, torch.zeros(1, 1, dtype=torch.long), torch.tensor([1, 2]),
                      bos_id=BOS, eos_id=EOS)


def _table_model(rows: dict[int, dict[int, float]]) -> MarkovModel:
    """A one-sentence :class:`MarkovModel` with hand-set ``p(next | last)`` rows."""
    model = MarkovModel(1)
    probs = torch.full((1, V, V), 1e-12)
    for last, row in rows.items():
        for nxt, p in row.items():
            probs[0, last, nxt] = p
    model.table = torch.log(probs / probs.sum(-1, keepdim=True))
    return model


def test_an_eos_ranked_below_the_beam_is_dropped_like_a_beam_ranked_there():
    """From <bos>: 4 (0.5), 5 (0.3), <eos> (0.15), 6 (0.05); after a word every next token
    is about as likely, <eos> a little more (0.28). The empty output (log 0.15 = -1.90) is
    the best of all, better than [4] (log 0.5·0.28 = -1.97). A beam of 2 ranks it third of
    the first step's extensions, below the two beams it keeps, so drops it and returns
    [4]; a beam of 3 ranks it within the beam and keeps it."""
    after = {EOS: 0.28, 4: 0.26, 5: 0.24, 6: 0.22}
    model = _table_model({BOS: {4: 0.5, 5: 0.3, EOS: 0.15, 6: 0.05}, 4: after, 5: after,
                          6: after})
    src = torch.zeros(1, 1, dtype=torch.long)
    kw = dict(bos_id=BOS, eos_id=EOS, max_output_len=6, alpha=0.0)
    two = beam_search(model, src, None, beam_size=2, return_all=True, **kw)[0]
    assert two[0].tokens == [4] and two[0].log_prob == pytest.approx(math.log(0.5 * 0.28))
    assert [] not in [h.tokens for h in two]
    three = beam_search(model, src, None, beam_size=3, return_all=True, **kw)[0]
    assert three[0].tokens == [] and three[0].log_prob == pytest.approx(math.log(0.15))


def test_at_the_output_limit_live_beams_count_beside_finished_ones():
    """With an output limit of 2 and a beam of 2, [] (0.2) ends at the first step and [4]
    (0.6·0.3) at the second, while the live beam [4, 4] (0.6·0.5) is better than both: it
    counts (cut at the limit) although the sentence already has 2 ended hypotheses."""
    after = {4: 0.5, EOS: 0.3, 5: 0.1, 6: 0.1}
    model = _table_model({BOS: {4: 0.6, EOS: 0.2, 5: 0.15, 6: 0.05}, 4: after, 5: after,
                          6: after})
    hyps = beam_search(model, torch.zeros(1, 1, dtype=torch.long), None, bos_id=BOS,
                       eos_id=EOS, beam_size=2, max_output_len=2, alpha=0.0,
                       return_all=True)[0]
    ended = {tuple(h.tokens): h.log_prob for h in hyps if len(h.tokens) < 2}
    assert ended == pytest.approx({(): math.log(0.2), (4,): math.log(0.6 * 0.3)})
    assert hyps[0].tokens == [4, 4] and hyps[0].log_prob == pytest.approx(math.log(0.3))


def reference_beam(model, sent, K, max_len, alpha, stop="exact"):
    """The beam search rules for one sentence, unbatched, in plain Python: of the 2K best
    extensions, the <eos> ones among the first K finish and the best K others go on;
    stop with K finished and no live beam able to beat them (``"exact"``) or once a
    step's best extension was <eos> (``"best_ended"``), or at the limit (then the live
    beams count too)."""
    beams, finished, best_ended = [([], 0.0)], [], False
    for t in range(1, max_len + 1):
        cands = []
        for i, (toks, lp) in enumerate(beams):
            row = torch.log_softmax(model.table[sent, toks[-1] if toks else BOS].float(), -1)
            cands += [(lp + float(row[v]), i, v) for v in range(V)]
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        going = []
        for rank, (s, i, v) in enumerate(cands[:2 * K]):
            if v == EOS and rank < K:
                finished.append((beams[i][0], s / length_penalty(len(beams[i][0]) + 1, alpha)))
            elif v != EOS and len(going) < K:
                going.append((beams[i][0] + [v], s))
        beams = going
        best_ended = best_ended or cands[0][2] == EOS
        if stop == "best_ended":
            if len(finished) >= K and best_ended and t < max_len:
                return sorted(finished, key=lambda h: -h[1])
            continue
        best_alive = max(s for _, s in going) if going else -math.inf
        if len(finished) >= K and t < max_len:
            bound = (best_alive / length_penalty(max_len + 1, alpha) if best_alive < 0
                     else best_alive)
            if bound <= max(s for _, s in finished) or not going:
                return sorted(finished, key=lambda h: -h[1])
    finished += [(toks, lp / length_penalty(len(toks), alpha)) for toks, lp in beams]
    return sorted(finished, key=lambda h: -h[1])


@pytest.mark.parametrize("K", [1, 2, 3, 5])
@pytest.mark.parametrize("max_len", [1, 2, 3, 6])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("stop", ["exact", "best_ended"])
def test_batched_beam_search_equals_the_rules_sentence_by_sentence(K, max_len, alpha, stop):
    """Sentences leave the batch as they finish; what each gets is what it would get
    alone, including the live beams of those cut at the output limit."""
    model = MarkovModel(6, seed=K + 10 * max_len)
    src = torch.arange(6)[:, None]
    got = beam_search(model, src, None, bos_id=BOS, eos_id=EOS, beam_size=K,
                      max_output_len=max_len, alpha=alpha, return_all=True, stop=stop)
    def canon(hyps):  # equal scores (the banned tokens' -1e9) in any order
        return sorted(hyps, key=lambda h: (-round(h[1], 3), h[0]))

    for s in range(6):
        want = canon(reference_beam(model, s, K, max_len, alpha, stop))
        mine = canon([(h.tokens, h.score) for h in got[s]])
        assert [toks for toks, _ in mine] == [toks for toks, _ in want], s
        for (_, a), (_, b) in zip(mine, want):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("width", [6000, 30000, 6003, 7, 97, 64])
def test_row_argmax_and_topk_in_blocks_answer_as_torch_does(width):
    """argmax_rows is torch's argmax (the first of equal maxima, a NaN the largest) and
    topk_rows torch's topk values with indices that hold them, for widths with and without
    a block size, rows with ties inside a block and across blocks, -inf rows, NaN."""
    from attnkit.decode.search import argmax_rows, topk_rows

    g = torch.Generator().manual_seed(width)
    x = torch.randn(9, width, generator=g)
    x[1] = float("-inf")
    x[2, width // 3] = x[2, width - 1] = 50.0  # tie across blocks: the first wins
    x[3, :3] = 60.0  # tie inside a block
    x[4] = torch.round(x[4])  # many ties everywhere
    x[5, width // 2] = float("nan")
    x[6, 1] = x[6, width - 2] = float("nan")
    x[7] = 0.0
    assert torch.equal(argmax_rows(x), x.argmax(-1))
    for k in sorted({1, 2, min(10, width), min(11, width)}):
        top, idx = topk_rows(x, k)
        want, _ = x.topk(k, -1)
        finite = ~torch.isnan(want).any(1)
        assert torch.equal(top[finite], want[finite])
        assert torch.equal(x.gather(1, idx)[finite], top[finite])
        assert all(len(set(r)) == k for r in idx.tolist())  # k distinct positions
