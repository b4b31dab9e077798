"""Where Trainer.fit shows progress: a bar on a terminal (a real pseudo-terminal), nothing in a
pipe, the book's live curves in a notebook (a real kernel)."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PROGRAM = textwrap.dedent("""
    import torch
    from attnkit import d2l
    from tests.d2l._line import Line, Regression

    torch.manual_seed(0)
    model = Regression(lr=0.1)
    d2l.Trainer(max_epochs=3).fit(model, Line())
    print("points:", len(model.board.data["train_loss"]))
""")
DISPLAY_CODES = (b"\x1b[2K", b"<Figure", b"<IPython", b"image/svg")


def environment():
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    env.pop("COLUMNS", None)
    return env


def run_on_a_terminal(script: Path) -> bytes:
    """Run ``script`` with stdin, stdout and stderr on a new pseudo-terminal; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen([sys.executable, str(script)], stdin=slave, stdout=slave,
                            stderr=slave, env=environment(), cwd=script.parent)
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=300) == 0, output.decode(errors="replace")
    return output


def test_on_a_terminal_fit_shows_a_progress_bar_with_epoch_and_loss(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(PROGRAM)
    output = run_on_a_terminal(script)
    text = output.decode(errors="replace")
    assert "epoch" in text and "3/3" in text and "train_loss=" in text and "val_loss=" in text
    assert "points: 6" in text
    assert not any(code in output for code in DISPLAY_CODES)


def test_piped_fit_prints_nothing_of_its_own(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text(PROGRAM)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, env=environment(),
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"points: 6\n" and done.stderr == b""


@pytest.mark.slow
def test_in_a_notebook_fit_draws_the_live_curves_and_no_bar(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient")
    pytest.importorskip("ipykernel", reason="notebook tests need ipykernel")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%matplotlib inline"),
                                         nbformat.v4.new_code_cell(PROGRAM)])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = nb.cells[1].outputs
    assert [o for o in outputs if o.output_type == "error"] == []
    figures = [o for o in outputs if o.output_type == "display_data"
               and "image/svg+xml" in o.get("data", {})]
    assert figures, [o.output_type for o in outputs]  # the book's board, drawn as SVG
    streams = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "points: 6" in streams and "epoch" not in streams  # no terminal bar
