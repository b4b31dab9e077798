"""A checkpoint whose model never ends a sentence, so every output runs to its limit.

A trained model usually emits ``<eos>`` long before the default output limit
(``2·S + 10``), and a test of the limit then checks nothing. This one is the golden
run (digits to their names) with a positional table of 64 instead of 16, so limits
from 14 to 63 tokens bind (its sinusoidal table holds no weights), and its output
layer's bias keeps every special token, ``<eos>`` included, 10^4 below the others:
out of the argmax and of the beam's candidates. Its outputs still follow the source.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from attnkit.data.tokenizer import SPECIAL_TOKENS
from attnkit.decode.translator import Translator, load_translator
from attnkit.models.build import build_model
from attnkit.models.family import model_config_from_dict
from attnkit.runs import save_checkpoint

GOLDEN = Path(__file__).resolve().parent / "golden" / "run-format-2"
POSITIONS = 64


def no_eos_translator() -> tuple[Translator, dict]:
    """The golden run's translator with the model described above, and the run's
    ``config.json`` for it."""
    golden = load_translator(GOLDEN)
    description = copy.deepcopy(golden.run.description)
    description["model"]["max_len"] = POSITIONS
    model = build_model(model_config_from_dict(description["model"]))
    model.load_state_dict(golden.model.state_dict())
    with torch.no_grad():
        model.output.bias[: len(SPECIAL_TOKENS)] = -1e4
    return Translator(model.eval(), golden.tokenizers), description


def write_no_eos_run(root: Path) -> Path:
    """The checkpoint folder of :func:`no_eos_translator`'s model, written under ``root``
    as a training writes one (manifest, tokenizer and all)."""
    translator, description = no_eos_translator()
    return save_checkpoint(root, model=translator.model, optimizer=None, scheduler=None,
                           config=description, train_state={"step": 1},
                           tokenizer=translator.tokenizers)
