"""The pictures of the two texts, one function each.

Each ``figure_*`` function returns a matplotlib ``Figure``; :func:`plot`
renders one by name to PNG and SVG. The first seven need no inputs:

==================== ==========================================================
masked-softmax       d2l's masked softmax on its toy inputs, 1-D and 2-D valid lengths
scores               the five scoring functions' weights on the same inputs
causal-mask          look-ahead masks (both alignments) and the attention they give
scaling              why 1/√d: softmax saturates for large d without it
positional-encoding  the sinusoidal encoding as a heatmap and as curves
lr-schedule          the warmup ("Noam") schedule for several d_model / warmup
cost                 how memory and FLOPs grow with N and d (cost model + measurement)
curves               training curves from a training log (JSONL)
attention-maps       per-layer, per-head attention maps of a trained model
==================== ==========================================================
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from .._profiling import peak_memory_bytes
from .._values import check_choice
from ..cost import SCORES, attention_cost
from ..functional import attention_weights
from ..masks import causal_mask
from ..softmax import masked_softmax
from ._matplotlib import pyplot
from .heatmap import save_figure

__all__ = ["FIGURES", "NEEDS_INPUT", "plot", "panel_axes"]

_CMAP = "Reds"
#: resolution of saved figures; a PNG is figsize × DPI pixels exactly
DPI = 100


def panel_axes(fig) -> list:
    """The data panels of a figure (colorbars excluded)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _heat(ax, m, *, title, xlabel="Keys", ylabel="Queries", vmax=None, cmap=_CMAP,
          xticks=None, yticks=None):
    m = torch.as_tensor(m).detach().float()
    im = ax.imshow(m.numpy(), cmap=cmap, vmin=0.0, vmax=vmax if vmax is not None else max(
        float(m.max()), 1e-12), aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    nq, nk = m.shape
    ax.set_xticks(range(nk) if xticks is None else range(len(xticks)),
                  xticks if xticks is not None else None)
    ax.set_yticks(range(nq) if yticks is None else range(len(yticks)),
                  yticks if yticks is not None else None)
    return im


def _colorbar(fig, im, axes, label="weight"):
    cb = fig.colorbar(im, ax=axes, shrink=0.8, label=label)
    cb.ax.set_label("<colorbar>")


def figure_masked_softmax(seed: int = 0):
    """d2l's toy masked softmax: ``torch.rand(2, 2, 4)`` with ``[2, 3]`` and ``[[1, 3], [2, 4]]``,
    and a third case with an empty row (``valid_len = 0`` → zero weights)."""
    plt = pyplot()
    X = torch.rand(2, 2, 4, generator=torch.Generator().manual_seed(seed))
    cases = [("valid_lens [2, 3]", torch.tensor([2, 3])),
             ("valid_lens [[1, 3], [2, 4]]", torch.tensor([[1, 3], [2, 4]])),
             ("valid_lens [0, 4] (empty row)", torch.tensor([0, 4]))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), squeeze=False, layout="constrained")
    im = None
    for c, (label, vl) in enumerate(cases):
        w = masked_softmax(X, vl)
        for b in range(2):
            im = _heat(axes[b, c], w[b], title=f"{label}\nsequence {b}", vmax=1.0)
            lens = vl[b].tolist() if vl.ndim == 2 else [int(vl[b])] * 2
            if max(lens) == 0:
                axes[b, c].text(1.5, 0.5, "no valid key:\nall weights 0", ha="center",
                                va="center", fontsize=11, color="tab:blue")
            for i, n in enumerate(lens):
                if n < 4:
                    axes[b, c].plot([n - 0.5, n - 0.5], [i - 0.5, i + 0.5], "b--", lw=1.5)
    _colorbar(fig, im, axes)
    fig.suptitle("Masked softmax: keys at or beyond valid_len get weight 0 (dashed line)")
    return fig


def figure_scores(seed: int = 0):
    """The five scoring functions on the same queries and keys (one panel each)."""
    from .tour import tour_scores

    plt = pyplot()
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 6, 4, generator=g), torch.randn(2, 9, 4, generator=g)
    vl = torch.tensor([9, 6])
    fig, axes = plt.subplots(1, 5, figsize=(18, 4), squeeze=False, layout="constrained")
    im = None
    with torch.no_grad():
        for ax, (name, score) in zip(axes[0], tour_scores(4, 4, seed).items()):
            w = attention_weights(q, k, score=score, valid_lens=vl)[1]
            im = _heat(ax, w, title=f"{name}", vmax=1.0)
            ax.axvline(5.5, color="tab:blue", ls="--", lw=1.2)
    _colorbar(fig, im, axes)
    fig.suptitle("Attention weights of the five scoring functions on the same inputs "
                 "(sequence with valid_len 6)")
    return fig


