"""Tokenizers: text ↔ integer ids, with one set of special ids everywhere.

Three vocabularies share one interface (:class:`Tokenizer`):

* :class:`SentencePieceTokenizer` — subwords (unigram LM or BPE) learned by the
  ``sentencepiece`` library, trained in memory from an iterable of sentences.
  Train it on source + target text for a shared vocabulary, or once per language.
* :class:`WordTokenizer` — the word-level vocabulary of "Dive into Deep Learning"
  (its ``Vocab`` class and ``preprocess``): lowercase, a space before ``, . ! ?``,
  split on spaces, keep words seen at least ``min_freq`` times.
* :class:`CharTokenizer` — one id per character, for the generated date task.

Special ids are the same for all three::

    <pad> = 0    <unk> = 1    <bos> = 2    <eos> = 3

(d2l's ``Vocab`` numbers ``<unk>`` first; the fixed layout here lets padding,
masks and checkpoints assume ``pad_id == 0`` for every tokenizer.)

``SentencePieceTokenizer.sample`` draws a segmentation at random instead (subword
regularization: Kudo 2018's sampling for a unigram model, BPE-dropout for a BPE
one); :class:`SampledPairs` draws the training pairs anew for each epoch, the same
draw for the same ``(seed, epoch)`` in any process.

``encode`` never adds ``<bos>``/``<eos>``: batching adds them where the model
needs them (see :mod:`attnkit.data.batching`). ``decode`` drops ``<pad>`` and
``<bos>`` and stops at the first ``<eos>``, so a model's raw output can be passed
in as is.

Saving writes plain files only — a ``tokenizer.json`` metadata file (its
``"type"`` field selects the class in :func:`load_tokenizer`) plus, for
SentencePiece, the ``spm.model`` protobuf. Nothing is pickled.
"""

from __future__ import annotations

import io
import json
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from .._io import read_json, write_atomic
from .._values import check_choice, check_finite, check_int, check_positive_int
from .subwords import SubwordSampler

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "METADATA_FILE",
    "PAD_ID",
    "SPECIAL_TOKENS",
    "UNK_ID",
    "CharTokenizer",
    "SampledPairs",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerPair",
    "TokenizerTrainingError",
    "WordTokenizer",
    "load_tokenizer",
]

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
#: Reserved tokens in id order (ids 0–3).
SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
#: Name of the metadata file every saved tokenizer directory contains.
METADATA_FILE = "tokenizer.json"
_FORMAT_VERSION = 1




def _write_metadata(directory: str | Path, meta: dict) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    body = {"format_version": _FORMAT_VERSION, **meta}
    write_atomic(d / METADATA_FILE, json.dumps(body, ensure_ascii=False, indent=1).encode())
    return d


def _read_metadata(directory: str | Path, expected_type: str | None = None) -> dict:
    path = Path(directory) / METADATA_FILE
    meta = read_json(path, format_version=_FORMAT_VERSION, missing=FileNotFoundError(
        f"not a saved tokenizer: {path} is missing"))
    if expected_type is not None:
        check_choice(f"{path}: type", meta.get("type"), (expected_type,))
    return meta


def _check_texts(texts: Iterable[str], name: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be an iterable of strings, got a single str")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")
    if not out:
        raise ValueError(f"{name} must contain at least one sentence, got none")
    return out


class TokenizerTrainingError(ValueError):
    """The training texts cannot make a vocabulary (all blank, all over sentencepiece's
    sentence limit, too few pieces for the size asked); the message says why, and the
    caller that knows where the texts came from adds the file."""


def _check_trainable(sentences: list[str], max_sentence_length: int) -> None:
    """The causes sentencepiece reports only as a failed internal check, said plainly."""
    if not any(s.strip() for s in sentences):
        raise TokenizerTrainingError(
            f"all {len(sentences)} training sentences are blank: sentencepiece has no "
            "characters to learn from")
    shortest = min(len(s.encode("utf-8")) for s in sentences if s.strip())
    if shortest > max_sentence_length:
        raise TokenizerTrainingError(
            f"all {len(sentences)} training sentences that are not blank are longer than "
            f"sentencepiece's limit of {max_sentence_length} bytes (the shortest has "
            f"{shortest}), and it skips longer ones: there is nothing left to learn "
            "from; are the sentences split one per line?")


