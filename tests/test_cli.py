import subprocess
import sys

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


def test_cost_command_prints_all_scores(capsys):
    assert main(["cost", "--nq", "64", "--nk", "32", "--valid-lens", "1d"]) == 0
    out = capsys.readouterr().out
    for name in ("dot", "scaled_dot", "bilinear", "additive", "distance"):
        assert f"\n{name} " in out


def test_console_script_help_lists_commands():
    r = subprocess.run([sys.executable, "-m", "attnkit.cli", "--help"], capture_output=True,
                       text=True, check=True)
    for cmd in ("demo", "cost", "tour"):
        assert cmd in r.stdout


def test_bad_option_value_is_a_clear_error(capsys):
    try:
        main(["cost", "--valid-lens", "3d"])
    except SystemExit as e:
        assert e.code == 2
    assert "invalid choice: '3d'" in capsys.readouterr().err
