"""The compiled CPU kernel of a decoding step's attention (``attnkit/kernels/step_cpu.c``).

The oracle is softmax attention in float64 over each sequence's first ``lens[b]`` keys;
the baseline the same formula in float32 by PyTorch, and the rule that of
``tests/kernels/_reference.py`` (at most 2x the baseline's error plus a floor). Sizes are
distinct odd numbers per axis.
"""

from __future__ import annotations

import pytest
import torch

from attnkit.kernels import cpu_step
from tests.kernels._reference import max_err, within_bound

BUILT = cpu_step.status()
needs_lib = pytest.mark.skipif(BUILT.lib is None, reason=f"no compiled kernel: {BUILT.detail}")


def formula(q, k, v, lens, scale):
    """``(B, H, R, Dv)`` in the inputs' dtype; zeros for a sequence without keys."""
    s = scale * q @ k.transpose(-1, -2)  # (B, H, R, Nk)
    Nk = k.shape[2]
    if lens is not None:
        keep = torch.arange(Nk) < lens.clamp(0, Nk)[:, None]  # (B, Nk)
        s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = torch.softmax(s, -1).nan_to_num(0.0) @ v
    if lens is not None:
        out = out * (lens > 0).to(out.dtype)[:, None, None, None]
    return out


def make(B, H, R, Nk, D, Dv, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    return (spread * torch.randn(B, H, R, D, generator=g),
            spread * torch.randn(B, H, Nk, D, generator=g), torch.randn(B, H, Nk, Dv, generator=g))


@needs_lib
@pytest.mark.parametrize(("R", "D", "Dv"), [(1, 7, 7), (3, 33, 5), (5, 1, 1), (1, 64, 64),
                                          (3, 16, 32)])
@pytest.mark.parametrize("lens", [None, [11, 0, 3, 40, 1]], ids=["all-keys", "lengths"])
@pytest.mark.parametrize("spread", [0.5, 4.0], ids=["soft", "peaked"])
def test_output_matches_the_float64_formula(R, D, Dv, lens, spread):
    """Every key or each sequence's own (one without keys: zeros; one longer than Nk:
    all), one or several query rows per head, head sizes of 1 to 64, flat or peaked
    softmax (the kernel's exp over a wide range)."""
    q, k, v = make(5, 3, R, 11, D, Dv, spread=spread)
    lens_t = None if lens is None else torch.tensor(lens)
    scale = D ** -0.5
    truth = formula(q.double(), k.double(), v.double(), lens_t, scale)
    base = max_err(formula(q, k, v, lens_t, scale), truth)
    got = cpu_step.step_attention(q, k, v, lens_t, scale)
    assert got.shape == (5, 3, R, Dv) and got.dtype == torch.float32
    within_bound("output", max_err(got, truth), base, factor=2, floor=2e-6)
    if lens is not None:
        assert (got[1] == 0).all()


#: (D, Dv) of the scalar loop and of the 16-key path (both multiples of 16, Dv <= 64)
PATHS = pytest.mark.parametrize(("D", "Dv"), [(6, 5), (32, 48)], ids=["scalar", "16-key"])


@needs_lib
@PATHS
def test_strided_caches_rows_and_keys_past_the_lengths(D, Dv):
    """Keys and values as views of larger buffers holding NaN after each sequence's keys
    (never read; more than 16 keys, and a last block of 16 not full); ``rows = (1, 3)``
    writes rows 1 and 2 of ``out`` and nothing else."""
    q, k, v = make(4, 2, 2, 19, D, Dv, seed=3)
    lens = torch.tensor([19, 4, 2, 17])
    kbuf = torch.full((4, 2, 30, D), float("nan"))
    vbuf = torch.full((4, 2, 30, Dv), float("nan"))
    for b, n in enumerate(lens.tolist()):
        kbuf[b, :, :n], vbuf[b, :, :n] = k[b, :, :n], v[b, :, :n]
    out = torch.full((4, 2, 2, Dv), -7.0)
    cpu_step.step_attention(q, kbuf[:, :, :19], vbuf[:, :, :19], lens, 0.4, out=out,
                            rows=(1, 3))
    truth = formula(q.double(), k.double(), v.double(), lens, 0.4)
    within_bound("rows", max_err(out[1:3], truth[1:3]), 0.0, factor=2, floor=2e-6)
    assert (out[0] == -7).all() and (out[3] == -7).all()


@needs_lib
@PATHS
def test_a_nan_or_infinite_score_makes_only_its_row_nan(D, Dv):
    """As the reference's softmax: a NaN score or an infinite maximum gives a NaN row; a
    score of -inf beside finite ones a weight of (nearly) 0."""
    q, k, v = make(4, 2, 1, 5, D, Dv, seed=5)
    k[0, 1, 2, 0] = float("nan")  # sequence 0, head 1
    q[2, 0, 0, 1] = float("inf")  # sequence 2, head 0
    k[3, 0, 1] = 0.0
    k[3, 0, 1, 0] = -float("inf")  # sequence 3, head 0: one score of -inf (q positive)
    q[3, 0, 0, 0] = 1.0
    out = cpu_step.step_attention(q, k, v, None, 0.5)
    assert out[0, 1].isnan().all() and out[2, 0].isnan().all()
    assert out[0, 0].isfinite().all() and out[1].isfinite().all() and out[2, 1].isfinite().all()
    keep = torch.tensor([0, 2, 3, 4])
    truth = formula(q[3:, :1].double(), k[3:, :1, keep].double(), v[3:, :1, keep].double(),
                    None, 0.5)
    within_bound("-inf", max_err(out[3:, :1], truth), 0.0, factor=2, floor=2e-6)


@needs_lib
def test_bad_arguments_name_the_argument():
    q, k, v = make(2, 2, 1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"q must be a float32 CPU tensor; got torch.float64"):
        cpu_step.step_attention(q.double(), k, v, None, 1.0)
    with pytest.raises(ValueError, match=r"v must have shape \(2, 2, 3, 4\); got \(2, 2, 2, 4\)"):
        cpu_step.step_attention(q, k, v[:, :, :2], None, 1.0)
    with pytest.raises(ValueError, match=r"k must be contiguous in its last dimension"):
        cpu_step.step_attention(q, k.transpose(2, 3).contiguous().transpose(2, 3), v, None, 1.0)
    with pytest.raises(ValueError, match=r"lens must be a contiguous \(2,\) int64 CPU tensor; "
                                         r"got \(2,\) torch.int32"):
        cpu_step.step_attention(q, k, v, torch.tensor([1, 2], dtype=torch.int32), 1.0)
    with pytest.raises(ValueError, match=r"rows must be \(b0, b1\) with 0 <= b0 <= b1 <= 2; "
                                         r"got \(1, 3\)"):
        cpu_step.step_attention(q, k, v, None, 1.0, rows=(1, 3))
    with pytest.raises(ValueError, match=r"k must be a float32 CPU tensor; got list"):
        cpu_step.step_attention(q, [1, 2], v, None, 1.0)
    with pytest.raises(ValueError, match=r"q, k and v must be \(B, Hkv, R, D\)"):
        cpu_step.step_attention(q[0], k, v, None, 1.0)


@needs_lib
def test_usable_only_for_float32_cpu_tensors_outside_autograd():
    q, k, v = make(2, 2, 1, 3, 4, 4)
    assert cpu_step.usable(q, k, v)
    assert not cpu_step.usable(q.bfloat16(), k, v)
    assert not cpu_step.usable(q.double(), k.double(), v.double())
    q.requires_grad_()
    assert not cpu_step.usable(q, k, v)
    with torch.no_grad():
        assert cpu_step.usable(q, k, v)


@needs_lib
def test_the_weights_are_accurate_over_the_whole_range_of_exp():
    """Values the identity, so the output is the weights: scores from 0 down to -100 below
    the maximum (exp's clamp at -87 included), each weight within 6e-7 of its float64
    value, relative (the kernel's exp has a relative error of a few ulp)."""
    Nk = 401
    k = torch.linspace(0, -100, Nk).reshape(1, 1, Nk, 1)
    q, v = torch.ones(1, 1, 1, 1), torch.eye(Nk).reshape(1, 1, Nk, Nk)
    got = cpu_step.step_attention(q, k, v, None, 1.0)[0, 0, 0].double()
    truth = torch.softmax(k[0, 0, :, 0].double(), 0)
    seen = truth > 1e-37
    rel = ((got[seen] - truth[seen]).abs() / truth[seen]).max().item()
    assert rel <= 6e-7, f"largest relative error of a weight: {rel:.3g}"
    assert (got[~seen] <= 1e-37).all()  # past the clamp: exp(-87) / the sum


@needs_lib
@PATHS
def test_keys_read_from_the_rows_a_table_names(D, Dv):
    """``key_rows``: key j of sequence b from row ``key_rows[b, j]`` of buffers with more
    rows than sequences (a beam cache sharing histories), equal to the keys gathered."""
    q, _, _ = make(3, 2, 1, 6, D, Dv, seed=7)
    g = torch.Generator().manual_seed(8)
    kbuf, vbuf = torch.randn(5, 2, 6, D, generator=g), torch.randn(5, 2, 6, Dv, generator=g)
    table = torch.randint(0, 5, (3, 9), generator=g)  # wider than Nk: its first 6 count
    at = torch.arange(6)
    k = kbuf.transpose(1, 2)[table[:, :6], at].transpose(1, 2)
    v = vbuf.transpose(1, 2)[table[:, :6], at].transpose(1, 2)
    lens = torch.tensor([6, 2, 0])
    got = cpu_step.step_attention(q, kbuf, vbuf, lens, 0.3, key_rows=table)
    truth = formula(q.double(), k.double(), v.double(), lens, 0.3)
    within_bound("rows", max_err(got, truth), max_err(formula(q, k, v, lens, 0.3), truth),
                 factor=2, floor=2e-6)
    for bad in (table[:2], table[:, :5], table.int(), table.clamp(max=5) + 0 * table + (
            table == table.max()).long()):
        with pytest.raises(ValueError, match=r"key_rows must be a \(3, >= 6\) int64 CPU "
                                             r"table of rows of k \(in \[0, 5\)\)"):
            cpu_step.step_attention(q, kbuf, vbuf, lens, 0.3, key_rows=bad)


def test_the_library_is_built_from_the_source_the_module_was_imported_with(tmp_path):
    """An upgrade while a process runs: the package's C file changes on disk after the
    wrapper was imported and before the kernel is first used. The library is built from
    the text read at import (its signature is the wrapper's), not from the new file."""
    import os
    import subprocess
    import sys

    code = ("from attnkit.kernels import _build, cpu_step; import torch\n"
            "_build.source_code = lambda source: b'int not_the_kernel(void) { return 1; }'\n"
            "q = torch.ones(1, 1, 1, 2); k = torch.zeros(1, 1, 3, 2)\n"
            "v = torch.arange(6.0).reshape(1, 1, 3, 2)\n"
            "print(cpu_step.step_attention(q, k, v, None, 1.0).flatten().tolist())\n")
    env = {**os.environ, "ATTNKIT_CACHE_DIR": str(tmp_path)}
    env.pop("ATTNKIT_CPU_KERNELS", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)
    if BUILT.lib is None:
        assert done.returncode != 0 and "not available" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2.0, 3.0]"  # the mean of the values' rows


