"""Interactive attention explorer: one self-contained HTML page.

The page shows every captured attention matrix of a model (encoder self-attention,
decoder self-attention, cross-attention; every layer and head) as a heatmap or as
lines between token columns, with an overview of all heads of the current layer.
It needs no network and no external files: the template ships with the package,
and the weights are inlined into it as JSON, so the result opens from ``file://``.

Long sentences are reduced so the page still loads in a second or two: each sequence
is cut to its first :data:`MAX_TOKENS` tokens (``max_tokens=``), and beyond
:data:`EXACT_CELLS` weights each head is quantized to 8 bits; a note at the top of the
page says what was cut and how the weights were stored.

Shape vocabulary:
    B   batch size
    H   number of heads
    Nq  number of queries (rows of a weight matrix)
    Nk  number of keys (columns of a weight matrix)

Which tokens label which axis:

    ==============  ===========  ===========
    kind            queries (Nq) keys (Nk)
    ==============  ===========  ===========
    encoder_self    src_tokens   src_tokens
    decoder_self    tgt_tokens   tgt_tokens
    cross           tgt_tokens   src_tokens
    ==============  ===========  ===========

Example::

    captures = {"encoder.blocks.0.attention": w0, "encoder.blocks.1.attention": w1}
    records = records_from_captures(captures)          # w*: (B, H, Nq, Nk)
    write_explorer("attention.html", records, ["the", "cat", "sat"])
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from .._checks import check_is_tensor
from .._values import check_choice, check_nonnegative_int, check_positive_int

__all__ = [
    "EXACT_CELLS",
    "KINDS",
    "MAX_TOKENS",
    "AttentionRecord",
    "explorer_html",
    "check_sentence_lengths",
    "records_from_captures",
    "write_explorer",
]

#: Attention kinds, in the order the page lists them.
KINDS: tuple[str, ...] = ("encoder_self", "decoder_self", "cross")

# Which token sequence labels the (query, key) axes of each kind.
_AXES: dict[str, tuple[str, str]] = {
    "encoder_self": ("src_tokens", "src_tokens"),
    "decoder_self": ("tgt_tokens", "tgt_tokens"),
    "cross": ("tgt_tokens", "src_tokens"),
}

# Weights are written with this many significant digits (relative error <= 5e-6). Significant
# digits rather than decimals, so a tiny weight never turns into an exact 0 (which the page
# shows as "masked").
_DIGITS = 5

#: Tokens per sequence a page embeds (``max_tokens``). The heatmap draws one element per
#: cell, so a page's load time grows with the square of this; 128 keeps a page at about
#: a second (BENCHMARKS.md, "The explorer's page size"). Longer sequences are cut to
#: their first ``max_tokens`` tokens and the page says so.
MAX_TOKENS = 128

#: Weights a page embeds as 5-significant-digit JSON, over all records. Beyond this, each
#: head's matrix is quantized to 8 bits (steps of 1/255 of its largest weight, exact zeros
#: kept, no nonzero weight rounded to 0) and base64-encoded: ~1.3 bytes per weight instead
#: of ~8, and the page says so.
EXACT_CELLS = 50_000

_TEMPLATE_NAME = "explorer.html"
_PLACEHOLDER = re.compile(r"__ATTNKIT_(TITLE|DATA)__")

# Capture names -> kind. Layer-indexed patterns hold weights (B, H, Nq, Nk) or (H, Nq, Nk);
# the single-layer, single-head ``decoder.attention`` (an additive/Bahdanau decoder)
# holds (B, Nq, Nk) or (Nq, Nk).
# The "encoder."/"decoder." prefix may be missing when a lone encoder or decoder was captured.
_CAPTURE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?:encoder\.)?blocks\.(\d+)\.attention"), "encoder_self"),
    (re.compile(r"(?:decoder\.)?blocks\.(\d+)\.self_attention"), "decoder_self"),
    (re.compile(r"(?:decoder\.)?blocks\.(\d+)\.cross_attention"), "cross"),
)
_SINGLE_HEAD_NAME = "decoder.attention"
_EXPECTED_NAMES = (
    "'encoder.blocks.{i}.attention', 'decoder.blocks.{i}.self_attention', "
    "'decoder.blocks.{i}.cross_attention' or 'decoder.attention' "
    "(the 'encoder.'/'decoder.' prefix of the block names may be left out)"
)


@dataclass(frozen=True)
class AttentionRecord:
    """The attention weights of one layer of one kind, all heads.

    Attributes:
        kind: ``"encoder_self"``, ``"decoder_self"`` or ``"cross"``.
        layer: 0-based layer index.
        weights: ``(H, Nq, Nk)`` floating tensor of non-negative, finite weights. A row
            may sum to 0 (a query with nothing to attend to); the page marks such rows.

    Raises:
        ValueError: unknown ``kind``, negative ``layer``, wrong number of dimensions,
            an empty axis, or weights that are negative or not finite.
        TypeError: ``layer`` is not an int or ``weights`` is not a floating tensor.
    """

    kind: str
    layer: int
    weights: torch.Tensor

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        check_nonnegative_int("layer", self.layer)
        w = self.weights
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            got = w.dtype if isinstance(w, torch.Tensor) else type(w).__name__
            raise TypeError(f"weights must be a floating torch.Tensor (H, Nq, Nk), got {got}")
        if w.dim() != 3:
            raise ValueError(f"weights must have shape (H, Nq, Nk), got {tuple(w.shape)}")
        if w.numel() == 0:
            raise ValueError(f"weights must have H, Nq, Nk >= 1, got {tuple(w.shape)}")
        w64 = w.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(w64).all()):
            raise ValueError(
                f"weights must be finite, got NaN/inf in {self.kind} layer {self.layer}"
            )
        if bool((w64 < 0).any()):
            raise ValueError(
                f"weights must be >= 0, got min {w64.min().item():.4g} "
                f"in {self.kind} layer {self.layer}"
            )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, Nq, Nk)``."""
        h, nq, nk = self.weights.shape
        return int(h), int(nq), int(nk)


