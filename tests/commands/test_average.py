"""``attnkit average``: the average of the last checkpoints is one that loads."""



from attnkit.cli import main

from ._tatoeba import needs_data


@needs_data
def test_average_writes_a_loadable_checkpoint(run_dir, tmp_path, capsys):
    assert main(["average", "--checkpoint", str(run_dir), "--last", "3", "--out",
                 str(tmp_path / "avg")]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    assert main(["translate", "--checkpoint", str(tmp_path / "avg"), "Go."]) == 0
