"""Clear one-line errors across commands (a missing file, a bad value, an incompatible
checkpoint), end to end on a run trained on the Tatoeba sample."""

import json

from attnkit.cli import main

from ._tatoeba import needs_data


@needs_data
def test_clear_errors_for_missing_file_bad_value_and_incompatible_checkpoint(run_dir, tmp_path,
                                                                            capsys):
    assert main(["translate", "--checkpoint", str(tmp_path / "nope"), "Go."]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "--model", "gpt", "--out-dir", str(tmp_path / "x")]) == 2
    assert "model must be one of" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad"
    import shutil

    shutil.copytree(run_dir / "checkpoints" / "step-000009", bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["model"]["num_hiddens"] = 48  # a model section that does not match the weights
    (bad / "config.json").write_text(json.dumps(meta))
    assert main(["translate", "--checkpoint", str(bad), "Go."]) == 2
    assert "is corrupt: config.json (size or sha256 differs)" in capsys.readouterr().err
    import hashlib

    manifest = json.loads((bad / "manifest.json").read_text())  # re-sign the edited file
    data = (bad / "config.json").read_bytes()
    manifest["files"]["config.json"] = {"bytes": len(data),
                                        "sha256": hashlib.sha256(data).hexdigest()}
    (bad / "manifest.json").write_text(json.dumps(manifest))
    assert main(["translate", "--checkpoint", str(bad), "Go."]) == 2
    err = capsys.readouterr().err
    assert "attnkit translate: error:" in err and "shape" in err