def figure_causal_mask(seed: int = 0):
    """Causal masks (square, top-left and bottom-right for Nq ≠ Nk) and the weights they give."""
    plt = pyplot()
    g = torch.Generator().manual_seed(seed)
    cases = [("Nq = Nk = 6", 6, 6, "top_left"),
             ("top_left, Nq=4, Nk=7", 4, 7, "top_left"),
             ("bottom_right, Nq=4, Nk=7", 4, 7, "bottom_right")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), squeeze=False, layout="constrained")
    im = None
    for c, (label, nq, nk, align) in enumerate(cases):
        m = causal_mask(nq, nk, align=align)
        _heat(axes[0, c], m.float(), title=f"mask\n{label}", cmap="Greys", vmax=1.0)
        q, k = torch.randn(1, nq, 8, generator=g), torch.randn(1, nk, 8, generator=g)
        w = attention_weights(q, k, causal=align)[0]
        im = _heat(axes[1, c], w, title=f"attention weights\n{label}", vmax=1.0)
    _colorbar(fig, im, axes[1])
    fig.suptitle("Look-ahead masks (black = may attend) and the attention weights they allow")
    return fig


def figure_scaling(seed: int = 0):
    """Softmax of ``qᵀk`` vs ``qᵀk/√d``: without the scale, large ``d`` saturates the softmax."""
    plt = pyplot()
    g = torch.Generator().manual_seed(seed)
    dims = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    nk, trials = 16, 200
    res = {"unscaled": [], "scaled": []}
    for d in dims:
        q = torch.randn(trials, 1, d, generator=g)
        k = torch.randn(trials, nk, d, generator=g)
        for name, score in (("unscaled", "dot"), ("scaled", "scaled_dot")):
            w = attention_weights(q, k, score=score)
            res[name].append(float(w.max(-1).values.mean()))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    ax.semilogx(dims, res["unscaled"], "o-", label="qᵀk", base=2)
    ax.semilogx(dims, res["scaled"], "s-", label="qᵀk / √d", base=2)
    ax.axhline(1 / nk, color="grey", ls=":", label="uniform (1/16)")
    ax.set_xlabel("d (query/key size)")
    ax.set_ylabel("mean of the largest weight")
    ax.set_title("Softmax saturation vs d (16 keys)")
    ax.legend()
    q = torch.randn(1, 1, 512, generator=g)
    k = torch.randn(1, nk, 512, generator=g)
    for ax, (name, score) in zip(axes[0, 1:], (("qᵀk, d = 512", "dot"),
                                               ("qᵀk / √d, d = 512", "scaled_dot"))):
        w = attention_weights(q, k, score=score)[0, 0]
        ax.bar(range(nk), w.numpy(), color="tab:red")
        ax.set_xticks(range(0, nk, 3))
        ax.set_ylim(0, 1)
        ax.set_xlabel("key")
        ax.set_ylabel("weight")
        ax.set_title(name)
    fig.suptitle("The effect of 1/√d: scores of unit-variance inputs have variance d")
    return fig


def figure_positional_encoding(num_hiddens: int = 32, num_steps: int = 60):
    """The sinusoidal encoding of "Attention Is All You Need" §3.5."""
    from ..nn.positional import sinusoidal_table

    plt = pyplot()
    P = sinusoidal_table(num_steps, num_hiddens)  # (num_steps, num_hiddens)
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.5), squeeze=False, layout="constrained")
    im = axes[0, 0].imshow(P.T.numpy(), cmap="RdBu", aspect="auto", vmin=-1, vmax=1)
    axes[0, 0].set_xlabel("position")
    axes[0, 0].set_ylabel("encoding dimension")
    axes[0, 0].set_title("PE(pos, 2i) = sin(pos / 10000^(2i/d)),  PE(pos, 2i+1) = cos(...)")
    _colorbar(fig, im, axes[0, 0], label="value")
    for col in (6, 7, 8, 9):
        axes[0, 1].plot(range(num_steps), P[:, col].numpy(), label=f"col {col}")
    axes[0, 1].set_xlabel("position")
    axes[0, 1].set_title("Columns 6–9: frequency falls along the encoding dimension")
    axes[0, 1].legend()
    fig.suptitle(f"Sinusoidal positional encoding, d = {num_hiddens}")
    return fig


