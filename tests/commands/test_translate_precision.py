"""``attnkit translate --precision``: fp32, bf16 and int8 translate a trained run alike;
``auto`` uses the choice ``attnkit evaluate --precision auto`` recorded, else fp32 with a
note; a bad value, and what CTranslate2 cannot run, get one line.

The run: a Transformer trained 300 steps on the dates task (the ``dates_run`` fixture),
translating 200 held-out dates. Tolerance: int8 rounds each weight to 1/254 of its
layer's largest and bf16 keeps 8 bits of mantissa, so a token changes only where the
model's two best next tokens are nearly tied; on 200 sentences at most 20% of the
outputs may differ from fp32's and the exact-match rate may move by at most 0.1 (20
sentences), while a broken precision (weights lost, garbage logits) matches next to none.
"""

from __future__ import annotations

import re

import pytest

from attnkit.cli import main
from attnkit.data.generated import generate_heldout_pairs
from attnkit.decode.precision import record_choice
from attnkit.decode.translator import Translator
from attnkit.runs import open_run

from .test_reliability import one_error_line

PAIRS = generate_heldout_pairs(200, seed=7)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache folder of the test's own: no recorded choice but the test's."""
    monkeypatch.setenv("ATTNKIT_CACHE_DIR", str(tmp_path / "cache"))


def _translate(dates_run, tmp_path, capsys, *flags: str) -> tuple[list[str], str]:
    src = tmp_path / "src.txt"
    src.write_text("".join(s + "\n" for s, _ in PAIRS))
    code = main(["translate", "--checkpoint", str(dates_run), "--input", str(src),
                 "--threads", "1", "--beam-size", "1", *flags])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out.splitlines(), err


def _exact(outputs: list[str]) -> float:
    return sum(o == t for o, (_, t) in zip(outputs, PAIRS, strict=True)) / len(PAIRS)


def _fp32(dates_run) -> list[str]:
    """The run's fp32 outputs, on one thread as the commands here run."""
    from attnkit.decode.translator import load_translator
    from attnkit.runtime import held_threads

    with held_threads(1):
        return load_translator(dates_run).translate([s for s, _ in PAIRS])


@pytest.fixture(scope="module")
def fp32_outputs(dates_run):
    return _fp32(dates_run)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_each_precision_translates_near_fp32(dates_run, tmp_path, capsys, fp32_outputs,
                                             precision):
    # the run learned the task, so there is something to keep. 300 steps at this rate are
    # chaotic: the same run made 0.29 with the torch-op loss and 0.145 with the compiled one
    # (whose gradients are as close to float64's), so the bar is where learning shows
    assert _exact(fp32_outputs) >= 0.1
    outputs, _ = _translate(dates_run, tmp_path, capsys, "--precision", precision)
    assert len(outputs) == len(PAIRS)
    same = sum(a == b for a, b in zip(outputs, fp32_outputs, strict=True)) / len(PAIRS)
    assert same >= (1.0 if precision == "fp32" else 0.8), same
    assert abs(_exact(outputs) - _exact(fp32_outputs)) <= 0.1


