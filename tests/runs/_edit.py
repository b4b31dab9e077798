"""Editing a checkpoint's config.json the way an older or newer release would have written it."""

import hashlib
import json
from pathlib import Path


def edit_config(ckpt: Path, change) -> None:
    """Rewrite ``config.json`` with ``change(meta)`` (in place, or returning a new dict) and
    re-sign it in the manifest, so only the content differs."""
    meta = json.loads((ckpt / "config.json").read_text())
    changed = change(meta)
    meta = changed if isinstance(changed, dict) else meta
    data = json.dumps(meta).encode()
    (ckpt / "config.json").write_bytes(data)
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"bytes": len(data),
                                        "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
