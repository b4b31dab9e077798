"""The book's helpers: check_shape, show_heatmaps (§11.1), plot (§11.6)."""

import pytest
import torch

from attnkit import d2l
from attnkit.viz._matplotlib import pyplot


def test_check_shape():
    d2l.check_shape(torch.ones(2, 3), (2, 3))
    with pytest.raises(AssertionError, match=r"shape \(2, 3\) != expected shape \(3, 2\)"):
        d2l.check_shape(torch.ones(2, 3), (3, 2))


def test_show_heatmaps_books_call_draws_labelled_panels_on_one_scale():
    plt = pyplot()
    plt.close("all")
    attention_weights = torch.eye(10).reshape((1, 1, 10, 10))
    assert d2l.show_heatmaps(attention_weights, xlabel="Keys", ylabel="Queries") is None
    fig = plt.gcf()
    panel = fig.axes[0]
    assert panel.get_xlabel() == "Keys" and panel.get_ylabel() == "Queries"
    assert panel.images[0].get_clim() == (0.0, 1.0)
    plt.close("all")
    P = d2l.PositionalEncoding(32, 0).P[:, :60].unsqueeze(0)  # values in [-1, 1]
    d2l.show_heatmaps(P, xlabel="Column (encoding dimension)", ylabel="Row (position)",
                      figsize=(3.5, 4), cmap="Blues")
    low, high = plt.gcf().axes[0].images[0].get_clim()
    assert low < -0.99 and high > 0.99  # negative values are not clipped
    plt.close("all")


def test_plot_draws_one_line_per_column_with_legend():
    plt = pyplot()
    plt.close("all")
    P = d2l.PositionalEncoding(32, 0).P[0, :60]
    d2l.plot(torch.arange(60), P[:, 6:10].T, xlabel="Row (position)", figsize=(6, 2.5),
             legend=[f"Col {d}" for d in range(6, 10)])
    ax = plt.gcf().axes[0]
    assert len(ax.lines) == 4 and ax.get_xlabel() == "Row (position)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"Col {d}" for d in
                                                                  range(6, 10)]
    plt.close("all")
