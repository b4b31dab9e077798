"""GPU benchmark of the Triton kernels (needs a CUDA device; refuses to run without one).

Side by side, in one process, alternating, after warm-up, medians of CUDA-event
timings:

* scaled dot, bf16, head dims 64 and 128, N = 1k…16k, causal and not, with
  and without ``valid_lens`` (lengths uniform in [N/4, N]): attnkit ``triton``
  vs SDPA's flash, efficient and cuDNN backends (each where it accepts the
  call; with ``valid_lens`` SDPA gets the equivalent boolean mask, which the
  flash backend refuses), FlexAttention (compiled) and the naive path;
  TFLOP/s count only the FLOPs actually needed (valid keys, causal half);
* additive attention, N up to 8k, h=64: fused ``triton`` vs the ``chunked``
  backend and the naive (reference) path, with peak memory.

``attnkit bench gpu --record`` writes its table to BENCHMARKS.md between its
markers, with the GPU name, driver, torch and Triton versions and the command.
"""

from .._suite import Flag, Suite

SUITE = Suite(
    package=__name__,
    help="Triton kernels vs SDPA's backends (needs a CUDA device)",
    flags=(
        Flag("--quick", "fewer shapes (smoke run)", switch=True),
        Flag("--repeats", "timed rounds", type=int, default=10),
    ),
)
