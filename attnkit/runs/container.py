"""The checkpoint container: one folder of files that loads without executing code and
never exists half-written.

A checkpoint is one directory ``<root>/step-000123`` (the step zero-padded to six
digits, more if needed)::

    model.safetensors     model.state_dict() tensors
    state.safetensors     every tensor of the optimizer / scheduler / RNG states
    state.json            the rest of those states; tensors appear as {"__tensor__": key}
    train_state.json      the caller's train_state (step, epoch, data-iterator state, …)
    config.json           the run's description (see :mod:`attnkit.runs.run`)
    tokenizer/            the tokenizer's own files, if one was given
    manifest.json         size and SHA-256 of every file above; written last

**No pickle.** Tensors go to ``safetensors`` files, everything else to JSON, so
loading a checkpoint from an untrusted source cannot run code (``torch.load``
on a pickle can). Nested optimizer states are flattened: each tensor is stored
under a dotted key (``optimizer.state.0.exp_avg``) and the JSON structure holds
a ``{"__tensor__": key}`` reference in its place; tuples, dicts with non-string
keys (the optimizer's integer parameter ids), numpy arrays and non-finite
floats have their own small JSON markers so that everything round-trips exactly.

**Atomic.** Files are written to temporary names and moved into place with
``os.replace``; the whole checkpoint is first written as ``step-000123.tmp`` and
renamed to ``step-000123`` only after ``manifest.json`` is in it. A crash leaves
at worst a ``.tmp`` directory, which :func:`latest_checkpoint` ignores; a
directory without a manifest is never treated as a checkpoint.

**Exact resumption.** Besides model, optimizer and scheduler, the RNG states of
Python's ``random``, numpy's global generator, torch's CPU generator and (when
CUDA is available) every CUDA device's generator are saved and restored, so a
resumed run continues bitwise-identically to one that was never interrupted
(given deterministic kernels). Put the data iterator's ``state_dict()`` into
``train_state``.

Which checkpoints a run keeps is :mod:`attnkit.runs.retention`; a run as its
users see it is :mod:`attnkit.runs.run`.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .._io import is_own_folder, json_bytes, read_json, sha256_of_file, write_atomic

__all__ = [
    "FORMAT_VERSION",
    "INFERENCE_FILES",
    "MANIFEST",
    "STATE_FILES",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "check_finite_weights",
    "check_state_fits",
    "encode_checkpoint",
    "first_non_finite",
    "read_model_state",
    "read_weights",
    "restore_verified",
    "step_of",
    "unlisted_files",
    "verify_checkpoint",
    "write_checkpoint",
]

FORMAT_VERSION = 1  # the container: files, manifest, state encoding
MANIFEST = "manifest.json"
_NAME = re.compile(r"^step-([0-9]+)$")  # ASCII digits (\d takes other scripts' too)
_MARKERS = ("__tensor__", "__ndarray__", "__tuple__", "__items__", "__float__")
#: What translating a checkpoint reads, so all that :func:`verify_checkpoint` checks for it:
#: the run's description and progress, the weights and (a name ending in ``/``: every
#: listed file under it) the tokenizers. The optimizer, scheduler and RNG states, about
#: twice the weights' size with Adam, are read (and checked) only to resume a training.
INFERENCE_FILES = ("config.json", "train_state.json", "model.safetensors", "tokenizer/")
STATE_FILES = ("state.json", "state.safetensors")  # what resuming reads besides those


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
def step_of(path: Path) -> int | None:
    """The step of a checkpoint's name (``step-000123``: 123), ``None`` for another name."""
    m = _NAME.match(path.name)
    return int(m.group(1)) if m else None


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root`` (name ``step-N`` and a manifest), oldest first.

    ``.tmp`` directories (interrupted saves), directories without ``manifest.json``
    and links (to a folder elsewhere, which rotation must not delete) are ignored. A
    missing ``root`` gives ``[]``.
    """
    r = Path(root)
    if not r.is_dir():
        return []
    found = [
        (step, p)
        for p in r.iterdir()
        if is_own_folder(p) and (step := step_of(p)) is not None and (p / MANIFEST).is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``root``, or ``None``."""
    found = list_checkpoints(root)
    return found[-1] if found else None

