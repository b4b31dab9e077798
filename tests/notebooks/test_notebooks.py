"""The notebooks of docs/notebooks run top to bottom (nbclient + ipykernel), stored clean.

Each runs in its own kernel, in a temporary working directory; a failing cell
fails the test with the cell's traceback. The verdict is the cells' own
checks: no clock takes part in it (a notebook takes longer beside other
processes than on idle cores), only a per-cell guard against a
hang, far above any cell's time under load.
"""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "docs" / "notebooks").glob("*.ipynb"))
HANG_GUARD_S = 900  # per cell; the longest trains for at most 60 s of its own clock


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["attention-scoring-functions.ipynb",
                                           "transformer-piece-by-piece.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat")
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient")
    pytest.importorskip("ipykernel", reason="notebook tests need ipykernel")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=HANG_GUARD_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert errors == []