def records_from_captures(captures: Mapping[str, torch.Tensor]) -> list[AttentionRecord]:
    """Turn captured attention weights, keyed by module name, into records.

    Args:
        captures: module name -> weights. Accepted names and shapes:

            - ``encoder.blocks.{i}.attention`` (encoder self-attention),
              ``decoder.blocks.{i}.self_attention`` (decoder self-attention),
              ``decoder.blocks.{i}.cross_attention`` (cross-attention):
              ``(B, H, Nq, Nk)`` (batch element 0 is used) or ``(H, Nq, Nk)``.
              The ``encoder.``/``decoder.`` prefix may be left out (a lone encoder
              or decoder captured on its own).
            - ``decoder.attention`` (single-head additive decoder, e.g. Bahdanau):
              ``(B, Nq, Nk)`` (batch element 0) or ``(Nq, Nk)``; becomes
              kind ``"cross"``, layer 0, H = 1.

    Returns:
        Records sorted by kind (encoder self, decoder self, cross), then by layer.

    Raises:
        ValueError: a name that matches none of the patterns, a shape with the wrong
            number of dimensions, an empty batch, or a layer captured twice.
        TypeError: a value that is not a tensor.
    """
    if not isinstance(captures, Mapping):
        raise TypeError(f"captures must be a mapping name -> tensor, got {type(captures).__name__}")
    records: list[AttentionRecord] = []
    seen: dict[tuple[str, int], str] = {}
    for name, weights in captures.items():
        kind, layer, w = _parse_capture(name, check_is_tensor(f"captures[{name!r}]", weights))
        if (kind, layer) in seen:
            raise ValueError(
                f"captures[{name!r}] duplicates {kind} layer {layer} "
                f"(already given by {seen[kind, layer]!r})"
            )
        seen[kind, layer] = name
        records.append(AttentionRecord(kind=kind, layer=layer, weights=w))
    records.sort(key=lambda r: (KINDS.index(r.kind), r.layer))
    return records


def _parse_capture(name: str, weights: torch.Tensor) -> tuple[str, int, torch.Tensor]:
    """Map one capture to ``(kind, layer, weights (H, Nq, Nk))``."""
    shape = tuple(weights.shape)
    if name == _SINGLE_HEAD_NAME:
        if weights.dim() == 2:  # (Nq, Nk)
            return "cross", 0, weights.unsqueeze(0)  # (1, Nq, Nk)
        if weights.dim() == 3:  # (B, Nq, Nk)
            _require_batch(name, shape)
            return "cross", 0, weights[0].unsqueeze(0)  # (1, Nq, Nk)
        raise ValueError(f"captures[{name!r}] must have shape (B, Nq, Nk) or (Nq, Nk), got {shape}")
    for pattern, kind in _CAPTURE_PATTERNS:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        if weights.dim() == 4:  # (B, H, Nq, Nk)
            _require_batch(name, shape)
            return kind, int(match.group(1)), weights[0]  # (H, Nq, Nk)
        if weights.dim() == 3:  # (H, Nq, Nk)
            return kind, int(match.group(1)), weights
        raise ValueError(
            f"captures[{name!r}] must have shape (B, H, Nq, Nk) or (H, Nq, Nk), got {shape}"
        )
    raise ValueError(
        f"captures key {name!r} is not an attention module name; expected {_EXPECTED_NAMES}"
    )


def _require_batch(name: str, shape: tuple[int, ...]) -> None:
    if shape[0] < 1:
        raise ValueError(f"captures[{name!r}] has an empty batch (B = 0), shape {shape}")


