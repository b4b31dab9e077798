"""``attnkit explore`` (and ``plot attention-maps``) from a checkpoint."""



from attnkit.cli import main

from ._tatoeba import needs_data


@needs_data
def test_explore_and_attention_map_plot_from_a_checkpoint(run_dir, tmp_path, capsys):
    html = tmp_path / "view.html"
    assert main(["explore", "--checkpoint", str(run_dir), "--src", "I am a teacher.",
                 "--out", str(html)]) == 0
    text = html.read_text()
    assert "teacher" in text and "http://" not in text and "https://" not in text
    assert main(["plot", "attention-maps", "--checkpoint", str(run_dir), "--src", "Go.",
                 "--out", str(tmp_path), "--format", "png"]) == 0
    assert (tmp_path / "attention-maps.png").stat().st_size > 10_000
