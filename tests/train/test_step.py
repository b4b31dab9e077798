"""The one training step: the trainer's forward and loss, and the step the benchmarks time."""

import torch
import torch.nn.functional as F

from attnkit.bench.toolkit import padded_batch
from attnkit.models import build_model, transformer_small
from attnkit.runtime import held_threads
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


def _loss_curve(model, optimizer, scheduler, batches, *, reference: bool) -> list[float]:
    """Per-token losses of 200 training steps (each before its step); ``reference``
    trains with the composition autograd differentiates (``F.cross_entropy``) instead of
    the fused loss, and evaluates nothing in between."""
    losses = []
    for i in range(200):
        batch = batches[i % len(batches)]
        if reference:
            model.train()
            logits = model(batch.src, batch.tgt_in, batch.src_valid_lens, batch.tgt_valid_lens,
                           only_valid=True)
            loss = F.cross_entropy(logits, valid_targets(batch), label_smoothing=0.1,
                                   reduction="sum") / batch.num_tokens
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:  # evaluated under no_grad between steps, as a trainer's validation does
            with torch.no_grad():
                loss = batch_loss(model.eval(), batch, epsilon=0.1)[0] / batch.num_tokens
            training_step(model, optimizer, batch, epsilon=0.1)
        scheduler.step()
        losses.append(float(loss.detach()))
    return losses


def test_the_trainers_step_follows_the_loss_curve_of_the_plain_one_over_200_steps(monkeypatch):
    """The trainer's optimizer (:func:`build_optimizer`: fused Adam where torch has it) and
    the fused loss (its compiled passes where they are built: their calls are counted),
    against torch's loop Adam and ``F.cross_entropy``: same seed,
    same batches, fp32, the same Noam schedule, dropout off (so both see one function).
    Tolerance: 1e-4 relative at every step (measured: 4.7e-7 at most with the compiled loss,
    8.3e-7 with the torch-op one). At a rate high
    enough to be chaotic (scale 0.5 here) two runs of either kind part after ~100 steps
    from rounding alone, so the rate is one that trains without chaos."""
    from attnkit.kernels import cpu_loss
    from attnkit.train.config import TrainConfig
    from attnkit.train.schedule import noam_scheduler
    from attnkit.train.setup import build_optimizer

    calls = []
    stats, gradient = cpu_loss.row_stats, cpu_loss.gradient
    monkeypatch.setattr(cpu_loss, "row_stats", lambda *a, **k: calls.append(1) or stats(*a, **k))
    monkeypatch.setattr(cpu_loss, "gradient", lambda *a, **k: calls.append(2) or gradient(*a, **k))
    cfg = TrainConfig.from_flat(warmup=40, lr_scale=0.1)
    batches = [padded_batch(6, 2, 9, 23, seed=s) for s in range(5)]
    curves = {}
    with held_threads(1):
        for fast in (True, False):
            model = tiny_model()
            if fast:
                opt, sched = build_optimizer(cfg, model, 16)
                assert opt.param_groups[0]["fused"] is True
            else:
                opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98),
                                       eps=cfg.optim.eps, foreach=False)
                sched = noam_scheduler(opt, d_model=16, warmup=40, scale=0.1)
            curves[fast] = _loss_curve(model, opt, sched, batches, reference=not fast)
    fast, plain = torch.tensor(curves[True]), torch.tensor(curves[False])
    assert plain[-1] < 0.5 * plain[0]  # it trains
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=0)
    if cpu_loss.status().lib is not None:  # forward twice a step (validation, training)
        assert calls.count(1) == 400 and calls.count(2) == 200


def test_the_trainers_fused_step_gives_its_parameters_new_versions():
    """The fused kernel writes the weights without a new version; the trainer's optimizer
    gives them one, so inference between steps (no mode switch) sees the new weights."""
    from attnkit.train.config import TrainConfig
    from attnkit.train.setup import build_optimizer

    model, batch = tiny_model(), padded_batch(4, 2, 9, 23, seed=2)
    opt, _ = build_optimizer(TrainConfig.from_flat(warmup=5), model, 16)
    assert opt.param_groups[0]["fused"] is True
    model.eval()
    with torch.no_grad():
        batch_loss(model, batch, epsilon=0.1)  # keeps the fused projections
    versions = [p._version for p in model.parameters()]
    training_step(model, opt, batch, epsilon=0.1)
    model.eval()  # (training_step left it in training mode)
    assert all(p._version > v for p, v in zip(model.parameters(), versions))
    with torch.no_grad():
        got = batch_loss(model, batch, epsilon=0.1)[0]
    torch.testing.assert_close(got, batch_loss(model, batch, epsilon=0.1)[0].detach())
