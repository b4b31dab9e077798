"""The names users choose from, in one torch-free place.

The modules that implement them check that their registries match these
tuples (``attnkit.scores.SCORE_REGISTRY``, the activations and positional
encodings of ``attnkit.nn.transformer``, the built-in backends of
``attnkit.backends``), so configs, the cost model and the command line can offer
the names without importing PyTorch.
"""

SCORE_NAMES: tuple[str, ...] = ("dot", "scaled_dot", "distance", "additive", "bilinear")
POSITIONAL_KINDS: tuple[str, ...] = ("sinusoidal", "learned", "rope", "alibi")
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu")
#: the built-in attention backends, in the order ``auto`` tries them
BACKEND_NAMES: tuple[str, ...] = ("triton", "sdpa", "chunked", "reference")
#: the learning-rate schedules of a training run (``[optim] schedule``), the paper's first
SCHEDULE_NAMES: tuple[str, ...] = ("noam", "inverse_sqrt", "cosine", "plateau")
