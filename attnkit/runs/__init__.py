"""The run format: a training run's checkpoints on disk and what they describe.

* :mod:`.container` — one checkpoint folder: save, load, manifest, state encoding;
* :mod:`.retention` — which checkpoints a run keeps: rotation, ``best.json``, leftovers;
* :mod:`.run` — a run as its users see it: :func:`open_run` (:func:`open_latest_run` to
  resume) and :class:`Run`;
* :mod:`.lock` — one writer per run folder.

A run stores its training config as the plain nested tables it was given
(:attr:`Run.train`); reading them as a config is training's business
(:mod:`attnkit.train.config`).

Names are imported on first use, so ``attnkit.runs`` costs nothing until used.
"""

from .._lazy import lazy_attributes

_WHERE = {
    **dict.fromkeys(["FORMAT_VERSION", "MANIFEST", "encode_checkpoint", "latest_checkpoint",
                     "list_checkpoints", "load_checkpoint", "read_model_state",
                     "restore_verified", "verify_checkpoint", "write_checkpoint"],
                    ".container"),
    **dict.fromkeys(["BEST", "best_checkpoint", "clean_leftovers",
                     "latest_verified_checkpoint", "read_best", "record_best",
                     "save_checkpoint", "trim_best"], ".retention"),
    **dict.fromkeys(["RUN_FORMAT_VERSION", "Run", "average_checkpoints", "open_latest_run",
                     "open_run", "read_beside_writer", "resolve_checkpoint",
                     "run_description"], ".run"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)
