"""``attnkit average``: the average of the last checkpoints is one that loads."""



from attnkit.cli import main

from ._tatoeba import needs_data


@needs_data
def test_average_writes_a_loadable_checkpoint(run_dir, tmp_path, capsys):
    assert main(["average", "--checkpoint", str(run_dir), "--last", "3", "--out",
                 str(tmp_path / "avg")]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    assert main(["translate", "--checkpoint", str(tmp_path / "avg"), "Go."]) == 0


@needs_data
def test_an_average_of_fewer_checkpoints_than_asked_for_says_so(run_dir, tmp_path, capsys):
    """The run has 3 checkpoints: ``--last 10`` averages those 3 and says it had fewer."""
    assert main(["average", "--checkpoint", str(run_dir), "--last", "10", "--out",
                 str(tmp_path / "avg")]) == 0
    out = capsys.readouterr().out
    assert "averaged 3 checkpoints" in out
    assert "(the run has 3, fewer than --last 10 asked for)" in out
    assert main(["average", "--checkpoint", str(run_dir), "--last", "3", "--out",
                 str(tmp_path / "avg3")]) == 0
    assert "fewer than" not in capsys.readouterr().out
