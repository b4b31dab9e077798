"""A run as its users see it: opened once, then asked what it holds.

``open_run(path)`` takes what a user names — a run folder (its latest checkpoint), its
``checkpoints/`` folder, ``RUN/best`` (the best-scoring checkpoint, from
``best.json``) or a ``step-N`` folder — verifies that checkpoint against its manifest
once, and reads its description (``config.json``) and progress (``train_state.json``).
It verifies what translating reads (:data:`attnkit.runs.container.INFERENCE_FILES`);
the optimizer, scheduler and RNG states are verified only when :meth:`Run.restore`
reads them, so a translation neither hashes nor opens them.
The :class:`Run` it returns answers the rest without reading or verifying again: the
model config (the one source of truth for rebuilding the model), where its tokenizers
are, its weights, its training config, and the average of its last k checkpoints.
A training resumes through :func:`open_latest_run`: the newest checkpoint that verifies
(chosen by :mod:`attnkit.runs.retention`, which sets damaged ones aside), opened
without a second check.
Loading the tokenizers and reading its data's test split belong to the data layer
(:meth:`attnkit.data.tokenizer.TokenizerPair.load` of :attr:`Run.tokenizer_dir`,
:func:`attnkit.data.corpus.run_test_split`), which sits above this one.

**Readers beside a writer.** A training that keeps only its last checkpoints
(``keep_last``) deletes the one a reader may be reading. Deletion renames the folder
first, so a reader sees a whole checkpoint or none, never a changed one;
:func:`read_beside_writer` tells a checkpoint removed under a reader from a corrupt one
and reads the new latest (or best) again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from . import container
from .container import (
    MANIFEST,
    check_state_fits,
    latest_checkpoint,
    list_checkpoints,
    read_model_state,
    read_weights,
    restore_verified,
    step_of,
)
from .retention import best_checkpoint, latest_verified_checkpoint

__all__ = ["RUN_FORMAT_VERSION", "Run", "average_checkpoints", "open_latest_run", "open_run",
           "read_beside_writer", "read_paths", "resolve_checkpoint", "run_description"]

RUN_FORMAT_VERSION = 2  # what config.json says (1: before it carried a format_version)


@dataclass(frozen=True)
class Run:
    """One verified checkpoint of a run and what it says about the run
    (:func:`open_run`).

    ``model`` is the one source of truth for rebuilding the model;
    ``tokenizer`` describes ``tokenizer/`` (``{"kind", "shared"}``); ``train``
    is the nested training config, used only to resume and to find the run's data
    (``None`` for a run of format 1, which cannot be resumed by this release).
    """

    path: Path  # the checkpoint folder
    format_version: int
    model: Any  # a model config (attnkit.models.family)
    tokenizer: dict
    train: dict | None
    train_state: dict
    description: dict  # config.json as stored
    #: the files verified when it was opened (``None``: all; else these, as
    #: :func:`attnkit.runs.container.verify_checkpoint`'s ``only``)
    verified: tuple[str, ...] | None = None

    @property
    def model_config(self) -> Any:
        """The model's config (:attr:`model`)."""
        return self.model

    @property
    def training_config(self) -> dict | None:
        """The nested training config (:attr:`train`)."""
        return self.train

    @property
    def data(self) -> dict:
        """The ``[data]`` table the run was trained on (``{}`` when it has none)."""
        return dict((self.train or {}).get("data") or {})

    @property
    def tokenizer_dir(self) -> Path:
        """The folder holding the run's tokenizers (``TokenizerPair.load`` reads it)."""
        return self.path / "tokenizer"

    @property
    def weights_digest(self) -> str:
        """The SHA-256 of this checkpoint's weights (``model.safetensors``) as its manifest
        lists it, verified when the run was opened: what tells these weights from others
        without reading them."""
        manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
        return manifest["files"]["model.safetensors"]["sha256"]

    def weights(self) -> dict[str, torch.Tensor]:
        """The model tensors of this checkpoint (refused, naming the first, when one is not
        finite: :func:`attnkit.runs.container.check_finite_weights`)."""
        return read_weights(self.path)

    def restore(self, model: torch.nn.Module, *, optimizer=None, scheduler=None,
                restore_rng: bool = True) -> dict[str, Any]:
        """This checkpoint loaded into live objects, as
        :func:`attnkit.runs.container.load_checkpoint` does, without verifying again what
        was verified when it was opened: the state files that an optimizer, a scheduler
        or ``restore_rng`` needs are verified now when they were not then."""
        if self.verified is not None and (optimizer is not None or scheduler is not None
                                          or restore_rng):
            container.verify_checkpoint(self.path, only=container.STATE_FILES)
        return restore_verified(self.path, model=model, optimizer=optimizer,
                                scheduler=scheduler, restore_rng=restore_rng)

    def last(self, k: int) -> list[Path]:
        """The newest ``k`` complete checkpoints beside this one, oldest first."""
        return list_checkpoints(self.path.parent)[-k:]

    def average_last(self, k: int, *, progress=None) -> dict[str, torch.Tensor]:
        """The element-wise mean of the weights of :meth:`last` ``k`` (:meth:`average`)."""
        return self.average(self.last(k), progress=progress)

    def average(self, paths: list[Path], *, progress=None) -> dict[str, torch.Tensor]:
        """:func:`average_checkpoints` of ``paths`` (e.g. :meth:`last`), each verified as
        it is read except this run's own checkpoint, verified when it was opened."""
        def read(p: Path) -> dict[str, torch.Tensor]:
            return self.weights() if Path(p) == self.path else read_model_state(p)

        return _mean_of(list(paths), read, progress)


