"""A run's metrics as TensorBoard events: a mirror of ``metrics.jsonl``.

``metrics.jsonl`` stays the record of a run; with ``[run] tensorboard = true`` each of
its records is also written, number by number, as a scalar event under
``out_dir/tensorboard/``, at the record's step:

* a training record's ``loss``, ``lr``, ``tokens_per_s``, ``grad_norm``, … as
  ``train/loss``, ``train/lr``, …;
* a validation record's ``val_loss``, ``val_bleu`` (``val_exact_match`` for the dates
  corpus), … as ``valid/loss``, ``valid/bleu``, ….

A tag gets one value per step: a second record of a step already written (the final
validation of a run that validated at its last step) is left out. A resumed run writes
into the same folder, in a new event file that starts by telling TensorBoard to forget
the events of the steps after the checkpoint it resumed from (those of the interrupted
run, which the resumed one trains again), so the folder shows one value per step.

TensorBoard keeps scalars in float32. The ``tensorboard`` package is optional
(``pip install "attnkit[tensorboard]"``); :func:`require_tensorboard` says so in one
line, before a run starts.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FOLDER", "BoardMirror", "require_tensorboard", "tag_of"]

FOLDER = "tensorboard"  # under the run folder
_INSTALL = 'pip install "attnkit[tensorboard]"'


def require_tensorboard():
    """The event writer (``torch.utils.tensorboard.SummaryWriter``), or an ``OSError``
    saying how to install the package it needs."""
    try:
        import tensorboard  # noqa: F401  (torch's writer needs it; say so before a run)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OSError("tensorboard = true (--tensorboard) needs the tensorboard package, "
                      f"which is not installed: {_INSTALL}") from None
    return SummaryWriter


def tag_of(key: str) -> str:
    """The TensorBoard tag of a ``metrics.jsonl`` key: ``val_bleu`` -> ``valid/bleu``,
    ``loss`` -> ``train/loss``."""
    return f"valid/{key[4:]}" if key.startswith("val_") else f"train/{key}"


class BoardMirror:
    """Writes the numbers of ``metrics.jsonl`` records to ``out_dir/tensorboard/``.

    ``first_step`` is the first step this writer may write: events of that step and
    later ones left in the folder by an earlier, interrupted writer are purged when
    TensorBoard reads the folder.
    """

    def __init__(self, out_dir: str | Path, *, first_step: int) -> None:
        writer = require_tensorboard()
        self.folder = Path(out_dir) / FOLDER
        self._writer = writer(str(self.folder), purge_step=first_step)
        self._written: dict[str, int] = {}  # tag -> the last step written

    def add(self, record: dict) -> None:
        """Write each number of ``record`` (a ``metrics.jsonl`` record with its ``step``)."""
        step = record["step"]
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            tag = tag_of(key)
            if self._written.get(tag, -1) >= step:
                continue  # one value per step: a repeated record is left out
            self._written[tag] = step
            self._writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