class Tokenizer(ABC):
    """Interface shared by every tokenizer.

    Attributes:
        pad_id, unk_id, bos_id, eos_id: the special ids (0, 1, 2, 3).
        vocab_size: number of ids; valid ids are ``0 … vocab_size - 1``.
    """

    pad_id: int = PAD_ID
    unk_id: int = UNK_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no ``<bos>``/``<eos>`` added)."""

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; drops ``<pad>``/``<bos>``, stops at the first ``<eos>``."""

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer into ``directory`` (created if needed); return it."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Read a tokenizer written by :meth:`save`."""

    def _content_ids(self, ids: Sequence[int]) -> list[int]:
        """``ids`` up to the first ``<eos>``, without ``<pad>``/``<bos>``; validates range."""
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids must be in [0, {self.vocab_size}), got {i}")
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(i)
        return out


class _TableTokenizer(Tokenizer):
    """A tokenizer backed by an explicit list of tokens (ids 0–3 are the specials)."""

    _type = ""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIAL_TOKENS:
            raise ValueError(f"tokens must start with {SPECIAL_TOKENS}, got {tokens[:4]}")
        if len(set(tokens)) != len(tokens):
            dup = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"tokens must be unique, got duplicates {dup[:10]}")
        self.idx_to_token: list[str] = tokens
        self.token_to_idx: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.idx_to_token)

    def __len__(self) -> int:
        return self.vocab_size

    def _meta(self) -> dict:
        return {"type": self._type, "tokens": self.idx_to_token}

    def save(self, directory: str | Path) -> Path:
        return _write_metadata(directory, self._meta())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._meta() == self._meta()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]


class CharTokenizer(_TableTokenizer):
    """One id per character. Unknown characters map to ``<unk>``.

    Build it from an explicit alphabet (e.g. :func:`attnkit.data.generated.date_alphabet`)
    with ``CharTokenizer(alphabet)``, or from text with :meth:`train`.
    """

    _type = "char"

    def __init__(self, alphabet: Iterable[str]) -> None:
        chars = list(alphabet)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"alphabet must hold single characters, got {bad[:5]}")
        if len(set(chars)) != len(chars):
            raise ValueError("alphabet must not repeat characters")
        super().__init__(list(SPECIAL_TOKENS) + chars)

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The sorted set of characters in ``texts``."""
        return cls(sorted(set("".join(_check_texts(texts)))))

    def encode(self, text: str) -> list[int]:
        return [self.token_to_idx.get(c, UNK_ID) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.idx_to_token[i] for i in self._content_ids(ids))

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        meta = _read_metadata(directory, cls._type)
        return cls(meta["tokens"][len(SPECIAL_TOKENS) :])


_PUNCT_NO_SPACE = re.compile(r"(?<=\S)([,.!?])")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.!?])")


class WordTokenizer(_TableTokenizer):
    """Word-level vocabulary as in "Dive into Deep Learning" (``Vocab`` + ``preprocess``).

    Preprocessing (:meth:`preprocess`): no-break spaces (``U+00A0``, ``U+202F``)
    become spaces, text is lowercased, and a space is inserted before each
    ``, . ! ?`` not already preceded by one; the result is split on whitespace.
    ``"Va !"`` and ``"Go."`` become ``["va", "!"]`` and ``["go", "."]``.

    Vocabulary (:meth:`train`): the four special tokens, then every word seen at
    least ``min_freq`` times, most frequent first, ties broken alphabetically
    (so the ids do not depend on corpus order). Other words encode as ``<unk>``.

    ``decode`` joins words with spaces and removes the space before ``, . ! ?``
    (lowercasing is not undone).
    """

    _type = "word"

    @staticmethod
    def preprocess(text: str) -> str:
        """d2l's ``preprocess``: lowercase and space out ``, . ! ?``."""
        text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
        return _PUNCT_NO_SPACE.sub(r" \1", text)

    @classmethod
    def tokenize(cls, text: str) -> list[str]:
        """Preprocess then split on whitespace."""
        return cls.preprocess(text).split()

    @classmethod
    def train(cls, texts: Iterable[str], *, min_freq: int = 2) -> WordTokenizer:
        """Build the vocabulary of ``texts``.

        Raises:
            ValueError: if ``min_freq < 1`` or ``texts`` is empty.
        """
        check_positive_int("min_freq", min_freq)
        counts = Counter(w for t in _check_texts(texts) for w in cls.tokenize(t))
        words = sorted(
            (w for w, c in counts.items() if c >= min_freq and w not in SPECIAL_TOKENS),
            key=lambda w: (-counts[w], w),
        )
        return cls(list(SPECIAL_TOKENS) + words)

    def __init__(self, tokens: Sequence[str]) -> None:
        super().__init__(tokens)

    def encode(self, text: str) -> list[int]:
        return [self.token_to_idx.get(w, UNK_ID) for w in self.tokenize(text)]

    def decode(self, ids: Sequence[int]) -> str:
        text = " ".join(self.idx_to_token[i] for i in self._content_ids(ids))
        return _SPACE_BEFORE_PUNCT.sub(r"\1", text)

    @classmethod
    def load(cls, directory: str | Path) -> WordTokenizer:
        return cls(_read_metadata(directory, cls._type)["tokens"])


