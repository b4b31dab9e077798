"""``attnkit demo``: trains, translates and draws end to end on a tiny budget."""



from attnkit.cli import main


def test_demo_runs_end_to_end_on_a_tiny_budget(tmp_path, capsys):
    """A count of steps, not seconds: the same run on an idle and on a busy machine."""
    assert main(["demo", "--out", str(tmp_path), "--max-steps", "3", "--heldout", "12",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "trained 3 steps in " in out and "(max_steps = 3 reached)" in out
    assert out.strip().splitlines()[-1].startswith("exact match: ")
    assert (tmp_path / "attention-maps.png").exists()
    assert (tmp_path / "attention-explorer.html").exists()
