"""attnkit.d2l data (d2l §10.5): Vocab, MTFraEng, download and extract (local server), BLEU."""

import hashlib
import http.server
import io
import math
import os
import threading
import zipfile

import pytest
import torch

from attnkit import d2l

from .._data import TATOEBA

PAIRS = ["Go.\tVa !", "Hi.\tSalut !", "Hi.\tSalut.", "Run!\tCours\u202f!", "Run!\tCourez\xa0!",
         "Wow!\tÇa alors\u202f!", "I lost.\tJ'ai perdu.", "I'm home.\tJe suis chez moi.",
         "He's calm.\tIl est calme.", "Go.\tBouge !"]
TEXT = "\n".join(PAIRS) + "\n"


def make_zip(text=TEXT) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fra-eng/", "")
        z.writestr("fra-eng/fra.txt", text)
    return buf.getvalue()


class Server:
    """An HTTP server on 127.0.0.1 in a thread, serving ``files`` (path -> bytes)."""

    def __init__(self, files):
        self.files, self.requests = files, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def data_url(monkeypatch):
    """Point d2l.DATA_URL at ``url`` for one test (the book's code reads it at call time)."""
    def set_url(url):
        monkeypatch.setattr(d2l, "DATA_URL", url)
    return set_url


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there once the socket is closed


def test_vocab_is_the_books():
    vocab = d2l.Vocab([["b", "a", "b"], ["c", "a", "d"]], min_freq=2, reserved_tokens=["<pad>"])
    assert vocab.idx_to_token == ["<pad>", "<unk>", "a", "b"]  # sorted; c, d seen once
    assert len(vocab) == 4 and vocab.unk == 1
    assert vocab["b"] == 3 and vocab["zzz"] == 1 and vocab[["a", ("b", "q")]] == [2, [3, 1]]
    assert vocab.to_tokens(torch.tensor([3, 2, 0])) == ["b", "a", "<pad>"]
    assert vocab.to_tokens(2) == "a" and vocab.to_tokens(torch.tensor([3])) == "b"
    assert vocab.token_freqs[0] in (("b", 2), ("a", 2))


def test_preprocess_spaces_punctuation_like_the_book(tmp_path):
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text(TEXT, encoding="utf-8")
    data = d2l.MTFraEng(2, root=str(tmp_path))
    # the book: lower case, NBSPs to spaces, a space before , . ! ? unless one is there
    assert data._preprocess("Wait...\u202fHi,you!\xa0Ok ?\nGo.") == \
        "wait . . . hi ,you ! ok ?\ngo ."
    # a third column (Tatoeba's attribution) is left out; a line without a tab is skipped
    assert data._tokenize("a b.\tc d\nno tab\ne\tf\tg\nx\ty", max_examples=None) == (
        [["a", "b.", "<eos>"], ["e", "<eos>"], ["x", "<eos>"]],
        [["c", "d", "<eos>"], ["f", "<eos>"], ["y", "<eos>"]])


def test_mtfraeng_reads_a_local_fra_txt_and_fetches_nothing(tmp_path, data_url):
    data_url(closed_port_url())  # a fetch would fail
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text(TEXT, encoding="utf-8")
    data = d2l.MTFraEng(batch_size=3, num_steps=5, num_train=6, num_val=4, root=str(tmp_path))
    src, tgt, src_valid_len, label = data.arrays
    assert src.shape == (10, 5) and tgt.shape == (10, 5) and label.shape == (10, 5)
    assert src_valid_len.tolist() == [3, 3, 3, 3, 3, 3, 4, 4, 4, 3]  # "i'm home . <eos>" …
    assert data.src_vocab.to_tokens(src[0]) == ["go", ".", "<eos>", "<pad>", "<pad>"]
    assert data.tgt_vocab.to_tokens(tgt[0]) == ["<bos>", "<unk>", "!", "<eos>", "<pad>"]
    assert torch.equal(tgt[:, 1:], label[:, :-1])
    assert data.tgt_vocab["va"] == data.tgt_vocab.unk  # seen once: below min_freq=2
    assert data.tgt_vocab["salut"] != data.tgt_vocab.unk
    batches = list(data.train_dataloader())
    assert [b[0].shape[0] for b in batches] == [3, 3] and len(data.val_dataloader()) == 2
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == sorted(src[:6].tolist())
    s, t, vl, _ = data.build(["hi ."], ["salut ."])
    assert data.src_vocab.to_tokens(s[0])[:3] == ["hi", ".", "<eos>"] and vl.tolist() == [3]