class SentencePieceTokenizer(Tokenizer):
    """Subword tokenizer backed by a trained ``sentencepiece`` model.

    Build with :meth:`train`; ``SentencePieceTokenizer(model_proto)`` wraps the
    bytes of an existing model whose special ids are pad=0, unk=1, bos=2, eos=3.
    """

    _type = "sentencepiece"
    _MODEL_FILE = "spm.model"

    def __init__(self, model_proto: bytes) -> None:
        if not isinstance(model_proto, (bytes, bytearray)):
            raise TypeError(f"model_proto must be bytes, got {type(model_proto).__name__}")
        self.model_proto = bytes(model_proto)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except RuntimeError as e:  # sentencepiece's parse error
            raise ValueError(f"model_proto is not a sentencepiece model: {e}") from None
        self._samplers: dict[float, SubwordSampler] = {}  # per alpha: its lattices kept
        got = (self._sp.pad_id(), self._sp.unk_id(), self._sp.bos_id(), self._sp.eos_id())
        if got != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise ValueError(
                f"model_proto must use special ids pad=0, unk=1, bos=2, eos=3, got {got}"
            )

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        *,
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        seed: int = 0,
        max_sentence_length: int = 4192,
    ) -> SentencePieceTokenizer:
        """Learn a subword vocabulary from ``texts`` entirely in memory.

        Args:
            texts: training sentences (for a shared vocabulary pass source and
                target sentences together).
            vocab_size: number of ids including the 4 special tokens.
            model_type: ``"unigram"`` (Kudo 2018) or ``"bpe"`` (Sennrich et al. 2016).
            character_coverage: fraction of characters covered by the
                vocabulary; 1.0 suits languages with small alphabets, 0.9995 is
                the usual choice for Chinese or Japanese.
            seed: seeds sentencepiece's random generator. Training runs on one
                thread so the same texts and arguments give byte-identical models.
            max_sentence_length: longer sentences (in bytes) are skipped by the trainer.

        Raises:
            ValueError: on a bad argument.
            TokenizerTrainingError: the texts cannot make a vocabulary (all blank, all
                longer than ``max_sentence_length``, fewer pieces than ``vocab_size``;
                the message gives the cause or sentencepiece's own words).
        """
        check_choice("model_type", model_type, ("unigram", "bpe"))
        check_int("vocab_size", vocab_size, minimum=len(SPECIAL_TOKENS) + 1)
        check_finite("character_coverage", character_coverage, above=0, maximum=1)
        sentences = _check_texts(texts)
        _check_trainable(sentences, max_sentence_length)
        spm.set_random_generator_seed(seed)
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=buf,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece="<pad>", unk_piece="<unk>", bos_piece="<bos>", eos_piece="<eos>",
                num_threads=1,
                max_sentence_length=max_sentence_length,
                minloglevel=2,
            )  # fmt: skip
        except RuntimeError as e:
            raise TokenizerTrainingError(
                f"sentencepiece training failed (vocab_size={vocab_size}): {e}") from e
        return cls(buf.getvalue())

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text))

    def sample(self, texts: Sequence[str], *, alpha: float,
               seed: int | Sequence[int]) -> list[list[int]]:
        """Ids of each of ``texts`` in a segmentation drawn at random (subword regularization).

        ``alpha`` in ``[0, 1]``: for a unigram model the smoothing exponent of Kudo (2018),
        a segmentation drawn from all of them with probability ∝ ``p(x) ** alpha`` (near 0
        nearly uniform, 1 the model's own distribution); for a BPE model the probability
        that each merge is skipped (BPE-dropout, Provilkov et al. 2020). ``alpha = 0`` is
        no sampling: ``encode``. Every segmentation decodes back to the text.

        The draw depends on ``seed`` (an int, or several: numpy's ``default_rng(seed)``)
        and ``texts`` only, in any process (see :mod:`attnkit.data.subwords` for why
        sentencepiece's own sampling is not used).
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str")
        check_finite("alpha", alpha, minimum=0, maximum=1)
        for part in [seed] if isinstance(seed, int) else seed:
            check_int("seed", part, minimum=0)
        if alpha == 0:  # off (as a smoothing exponent, 0 would be the uniform distribution)
            return [self.encode(t) for t in texts]
        if alpha not in self._samplers:
            self._samplers[alpha] = SubwordSampler(self._sp, self.model_proto, alpha)
        return self._samplers[alpha].sample(texts, np.random.default_rng(seed))

    def encode_pieces(self, text: str) -> list[str]:
        """The subword strings of ``text`` (``▁`` marks a word start)."""
        return list(self._sp.encode(text, out_type=str))

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(self._content_ids(ids))

    def save(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(d / self._MODEL_FILE, self.model_proto)
        return _write_metadata(
            d, {"type": self._type, "model_file": self._MODEL_FILE, "vocab_size": self.vocab_size}
        )

    @classmethod
    def load(cls, directory: str | Path) -> SentencePieceTokenizer:
        meta = _read_metadata(directory, cls._type)
        name = meta.get("model_file")
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"{Path(directory) / METADATA_FILE}: model_file must be a file "
                             f"name inside {directory}; got {name!r}")
        path = Path(directory) / name
        try:
            return cls(path.read_bytes())
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentencePieceTokenizer) and other.model_proto == self.model_proto

    __hash__ = None  # type: ignore[assignment]


_REGISTRY: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "sentencepiece": SentencePieceTokenizer,
}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load any tokenizer saved by ``save``, choosing the class from ``tokenizer.json``.

    Raises:
        FileNotFoundError: if ``directory`` holds no ``tokenizer.json``.
        ValueError: on an unknown ``"type"`` or format version.
    """
    kind = _read_metadata(directory).get("type")
    check_choice(f"{Path(directory) / METADATA_FILE}: type", kind, sorted(_REGISTRY))
    return _REGISTRY[kind].load(directory)


