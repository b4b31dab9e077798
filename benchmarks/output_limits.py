"""Time attnkit's own decoding of sentences of mixed lengths when every output runs to its
limit (the worst case for how output limits are handled): one ``translate_sentences`` call
on the first 500 Multi30k validation sentences, one thread, a d=256 3+3-layer Transformer
whose special tokens are never predicted. Prints CPU and wall seconds, output tokens and a
hash of the outputs (equal hashes: the same translations).

Usage, once per checkout being compared (alternate the runs):
    PYTHONPATH=CHECKOUT taskset -c 1 python benchmarks/output_limits.py BEAM
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import torch

from attnkit.data.tokenizer import TokenizerPair, WordTokenizer
from attnkit.decode.translator import translate_sentences
from attnkit.models import Transformer

SENTENCES = 500


def main(beam: int) -> None:
    torch.set_num_threads(1)
    root = os.path.join(os.environ.get("ATTNKIT_DATA", os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data")), "multi30k", "raw")
    src = open(os.path.join(root, "val.de"), encoding="utf-8").read().splitlines()
    tgt = open(os.path.join(root, "val.en"), encoding="utf-8").read().splitlines()
    tok = TokenizerPair(WordTokenizer.train(src), WordTokenizer.train(tgt))
    torch.manual_seed(0)
    model = Transformer(tok.src.vocab_size, tok.tgt.vocab_size, num_hiddens=256, num_heads=4,
                        ffn_num_hiddens=512, num_encoder_layers=3, num_decoder_layers=3,
                        dropout=0.0, max_len=256).eval()
    with torch.no_grad():
        model.output.bias[:4] = -1e4  # no <pad>/<unk>/<bos>/<eos>: outputs run to the limit
    wall, cpu = time.perf_counter(), time.process_time()
    out = translate_sentences(model, tok, src[:SENTENCES], beam_size=beam, positions=256)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = hashlib.sha256("\n".join(out).encode()).hexdigest()[:12]
    print(f"beam {beam}: cpu {cpu:.2f} s, wall {wall:.2f} s, "
          f"{sum(len(o.split()) for o in out)} tokens, outputs {digest}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
