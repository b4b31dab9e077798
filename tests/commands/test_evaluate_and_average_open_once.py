"""``evaluate --average`` and ``average`` open their run once and verify each checkpoint
once: the opened checkpoint when it is opened, each other averaged one as it is read.
Run in process on a small run of three checkpoints (steps 1-3, ``best.json``: step 2)."""

from pathlib import Path

import pytest

from attnkit.cli import main

from ..runs._helpers import count_verifications, three_step_run


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return three_step_run(tmp_path / "run")


def _evaluate(checkpoint: Path, tmp_path: Path, *more: str) -> int:
    (tmp_path / "src.txt").write_text("3 1 4\n2 7\n")
    (tmp_path / "ref.txt").write_text("4 1 3\n7 2\n")
    return main(["evaluate", "--checkpoint", str(checkpoint), "--src", str(tmp_path / "src.txt"),
                 "--ref", str(tmp_path / "ref.txt"), "--threads", "1", "--beam-size", "1",
                 "--json", *more])


@pytest.mark.parametrize("named, verified", [
    # the run folder opens its latest, step 3; the last two are steps 2 and 3, and step 3
    # is averaged as it was opened: two checkpoints, two verifications
    ("", ["step-000003", "step-000002"]),
    # RUN/best opens step 2; the last two are still steps 2 and 3
    ("best", ["step-000002", "step-000003"]),
])
def test_evaluate_average_verifies_each_checkpoint_once(run_dir, tmp_path, monkeypatch,
                                                       capsys, named, verified):
    calls = count_verifications(monkeypatch)
    assert _evaluate(run_dir / named if named else run_dir, tmp_path, "--average", "2") == 0
    out, err = capsys.readouterr()
    assert '"sentences": 2' in out
    assert "averaged 2 checkpoints: ['step-000002', 'step-000003']" in err
    assert [p.name for p in calls] == verified


def test_evaluate_without_average_verifies_the_opened_checkpoint_once(run_dir, tmp_path,
                                                                     monkeypatch, capsys):
    calls = count_verifications(monkeypatch)
    assert _evaluate(run_dir, tmp_path) == 0
    assert "averaged" not in capsys.readouterr().err
    assert [p.name for p in calls] == ["step-000003"]


def test_average_verifies_each_checkpoint_once(run_dir, tmp_path, monkeypatch, capsys):
    calls = count_verifications(monkeypatch)
    assert main(["average", "--checkpoint", str(run_dir), "--last", "3", "--out",
                 str(tmp_path / "avg")]) == 0
    assert "averaged 3 checkpoints (step-000001, step-000002, step-000003)" in \
        capsys.readouterr().out
    # step 3 when the run is opened, then steps 1 and 2 as they are averaged; writing the
    # averaged checkpoint verifies nothing
    assert [p.name for p in calls] == ["step-000003", "step-000001", "step-000002"]


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


@pytest.mark.parametrize("command, flag", [("evaluate", "--average"), ("average", "--last")])
def test_averaging_a_checkpoint_with_nothing_beside_it_names_the_flag(tmp_path, capsys,
                                                                      command, flag):
    """A checkpoint folder outside a run's checkpoints/ (the golden one, or the output of
    ``attnkit average``) has no step-N checkpoints beside it to average."""
    args = ["--out", str(tmp_path / "avg"), "--last", "2"] if command == "average" else []
    code = _evaluate(GOLDEN, tmp_path, "--average", "2") if command == "evaluate" else \
        main(["average", "--checkpoint", str(GOLDEN), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert f"attnkit {command}: error: {flag} 2: no step-N checkpoints beside {GOLDEN} to " \
           "average (it is not in a run's checkpoints/ folder); give --checkpoint a run " \
           "folder" in err
    assert not list(tmp_path.glob("avg/step-*"))  # nothing written
