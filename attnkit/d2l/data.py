"""The book's English–French data (d2l §10.5), its vocabulary, downloads and BLEU (§10.7).

:class:`MTFraEng` reads ``<root>/fra-eng/fra.txt`` (``root='../data'``, the
book's default) when it is there and fetches nothing; otherwise it downloads
``fra-eng.zip`` from ``d2l.DATA_URL`` (the book's address; assign another to
``d2l.DATA_URL``, or set ``ATTNKIT_D2L_DATA_URL`` before the import), checks
the book's SHA-1 and unpacks it. The preprocessing, tokenization, vocabulary
(``min_freq=2``, tokens in sorted order) and arrays are the book's, so its
indices, shapes and translations come out the same.

:func:`download` writes to a temporary name in the target folder and renames
it only after the checksum is verified: an interrupted or corrupted download
leaves nothing that a later run would take for the file. Without a network
it raises :class:`DownloadError` whose one-line message names the URL, the
file that would do instead and where to put it; uncaught, a program (or a
notebook) shows that line alone, without a traceback.
"""

from __future__ import annotations

import collections
import hashlib
import math
import os
import re
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile

import torch

from .._io import file_digest
from .framework import DataModule

__all__ = ["DATA_URL", "DownloadError", "MTFraEng", "Vocab", "bleu", "download", "extract"]

DATA_URL = os.environ.get("ATTNKIT_D2L_DATA_URL", "http://d2l-data.s3-accelerate.amazonaws.com/")
FRA_ENG_SHA1 = "94646ad1522d915e7b0f9296181140edcf86a4f5"  # the book's fra-eng.zip
_ARCHIVES = (".zip", ".tar", ".gz", ".tgz")


class DownloadError(OSError):
    """A file could not be fetched, or what came was not the file that was asked for.

    Its message is the whole story (the URL, why, which file to put where), so
    where nothing catches it, it is shown as that one line, without the
    traceback: by the hook below in a program, by IPython through
    ``_render_traceback_`` in a notebook. The exit status stays 1.
    """

    def _render_traceback_(self) -> list[str]:
        return [_one_line(self)]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _show_download_errors_in_one_line(previous):
    """``sys.excepthook`` that prints an uncaught :class:`DownloadError` as one line and
    hands every other exception to ``previous``."""
    def hook(kind, value, tb):
        if isinstance(value, DownloadError):
            print(_one_line(value), file=sys.stderr)
        else:
            previous(kind, value, tb)
    hook.shows_download_errors = True
    return hook


if not getattr(sys.excepthook, "shows_download_errors", False):
    sys.excepthook = _show_download_errors_in_one_line(sys.excepthook)


def _data_url() -> str:
    """``d2l.DATA_URL`` as the caller left it (``d2l.DATA_URL = …`` takes effect here)."""
    package = sys.modules.get(__package__)
    return getattr(package, "DATA_URL", DATA_URL)


