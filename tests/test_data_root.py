"""The folder holding the corpora is resolved in one place, and every reader agrees on it."""

from pathlib import Path

import pytest

from attnkit._data_root import DATA_VARIABLE, DEFAULT_DATA_ROOT, data_root

ROOT = Path(__file__).resolve().parents[1]


def test_unset_or_empty_is_shared_data_beside_the_repository(monkeypatch):
    assert DEFAULT_DATA_ROOT == ROOT.parent / "shared" / "data"
    for unset in (None, ""):
        if unset is None:
            monkeypatch.delenv(DATA_VARIABLE, raising=False)
        else:
            monkeypatch.setenv(DATA_VARIABLE, unset)
        assert data_root() == DEFAULT_DATA_ROOT
        assert data_root(default=None) is None


def test_a_relative_or_home_value_becomes_an_absolute_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_VARIABLE, "corpora")
    assert data_root() == tmp_path / "corpora"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DATA_VARIABLE, "~/corpora")
    assert data_root(default=None) == tmp_path / "home" / "corpora"


@pytest.mark.parametrize("value", ["corpora", "~/corpora", "/abs/corpora"])
def test_a_config_file_a_flag_and_the_benchmark_read_the_same_folder(tmp_path, monkeypatch,
                                                                    value):
    """The file's ``${ATTNKIT_DATA}``, ``--data multi30k`` without a root and the throughput
    benchmark's default all name one folder, whatever the file's and the working folder."""
    from attnkit.bench.throughput.measure import default_data_root
    from attnkit.train.config import TrainConfig

    (tmp_path / "cfg").mkdir()
    (tmp_path / "work").mkdir()
    config = tmp_path / "cfg" / "run.toml"
    config.write_text('[data]\nkind = "multi30k"\nmulti30k_root = "${ATTNKIT_DATA}/multi30k"\n')
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DATA_VARIABLE, value)
    expected = Path(value.replace("~", str(tmp_path / "home"))) / "multi30k"
    if not expected.is_absolute():
        expected = tmp_path / "work" / expected
    assert TrainConfig.from_file(config).data.multi30k_root == str(expected)
    assert TrainConfig.from_flat(data="multi30k").data.multi30k_root == str(expected)
    assert default_data_root() == expected


def test_the_benchmark_default_is_the_documented_one(tmp_path, monkeypatch):
    from attnkit.bench.throughput.measure import default_data_root

    monkeypatch.delenv(DATA_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)  # not the repository: the default does not move with it
    assert default_data_root() == DEFAULT_DATA_ROOT / "multi30k"
