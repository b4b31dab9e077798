"""Loading a trained checkpoint for translation, evaluation and pictures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .train.checkpoint import latest_checkpoint, load_checkpoint
from .train.config import TrainConfig
from .train.trainer import TokenizerPair, build_model_for, translate_sentences

__all__ = ["Translator", "load_translator", "capture_for_pair", "resolve_checkpoint"]


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run folder, its ``checkpoints/`` folder, or itself."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if (p / "manifest.json").exists():
        return p
    for root in (p / "checkpoints", p):
        if root.is_dir():
            latest = latest_checkpoint(root)
            if latest is not None:
                return Path(latest)
    raise ValueError(f"{p} is neither a checkpoint nor a folder holding checkpoints "
                     "(expected manifest.json, or checkpoints/step-*/)")


@dataclass
class Translator:
    model: torch.nn.Module
    tokenizers: TokenizerPair
    config: TrainConfig
    path: Path

    def translate(self, sentences: list[str], *, beam_size: int = 1, max_len: int | None = None,
                  alpha: float = 0.6) -> list[str]:
        return translate_sentences(self.model, self.tokenizers, list(sentences),
                                   beam_size=beam_size, max_len=max_len or self.config.max_len,
                                   alpha=alpha)


def load_translator(path: str | Path, *, device: str = "cpu",
                    weights: dict | None = None) -> Translator:
    """Model, tokenizers and config from a checkpoint (weights from safetensors only).

    ``weights`` replaces the checkpoint's weights (e.g. an average of several).
    """
    ckpt = resolve_checkpoint(path)
    import json

    meta = json.loads((ckpt / "config.json").read_text())
    if "train" not in meta or "model" not in meta:
        raise ValueError(f"{ckpt} is not an attnkit training checkpoint "
                         "(config.json lacks 'train'/'model')")
    cfg = TrainConfig.from_dict(meta["train"])
    tokenizers = TokenizerPair.load(ckpt / "tokenizer")
    model, _ = build_model_for(cfg, tokenizers.src.vocab_size, tokenizers.tgt.vocab_size,
                               tokenizers.shared)
    load_checkpoint(ckpt, model=model, restore_rng=False)
    if weights is not None:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise ValueError(f"averaged weights do not fit the model: missing {missing}, "
                             f"unexpected {unexpected}")
    model.to(device).eval()
    return Translator(model, tokenizers, cfg, ckpt)


def capture_for_pair(path: str | Path, src: str, tgt: str | None = None, *, beam_size: int = 1):
    """Attention weights of every layer for one sentence pair.

    With ``tgt=None`` the model's own translation is used. Returns
    ``(captures, src_tokens, tgt_tokens)``; captures are keyed by module name.
    """

    tr = load_translator(path)
    if tgt is None:
        tgt = tr.translate([src], beam_size=beam_size)[0]
    return capture_with_model(tr.model, tr.tokenizers, src, tgt)


def capture_with_model(model, tokenizers: TokenizerPair, src: str, tgt: str):
    """Teacher-forced forward pass of one pair with every attention layer captured."""
    from .data.tokenizer import BOS_ID, EOS_ID
    from .nn.capture import capture_attention

    s_ids = tokenizers.src.encode(src) + [EOS_ID]
    t_ids = [BOS_ID] + tokenizers.tgt.encode(tgt)
    dev = next(model.parameters()).device
    src_t = torch.tensor([s_ids], device=dev)
    tgt_t = torch.tensor([t_ids], device=dev)
    model.eval()
    with torch.no_grad(), capture_attention(model) as caps:
        model(src_t, tgt_t, torch.tensor([len(s_ids)], device=dev))
    captures = {k: v for k, v in caps.items()}
    src_tokens = [_piece(tokenizers.src, i) for i in s_ids]
    tgt_tokens = [_piece(tokenizers.tgt, i) for i in t_ids]
    return captures, src_tokens, tgt_tokens


def _piece(tok, i: int) -> str:
    specials = {0: "<pad>", 1: "<unk>", 2: "<bos>", 3: "<eos>"}
    if i in specials:
        return specials[i]
    if hasattr(tok, "id_to_piece"):
        return tok.id_to_piece(i)
    text = tok.decode([i])
    return text if text.strip() else repr(text)
