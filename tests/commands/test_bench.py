"""``attnkit bench``: one subcommand per declared suite, with its help and flags, and no
suite named in the command itself."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from attnkit.bench import SUITES, declared


def _bench_subparsers() -> dict[str, argparse.ArgumentParser]:
    from attnkit.cli import build_parser

    bench = build_parser("bench")._subparsers._group_actions[0].choices["bench"]
    return bench._subparsers._group_actions[0].choices


def test_each_suites_subcommand_has_its_declared_help_and_flags_and_record():
    parsers = _bench_subparsers()
    assert list(parsers) == list(SUITES)
    for name, suite in declared().items():
        p = parsers[name]
        assert p.description == suite.help
        options = {o for a in p._actions for o in a.option_strings}
        assert options == {f.name for f in suite.flags} | {"-h", "--help", "--record"}, name
        given = [x for f in suite.flags if f.required for x in (f.name, "x")]
        parsed = p.parse_args(given)
        for f in suite.flags:
            value = getattr(parsed, f.name[2:].replace("-", "_"))
            assert value == ("x" if f.required else (False if f.switch else f.default))


def test_commands_bench_names_no_suite():
    import attnkit.commands.bench as command

    source = Path(command.__file__).read_text()
    assert [name for name in SUITES if re.search(rf"\b{name}\b", source)] == []


def test_attnkit_bench_runs_its_suite_with_the_backends_worker_threads(monkeypatch, capsys):
    """A suite measures attention as the commands run it: inside ``pinned_threads``, where
    ``chunked`` and ``sdpa`` may share a call among worker threads."""
    import attnkit.commands.bench as command
    from attnkit._cpu import pinning_allowed

    seen = []

    class Result:
        def summary(self):
            return ["measured"]

    class Suite:
        def run(self):
            seen.append(pinning_allowed())
            return Result()

    monkeypatch.setattr(command, "declared", lambda: {"fake": Suite()})
    args = argparse.Namespace(suite="fake", _run_kwargs=lambda _: {}, record=None)
    assert command.run_cli(args) == 0
    assert seen == [True] and not pinning_allowed()
    assert capsys.readouterr().out.startswith("measured\n")


def test_the_decoding_suites_flags_are_checked_in_one_line_naming_the_flag(capsys):
    """--rounds, --engines and --threads of the decoding suite are refused before anything
    is loaded, each in argparse's one line naming the flag (with did-you-mean)."""
    import pytest

    from attnkit.cli import main

    golden = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
    for flags, said in [
        (["--rounds", "0"], "argument --rounds: expected a positive int; got '0'"),
        (["--engines", "attnkit,ct2 flaot32"],
         "argument --engines: each must be one of 'attnkit', 'attnkit int8', 'ct2 float32', "
         "'ct2 int8'; got 'ct2 flaot32' (did you mean 'ct2 float32'?)"),
        (["--threads", "auto,0"],
         "argument --threads: expected a comma list of positive ints or auto; got 'auto,0'"),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(["bench", "decoding", "--checkpoint", str(golden), *flags])
        assert stop.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(said)
