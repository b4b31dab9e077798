"""Precision and threads chosen by the machine: the decision rules, with the machine substituted."""

import os

import pytest
import torch

from attnkit._cpu import pinning_allowed
from attnkit.runtime import (
    cached_bf16_speed_ratio,
    choose_precision,
    choose_threads,
    cpu_flags,
    held_threads,
    machine,
    parse_threads,
    pinned_threads,
)

from .conftest import START_THREADS

CPU = torch.device("cpu")


def never(*_):
    raise AssertionError("must not be called")


@pytest.mark.parametrize("flags, ratio, bf16, words", [
    ({"avx2", "amx_bf16"}, lambda: 6.0, True, "natively (amx_bf16; a bf16 matmul measured 6.00x"),
    ({"avx512f", "avx512_bf16"}, lambda: 2.2, True, "natively (avx512_bf16; a bf16 matmul"),
    # the instruction without the speed (a Xeon with AVX-512-BF16 and no AMX): fp32
    ({"avx512f", "avx512_bf16"}, lambda: 0.55, False,
     "has avx512_bf16, but a bf16 matmul measured 0.55x the speed of fp32 here"),
    ({"avx2"}, lambda: 0.04, False, "measured 0.04x the speed of fp32"),
    ({"avx512f"}, lambda: 0.43, False, "no native bf16"),
    ({"avx512f"}, lambda: 1.7, True, "measured 1.70x the speed of fp32"),
])
def test_auto_uses_bf16_only_where_it_is_fast(flags, ratio, bf16, words):
    p = choose_precision("auto", CPU, flags=lambda: flags, ratio=ratio)
    assert p.bf16 is bf16 and words in p.reason and p.warning is None
    assert p.to_dict()["bf16"] is bf16


def test_forcing_bf16_where_it_is_slow_warns_with_the_ratio():
    p = choose_precision(True, CPU, flags=lambda: {"avx2"}, ratio=lambda: 0.04)
    assert p.bf16 and "0.04x the speed of fp32" in p.warning and p.speed_ratio == 0.04
    assert choose_precision(True, CPU, flags=lambda: {"amx_bf16"}, ratio=lambda: 6.0
                            ).warning is None
    slow = choose_precision(True, CPU, flags=lambda: {"avx512_bf16"}, ratio=lambda: 0.55)
    assert "0.55x the speed of fp32" in slow.warning
    assert not choose_precision(False, CPU, flags=never, ratio=never).bf16


@pytest.mark.parametrize("value, bf16", [("native", True), ("none", False), ("NATIVE", True)])
def test_the_environment_substitutes_the_cpus_bf16_answer(monkeypatch, value, bf16):
    monkeypatch.setenv("ATTNKIT_CPU_BF16", value)
    p = choose_precision("auto", CPU)
    assert p.bf16 is bf16 and "ATTNKIT_CPU_BF16" in p.reason and p.speed_ratio is None
    assert choose_precision(True, CPU).bf16 and not choose_precision(False, CPU).bf16
    assert (choose_precision(True, CPU).warning is None) is bf16  # forced slow bf16 still warns
    # A caller's own substitution (the rule's tests) wins over the environment.
    assert choose_precision("auto", CPU, flags=lambda: {"avx2"}, ratio=lambda: 0.04).bf16 is False
    assert choose_precision("auto", CPU, flags=lambda: {"amx_bf16"}, ratio=lambda: 6.0).bf16


def test_a_bad_substitution_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("ATTNKIT_CPU_BF16", "maybe")
    with pytest.raises(ValueError, match=r"ATTNKIT_CPU_BF16 must be one of 'native', 'none' "
                                         r"or unset; got 'maybe'$"):
        choose_precision("auto", CPU)
    monkeypatch.setenv("ATTNKIT_CPU_BF16", " Nativ ")  # a typo is named, as spelled bar case
    with pytest.raises(ValueError, match=r"got 'nativ' \(did you mean 'native'\?\)$"):
        choose_precision("auto", CPU)


def test_the_micro_benchmark_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.delenv("ATTNKIT_CACHE_DIR", raising=False)  # it would take precedence
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    assert cached_bf16_speed_ratio(lambda: calls.append(1) or 0.5) == 0.5
    assert cached_bf16_speed_ratio(lambda: calls.append(1) or 9.0) == 0.5
    assert calls == [1] and (tmp_path / "attnkit" / "bf16-speed.json").is_file()


