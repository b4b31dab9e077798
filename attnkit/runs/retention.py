"""Which checkpoints a run keeps: rotation (``keep_last``), the best (``best.json``),
and what interrupted saves, rotations and damaged checkpoints leave behind.

**The best checkpoints.** ``<root>/best.json`` lists the checkpoints kept for their
validation scores, best first: ``[{"step": N, "score": S, "metric": "val_bleu"}, ...]``
(:func:`record_best`). Rotation never deletes a checkpoint listed there, and
:func:`attnkit.runs.run.resolve_checkpoint` reads ``RUN/best`` as the first of them.
Nothing else in ``<root>`` but the ``step-N`` folders is read as a checkpoint.

**Readers beside a writer.** Deletion renames the folder first (``step-N.deleting``),
so a reader sees a whole checkpoint or none, never a changed one
(:func:`attnkit.runs.run.read_beside_writer`).

**Damaged head checkpoints.** A run resumes from the newest checkpoint that verifies;
anything named ``step-N`` above it (corrupt, without a manifest, not a folder) is set
aside as ``step-N.corrupt`` (:func:`latest_verified_checkpoint`), so that the step can
be saved again. When none verifies, nothing is moved (training refuses to start).
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .._io import is_own_folder, json_bytes, write_atomic
from .._values import check_finite, check_nonnegative_int, check_positive_int
from .container import (
    MANIFEST,
    encode_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    step_of,
    verify_checkpoint,
    write_checkpoint,
)

__all__ = [
    "BEST",
    "best_checkpoint",
    "clean_leftovers",
    "latest_verified_checkpoint",
    "read_best",
    "record_best",
    "save_checkpoint",
    "trim_best",
]

BEST = "best.json"  # beside the step-N folders: the checkpoints kept for their scores


# --------------------------------------------------------------------------- saving
def save_checkpoint(
    dir: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    config: dict,
    train_state: dict,
    tokenizer: Any | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write a checkpoint ``<dir>/step-NNNNNN`` atomically and return its path.

    Args:
        dir: the root folder holding all checkpoints of a run (created if needed).
        model: its ``state_dict()`` is saved (tied weights are stored once per key).
        optimizer: any ``torch.optim`` optimizer, or ``None``.
        scheduler: anything with ``state_dict()``/``load_state_dict()`` (an LR
            scheduler), or ``None``.
        config: JSON-serializable model/run configuration.
        train_state: JSON-serializable progress; must hold ``"step"`` (int >= 0),
            which names the directory. Tuples come back as lists.
        tokenizer: an object with ``save(directory)`` (see
            :mod:`attnkit.data.tokenizer`), written to ``tokenizer/``.
        keep_last: after saving, delete all but the newest ``keep_last``
            complete checkpoints under ``dir`` (``None``: keep all).

    Raises:
        ValueError: if ``train_state["step"]`` is missing or negative, or
            ``keep_last < 1``.
        TypeError: if ``config`` / ``train_state`` are not JSON-serializable.
        FileExistsError: if a complete checkpoint of that step already exists.
    """
    step = train_state.get("step") if isinstance(train_state, dict) else None
    check_nonnegative_int("train_state['step']", step)
    check_positive_int("keep_last", keep_last, allow_none=True)
    payload = encode_checkpoint(model, optimizer, scheduler, config=config,
                                train_state=train_state)
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    if keep_last is not None and keep_last >= 2 and not (root / f"step-{step:06d}").exists():
        _rotate(root, keep_last - 1)  # free the space before it is needed; others remain
    try:
        final = write_checkpoint(root, step, payload, tokenizer)
    except OSError as e:
        shutil.rmtree(root / f"step-{step:06d}.tmp", ignore_errors=True)
        if e.errno != errno.ENOSPC:
            raise
        raise OSError(errno.ENOSPC, f"no space left on the device while writing checkpoint "
                                    f"step {step} under {root}; the partial copy was removed; "
                                    f"the last complete checkpoint is "
                                    f"{latest_checkpoint(root) or 'none'}") from None
    if keep_last is not None:
        _rotate(root, keep_last)
    return final