def _stem(path: str) -> str:
    """``folder/fra-eng`` for ``folder/fra-eng.zip``: where an archive unpacks to."""
    base = path
    for ext in (".tar.gz", ".tgz", ".zip", ".tar", ".gz"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def _sha1(path: str) -> str:
    return file_digest(path, "sha1")


def download(url: str, folder: str = "../data", sha1_hash: str | None = None) -> str:
    """Fetch ``url`` into ``folder`` and return the local path ``folder/<name>``.

    Nothing is fetched when that file is already there (and, with
    ``sha1_hash``, has that SHA-1), or when it is an archive whose unpacked
    folder (``folder/fra-eng`` for ``fra-eng.zip``) is already there. The
    download goes to a temporary file, is checked against ``sha1_hash``, and
    only then takes the file's name. A progress bar is shown on a terminal.

    Raises:
        DownloadError: the server cannot be reached or refuses (the message
            names the URL and the file to put in place instead), or the SHA-1
            differs (it names both; the download is discarded).
    """
    os.makedirs(folder, exist_ok=True)
    name = url.rstrip("/").split("/")[-1]
    fname = os.path.join(folder, name)
    if os.path.isfile(fname) and (sha1_hash is None or _sha1(fname) == sha1_hash):
        return fname
    if fname.endswith(_ARCHIVES) and not os.path.exists(fname) and os.path.isdir(_stem(fname)):
        return fname  # already unpacked; extract() leaves the folder as it is
    part = _fetch(url, folder, name, sha1_hash, announce=f"Downloading {fname} from {url}...")
    os.replace(part, fname)
    return fname


def _offline_hint(url: str, folder: str, name: str, sha1_hash: str | None) -> str:
    check = f" (sha1 {sha1_hash})" if sha1_hash else ""
    unpacked = (f", or its unpacked folder {os.path.basename(_stem(name))}/ there"
                if name.endswith(_ARCHIVES) else "")
    return f"cannot download {url}: {{}}; put {name}{check} in {folder}/{unpacked}"


def _fetch(url: str, folder: str, name: str, sha1_hash: str | None, announce: str) -> str:
    """Stream ``url`` into a temporary file in ``folder``; its path once the SHA-1 holds."""
    hint = _offline_hint(url, folder, name, sha1_hash)
    fd, part = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, hint, announce)
        if sha1_hash is not None and digest != sha1_hash:
            raise DownloadError(f"{url}: checksum mismatch: expected sha1 {sha1_hash}, "
                                f"got {digest}; the download was discarded")
    except BaseException:
        os.unlink(part)
        raise
    return part


def _stream(url: str, out, hint: str, announce: str) -> str:
    """Copy the body of ``url`` to ``out``; its SHA-1. Network errors become one line.

    ``announce`` goes to standard error once the server answers, so that without a
    network the error is the only line."""
    digest = hashlib.sha1()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            print(announce, file=sys.stderr)
            total = int(response.headers.get("Content-Length") or 0) or None
            with _download_bar(total, url) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as e:
        raise DownloadError(hint.format(f"HTTP {e.code} {e.reason}")) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(hint.format(reason)) from None
    return digest.hexdigest()


def _download_bar(total: int | None, url: str):
    """A byte progress bar on a terminal's standard error; a silent one elsewhere."""
    from tqdm import tqdm

    quiet = not (sys.stderr is not None and sys.stderr.isatty())
    return tqdm(total=total, unit="B", unit_scale=True, desc=url.split("/")[-1],
                file=sys.stderr, disable=quiet)


def extract(filename: str, folder: str | None = None) -> str:
    """Unpack the zip or tar archive ``filename`` into ``folder`` (default: its own
    folder) and return that folder. An archive that is gone but whose unpacked
    folder is there (see :func:`download`) is left as it is."""
    if not filename.endswith(_ARCHIVES):
        raise ValueError(f"extract: filename must be a .zip, .tar or .gz archive; "
                         f"got {filename!r}")
    folder = os.path.dirname(filename) if folder is None else folder
    if not os.path.exists(filename) and os.path.isdir(_stem(filename)):
        return folder
    if filename.endswith(".zip"):
        with zipfile.ZipFile(filename) as archive:
            _extract_zip(archive, folder)
    else:
        with tarfile.open(filename) as archive:
            safe = getattr(tarfile, "data_filter", None)  # no paths outside folder
            archive.extractall(folder, **({"filter": safe} if safe else {}))
    return folder


def _extract_zip(archive: zipfile.ZipFile, folder: str) -> None:
    """Each member to a temporary name, then renamed: a killed run leaves no half file.
    Member paths are kept inside ``folder`` (``..`` and leading ``/`` are dropped)."""
    for member in archive.infolist():
        parts = [p for p in member.filename.replace("\\", "/").split("/")
                 if p not in ("", ".", "..")]
        if not parts:
            continue
        path = os.path.join(folder, *parts)
        if member.is_dir():
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, part = tempfile.mkstemp(prefix=".extract.", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "wb") as out, archive.open(member) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
        except BaseException:
            os.unlink(part)
            raise
        os.replace(part, path)