@pytest.mark.parametrize("cores, busy, want", [(2, 0, 2), (2, 1, 1), (2, 5, 1), (8, 3, 5)])
def test_auto_threads_leave_busy_cores_alone(monkeypatch, cores, busy, want):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    t = choose_threads("auto", cores=cores, busy=lambda: busy)
    assert t.count == want and f"{busy} busy" in t.reason


def test_threads_follow_an_explicit_setting_the_environment_and_torchrun(monkeypatch):
    assert choose_threads(3, cores=2, busy=never).count == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads("auto", cores=8, busy=never).count == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads("auto", cores=8, busy=lambda: 0).count == 4


def test_machine_facts_are_recorded():
    m = machine()
    assert m["isa"] == torch.backends.cpu.get_cpu_capability() and m["cores"] == os.cpu_count()
    assert m["bf16_native"] in ("no", "amx_bf16", "avx512_bf16", "amx_bf16,avx512_bf16")
    assert isinstance(cpu_flags(), set)


def test_held_threads_holds_the_choice_and_restores_the_setting(three_threads):
    with held_threads(1) as t:
        assert t.count == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == START_THREADS
    with pytest.raises(RuntimeError), held_threads(2):
        raise RuntimeError("an error inside the block")
    assert torch.get_num_threads() == START_THREADS
    with held_threads(None) as t:  # None: leave torch's setting alone
        assert t.count == START_THREADS


@pytest.mark.parametrize("value, want", [("auto", "auto"), (2, 2), ("4", 4), (" 3 ", 3)])
def test_one_parser_of_auto_or_a_positive_int(value, want):
    assert parse_threads(value) == want


@pytest.mark.parametrize("value", [0, -1, "0", "two", "", True, 1.5, None])
def test_bad_thread_settings_are_refused_naming_the_setting(value):
    with pytest.raises(ValueError, match=r"--threads must be auto or a positive int; got "):
        parse_threads(value, name="--threads")


def test_pinning_is_allowed_only_inside_the_contexts_that_say_so():
    """The backends may pin torch's threads only inside ``pinned_threads`` or a
    ``held_threads`` that takes a count (the commands, the trainer, the benchmarks); not
    in a plain call, not under ``held_threads(None)``, and not after either."""
    before = torch.get_num_threads()
    assert not pinning_allowed()
    with pinned_threads():
        assert pinning_allowed()
        with pinned_threads():
            assert pinning_allowed()
        assert pinning_allowed()
    assert not pinning_allowed()
    with held_threads(None):
        assert not pinning_allowed()
    with held_threads(1):
        assert pinning_allowed() and torch.get_num_threads() == 1
    assert not pinning_allowed() and torch.get_num_threads() == before


def test_pinning_is_per_context_not_per_process():
    """A thread of the caller's that is not inside ``pinned_threads`` is not pinned."""
    import threading

    seen = []
    with pinned_threads():
        t = threading.Thread(target=lambda: seen.append(pinning_allowed()))
        t.start()
        t.join()
    assert seen == [False]


def test_thread_holds_may_close_in_any_order_and_across_threads():
    """``torch_threads``: while holds are open the setting is the latest open one's;
    when the last closes, the setting from before the first, whatever the order."""
    import contextlib
    import threading

    from attnkit._cpu import torch_threads

    start = torch.get_num_threads()
    a, b, c = (torch_threads(n) for n in (start + 1, start + 2, start + 3))
    a.__enter__(), b.__enter__(), c.__enter__()
    assert torch.get_num_threads() == start + 3
    b.__exit__(None, None, None)  # a middle hold closes: the latest open one still holds
    assert torch.get_num_threads() == start + 3
    c.__exit__(None, None, None)
    assert torch.get_num_threads() == start + 1
    a.__exit__(None, None, None)
    assert torch.get_num_threads() == start
    # holds of several threads at once, closed in whatever order they finish
    barrier, seen = threading.Barrier(4), []

    def hold(n):
        with torch_threads(n):
            barrier.wait()
            barrier.wait()
        seen.append(n)

    with contextlib.ExitStack():
        workers = [threading.Thread(target=hold, args=(n,)) for n in (1, 2, 1, 2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert len(seen) == 4 and torch.get_num_threads() == start
