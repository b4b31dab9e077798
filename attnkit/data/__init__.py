"""Data layer: parallel corpora, the built-in date task, tokenizers and batching.

* :mod:`~attnkit.data.corpus` — read sentence pairs (TSV, line-aligned files,
  Multi30k) with a report of every skipped line; deterministic splits.
* :mod:`~attnkit.data.generated` — dates in many spellings → ISO 8601, a task
  that needs no files.
* :mod:`~attnkit.data.tokenizer` — SentencePiece, word-level and character
  tokenizers with the same special ids (pad 0, unk 1, bos 2, eos 3).
* :mod:`~attnkit.data.subwords` — subword sampling (unigram sampling, BPE-dropout)
  that draws the same segmentation for the same seed in any process.
* :mod:`~attnkit.data.batching` — token-budget batches, sharding, resumption.
"""

from attnkit.data.batching import (
    Batch,
    BatchingConfig,
    BucketBatcher,
    FilterReport,
    collate,
    padding_fraction,
    shard,
    shard_batch,
)
from attnkit.data.corpus import (
    CorpusReport,
    ParallelCorpus,
    load_multi30k,
    normalize_whitespace,
    read_aligned_files,
    read_tsv_pairs,
    split_pairs,
)
from attnkit.data.generated import (
    DATE_FORMATS,
    date_alphabet,
    format_date,
    generate_heldout_pairs,
    generate_pairs,
    is_heldout,
)
from attnkit.data.tokenizer import (
    CharTokenizer,
    SampledPairs,
    SentencePieceTokenizer,
    Tokenizer,
    TokenizerPair,
    WordTokenizer,
    load_tokenizer,
)

__all__ = [
    "DATE_FORMATS",
    "Batch",
    "BatchingConfig",
    "BucketBatcher",
    "CharTokenizer",
    "CorpusReport",
    "FilterReport",
    "ParallelCorpus",
    "SampledPairs",
    "SentencePieceTokenizer",
    "Tokenizer",
    "TokenizerPair",
    "WordTokenizer",
    "collate",
    "date_alphabet",
    "format_date",
    "generate_heldout_pairs",
    "generate_pairs",
    "is_heldout",
    "load_multi30k",
    "load_tokenizer",
    "normalize_whitespace",
    "padding_fraction",
    "read_aligned_files",
    "read_tsv_pairs",
    "shard",
    "shard_batch",
    "split_pairs",
]
