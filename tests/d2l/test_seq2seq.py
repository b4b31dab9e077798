"""attnkit.d2l §11.4 (Bahdanau attention) against the book's step-by-step computation."""

import pytest
import torch

from attnkit import d2l
from tests.d2l.conftest import params
from tests.d2l_reference import book_bahdanau_decoder

TIGHT = dict(rtol=1e-10, atol=1e-11)


def test_books_example_shapes():
    vocab_size, embed_size, num_hiddens, num_layers = 10, 8, 16, 2
    batch_size, num_steps = 4, 7
    encoder = d2l.Seq2SeqEncoder(vocab_size, embed_size, num_hiddens, num_layers)
    decoder = d2l.Seq2SeqAttentionDecoder(vocab_size, embed_size, num_hiddens, num_layers)
    X = torch.zeros((batch_size, num_steps), dtype=torch.long)
    state = decoder.init_state(encoder(X), None)
    output, state = decoder(X, state)
    d2l.check_shape(output, (batch_size, num_steps, vocab_size))
    d2l.check_shape(state[0], (batch_size, num_steps, num_hiddens))
    d2l.check_shape(state[1][0], (batch_size, num_hiddens))
    assert isinstance(decoder, d2l.AttentionDecoder)
    assert len(decoder.attention_weights) == num_steps
    assert decoder.attention_weights[0].shape == (batch_size, 1, num_steps)


def test_encoder_is_time_major_and_reads_the_padding_like_the_book(gen):
    encoder = d2l.Seq2SeqEncoder(11, 5, 7, 3).double()
    X = torch.randint(0, 11, (3, 9), generator=gen)
    outputs, state = encoder(X, torch.tensor([9, 2, 4]))  # valid lengths are ignored
    gru = torch.nn.GRU(5, 7, 3).double()
    gru.load_state_dict({k[4:]: v for k, v in params(encoder).items() if k.startswith("rnn.")})
    book_outputs, book_state = gru(encoder.embedding(X.t()))
    torch.testing.assert_close(outputs, book_outputs, **TIGHT)
    torch.testing.assert_close(state, book_state, **TIGHT)


def test_decoder_values_attention_and_gradients_match_the_book(gen):
    V, E, D, L, B, S, T = 13, 5, 9, 2, 3, 7, 4
    encoder = d2l.Seq2SeqEncoder(V, E, D, L)
    decoder = d2l.Seq2SeqAttentionDecoder(V, E, D, L, dropout=0.1)
    src = torch.randint(0, V, (B, S), generator=gen)
    tgt = torch.randint(0, V, (B, T), generator=gen)
    lens = torch.tensor([7, 3, 1])
    decoder(tgt, decoder.init_state(encoder(src), lens))  # infers the lazy sizes
    encoder.double(), decoder.double().eval()
    with torch.no_grad():
        state = decoder.init_state(encoder(src), lens)
    ref = {k: v.requires_grad_() for k, v in params(decoder).items()}
    logits, new_state = decoder(tgt, state)
    book_logits, book_state, book_w = book_bahdanau_decoder(ref, tgt, state, L)
    torch.testing.assert_close(logits, book_logits, **TIGHT)
    torch.testing.assert_close(new_state[1], book_state[1], **TIGHT)
    for ours, book in zip(decoder.attention_weights, book_w):
        torch.testing.assert_close(ours, book, **TIGHT)
    assert torch.all(decoder.attention_weights[0][2, :, 1:] == 0)  # beyond valid_len 1
    logits.square().mean().backward()
    book_logits.square().mean().backward()
    for name, param in decoder.named_parameters():
        torch.testing.assert_close(param.grad, ref[name].grad, **TIGHT)


def _tiny_data(tmp_path):
    from tests.d2l.test_data import TEXT

    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text(TEXT * 4, encoding="utf-8")
    return d2l.MTFraEng(batch_size=8, num_steps=6, num_train=32, num_val=8, root=str(tmp_path))


@pytest.fixture
def one_thread():
    """Small models train fastest, and reproducibly, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_seq2seq_trains_on_mtfraeng_and_predicts_with_attention_weights(tmp_path, one_thread):
    torch.manual_seed(0)
    data = _tiny_data(tmp_path)
    encoder = d2l.Seq2SeqEncoder(len(data.src_vocab), 8, 16, 2, 0.1)
    decoder = d2l.Seq2SeqAttentionDecoder(len(data.tgt_vocab), 8, 16, 2, 0.1)
    model = d2l.Seq2Seq(encoder, decoder, tgt_pad=data.tgt_vocab["<pad>"], lr=0.01)
    # threads given: the default "auto" takes what the load leaves, whatever this fixture set
    d2l.Trainer(max_epochs=12, gradient_clip_val=1, num_gpus=1, threads=1).fit(model, data)
    val = model.board.data["val_loss"]
    assert len(val) == 12 and val[-1].y < val[0].y / 2
    batch = data.build(["go .", "hi ."], ["va !", "salut ."])
    preds, weights = model.predict_step(batch, d2l.try_gpu(), data.num_steps, True)
    assert preds.shape == (2, data.num_steps) and len(weights) == data.num_steps
    d2l.check_shape(weights[0][0], (2, 1, data.num_steps))
    assert torch.all(weights[0][0][:, :, 3:] == 0)  # keys past "go . <eos>" have weight 0
    translation = data.tgt_vocab.to_tokens(preds[1])
    assert translation[:2] == ["salut", "."] or translation[0] == "salut"


def test_the_books_predict_step_redefinition_reaches_seq2seq(monkeypatch):
    monkeypatch.setattr(d2l.EncoderDecoder, "predict_step", d2l.EncoderDecoder.predict_step)

    @d2l.add_to_class(d2l.EncoderDecoder)
    def predict_step(self, batch, device, num_steps, save_attention_weights=False):
        return "redefined", num_steps

    model = d2l.Seq2Seq(d2l.Encoder(), d2l.Decoder(), tgt_pad=0, lr=0.1)
    assert model.predict_step(None, d2l.cpu(), 7) == ("redefined", 7)