def explorer_html(
    records: Sequence[AttentionRecord],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str] | None = None,
    *,
    title: str = "attnkit attention explorer",
    max_tokens: int = MAX_TOKENS,
) -> str:
    """Render records as one self-contained HTML page (no network, no external files).

    Args:
        records: at least one record; at most one per ``(kind, layer)``.
        src_tokens: source tokens; label the keys of ``encoder_self`` and ``cross`` and
            the queries of ``encoder_self``.
        tgt_tokens: target tokens; required when any record is ``decoder_self`` or
            ``cross`` (they label its queries, and the keys of ``decoder_self``).
        title: page title and heading.
        max_tokens: tokens per sequence the page shows (default :data:`MAX_TOKENS`).
            Longer sequences are cut to their first ``max_tokens`` tokens, every weight
            matrix to the matching rows and columns (so a row may sum to less than 1:
            its weight on the keys left out is not shown); a note at the top of the
            page says what was cut.

    Returns:
        The HTML document as a string. Weights are inlined with 5 significant digits,
        exact zeros exact; when more than :data:`EXACT_CELLS` weights remain after
        the cut, each head is quantized to 8 bits instead (the page says so). A
        2,000-token pair gives a page of about 0.2 MB per 6 heads that loads in
        about a second.

    Raises:
        ValueError: no records, a repeated ``(kind, layer)``, missing ``tgt_tokens``,
            token counts that do not match a record's ``(Nq, Nk)``, or ``max_tokens``
            below 1.
        TypeError: records or tokens of the wrong type.
    """
    payload = _payload(records, src_tokens, tgt_tokens, title, max_tokens)
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "<" could close the element ("</script>") or open a comment.
    data = data.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    values = {"TITLE": html.escape(title), "DATA": data}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], _template())


def write_explorer(
    path: str | os.PathLike[str],
    records: Sequence[AttentionRecord],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str] | None = None,
    *,
    title: str = "attnkit attention explorer",
    max_tokens: int = MAX_TOKENS,
) -> Path:
    """Write :func:`explorer_html` to ``path`` (UTF-8) and return it as a ``Path``.

    Parent directories are created. Raises what :func:`explorer_html` raises.
    """
    text = explorer_html(records, src_tokens, tgt_tokens, title=title, max_tokens=max_tokens)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def check_sentence_lengths(src_len: int, tgt_len: int, max_len: int | None) -> None:
    """Refuse a pair the model cannot capture, naming the sentence's length and the limit.

    Call it before a model capture for the explorer (the model's positional table
    would otherwise fail deep inside with a message about positions, not about the
    sentence).

    Args:
        src_len: source tokens the model sees (with the appended EOS).
        tgt_len: target tokens the model sees (with the leading BOS).
        max_len: positions the model's positional table covers (``None``: no limit).

    Raises:
        ValueError: a sentence longer than ``max_len`` tokens.
    """
    if max_len is None:
        return
    for label, n, extra in (("source", src_len, "EOS"), ("target", tgt_len, "BOS")):
        if n > max_len:
            raise ValueError(
                f"the {label} sentence has {n:,} tokens (with {extra}), more than the "
                f"{max_len:,} positions the model's positional table covers (max_len); "
                f"the explorer takes sentences of at most {max_len:,} tokens: shorten it"
            )


def _template() -> str:
    return resources.files("attnkit.viz").joinpath(_TEMPLATE_NAME).read_text(encoding="utf-8")


def _check_tokens(name: str, tokens: object) -> list[str]:
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise TypeError(f"{name} must be a list of str, got {type(tokens).__name__}")
    for i, tok in enumerate(tokens):
        if not isinstance(tok, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(tok).__name__}")
    if len(tokens) == 0:
        raise ValueError(f"{name} must hold at least 1 token, got 0")
    return list(tokens)


def _payload(
    records: Sequence[AttentionRecord],
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str] | None,
    title: str,
    max_tokens: int,
) -> dict[str, object]:
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    check_positive_int("max_tokens", max_tokens)
    records = _checked_records(records)
    tokens = {"src_tokens": _check_tokens("src_tokens", src_tokens), "tgt_tokens": None}
    if tgt_tokens is not None:
        tokens["tgt_tokens"] = _check_tokens("tgt_tokens", tgt_tokens)
    for i, rec in enumerate(records):
        _check_axes(i, rec, tokens)
    cut = {name: toks[:max_tokens] for name, toks in tokens.items() if toks is not None}
    weights = [_cut(rec, cut) for rec in records]
    quantize = sum(w.numel() for w in weights) > EXACT_CELLS
    encode = _quantized if quantize else _rounded
    out_records = [{"kind": rec.kind, "layer": rec.layer, "weights": encode(w)}
                   for rec, w in zip(records, weights)]
    out_records.sort(key=lambda r: (KINDS.index(r["kind"]), r["layer"]))
    return {
        "version": 1,
        "title": title,
        "src_tokens": cut["src_tokens"],
        "tgt_tokens": cut.get("tgt_tokens"),
        "total_tokens": {name[:3]: len(toks) for name, toks in tokens.items() if toks},
        "reduced": _reduction_notes(tokens, max_tokens, quantize),
        "records": out_records,
    }


