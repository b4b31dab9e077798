"""attnkit.d2l's training framework: HyperParameters, Module, DataModule, Trainer, the board."""

import math

import pytest
import torch
from torch import nn

from attnkit import d2l
from tests._fresh import run_fresh
from tests.d2l._line import Line, Regression


def test_save_hyperparameters_stores_the_arguments():
    class Thing(d2l.HyperParameters):
        def __init__(self, a, b, _hidden=3, c=4):
            self.save_hyperparameters(ignore=["c"])

    t = Thing(1, b="x")
    assert (t.a, t.b) == (1, "x") and t.hparams == {"a": 1, "b": "x"}
    assert not hasattr(t, "c") and not hasattr(t, "_hidden")


def test_add_to_class_redefines_a_method_for_every_instance_and_subclass():
    class Base(d2l.Module):
        pass

    class Child(Base):
        pass

    @d2l.add_to_class(Base)
    def greet(self):
        return "hi"

    assert Child().greet() == "hi"


def test_tensorloader_batches_every_row_once_shuffled_when_training():
    data = Line(batch_size=5)
    torch.manual_seed(0)
    train = data.train_dataloader()
    batches = list(train)
    assert len(train) == 7 and [len(b[0]) for b in batches] == [5] * 6 + [2]
    rows = torch.cat([b[0] for b in batches])
    assert sorted(rows.flatten().tolist()) == sorted(data.X[:32].flatten().tolist())
    assert not torch.equal(rows, data.X[:32])  # shuffled
    val = [b[0] for b in data.val_dataloader()]
    assert torch.equal(torch.cat(val), data.X[32:])  # in order
    assert isinstance(batches[0], list) and len(batches[0]) == 2


def test_trainer_fits_and_the_board_records_the_books_curves():
    torch.manual_seed(0)
    model, data = Regression(lr=0.1), Line()
    trainer = d2l.Trainer(max_epochs=20, threads=1)  # not "auto": the same run under load
    trainer.fit(model, data)
    assert model.trainer is trainer and trainer.num_train_batches == 4
    assert model.board.xlim == [0, 20] and model.board.xlabel == "epoch"
    train, val = model.board.data["train_loss"], model.board.data["val_loss"]
    assert len(train) == 2 * 20 and len(val) == 20  # plot_train_per_epoch=2, valid 1
    assert [p.x for p in val[:3]] == [1, 2, 3]
    assert math.isclose(train[0].x, (0 + 1) / 2 / 4)  # batches 0 and 1 (plotted before the step)
    assert val[-1].y < 1e-3 < val[0].y
    assert all(isinstance(p.y, float) for p in train)
    w, b = model.net.weight.item(), model.net.bias.item()
    assert abs(w - 2) < 0.05 and abs(b + 1) < 0.05
    assert not model.training  # left in eval mode after validation, as in the book


def test_clip_gradients_is_the_books_rescaling():
    model = nn.Linear(3, 2)
    for p in model.parameters():
        p.grad = torch.full_like(p, 2.0)  # 8 entries: global norm sqrt(32)
    trainer = d2l.Trainer(max_epochs=1, gradient_clip_val=1)
    trainer.clip_gradients(1, model)
    for p in model.parameters():
        torch.testing.assert_close(p.grad, torch.full_like(p, 2.0 / math.sqrt(32)))
    trainer.clip_gradients(10, model)  # norm 1 < 10: unchanged
    for p in model.parameters():
        torch.testing.assert_close(p.grad, torch.full_like(p, 2.0 / math.sqrt(32)))


def test_books_redefinition_of_fit_epoch_is_used_by_fit():
    calls = []

    class MyTrainer(d2l.Trainer):
        pass

    @d2l.add_to_class(MyTrainer)
    def fit_epoch(self):
        calls.append(self.epoch)

    MyTrainer(max_epochs=3).fit(Regression(lr=0.1), Line())
    assert calls == [0, 1, 2]


def test_classifier_loss_and_accuracy():
    clf = d2l.Classifier()
    Y_hat = torch.tensor([[[2.0, 0.0], [0.0, 3.0]], [[1.0, 0.0], [1.0, 0.0]]])  # (2, 2, 2)
    Y = torch.tensor([[0, 1], [1, 0]])
    assert clf.accuracy(Y_hat, Y).item() == 0.75
    per = clf.loss(Y_hat, Y, averaged=False)
    assert per.shape == (4,)
    torch.testing.assert_close(clf.loss(Y_hat, Y), per.mean())
    torch.testing.assert_close(per[2], -torch.log_softmax(torch.tensor([1.0, 0.0]), 0)[1])


def test_seq2seq_loss_averages_over_non_padding_labels_and_uses_adam():
    enc, dec = d2l.Encoder(), d2l.Decoder()
    model = d2l.Seq2Seq(enc, dec, tgt_pad=0, lr=0.01)
    assert (model.tgt_pad, model.lr, model.encoder) == (0, 0.01, enc)
    g = torch.Generator().manual_seed(0)
    Y_hat = torch.randn(2, 3, 5, generator=g)
    Y = torch.tensor([[3, 1, 0], [2, 0, 0]])
    per = d2l.Classifier.loss(model, Y_hat, Y, averaged=False)
    mask = (Y.reshape(-1) != 0).float()
    torch.testing.assert_close(model.loss(Y_hat, Y), (per * mask).sum() / mask.sum())
    model.w = nn.Parameter(torch.zeros(1))
    assert isinstance(model.configure_optimizers(), torch.optim.Adam)


def test_gru_is_time_major_and_wraps_nn_gru():
    gru = d2l.GRU(4, 6, 2, dropout=0.1)
    assert isinstance(gru, d2l.Module) and isinstance(gru.rnn, nn.GRU)
    assert (gru.num_inputs, gru.num_hiddens, gru.num_layers, gru.dropout) == (4, 6, 2, 0.1)
    outputs, state = gru(torch.zeros(7, 3, 4))
    d2l.check_shape(outputs, (7, 3, 6))
    d2l.check_shape(state, (2, 3, 6))
    with pytest.raises(AssertionError, match="list's length 2 != expected length 3"):
        d2l.check_len([1, 2], 3)


def test_devices():
    assert d2l.cpu() == torch.device("cpu") and d2l.gpu(1) == torch.device("cuda:1")
    assert d2l.num_gpus() == torch.cuda.device_count()
    assert d2l.try_gpu() == (d2l.gpu() if torch.cuda.is_available() else d2l.cpu())
    assert d2l.try_gpu(99) == d2l.cpu()


def test_importing_d2l_loads_no_optional_package():
    code = ("import sys; from attnkit import d2l; "
            "print(sorted(m for m in ('pandas', 'IPython', 'matplotlib.pyplot') "
            "if m in sys.modules))")
    assert run_fresh(code).strip() == "[]"


def test_fit_holds_the_thread_count_on_the_cpu_and_restores_it(monkeypatch):
    seen = []

    class Watch(d2l.Trainer):
        def fit_epoch(self):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    Watch(max_epochs=2, threads=1).fit(Regression(lr=0.1), Line())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # "auto" follows it when it is set
    Watch(max_epochs=1).fit(Regression(lr=0.1), Line())
    assert seen == [1, 1, 3] and torch.get_num_threads() == before


def test_a_bad_thread_count_is_refused_when_the_trainer_is_made():
    with pytest.raises(ValueError, match="Trainer threads must be auto or a positive int; "
                                         "got 0"):
        d2l.Trainer(max_epochs=1, threads=0)
