"""attnkit against a peer toolkit on Multi30k de→en: same data, model, budget and scorer.

The peer (``--peer``) is JoeyNMT 2.3.0 (the default, described below) or eole 0.6.4
(OpenNMT-py's successor; :mod:`.eole` says what differs for it: its venv in
``WORK/eole-venv``, its YAML, its interrupt, ``eole predict``). Each peer is one
:class:`~.peer.Peer`; ``attnkit bench peers`` does everything itself:

1. a virtual environment for JoeyNMT (``joeynmt==2.3.0`` with this process's
   torch version, from the package registry), made once in ``WORK/joeynmt-venv``;
2. the shared inputs: the run's own 6k joint sentencepiece model, trained
   exactly as ``attnkit train`` trains it (same pairs, size and seed), written
   as a ``.model`` file with the vocabulary file JoeyNMT reads, and the raw
   Multi30k files;
3. a JoeyNMT YAML equivalent to the attnkit config (3+3 post-LN layers,
   d=256, 8 heads, FFN 512, dropout 0.1, shared source/target embeddings and
   an untied output layer, label smoothing 0.1, Adam β=(0.9, 0.98), the
   Noam schedule with the same factor and warmup, clipping at norm 1, a
   budget of ``max_tokens`` padded tokens per batch, fp32, one thread);
4. training of each tool for the same ``budget`` seconds of training (set-up
   excluded: attnkit's ``time_limit``; JoeyNMT is interrupted ``budget``
   seconds after its first epoch starts and saves its weights), one after the
   other, or side by side with each process pinned to its own core
   (``--concurrent``); no validation during training for either;
5. decoding of the test split by each tool's own command (greedy, and beam 5
   with GNMT α = 0.6), timed from the shell, scored by the same sacreBLEU calls.

Reported per tool: training steps, target tokens/s (tokens that are
predicted, ``<eos>`` included), peak RSS of the training process, BLEU (cased
``13a`` and lowercased) greedy and beam 5, and the decoding time. Targets:
attnkit ≥ JoeyNMT + 2 BLEU (beam 5) and ≥ 1.5× its training tokens/s (against eole:
≥ its BLEU and ≥ 1.5× its training tokens/s).
"""

from ..._values import check_choice
from .._suite import Flag, Suite

#: the peers ``--peer`` chooses from (the first is the default)
PEER_NAMES = ("joeynmt", "eole")


def peer_name(text: str) -> str:
    """``--peer``: one of :data:`PEER_NAMES`."""
    return check_choice("", text, PEER_NAMES)


SUITE = Suite(
    package=__name__,
    help="attnkit against JoeyNMT 2.3.0 or eole 0.6.4: Multi30k de-en, equal training "
         "budget, BLEU",
    flags=(
        Flag("--peer", "the toolkit compared: joeynmt (2.3.0, the default) or eole (0.6.4)",
             type=peer_name, default=PEER_NAMES[0]),
        Flag("--config", "the attnkit config; the peer gets the equivalent YAML",
             default="configs/multi30k-de-en.toml"),
        Flag("--budget", "seconds of training for each tool (default 1800)", type=float,
             default=1800.0),
        Flag("--work", "folder for the peer's venv, the shared inputs and both runs",
             default="runs/peers"),
        Flag("--concurrent", "train both at once, each process pinned to its own core "
                             "(default: one after the other)", switch=True),
        Flag("--reuse", "keep the finished training runs in --work; decode and score again",
             switch=True),
        Flag("--split", "the Multi30k split scored", default="test_2016_flickr"),
        Flag("--limit", "score only the first N sentences (a smoke run)", type=int),
    ),
    convert=lambda a: dict(config=a.config, budget=a.budget, work=a.work,
                             concurrent=a.concurrent, reuse=a.reuse, split=a.split,
                             limit=a.limit, peer=a.peer),
)