def open_run(path: str | Path) -> Run:
    """The run at ``path`` (a checkpoint, a run folder, its ``checkpoints/`` folder or
    ``RUN/best``; :func:`resolve_checkpoint`), its checkpoint verified once: the files
    translating reads (:data:`attnkit.runs.container.INFERENCE_FILES`) now, the
    training states when :meth:`Run.restore` reads them.

    Runs of format 1 (no ``format_version`` in ``config.json``) open for inference.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a corrupt checkpoint, a run format newer (or unknown) than this
            release reads (the message names both versions), or a model section that
            does not describe a model config.
    """
    only = container.INFERENCE_FILES
    return _read(container.verify_checkpoint(resolve_checkpoint(path), only=only), only)


def open_latest_run(root: str | Path, *, set_aside: bool = False
                    ) -> tuple[Run | None, list[str]]:
    """The run at the newest checkpoint under ``root`` that verifies, opened, and why
    each newer ``step-N`` was skipped (:func:`attnkit.runs.retention.latest_verified_checkpoint`,
    which also sets those aside as ``step-N.corrupt`` with ``set_aside``).

    Each checkpoint is verified once: the one chosen is opened without checking it
    again. Only a checkpoint that fails its manifest is skipped; one that verifies but
    describes a run this release cannot read is refused, as :func:`open_run` refuses
    it, and stays where it is (``(None, skipped)`` when no checkpoint verifies).

    Raises:
        ValueError: as :func:`open_run`, for the chosen checkpoint's description.
    """
    ckpt, skipped = latest_verified_checkpoint(root, set_aside=set_aside)
    return (None if ckpt is None else _read(ckpt)), skipped


def _read(p: Path, verified: tuple[str, ...] | None = None) -> Run:
    """The :class:`Run` of checkpoint ``p``, verified already (``verified``: only those
    files; ``None``: all): its description and progress, read without checking the
    manifest again."""
    from ..models.family import model_config_from_dict

    meta = json.loads((p / "config.json").read_text(encoding="utf-8"))
    version = meta.get("format_version", 1) if isinstance(meta, dict) else None
    if version == 1 and isinstance(meta, dict) and {"train", "model"} <= set(meta):
        model, tokenizer, train = _from_format_1(meta, p)
    elif version == RUN_FORMAT_VERSION:
        model, tokenizer, train = meta["model"], meta["tokenizer"], meta["train"]
    else:
        raise ValueError(
            f"{p / 'config.json'}: run format_version {version!r} cannot be read by this "
            f"attnkit, which reads run format_version {RUN_FORMAT_VERSION} (and 1)"
            + (" — written by a newer attnkit; upgrade to load it"
               if isinstance(version, int) and version > RUN_FORMAT_VERSION else ""))
    state = json.loads((p / "train_state.json").read_text(encoding="utf-8"))
    return Run(path=p, format_version=version,
               model=model_config_from_dict(model, where=f"{p / 'config.json'}: model"),
               tokenizer=tokenizer, train=train, train_state=state, description=meta,
               verified=verified)