class TokenizerPair:
    """Source and target tokenizers (the same object when the vocabulary is shared).

    Saved as the source tokenizer's files in ``directory`` and, unless shared,
    the target's in ``directory/tgt``; :meth:`load` is the one reader of that
    layout.
    """

    def __init__(self, src: Tokenizer, tgt: Tokenizer) -> None:
        self.src, self.tgt = src, tgt

    @property
    def shared(self) -> bool:
        return self.src is self.tgt

    def describe(self) -> dict:
        """The ``tokenizer`` section of a run's ``config.json``."""
        kinds = {type(t).__name__ for t in (self.src, self.tgt)}
        kind = next((k for k, c in _REGISTRY.items() if c.__name__ in kinds), "unknown")
        return {"kind": kind, "shared": self.shared, "src_vocab_size": self.src.vocab_size,
                "tgt_vocab_size": self.tgt.vocab_size}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        if not self.shared:
            self.tgt.save(directory / "tgt")
        self.src.save(directory)

    @classmethod
    def load(cls, directory: str | Path) -> TokenizerPair:
        directory = Path(directory)
        src = load_tokenizer(directory)
        tgt_dir = directory / "tgt"
        return cls(src, load_tokenizer(tgt_dir) if tgt_dir.is_dir() else src)

    @classmethod
    def train(cls, kind: str, pairs: Sequence[tuple[str, str]], *, shared: bool = True,
              vocab_size: int = 8000, seed: int = 0) -> TokenizerPair:
        """Tokenizers of ``kind`` (``"char" | "word" | "sentencepiece"``) trained on ``pairs``."""
        check_choice("kind", kind, sorted(_REGISTRY))
        srcs, tgts = [s for s, _ in pairs], [t for _, t in pairs]

        def make(texts: list[str]) -> Tokenizer:
            if kind == "sentencepiece":
                return SentencePieceTokenizer.train(texts, vocab_size=vocab_size, seed=seed)
            return _REGISTRY[kind].train(texts)

        if shared:
            tok = make(srcs + tgts)
            return cls(tok, tok)
        return cls(make(srcs), make(tgts))


