"""Fuzzing the sizes the command line takes: model sizes and accumulation for ``train``,
beam width and output length for ``translate``, from tiny to far beyond any machine.

Every example runs under a real address-space limit (``RLIMIT_AS``, 2 GiB above what this
process maps already). Whatever the sizes, a command ends with success or one line
``attnkit CMD: error: ...`` (a refusal naming a flag given, or a plain out-of-memory
line) within a time bound; a size that no 2 GiB can hold is always refused, up front.
"""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnkit.cli import main

from ._limits import GiB, address_space_headroom
from .test_fuzz import ends_well
from .test_reliability import GOLDEN, TINY, pairs_file

FUZZ = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HEADROOM = 2 * GiB
HOPELESS = 10 ** 9  # any of the fuzzed model sizes this large needs far more than 2 GiB

small = st.integers(1, 48)
huge = st.one_of(st.integers(7, 15).map(lambda k: 10 ** k), st.integers(10 ** 7, 10 ** 15))
MODEL_FLAGS = ("--num-hiddens", "--ffn-num-hiddens", "--max-len", "--num-encoder-layers",
               "--num-decoder-layers")


def named_flag(err: str, given: dict) -> bool:
    """The error line names one of the ``given`` flags with its value."""
    return any(f"{flag} {value}" in err for flag, value in given.items())


@FUZZ
@given(sizes=st.dictionaries(st.sampled_from(MODEL_FLAGS), st.one_of(small, huge),
                             min_size=1, max_size=3),
       accum=st.one_of(st.none(), st.integers(1, 4), huge))
def test_random_sizes_to_train(tmp_path_factory, capsys, sizes, accum):
    tmp = tmp_path_factory.mktemp("fuzzsizes")
    given = dict(sizes, **({} if accum is None else {"--accum-steps": accum}))
    argv = ["train", *TINY, "--train-path", str(pairs_file(tmp / "p.tsv", 40)), "--out-dir",
            str(tmp / "run"), "--max-steps", "1", "--epochs", "1", "--time-limit", "30",
            *[str(x) for kv in given.items() for x in kv]]
    started = time.time()
    with address_space_headroom(HEADROOM):
        code = main(argv)
    err = capsys.readouterr().err
    ends_well(code, err, "train", started)
    if code == 2 and ("training needs" in err or "--accum-steps" in err):
        assert named_flag(err, given), (given, err)
    if any(v >= HOPELESS for v in sizes.values()):
        assert code == 2, (given, err)
        assert "Traceback" not in err and "out of memory" not in err, err  # refused up front


@FUZZ
@given(rnn=st.booleans(), beam=st.one_of(st.integers(1, 6), huge),
       max_output_len=st.one_of(st.none(), st.integers(1, 40), huge.map(lambda v: v * 100)))
def test_random_search_sizes_to_translate(capsys, bahdanau_run, rnn, beam, max_output_len):
    argv = ["translate", "--checkpoint", str(bahdanau_run if rnn else GOLDEN), "--beam-size",
            str(beam), *([] if max_output_len is None else
                         ["--max-output-len", str(max_output_len)]), "3 1", "", "4"]
    started = time.time()
    with address_space_headroom(HEADROOM):
        code = main(argv)
    out, err = capsys.readouterr()
    ends_well(code, err, "translate", started)
    hopeless = beam >= 10 ** 7 or (rnn and (max_output_len or 0) >= HOPELESS)
    if hopeless:  # beams x length that 2 GiB cannot hold: refused before decoding
        assert code == 2 and "decoding needs about" in err, (argv, err)
        assert named_flag(err, {"--beam-size": beam, "--max-output-len": max_output_len})
        assert out == ""
    else:  # fits; a Transformer's positional table caps even a huge --max-output-len
        assert code == 0, err
        assert out.count("\n") == 3 and out.split("\n")[1] == ""
