"""The tour of the five scoring functions on the book's toy example: one heat map per score
and the shapes and weights of each, as ``attnkit tour`` prints them."""

from PIL import Image

from attnkit.cli import main


def test_tour_writes_one_heatmap_per_score(tmp_path, capsys):
    assert main(["tour", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("dot", "scaled_dot", "bilinear", "additive", "distance"):
        png = tmp_path / f"scores-{name}.png"
        assert png.exists()
        img = Image.open(png)
        assert img.width > 200 and img.height > 200
        assert f"{name:<10} output (2, 1, 4)  weights (2, 1, 10)" in out
    assert "valid_lens [2, 6]" in out
