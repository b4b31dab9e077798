import json

import numpy as np
import pytest
import torch
from PIL import Image

from attnkit.cli import main
from attnkit.viz.figures import DPI, FIGURES, NEEDS_INPUT, panel_axes, plot

# name -> number of data panels expected
PANELS = {
    "masked-softmax": 6,
    "scores": 5,
    "causal-mask": 6,
    "scaling": 3,
    "positional-encoding": 2,
    "lr-schedule": 1,
    "cost": 2,
}


def assert_nonblank_png(path, fig):
    """The PNG has the figure's size in pixels and is not a blank canvas."""
    img = np.asarray(Image.open(path).convert("RGB")).astype(float)
    h, w, _ = img.shape
    fw, fh = fig.get_size_inches()
    assert (w, h) == (round(fw * DPI), round(fh * DPI))
    assert img.std() > 10
    return w, h


def test_every_input_free_figure_is_listed():
    assert set(PANELS) == {n for n in FIGURES if n not in NEEDS_INPUT}


@pytest.mark.parametrize("name", sorted(PANELS))
def test_figure_renders_png_and_svg_with_expected_panels(name, tmp_path):
    fig = FIGURES[name]()
    axes = panel_axes(fig)
    assert len(axes) == PANELS[name]
    for ax in axes:  # every panel is labelled
        assert ax.get_title() or ax.get_xlabel()
    paths = plot(name, tmp_path)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert_nonblank_png(paths[0], fig)
    assert paths[1].read_text().lstrip().startswith("<?xml")


def test_curves_from_log(tmp_path):
    log = tmp_path / "metrics.jsonl"
    with log.open("w") as f:
        for step in range(1, 60):
            rec = {
                "step": step,
                "loss": 5 / step,
                "ppl": float(np.exp(5 / step)),
                "lr": 1e-3 * min(step / 10, (10 / step) ** 0.5),
                "tokens_per_s": 1000.0,
            }
            if step % 20 == 0:
                rec["val_bleu"] = step / 2
            f.write(json.dumps(rec) + "\n")
    fig = FIGURES["curves"](log)
    assert len(panel_axes(fig)) == 5
    (png,) = plot("curves", tmp_path, formats=("png",), log=log)
    assert_nonblank_png(png, fig)


def test_attention_maps_panels_per_layer_and_head(tmp_path):
    g = torch.Generator().manual_seed(0)

    def rand(h, q, k):
        return torch.softmax(torch.randn(1, h, q, k, generator=g), -1)

    captures = {
        "encoder.blocks.0.attention": rand(2, 5, 5),
        "encoder.blocks.1.attention": rand(2, 5, 5),
        "decoder.blocks.0.self_attention": rand(2, 4, 4),
        "decoder.blocks.0.cross_attention": rand(2, 4, 5),
    }
    fig = FIGURES["attention-maps"](captures, list("abcde"), list("wxyz"))
    titles, suptitle = _texts(fig)
    assert all(titles) and "abcde" in suptitle
    assert len(panel_axes(fig)) == 4 * 2
    (png,) = plot(
        "attention-maps",
        tmp_path,
        formats=("png",),
        captures=captures,
        src_tokens=list("abcde"),
        tgt_tokens=list("wxyz"),
    )
    assert_nonblank_png(png, fig)


def test_plot_command_and_errors(tmp_path, capsys):
    assert main(["plot", "lr-schedule", "--out", str(tmp_path), "--format", "png"]) == 0
    assert (tmp_path / "lr-schedule.png").exists()
    assert main(["plot", "curves", "--out", str(tmp_path)]) == 2
    assert "plot curves needs --log PATH" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"figure name must be one of .*got 'nope'"):
        plot("nope", tmp_path)


def _texts(fig):
    return [ax.get_title() for ax in panel_axes(fig)], fig.get_suptitle()


def test_attention_maps_label_axes_title_the_sentence_and_share_one_scale():
    g = torch.Generator().manual_seed(0)
    src = list("Saturday, the 31st of July 1976") + ["<eos>"]
    tgt = ["<bos>"] + list("1976-07-31")
    captures = {
        "encoder.blocks.0.attention": torch.softmax(torch.randn(1, 2, 32, 32, generator=g), -1),
        "decoder.blocks.0.cross_attention": torch.softmax(torch.randn(1, 2, 11, 32,
                                                                      generator=g), -1),
    }
    fig = FIGURES["attention-maps"](captures, src, tgt)
    titles, suptitle = _texts(fig)
    assert "Saturday, the 31st of July 1976" in suptitle and "1976-07-31" in suptitle
    assert titles[0] == "encoder self-attention\nlayer 0, head 0"
    assert titles[3] == "cross-attention\nlayer 0, head 1"
    for ax in panel_axes(fig):
        assert ax.get_xlabel().startswith("key: ")
        assert ax.images[0].get_clim() == (0.0, 1.0)
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert len(labels) <= 24 and all(len(t) <= 6 for t in labels)
        assert all(t.get_rotation() == 0 for t in ax.get_xticklabels())
        assert all(t.get_fontsize() >= 7 for t in ax.get_xticklabels())
    assert panel_axes(fig)[0].get_ylabel().startswith("query: ")


def test_cost_legend_lists_only_visible_lines():
    fig = FIGURES["cost"](measure=False)
    for ax in panel_axes(fig):
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        curves = [tuple(line.get_ydata()) for line in ax.get_lines()]
        assert len(set(curves)) == len(curves) == len(labels)  # no line hides another
        assert sorted(n for label in labels for n in label.split(" = ")) == sorted(
            ["dot", "scaled_dot", "bilinear", "additive", "distance"])


def test_curves_with_one_record_have_integer_steps(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text(json.dumps({"step": 7, "loss": 2.5}) + "\n")
    fig = FIGURES["curves"](log)
    (ax,) = panel_axes(fig)
    assert ax.get_xlim() == (6.0, 8.0)
    assert all(float(t).is_integer() for t in ax.get_xticks())
    assert any("one record" in t.get_text() for t in ax.texts)