def figure_lr_schedule(steps: int = 20000):
    """``lr = d_model^-0.5 · min(step^-0.5, step · warmup^-1.5)`` for several settings."""
    from ..train.schedule import noam_lr

    plt = pyplot()
    fig, axes = plt.subplots(1, 1, figsize=(8, 4.5), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    xs = list(range(1, steps + 1, 20))
    for d_model, warmup in ((512, 4000), (512, 8000), (256, 4000), (128, 2000)):
        ax.plot(xs, [noam_lr(s, d_model=d_model, warmup=warmup) for s in xs],
                label=f"d_model={d_model}, warmup={warmup}")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("Warmup schedule: linear rise, then 1/√step decay (peak at step = warmup)")
    ax.legend()
    return fig


_STYLES = [("-", "o"), ("--", "s"), ("-.", "^"), (":", "D"), ((0, (5, 1, 1, 1)), "v")]


def _distinct_curves(values: dict[str, list[float]]) -> list[tuple[str, list[float]]]:
    """Curves with equal values merged into one, labelled ``a = b = c``: the legend
    then lists exactly the lines one can see."""
    merged: dict[tuple, list[str]] = {}
    for name, ys in values.items():
        merged.setdefault(tuple(round(y, 9) for y in ys), []).append(name)
    return [(" = ".join(names), list(ys)) for ys, names in merged.items()]


def _cost_lines(ax, xs, values: dict[str, list[float]]) -> None:
    for (label, ys), (ls, marker) in zip(_distinct_curves(values), _STYLES):
        ax.loglog(xs, ys, linestyle=ls, marker=marker, ms=4, label=label, base=2)


def figure_cost(measure: bool = True):
    """Peak memory vs N and FLOPs vs d for each score (the cost model), with measured
    peak memory of the reference implementation at small N as points. Scores whose
    curves coincide share one line, named ``a = b = …`` in the legend."""
    from ..functional import attention
    from ..scores import Additive

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), squeeze=False, layout="constrained")
    ns = [64, 128, 256, 512, 1024, 2048, 4096]
    _cost_lines(axes[0, 0], ns, {score: [attention_cost(
        score, batch=1, num_queries=n, num_keys=n, query_size=64,
        num_hiddens=64).peak_bytes / 2**20 for n in ns] for score in SCORES})
    if measure:
        mn = [64, 128, 256]
        q = {n: torch.randn(1, n, 64) for n in mn}
        add = Additive(64, 64, 64)
        for score, s in (("scaled_dot", "scaled_dot"), ("additive", add)):
            pts = [peak_memory_bytes(lambda n=n, s=s: attention(q[n], q[n], q[n], score=s,
                                                              backend="reference")) / 2**20
                   for n in mn]
            axes[0, 0].loglog(mn, pts, "k^", base=2, ms=7, mfc="none",
                              label="measured (scaled_dot, additive)"
                              if score == "scaled_dot" else None)
    axes[0, 0].set_xlabel("N = Nq = Nk")
    axes[0, 0].set_ylabel("peak memory of intermediates (MiB)")
    axes[0, 0].set_title("Memory grows with N² (additive: N²·h)")
    axes[0, 0].legend(fontsize=8)
    ds = [16, 32, 64, 128, 256, 512]
    _cost_lines(axes[0, 1], ds, {score: [attention_cost(
        score, batch=1, num_queries=1024, num_keys=1024, query_size=d,
        num_hiddens=d).flops / 1e9 for d in ds] for score in SCORES})
    axes[0, 1].set_xlabel("d (= Dq = Dk = Dv; additive h = d)")
    axes[0, 1].set_ylabel("GFLOP at N = 1024")
    axes[0, 1].set_title("Compute grows linearly with d")
    axes[0, 1].legend(fontsize=8)
    fig.suptitle("Cost of the reference attention (attnkit cost); "
                 "scores with the same cost share a line")
    return fig