class Vocab:
    """A vocabulary of tokens (d2l §9.2): ``vocab[token]`` → index (``<unk>``'s for an
    unknown token; lists map element-wise), ``vocab.to_tokens(indices)``.

    ``Vocab(tokens=[], min_freq=0, reserved_tokens=[])``: ``tokens`` is a list
    of tokens or of lists of tokens; the vocabulary holds ``<unk>``, the
    reserved tokens and every token seen at least ``min_freq`` times, in sorted
    order (so the indices do not depend on the data's order).
    """

    def __init__(self, tokens=(), min_freq=0, reserved_tokens=()):
        tokens = list(tokens)
        if tokens and isinstance(tokens[0], list):
            tokens = [token for line in tokens for token in line]
        counter = collections.Counter(tokens)
        self.token_freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        kept = {token for token, freq in self.token_freqs if freq >= min_freq}
        self.idx_to_token = sorted(kept | {"<unk>"} | set(reserved_tokens))
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if not isinstance(tokens, list | tuple):
            return self.token_to_idx.get(tokens, self.unk)
        return [self.__getitem__(token) for token in tokens]

    def to_tokens(self, indices):
        """Tokens of a sequence of indices (a list), or the token of one index."""
        if hasattr(indices, "__len__") and len(indices) > 1:
            return [self.idx_to_token[int(index)] for index in indices]
        if hasattr(indices, "__len__"):
            return self.idx_to_token[int(indices[0])]
        return self.idx_to_token[int(indices)]

    @property
    def unk(self) -> int:
        """The index of ``<unk>``."""
        return self.token_to_idx["<unk>"]


