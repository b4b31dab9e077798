"""Training checkpoints that load without executing code and never exist half-written.

A checkpoint is one directory ``<root>/step-000123`` (the step zero-padded to six
digits, more if needed)::

    model.safetensors     model.state_dict() tensors
    state.safetensors     every tensor of the optimizer / scheduler / RNG states
    state.json            the rest of those states; tensors appear as {"__tensor__": key}
    train_state.json      the caller's train_state (step, epoch, data-iterator state, …)
    config.json           the run's description (see :func:`read_run`)
    tokenizer/            the tokenizer's own files, if one was given
    manifest.json         size and SHA-256 of every file above; written last

**No pickle.** Tensors go to ``safetensors`` files, everything else to JSON, so
loading a checkpoint from an untrusted source cannot run code (``torch.load``
on a pickle can). Nested optimizer states are flattened: each tensor is stored
under a dotted key (``optimizer.state.0.exp_avg``) and the JSON structure holds
a ``{"__tensor__": key}`` reference in its place; tuples, dicts with non-string
keys (the optimizer's integer parameter ids), numpy arrays and non-finite
floats have their own small JSON markers so that everything round-trips exactly.

**The best checkpoints.** ``<root>/best.json`` lists the checkpoints kept for their
validation scores, best first: ``[{"step": N, "score": S, "metric": "val_bleu"}, ...]``
(:func:`record_best`). Rotation never deletes a checkpoint listed there, and
:func:`resolve_checkpoint` reads ``RUN/best`` as the first of them. Nothing else in
``<root>`` but the ``step-N`` folders is read as a checkpoint.

**Atomic.** Files are written to temporary names and moved into place with
``os.replace``; the whole checkpoint is first written as ``step-000123.tmp`` and
renamed to ``step-000123`` only after ``manifest.json`` is in it. A crash leaves
at worst a ``.tmp`` directory, which :func:`latest_checkpoint` ignores; a
directory without a manifest is never treated as a checkpoint. A run resumes from the
newest checkpoint that verifies; anything named ``step-N`` above it (corrupt, without a
manifest, not a folder) is set aside as ``step-N.corrupt``
(:func:`latest_verified_checkpoint`), so that the step can be saved again.

**Readers beside a writer.** A training that keeps only its last checkpoints
(``keep_last``) deletes the one a reader may be reading. Deletion renames the folder
first, so a reader sees a whole checkpoint or none, never a changed one;
:func:`read_beside_writer` tells a checkpoint removed under a reader from a corrupt one
and reads the new latest (or best) again.

**Exact resumption.** Besides model, optimizer and scheduler, the RNG states of
Python's ``random``, numpy's global generator, torch's CPU generator and (when
CUDA is available) every CUDA device's generator are saved and restored, so a
resumed run continues bitwise-identically to one that was never interrupted
(given deterministic kernels). Put the data iterator's ``state_dict()`` into
``train_state``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .._io import read_json, write_atomic
from .._values import check_positive_int

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "RUN_FORMAT_VERSION",
    "RunInfo",
    "read_run",
    "resolve_checkpoint",
    "run_description",
    "BEST",
    "average_checkpoints",
    "best_checkpoint",
    "clean_leftovers",
    "latest_checkpoint",
    "latest_verified_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_best",
    "read_beside_writer",
    "read_model_state",
    "record_best",
    "save_checkpoint",
    "trim_best",
    "verify_checkpoint",
]

FORMAT_VERSION = 1  # the container: files, manifest, state encoding
RUN_FORMAT_VERSION = 2  # what config.json says (1: before it carried a format_version)
MANIFEST = "manifest.json"
BEST = "best.json"  # beside the step-N folders: the checkpoints kept for their scores
_NAME = re.compile(r"^step-(\d+)$")
_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__")


# --------------------------------------------------------------------------- files
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)




def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------- nested state <-> JSON + tensors
def _flatten(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able copy of ``obj``; tensors and arrays are moved into ``tensors``."""
    if isinstance(obj, (torch.Tensor, np.ndarray)) and key in tensors:
        raise ValueError(f"two tensors of the state map to the same key {key!r}")
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, (bool, str, type(None))):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else {"__float__": repr(float(obj))}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) for k in obj) and not (
            len(obj) == 1 and next(iter(obj)) in _MARKERS
        )
        if plain:
            return {k: _flatten(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_flatten(k, f"{key}.k{i}", tensors),
                               _flatten(v, f"{key}.{k}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}  # fmt: skip
    raise TypeError(f"cannot store {key!r}: unsupported type {type(obj).__name__}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_flatten`."""
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if len(obj) == 1:
            ((mark, val),) = obj.items()
            if mark == "__tensor__":
                return tensors[val]
            if mark == "__ndarray__":
                return tensors[val].numpy().copy()
            if mark == "__tuple__":
                return tuple(_unflatten(v, tensors) for v in val)
            if mark == "__items__":
                return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in val}
            if mark == "__float__":
                return float(val)
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------- RNG states
def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["torch_cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch_cpu"])
    cuda = states.get("torch_cuda")
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all(cuda[:n])


# ------------------------------------------------------------------------- listing
def _step_of(path: Path) -> int | None:
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (name ``step-N`` and a manifest), oldest first.

    ``.tmp`` directories (interrupted saves) and directories without
    ``manifest.json`` are ignored. A missing ``root`` gives ``[]``.
    """
    r = Path(root)
    if not r.is_dir():
        return []
    found = [
        (step, p)
        for p in r.iterdir()
        if p.is_dir() and (step := _step_of(p)) is not None and (p / MANIFEST).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or ``None``."""
    found = list_checkpoints(root)
    return found[-1] if found else None


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
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"train_state['step'] must be an int >= 0, got {step!r}")
    if keep_last is not None and (not isinstance(keep_last, int) or keep_last < 1):
        raise ValueError(f"keep_last must be None or an int >= 1, got {keep_last!r}")
    payload = _payload(model, optimizer, scheduler, config=config, train_state=train_state)
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    if keep_last is not None and keep_last >= 2 and not (root / f"step-{step:06d}").exists():
        _rotate(root, keep_last - 1)  # free the space before it is needed; others remain
    try:
        final = _write_directory(root, step, payload, tokenizer)
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
        if _step_of(old) in protect:
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
        write_atomic(path, _json_bytes(_ranked(entries)))
    elif path.exists():
        path.unlink()


def record_best(root: str | Path, entry: dict, *, keep_best: int,
                keep_last: int | None = None) -> list[dict]:
    """Add ``entry`` (``{"step", "score", "metric"}``, its checkpoint already saved) to
    ``root/best.json``, which keeps the ``keep_best`` best; a checkpoint that falls out is
    deleted unless it is among the newest ``keep_last`` (``None``: nothing is deleted).
    Returns the new list, best first. ``best.json`` is replaced atomically before any
    checkpoint is deleted, so a crash in between leaves no entry without its folder."""
    check_positive_int("keep_best", keep_best)
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


def trim_best(root: str | Path, *, keep_best: int, last_step: int) -> list[dict]:
    """``root/best.json`` made to agree with the checkpoints on disk when a run starts or
    resumes at ``last_step``: entries without their folder (set aside as corrupt) or past
    ``last_step`` are dropped, and only the ``keep_best`` best stay (``keep_best`` may
    have been lowered; the checkpoints dropped go at the next rotation). Returns the list,
    best first."""
    root = Path(root)
    stored = read_best(root)
    on_disk = {_step_of(p) for p in list_checkpoints(root)}
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


def _payload(model, optimizer, scheduler, *, config: dict, train_state: dict
             ) -> dict[str, bytes]:
    """The bytes of every file of a checkpoint but the tokenizer's and the manifest."""
    payload: dict[str, bytes] = {}
    for name, obj in (("config", config), ("train_state", train_state)):
        if not isinstance(obj, dict):
            raise TypeError(f"{name} must be a dict, got {type(obj).__name__}")
        try:
            payload[f"{name}.json"] = _json_bytes(obj)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be JSON-serializable (finite floats): {e}") from e
    model_tensors = {k: v.detach().cpu().contiguous().clone() for k, v in
                     model.state_dict().items()}  # fmt: skip
    payload["model.safetensors"] = st_save(model_tensors, metadata={"format": "pt"})
    state_tensors: dict[str, torch.Tensor] = {}
    state = {
        "optimizer": None if optimizer is None else _flatten(
            optimizer.state_dict(), "optimizer", state_tensors),
        "scheduler": None if scheduler is None else _flatten(
            scheduler.state_dict(), "scheduler", state_tensors),
        "rng": _flatten(_rng_states(), "rng", state_tensors),
    }  # fmt: skip
    payload["state.json"] = _json_bytes(state)
    payload["state.safetensors"] = st_save(state_tensors, metadata={"format": "pt"})
    return payload


def _write_directory(root: Path, step: int, payload: dict[str, bytes], tokenizer) -> Path:
    """``root/step-N`` written as ``step-N.tmp``, manifest last, then renamed into place."""
    final = root / f"step-{step:06d}"
    if final.exists():
        raise FileExistsError(f"checkpoint already exists: {final}")
    tmp = root / f"{final.name}.tmp"
    if tmp.exists():  # left over from an interrupted save of the same step
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, data in payload.items():
        write_atomic(tmp / name, data)
    if tokenizer is not None:
        tokenizer.save(tmp / "tokenizer")
    files = {
        p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(tmp.rglob("*"))
        if p.is_file()
    }
    manifest = {"format_version": FORMAT_VERSION, "step": step, "files": files}
    write_atomic(tmp / MANIFEST, _json_bytes(manifest))
    _fsync_dir(tmp)
    os.replace(tmp, final)
    _fsync_dir(root)
    return final


# -------------------------------------------------------------------------- loading
def _listed_files(p: Path, manifest: dict) -> dict[str, dict]:
    """The manifest's files, each name a relative path inside ``p`` (else corrupt)."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ValueError(f"checkpoint {p} is corrupt: {MANIFEST} lists no files")
    for name, info in files.items():
        parts = Path(name).parts
        if (not parts or Path(name).is_absolute() or ".." in parts or "\\" in name
                or not isinstance(info, dict) or not isinstance(info.get("bytes"), int)):
            raise ValueError(f"checkpoint {p} is corrupt: {MANIFEST} names {name!r}, which is "
                             "not a file inside the checkpoint")
    return files


def _unlisted(p: Path, files: dict) -> list[str]:
    """Files or links in ``p`` that the manifest does not list (nothing else may be read)."""
    out = set()
    for f in p.rglob("*"):
        name = f.relative_to(p).as_posix()
        if f.is_symlink() or (f.is_file() and name != MANIFEST and name not in files):
            out.add(name)
    return sorted(out)


def _verified(path: str | Path) -> Path:
    """Check checkpoint ``path`` against its manifest before any of its files is opened:
    every listed file inside the directory, present, of the listed size and SHA-256;
    no other file or link."""
    p = Path(path)
    manifest = read_json(p / MANIFEST, format_version=FORMAT_VERSION, missing=ValueError(
        f"not a complete checkpoint (no {MANIFEST}): {p}"))
    files = _listed_files(p, manifest)
    bad = [f"{name} (not listed in {MANIFEST})" for name in _unlisted(p, files)]
    for name, info in files.items():
        f = p / name
        if f.is_symlink() or not f.is_file():
            bad.append(f"{name} (missing)")
        elif f.stat().st_size != info["bytes"] or _sha256(f) != info.get("sha256"):
            bad.append(f"{name} (size or sha256 differs)")
    if bad:
        raise ValueError(f"checkpoint {p} is corrupt: {', '.join(bad)}")
    return p


def verify_checkpoint(path: str | Path) -> Path:
    """``path`` if it is a complete checkpoint whose files match its manifest.

    Raises:
        ValueError: naming each file that is missing, unlisted or differs.
    """
    return _verified(path)


def _step_entries(root: str | Path) -> list[Path]:
    """Everything under ``root`` named ``step-N`` (complete or not, folder or not), oldest
    first."""
    r = Path(root)
    if not r.is_dir():
        return []
    found = [(step, p) for p in r.iterdir() if (step := _step_of(p)) is not None]
    return [p for _, p in sorted(found)]


def latest_verified_checkpoint(root: str | Path, *, set_aside: bool = False
                               ) -> tuple[Path | None, list[str]]:
    """The newest checkpoint under ``root`` that passes :func:`verify_checkpoint`, and
    why each newer ``step-N`` was skipped: corrupt, without ``manifest.json`` (which
    :func:`list_checkpoints` does not count), or not a folder at all.

    With ``set_aside``, a skipped one is renamed ``step-N.corrupt`` (kept for
    inspection, never loaded). It has to go: the resumed run saves that step again, and
    a name already taken would stop every later save."""
    skipped = []
    for ckpt in reversed(_step_entries(root)):
        try:
            if not ckpt.is_dir():
                raise ValueError(f"not a checkpoint (not a folder): {ckpt}")
            return _verified(ckpt), skipped
        except ValueError as e:
            reason = str(e)
            if set_aside:
                reason += f"; moved to {_set_aside(ckpt).name}"
            skipped.append(reason)
    return None, skipped


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
    gone = [d for d in r.iterdir() if d.is_dir() and not d.is_symlink()
            and d.suffix in (".tmp", ".deleting") and _NAME.match(d.stem)]
    for d in gone:
        shutil.rmtree(d, ignore_errors=True)
    return gone


def read_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The model tensors of checkpoint ``path`` (verified against its manifest)."""
    p = _verified(path)
    return st_load((p / "model.safetensors").read_bytes())


def _check_fits(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], where: str
) -> None:
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [
        f"{k}: {where} {tuple(given[k].shape)} vs expected {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(given))
        if tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{where} is incompatible: missing keys {missing}; unexpected keys {unexpected}; "
            f"shape mismatches {shapes}"
        )


