"""``attnkit cost``: the cost of every score, and ``--hidden-size`` (no more ``-H``)."""

import pytest

from attnkit.cli import main


def test_cost_command_prints_all_scores(capsys):
    assert main(["cost", "--nq", "64", "--nk", "32", "--valid-lens", "1d"]) == 0
    out = capsys.readouterr().out
    for name in ("dot", "scaled_dot", "bilinear", "additive", "distance"):
        assert f"\n{name} " in out


def test_cost_hidden_size_flag_sets_h_and_short_h_is_gone(capsys):
    assert main(["cost", "--score", "additive", "--hidden-size", "16", "--nq", "8",
                 "--nk", "8"]) == 0
    assert "h=16" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["cost", "-H", "16"])
    assert e.value.code == 2