def test_download_fetches_checks_and_extracts_from_a_local_server(tmp_path, data_url):
    payload = make_zip()
    sha1 = hashlib.sha1(payload).hexdigest()
    with Server({"/fra-eng.zip": payload}) as server:
        data_url(server.url)
        fname = d2l.download(d2l.DATA_URL + "fra-eng.zip", str(tmp_path), sha1)
        assert fname == os.path.join(str(tmp_path), "fra-eng.zip")
        assert open(fname, "rb").read() == payload
        d2l.extract(fname)
        assert (tmp_path / "fra-eng" / "fra.txt").read_text(encoding="utf-8") == TEXT
        assert d2l.download(server.url + "fra-eng.zip", str(tmp_path), sha1) == fname
        assert server.requests == ["/fra-eng.zip"]  # the second call found the file
    assert sorted(os.listdir(tmp_path)) == ["fra-eng", "fra-eng.zip"]  # no temporary files


def test_mtfraeng_downloads_when_fra_txt_is_missing(tmp_path, data_url, monkeypatch):
    payload = make_zip()
    monkeypatch.setattr("attnkit.d2l.data.FRA_ENG_SHA1", hashlib.sha1(payload).hexdigest())
    with Server({"/fra-eng.zip": payload}) as server:
        data_url(server.url)
        data = d2l.MTFraEng(batch_size=2, num_train=6, num_val=4, root=str(tmp_path))
        d2l.MTFraEng(batch_size=2, num_train=6, num_val=4, root=str(tmp_path))
        assert server.requests == ["/fra-eng.zip"]
    assert data.arrays[0].shape == (10, 9)


def test_a_download_with_the_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, data_url):
    payload = make_zip()
    actual = hashlib.sha1(payload).hexdigest()
    with Server({"/fra-eng.zip": payload}) as server:
        data_url(server.url)
        with pytest.raises(d2l.DownloadError) as err:
            d2l.MTFraEng(batch_size=2, root=str(tmp_path))
    message = str(err.value)
    assert "94646ad1522d915e7b0f9296181140edcf86a4f5" in message and actual in message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []  # no zip, no temporary file, no fra-eng folder


def test_without_a_network_one_line_says_what_to_fetch_and_where_to_put_it(tmp_path, data_url):
    url = closed_port_url()
    data_url(url)
    root = str(tmp_path / "data")
    with pytest.raises(d2l.DownloadError) as err:
        d2l.MTFraEng(batch_size=2, root=root)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot download {url}fra-eng.zip: ")
    assert f"put fra-eng.zip (sha1 94646ad1522d915e7b0f9296181140edcf86a4f5) in {root}/" \
        in message and "fra-eng/" in message
    assert message.endswith(f"(MTFraEng reads {os.path.join(root, 'fra-eng', 'fra.txt')})")
    assert os.listdir(root) == []


def test_tatoebas_three_column_fra_txt_reads_as_its_first_two_columns(tmp_path):
    """Tatoeba's current fra.txt has an attribution column; the book's test of two columns
    dropped every line of it and MTFraEng ended in an IndexError deep in torch."""
    attributed = "".join(f"{line}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}\n"
                         for i, line in enumerate(TEXT.splitlines()))
    arrays = {}
    for name, text in (("two", TEXT), ("three", attributed)):
        (tmp_path / name / "fra-eng").mkdir(parents=True)
        (tmp_path / name / "fra-eng" / "fra.txt").write_text(text, encoding="utf-8")
        arrays[name] = d2l.MTFraEng(batch_size=2, num_train=6, num_val=4,
                                    root=str(tmp_path / name)).arrays
    assert all(torch.equal(a, b) for a, b in zip(arrays["two"], arrays["three"]))


def test_a_fra_txt_saved_with_a_bom_and_crlf_reads_as_the_plain_one(tmp_path):
    arrays = {}
    for name, data in (("plain", TEXT.encode()),
                       ("windows", b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())):
        (tmp_path / name / "fra-eng").mkdir(parents=True)
        (tmp_path / name / "fra-eng" / "fra.txt").write_bytes(data)
        arrays[name] = d2l.MTFraEng(batch_size=2, num_train=6, num_val=4,
                                    root=str(tmp_path / name)).arrays
    assert all(torch.equal(a, b) for a, b in zip(arrays["plain"], arrays["windows"]))