def test_bf16_on_a_cpu_without_native_bf16_says_it_is_slow(dates_run, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.setenv("ATTNKIT_CPU_BF16", "none")
    outputs, err = _translate(dates_run, tmp_path, capsys, "--precision", "bf16")
    assert len(outputs) == len(PAIRS)
    assert err.splitlines() == [
        "attnkit translate: note: --precision bf16 runs, but slowly: ATTNKIT_CPU_BF16=none: "
        "as if the CPU had no fast bf16; fp32 or int8 translate faster here"]


@pytest.mark.parametrize("value", ["fp16", "", "INT8", "auto "])
def test_a_bad_precision_gets_one_line(dates_run, capsys, value):
    assert main(["translate", "--checkpoint", str(dates_run), "--precision", value, "1.2.2000"]) \
        == 2
    line = one_error_line(capsys.readouterr().err, "translate")
    said = f"--precision must be one of 'fp32', 'bf16', 'int8', 'auto'; got {value!r}"
    assert re.fullmatch(r"(.*: )?" + re.escape(said) + r"( \(did you mean '\w+'\?\))?", line), line


def test_auto_without_a_record_translates_in_fp32_and_says_how_to_record(
        dates_run, tmp_path, capsys, fp32_outputs):
    outputs, err = _translate(dates_run, tmp_path, capsys, "--precision", "auto")
    assert outputs == fp32_outputs
    assert err.splitlines() == [
        "attnkit translate: note: --precision auto: no choice is recorded for this checkpoint "
        "on this machine; translating in fp32 (record one with 'attnkit evaluate --checkpoint "
        f"{dates_run} --precision auto')"]


def test_auto_uses_the_recorded_choice(dates_run, tmp_path, capsys, monkeypatch):
    chosen = []
    real = Translator.with_precision
    monkeypatch.setattr(Translator, "with_precision",
                        lambda self, p: chosen.append(p) or real(self, p))
    record_choice(open_run(dates_run).weights_digest, {"precision": "int8", "why": "as a test"})
    outputs, err = _translate(dates_run, tmp_path, capsys, "--precision", "auto")
    assert len(outputs) == len(PAIRS) and chosen[-1] == "int8"
    assert err.splitlines() == [
        "attnkit translate: note: --precision auto: int8, as recorded (as a test)"]


def test_a_record_for_other_weights_is_not_used(dates_run, tmp_path, capsys, fp32_outputs):
    record_choice("0" * 64, {"precision": "int8", "why": "other weights"})
    outputs, err = _translate(dates_run, tmp_path, capsys, "--precision", "auto")
    assert outputs == fp32_outputs and "no choice is recorded" in err


# ----------------------------------------------------------------- CTranslate2
@pytest.fixture(scope="module")
def exported(dates_run, tmp_path_factory):
    pytest.importorskip("ctranslate2")
    out = tmp_path_factory.mktemp("ct2") / "model"
    assert main(["export", "ctranslate2", "--checkpoint", str(dates_run), "--out",
                 str(out)]) == 0
    return out


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_ctranslate2_runs_fp32_and_int8_as_its_compute_types(exported, dates_run, capsys,
                                                             monkeypatch, precision):
    from attnkit.export import ctranslate2_translator

    types = []
    real = ctranslate2_translator.load_ctranslate2
    monkeypatch.setattr(ctranslate2_translator, "load_ctranslate2",
                        lambda *a, **kw: types.append(kw["compute_type"]) or real(*a, **kw))
    sources = [s for s, _ in PAIRS[:20]]
    assert main(["translate", "--engine", "ctranslate2", "--model", str(exported),
                 "--threads", "1", "--beam-size", "1", "--precision", precision,
                 *sources]) == 0
    outputs = capsys.readouterr().out.splitlines()
    assert types == [{"fp32": "float32", "int8": "int8"}[precision]]
    reference = _fp32(dates_run)[:20]
    assert sum(a == b for a, b in zip(outputs, reference, strict=True)) >= 16


def test_ctranslate2_refuses_what_it_cannot_run_in_one_line(exported, capsys):
    import ctranslate2

    base = ["translate", "--engine", "ctranslate2", "--model", str(exported), "1.2.2000"]
    assert main([*base, "--precision", "auto"]) == 2
    assert one_error_line(capsys.readouterr().err, "translate").endswith(
        "--precision auto is measured with attnkit's own decoder; with --engine ctranslate2 "
        "give --precision fp32 or int8 (its float32 or int8 compute type)")
    if "bfloat16" in ctranslate2.get_supported_compute_types("cpu"):
        pytest.skip("this CPU's CTranslate2 runs bfloat16")
    assert main([*base, "--precision", "bf16"]) == 2
    assert "--precision bf16: CTranslate2 runs no bfloat16 on this CPU (it runs " in \
        one_error_line(capsys.readouterr().err, "translate")
