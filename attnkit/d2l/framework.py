"""The book's small training framework (d2l §3.2, §4.1, §6.7, §9.5): its API exactly.

``HyperParameters.save_hyperparameters`` stores a constructor's arguments as
attributes; a :class:`Module` is an ``nn.Module`` that knows its loss, its
optimizer and how to plot its progress; a :class:`DataModule` hands out data
loaders; a :class:`Trainer` fits one to the other. Methods are plain class
attributes, so the book's ``@d2l.add_to_class(Cls)`` redefinitions replace
them on these classes (and on the classes built on them) as they do on the
book's.

Where the learner is, progress is shown the learner's way:

* in a notebook (a Jupyter kernel), :class:`ProgressBoard` draws the book's
  live curves (``train_loss``, ``val_loss``, …) with IPython's display;
* in a terminal, :meth:`Trainer.fit` shows a progress bar (epoch, train and
  validation loss) on standard error when it is a terminal, and nothing at
  all when it is piped or redirected; the board then only records its points
  (``board.data``), it draws nothing and prints no display codes.

Three choices made for speed, with the book's results: a loss is handed to
the board as a tensor and read (a device synchronisation) only when
``every_n`` points are averaged, not at every step; gradient clipping scales
by ``min(1, clip / norm)`` computed on the device instead of testing the norm
on the host; on the CPU, ``fit`` runs on as many threads as there are cores
that other processes leave free (attnkit's thread rule).
"""

from __future__ import annotations

import collections
import inspect
import sys

import torch
from torch import nn
from torch.nn import functional as F

from ..runtime import held_threads, parse_threads

__all__ = [
    "Classifier", "DataModule", "HyperParameters", "Module", "ProgressBoard", "Trainer",
    "add_to_class", "check_len", "cpu", "gpu", "num_gpus", "try_all_gpus", "try_gpu",
]

Point = collections.namedtuple("Point", ["x", "y"])


def add_to_class(Class):
    """Decorator: ``@add_to_class(Cls)`` sets the decorated function as method ``Cls.<name>``."""
    def wrapper(obj):
        setattr(Class, obj.__name__, obj)
    return wrapper


def check_len(a, n: int) -> None:
    """Raise ``AssertionError`` unless ``len(a) == n`` (the book's check)."""
    if len(a) != n:
        raise AssertionError(f"list's length {len(a)} != expected length {n}")


def cpu() -> torch.device:
    """The CPU device."""
    return torch.device("cpu")


def gpu(i: int = 0) -> torch.device:
    """CUDA device ``i`` (it need not exist; see :func:`try_gpu`)."""
    return torch.device(f"cuda:{i}")


def num_gpus() -> int:
    """The number of CUDA devices."""
    return torch.cuda.device_count()


def try_gpu(i: int = 0) -> torch.device:
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return gpu(i) if num_gpus() >= i + 1 else cpu()


def try_all_gpus() -> list[torch.device]:
    """Every CUDA device (an empty list without one)."""
    return [gpu(i) for i in range(num_gpus())]


class HyperParameters:
    """Base class that turns a constructor's arguments into attributes."""

    def save_hyperparameters(self, ignore=()):
        """Store every local variable of the calling ``__init__`` (its arguments) as an
        attribute and in ``self.hparams``, except ``self``, names in ``ignore`` and
        names that start with ``_``."""
        frame = inspect.currentframe().f_back
        skip = set(ignore) | {"self"}
        self.hparams = {k: v for k, v in frame.f_locals.items()
                        if k not in skip and not k.startswith("_")}
        for k, v in self.hparams.items():
            setattr(self, k, v)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython is only looked at when already imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def _mean(values) -> float:
    """The mean of numbers or 0-d tensors, read once."""
    if values and isinstance(values[0], torch.Tensor):
        return float(torch.stack([v.detach().float().reshape(()) for v in values]).mean())
    return sum(float(v) for v in values) / len(values)


