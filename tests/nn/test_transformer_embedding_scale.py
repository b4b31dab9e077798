"""The token embedding × √d has unit scale, so the positional encoding is not drowned."""

import torch

from attnkit.models import Transformer
from attnkit.nn.positional import sinusoidal_table
from attnkit.nn.transformer import token_embedding


def test_scaled_embedding_has_unit_variance_like_the_positional_encoding():
    for d in (64, 256, 512):
        emb = token_embedding(1000, d)
        scaled = emb.weight * d ** 0.5
        assert 0.9 < scaled.std().item() < 1.1
        pe = sinusoidal_table(50, d)
        # positions and tokens contribute comparably (within a factor of 2)
        ratio = scaled.pow(2).mean().sqrt() / pe.pow(2).mean().sqrt()
        assert 0.5 < ratio.item() < 2.0


def test_transformer_uses_the_scaled_init_for_its_embeddings():
    torch.manual_seed(0)
    m = Transformer(500, 400, num_hiddens=128, num_heads=4, ffn_num_hiddens=256,
                    num_encoder_layers=1, num_decoder_layers=1)
    for emb in (m.encoder.embed.embedding, m.decoder.embed.embedding):
        assert abs(emb.weight.std().item() - 128 ** -0.5) < 0.01
