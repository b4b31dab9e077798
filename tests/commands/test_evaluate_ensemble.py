"""``attnkit evaluate`` with ``--checkpoint`` given more than once (the ensemble of the
runs) and with the search constraints. Oracles: the golden run alone, each member alone."""

import json

import pytest

from attnkit.cli import main

from .._ensemble import GOLDEN, SOURCES, noisy_translator, swapped_translator, write_run
from .test_reliability import one_error_line

G = str(GOLDEN)
WORDS = "zero one two three four five six seven eight nine".split()


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return str(write_run(tmp_path_factory.mktemp("noisy"), noisy_translator()))


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """Digits and their names: the golden run's task."""
    root = tmp_path_factory.mktemp("test_set")
    (root / "src.txt").write_text("".join(s + "\n" for s in SOURCES[:40]), encoding="utf-8")
    (root / "ref.txt").write_text("".join(" ".join(WORDS[int(d)] for d in s.split()) + "\n"
                                          for s in SOURCES[:40]), encoding="utf-8")
    return ["--src", str(root / "src.txt"), "--ref", str(root / "ref.txt")]


def evaluate(capsys, tmp_path, *argv) -> tuple[dict, list[str]]:
    """The scores and the translations of ``attnkit evaluate ARGV``."""
    hyps = tmp_path / f"hyp{len(list(tmp_path.iterdir()))}.txt"
    code = main(["evaluate", *argv, "--json", "--hyp-out", str(hyps)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), hyps.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("beam", ["1", "4"])
def test_a_run_ensembled_with_itself_scores_as_the_run(capsys, tmp_path, test_set, beam):
    alone = evaluate(capsys, tmp_path, "--checkpoint", G, *test_set, "--beam-size", beam)
    both = evaluate(capsys, tmp_path, "--checkpoint", G, "--checkpoint", G, *test_set,
                    "--beam-size", beam)
    assert both == alone


def test_two_runs_score_their_ensemble(capsys, tmp_path, test_set, noisy):
    _, both = evaluate(capsys, tmp_path, "--checkpoint", G, "--checkpoint", noisy, *test_set)
    _, one = evaluate(capsys, tmp_path, "--checkpoint", G, *test_set)
    _, two = evaluate(capsys, tmp_path, "--checkpoint", noisy, *test_set)
    assert len(both) == 40 and any(e != a and e != b for e, a, b in zip(both, one, two))


def test_runs_of_other_vocabularies_are_refused_in_one_line(capsys, tmp_path, test_set):
    other = write_run(tmp_path / "other", swapped_translator("src"))
    code = main(["evaluate", "--checkpoint", str(other), "--checkpoint", G, *test_set])
    line = one_error_line(capsys.readouterr().err, "evaluate")
    assert code == 2 and "their source tokenizers differ" in line
    assert G in line and str(other) in line


def test_the_translations_never_overwrite_a_file_of_any_member(capsys, tmp_path, test_set,
                                                              noisy):
    target = f"{noisy}/config.json"
    before = open(target, "rb").read()
    code = main(["evaluate", "--checkpoint", noisy, "--checkpoint", G, *test_set,
                 "--hyp-out", target])
    line = one_error_line(capsys.readouterr().err, "evaluate")
    assert code == 2 and "--hyp-out" in line and "--checkpoint" in line
    assert open(target, "rb").read() == before


def test_no_repeat_ngram_leaves_no_repeated_word(capsys, tmp_path, test_set):
    _, plain = evaluate(capsys, tmp_path, "--checkpoint", G, *test_set)
    _, blocked = evaluate(capsys, tmp_path, "--checkpoint", G, *test_set, "--beam-size", "4",
                          "--no-repeat-ngram", "1", "--repetition-penalty", "1.5")
    assert any(len(set(x.split())) < len(x.split()) for x in plain)
    assert len(blocked) == 40 and all(len(set(x.split())) == len(x.split()) for x in blocked)


def _tiny_run(root, *flags):
    """A 3-step run on the digits task of ``test_reliability``, a checkpoint every step."""
    from .test_reliability import TINY, pairs_file

    root.mkdir()
    argv = ["train", *TINY, "--train-path", str(pairs_file(root / "pairs.tsv", 200)),
            "--out-dir", str(root / "run"), "--max-steps", "3", "--checkpoint-every", "1",
            "--keep-last", "5", *flags]
    assert main(argv) == 0
    return root / "run"


def test_average_averages_each_member_of_an_ensemble(capsys, tmp_path):
    """``--average 2`` with two runs of one tokenizer (other sizes): each run's last two
    checkpoints averaged, then ensembled, as the library does it."""
    from attnkit.decode.translator import EnsembleTranslator, load_translator
    from attnkit.runs.run import open_run

    a = _tiny_run(tmp_path / "a")
    b = _tiny_run(tmp_path / "b", "--ffn-num-hiddens", "48")
    capsys.readouterr()
    srcs = ["3 1", "4 1 5", "9 2 6 5", "3 5"]
    (tmp_path / "src.txt").write_text("\n".join(srcs) + "\n")
    (tmp_path / "ref.txt").write_text("three one\nfour one five\nnine two six five\nthree five\n")
    hyps = tmp_path / "hyps.txt"
    code = main(["evaluate", "--checkpoint", str(a), "--checkpoint", str(b), "--average", "2",
                 "--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt"),
                 "--hyp-out", str(hyps), "--beam-size", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert err.count("averaged 2 checkpoints: ['step-000002', 'step-000003']") == 2

    def averaged(path):
        run = open_run(path)
        return load_translator(run, weights=run.average(run.last(2)))

    want = EnsembleTranslator.of([averaged(a), averaged(b)]).translate(srcs, beam_size=2)
    assert hyps.read_text().splitlines() == want


def test_an_ensemble_that_cannot_fit_in_memory_is_refused_before_its_members_load(
        capsys, tmp_path, test_set, noisy, monkeypatch):
    """The other members' parameters (the first's size each) against what the process may
    still take: too many is one line naming --checkpoint, before the second loads; a path
    given twice is loaded once."""
    import attnkit._memory as memory
    import attnkit.decode.translator as translator

    loaded, load = [], translator.load_translator
    monkeypatch.setattr(translator, "load_translator",
                        lambda run, **kw: loaded.append(run.path) or load(run, **kw))
    real = memory.available_memory
    monkeypatch.setattr(memory, "available_memory", lambda: memory.Budget(1000, "a test's limit"))
    code = main(["evaluate", "--checkpoint", G, "--checkpoint", noisy, *test_set])
    line = one_error_line(capsys.readouterr().err, "evaluate")
    assert code == 2 and "--checkpoint given 2 times (2 different)" in line
    assert "a test's limit" in line and len(loaded) == 1  # the second was not loaded
    monkeypatch.setattr(memory, "available_memory", real)
    loaded.clear()
    both = evaluate(capsys, tmp_path, "--checkpoint", G, "--checkpoint", G, *test_set)
    assert len(loaded) == 1  # one run given twice: loaded once
    assert both == evaluate(capsys, tmp_path, "--checkpoint", G, *test_set)
