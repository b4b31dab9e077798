"""The attention explorer: the HTML it writes, its validation, and the page in a real browser."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.viz.explorer import (
    EXACT_CELLS,
    MAX_TOKENS,
    AttentionRecord,
    check_sentence_lengths,
    explorer_html,
    records_from_captures,
    write_explorer,
)

# Distinct odd sizes per axis, so a transposed axis cannot pass.
N_SRC, N_TGT, H, LAYERS = 5, 7, 4, 2
SRC = ["the", "cat", "<sat>", "on", "mats"]
TGT = ["<bos>", "le", "chat", "s'est", "assis", "&", "."]
KIND_SHAPES = {  # kind -> (Nq, Nk)
    "encoder_self": (N_SRC, N_SRC),
    "decoder_self": (N_TGT, N_TGT),
    "cross": (N_TGT, N_SRC),
}
ATOL = 5e-6  # weights <= 1 are written with 5 significant digits
DATA_RE = re.compile(r'<script type="application/json" id="attnkit-data">(.*?)</script>', re.S)


def softmax_weights(seed: int, h: int, nq: int, nk: int) -> torch.Tensor:
    """(h, nq, nk) random rows that sum to 1, sharp enough that heads differ visibly."""
    gen = torch.Generator().manual_seed(seed)
    return (3.0 * torch.randn(h, nq, nk, generator=gen)).softmax(dim=-1)


def full_records() -> list[AttentionRecord]:
    records = []
    for k, (kind, (nq, nk)) in enumerate(KIND_SHAPES.items()):
        for layer in range(LAYERS):
            w = softmax_weights(10 * k + layer, H, nq, nk)
            records.append(AttentionRecord(kind=kind, layer=layer, weights=w))
    return records


def embedded_data(text: str) -> dict:
    match = DATA_RE.search(text)
    assert match is not None, "the page has no attnkit-data script"
    return json.loads(match.group(1))


def record_of(records, kind: str, layer: int) -> AttentionRecord:
    return next(r for r in records if r.kind == kind and r.layer == layer)


# ------------------------------------------------------------------- Python side --


def test_embedded_json_matches_tensors():
    records = full_records()
    data = embedded_data(explorer_html(records, SRC, TGT, title="demo"))
    assert data["src_tokens"] == SRC and data["tgt_tokens"] == TGT and data["title"] == "demo"
    assert [(r["kind"], r["layer"]) for r in data["records"]] == [
        (r.kind, r.layer) for r in records
    ]
    for rec, got in zip(records, data["records"], strict=True):
        np.testing.assert_allclose(got["weights"], rec.weights.numpy(), atol=ATOL, rtol=0)


def test_tiny_weights_stay_nonzero_and_zeros_stay_exact():
    w = torch.tensor([[[0.5, 0.5, 0.0], [1e-9, 1.0 - 1e-9, 0.0], [0.0, 0.0, 0.0]]])  # (1, 3, 3)
    data = embedded_data(explorer_html([AttentionRecord("encoder_self", 0, w)], ["a", "b", "c"]))
    (head,) = data["records"][0]["weights"]
    assert head[1][0] == pytest.approx(1e-9, rel=1e-5)  # not rounded away to a "masked" 0
    assert [row[2] for row in head] == [0.0, 0.0, 0.0] and head[2] == [0.0, 0.0, 0.0]


def test_records_are_sorted_by_kind_then_layer():
    records = full_records()
    data = embedded_data(explorer_html(records[::-1], SRC, TGT))
    assert [(r["kind"], r["layer"]) for r in data["records"]] == [
        (r.kind, r.layer) for r in records
    ]


def test_page_is_self_contained():
    text = explorer_html(full_records(), SRC, TGT)
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", text)
    assert "__ATTNKIT_" not in text  # every placeholder filled


def test_tokens_and_title_are_escaped():
    nasty = ["</script><img src=x onerror=alert(1)>", "<!--", "a\u2028b", ""]
    w = softmax_weights(0, 1, 4, 4)
    text = explorer_html([AttentionRecord("encoder_self", 0, w)], nasty, title="<b>x</b> & y")
    assert text.count("</script>") == 2  # the data script and the code script, nothing else
    assert "<title>&lt;b&gt;x&lt;/b&gt; &amp; y</title>" in text
    data = embedded_data(text)
    assert data["src_tokens"] == nasty and data["title"] == "<b>x</b> & y"


def test_encoder_only():
    w = softmax_weights(1, 3, N_SRC, N_SRC)
    data = embedded_data(explorer_html([AttentionRecord("encoder_self", 0, w)], SRC))
    assert data["tgt_tokens"] is None
    assert [r["kind"] for r in data["records"]] == ["encoder_self"]


def test_write_explorer(tmp_path):
    records = full_records()
    out = write_explorer(tmp_path / "sub" / "page.html", records, SRC, TGT, title="t")
    assert isinstance(out, Path) and out.is_file()
    assert out.read_text(encoding="utf-8") == explorer_html(records, SRC, TGT, title="t")


def test_lazy_package_exports():
    import attnkit.viz
    from attnkit.viz import explorer

    assert attnkit.viz.write_explorer is explorer.write_explorer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        attnkit.viz.nope  # noqa: B018


W_ENC = softmax_weights(2, 2, N_SRC, N_SRC)
W_CROSS = softmax_weights(3, 2, N_TGT, N_SRC)


@pytest.mark.parametrize(
    ("records", "src", "tgt", "match"),
    [
        (
            [AttentionRecord("encoder_self", 0, W_ENC)],
            SRC[:4],
            None,
            r"src_tokens has 4 tokens but records\[0\] \('encoder_self' layer 0\) has 5 queries: "
            r"weights \(H, Nq, Nk\) = \(2, 5, 5\)",
        ),
        (
            [AttentionRecord("cross", 0, W_CROSS)],
            SRC,
            TGT[:6],
            r"tgt_tokens has 6 tokens but records\[0\] \('cross' layer 0\) has 7 queries",
        ),
        (
            [AttentionRecord("cross", 0, W_CROSS)],
            SRC + ["extra"],
            TGT,
            r"src_tokens has 6 tokens but records\[0\] \('cross' layer 0\) has 5 keys",
        ),
        (
            [AttentionRecord("cross", 0, W_CROSS)],
            SRC,
            None,
            r"tgt_tokens is required for 'cross' records: records\[0\] \(layer 0\) "
            r"has weights \(H, Nq, Nk\) = \(2, 7, 5\)",
        ),
        ([], SRC, None, r"records must hold at least 1 AttentionRecord, got 0"),
        (
            [AttentionRecord("encoder_self", 0, W_ENC)] * 2,
            SRC,
            None,
            r"records\[1\] repeats kind 'encoder_self' layer 0",
        ),
        ([AttentionRecord("encoder_self", 0, W_ENC)], [], None, r"src_tokens must hold at least 1"),
    ],
)
def test_explorer_html_validation(records, src, tgt, match):
    with pytest.raises(ValueError, match=match):
        explorer_html(records, src, tgt)


@pytest.mark.parametrize(
    ("records", "src", "match"),
    [
        ("not a list", SRC, r"records must be a list of AttentionRecord, got str"),
        ([W_ENC], SRC, r"records\[0\] must be an AttentionRecord, got Tensor"),
        ([AttentionRecord("encoder_self", 0, W_ENC)], "the cat", r"src_tokens must be a list"),
        (
            [AttentionRecord("encoder_self", 0, W_ENC)],
            ["a", 1, "b", "c", "d"],
            r"src_tokens\[1\] must be a str, got int",
        ),
    ],
)
def test_explorer_html_type_errors(records, src, match):
    with pytest.raises(TypeError, match=match):
        explorer_html(records, src)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kind": "self"}, ValueError, r"kind must be one of .*'encoder_self'.*got 'self'"),
        ({"layer": -1}, ValueError, r"layer must be a non-negative int; got -1"),
        ({"layer": 1.0}, TypeError, r"layer must be a non-negative int; got 1.0"),
        ({"weights": torch.ones(5, 5)}, ValueError, r"shape \(H, Nq, Nk\), got \(5, 5\)"),
        ({"weights": torch.ones(2, 0, 5)}, ValueError, r"H, Nq, Nk >= 1, got \(2, 0, 5\)"),
        ({"weights": torch.ones(1, 2, 3, dtype=torch.long)}, TypeError, r"floating.*torch.int64"),
        ({"weights": torch.full((1, 2, 3), float("nan"))}, ValueError, r"must be finite"),
        ({"weights": -torch.ones(1, 2, 3)}, ValueError, r"weights must be >= 0, got min -1"),
    ],
)
def test_attention_record_validation(kwargs, error, match):
    args = {"kind": "encoder_self", "layer": 0, "weights": W_ENC} | kwargs
    with pytest.raises(error, match=match):
        AttentionRecord(**args)


def test_records_from_captures_mapping():
    batch = 3
    enc0 = softmax_weights(4, H, N_SRC, N_SRC).expand(batch, -1, -1, -1).clone()
    enc0[1:] = 0  # batch elements other than 0 must be ignored
    enc1 = softmax_weights(5, batch * H, N_SRC, N_SRC).reshape(batch, H, N_SRC, N_SRC)
    dec_self = softmax_weights(6, H, N_TGT, N_TGT)  # already (H, Nq, Nk)
    cross = softmax_weights(7, batch * H, N_TGT, N_SRC).reshape(batch, H, N_TGT, N_SRC)
    captures = {
        "decoder.blocks.0.cross_attention": cross,
        "encoder.blocks.1.attention": enc1,
        "decoder.blocks.0.self_attention": dec_self,
        "encoder.blocks.0.attention": enc0,
    }
    records = records_from_captures(captures)
    assert [(r.kind, r.layer) for r in records] == [
        ("encoder_self", 0),
        ("encoder_self", 1),
        ("decoder_self", 0),
        ("cross", 0),
    ]
    for rec, expected in zip(records, [enc0[0], enc1[0], dec_self, cross[0]], strict=True):
        assert torch.equal(rec.weights, expected)
    explorer_html(records, SRC, TGT)  # the shapes fit the tokens


def test_records_from_captures_lone_encoder_or_decoder():
    """A stack captured on its own has no "encoder."/"decoder." prefix."""
    records = records_from_captures(
        {"blocks.1.cross_attention": W_CROSS, "blocks.0.attention": W_ENC}
    )
    assert [(r.kind, r.layer) for r in records] == [("encoder_self", 0), ("cross", 1)]


def test_records_from_captures_single_head_decoder():
    w = softmax_weights(8, 2, N_TGT, N_SRC)  # (B, Nq, Nk)
    (rec,) = records_from_captures({"decoder.attention": w})
    assert (rec.kind, rec.layer, rec.shape) == ("cross", 0, (1, N_TGT, N_SRC))
    assert torch.equal(rec.weights[0], w[0])
    (rec2,) = records_from_captures({"decoder.attention": w[1]})  # (Nq, Nk)
    assert torch.equal(rec2.weights[0], w[1])


@pytest.mark.parametrize(
    ("captures", "error", "match"),
    [
        (
            {"encoder.layers.0.attn": W_ENC},
            ValueError,
            r"captures key 'encoder.layers.0.attn' is not an attention module name; "
            r"expected 'encoder\.blocks\.\{i\}\.attention'.*'decoder\.attention'",
        ),
        (
            {"encoder.blocks.0.attention": torch.ones(5, 5)},
            ValueError,
            r"captures\['encoder.blocks.0.attention'\] must have shape \(B, H, Nq, Nk\) or "
            r"\(H, Nq, Nk\), got \(5, 5\)",
        ),
        (
            {"decoder.attention": torch.ones(1, 2, 3, 4)},
            ValueError,
            r"captures\['decoder.attention'\] must have shape \(B, Nq, Nk\) or \(Nq, Nk\)",
        ),
        (
            {"encoder.blocks.0.attention": torch.ones(0, 2, 3, 3)},
            ValueError,
            r"empty batch",
        ),
        (
            {"decoder.attention": W_CROSS[0], "decoder.blocks.0.cross_attention": W_CROSS},
            ValueError,
            r"captures\['decoder.blocks.0.cross_attention'\] duplicates cross layer 0 "
            r"\(already given by 'decoder.attention'\)",
        ),
        ({"decoder.attention": [[0.5, 0.5]]}, TypeError, r"must be a torch.Tensor; got list"),
    ],
)
def test_records_from_captures_errors(captures, error, match):
    with pytest.raises(error, match=match):
        records_from_captures(captures)


# ------------------------------------------------------------------ long inputs --

LONG = 2_000  # tokens per sentence of the synthetic long capture
LONG_HEADS = 2
#: Bound on the page of a 2,000-token pair (3 kinds × 2 heads), with room to spare
#: (BENCHMARKS.md, "The explorer's page size", has what it is); a page inlining every
#: weight as JSON would be hundreds of MB.
LONG_PAGE_BYTES = 1_000_000


def decode(weights) -> np.ndarray:
    """The page's decoding of one record's weights: (H, Nq, Nk)."""
    if isinstance(weights, list):
        return np.asarray(weights)
    import base64

    h, nq, nk = weights["shape"]
    heads = [np.frombuffer(base64.b64decode(d), dtype=np.uint8).reshape(nq, nk) * (s / 255)
             for d, s in zip(weights["data"], weights["scales"], strict=True)]
    return np.stack(heads)


@pytest.fixture(scope="module")
def long_capture():
    """A 2,000-token pair with every kind captured: (records, src, tgt)."""
    src = [f"s{i}" for i in range(LONG)]
    tgt = [f"t{i}" for i in range(LONG)]
    records = [AttentionRecord(kind, 0, softmax_weights(40 + i, LONG_HEADS, LONG, LONG))
               for i, kind in enumerate(KIND_SHAPES)]
    return records, src, tgt


def test_long_pair_page_is_small_and_says_what_was_cut(long_capture):
    records, src, tgt = long_capture
    text = explorer_html(records, src, tgt)
    assert len(text.encode("utf-8")) < LONG_PAGE_BYTES
    data = embedded_data(text)
    assert data["src_tokens"] == src[:MAX_TOKENS] and data["tgt_tokens"] == tgt[:MAX_TOKENS]
    assert data["total_tokens"] == {"src": LONG, "tgt": LONG}
    notes = " ".join(data["reduced"])
    assert f"first {MAX_TOKENS:,} of the {LONG:,} source tokens" in notes
    assert f"first {MAX_TOKENS:,} of the {LONG:,} target tokens" in notes
    assert "8 bits" in notes  # 3 × 2 × 128² weights > EXACT_CELLS
    for rec, got in zip(records, data["records"], strict=True):
        want = rec.weights[:, :MAX_TOKENS, :MAX_TOKENS].numpy()
        step = want.max(axis=(1, 2), keepdims=True) / 255  # (H, 1, 1)
        # half a step, or one step where a tiny weight was kept nonzero
        assert (np.abs(decode(got["weights"]) - want) <= step * (1 + 1e-6)).all()


def test_quantized_weights_keep_zeros_and_tiny_weights():
    w = torch.full((1, 400, 400), 1 / 398)  # (H, Nq, Nk): 160,000 weights > EXACT_CELLS
    w[0, :, :2] = 0.0
    w[0, 5, 2] = 1e-9
    assert w.numel() > EXACT_CELLS
    toks = [f"x{i}" for i in range(400)]
    data = embedded_data(explorer_html([AttentionRecord("encoder_self", 0, w)], toks,
                                       max_tokens=400))
    got = decode(data["records"][0]["weights"])
    assert (got[0, :, :2] == 0).all() and got[0, 5, 2] > 0
    assert data["reduced"] == [
        "Weights are stored with 8 bits per head: steps of 1/255 of the head's largest "
        "weight; exact zeros stay 0 and no nonzero weight is rounded to 0."
    ]


def test_short_pages_say_nothing_was_cut():
    data = embedded_data(explorer_html(full_records(), SRC, TGT))
    assert data["reduced"] == [] and data["total_tokens"] == {"src": N_SRC, "tgt": N_TGT}


@pytest.mark.parametrize("max_tokens", [0, -3, 2.5, True])
def test_max_tokens_validation(max_tokens):
    with pytest.raises(ValueError, match=r"max_tokens must be a positive int; got "):
        explorer_html(full_records(), SRC, TGT, max_tokens=max_tokens)


@pytest.mark.parametrize("src_len,tgt_len,match", [
    (2345, 10, r"the source sentence has 2,345 tokens \(with EOS\), more than the 1,024 "
               r"positions .* at most 1,024 tokens"),
    (10, 1025, r"the target sentence has 1,025 tokens \(with BOS\), more than the 1,024"),
])
def test_too_long_sentences_name_their_length_and_the_limit(src_len, tgt_len, match):
    with pytest.raises(ValueError, match=match):
        check_sentence_lengths(src_len, tgt_len, 1024)
    check_sentence_lengths(1024, 1024, 1024)
    check_sentence_lengths(src_len, tgt_len, None)  # no positional table: no limit


# ---------------------------------------------------------------- in the browser --


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """The HTML files the browser tests open, written once per module."""
    root = tmp_path_factory.mktemp("explorer")
    records = full_records()
    empty_row = softmax_weights(9, 2, N_TGT, N_SRC)
    empty_row[:, 3] = 0.0  # query 3 has nothing to attend to
    nasty = ["<img src=x onerror=window.pwned=1>", "</script>", "a b", "", "ok"]
    return {
        "records": records,
        "full": write_explorer(root / "full.html", records, SRC, TGT),
        "encoder": write_explorer(
            root / "encoder.html",
            [AttentionRecord("encoder_self", 0, softmax_weights(11, 3, N_SRC, N_SRC))],
            SRC,
        ),
        "empty_row": write_explorer(
            root / "empty_row.html", [AttentionRecord("cross", 0, empty_row)], SRC, TGT
        ),
        "nasty": write_explorer(
            root / "nasty.html",
            [AttentionRecord("encoder_self", 0, softmax_weights(12, 1, 5, 5))],
            nasty,
        ),
        "nasty_tokens": nasty,
    }


MAIN = '[data-testid="main-view"]'


def cell_attrs(page) -> tuple[list[float], list[str]]:
    """(data-w, fill) of every heatmap cell, row-major."""
    return page.eval_on_selector_all(
        f"{MAIN} rect.cell",
        "cells => [cells.map(c => Number(c.dataset.w)), cells.map(c => c.getAttribute('fill'))]",
    )


def test_page_loads_and_lists_what_is_there(open_page, pages):
    page, log = open_page(pages["full"])
    api = page.evaluate(
        """() => {
          const x = window.attnkitExplorer;
          return {kinds: x.kinds, layers: x.kinds.map(k => x.numLayers(k)),
                  heads: x.kinds.map(k => x.numHeads(k)), state: x.state};
        }"""
    )
    assert api["kinds"] == list(KIND_SHAPES)
    assert api["layers"] == [LAYERS] * 3 and api["heads"] == [H] * 3
    assert api["state"]["kind"] == "encoder_self"
    assert page.eval_on_selector_all("#kind-select option", "os => os.map(o => o.value)") == list(
        KIND_SHAPES
    )
    assert page.locator("#src-chips .chip").count() == N_SRC
    assert page.locator("#tgt-chips .chip").count() == N_TGT
    assert page.title() == "attnkit attention explorer"
    assert log.console_errors == [] and log.page_errors == []


@pytest.mark.parametrize("kind", list(KIND_SHAPES))
def test_layers_heads_and_cells_per_kind(open_page, pages, kind):
    page, _ = open_page(pages["full"])
    page.select_option("#kind-select", kind)
    nq, nk = KIND_SHAPES[kind]
    assert page.evaluate("window.attnkitExplorer.state.kind") == kind
    assert page.locator("#layer-select option").count() == LAYERS
    assert page.locator("#head-select option").count() == H
    assert page.locator('[data-testid="head-thumb"]').count() == H
    assert page.locator(f"{MAIN} .tok-q").count() == nq
    assert page.locator(f"{MAIN} .tok-k").count() == nk
    page.select_option("#layer-select", "1")
    page.select_option("#head-select", "2")
    weights, _ = cell_attrs(page)
    expected = record_of(pages["records"], kind, 1).weights[2]
    np.testing.assert_allclose(np.reshape(weights, (nq, nk)), expected.numpy(), atol=ATOL)
    assert page.get_attribute(MAIN, "data-layer") == "1"


def test_changing_head_changes_the_drawing(open_page, pages):
    page, _ = open_page(pages["full"])
    main = page.locator(MAIN)
    w0, fill0 = cell_attrs(page)
    shot0 = main.screenshot()
    page.select_option("#head-select", "1")
    assert page.evaluate("window.attnkitExplorer.state.head") == 1
    w1, fill1 = cell_attrs(page)
    expected = record_of(pages["records"], "encoder_self", 0).weights
    np.testing.assert_allclose(np.reshape(w0, (N_SRC, N_SRC)), expected[0].numpy(), atol=ATOL)
    np.testing.assert_allclose(np.reshape(w1, (N_SRC, N_SRC)), expected[1].numpy(), atol=ATOL)
    assert fill0 != fill1
    assert main.screenshot() != shot0
    assert page.get_attribute(MAIN, "data-head") == "1"


def test_overview_thumbnail_selects_head(open_page, pages):
    page, _ = open_page(pages["full"])
    page.select_option("#kind-select", "cross")
    thumbs = page.locator('[data-testid="head-thumb"]')
    assert thumbs.count() == H
    thumbs.nth(3).click()
    assert page.evaluate("window.attnkitExplorer.state.head") == 3
    assert page.input_value("#head-select") == "3"
    pressed = page.eval_on_selector_all(
        '[data-testid="head-thumb"]', "ts => ts.map(t => t.getAttribute('aria-pressed'))"
    )
    assert pressed == ["false", "false", "false", "true"]
    # Each thumbnail draws its own head: the canvases differ.
    pixels = page.eval_on_selector_all(
        '[data-testid="head-thumb"] canvas', "cs => cs.map(c => c.toDataURL())"
    )
    assert len(set(pixels)) == H


def test_keyboard_changes_head_layer_and_view(open_page, pages):
    page, _ = open_page(pages["full"])
    state = "window.attnkitExplorer.state"
    page.locator("h1").click()  # focus on the page, not on a control
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"{state}.head") == 2
    page.keyboard.press("ArrowDown")
    assert page.evaluate(f"{state}.layer") == 1
    assert page.input_value("#layer-select") == "1"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowUp")
    assert page.evaluate(f"[{state}.layer, {state}.head]") == [0, 1]
    page.keyboard.press("v")
    assert page.evaluate(f"{state}.view") == "lines"
    assert page.locator(f"{MAIN} line.link").count() == N_SRC * N_SRC


def test_layer_and_head_buttons_step_and_stop_at_the_ends(open_page, pages):
    page, _ = open_page(pages["full"])
    state = "window.attnkitExplorer.state"
    for name, count in (("layer", LAYERS), ("head", H)):
        assert page.locator(f'label[for="{name}-select"]').text_content() == name.title()
        prev, nxt = page.locator(f"#{name}-prev"), page.locator(f"#{name}-next")
        assert prev.get_attribute("aria-label") == f"Previous {name}"
        assert prev.is_disabled() and nxt.is_enabled()
        for i in range(1, count):
            nxt.click()
            assert page.evaluate(f"{state}.{name}") == i
            assert page.input_value(f"#{name}-select") == str(i)
        assert nxt.is_disabled() and prev.is_enabled()
        prev.click()
        assert page.evaluate(f"{state}.{name}") == count - 2


def test_hover_query_and_key_highlight(open_page, pages):
    page, _ = open_page(pages["full"])
    page.select_option("#kind-select", "cross")
    mat = record_of(pages["records"], "cross", 0).weights[0]
    query = page.locator(f'{MAIN} .tok-q[data-index="2"]')
    query.hover()
    assert "is-highlighted" in query.get_attribute("class")
    assert page.locator(f"{MAIN} .tok.is-highlighted").count() == 1
    assert page.get_attribute(MAIN, "data-focus") == "query:2"
    assert "is-highlighted" in page.get_attribute('#tgt-chips .chip[data-index="2"]', "class")
    row = page.eval_on_selector_all(
        '[data-testid="weights-panel"] .w-item', "items => items.map(i => Number(i.dataset.w))"
    )
    np.testing.assert_allclose(row, mat[2].numpy(), atol=ATOL)
    assert page.locator("#tooltip").is_visible()
    assert f"{mat[2].max().item():.3f}" in page.inner_text("#tooltip")
    assert page.locator(f"{MAIN} .focus-layer .outline").count() == 1

    key = page.locator(f'{MAIN} .tok-k[data-index="4"]')
    key.hover()
    assert "is-highlighted" in key.get_attribute("class")
    assert "is-highlighted" not in query.get_attribute("class")
    assert page.get_attribute(MAIN, "data-focus") == "key:4"
    col = page.eval_on_selector_all(
        '[data-testid="weights-panel"] .w-item', "items => items.map(i => Number(i.dataset.w))"
    )
    np.testing.assert_allclose(col, mat[:, 4].numpy(), atol=ATOL)

    page.mouse.move(2, 2)  # leave the view: the highlight goes
    assert page.locator(f"{MAIN} .tok.is-highlighted").count() == 0
    assert page.get_attribute(MAIN, "data-focus") == ""


def test_click_pins_a_token_across_heads(open_page, pages):
    page, _ = open_page(pages["full"])
    page.locator(f'{MAIN} .tok-q[data-index="1"]').click()
    page.mouse.move(2, 2)
    assert page.get_attribute(MAIN, "data-focus") == "query:1"
    page.locator("h1").click()
    page.keyboard.press("ArrowRight")  # next head keeps the pinned row, with new values
    row = page.eval_on_selector_all(
        '[data-testid="weights-panel"] .w-item', "items => items.map(i => Number(i.dataset.w))"
    )
    expected = record_of(pages["records"], "encoder_self", 0).weights[1, 1]
    np.testing.assert_allclose(row, expected.numpy(), atol=ATOL)
    page.keyboard.press("Escape")
    assert page.get_attribute(MAIN, "data-focus") == ""
    # Tokens are focusable: keyboard focus highlights, Enter pins.
    page.focus(f'{MAIN} .tok-k[data-index="3"]')
    assert page.get_attribute(MAIN, "data-focus") == "key:3"
    page.keyboard.press("Enter")
    page.locator("h1").click()
    assert page.get_attribute(MAIN, "data-focus") == "key:3"
    assert "is-pinned" in page.get_attribute(f'{MAIN} .tok-k[data-index="3"]', "class")


def test_lines_view(open_page, pages):
    page, _ = open_page(pages["full"])
    page.select_option("#kind-select", "decoder_self")
    page.click('#view-select button[data-view="lines"]')
    assert page.get_attribute(MAIN, "data-view") == "lines"
    opacity = page.eval_on_selector_all(
        f"{MAIN} line.link", "ls => ls.map(l => Number(l.getAttribute('stroke-opacity')))"
    )
    mat = record_of(pages["records"], "decoder_self", 0).weights[0]
    # Fixed scale [0, 1]: opacity is the weight.
    np.testing.assert_allclose(np.reshape(opacity, (N_TGT, N_TGT)), mat.numpy(), atol=ATOL)
    page.locator(f'{MAIN} .tok-q[data-index="5"]').hover()
    assert page.locator(f"{MAIN} g.links.is-faded").count() == N_TGT - 1
    values = page.eval_on_selector_all(f"{MAIN} .k-val", "ts => ts.map(t => t.textContent)")
    # Shown with 3 decimals.
    np.testing.assert_allclose([float(v) for v in values], mat[5].numpy(), atol=5e-4 + ATOL)
    assert all(re.fullmatch(r"\d\.\d{3}", v) for v in values)


def test_stretch_rescales_colours(open_page, pages):
    page, _ = open_page(pages["full"])
    _, fixed = cell_attrs(page)
    page.check("#stretch-toggle")
    _, stretched = cell_attrs(page)
    head_max = record_of(pages["records"], "encoder_self", 0).weights[0].max().item()
    assert page.inner_text("#legend-max") == f"{head_max:.3f}"
    assert stretched != fixed
    assert "rgb(8,48,107)" in stretched  # the largest weight gets the darkest colour


def test_empty_row_is_marked(open_page, pages):
    page, _ = open_page(pages["empty_row"])
    flags = page.eval_on_selector_all(f"{MAIN} .tok-q", "ts => ts.map(t => t.dataset.empty)")
    assert flags == ["false"] * 3 + ["true"] + ["false"] * 3
    assert page.locator(f"{MAIN} .empty-rows rect").count() == 1
    _, fills = cell_attrs(page)
    assert fills[3 * N_SRC : 4 * N_SRC] == ["rgb(234,236,240)"] * N_SRC  # the "exactly 0" grey
    assert "rgb(234,236,240)" not in fills[: 3 * N_SRC]
    page.locator(f'{MAIN} .tok-q[data-index="3"]').hover()
    assert "Empty row" in page.inner_text('[data-testid="weights-panel"]')


def test_encoder_only_page(open_page, pages):
    page, _ = open_page(pages["encoder"])
    assert page.evaluate("window.attnkitExplorer.kinds") == ["encoder_self"]
    assert page.locator("#kind-select option").count() == 1
    assert page.is_disabled("#kind-select")
    assert page.locator("#layer-select option").count() == 1
    assert page.locator('[data-testid="head-thumb"]').count() == 3
    assert page.is_hidden("#tgt-row")


def test_tokens_are_shown_as_text(open_page, pages):
    page, _ = open_page(pages["nasty"])
    assert page.evaluate("window.pwned === undefined")
    assert page.locator("img").count() == 0
    nasty = pages["nasty_tokens"]
    labels = page.eval_on_selector_all(
        f"{MAIN} .tok-q", "ts => ts.map(t => t.lastChild.textContent)"
    )
    assert labels == [nasty[0][:15] + "…", *nasty[1:3], "∅", nasty[4]]  # "" stays visible
    titles = page.eval_on_selector_all(f"{MAIN} .tok-q title", "ts => ts.map(t => t.textContent)")
    assert titles[0].startswith(nasty[0])  # the full token on hover
    chips = page.eval_on_selector_all(
        "#src-chips .chip", "cs => cs.map(c => c.lastChild.textContent)"
    )
    assert chips == [*nasty[:3], "∅", nasty[4]]


def test_screenshot_is_a_real_picture(open_page, pages, tmp_path):
    from PIL import Image

    page, _ = open_page(pages["full"])
    page.select_option("#kind-select", "cross")
    page.locator(f'{MAIN} .tok-q[data-index="2"]').hover()
    path = tmp_path / "explorer.png"
    page.screenshot(path=str(path))
    with Image.open(io.BytesIO(path.read_bytes())) as img:
        assert img.format == "PNG" and img.size == (1280, 800)
        pixels = np.asarray(img.convert("RGB"), dtype=np.int64)  # (800, 1280, 3)
    assert pixels.std() > 0
    colours = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]  # (800, 1280)
    assert len(np.unique(colours)) > 50  # more than a flat fill


def test_long_pair_page_loads_fast_and_states_the_cut(open_page, long_capture, tmp_path):
    import time

    records, src, tgt = long_capture
    path = write_explorer(tmp_path / "long.html", records, src, tgt)
    start = time.perf_counter()
    page, _ = open_page(path)  # waits for the page's ready flag
    seconds = time.perf_counter() - start
    assert seconds < 20, f"a 2,000-token page took {seconds:.1f} s to load"  # a loose bound
    note = page.locator('[data-testid="reduced-note"]')
    assert note.is_visible()
    assert f"first {MAX_TOKENS:,} of the {LONG:,} source tokens" in note.inner_text()
    assert page.locator("#summary").inner_text().startswith(
        f"{MAX_TOKENS} of {LONG} source tokens shown")
    assert page.locator("#src-chips .chip").count() == MAX_TOKENS
    shape = page.evaluate("() => [attnkitExplorer.weights().length, "
                          "attnkitExplorer.weights()[0].length]")
    assert shape == [MAX_TOKENS, MAX_TOKENS]
    assert page.locator(f"{MAIN} rect.cell").count() == MAX_TOKENS ** 2


def test_short_page_has_no_reduction_note(open_page, pages):
    page, _ = open_page(pages["full"])
    assert not page.locator('[data-testid="reduced-note"]').is_visible()