def load_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` into live objects.

    Args:
        path: a checkpoint directory (e.g. from :func:`latest_checkpoint`).
        model: receives the weights (strict: keys and shapes must match).
        optimizer: receives the optimizer state when given.
        scheduler: receives the scheduler state when given.
        restore_rng: also restore the Python / numpy / torch RNG states.

    Returns:
        ``{"train_state": dict, "config": dict, "step": int, "path": Path}``.
        The run's description and tokenizers are read by :func:`read_run` and
        :meth:`attnkit.data.tokenizer.TokenizerPair.load`.

    Raises:
        ValueError: if the checkpoint is incomplete or corrupt, or the model's
            keys or shapes differ (the message lists missing keys, unexpected
            keys and shape mismatches), or an optimizer/scheduler is given but
            none was saved.
    """
    p = _verified(path)
    weights = st_load((p / "model.safetensors").read_bytes())
    _check_fits(model.state_dict(), weights, f"checkpoint {p}")
    state_tensors = st_load((p / "state.safetensors").read_bytes())
    state = json.loads((p / "state.json").read_text(encoding="utf-8"))
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and state[name] is None:
            raise ValueError(f"{name} was given but checkpoint {p} holds no {name} state")

    model.load_state_dict(weights)
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten(state["optimizer"], state_tensors))
    if scheduler is not None:
        scheduler.load_state_dict(_unflatten(state["scheduler"], state_tensors))
    if restore_rng:
        _set_rng_states(_unflatten(state["rng"], state_tensors))
    train_state = json.loads((p / "train_state.json").read_text(encoding="utf-8"))
    return {
        "train_state": train_state,
        "config": json.loads((p / "config.json").read_text(encoding="utf-8")),
        "step": train_state["step"],
        "path": p,
    }


def average_checkpoints(paths: list[str | Path], *, progress=None
                        ) -> dict[str, torch.Tensor]:
    """Element-wise mean of the model weights of several checkpoints.

    Floating-point tensors are summed in float64, divided by ``len(paths)`` and
    cast back to their dtype. Integer and boolean tensors (step counters,
    BatchNorm's ``num_batches_tracked``) cannot be averaged and are taken from
    the **last** path — pass paths oldest first, e.g. ``list_checkpoints(root)[-k:]``.
    ``progress(1)`` is called after each checkpoint is read.

    Raises:
        ValueError: if ``paths`` is empty or the checkpoints differ in keys or
            shapes (listing them).
    """
    if not paths:
        raise ValueError("paths must name at least one checkpoint, got none")
    states = []
    for p in paths:  # verified and read one by one; progress(1) after each
        states.append(read_model_state(p))
        if progress is not None:
            progress(1)
    first = states[0]
    for p, s in zip(paths[1:], states[1:], strict=True):
        _check_fits(first, s, f"checkpoint {p} (compared with {paths[0]})")
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


# ---------------------------------------------------------------- the run format
@dataclass(frozen=True)
class RunInfo:
    """What a checkpoint says about its run (:func:`read_run`).

    ``model`` is the one source of truth for rebuilding the model;
    ``tokenizer`` describes ``tokenizer/`` (``{"kind", "shared"}``); ``train``
    is the nested training config, used only to resume (``None`` for a run of
    format 1, which cannot be resumed by this release).
    """

    path: Path
    format_version: int
    model: Any  # TransformerConfig | BahdanauConfig
    tokenizer: dict
    train: dict | None
    train_state: dict
    description: dict  # config.json as stored


def run_description(*, model_config: Any, tokenizer: dict, train: dict) -> dict:
    """The ``config.json`` of a checkpoint in the current run format."""
    from .._version import __version__
    from ..models.config import model_config_to_dict

    return {"format_version": RUN_FORMAT_VERSION, "attnkit_version": __version__,
            "model": model_config_to_dict(model_config), "tokenizer": dict(tokenizer),
            "train": train}


def _from_format_1(meta: dict, p: Path) -> tuple[dict, dict, None]:
    """(model dict, tokenizer dict, train) of a run written before ``format_version``."""
    train = meta["train"]
    cls = "BahdanauConfig" if str(meta.get("model_class", "")).startswith("bahdanau") \
        else "TransformerConfig"
    tokenizer = {"kind": train.get("tokenizer", "char"),
                 "shared": not (p / "tokenizer" / "tgt").is_dir()}
    return {"class": cls, **meta["model"]}, tokenizer, None


def read_run(path: str | Path) -> RunInfo:
    """The description of the checkpoint at ``path`` (a checkpoint or run folder).

    The only reader of run metadata: verifies the manifest, then reads
    ``config.json`` and ``train_state.json``. Runs of format 1 (no
    ``format_version`` in ``config.json``) load for inference.

    Raises:
        ValueError: a corrupt checkpoint, a run format newer (or unknown) than this
            release reads (the message names both versions), or a model section that
            does not describe a model config.
    """
    from ..models.config import model_config_from_dict

    p = _verified(resolve_checkpoint(path))
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
    return RunInfo(path=p, format_version=version,
                   model=model_config_from_dict(model, where=f"{p / 'config.json'}: model"),
                   tokenizer=tokenizer, train=train, train_state=state, description=meta)


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


def _removed_hint(p: Path) -> str:
    """For a ``step-N`` that is gone from a folder holding newer checkpoints: why."""
    step = _step_of(p)
    held = [] if step is None else list_checkpoints(p.parent)
    if not held or _step_of(held[-1]) <= step:
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
