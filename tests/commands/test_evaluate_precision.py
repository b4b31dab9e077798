"""``attnkit evaluate --precision``: a fixed precision scores the test set in it;
``auto`` measures each precision on the run's validation sentences (never the test set),
records the fastest within 0.3 BLEU of fp32 for ``translate --precision auto``, and is
refused, in one line, where it cannot hold (averaged weights)."""

from __future__ import annotations

import json

import pytest

from attnkit.cli import main
from attnkit.data.generated import generate_heldout_pairs
from attnkit.decode.precision import recorded_choice
from attnkit.runs import open_run

from .test_reliability import one_error_line


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ATTNKIT_CPU_BF16", "none")  # bf16 is no candidate on any CPU kind


def _test_set(tmp_path, n: int = 30):
    pairs = generate_heldout_pairs(n, seed=11)
    (tmp_path / "src.txt").write_text("".join(s + "\n" for s, _ in pairs))
    (tmp_path / "ref.txt").write_text("".join(t + "\n" for _, t in pairs))
    return ["--src", str(tmp_path / "src.txt"), "--ref", str(tmp_path / "ref.txt")]


def _evaluate(dates_run, *flags: str) -> int:
    return main(["evaluate", "--checkpoint", str(dates_run), "--threads", "1", "--beam-size",
                 "1", "--json", *flags])


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_fixed_precision_scores_the_test_set_in_it(dates_run, tmp_path, capsys, precision):
    assert _evaluate(dates_run, *_test_set(tmp_path), "--precision", precision) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["precision"] == precision and result["sentences"] == 30
    assert err == ""


def test_auto_chooses_on_the_validation_sentences_and_records_it(dates_run, tmp_path,
                                                                  capsys):
    assert _evaluate(dates_run, "--precision", "auto") == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    # the run's 50 held-out sentences (--valid-size 50), bf16 not a candidate here
    assert set(record["measured"]) == {"fp32", "int8"}
    assert record["why"].startswith("on 50 validation sentences, beam 1, threads 1")
    fp32, chosen = record["measured"]["fp32"], record["measured"][record["precision"]]
    assert chosen["bleu"] >= fp32["bleu"] - 0.3
    assert chosen["sentences_per_s"] == max(m["sentences_per_s"] for m in
                                            record["measured"].values()
                                            if m["bleu"] >= fp32["bleu"] - 0.3)
    assert recorded_choice(open_run(dates_run).weights_digest) == record
    assert [line.split(": ")[2] for line in err.splitlines()][:2] == ["fp32", "int8"]
    # translate --precision auto now uses it
    assert main(["translate", "--checkpoint", str(dates_run), "--threads", "1",
                 "--precision", "auto", "1.2.2000"]) == 0
    assert capsys.readouterr().err == (f"attnkit translate: note: --precision auto: "
                                       f"{record['precision']}, as recorded ({record['why']})\n")


def test_auto_then_scores_the_test_set_in_the_choice(dates_run, tmp_path, capsys):
    assert _evaluate(dates_run, *_test_set(tmp_path, 20), "--precision", "auto",
                     "--limit", "20") == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    chosen = recorded_choice(open_run(dates_run).weights_digest)
    assert result["precision"] == chosen["precision"] and result["sentences"] == 20
    assert chosen["why"].startswith("on 20 validation sentences")  # --limit, validation


def test_auto_is_not_chosen_for_averaged_weights(dates_run, capsys):
    assert _evaluate(dates_run, "--precision", "auto", "--average", "2") == 2
    assert one_error_line(capsys.readouterr().err, "evaluate").endswith(
        "--precision auto is chosen for one checkpoint's weights, not for --average 2; write "
        "the average with 'attnkit average' and choose for it")


def test_a_bad_precision_gets_one_line(dates_run, tmp_path, capsys):
    assert _evaluate(dates_run, *_test_set(tmp_path), "--precision", "float16") == 2
    assert one_error_line(capsys.readouterr().err, "evaluate").endswith(
        "--precision must be one of 'fp32', 'bf16', 'int8', 'auto'; got 'float16'")


def test_auto_without_the_runs_validation_data_gets_one_line(capsys):
    """The golden run was trained on a file that is gone: there is nothing to measure on,
    and the test set is never a stand-in."""
    from pathlib import Path

    golden = Path(__file__).resolve().parents[1] / "golden" / "run-format-2"
    assert main(["evaluate", "--checkpoint", str(golden), "--precision", "auto",
                 "--threads", "1"]) == 2
    line = one_error_line(capsys.readouterr().err, "evaluate")
    assert "--precision auto measures BLEU on the validation data the run was trained with, " \
           "which cannot be read now: path: no such file: " in line


def test_auto_with_an_unwritable_cache_still_chooses_and_says_it_kept_nothing(
        dates_run, tmp_path, capsys, monkeypatch):
    (tmp_path / "cache" / "precision-choices.json").mkdir(parents=True)  # a folder in its way
    assert _evaluate(dates_run, *_test_set(tmp_path, 10), "--precision", "auto",
                     "--limit", "10") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["precision"] in ("fp32", "int8")
    last = err.splitlines()[-1]
    assert "; not recorded, for this call only (" in last and "precision-choices.json" in last
