"""Every command that reads a run's weights refuses weights that are not finite, in one
line naming the checkpoint and its first non-finite tensor: translate, evaluate (alone and
averaging), export, explore and average. Such a checkpoint can no longer be written by
attnkit; these are written with the writer's check switched off, manifest and all."""

import pytest
import torch

from attnkit.cli import main
from attnkit.decode.translator import load_translator
from attnkit.runs import container
from attnkit.runs.retention import save_checkpoint

from .test_reliability import GOLDEN, one_error_line


def save_unchecked(root, translator, step: int):
    """``translator``'s model saved as checkpoint ``step`` as a release without the
    finite-weights check would have written it."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(container, "first_non_finite", lambda tensors: None, raising=False)
        return save_checkpoint(root, model=translator.model, optimizer=None, scheduler=None,
                               config=translator.run.description, train_state={"step": step},
                               tokenizer=translator.tokenizers)


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """``(run, the NaN checkpoint step-000800, its refusal)``: a finite step-000900
    follows it, so the run's latest and best-known names still load."""
    run = tmp_path_factory.mktemp("diverged") / "run"
    tr = load_translator(GOLDEN)
    name, weight = list(tr.model.named_parameters())[-1]  # not tied to another name
    finite = weight.clone()
    with torch.no_grad():
        weight.view(-1)[:5] = float("nan")
    ckpt = save_unchecked(run / "checkpoints", tr, 800)
    with torch.no_grad():
        weight.copy_(finite)
    save_unchecked(run / "checkpoints", tr, 900)
    refusal = (f"checkpoint {ckpt} has non-finite weights ({name}: 5 NaN of "
               f"{weight.numel()}); it cannot be used (the training that wrote it had "
               "diverged)")
    return run, ckpt, refusal


@pytest.mark.parametrize("command, argv", [
    ("translate", ["translate", "--checkpoint", "{ckpt}", "hello"]),
    ("evaluate", ["evaluate", "--checkpoint", "{ckpt}", "--src", "{text}", "--ref",
                  "{text}"]),
    ("evaluate", ["evaluate", "--checkpoint", "{run}", "--average", "2", "--src", "{text}",
                  "--ref", "{text}"]),
    ("explore", ["explore", "--checkpoint", "{ckpt}", "--src", "hello", "--out",
                 "{tmp}/view.html"]),
    ("export ctranslate2", ["export", "ctranslate2", "--checkpoint", "{ckpt}", "--out",
                            "{tmp}/ct2"]),
    ("average", ["average", "--checkpoint", "{run}", "--last", "2", "--out", "{tmp}/avg"]),
])
def test_commands_refuse_non_finite_weights_in_one_line(diverged, tmp_path, capsys, command,
                                                        argv):
    run, ckpt, refusal = diverged
    text = tmp_path / "text.txt"
    text.write_text("hello\n")
    if command == "export ctranslate2":
        pytest.importorskip("ctranslate2")
    fill = dict(ckpt=ckpt, run=run, text=text, tmp=tmp_path)
    code = main([a.format(**fill) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and not out.strip(), out
    assert one_error_line(err, command) == f"attnkit {command}: error: {refusal}"
    written = [p for p in tmp_path.rglob("*")  # the lock file of an output folder stays
               if p.is_file() and p not in (text, tmp_path / "avg" / ".lock")]
    assert not written, written


def test_the_finite_checkpoint_beside_it_still_translates(diverged, capsys):
    run, _, _ = diverged
    assert main(["translate", "--checkpoint", str(run), "hello"]) == 0
    assert capsys.readouterr().out.strip()
