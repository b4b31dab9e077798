"""``attnkit export FORMAT``: write a trained run in another engine's format.

``attnkit export ctranslate2 --checkpoint RUN --out DIR [--quantization
int8|int16|float32]`` writes a CTranslate2 model directory (weights,
vocabularies with attnkit's token ids, the run's tokenizer); ``attnkit
translate --engine ctranslate2 --model DIR`` translates with it. Needs
``pip install "attnkit[deploy]"``. ``--force`` replaces an earlier export
only once the new one is whole (killed part-way, the earlier one stays).
"""

from __future__ import annotations

import argparse

from ..export.ctranslate2 import QUANTIZATIONS  # no torch, no ctranslate2: --help stays light

_HELP = {
    "ctranslate2": "a CTranslate2 model directory (for attnkit translate --engine ctranslate2)",
}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    p = sub.add_parser("ctranslate2", help=_HELP["ctranslate2"], description=_HELP["ctranslate2"])
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint directory, a run folder (its latest checkpoint) or "
                        "RUN/best (its best-scoring one, see keep_best)")
    p.add_argument("--out", required=True, help="the model directory to write")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="float32",
                   help="type of the weights on disk (default float32)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier export in --out")
    p.set_defaults(_prog=p.prog)


#: The library's argument names, as this command's flags
_FLAGS = {"checkpoint": "--checkpoint", "out": "--out", "quantization": "--quantization",
          "force": "--force"}


def run_cli(args: argparse.Namespace) -> int:
    from .._io import check_not_an_input
    from ..export.ctranslate2 import export_ctranslate2
    from ..export.directory import ExportArgumentError
    from ._decoding import checkpoint_inputs

    # --force replaces --out whole: neither the run read nor a folder holding it
    check_not_an_input(args.out, "--out", checkpoint_inputs(args.checkpoint), holds=True)
    try:
        out = export_ctranslate2(args.checkpoint, args.out, quantization=args.quantization,
                                 force=args.force)
    except ExportArgumentError as e:
        raise ValueError(e.message(_FLAGS)) from None
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    shown = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
    print(f"exported {args.checkpoint} -> {out} (ctranslate2, {args.quantization}, {shown})")
    return 0