# --------------------------------------------------------------------------- writing
def write_checkpoint(root: Path, step: int, payload: dict[str, bytes],
                     tokenizer: Any | None = None) -> Path:
    """``root/step-N`` written atomically from :func:`encode_checkpoint`'s ``payload``
    (``root`` exists). The checks of the arguments and the rotation of older checkpoints
    are :func:`attnkit.runs.retention.save_checkpoint`'s.

    Raises:
        FileExistsError: a complete checkpoint of that step exists.
    """
    return _write_directory(root, step, payload, tokenizer)


def encode_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                      scheduler: Any | None, *, config: dict, train_state: dict
                      ) -> dict[str, bytes]:
    """The bytes of every file of a checkpoint but the tokenizer's and the manifest.

    Raises:
        TypeError: ``config`` / ``train_state`` not JSON-serializable dicts.
        ValueError: a weight of ``model`` is NaN or infinite (such a checkpoint could only
            pass a diverged state on; it is refused before anything is written or rotated).
    """
    bad = first_non_finite(model.state_dict())
    if bad is not None:
        raise ValueError(f"refusing to write checkpoint step {train_state.get('step')}: the "
                         f"model has non-finite weights ({bad})")
    return _payload(model, optimizer, scheduler, config=config, train_state=train_state)


def _payload(model, optimizer, scheduler, *, config: dict, train_state: dict
             ) -> dict[str, bytes]:
    """The bytes of every file of a checkpoint but the tokenizer's and the manifest."""
    payload: dict[str, bytes] = {}
    for name, obj in (("config", config), ("train_state", train_state)):
        if not isinstance(obj, dict):
            raise TypeError(f"{name} must be a dict, got {type(obj).__name__}")
        try:
            payload[f"{name}.json"] = json_bytes(obj)
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
    payload["state.json"] = json_bytes(state)
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
        p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_of_file(p)}
        for p in sorted(tmp.rglob("*"))
        if p.is_file()
    }
    manifest = {"format_version": FORMAT_VERSION, "step": step, "files": files}
    write_atomic(tmp / MANIFEST, json_bytes(manifest))
    _fsync_dir(tmp)
    os.replace(tmp, final)
    _fsync_dir(root)
    return final


# -------------------------------------------------------------- finite weights
def first_non_finite(tensors: dict[str, torch.Tensor]) -> str | None:
    """``"name: 1024 NaN, 3 inf"`` for the first floating-point tensor of ``tensors`` that
    holds a NaN or an infinity, ``None`` when all are finite. One device sync when all
    are finite (the usual case); the first bad one is looked for only then."""
    floats = [(k, t) for k, t in tensors.items() if t.is_floating_point() or t.is_complex()]
    if not floats or bool(torch.stack([torch.isfinite(t).all() for _, t in floats]).all()):
        return None
    name, t = next((k, t) for k, t in floats if not bool(torch.isfinite(t).all()))
    nan = int(torch.isnan(t).sum())
    inf = int((~torch.isfinite(t)).sum()) - nan
    counts = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n]
    return f"{name}: {', '.join(counts)} of {t.numel()}"


def read_weights(p: Path) -> dict[str, torch.Tensor]:
    """The model tensors of checkpoint ``p``, verified already, refused when one is not
    finite (:func:`check_finite_weights`): the one read of a checkpoint's weights."""
    return check_finite_weights(st_load((p / "model.safetensors").read_bytes()), p)


