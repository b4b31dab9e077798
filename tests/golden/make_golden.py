"""Write the golden checkpoint of run format 2 and the outputs it must keep giving.

Run once per run-format version (``python tests/golden/make_golden.py``); the
test ``tests/runs/test_run_format.py`` then checks, in every later test run,
that the checkpoint still loads and translates exactly as recorded here, and
``tests/decode/test_translator.py`` that 300 sentences decode as recorded.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from attnkit.decode.translator import load_translator
from attnkit.runs import RUN_FORMAT_VERSION, run_description, save_checkpoint
from attnkit.train.config import TrainConfig
from attnkit.train.trainer import Trainer

HERE = Path(__file__).resolve().parent
WORDS = "zero one two three four five six seven eight nine".split()
SENTENCES = ["3 1 4", "1 5 9 2", "6", "5 3 5 8 9", "7 7"]
SOURCE_IDS = [[5, 9, 12, 3], [7, 7, 3, 0]]  # a padded batch for the logits check


def write_task(path: Path, n: int = 3000) -> Path:
    """Digits to their English names ("3 1 4" -> "three one four"), tab-separated."""
    import random

    rng = random.Random(0)
    lines = []
    for _ in range(n):
        digits = [rng.randrange(10) for _ in range(rng.randint(1, 5))]
        lines.append(" ".join(map(str, digits)) + "\t" + " ".join(WORDS[d] for d in digits))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def golden_outputs(path: Path) -> dict:
    tr = load_translator(path)
    src = torch.tensor(SOURCE_IDS)
    lens = torch.tensor([4, 3])
    tgt = torch.tensor([[2, 6, 8], [2, 10, 0]])
    with torch.no_grad():
        logits = tr.model(src, tgt, lens, torch.tensor([3, 2]))  # (2, 3, V)
    return {"sentences": SENTENCES,
            "greedy": tr.translate(SENTENCES, beam_size=1),
            "beam3": tr.translate(SENTENCES, beam_size=3),
            "logits": [[[round(float(x), 6) for x in row] for row in seq] for seq in logits]}


def decoded_outputs(path: Path, task: Path) -> dict:
    """Greedy and beam-5 translations of the first 300 sources of the digits task: the
    outputs decoding must keep giving, byte for byte (``tests/decode/test_translator.py``)."""
    tr = load_translator(path)
    sentences = [line.split("\t")[0] for line in task.read_text().splitlines()[:300]]
    return {"sentences": sentences, "beam1": tr.translate(sentences, beam_size=1),
            "beam5": tr.translate(sentences, beam_size=5)}


def main() -> int:
    work = Path(tempfile.mkdtemp())
    cfg = TrainConfig.from_flat(
        data="tsv", train_path=str(write_task(work / "digits.tsv")), tokenizer="word",
        valid_size=20, eval_sentences=5, max_tokens=600, max_sentence_tokens=12,
        num_hiddens=16, num_heads=2, ffn_num_hiddens=32, num_encoder_layers=1,
        num_decoder_layers=1, max_len=16, tie_output=True, dropout=0.0, warmup=100,
        lr_scale=2.0, max_steps=400, eval_every=0, checkpoint_every=0,
        progress=False, device="cpu", out_dir=str(work / "run"))
    trainer = Trainer(cfg, log=None)
    trainer.fit()
    target = HERE / f"run-format-{RUN_FORMAT_VERSION}"
    shutil.rmtree(target, ignore_errors=True)
    config = run_description(model_config=trainer.model_config,
                             tokenizer=trainer.tokenizers.describe(), train=cfg.to_dict())
    saved = save_checkpoint(work / "golden", model=trainer.model, optimizer=None,
                            scheduler=None, config=config, train_state={"step": trainer.step},
                            tokenizer=trainer.tokenizers)
    shutil.copytree(saved, target)
    (HERE / f"run-format-{RUN_FORMAT_VERSION}.expected.json").write_text(
        json.dumps(golden_outputs(target), indent=1, ensure_ascii=False) + "\n")
    (HERE / f"run-format-{RUN_FORMAT_VERSION}.decoded.json").write_text(
        json.dumps(decoded_outputs(target, work / "digits.tsv"), indent=0,
                   ensure_ascii=False) + "\n")
    shutil.rmtree(work)
    print(f"wrote {target} ({sum(f.stat().st_size for f in target.rglob('*') if f.is_file())}"
          " bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
