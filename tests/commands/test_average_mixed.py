"""``average``, ``evaluate --average`` and the averaging of :mod:`attnkit.runs.run` refuse
checkpoints of different models or tokenizers in one line naming the field, even when
every tensor has the same name and shape (two heads or four; two vocabularies of one
size). Small runs of the golden model, in process."""

import json
import shutil
from pathlib import Path

import pytest

from attnkit.cli import main
from attnkit.runs import average_checkpoints, open_run

from ..runs._edit import edit_config, edit_json
from ..runs._helpers import three_step_run


def _four_heads(ckpt: Path) -> str:
    edit_config(ckpt, lambda meta: meta["model"].update(num_heads=4))  # 16 hiddens: 4 x 4
    return "model.num_heads: 2 vs 4"


def _other_vocabulary(ckpt: Path) -> str:
    """The same number of tokens, two of them swapped: another tokenizer."""
    def swap(tok: dict) -> None:
        t = tok["tokens"]
        t[4], t[5] = t[5], t[4]

    edit_json(ckpt, "tokenizer/tokenizer.json", swap)
    assert json.loads((ckpt / "config.json").read_text())["tokenizer"]["src_vocab_size"] == 24
    return "tokenizer/tokenizer.json: tokenizer files differ"


@pytest.fixture
def mixed_run(tmp_path, request) -> tuple[Path, str]:
    """A run of three checkpoints with a fourth beside them made from step 3 by
    ``request.param`` (its tensors unchanged); the field that should be named."""
    run = three_step_run(tmp_path / "run")
    head = Path(shutil.copytree(run / "checkpoints" / "step-000003",
                                run / "checkpoints" / "step-000004"))
    return run, request.param(head)


def _refusal(err: str, command: str, field: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"attnkit {command}: error: cannot average checkpoints of "
                               f"different models or tokenizers: {field} ("), lines[0]


@pytest.mark.parametrize("mixed_run", [_four_heads, _other_vocabulary], indirect=True)
def test_average_refuses_mixed_checkpoints_naming_the_field(mixed_run, tmp_path, capsys):
    run, field = mixed_run
    code = main(["average", "--checkpoint", str(run), "--last", "2", "--out",
                 str(tmp_path / "avg")])
    assert code == 2
    _refusal(capsys.readouterr().err, "average", field)
    assert not list(tmp_path.glob("avg/step-*"))  # nothing written


@pytest.mark.parametrize("mixed_run", [_four_heads, _other_vocabulary], indirect=True)
def test_evaluate_average_refuses_mixed_checkpoints_naming_the_field(mixed_run, tmp_path,
                                                                     capsys):
    run, field = mixed_run
    (tmp_path / "src.txt").write_text("3 1 4\n")
    (tmp_path / "ref.txt").write_text("4 1 3\n")
    code = main(["evaluate", "--checkpoint", str(run), "--src", str(tmp_path / "src.txt"),
                 "--ref", str(tmp_path / "ref.txt"), "--threads", "1", "--beam-size", "1",
                 "--average", "3"])
    assert code == 2
    _refusal(capsys.readouterr().err, "evaluate", field)


def test_averaging_two_runs_with_other_tokenizers_of_one_size_is_refused(tmp_path):
    """Through the library: a run's own average and :func:`average_checkpoints`."""
    first = three_step_run(tmp_path / "a") / "checkpoints" / "step-000003"
    second = three_step_run(tmp_path / "b") / "checkpoints" / "step-000003"
    _other_vocabulary(second)
    for average in (open_run(first).average, average_checkpoints):
        with pytest.raises(ValueError, match=r"different models or tokenizers: "
                                             r"tokenizer/tokenizer.json: tokenizer files"):
            average([first, second])
    # checkpoints of one model and tokenizer from two runs still average
    assert average_checkpoints([first, three_step_run(tmp_path / "c") / "checkpoints"
                                / "step-000003"]).keys() == open_run(first).weights().keys()
