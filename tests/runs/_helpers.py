"""Helpers of the run tests: a small model with every kind of state, saving it at a
step, a small run of three checkpoints, and counting manifest verifications."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attnkit.runs import container, record_best, retention, save_checkpoint

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    # BatchNorm brings an integer buffer (num_batches_tracked); dropout uses the RNG
    return nn.Sequential(nn.Linear(7, 11), nn.BatchNorm1d(11), nn.ReLU(), nn.Dropout(0.2),
                         nn.Linear(11, 3))  # fmt: skip


def save_at(root, model, step, **kw) -> Path:
    """``model`` saved as checkpoint ``step`` under ``root``, with no optimizer."""
    return save_checkpoint(root, model=model, optimizer=None, scheduler=None, config={},
                           train_state={"step": step}, **kw)  # fmt: skip


def count_verifications(monkeypatch) -> list[Path]:
    """Each manifest verification from now on, in order (the real check still runs):
    :mod:`attnkit.runs.container` verifies, and :mod:`.retention` calls it by its own
    name when it chooses the newest checkpoint that verifies."""
    calls, real = [], container.verify_checkpoint

    def counted(path, **kw):
        calls.append(Path(path))
        return real(path, **kw)

    for module in (container, retention):
        monkeypatch.setattr(module, "verify_checkpoint", counted)
    return calls


def three_step_run(run: Path) -> Path:
    """``run/checkpoints/step-1..3``: the golden run's model, its weights nudged apart per
    step; ``best.json`` names step 2. Returns ``run``."""
    from attnkit.decode.translator import load_translator

    tr = load_translator(GOLDEN)
    root = run / "checkpoints"
    for step in (1, 2, 3):
        with torch.no_grad():
            for p in tr.model.parameters():
                p.add_(0.01 * step)
        save_checkpoint(root, model=tr.model, optimizer=None, scheduler=None,
                        config=tr.run.description, train_state={"step": step},
                        tokenizer=tr.tokenizers)
    record_best(root, {"step": 2, "score": 1.0, "metric": "val_bleu"}, keep_best=1)
    return run
