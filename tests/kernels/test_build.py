"""Building the compiled CPU kernel (``attnkit/kernels/_build.py``): the settings that turn
it off or name another CPU, and compilers that are missing, malformed, failing or silent.

Every test points ``ATTNKIT_CACHE_DIR`` at its own folder (``own_cache``); failing
compilers are shell scripts in ``tmp_path``.
"""

from __future__ import annotations

import shutil

import pytest

from attnkit.kernels import _build

from ._builds import SOURCE, fake_cc, files, needs_lib

pytestmark = pytest.mark.usefixtures("own_cache")


# -------------------------------------------------------------- settings


def test_turned_off_by_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ATTNKIT_CPU_KERNELS", "off")
    built = _build._load(SOURCE)
    assert built.lib is None and "ATTNKIT_CPU_KERNELS=off" in built.detail
    assert not (tmp_path / "cache").exists()  # nothing built


@pytest.mark.parametrize("value", ["OFF ", " no", "False"])
def test_off_values_ignore_case_and_spaces_around(monkeypatch, value, recwarn):
    monkeypatch.setenv("ATTNKIT_CPU_KERNELS", value)
    built = _build._load(SOURCE)
    assert built.lib is None and "turned off by ATTNKIT_CPU_KERNELS=" in built.detail
    assert not recwarn.list


@pytest.mark.parametrize("value", ["of", "on", "yes please", "o ff"])
def test_an_unknown_kernels_setting_is_reported_not_taken_for_auto(monkeypatch, value):
    monkeypatch.setenv("ATTNKIT_CPU_KERNELS", value)
    with pytest.warns(UserWarning, match=r"ATTNKIT_CPU_KERNELS=.* is not one of 'auto', 'off'"):
        built = _build._load(SOURCE)
    assert built.lib is None and repr(value) in built.detail


@needs_lib
def test_another_cpu_architecture_can_be_named(monkeypatch, own_cache):
    """``ATTNKIT_CPU_ARCH=haswell``: AVX2 code (this suite's AVX2 rows on a newer CPU); a
    value that is not a plain ``-march`` name is refused with a warning, nothing built."""
    monkeypatch.setenv("ATTNKIT_CPU_ARCH", " haswell ")
    built = _build._load(SOURCE)
    if built.lib is None or "-march=haswell" not in built.detail:
        pytest.skip(f"this compiler has no haswell target: {built.detail}")
    monkeypatch.setenv("ATTNKIT_CPU_ARCH", "native; rm -rf ~")
    with pytest.warns(UserWarning, match="ATTNKIT_CPU_ARCH must be a -march name"):
        refused = _build._load(SOURCE)
    assert refused.lib is None and "got 'native; rm -rf ~'" in refused.detail
    assert files(own_cache) == [".json", ".so"]


@needs_lib
def test_an_arch_the_compiler_rejects_is_reported_not_replaced(monkeypatch, own_cache):
    """``-march=nonsense``: the compiler's own line and the variable, never a build
    without the ``-march`` that was asked for."""
    monkeypatch.setenv("ATTNKIT_CPU_ARCH", "nonsense")
    with pytest.warns(UserWarning, match=r"ATTNKIT_CPU_ARCH='nonsense': .*could not build"):
        built = _build._load(SOURCE)
    assert built.lib is None and "e.g. native, haswell" in built.detail
    assert files(own_cache) == []


# -------------------------------------------------------------- compilers


def test_no_compiler_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", f"{tmp_path / 'no-such-cc'} -O2")
    built = _build._load(SOURCE)
    assert built.lib is None and "set CC" in built.detail
    assert f"no C compiler: '{tmp_path / 'no-such-cc'}' (from CC=" in built.detail


def test_a_cc_that_is_not_a_command_line_says_so(monkeypatch):
    monkeypatch.setenv("CC", "gcc '-O2")
    built = _build._load(SOURCE)
    assert built.lib is None and built.detail.startswith("CC=\"gcc '-O2\" is not a command line")


@needs_lib
def test_cc_may_carry_arguments(monkeypatch, tmp_path, own_cache):
    """``CC="<wrapper> gcc"`` as with ``ccache gcc``: the wrapper gets the compiler and its
    arguments (it records them, then runs them)."""
    gcc = shutil.which("gcc") or pytest.skip("no gcc")
    log = tmp_path / "args"
    wrapper = fake_cc(tmp_path, f'echo "$@" >> {log}\nexec "$@"\n', name="wrap")
    monkeypatch.setenv("CC", f"{wrapper} {gcc} -pthread")
    built = _build._load(SOURCE)
    assert built.lib is not None, built.detail
    assert log.read_text().splitlines()[0] == f"{gcc} -pthread --version"
    assert f"{gcc} -pthread -O3" in log.read_text()


def test_a_failing_compiler_gives_its_first_error_line(monkeypatch, tmp_path, own_cache):
    cc = fake_cc(tmp_path, "if [ \"$1\" = --version ]; then echo fake-cc 1.0; exit 0; fi\n"
                 "echo 'fatal: no headers here' >&2\necho 'second line' >&2\nexit 3\n")
    monkeypatch.setenv("CC", str(cc))
    built = _build._load(SOURCE)
    assert built.lib is None
    assert "could not build the kernel: fatal: no headers here" in built.detail
    assert files(own_cache) == []  # no leftovers


def test_a_silent_failing_compiler_gives_its_exit_status(monkeypatch):
    monkeypatch.setenv("CC", "/bin/false")
    built = _build._load(SOURCE)
    assert built.lib is None
    assert built.detail == "/bin/false could not build the kernel: exit status 1, no message"




# -------------------------------------------------------------- the source


@pytest.mark.parametrize("source", ["loss_cpu.c", "dropout_cpu.c", "step_cpu.c"])
def test_shared_headers_are_written_into_the_source_and_its_hash(source):
    """A kernel is compiled from standard input: its ``#include "cpu_common.h"`` line is
    replaced by that file's text, so no local include is left for the compiler to look
    for, and the text (whose hash names the library) changes when the header does."""
    from importlib import resources

    folder = resources.files("attnkit.kernels")
    raw = folder.joinpath(source).read_bytes()
    header = folder.joinpath("cpu_common.h").read_bytes()
    code = _build.source_code(source)
    assert b'\n#include "cpu_common.h"\n' in raw
    assert header in code and not any(line.startswith(b'#include "')
                                       for line in code.splitlines())
    assert code == raw.replace(b'#include "cpu_common.h"\n', header + b"\n")
