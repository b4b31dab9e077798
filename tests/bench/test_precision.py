"""The precision suite: two trainers of one config, what ``auto`` chose (the CPU's answer
substituted both ways), rounds of each, and the target that follows from the choice."""

from __future__ import annotations

import pytest

TINY = """\
[data]
kind = "dates"
[model]
preset = "transformer_small"
num_hiddens = 16
num_heads = 2
ffn_num_hiddens = 24
num_encoder_layers = 1
num_decoder_layers = 1
[optim]
max_tokens = 200
[run]
bf16 = "auto"
"""


@pytest.mark.parametrize("cpu", ["native", "none"])
def test_the_suite_times_both_trainers_and_names_the_choice(cpu, tmp_path, monkeypatch):
    from attnkit.bench.precision.measure import BF16_TARGET, FP32_FLOOR, run

    monkeypatch.setenv("ATTNKIT_CPU_BF16", cpu)
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    r = run(config=str(config), rounds=2, num_batches=2)
    assert r.setting == "auto" and r.chosen_bf16 is (cpu == "native")
    assert "ATTNKIT_CPU_BF16" in r.reason
    assert [len(v) for v in r.rounds.values()] == [2, 2] and r.threads == 1
    assert r.summary()[1] == f"{r.batches} batches ({r.tokens:,} target tokens) a round, 1 " \
        "torch thread(s) per trainer"
    assert all(x > 0 for v in r.rounds.values() for x in v)
    assert r.target == (BF16_TARGET if cpu == "native" else FP32_FLOOR)
    assert r.ratio == r.medians["default"] / r.medians["fp32"]
    text = r.markdown("attnkit bench precision")
    default = "bf16 autocast" if cpu == "native" else "fp32"
    assert f"| `bf16 = 'auto'` (default) | {default}: " in text
    assert f"where the default is {default}: {r.verdict()}" in text
    assert not any(tmp_path.glob("attnkit-precision-*"))  # run folders are temporary


def test_a_missing_config_is_named(tmp_path):
    from attnkit.bench.precision.measure import run

    with pytest.raises(FileNotFoundError, match="config file not found"):
        run(config=str(tmp_path / "absent.toml"), rounds=1, num_batches=1)