def _integer_steps(ax, rows) -> None:
    """Steps are whole numbers: integer ticks, and a window around a lone step."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    steps = sorted({r["step"] for r in rows if "step" in r})
    if len(steps) == 1:
        ax.set_xlim(steps[0] - 1, steps[0] + 1)


def read_log(log: str | Path) -> list[dict]:
    """The records of a training log (JSON lines). A last line without its line break
    (a training still writing it) is left out with a note on stderr; any other line
    that is no JSON object is refused, naming the file and the line.

    Raises:
        ValueError: naming ``log`` and the line number.
    """
    try:
        text = Path(log).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = Path(log).read_bytes()[:e.start].count(b"\n") + 1
        raise ValueError(f"{log}: line {line} is not UTF-8 text (byte {e.object[e.start]:#04x}"
                         "); expected a training log (metrics.jsonl)") from None
    lines = text.split("\n")
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines):  # no line break after it: still being written
                print(f"note: {log}: line {i} is incomplete (a training still writing "
                      "it?); plotted the records before it", file=sys.stderr)
                break
            raise ValueError(f"{log}: line {i} is not a JSON record: {e}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{log}: line {i}: expected a JSON object, got "
                             f"{type(row).__name__}")
        rows.append(row)
    return rows


def _finite(pts: list, ax, key: str) -> list:
    """The points of ``pts`` with a finite value; each NaN / infinite one is marked on
    ``ax`` instead: a red cross at the bottom, labelled with the key and value."""
    bad = [(step, v) for step, v in pts if isinstance(v, float) and not math.isfinite(v)]
    for step, v in bad:
        ax.annotate(f"{key}={v}", (step, 0), xycoords=("data", "axes fraction"),
                    xytext=(0, 4), textcoords="offset points", color="red", fontsize=8,
                    ha="center")
        ax.plot([step], [0], "x", color="red", transform=ax.get_xaxis_transform())
    return [(step, v) for step, v in pts if not (isinstance(v, float) and not math.isfinite(v))]


def figure_curves(log: str | Path):
    """Training curves from a training log (JSON lines with ``step`` and metrics);
    non-finite values are marked in red with their value."""
    plt = pyplot()
    rows = read_log(log)
    if not rows:
        raise ValueError(f"log {str(log)!r} has no records")
    keys = [k for k in ("loss", "val_loss", "ppl", "lr", "tokens_per_s", "val_bleu",
                        "val_exact_match") if any(k in r for r in rows)]
    if not keys:
        raise ValueError(f"log {str(log)!r} has none of the known metrics (loss, lr, ...)")
    groups = [[k for k in keys if k in ("loss", "val_loss")], [k for k in keys if k == "ppl"],
              [k for k in keys if k == "lr"], [k for k in keys if k == "tokens_per_s"],
              [k for k in keys if k in ("val_bleu", "val_exact_match")]]
    groups = [g for g in groups if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False,
                             layout="constrained")
    for ax, group in zip(axes[0], groups):
        for k in group:
            pts = [(r["step"], r[k]) for r in rows if k in r and "step" in r]
            pts = _finite(pts, ax, k)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-" if len(pts) > 20 else "-o",
                    label=k)
            if len(pts) == 1:
                ax.annotate(f"{pts[0][1]:.4g} (one record)", pts[0], xytext=(6, 6),
                            textcoords="offset points", fontsize=9)
        _integer_steps(ax, rows)
        ax.set_xlabel("step")
        ax.set_title(", ".join(group))
        if group == ["ppl"]:
            ax.set_yscale("log")
        ax.legend()
    fig.suptitle(f"Training curves: {Path(log).name}")
    return fig


_KIND_AXES = {  # kind -> (title, query axis, key axis)
    "encoder_self": ("encoder self-attention", "query: source token", "key: source token"),
    "decoder_self": ("decoder self-attention", "query: target token", "key: target token"),
    "cross": ("cross-attention", "query: target token", "key: source token"),
}


def _plain(token: str) -> str:
    """A whitespace token shown as its character (tokenizers print it as ``' '``)."""
    return " " if token.isspace() or (len(token) > 2 and token[1:-1].isspace()
                                      and token[0] == token[-1] in "'\"") else token


def _sentence(tokens: list[str] | None, limit: int = 60) -> str:
    """Tokens as one readable string: characters joined as they are, pieces by spaces."""
    if not tokens:
        return ""
    words = [_plain(t) for t in tokens if not (t.startswith("<") and t.endswith(">"))]
    text = ("".join(words) if all(len(t) == 1 for t in words) else " ".join(words))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _tick_labels(tokens: list[str], max_labels: int = 24, width: int = 6):
    """Positions and labels for an axis: long labels truncated, every k-th shown."""
    step = max(1, -(-len(tokens) // max_labels))
    pos = list(range(0, len(tokens), step))
    labels = [(t if len(t) <= width else t[:width - 1] + "…").replace(" ", "␣")
              for t in (_plain(tokens[i]) for i in pos)]
    return pos, labels


def _token_axes(ax, yt, xt):
    for axis, toks in ((ax.xaxis, xt), (ax.yaxis, yt)):
        pos, labels = _tick_labels(toks)
        axis.set_ticks(pos, labels)
        axis.set_tick_params(labelsize=8 if len(toks) <= 16 else 7)
        if axis is ax.xaxis and max(map(len, labels), default=0) > 2:  # words, not characters
            axis.set_tick_params(labelrotation=60)


def figure_attention_maps(captures: dict[str, torch.Tensor], src_tokens: list[str],
                          tgt_tokens: list[str] | None = None, *, max_heads: int = 8,
                          title: str | None = None):
    """Per-layer, per-head maps of captured weights (rows: layers of each kind;
    columns: heads), tokens on the axes, one 0–1 colour scale for all panels.

    Every panel names its kind, layer and head and labels its query and key
    axes; the title names the sentence pair (``title`` overrides it). Long token
    lists are thinned and long tokens truncated so tick labels stay readable.
    """
    from .explorer import records_from_captures

    plt = pyplot()
    records = records_from_captures(captures)
    if not records:
        raise ValueError("captures is empty: nothing to draw")
    heads = min(max_heads, max(r.weights.shape[0] for r in records))
    fig, axes = plt.subplots(len(records), heads, squeeze=False,
                             figsize=(2.9 * heads + 1.5, 2.9 * len(records) + 1.0),
                             layout="constrained")
    toks = {"encoder_self": (src_tokens, src_tokens), "decoder_self": (tgt_tokens, tgt_tokens),
            "cross": (tgt_tokens, src_tokens)}
    im = None
    for r_i, rec in enumerate(records):
        yt, xt = toks[rec.kind]
        name, ylabel, xlabel = _KIND_AXES[rec.kind]
        for h in range(heads):
            ax = axes[r_i, h]
            if h >= rec.weights.shape[0]:
                ax.axis("off")
                continue
            im = _heat(ax, rec.weights[h], title=f"{name}\nlayer {rec.layer}, head {h}",
                       vmax=1.0, xlabel=xlabel, ylabel=ylabel if h == 0 else "")
            if xt is not None and yt is not None:
                _token_axes(ax, yt, xt)
    _colorbar(fig, im, axes, label="attention weight (0–1, same scale in every panel)")
    pair = _sentence(src_tokens) + (f"  →  {_sentence(tgt_tokens)}" if tgt_tokens else "")
    fig.suptitle(title if title is not None else f"Attention of every layer and head: {pair!r}")
    return fig


FIGURES: dict[str, Callable] = {
    "masked-softmax": figure_masked_softmax,
    "scores": figure_scores,
    "causal-mask": figure_causal_mask,
    "scaling": figure_scaling,
    "positional-encoding": figure_positional_encoding,
    "lr-schedule": figure_lr_schedule,
    "cost": figure_cost,
    "curves": figure_curves,
    "attention-maps": figure_attention_maps,
}

#: figures that need inputs (a training log; a model and a sentence pair)
NEEDS_INPUT = ("curves", "attention-maps")


def plot(name: str, out_dir: str | Path = "figures", *, formats=("png", "svg"),
         **kwargs) -> list[Path]:
    """Render figure ``name`` to ``out_dir/name.{png,svg}``; return the paths."""
    check_choice("figure name", name, sorted(FIGURES))
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise ValueError(f"formats must be among png, svg, pdf; got {bad}")
    fig = FIGURES[name](**kwargs)
    paths = []
    for i, fmt in enumerate(formats):
        path = Path(out_dir) / f"{name}.{fmt}"
        if i == len(formats) - 1:
            paths.append(save_figure(fig, path, dpi=DPI, tight=False))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=DPI)
            paths.append(path)
    return paths