class ProgressBoard(HyperParameters):
    """Curves that grow while a model trains (the book's animation).

    ``draw(x, y, label, every_n=1)`` records a point of curve ``label``; every
    ``every_n`` points the mean point joins ``self.data[label]`` and, inside a
    notebook with ``display=True``, the figure is drawn again in place. Outside
    a notebook nothing is drawn; ``data`` still grows. ``latest[label]`` is the
    last ``y`` recorded (the trainer's progress bar reads it).
    """

    def __init__(self, xlabel=None, ylabel=None, xlim=None, ylim=None, xscale="linear",
                 yscale="linear", ls=("-", "--", "-.", ":"), colors=("C0", "C1", "C2", "C3"),
                 fig=None, axes=None, figsize=(3.5, 2.5), display=True):
        self.save_hyperparameters()
        self.raw_points: dict = collections.OrderedDict()
        self.data: dict = collections.OrderedDict()
        self.latest: dict = {}

    def draw(self, x, y, label, every_n=1):
        points = self.raw_points.setdefault(label, [])
        line = self.data.setdefault(label, [])
        points.append(Point(x, y))
        self.latest[label] = y
        if len(points) < max(1, int(every_n)):
            return
        line.append(Point(sum(p.x for p in points) / len(points), _mean([p.y for p in points])))
        points.clear()
        if self.display and _in_notebook():
            self._render()

    def _render(self):
        """Draw every curve on the board's axes and replace the cell's output with it."""
        from IPython import display

        from .plotting import plt, use_svg_display

        use_svg_display()
        if self.fig is None:
            self.fig = plt.figure(figsize=self.figsize)
        axes = self.axes if self.axes is not None else self.fig.gca()
        axes.cla()
        lines = [axes.plot([p.x for p in v], [p.y for p in v], linestyle=ls, color=color)[0]
                 for v, ls, color in zip(self.data.values(), self.ls, self.colors)]
        if self.xlim:
            axes.set_xlim(self.xlim)
        if self.ylim:
            axes.set_ylim(self.ylim)
        axes.set_xlabel(self.xlabel)
        axes.set_ylabel(self.ylabel)
        axes.set_xscale(self.xscale)
        axes.set_yscale(self.yscale)
        axes.legend(lines, list(self.data)[:len(lines)])
        display.display(self.fig)
        display.clear_output(wait=True)


class Module(nn.Module, HyperParameters):
    """The base class of the book's models: ``loss``, ``forward``, ``training_step``,
    ``validation_step``, ``configure_optimizers``, ``plot``, ``apply_init``.

    ``Module(plot_train_per_epoch=2, plot_valid_per_epoch=1)``: how many points
    per epoch the training and validation curves get on ``self.board``.
    """

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = ProgressBoard()

    def loss(self, y_hat, y):
        raise NotImplementedError

    def forward(self, X):
        assert hasattr(self, "net"), "Neural network is defined"
        return self.net(X)

    def plot(self, key, value, train):
        """Add ``value`` to curve ``train_<key>`` or ``val_<key>`` (x in epochs)."""
        assert hasattr(self, "trainer"), "Trainer is not inited"
        trainer = self.trainer
        self.board.xlabel = "epoch"
        if train:
            x = trainer.train_batch_idx / trainer.num_train_batches
            n = trainer.num_train_batches / self.plot_train_per_epoch
        else:
            x = trainer.epoch + 1
            n = trainer.num_val_batches / self.plot_valid_per_epoch
        if isinstance(value, torch.Tensor):
            value = value.detach()  # read when the board averages, not now
        self.board.draw(x, value, ("train_" if train else "val_") + key, every_n=int(n))

    def training_step(self, batch):
        l = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", l, train=True)
        return l

    def validation_step(self, batch):
        l = self.loss(self(*batch[:-1]), batch[-1])
        self.plot("loss", l, train=False)

    def configure_optimizers(self):
        """Minibatch SGD with learning rate ``self.lr`` (the book's default)."""
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def apply_init(self, inputs, init=None):
        """Run ``inputs`` through once (lazy sizes are inferred), then ``self.net.apply(init)``."""
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class Classifier(Module):
    """A :class:`Module` whose outputs are class scores: cross-entropy ``loss`` and
    ``accuracy`` over the last axis; validation plots both."""

    def validation_step(self, batch):
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)
        self.plot("acc", self.accuracy(Y_hat, batch[-1]), train=False)

    def accuracy(self, Y_hat, Y, averaged=True):
        """The fraction (``averaged``) or the 0/1 vector of correct predictions."""
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        preds = Y_hat.argmax(axis=1).type(Y.dtype)
        compare = (preds == Y.reshape(-1)).type(torch.float32)
        return compare.mean() if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        """Cross-entropy of scores ``(…, C)`` against labels ``(…)``: the mean, or one
        value per label when ``averaged=False``."""
        return F.cross_entropy(Y_hat.reshape((-1, Y_hat.shape[-1])), Y.reshape((-1,)),
                               reduction="mean" if averaged else "none")

    def layer_summary(self, X_shape):
        """Print each layer of ``self.net`` with the shape of its output."""
        X = torch.randn(*X_shape)
        for layer in self.net:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)


class DataModule(HyperParameters):
    """The base class of the book's data: ``get_dataloader(train)`` is the one method
    a data set defines; ``DataModule(root='../data', num_workers=4)``."""

    def __init__(self, root="../data", num_workers=4):
        self.save_hyperparameters()

    def get_dataloader(self, train):
        raise NotImplementedError

    def train_dataloader(self):
        return self.get_dataloader(train=True)

    def val_dataloader(self):
        return self.get_dataloader(train=False)

    def get_tensorloader(self, tensors, train, indices=slice(0, None)):
        """Minibatches of ``self.batch_size`` rows of ``tensors[k][indices]`` (shuffled when
        ``train``), each batch a list with one tensor per entry of ``tensors``.

        A ``torch.utils.data.DataLoader`` that indexes each tensor once per batch
        (not once per row), which is what makes it fast.
        """
        tensors = tuple(a[indices] for a in tensors)
        dataset = torch.utils.data.TensorDataset(*tensors)
        rows = (torch.utils.data.RandomSampler(dataset) if train
                else torch.utils.data.SequentialSampler(dataset))
        batches = torch.utils.data.BatchSampler(rows, self.batch_size, drop_last=False)
        return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=batches,
                                           collate_fn=list)