def _rotate(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints under ``root``, and those
    listed in ``best.json``."""
    protect = {e["step"] for e in read_best(root)}
    for old in list_checkpoints(root)[:-keep] if keep > 0 else list_checkpoints(root):
        if step_of(old) in protect:
            continue
        trash = old.with_name(old.name + ".deleting")
        os.replace(old, trash)  # no longer a checkpoint before any file goes
        shutil.rmtree(trash)


# ------------------------------------------------------------ the best checkpoints
def _ranked(entries: list[dict]) -> list[dict]:
    """Best score first; of equal scores, the earlier step."""
    return sorted(entries, key=lambda e: (-e["score"], e["step"]))


def read_best(root: str | Path) -> list[dict]:
    """The entries of ``root/best.json``, best first (``[]`` when there is none).

    Raises:
        ValueError: naming the file, when it is not a list of ``{"step": int >= 0,
            "score": finite number, "metric": str}``.
    """
    path = Path(root) / BEST
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from None
    ok = isinstance(entries, list) and all(
        isinstance(e, dict) and type(e.get("step")) is int and e["step"] >= 0
        and type(e.get("score")) in (int, float) and math.isfinite(e["score"])
        and isinstance(e.get("metric"), str) for e in entries)
    if not ok:
        raise ValueError(f"{path}: expected a list of {{\"step\": int >= 0, \"score\": "
                         f"number, \"metric\": str}} entries, got {str(entries)[:200]}")
    return _ranked(entries)


def _write_best(root: Path, entries: list[dict]) -> None:
    path = root / BEST
    if entries:
        write_atomic(path, json_bytes(_ranked(entries)))
    elif path.exists():
        path.unlink()


def record_best(root: str | Path, entry: dict, *, keep_best: int,
                keep_last: int | None = None) -> list[dict]:
    """Add ``entry`` (``{"step", "score", "metric"}``, its checkpoint already saved) to
    ``root/best.json``, which keeps the ``keep_best`` best; a checkpoint that falls out is
    deleted unless it is among the newest ``keep_last`` (``None``: nothing is deleted).
    Returns the new list, best first. ``best.json`` is replaced atomically before any
    checkpoint is deleted, so a crash in between leaves no entry without its folder.
    A score that is not a finite number is never ranked (:func:`_check_score`)."""
    check_positive_int("keep_best", keep_best)
    _check_score(entry)
    root = Path(root)
    if not (root / f"step-{entry['step']:06d}" / MANIFEST).is_file():
        raise ValueError(f"record_best: no checkpoint of step {entry['step']} under {root}; "
                         "save it first")
    entries = [e for e in read_best(root) if e["step"] != entry["step"]]
    best = _ranked([*entries, dict(entry)])[:keep_best]
    _write_best(root, best)
    if keep_last is not None:
        _rotate(root, keep_last)
    return best


def _check_score(entry: dict) -> None:
    """Refuse a ``best.json`` entry whose score is not a finite number: a NaN compares
    false with everything and would rank anywhere, and an infinity above every real one.

    Raises:
        ValueError: naming the step and the score.
    """
    score = entry.get("score")
    check_finite(f"record_best: the score of step {entry.get('step')} (ranked in {BEST})", score)


def trim_best(root: str | Path, *, keep_best: int, last_step: int) -> list[dict]:
    """``root/best.json`` made to agree with the checkpoints on disk when a run starts or
    resumes at ``last_step``: entries without their folder (set aside as corrupt) or past
    ``last_step`` are dropped, and only the ``keep_best`` best stay (``keep_best`` may
    have been lowered; the checkpoints dropped go at the next rotation). Returns the list,
    best first."""
    root = Path(root)
    stored = read_best(root)
    on_disk = {step_of(p) for p in list_checkpoints(root)}
    best = [e for e in stored if e["step"] in on_disk and e["step"] <= last_step][:keep_best]
    if best != stored:
        _write_best(root, best)
    return best


def best_checkpoint(run: str | Path) -> Path:
    """The checkpoint with the best validation score of a run folder (or of its
    ``checkpoints/`` folder), the first of ``best.json`` that is on disk.

    Raises:
        FileNotFoundError: ``run`` does not exist.
        ValueError: the run has no ``best.json`` (naming the path), or none of the
            checkpoints it lists is complete.
    """
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"checkpoint not found: {run / 'best'} ({run} is not a folder)")
    for root in (run / "checkpoints", run):
        entries = read_best(root)
        for e in entries:
            p = root / f"step-{e['step']:06d}"
            if (p / MANIFEST).is_file():
                return p
        if entries:
            raise ValueError(f"{root / BEST} lists steps {[e['step'] for e in entries]}, none "
                             "of which is a complete checkpoint")
    raise ValueError(f"{run / 'best'}: {run} has no best checkpoint (no checkpoints/{BEST}): "
                     "train with keep_best >= 1 and eval_every > 0")


def _step_entries(root: str | Path) -> list[Path]:
    """Everything under ``root`` named ``step-N`` (complete or not, folder or not), oldest
    first."""
    r = Path(root)
    if not r.is_dir():
        return []
    found = [(step, p) for p in r.iterdir() if (step := step_of(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_verified_checkpoint(root: str | Path, *, set_aside: bool = False
                               ) -> tuple[Path | None, list[str]]:
    """The newest checkpoint under ``root`` that passes :func:`verify_checkpoint`, and
    why each newer ``step-N`` was skipped: corrupt, without ``manifest.json`` (which
    :func:`list_checkpoints` does not count), or not a folder at all.

    With ``set_aside``, and only when one verifies, each skipped one is renamed
    ``step-N.corrupt`` (kept for inspection, never loaded). It has to go: the resumed run
    saves that step again, and a name already taken would stop every later save. When
    none verifies, nothing is moved: a run with no checkpoint to resume from is the
    caller's to refuse, not to start again from step 0 silently."""
    skipped: list[tuple[Path, str]] = []
    for ckpt in reversed(_step_entries(root)):
        try:
            if not is_own_folder(ckpt):
                raise ValueError(f"not a checkpoint (not a folder, or a link): {ckpt}")
            found = verify_checkpoint(ckpt)
        except ValueError as e:
            skipped.append((ckpt, str(e)))
            continue
        if set_aside:
            return found, [f"{why}; moved to {_set_aside(c).name}" for c, why in skipped]
        return found, [why for _, why in skipped]
    return None, [why for _, why in skipped]


def _set_aside(ckpt: Path) -> Path:
    """``ckpt`` renamed ``step-N.corrupt`` (``.corrupt1``, … when that is taken)."""
    aside, n = ckpt.with_name(f"{ckpt.name}.corrupt"), 1
    while aside.exists() or aside.is_symlink():
        aside, n = ckpt.with_name(f"{ckpt.name}.corrupt{n}"), n + 1
    os.replace(ckpt, aside)
    return aside


def clean_leftovers(root: str | Path) -> list[Path]:
    """Remove what interrupted saves and rotations left under ``root`` (``step-N.tmp``,
    ``step-N.deleting``); returns the removed paths."""
    r = Path(root)
    if not r.is_dir():
        return []
    gone = [d for d in r.iterdir() if is_own_folder(d)
            and d.suffix in (".tmp", ".deleting") and step_of(d.with_suffix("")) is not None]
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    return gone