def run_description(*, model_config: Any, tokenizer: dict, train: dict) -> dict:
    """The ``config.json`` of a checkpoint in the current run format."""
    from .._version import __version__
    from ..models.family import model_config_to_dict

    return {"format_version": RUN_FORMAT_VERSION, "attnkit_version": __version__,
            "model": model_config_to_dict(model_config), "tokenizer": dict(tokenizer),
            "train": train}


def _from_format_1(meta: dict, p: Path) -> tuple[dict, dict, None]:
    """(model dict, tokenizer dict, train) of a run written before ``format_version``,
    which named its preset (``model_class``) instead of its config class."""
    from ..models.family import family_of_preset

    train = meta["train"]
    cls = family_of_preset(meta.get("model_class"),
                           where=f"{p / 'config.json'}: model_class").config.__name__
    tokenizer = {"kind": train.get("tokenizer", "char"),
                 "shared": not (p / "tokenizer" / "tgt").is_dir()}
    return {"class": cls, **meta["model"]}, tokenizer, None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run folder (its latest checkpoint), a
    ``checkpoints/`` folder, a checkpoint directory itself, or ``RUN/best``: the
    best-scoring checkpoint of ``RUN`` (:func:`best_checkpoint`)."""
    p = Path(path)
    if p.name == "best" and not p.exists():
        return best_checkpoint(p.parent)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}{_removed_hint(p)}")
    if (p / MANIFEST).exists():
        return p
    for root in (p / "checkpoints", p):
        if root.is_dir():
            latest = latest_checkpoint(root)
            if latest is not None:
                return Path(latest)
    raise ValueError(f"{p} is neither a checkpoint nor a folder holding checkpoints "
                     "(expected manifest.json, or checkpoints/step-*/)")


def read_paths(path: str | Path) -> list[Path]:
    """What opening ``path`` reads, for a command that must not write over it: the path
    itself and the checkpoint folder it names (none where it names no checkpoint; the
    open reports that)."""
    try:
        return [Path(path), resolve_checkpoint(path)]
    except (OSError, ValueError):
        return [Path(path)]


def _removed_hint(p: Path) -> str:
    """For a ``step-N`` that is gone from a folder holding newer checkpoints: why."""
    step = step_of(p)
    held = [] if step is None else list_checkpoints(p.parent)
    if not held or step_of(held[-1]) <= step:
        return ""
    return (f" (a training that keeps only its last checkpoints, keep_last, removes older "
            f"ones; {p.parent} now holds {', '.join(c.name for c in held[-3:])})")


_T = TypeVar("_T")
_READ_ATTEMPTS = 10  # a writer replacing its latest checkpoint this often is saving nonstop


def _identity(ckpt: Path) -> tuple[int, int, int] | None:
    """What tells this checkpoint from one saved later under the same path (``None``:
    it is gone)."""
    try:
        st = os.stat(ckpt / MANIFEST)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _resolve_settled(named: Path) -> Path:
    """:func:`resolve_checkpoint`, asked again when it finds no checkpoint: a listing
    taken while the writer renames folders may miss both the old one and the new."""
    for _ in range(3):
        try:
            return resolve_checkpoint(named)
        except ValueError:
            time.sleep(0.02)
    return resolve_checkpoint(named)


def read_beside_writer(path: str | Path, read: Callable[[Path], _T]) -> _T:
    """``read(checkpoint)`` for the checkpoint ``path`` names (:func:`resolve_checkpoint`:
    a run folder, ``RUN/best`` or a checkpoint), safe while a training writes there.

    When ``read`` fails and the checkpoint is still on disk, unchanged, the error is
    the checkpoint's own and is raised as it is. When the checkpoint was removed under
    the reader (rotation, or ``best.json`` moving on), a run folder or ``RUN/best`` is
    resolved again and read anew; a checkpoint named by its own folder cannot be, and
    the error says that the running training removed it.

    Raises:
        FileNotFoundError: the named checkpoint was removed while it was read, or the
            newest one was replaced again at every one of several attempts.
        Exception: whatever ``read`` raises for a checkpoint that stayed in place.
    """
    named = Path(path)
    for _ in range(_READ_ATTEMPTS):
        ckpt = _resolve_settled(named)
        before = _identity(ckpt)
        try:
            return read(ckpt)
        except Exception:
            if before is not None and _identity(ckpt) == before:
                raise  # still there, unchanged: a fault of the checkpoint itself
            if ckpt == named:
                raise FileNotFoundError(
                    f"checkpoint {ckpt} was removed while it was being read: the training "
                    f"running on this run replaced it{_removed_hint(ckpt)}; name the run "
                    "folder (or RUN/best) to read whichever is newest") from None
    raise FileNotFoundError(
        f"{named}: its newest checkpoint was replaced by the running training each of "
        f"{_READ_ATTEMPTS} times it was read; read RUN/best, or a copy of a checkpoint")


def average_checkpoints(paths: list[str | Path], *, progress=None
                        ) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints.

    Floating-point tensors are summed in float64, divided by ``len(paths)`` and
    cast back to their dtype. Integer and boolean tensors (step counters,
    BatchNorm's ``num_batches_tracked``) cannot be averaged and are taken from
    the **last** path — pass paths oldest first, e.g. ``list_checkpoints(root)[-k:]``.
    ``progress(1)`` is called after each checkpoint is read.

    Raises:
        ValueError: if ``paths`` is empty, the checkpoints are of different models or
            tokenizers (naming the first field of ``config.json``'s model or tokenizer
            section, or the tokenizer file, that differs), or differ in keys or shapes
            (listing them).
    """
    return _mean_of(list(paths), read_model_state, progress)