class SampledPairs:
    """Training pairs segmented anew for each epoch (subword regularization).

    ``SampledPairs(tokenizers, pairs, alpha=0.1, seed=0)(epoch)`` is the list of
    ``(source ids, target ids)`` of ``pairs`` for that epoch, each side drawn by
    :meth:`SentencePieceTokenizer.sample` with the seeds ``(seed, epoch, side)``:
    the same ``(seed, epoch)`` gives the same segmentation in every process, rank and
    resumed run, another epoch another one. Its ``repr`` names ``alpha`` and ``seed``
    (a :class:`~attnkit.data.batching.BucketBatcher` puts it in its fingerprint).

    Raises:
        ValueError: a tokenizer is not a :class:`SentencePieceTokenizer` (characters and
            words have one segmentation only), or ``alpha`` is outside ``[0, 1]``.
    """

    def __init__(self, tokenizers: TokenizerPair, pairs: Sequence[tuple[str, str]], *,
                 alpha: float, seed: int) -> None:
        self.alpha = check_finite("alpha", alpha, minimum=0, maximum=1)
        self.seed = check_int("seed", seed, minimum=0)
        sides = (tokenizers.src, tokenizers.tgt)
        others = sorted({type(t).__name__ for t in sides
                         if not isinstance(t, SentencePieceTokenizer)})
        if others:
            raise ValueError(f"subword sampling needs sentencepiece tokenizers; got "
                             f"{' and '.join(others)}, which segment text one way only")
        self._sides = [(tok, [pair[side] for pair in pairs])
                       for side, tok in enumerate(sides)]

    def __repr__(self) -> str:
        return f"SampledPairs(alpha={self.alpha!r}, seed={self.seed})"

    def __call__(self, epoch: int) -> list[tuple[list[int], list[int]]]:
        """The ``(source ids, target ids)`` of every pair, as drawn for ``epoch``."""
        check_int("epoch", epoch, minimum=0)
        src, tgt = (tok.sample(texts, alpha=self.alpha, seed=(self.seed, epoch, side))
                    for side, (tok, texts) in enumerate(self._sides))
        return list(zip(src, tgt))