class MTFraEng(DataModule):
    """English–French sentence pairs (d2l §10.5), as arrays of token indices.

    ``MTFraEng(batch_size, num_steps=9, num_train=512, num_val=128)`` reads the
    first ``num_train + num_val`` pairs of ``<root>/fra-eng/fra.txt`` (``root``
    is ``'../data'``, the book's, unless given as a keyword; English and French
    are the first two tab-separated columns, so Tatoeba's current file with its
    attribution column reads as the book's), pads or trims
    every sentence to ``num_steps`` tokens (the target after ``<bos>``), and
    builds ``src_vocab`` and ``tgt_vocab`` (tokens seen at least twice).

    ``arrays = (src (n, num_steps), tgt_in (n, num_steps), src_valid_len (n,),
    label (n, num_steps))``; ``train_dataloader()`` / ``val_dataloader()``
    give minibatches of those four, ``build(src_sentences, tgt_sentences)``
    makes the same arrays for new sentences with the same vocabularies.
    """

    def __init__(self, batch_size, num_steps=9, num_train=512, num_val=128, *,
                 root="../data"):
        super().__init__(root=root)
        self.save_hyperparameters()
        self.arrays, self.src_vocab, self.tgt_vocab = self._build_arrays(self._download())

    def _path(self):
        return os.path.join(self.root, "fra-eng", "fra.txt")

    def _download(self):
        """The text of ``fra.txt``, fetched and unpacked first if it is not there."""
        path = self._path()
        if not os.path.isfile(path):
            try:
                fname = download(_data_url() + "fra-eng.zip", self.root, FRA_ENG_SHA1)
            except DownloadError as e:
                raise DownloadError(f"{e} (MTFraEng reads {path})") from None
            extract(fname)
        # utf-8-sig: a byte-order mark (a file saved by Windows Notepad) is not part of
        # the first English word; text mode reads CRLF line ends as the book's "\n"
        with open(path, encoding="utf-8-sig") as f:
            return f.read()

    def _preprocess(self, text):
        """Lower case; non-breaking spaces become spaces; a space goes before each
        ``, . ! ?`` that follows anything but a space."""
        text = text.replace("\u202f", " ").replace("\xa0", " ")
        return re.sub(r"(?<=[^ ])([,.!?])", r" \1", text.lower())

    def _tokenize(self, text, max_examples=None):
        """Source and target token lists (each ending in ``<eos>``) of the tab-separated
        lines, reading no further than line ``max_examples``.

        The first two columns are the pair: Tatoeba's current ``fra.txt`` adds a
        third, the attribution, which the book's two-column test would drop
        with every line. Lines without a tab are skipped, as in the book."""
        src, tgt = [], []
        for i, line in enumerate(text.split("\n")):
            if max_examples and i > max_examples:
                break
            parts = line.split("\t")
            if len(parts) >= 2:
                src.append([t for t in f"{parts[0]} <eos>".split(" ") if t])
                tgt.append([t for t in f"{parts[1]} <eos>".split(" ") if t])
        return src, tgt

    def _build_arrays(self, raw_text, src_vocab=None, tgt_vocab=None):
        src, tgt = self._tokenize(self._preprocess(raw_text), self.num_train + self.num_val)
        if not src:  # every later step would fail on an empty array, far from the cause
            where = "the sentences given" if src_vocab is not None else self._path()
            raise ValueError(f"MTFraEng: no 'English<TAB>French' line in {where}")
        src_array, src_vocab, src_valid_len = self._build_array(src, src_vocab)
        tgt_array, tgt_vocab, _ = self._build_array(tgt, tgt_vocab, True)
        return ((src_array, tgt_array[:, :-1], src_valid_len, tgt_array[:, 1:]),
                src_vocab, tgt_vocab)

    def _build_array(self, sentences, vocab, is_tgt=False):
        """Indices ``(n, num_steps (+1 for targets))``, the vocabulary, valid lengths."""
        t = self.num_steps
        sentences = [s[:t] if len(s) > t else s + ["<pad>"] * (t - len(s)) for s in sentences]
        if is_tgt:
            sentences = [["<bos>"] + s for s in sentences]
        if vocab is None:
            vocab = Vocab(sentences, min_freq=2)
        array = torch.tensor([vocab[s] for s in sentences])
        valid_len = (array != vocab["<pad>"]).type(torch.int32).sum(1)
        return array, vocab, valid_len

    def get_dataloader(self, train):
        idx = slice(0, self.num_train) if train else slice(self.num_train, None)
        return self.get_tensorloader(self.arrays, train, idx)

    def build(self, src_sentences, tgt_sentences):
        """The four arrays of new sentence pairs, with this data set's vocabularies."""
        raw_text = "\n".join(f"{s}\t{t}" for s, t in zip(src_sentences, tgt_sentences))
        arrays, _, _ = self._build_arrays(raw_text, self.src_vocab, self.tgt_vocab)
        return arrays


def bleu(pred_seq: str, label_seq: str, k: int) -> float:
    """The book's BLEU (d2l eq. 10.7.1) of two space-separated token strings.

    ``exp(min(0, 1 − len_label / len_pred)) · Π_{n=1..k} p_n^(1/2^n)``, with
    ``p_n`` the clipped n-gram precision of the prediction (n up to its length).
    """
    pred, label = pred_seq.split(" "), label_seq.split(" ")
    score = math.exp(min(0, 1 - len(label) / len(pred)))
    for n in range(1, min(k, len(pred)) + 1):
        available = collections.Counter(tuple(label[i:i + n]) for i in range(len(label) - n + 1))
        matches = 0
        for i in range(len(pred) - n + 1):
            gram = tuple(pred[i:i + n])
            if available[gram] > 0:
                matches += 1
                available[gram] -= 1
        score *= math.pow(matches / (len(pred) - n + 1), math.pow(0.5, n))
    return score
