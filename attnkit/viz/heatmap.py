"""Attention heatmaps (d2l's ``show_heatmaps``, with tokens and valid lengths).

Uses matplotlib's non-interactive Agg backend, so it runs on machines with
no display; inside a Jupyter kernel (inline backend) figures show inline
(:func:`attnkit.viz._matplotlib.pyplot`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ._matplotlib import pyplot


def show_heatmaps(matrices: torch.Tensor, *, xlabel: str = "Keys", ylabel: str = "Queries",
                  titles: Sequence[str] | None = None, figsize: tuple[float, float] | None = None,
                  cmap: str = "Reds", xticklabels: Sequence[str] | None = None,
                  yticklabels: Sequence[str] | None = None, valid_lens: Sequence[int] | None = None,
                  suptitle: str | None = None, vmin: float = 0.0, vmax: float | None = None):
    """Draw a grid of heatmaps and return the matplotlib ``Figure``.

    ``matrices`` has shape ``(rows, cols, Nq, Nk)`` (d2l's convention); each
    panel is queries × keys. All panels share one colour scale, ``vmin`` to
    ``vmax`` (default: the largest value; pass ``vmax=1.0`` so that figures of
    attention weights drawn separately can be compared shade for shade). With
    ``valid_lens`` (one per row of panels), a dashed line marks where the valid
    keys end, explained in a legend.
    """
    if not isinstance(matrices, torch.Tensor) or matrices.ndim != 4:
        got = tuple(matrices.shape) if isinstance(matrices, torch.Tensor) else type(matrices)
        raise ValueError(f"matrices must be a tensor of shape (rows, cols, Nq, Nk); got {got}")
    plt = pyplot()
    rows, cols, nq, nk = matrices.shape
    if figsize is None:
        figsize = (min(2.0 + 2.6 * cols * max(1.0, nk / 10), 18), 1.2 + 1.8 * rows * max(
            1.0, nq / 10))
    fig, axes = plt.subplots(rows, cols, figsize=figsize, sharex=True, sharey=True,
                             squeeze=False)
    data = matrices.detach().float().cpu()
    if vmax is None:
        vmax = float(data.max()) if data.numel() else 1.0
    image, dashed = None, None
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            image = ax.imshow(data[i, j].numpy(), cmap=cmap, vmin=vmin,
                              vmax=max(vmax, vmin + 1e-12), aspect="auto",
                              interpolation="nearest")
            if valid_lens is not None and valid_lens[i] < nk:
                dashed = ax.axvline(valid_lens[i] - 0.5, color="tab:blue", linestyle="--",
                                    linewidth=1.2, label="valid_len: keys to the right "
                                                         "are padding (weight 0)")
            if i == rows - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
            if titles is not None:
                per_panel = rows > 1 and len(titles) != cols
                ax.set_title(titles[i * cols + j] if per_panel else titles[j], fontsize=10)
            if xticklabels is not None:
                ax.set_xticks(range(nk), xticklabels, rotation=90, fontsize=8)
            elif nk <= 32:
                ax.set_xticks(range(nk))
            if yticklabels is not None:
                ax.set_yticks(range(nq), yticklabels, fontsize=8)
            elif nq <= 32:
                ax.set_yticks(range(nq))
    fig.colorbar(image, ax=axes, shrink=0.6, label="weight")
    if dashed is not None:
        fig.legend(handles=[dashed], loc="lower center", fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def save_figure(fig, path: str | Path, *, dpi: int = 120, tight: bool = True) -> Path:
    """Save and close ``fig``; the format follows the suffix (``.png``, ``.svg``).

    ``tight=False`` keeps the canvas at exactly ``figsize × dpi`` pixels.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return path