def check_finite_weights(tensors: dict[str, torch.Tensor], where: str | Path
                         ) -> dict[str, torch.Tensor]:
    """``tensors``, the weights of checkpoint ``where``, if every one is finite: weights
    with a NaN or an infinity translate nothing and train nothing, whatever reads them.

    Raises:
        ValueError: naming the checkpoint and its first non-finite tensor.
    """
    bad = first_non_finite(tensors)
    if bad is not None:
        raise ValueError(f"checkpoint {where} has non-finite weights ({bad}); it cannot be "
                         "used (the training that wrote it had diverged)")
    return tensors


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
    """What ``p`` holds that the manifest does not list (a ``.DS_Store``, a note, an editor's
    backup, a folder: ``name/``), never read. Folders on the way to a listed file are
    entered; nothing else is, and links are not followed."""
    listed = {*files, MANIFEST}
    on_the_way = {"/".join(parts[:i]) for name in listed
                  if len(parts := name.split("/")) > 1 for i in range(1, len(parts))}
    out, folders = [], [(p, "")]
    while folders:
        folder, prefix = folders.pop()
        for entry in folder.iterdir():
            name = prefix + entry.name
            is_dir = is_own_folder(entry)
            if is_dir and name in on_the_way:
                folders.append((entry, name + "/"))
            elif name not in listed:
                out.append(name + "/" if is_dir else name)
    return sorted(out)


# The names the readers of a checkpoint open without the manifest naming them: the
# container's own files and those TokenizerPair.load looks for under tokenizer/. An
# unlisted entry at one of them would be read unchecked, so it makes the checkpoint
# corrupt; any other unlisted entry is ignored.
_OPENED_BY_NAME = ("config.json", "train_state.json", "model.safetensors", "state.json",
                   "state.safetensors", "tokenizer/tokenizer.json", "tokenizer/tgt",
                   "tokenizer/tgt/tokenizer.json")


def _unlisted_but_read(p: Path, files: dict) -> list[str]:
    """The problems of ``p`` that an unlisted entry makes: one where a reader looks
    (:data:`_OPENED_BY_NAME`) or a manifest that is a link."""
    found: list[str] = []
    for name in _OPENED_BY_NAME:
        f = p / name
        listed = name in files or any(n.startswith(name + "/") for n in files)
        inside_found = any(name.startswith(b + "/") for b in found)  # said once, for its folder
        if not listed and not inside_found and (f.exists() or f.is_symlink()):
            found.append(name)
    return [f"{MANIFEST} (a link)"] * (p / MANIFEST).is_symlink() + [
        f"{name} (not listed in {MANIFEST}, and loading reads it)" for name in found]


def _not_inside(p: Path, name: str) -> str | None:
    """Why the listed ``name`` is not a file of ``p`` itself (``None`` when it is):
    missing, or a link or behind one (which would put it outside the checkpoint)."""
    f = p / name
    if not (f.exists() or f.is_symlink()):
        return "missing"
    if f.is_symlink() or not f.is_file() or f.resolve() != p.resolve() / name:
        return "not a file inside the checkpoint"
    return None


def unlisted_files(path: str | Path) -> list[str]:
    """What checkpoint ``path`` holds besides the files its manifest lists (ignored when
    it is verified and loaded; ``name/`` for a folder). ``[]`` without a readable
    manifest."""
    p = Path(path)
    try:
        manifest = read_json(p / MANIFEST, missing=ValueError())
        return _unlisted(p, _listed_files(p, manifest))
    except (OSError, ValueError):
        return []


