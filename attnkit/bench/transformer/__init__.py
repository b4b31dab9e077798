"""Training-step benchmark: attnkit's Transformer vs ``torch.nn.Transformer`` on padded batches.

One training step = forward, label-smoothed cross-entropy over the real target tokens,
backward, and an Adam step (``foreach=True`` for both models). Both models
have the ``transformer_small`` sizes
(d=256, 4 heads, FFN 1024, 3+3 layers, dropout 0.1, post-LN, ReLU), the same
embeddings ×√d, sinusoidal encodings and output projection; the baseline uses
``torch.nn.Transformer`` with key-padding masks and a causal target mask (its
only extra parameters are the two final LayerNorms ``nn.Transformer`` always
has). Same batch, same process, alternating steps after warm-up; the
medians and the ratio attnkit / torch are reported.

The batch has a realistic length spread: lengths drawn log-normally (median
about half the maximum) and clipped to ``[shortest, longest]``, padded to the
longest. attnkit skips the padding (the attention backends skip padded keys
and queries, and the position-wise layers run on real tokens only); the
baseline computes on every padded position as ``torch.nn.Transformer``
does in training.

Run ``attnkit bench transformer`` (``--help`` for options; ``--record`` writes
its table to ``BENCHMARKS.md`` between the markers
``<!-- bench:transformer-step:start -->`` and ``<!-- bench:transformer-step:end -->``).
"""

from .._suite import Flag, Suite, thread_list

SUITE = Suite(
    package=__name__,
    help="a Transformer training step vs torch.nn.Transformer on a padded batch",
    flags=(
        Flag("--batch-size", type=int, default=32),
        Flag("--shortest", "shortest sentence, in tokens", type=int, default=6),
        Flag("--longest", "longest sentence, in tokens; the batch is padded to it", type=int,
             default=64),
        Flag("--vocab", type=int, default=8000),
        Flag("--reps", type=int, default=10),
        Flag("--warmup", type=int, default=2),
        Flag("--seed", type=int, default=0),
        Flag("--threads", "torch threads, or a comma list to run each (e.g. 2,1)",
             type=thread_list),
        Flag("--device", default="cpu"),
    ),
    convert=lambda a: dict(threads=a.threads or [None], batch_size=a.batch_size,
                             shortest=a.shortest, longest=a.longest, vocab=a.vocab,
                             reps=a.reps, warmup=a.warmup, seed=a.seed, device=a.device),
)
