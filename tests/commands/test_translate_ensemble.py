"""``attnkit translate`` with ``--checkpoint`` given more than once (the ensemble of the
runs) and with the search constraints ``--no-repeat-ngram`` and ``--repetition-penalty``.
Oracles: the golden run alone, and each member alone."""

import pytest

from attnkit.cli import main

from .._ensemble import GOLDEN, SOURCES, noisy_translator, swapped_translator, write_run
from .test_reliability import one_error_line

G = str(GOLDEN)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return str(write_run(tmp_path_factory.mktemp("noisy"), noisy_translator()))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "src.txt"
    path.write_text("".join(s + "\n" for s in SOURCES[:40]), encoding="utf-8")
    return str(path)


def translate(capsys, *argv):
    code = main(["translate", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines()


@pytest.mark.parametrize("search", [["--beam-size", "1"], ["--beam-size", "4"],
                                    ["--beam-size", "3", "--n-best", "3"]])
def test_a_run_ensembled_with_itself_translates_as_the_run(capsys, sources, search):
    alone = translate(capsys, "--checkpoint", G, "--input", sources, *search)
    assert translate(capsys, "--checkpoint", G, "--checkpoint", G, "--input", sources,
                     *search) == alone


@pytest.mark.parametrize("beam", ["1", "4"])
def test_two_runs_translate_otherwise_than_either(capsys, sources, noisy, beam):
    both = translate(capsys, "--checkpoint", G, "--checkpoint", noisy, "--input", sources,
                     "--beam-size", beam)
    one = translate(capsys, "--checkpoint", G, "--input", sources, "--beam-size", beam)
    two = translate(capsys, "--checkpoint", noisy, "--input", sources, "--beam-size", beam)
    assert len(both) == 40 and any(e != a and e != b for e, a, b in zip(both, one, two))


def test_runs_of_other_vocabularies_are_refused_in_one_line_naming_both(capsys, tmp_path):
    other = write_run(tmp_path / "other", swapped_translator("tgt"))
    code = main(["translate", "--checkpoint", G, "--checkpoint", str(other), "3 1 4"])
    line = one_error_line(capsys.readouterr().err, "translate")
    assert code == 2 and "their target tokenizers differ" in line
    assert G in line and str(other) in line


@pytest.mark.parametrize("flags, says", [
    (["--precision", "auto"], "--precision auto is chosen for one checkpoint's weights, not "
                              "for an ensemble of 2 --checkpoint"),
    (["--engine", "ctranslate2", "--model", "x"], "--engine ctranslate2 decodes one exported "
                                                  "model (--model); an ensemble of 2")])
def test_what_needs_one_model_is_refused_for_an_ensemble(capsys, flags, says):
    code = main(["translate", "--checkpoint", G, "--checkpoint", G, *flags, "3 1 4"])
    assert code == 2 and says in one_error_line(capsys.readouterr().err, "translate")


def _repeats(line: str, n: int) -> bool:
    words = line.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) < len(grams)


@pytest.mark.parametrize("beam", ["1", "4"])
def test_no_repeat_ngram_leaves_no_output_with_a_repeated_ngram(capsys, sources, beam):
    plain = translate(capsys, "--checkpoint", G, "--input", sources, "--beam-size", beam)
    assert any(_repeats(line, 1) for line in plain)  # "four four": the golden run repeats
    for n in ("1", "2"):
        blocked = translate(capsys, "--checkpoint", G, "--input", sources, "--beam-size", beam,
                            "--no-repeat-ngram", n)
        assert len(blocked) == 40 and not any(_repeats(line, int(n)) for line in blocked)


def test_the_repetition_penalty_changes_outputs_and_its_defaults_none(capsys, sources):
    plain = translate(capsys, "--checkpoint", G, "--input", sources)
    assert translate(capsys, "--checkpoint", G, "--input", sources, "--no-repeat-ngram", "0",
                     "--repetition-penalty", "1") == plain
    penalized = translate(capsys, "--checkpoint", G, "--input", sources,
                          "--repetition-penalty", "3")
    assert penalized != plain
    assert sum(_repeats(x, 1) for x in penalized) < sum(_repeats(x, 1) for x in plain)


@pytest.mark.parametrize("flag, value, says", [
    ("--no-repeat-ngram", "-1", "must be a non-negative int; got -1"),
    ("--no-repeat-ngram", "True", "must be an int; got 'True'"),
    ("--no-repeat-ngram", "2.0", "must be an int; got '2.0'"),
    ("--repetition-penalty", "0", "must be a finite number > 0; got 0.0"),
    ("--repetition-penalty", "-1", "must be a finite number > 0; got -1.0"),
    ("--repetition-penalty", "nan", "must be a finite number > 0; got nan"),
    ("--repetition-penalty", "inf", "must be a finite number > 0; got inf"),
    ("--repetition-penalty", "strong", "must be a number; got 'strong'")])
def test_bad_constraints_are_refused_in_one_line(capsys, flag, value, says):
    for command in ("translate", "evaluate"):
        code = main([command, "--checkpoint", G, f"{flag}={value}", "--src", "x", "--ref", "y"]
                    if command == "evaluate" else [command, "--checkpoint", G,
                                                   f"{flag}={value}", "3 1 4"])
        line = one_error_line(capsys.readouterr().err, command)
        assert code == 2 and line.endswith(f"{flag} {says}"), line


def test_models_of_two_families_decode_together(capsys, bahdanau_run, tmp_path):
    """An RNN (no positional table) and a Transformer trained on the same data, so with the
    same tokenizers, decode as one: what the library's ensemble of the two gives."""
    from .conftest import _MODEL_FLAGS
    from .test_reliability import TINY, pairs_file

    data = [a for i, a in enumerate(TINY) if a not in _MODEL_FLAGS
            and TINY[i - 1] not in _MODEL_FLAGS]  # the Bahdanau run's data and run flags
    transformer = tmp_path / "run"
    assert main(["train", *data, "--train-path", str(pairs_file(tmp_path / "p.tsv", 40)),
                 "--out-dir", str(transformer), "--max-steps", "1", "--bf16", "false",
                 "--threads", "1", "--num-hiddens", "16", "--num-heads", "2",
                 "--ffn-num-hiddens", "32", "--num-encoder-layers", "1",
                 "--num-decoder-layers", "1"]) == 0
    capsys.readouterr()
    sentences = ["3 1 4", "1 5 9 2", "6"]
    both = translate(capsys, "--checkpoint", str(bahdanau_run), "--checkpoint",
                     str(transformer), "--beam-size", "2", *sentences)
    assert len(both) == 3
    from attnkit.decode.translator import EnsembleTranslator, load_translator

    members = [load_translator(bahdanau_run), load_translator(transformer)]
    assert both == EnsembleTranslator.of(members).translate(sentences, beam_size=2)