def _mean_of(paths: list, read: Callable[[Any], dict[str, torch.Tensor]], progress
             ) -> dict[str, torch.Tensor]:
    """:func:`average_checkpoints` of the states ``read(path)`` gives."""
    if not paths:
        raise ValueError("paths must name at least one checkpoint, got none")
    states = []
    for p in paths:  # read one by one; progress(1) after each
        states.append(read(p))
        if progress is not None:
            progress(1)
    first = states[0]
    _check_same_kind(paths)
    for p, s in zip(paths[1:], states[1:], strict=True):
        check_state_fits(first, s, f"checkpoint {p} (compared with {paths[0]})")
    out: dict[str, torch.Tensor] = {}
    for k, ref in first.items():
        if ref.is_floating_point() or ref.is_complex():
            acc = torch.zeros(ref.shape, dtype=torch.complex128 if ref.is_complex()
                              else torch.float64)  # fmt: skip
            for s in states:
                acc += s[k].to(acc.dtype)
            out[k] = (acc / len(states)).to(ref.dtype)
        else:
            out[k] = states[-1][k].clone()
    return out




def _kind(ckpt: Path) -> dict[str, Any]:
    """What checkpoints averaged together must share, field by field: every field of the
    model and tokenizer sections of ``config.json``, and the SHA-256 of each tokenizer
    file in the manifest (two vocabularies of one size are told apart by their content).
    ``ckpt`` was verified as its weights were read."""
    meta = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    meta = meta if isinstance(meta, dict) else {}
    files = json.loads((ckpt / MANIFEST).read_text(encoding="utf-8"))["files"]
    out = {f"{section}.{k}": v for section in ("model", "tokenizer")
           for k, v in (meta.get(section) or {}).items()}
    out |= {n: info.get("sha256") for n, info in files.items() if n.startswith("tokenizer/")}
    return out


def _check_same_kind(paths: list) -> None:
    """Refuse to average checkpoints of different models or tokenizers, naming the first
    field that differs (weights of equal shapes may still mean different things: two
    heads or four, one vocabulary or another of the same size)."""
    first = _kind(Path(paths[0]))
    for p in paths[1:]:
        other = _kind(Path(p))
        for field in sorted(first.keys() | other.keys()):
            a, b = first.get(field, "(unset)"), other.get(field, "(unset)")
            if a != b:
                what = "tokenizer files differ" if field.startswith("tokenizer/") else \
                    f"{a!r} vs {b!r}"
                raise ValueError(f"cannot average checkpoints of different models or "
                                 f"tokenizers: {field}: {what} ({paths[0]} vs {p})")
