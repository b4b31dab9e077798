"""A run opened once: what ``open_run`` resolves, how often it verifies, and what the
:class:`Run` answers (config, tokenizers, weights, its data's test split, averages)."""

import shutil
from pathlib import Path

import pytest
import torch

from attnkit.bench.decoding import measure as decoding_bench
from attnkit.data.corpus import run_test_split
from attnkit.data.tokenizer import TokenizerPair
from attnkit.decode.translator import load_translator
from attnkit.runs import average_checkpoints, list_checkpoints, open_run

from ._edit import edit_config
from ._helpers import GOLDEN, count_verifications, three_step_run


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """``RUN/checkpoints/step-1..3``; ``best.json`` names step 2 (:func:`three_step_run`)."""
    return three_step_run(tmp_path / "run")


@pytest.fixture
def verifications(monkeypatch) -> list:
    """Each manifest verification, counted (the real check still runs)."""
    return count_verifications(monkeypatch)


def test_open_run_resolves_a_run_its_checkpoints_best_and_a_step(run_dir):
    root = run_dir / "checkpoints"
    assert open_run(run_dir).path == root / "step-000003"
    assert open_run(root).path == root / "step-000003"
    assert open_run(run_dir / "best").path == root / "step-000002"
    assert open_run(root / "step-000001").path == root / "step-000001"
    assert open_run(root / "step-000001").train_state == {"step": 1}


def test_open_run_verifies_once(run_dir, verifications):
    open_run(run_dir)
    assert verifications == [run_dir / "checkpoints" / "step-000003"]


def test_loading_for_translation_verifies_the_manifest_once(run_dir, verifications):
    tr = load_translator(run_dir)
    assert len(verifications) == 1 and verifications[0] == tr.run.path
    load_translator(run_dir / "best")
    assert len(verifications) == 2  # one more load, one more verification


def test_a_run_opened_already_loads_without_verifying_again(run_dir, verifications):
    run = open_run(run_dir / "best")
    tr = load_translator(run)
    assert len(verifications) == 1 and tr.run is run
    torch.testing.assert_close(tr.model.state_dict(), run.weights(), rtol=0, atol=0)


def test_a_run_answers_config_tokenizers_and_weights(run_dir):
    run = open_run(run_dir)
    golden = open_run(GOLDEN)
    assert run.model_config == golden.model_config == run.model
    assert run.training_config == golden.train and run.data == golden.train["data"]
    tokenizers = TokenizerPair.load(run.tokenizer_dir)
    assert tokenizers.src.vocab_size == run.model_config.src_vocab_size
    assert set(run.weights()) == set(load_translator(run).model.state_dict())


def test_average_of_the_last_k_is_the_mean_of_their_weights(run_dir):
    run = open_run(run_dir)
    root = run_dir / "checkpoints"
    assert run.last(2) == list_checkpoints(root)[-2:] == [root / "step-000002",
                                                          root / "step-000003"]
    got = run.average_last(2)
    two, three = open_run(root / "step-000002").weights(), open_run(root / "step-000003").weights()
    for k, ref in three.items():
        want = ((two[k].double() + ref.double()) / 2).to(ref.dtype) \
            if ref.is_floating_point() else ref
        torch.testing.assert_close(got[k], want, rtol=0, atol=0)
    torch.testing.assert_close(got, average_checkpoints(run.last(2)), rtol=0, atol=0)


def test_averaging_verifies_each_checkpoint_once(run_dir, verifications):
    root = run_dir / "checkpoints"
    run = open_run(run_dir)  # step 3, verified as it is opened
    run.average_last(3)  # steps 1 and 2 verified as they are read; step 3 is not again
    assert verifications == [root / "step-000003", root / "step-000001", root / "step-000002"]


def _multi30k(root: Path) -> Path:
    """A Multi30k folder whose raw and tokenized test files differ."""
    for sub, name in (("raw", "test_2016_flickr.{}"), ("tok", "test_2016_flickr.lc.norm.tok.{}")):
        (root / sub).mkdir(parents=True)
        for lang, text in (("de", "Ein Hund."), ("en", "A dog.")):
            line = text.lower().replace(".", " .") if sub == "tok" else text
            (root / sub / name.format(lang)).write_text(f"{line}\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("tokenized, want", [(False, (["Ein Hund."], ["A dog."])),
                                             (True, (["ein hund ."], ["a dog ."]))])
def test_the_test_split_is_read_as_the_run_was_trained(tmp_path, tokenized, want):
    ckpt = Path(shutil.copytree(GOLDEN, tmp_path / "ckpt"))
    data = {"kind": "multi30k", "multi30k_root": str(_multi30k(tmp_path / "multi30k")),
            "src_lang": "de", "tgt_lang": "en", "tokenized": tokenized}
    edit_config(ckpt, lambda meta: meta["train"]["data"].update(data))
    assert run_test_split(open_run(ckpt), "test_2016_flickr") == want
    # the decoding benchmark scores against the same references as `attnkit evaluate`
    assert decoding_bench._test_set(open_run(ckpt), "test_2016_flickr", None) == want


def test_a_test_split_needs_a_multi30k_run():
    with pytest.raises(ValueError, match=r"--multi30k-split needs a run trained on \[data\] "
                                         r"kind = 'multi30k'"):
        run_test_split(open_run(GOLDEN), "test_2016_flickr", needed_by="--multi30k-split")


CALLERS = ("commands/translate.py", "commands/evaluate.py", "commands/average.py",
           "commands/explore.py", "commands/export.py", "commands/_decoding.py",
           "bench/decoding/measure.py", "bench/peers/measure.py", "decode/translator.py",
           "train/trainer.py", "train/setup.py")
READS_A_RUN_ITSELF = ("config.json", "train_state.json", "list_checkpoints(",
                      "latest_checkpoint(", "resolve_checkpoint(", "load_checkpoint(")


@pytest.mark.parametrize("caller", CALLERS)
def test_callers_ask_the_run_instead_of_reading_its_files(caller):
    source = (Path(__file__).resolve().parents[2] / "attnkit" / caller).read_text()
    assert [word for word in READS_A_RUN_ITSELF if word in source] == []
