"""The book's figures: ``use_svg_display``, ``set_figsize``, ``plt``, ``plot``,
``show_heatmaps``, ``show_list_len_pair_hist``, and ``check_shape``.

Figures are drawn with matplotlib's ``pyplot`` on the current backend (inline
in a notebook, Agg on a machine without a display), like the book's; the
functions return ``None`` as the book's do, and ``plt.gcf()`` is the figure.
``plt`` (``d2l.plt``) is ``matplotlib.pyplot``, imported on first use.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

__all__ = ["check_shape", "plot", "set_axes", "set_figsize", "show_heatmaps",
           "show_list_len_pair_hist", "use_svg_display"]


def __getattr__(name: str):
    if name == "plt":  # pyplot only when a figure is wanted (it picks a backend)
        from ..viz._matplotlib import pyplot

        return pyplot()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_svg_display() -> None:
    """In a notebook, show figures as SVG (as the book does); elsewhere nothing changes."""
    ipython = sys.modules.get("IPython")
    if ipython is None or ipython.get_ipython() is None:
        return
    try:
        from matplotlib_inline import backend_inline
    except ImportError:  # a shell without the inline backend keeps its formats
        return
    backend_inline.set_matplotlib_formats("svg")


def set_figsize(figsize=(3.5, 2.5)) -> None:
    """Make ``figsize`` (inches) the size of the figures drawn from now on."""
    use_svg_display()
    __getattr__("plt").rcParams["figure.figsize"] = figsize


def set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend) -> None:
    """Label, limit and scale matplotlib ``axes``; add a legend and a grid."""
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_xscale(xscale)
    axes.set_yscale(yscale)
    axes.set_xlim(xlim)
    axes.set_ylim(ylim)
    if legend:
        axes.legend(legend)
    axes.grid()


def show_list_len_pair_hist(legend, xlabel, ylabel, xlist, ylist) -> None:
    """Histogram of the lengths of paired lists (d2l §10.5: tokens per sentence),
    the second series hatched."""
    plt = __getattr__("plt")
    set_figsize()
    _, _, patches = plt.hist([[len(x) for x in xlist], [len(y) for y in ylist]])
    plt.xlabel(xlabel)
    plt.ylabel(ylabel)
    for patch in patches[1].patches:
        patch.set_hatch("/")
    plt.legend(legend)


def check_shape(a: torch.Tensor, shape) -> None:
    """Raise ``AssertionError`` unless ``a.shape == shape`` (the book's check)."""
    if tuple(a.shape) != tuple(shape):
        raise AssertionError(f"tensor's shape {tuple(a.shape)} != expected shape {tuple(shape)}")


def show_heatmaps(matrices: torch.Tensor, xlabel: str, ylabel: str,
                  titles: Sequence[str] | None = None, figsize=(2.5, 2.5),
                  cmap: str = "Reds") -> None:
    """Heatmaps of ``matrices`` ``(rows, cols, Nq, Nk)`` (d2l §11.1), one colour bar.

    Unlike the book, every panel uses the same colour scale (from ``min(0, min)``
    to the largest value), so one shade means one value in all of them.
    """
    from ..viz.heatmap import show_heatmaps as _show

    data = torch.as_tensor(matrices).detach().float().cpu()
    low = min(0.0, float(data.min())) if data.numel() else 0.0
    _show(data, xlabel=xlabel, ylabel=ylabel, titles=titles, figsize=figsize, cmap=cmap,
          vmin=low)


def plot(X, Y=None, xlabel=None, ylabel=None, legend=None, xlim=None, ylim=None,
         xscale="linear", yscale="linear", fmts=("-", "m--", "g-.", "r:"),
         figsize=(3.5, 2.5), axes=None) -> None:
    """Plot one or several curves (the book's ``d2l.plot``, used in §11.6).

    ``X``/``Y``: a sequence or tensor of values, or a list of them (one per
    curve); a 2-D ``Y`` is one curve per row. With ``Y`` omitted, ``X`` holds
    the y values against ``0, 1, …``.
    """
    from ..viz._matplotlib import pyplot

    plt = pyplot()
    if axes is None:
        axes = plt.figure(figsize=figsize).gca()
    X, Y = _curves(X), (None if Y is None else _curves(Y))
    if Y is None:
        X, Y = [list(range(len(y))) for y in X], X
    elif len(X) != len(Y):
        X = X * len(Y)
    for x, y, fmt in zip(X, Y, fmts * len(Y)):
        axes.plot(x, y, fmt) if len(x) else axes.plot(y, fmt)
    set_axes(axes, xlabel, ylabel, xlim, ylim, xscale, yscale, legend)


def _curves(V) -> list[list[float]]:
    """A list of curves (lists of floats) from a tensor, a list, or a list of those."""
    if isinstance(V, torch.Tensor):
        V = V.detach().cpu()
        return [V.tolist()] if V.ndim == 1 else [row.tolist() for row in V]
    V = list(V)
    if V and (isinstance(V[0], torch.Tensor) and V[0].ndim >= 1 or isinstance(V[0], list | tuple)):
        return [torch.as_tensor(v).tolist() for v in V]
    return [[float(v) for v in V]]
