"""The one training step: the trainer's forward and loss, and the step the benchmarks time."""

import torch
import torch.nn.functional as F

from attnkit.bench.toolkit import padded_batch
from attnkit.models import build_model, transformer_small
from attnkit.train.step import batch_loss, training_step, valid_targets


def tiny_model(vocab=23):
    torch.manual_seed(0)
    return build_model(transformer_small(vocab, num_hiddens=16, num_heads=2, ffn_num_hiddens=24,
                                         num_encoder_layers=1, num_decoder_layers=1,
                                         dropout=0.0))


def test_batch_loss_is_the_smoothed_loss_of_the_full_logits_at_the_valid_positions():
    model, batch = tiny_model().eval(), padded_batch(3, 2, 7, 23, seed=1)
    with torch.no_grad():
        loss, nll, n = batch_loss(model, batch, epsilon=0.1)
        full = model(batch.src, batch.tgt_in, batch.src_valid_lens,
                     batch.tgt_valid_lens)  # (B, T, V)
    want = F.cross_entropy(full.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0,
                           label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-4)
    assert n == batch.num_tokens == int(batch.tgt_valid_lens.sum()) == len(valid_targets(batch))
    want_nll = F.cross_entropy(full.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0,
                               reduction="sum")
    torch.testing.assert_close(nll, want_nll, rtol=1e-5, atol=1e-4)


def test_training_step_trains_on_the_valid_tokens_and_leaves_no_gradients():
    model, batch = tiny_model(), padded_batch(4, 2, 9, 23, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = batch_loss(model.eval(), batch, epsilon=0.0)[0].detach() / batch.num_tokens
    for _ in range(5):
        assert training_step(model, opt, batch, epsilon=0.0) == batch.num_tokens
    after = batch_loss(model.eval(), batch, epsilon=0.0)[0].detach() / batch.num_tokens
    assert float(after) < float(before)
    assert all(p.grad is None for p in model.parameters())
