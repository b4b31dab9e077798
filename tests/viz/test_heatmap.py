"""Heat maps of attention weights: panels on one colour scale, and the dashed line that marks
each valid length explained in a legend."""

import torch

from attnkit.viz.figures import panel_axes


def test_tour_heatmaps_share_one_scale_and_explain_the_dashed_line(tmp_path):
    from attnkit.viz.heatmap import show_heatmaps

    w = torch.softmax(torch.randn(2, 1, 1, 10), -1) * 0.5
    fig = show_heatmaps(w, valid_lens=[2, 6], vmax=1.0, titles=["a", "b"])
    assert all(ax.images[0].get_clim() == (0.0, 1.0) for ax in panel_axes(fig))
    (legend,) = fig.legends
    assert "valid_len" in legend.get_texts()[0].get_text()
