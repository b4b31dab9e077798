"""Deployment: a trained run exported to an inference engine, and that engine as a translator.

* :mod:`~attnkit.export.ctranslate2` — :func:`export_ctranslate2` writes a
  Transformer run as a CTranslate2 model directory (weights, vocabularies that
  keep attnkit's token ids, the run's tokenizer); :func:`check_exportable`
  names the model option CTranslate2 cannot represent.
* :mod:`~attnkit.export.ctranslate2_translator` — :func:`load_ctranslate2`
  opens such a directory as a translator with the interface of
  :class:`attnkit.decode.Translator` (``translate``, ``overlong``), after
  :func:`read_export` has checked every file of it.
* :mod:`~attnkit.export.directory` — what every export directory has: a
  manifest of checksums checked before loading (:func:`verify_export`), and a
  writer that puts it in place whole or not at all (:func:`write_export`).

CTranslate2 is an optional dependency: ``pip install "attnkit[deploy]"``.
"""

from .._lazy import lazy_attributes

_WHERE = {
    **dict.fromkeys(["QUANTIZATIONS", "check_exportable", "export_ctranslate2",
                     "require_ctranslate2"], ".ctranslate2"),
    **dict.fromkeys(["CTranslate2Translator", "load_ctranslate2", "read_export"],
                    ".ctranslate2_translator"),
    **dict.fromkeys(["EXPORT_INFO", "MANIFEST", "ExportArgumentError", "verify_export",
                     "write_export"], ".directory"),
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE)