def _checked_records(records: Sequence[AttentionRecord]) -> list[AttentionRecord]:
    """At least one record, all :class:`AttentionRecord`, no ``(kind, layer)`` twice."""
    if isinstance(records, (AttentionRecord, str)) or not isinstance(records, Sequence):
        raise TypeError(f"records must be a list of AttentionRecord, got {type(records).__name__}")
    if len(records) == 0:
        raise ValueError("records must hold at least 1 AttentionRecord, got 0")
    seen: set[tuple[str, int]] = set()
    for i, rec in enumerate(records):
        if not isinstance(rec, AttentionRecord):
            raise TypeError(f"records[{i}] must be an AttentionRecord, got {type(rec).__name__}")
        if (rec.kind, rec.layer) in seen:
            raise ValueError(f"records[{i}] repeats kind {rec.kind!r} layer {rec.layer}")
        seen.add((rec.kind, rec.layer))
    return list(records)


def _cut(rec: AttentionRecord, cut: dict[str, list[str]]) -> torch.Tensor:
    """The record's weights ``(H, Nq, Nk)`` on the tokens kept, on the CPU."""
    q_name, k_name = _AXES[rec.kind]
    nq, nk = len(cut[q_name]), len(cut[k_name])
    return rec.weights.detach()[:, :nq, :nk].to("cpu", torch.float64)  # (H, nq, nk)


def _reduction_notes(tokens: dict[str, list[str] | None], max_tokens: int,
                     quantized: bool) -> list[str]:
    """What the page leaves out, one sentence each (shown at its top)."""
    notes = []
    for name, label in (("src_tokens", "source"), ("tgt_tokens", "target")):
        n = len(tokens[name] or [])
        if n > max_tokens:
            notes.append(
                f"Only the first {max_tokens:,} of the {n:,} {label} tokens are shown "
                f"(max_tokens = {max_tokens:,}); weights on the {label} keys left out are "
                "not shown, so a row may sum to less than 1."
            )
    if quantized:
        notes.append(
            "Weights are stored with 8 bits per head: steps of 1/255 of the head's largest "
            "weight; exact zeros stay 0 and no nonzero weight is rounded to 0."
        )
    return notes


def _check_axes(i: int, rec: AttentionRecord, tokens: dict[str, list[str] | None]) -> None:
    """Token counts must equal the record's (Nq, Nk) for its kind."""
    q_name, k_name = _AXES[rec.kind]
    _, nq, nk = rec.shape
    for axis, name, n in (("queries", q_name, nq), ("keys", k_name, nk)):
        toks = tokens[name]
        if toks is None:
            raise ValueError(
                f"{name} is required for {rec.kind!r} records: records[{i}] "
                f"(layer {rec.layer}) has weights (H, Nq, Nk) = {rec.shape}"
            )
        if len(toks) != n:
            raise ValueError(
                f"{name} has {len(toks)} tokens but records[{i}] ({rec.kind!r} layer "
                f"{rec.layer}) has {n} {axis}: weights (H, Nq, Nk) = {rec.shape}"
            )


def _quantized(w: torch.Tensor) -> dict[str, object]:
    """``(H, Nq, Nk)`` float64 -> 8 bits per weight per head, base64 (decoded by the page).

    ``byte = round(255 · w / max_h)``, at least 1 where ``w > 0``; ``w ≈ byte / 255 · max_h``.
    """
    scales = w.amax(dim=(1, 2))  # (H,)
    safe = torch.where(scales > 0, scales, 1.0)[:, None, None]  # (H, 1, 1)
    codes = torch.round(w / safe * 255).clamp(0, 255)  # (H, Nq, Nk)
    codes = torch.where(w > 0, codes.clamp(min=1), 0).to(torch.uint8)
    data = [base64.b64encode(c.numpy().tobytes()).decode("ascii") for c in codes]
    return {"encoding": "uint8-base64", "shape": list(w.shape), "scales": scales.tolist(),
            "data": data}


def _rounded(w: torch.Tensor) -> list:
    """``(H, Nq, Nk)`` float64 -> nested lists of floats with ``_DIGITS`` significant digits."""
    fmt = f".{_DIGITS}g"  # float(format(...)) keeps the JSON short: 0.12346, 1.2346e-07
    return [[[float(format(v, fmt)) for v in row] for row in head] for head in w.tolist()]
