"""Runs to ensemble with the golden run (digits to their names): the same tokenizers and
other weights, another model size, or the same sizes and another vocabulary.

Each is built from the golden run's description, as a training would describe it, and
written (when a test needs a checkpoint folder) as a training writes one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from attnkit.data.tokenizer import TokenizerPair, WordTokenizer
from attnkit.decode.translator import Translator, load_translator
from attnkit.models.build import build_model
from attnkit.models.family import model_config_from_dict
from attnkit.runs import save_checkpoint

GOLDEN = Path(__file__).resolve().parent / "golden" / "run-format-2"
#: sources of the digits task the golden run decodes as recorded
SOURCES = json.loads((GOLDEN.parent / "run-format-2.decoded.json").read_text())["sentences"]


def _translator(model_changes: dict, weights, tokenizers=None) -> tuple[Translator, dict]:
    golden = load_translator(GOLDEN)
    description = copy.deepcopy(golden.run.description)
    description["model"].update(model_changes)
    torch.manual_seed(1)
    model = build_model(model_config_from_dict(description["model"]))
    if weights is not None:
        model.load_state_dict(weights(golden.model.state_dict()))
    tokenizers = tokenizers or golden.tokenizers
    description["tokenizer"] = tokenizers.describe()
    return Translator(model.eval(), tokenizers), description


def _noisy(state: dict, scale: float = 0.15) -> dict:
    """Each weight plus seeded Gaussian noise of ``scale`` times its spread."""
    g = torch.Generator().manual_seed(1)
    return {k: v + scale * v.std() * torch.randn(v.shape, generator=g)
            if v.is_floating_point() and v.numel() > 1 else v for k, v in state.items()}


def noisy_translator() -> tuple[Translator, dict]:
    """The golden model with other weights (its own plus seeded noise): the golden
    run's tokenizers, other translations of some sentences."""
    return _translator({}, _noisy)


def wider_translator() -> tuple[Translator, dict]:
    """An untrained model of another size (4 heads, a wider feed-forward layer, a longer
    positional table) with the golden run's tokenizers."""
    return _translator({"num_heads": 4, "ffn_num_hiddens": 48, "max_len": 24}, None)


def swapped_translator(side: str = "both") -> tuple[Translator, dict]:
    """The golden model and a word tokenizer of the same size whose words ``four`` and
    ``five`` trade ids: on the source side, the target side or ``"both"`` (shared)."""
    golden = load_translator(GOLDEN)
    words = list(golden.tokenizers.tgt.idx_to_token)
    a, b = words.index("four"), words.index("five")
    words[a], words[b] = words[b], words[a]
    swapped = WordTokenizer(words)
    pair = {"both": TokenizerPair(swapped, swapped),
            "src": TokenizerPair(swapped, golden.tokenizers.tgt),
            "tgt": TokenizerPair(golden.tokenizers.src, swapped)}[side]
    return _translator({}, lambda state: state, pair)


def write_run(root: Path, made: tuple[Translator, dict]) -> Path:
    """The checkpoint folder of a ``(translator, description)`` above, under ``root``."""
    translator, description = made
    return save_checkpoint(root, model=translator.model, optimizer=None, scheduler=None,
                           config=description, train_state={"step": 1},
                           tokenizer=translator.tokenizers)