class _EpochBar:
    """The terminal's view of :meth:`Trainer.fit`: a tqdm bar over epochs with the last
    training and validation loss, on standard error only when it is a terminal."""

    def __init__(self, max_epochs: int):
        stream = sys.stderr
        self.on = (not _in_notebook() and stream is not None
                   and hasattr(stream, "isatty") and stream.isatty())
        self.bar = None
        if self.on:
            from tqdm import tqdm

            self.bar = tqdm(total=max_epochs, desc="epoch", unit="epoch", file=stream,
                            dynamic_ncols=True)

    def update(self, model) -> None:
        if self.bar is None:
            return
        latest = getattr(getattr(model, "board", None), "latest", {})
        shown = {k: f"{_mean([v]):.4g}" for k, v in latest.items()}
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Trainer(HyperParameters):
    """Fits a :class:`Module` to a :class:`DataModule` (the book's ``d2l.Trainer``).

    ``Trainer(max_epochs, num_gpus=0, gradient_clip_val=0)``: with ``num_gpus``
    ≥ 1 and a CUDA device, the model and every batch move to the first GPU;
    ``gradient_clip_val`` > 0 clips the gradients' global norm to it. On the
    CPU, ``fit`` holds torch's thread count at ``threads`` (a number, or
    ``"auto"``: the cores that other processes leave free, or
    ``OMP_NUM_THREADS``; see :func:`attnkit.runtime.choose_threads`) and
    restores it after: threads that wait for busy cores slow small models
    down many times over.
    :meth:`fit` runs ``fit_epoch`` ``max_epochs`` times; each epoch trains on
    ``train_dataloader`` then, in ``eval()`` mode and without gradients, runs
    ``validation_step`` on ``val_dataloader``. Progress: see the module's docs.
    """

    def __init__(self, max_epochs, num_gpus=0, gradient_clip_val=0, *, threads="auto"):
        parse_threads(threads, name="Trainer threads")  # refused now, not after the data loads
        self.save_hyperparameters()
        self.gpus = [gpu(i) for i in range(min(num_gpus, torch.cuda.device_count()))]

    def prepare_data(self, data):
        self.train_dataloader = data.train_dataloader()
        self.val_dataloader = data.val_dataloader()
        self.num_train_batches = len(self.train_dataloader)
        self.num_val_batches = (len(self.val_dataloader)
                                if self.val_dataloader is not None else 0)

    def prepare_model(self, model):
        model.trainer = self
        model.board.xlim = [0, self.max_epochs]
        if self.gpus:
            model.to(self.gpus[0])
        self.model = model

    def fit(self, model, data):
        self.prepare_data(data)
        self.prepare_model(model)
        self.optim = model.configure_optimizers()
        self.epoch = 0
        self.train_batch_idx = 0
        self.val_batch_idx = 0
        bar = _EpochBar(self.max_epochs)
        with held_threads(None if self.gpus else self.threads):
            try:
                for epoch in range(self.max_epochs):
                    self.epoch = epoch
                    self.fit_epoch()
                    bar.update(self.model)
            finally:
                bar.close()

    def prepare_batch(self, batch):
        """The batch on the trainer's GPU, if it has one."""
        if self.gpus:
            batch = [a.to(self.gpus[0]) for a in batch]
        return batch

    def fit_epoch(self):
        self.model.train()
        for batch in self.train_dataloader:
            loss = self.model.training_step(self.prepare_batch(batch))
            self.optim.zero_grad()
            loss.backward()
            with torch.no_grad():
                if self.gradient_clip_val > 0:
                    self.clip_gradients(self.gradient_clip_val, self.model)
                self.optim.step()
            self.train_batch_idx += 1
        if self.val_dataloader is None:
            return
        self.model.eval()
        for batch in self.val_dataloader:
            with torch.no_grad():
                self.model.validation_step(self.prepare_batch(batch))
            self.val_batch_idx += 1

    def clip_gradients(self, grad_clip_val, model):
        """Scale every gradient by ``grad_clip_val / norm`` when their global L2 norm
        exceeds ``grad_clip_val`` (the scale ``min(1, clip / norm)`` stays on the device)."""
        grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g, dtype=torch.float32) for g in grads]))
        scale = (grad_clip_val / norm).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype))
