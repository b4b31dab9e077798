"""``attnkit evaluate``: sacreBLEU with its signature, chrF and lowercased BLEU."""

import json

from attnkit.cli import main

from ._tatoeba import TATOEBA, needs_data


@needs_data
def test_evaluate_reports_sacrebleu_signature_chrf_and_lowercased_bleu(run_dir, tmp_path,
                                                                         capsys):
    lines = TATOEBA.read_text(encoding="utf-8").splitlines()[2000:2030]
    (tmp_path / "src.txt").write_text("\n".join(x.split("\t")[0] for x in lines) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(x.split("\t")[1] for x in lines) + "\n")
    assert main(["evaluate", "--checkpoint", str(run_dir), "--src", str(tmp_path / "src.txt"),
                 "--ref", str(tmp_path / "ref.txt"), "--beam-size", "2", "--json",
                 "--average", "2"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out[out.index("{"):])
    assert res["sentences"] == 30
    assert res["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert "chrF" in res["chrf_signature"] or "nc:" in res["chrf_signature"]
    assert "lc" in res["bleu_lc_tok_signature"]
    assert 0.0 <= res["bleu"] <= 100.0 and 0.0 <= res["chrf"] <= 100.0
