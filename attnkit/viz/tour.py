"""A tour of the five scoring functions on the book's toy example (d2l §11.3).

Batch of 2, one query each, 10 key–value pairs, valid lengths 2 and 6: the
first sequence may attend to its first 2 keys, the second to its first 6.
Prints shapes and weights and writes one heatmap PNG per scoring function,
all on the same 0–1 colour scale; a dashed line (explained in each figure's
legend) marks where a sequence's valid keys end.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..functional import attention, attention_weights
from ..scores import Additive, Bilinear, Distance, Dot, ScaledDot


def toy_inputs(seed: int = 0):
    """The book's shapes: queries (2, 1, 2), keys (2, 10, 2), values (2, 10, 4)."""
    g = torch.Generator().manual_seed(seed)
    queries = torch.normal(0, 1, (2, 1, 2), generator=g)
    keys = torch.normal(0, 1, (2, 10, 2), generator=g)
    values = torch.normal(0, 1, (2, 10, 4), generator=g)
    return queries, keys, values, torch.tensor([2, 6])


def tour_scores(query_size: int = 2, key_size: int = 2, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return {
        "dot": Dot(),
        "scaled_dot": ScaledDot(),
        "bilinear": Bilinear(query_size, key_size),
        "additive": Additive(8, query_size, key_size),
        "distance": Distance(sigma=1.0),
    }


def run_tour(out_dir: str | Path = "attnkit-demo", *, seed: int = 0, quiet: bool = False) -> dict:
    """Run every score on the toy example; return ``{name: png_path}``."""
    from .heatmap import save_figure, show_heatmaps

    say = (lambda *a: None) if quiet else print
    out_dir = Path(out_dir)
    queries, keys, values, valid_lens = toy_inputs(seed)
    say(f"queries {tuple(queries.shape)}  keys {tuple(keys.shape)}  "
        f"values {tuple(values.shape)}  valid_lens {valid_lens.tolist()}")
    written = {}
    with torch.no_grad():
        for name, score in tour_scores(seed=seed).items():
            out = attention(queries, keys, values, score=score, valid_lens=valid_lens)
            w = attention_weights(queries, keys, score=score, valid_lens=valid_lens)
            say(f"\n{name:<10} output {tuple(out.shape)}  weights {tuple(w.shape)}")
            for b in range(w.shape[0]):
                row = " ".join(f"{x:.2f}" for x in w[b, 0].tolist())
                say(f"  batch {b} (valid {int(valid_lens[b])}): {row}")
            titles = [f"{name}: sequence {b}" for b in range(w.shape[0])]
            # one 0–1 scale in every file, so a shade means the same weight in all of them
            fig = show_heatmaps(w.unsqueeze(1), titles=titles, valid_lens=valid_lens.tolist(),
                                suptitle=f"{name} attention weights", vmax=1.0)
            written[name] = save_figure(fig, out_dir / f"scores-{name}.png")
    say(f"\nwrote {len(written)} heatmaps to {out_dir}/")
    return written