def verify_checkpoint(path: str | Path, *, only: tuple[str, ...] | None = None) -> Path:
    """``path`` if it is a complete checkpoint whose files match its manifest, checked
    before any of its files is opened: every listed file inside the directory, present,
    of the listed size and SHA-256.

    ``only`` checks just the files a reader will open (e.g. :data:`INFERENCE_FILES`: a
    name, or a folder ending in ``/`` for every listed file under it); each name must be
    listed. The others are neither opened nor hashed, so damage to them does not stop
    that reader, and whoever reads them later verifies them then.

    Files the manifest does not list are ignored, never read (:func:`unlisted_files`
    names them), except at a name that loading opens (:func:`_unlisted_but_read`).

    Raises:
        ValueError: naming each file that is missing or differs, or unlisted where
            loading would read it.
    """
    p = Path(path)
    manifest = read_json(p / MANIFEST, format_version=FORMAT_VERSION, missing=ValueError(
        f"not a complete checkpoint (no {MANIFEST}): {p}"))
    files = _listed_files(p, manifest)
    bad = _unlisted_but_read(p, files)
    if only is not None:
        bad += [f"{name} (not listed in {MANIFEST})" for name in only
                if not name.endswith("/") and name not in files]
        files = {n: info for n, info in files.items()
                 if any(n == o or (o.endswith("/") and n.startswith(o)) for o in only)}
    for name, info in files.items():
        f = p / name
        if why := _not_inside(p, name):
            bad.append(f"{name} ({why})")
        elif f.stat().st_size != info["bytes"] or sha256_of_file(f) != info.get("sha256"):
            bad.append(f"{name} (size or sha256 differs)")
    if bad:
        raise ValueError(f"checkpoint {p} is corrupt: {', '.join(bad)}")
    return p


def read_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The model tensors of checkpoint ``path`` (its :data:`INFERENCE_FILES` verified
    against its manifest; refused when one is not finite, :func:`check_finite_weights`)."""
    return read_weights(verify_checkpoint(path, only=INFERENCE_FILES))


def check_state_fits(
    expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], where: str
) -> None:
    """Refuse a state dict ``given`` (called ``where``) that does not have the keys and
    shapes of ``expected``; the message lists missing keys, unexpected keys and shape
    mismatches."""
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
        The run's description and tokenizers are read by
        :func:`attnkit.runs.run.open_run` and
        :meth:`attnkit.data.tokenizer.TokenizerPair.load`.

    Raises:
        ValueError: if the checkpoint is incomplete or corrupt, or the model's
            keys or shapes differ (the message lists missing keys, unexpected
            keys and shape mismatches), or a weight is NaN or infinite, or an
            optimizer/scheduler is given but none was saved.
    """
    return restore_verified(verify_checkpoint(path), model=model, optimizer=optimizer,
                            scheduler=scheduler, restore_rng=restore_rng)


def restore_verified(p: Path, *, model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer | None = None,
                     scheduler: Any | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """:func:`load_checkpoint` of a checkpoint ``p`` that was verified already (by
    :func:`attnkit.runs.run.open_run`): its files are read without checking them again.
    The state files (:data:`STATE_FILES`) are opened only when ``optimizer``,
    ``scheduler`` or ``restore_rng`` asks for them."""
    weights = read_weights(p)
    check_state_fits(model.state_dict(), weights, f"checkpoint {p}")
    if optimizer is not None or scheduler is not None or restore_rng:
        _restore_state(p, optimizer, scheduler, restore_rng)
    model.load_state_dict(weights)
    train_state = json.loads((p / "train_state.json").read_text(encoding="utf-8"))
    return {
        "train_state": train_state,
        "config": json.loads((p / "config.json").read_text(encoding="utf-8")),
        "step": train_state["step"],
        "path": p,
    }


def _restore_state(p: Path, optimizer, scheduler, restore_rng: bool) -> None:
    """The optimizer, scheduler and RNG states of verified checkpoint ``p``, restored
    where asked for; refused before any is changed when one asked for was not saved."""
    state_tensors = st_load((p / "state.safetensors").read_bytes())
    state = json.loads((p / "state.json").read_text(encoding="utf-8"))
    for name, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        if obj is not None and state[name] is None:
            raise ValueError(f"{name} was given but checkpoint {p} holds no {name} state")
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten(state["optimizer"], state_tensors))
    if scheduler is not None:
        scheduler.load_state_dict(_unflatten(state["scheduler"], state_tensors))
    if restore_rng:
        _set_rng_states(_unflatten(state["rng"], state_tensors))