def test_a_fra_txt_without_pairs_is_named_in_one_line(tmp_path):
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text("no tab here\n\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        d2l.MTFraEng(batch_size=2, root=str(tmp_path))
    assert str(err.value) == ("MTFraEng: no 'English<TAB>French' line in "
                              f"{os.path.join(str(tmp_path), 'fra-eng', 'fra.txt')}")


def test_a_program_without_network_or_data_ends_in_one_line(tmp_path):
    """What the README promises: the book's program, no network, no fra.txt: exit 1 and one
    line on standard error saying which file to put where, no traceback."""
    import subprocess
    import sys

    from tests.d2l.test_framework_progress import environment

    work = tmp_path / "work"
    work.mkdir()
    (work / "program.py").write_text("from attnkit import d2l\n"
                                     "data = d2l.MTFraEng(batch_size=128)\n")
    url = closed_port_url()
    proc = subprocess.run([sys.executable, "program.py"], capture_output=True, text=True,
                          cwd=work, env={**environment(), "ATTNKIT_D2L_DATA_URL": url},
                          timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"DownloadError: cannot download {url}fra-eng.zip: ")
    assert "put fra-eng.zip (sha1 94646ad1522d915e7b0f9296181140edcf86a4f5) in ../data/" \
        in proc.stderr
    assert os.listdir(tmp_path / "data") == []


def test_other_uncaught_errors_keep_their_traceback(tmp_path):
    import subprocess
    import sys

    from tests.d2l.test_framework_progress import environment

    (tmp_path / "program.py").write_text("from attnkit import d2l\nraise KeyError('x')\n")
    proc = subprocess.run([sys.executable, "program.py"], capture_output=True, text=True,
                          cwd=tmp_path, env=environment(), timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback") and proc.stderr.endswith("KeyError: 'x'\n")


def test_a_missing_file_on_the_server_is_named_with_its_http_status(tmp_path):
    with Server({}) as server, pytest.raises(d2l.DownloadError, match="HTTP 404"):
        d2l.download(server.url + "nothing.zip", str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_extract_keeps_member_paths_inside_the_folder(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("../../escape.txt", "x")
        z.writestr("a/b.txt", "y")
    (tmp_path / "in").mkdir()
    archive = tmp_path / "in" / "evil.zip"
    archive.write_bytes(buf.getvalue())
    d2l.extract(str(archive))
    assert (tmp_path / "in" / "escape.txt").read_text() == "x"
    assert (tmp_path / "in" / "a" / "b.txt").read_text() == "y"
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(ValueError, match="must be a .zip, .tar or .gz archive; got 'x.rar'"):
        d2l.extract("x.rar")


def test_bleu_is_the_books_formula():
    assert d2l.bleu("il est calme .", "il est calme .", k=2) == 1.0
    # a prefix: brevity penalty exp(1 - 4/2), every n-gram matches
    assert math.isclose(d2l.bleu("je suis", "je suis chez moi", k=2), math.exp(-1))
    # one of two unigrams and no bigram match: zero
    assert d2l.bleu("va x", "va !", k=2) == 0.0
    # p1 = 2/3 (clipped: "a" counted once), p2 = 1/2; weights 1/2 and 1/4
    expected = (2 / 3) ** 0.5 * (1 / 2) ** 0.25
    assert math.isclose(d2l.bleu("a a b", "a b c", k=2), expected)
    assert math.isclose(d2l.bleu("a a b", "a b c", k=1), (2 / 3) ** 0.5)


def test_a_download_shows_a_progress_bar_on_a_terminal_only(tmp_path):
    import subprocess
    import sys

    from tests.d2l.test_framework_progress import environment, run_on_a_terminal

    payload = make_zip() * 50  # big enough for a few blocks; its checksum is not asked for
    with Server({"/fra-eng.zip": payload}) as server:
        script = tmp_path / "get.py"
        script.write_text("from attnkit import d2l\n"
                          f"d2l.download({server.url + 'fra-eng.zip'!r}, 'data')\n")
        shown = run_on_a_terminal(script).decode(errors="replace")
        assert "fra-eng.zip" in shown and "100%" in shown
        (tmp_path / "data" / "fra-eng.zip").unlink()
        piped = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                               env=environment(), cwd=tmp_path, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "%" not in piped.stderr and piped.stdout == ""
    assert piped.stderr.strip() == f"Downloading data/fra-eng.zip from {server.url}fra-eng.zip..."
    assert (tmp_path / "data" / "fra-eng.zip").read_bytes() == payload


def book_preprocess(text):
    """The book's character loop (d2l §10.5), restated: the oracle of the regex version."""
    text = text.replace("\u202f", " ").replace("\xa0", " ")
    lowered = text.lower()
    return "".join(" " + c if i > 0 and c in ",.!?" and text[i - 1] != " " else c
                   for i, c in enumerate(lowered))


def test_preprocess_equals_the_books_loop_on_the_tatoeba_pairs(tmp_path):
    shared = TATOEBA
    if not shared.is_file():
        pytest.skip(f"needs the shared data: {shared} is absent")
    text = "\n".join("\t".join(line.split("\t")[:2])
                     for line in shared.read_text(encoding="utf-8").splitlines())
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "fra.txt").write_text(text, encoding="utf-8")
    data = d2l.MTFraEng(batch_size=4, root=str(tmp_path))
    assert data._preprocess(text) == book_preprocess(text)
    assert data._preprocess(TEXT + "Oh,no!!..?") == book_preprocess(TEXT + "Oh,no!!..?")
    # the book reads lines 0 … num_train + num_val: 641 pairs, 129 of them for validation
    assert len(data.src_vocab) > 100 and data.arrays[0].shape == (641, 9)