def packed_formula(q, k, v, offsets, scale, causal=False):
    """Per sequence (rows ``offsets[b]:offsets[b + 1]``) and head: softmax attention over
    its own rows, ``(n, H, Dv)`` in the inputs' dtype; query head h reads kv head h // G."""
    G = q.shape[1] // k.shape[1]
    out = q.new_zeros(q.shape[0], q.shape[1], v.shape[2])
    for b in range(offsets.numel() - 1):
        r = slice(int(offsets[b]), int(offsets[b + 1]))
        qb = q[r].transpose(0, 1)  # (H, n, D)
        kb, vb = (t[r].repeat_interleave(G, 1).transpose(0, 1) for t in (k, v))
        s = scale * qb @ kb.transpose(-1, -2)  # (H, n, n)
        if causal:
            n = s.shape[-1]
            s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        out[r] = (torch.softmax(s, -1) @ vb).transpose(0, 1)
    return out


def make_packed(lens, H, Hkv, D, Dv, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    n = sum(lens)
    offsets = torch.tensor([0, *lens]).cumsum(0)
    return (spread * torch.randn(n, H, D, generator=g),
            spread * torch.randn(n, Hkv, D, generator=g),
            torch.randn(n, Hkv, Dv, generator=g), offsets)


@needs_lib
@pytest.mark.parametrize(("H", "Hkv", "D", "Dv"), [(3, 3, 7, 5), (4, 2, 33, 17), (2, 1, 1, 1),
                                                    (1, 1, 64, 64)])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("spread", [0.5, 4.0], ids=["soft", "peaked"])
def test_packed_attention_matches_the_float64_formula(H, Hkv, D, Dv, causal, spread):
    """Sequences of 1 to 37 rows (a sequence of none between them; more rows than a
    vector's 16, and not a multiple of the 4 rows computed together), grouped-query heads,
    feature sizes that are not a multiple of 16, causal or not."""
    q, k, v, offsets = make_packed([5, 0, 1, 37, 16, 3], H, Hkv, D, Dv, spread=spread)
    scale = D ** -0.5
    truth = packed_formula(q.double(), k.double(), v.double(), offsets, scale, causal)
    base = max_err(packed_formula(q, k, v, offsets, scale, causal), truth)
    got = cpu_step.packed_attention(q, k, v, offsets, scale, causal=causal)
    assert got.shape == (62, H, Dv) and got.dtype == torch.float32
    within_bound("packed", max_err(got, truth), base, factor=2, floor=2e-6)


@needs_lib
def test_packed_attention_reads_strided_rows_and_writes_only_its_own():
    """q, k and v as column blocks of one projected matrix (rows strided by its width,
    as a fused q/k/v product gives them), written into a wider ``out``."""
    g = torch.Generator().manual_seed(4)
    qkv = torch.randn(9, 3 * 2 * 6, generator=g)
    q, k, v = (t.view(9, 2, 6) for t in qkv.split(12, 1))
    offsets = torch.tensor([0, 4, 9])
    wide = torch.full((9, 2, 10), -7.0)
    out = wide[:, :, 2:8]
    cpu_step.packed_attention(q, k, v, offsets, 0.5, out=out)
    truth = packed_formula(q.double(), k.double(), v.double(), offsets, 0.5)
    within_bound("strided", max_err(out, truth), 0.0, factor=2, floor=2e-6)
    assert (wide[:, :, :2] == -7).all() and (wide[:, :, 8:] == -7).all()


@needs_lib
def test_packed_attention_nan_stays_in_its_sequence_and_head():
    """A NaN key makes its sequence's rows of that head NaN (every row attends it), an
    infinite query only its own row; the other rows are finite."""
    q, k, v, offsets = make_packed([3, 4], 2, 2, 4, 4, seed=6)
    k[1, 0, 2] = float("nan")  # sequence 0, head 0
    q[5, 1, 0] = float("inf")  # sequence 1's row 2, head 1
    out = cpu_step.packed_attention(q, k, v, offsets, 0.5)
    assert out[:3, 0].isnan().all() and out[5, 1].isnan().all()
    finite = torch.ones(7, 2, dtype=torch.bool)
    finite[:3, 0] = False
    finite[5, 1] = False
    assert out[finite].isfinite().all()


@needs_lib
def test_packed_attention_bad_arguments_name_the_argument():
    q, k, v, offsets = make_packed([2, 3], 4, 2, 4, 4)
    with pytest.raises(ValueError, match=r"q must be a 3-D \(rows, heads, features\) tensor; "
                                         r"got \(5, 16\)"):
        cpu_step.packed_attention(q.flatten(1), k, v, offsets, 1.0)
    with pytest.raises(ValueError, match=r"the query heads \(4\) must be a multiple of the "
                                         r"key heads \(3\)"):
        cpu_step.packed_attention(q, torch.zeros(5, 3, 4), v, offsets, 1.0)
    with pytest.raises(ValueError, match=r"v must have shape \(5, 2, 4\); got \(4, 2, 4\)"):
        cpu_step.packed_attention(q, k, v[:4], offsets, 1.0)
    with pytest.raises(ValueError, match=r"offsets must be a contiguous \(B \+ 1,\) int64 CPU "
                                         r"tensor; got \(3,\) torch.int32"):
        cpu_step.packed_attention(q, k, v, offsets.int(), 1.0)
    for bad in ([0, 2, 4], [1, 2, 5], [0, 4, 3, 5]):
        with pytest.raises(ValueError, match=r"offsets must rise from 0 to the number of "
                                             r"rows \(5\)"):
            cpu_step.packed_attention(q, k, v, torch.tensor(bad), 1.0)
    with pytest.raises(ValueError, match=r"q must be a float32 CPU tensor; got torch.float64"):
        cpu_step.packed_attention(q.double(), k, v, offsets, 1.0)
