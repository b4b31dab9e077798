"""Editing a checkpoint's JSON files (config.json, train_state.json) the way an older or
newer release would have written them."""

import hashlib
import json
from pathlib import Path


def edit_json(ckpt: Path, name: str, change) -> None:
    """Rewrite the checkpoint's JSON file ``name`` with ``change(data)`` (in place, or
    returning a new dict) and re-sign it in the manifest, so only the content differs."""
    data = json.loads((ckpt / name).read_text())
    changed = change(data)
    data = changed if isinstance(changed, dict) else data
    raw = json.dumps(data).encode()
    (ckpt / name).write_bytes(raw)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"][name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))


def edit_config(ckpt: Path, change) -> None:
    """:func:`edit_json` of ``config.json``."""
    edit_json(ckpt, "config.json", change)
