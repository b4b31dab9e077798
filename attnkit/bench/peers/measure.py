"""How :mod:`attnkit.bench.peers` measures: the peer's environment and config (its
:class:`~.peer.Peer`), both trainings, both decodings and the table; :func:`run` returns
a :class:`PeersResult`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..._values import check_choice, check_finite
from ...data.corpus import load_pairs, multi30k_files, multi30k_test_split
from ...data.tokenizer import TokenizerPair
from ...eval.bleu import corpus_bleu, tokenized_lowercase_bleu
from ...runs.run import Run, open_run
from ...train.config import TrainConfig
from ..report import section_markers
from .eole import Eole
from .joeynmt import JOEYNMT_VERSION, JoeyNMT, joeynmt_config
from .peer import Peer, thread_env

__all__ = ["END", "JOEYNMT_VERSION", "PEERS", "START", "PeersResult", "joeynmt_config",
           "run"]

#: the recorded section of the JoeyNMT comparison; another peer's is ``peers-NAME``
START, END = section_markers("peers")
#: the peers ``--peer`` chooses (:data:`PEER_NAMES`), by name
PEERS: dict[str, Peer] = {p.name: p for p in (JoeyNMT(), Eole())}
BEAMS = (1, 5)


@dataclass
class PeersResult:
    rows: dict  # tool -> measurements: attnkit's and the peer's
    budget: float
    mode: str
    split: str
    sentences: int
    date: str
    notes: list = field(default_factory=list)
    peer: str = "joeynmt"  # the name of the peer in PEERS
    #: settings that could not be made equal (default: the peer's for the shipped config)
    differences: list | None = None

    #: the recorded section: JoeyNMT's; a result of another peer has its own
    #: (:attr:`Peer.section`, set on the instance)
    markers: ClassVar[tuple[str, str]] = (START, END)

    def __post_init__(self) -> None:
        self.markers = section_markers(PEERS[self.peer].section)  # type: ignore[misc]

    def targets(self) -> list[str]:
        peer = PEERS[self.peer]
        a, p = self.rows.get("attnkit"), self.rows.get(self.peer)
        if not (a and p):
            return []
        gain = a["bleu"][5]["cased"] - p["bleu"][5]["cased"]
        speed = a["tok_s"] / max(p["tok_s"], 1e-9)
        margin = peer.bleu_margin
        return [f"BLEU (beam 5, cased): attnkit {gain:+.2f} over {peer.display} (target >= "
                f"{margin:+g}): {'met' if gain >= margin else 'NOT met'}",
                f"training tokens/s: attnkit {speed:.2f}x {peer.display} (target >= 1.5x): "
                f"{'met' if speed >= 1.5 else 'NOT met'}"]

    def summary(self) -> list[str]:
        lines = []
        for tool, r in self.rows.items():
            lines.append(
                f"{tool:8s} steps {r['steps']:6d}  {r['tok_s']:7.0f} tok/s  peak RSS "
                f"{r['peak_rss_mb']:6.0f} MB  BLEU greedy {r['bleu'][1]['cased']:5.2f} "
                f"beam5 {r['bleu'][5]['cased']:5.2f} (lc {r['bleu'][5]['lower']:5.2f})  "
                f"decode {r['decode_s'][1]:.0f}/{r['decode_s'][5]:.0f} s")
        return lines + self.targets() + list(self.notes)

    def markdown(self, command: str) -> str:
        peer = PEERS[self.peer]
        differences = peer.differences(None) if self.differences is None else self.differences
        head = (f"## Versus {peer.title}: Multi30k de→en, equal budget\n\n"
                f"Command: `{command}` ({self.date}). {self.budget / 60:.0f} minutes of "
                f"training each ({self.mode}), one thread each, fp32; test: "
                f"{self.sentences} sentences of {self.split}, scored by sacreBLEU "
                "(cased `13a`; lowercased `13a`).\n\n"
                "| tool | steps | target tokens trained on | target tokens/s | peak RSS (MB) "
                "| BLEU greedy | BLEU beam 5 | lowercased greedy / beam 5 "
                "| decode greedy / beam 5 (s) |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
        body = "".join(
            f"| {tool} | {r['steps']:,} | {r['tokens']:,} | {r['tok_s']:,.0f} | "
            f"{r['peak_rss_mb']:,.0f} | "
            f"{r['bleu'][1]['cased']:.2f} | {r['bleu'][5]['cased']:.2f} | "
            f"{r['bleu'][1]['lower']:.2f} / {r['bleu'][5]['lower']:.2f} | "
            f"{r['decode_s'][1]:.0f} / {r['decode_s'][5]:.0f} |\n"
            for tool, r in self.rows.items())
        lists = ["", *[f"- {line}" for line in self.targets()],
                 "", "Settings that could not be made equal:", "",
                 *[f"- {d}" for d in differences], *[f"- {n}" for n in self.notes]]
        if peer.features:
            lists += ["", f"What {peer.display} users rely on, in attnkit:", "",
                      f"| {peer.display} feature | attnkit |", "|---|---|",
                      *[f"| {what} | {ours} |" for what, ours in peer.features]]
        return head + body + "\n".join(lists) + "\n"


# ------------------------------------------------------------------ set-up
def shared_inputs(cfg: TrainConfig, work: Path) -> dict:
    """The sentencepiece model (as ``attnkit train`` makes it), the vocabulary file the
    peers read and links to the raw Multi30k files, in ``work/data``."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    spm_file, vocab_file = data / "spm.model", data / "vocab.txt"
    if not spm_file.exists():
        pairs, _, _ = load_pairs(cfg.data, seed=cfg.run.seed)
        t = cfg.tokenizer
        tok = TokenizerPair.train(t.kind, pairs, shared=t.shared_vocab,
                                  vocab_size=t.vocab_size, seed=cfg.run.seed).src
        spm_file.write_bytes(tok.model_proto)
        # each peer adds its own four specials first; the pieces follow in id order
        pieces = [tok.id_to_piece(i) for i in range(tok.vocab_size)]
        vocab_file.write_text("\n".join(p for p in pieces[4:]) + "\n", encoding="utf-8")
    d = cfg.data
    for split in ("train", "val", "test_2016_flickr"):
        for path, lang in zip(multi30k_files(d.multi30k_root, split, d.src_lang, d.tgt_lang,
                                             tokenized=d.tokenized),
                              (d.src_lang, d.tgt_lang)):
            link = data / f"{split}.{lang}"
            if not link.exists():
                link.symlink_to(Path(path).resolve())
    return {"dir": data, "spm": spm_file, "vocab": vocab_file}


# ---------------------------------------------------------------- training
def _attnkit_command(config: Path, out_dir: Path, budget: float) -> list[str]:
    return [sys.executable, "-m", "attnkit.cli", "train", "--config", str(config),
            "--threads", "1", "--bf16", "false", "--time-limit", str(budget),
            "--eval-every", "0", "--checkpoint-every", "1000", "--keep-last", "1",
            "--no-progress", "--out-dir", str(out_dir)]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _Job:
    """One training process: started, optionally pinned to a core, waited for with its
    own peak RSS (``os.wait4``)."""

    def __init__(self, name: str, argv: list[str], log: Path, core: int | None) -> None:
        self.name, self.log_path = name, log
        self.log = log.open("w")
        # SIGINT back to its default in the child: a benchmark started in the background
        # inherits it ignored, and the peers save their weights only on KeyboardInterrupt
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=thread_env(), start_new_session=True,
                                     preexec_fn=_default_sigint)
        if core is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.proc.pid, {core})
        self.started, self.peak_rss_mb, self.returncode = time.time(), 0.0, None
        self.interrupted = 0.0

    def poll(self) -> bool:
        """Whether it has ended (reaping it and recording its peak RSS)."""
        if self.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode
        self.peak_rss_mb = usage.ru_maxrss / 1024  # kB on Linux
        self.log.close()
        return True

    def interrupt(self) -> None:
        if self.returncode is None:
            os.kill(self.proc.pid, signal.SIGINT)
            self.interrupted = self.interrupted or time.time()

    def overdue(self, grace: float = 300.0) -> bool:
        """Still running ``grace`` s after an interrupt (then it is killed)."""
        if self.returncode is None and self.interrupted and \
                time.time() - self.interrupted > grace:
            self.proc.kill()
            return True
        return False


def _train(jobs: dict, budget: float, peer: Peer, *, log=print) -> None:
    """Wait for the jobs; the peer is interrupted ``budget`` s after its training log says
    that training began (:meth:`Peer.started`)."""
    peer_t0 = None
    while not all([job.poll() for job in jobs.values()]):  # a list: poll (reap) every job
        if any(job.returncode for job in jobs.values()):  # one failed: stop the others
            for job in jobs.values():
                job.interrupt()
        theirs = jobs.get(peer.name)
        if theirs is not None and theirs.returncode is None:
            if peer_t0 is None and theirs.log_path.exists() and \
                    peer.started(theirs.log_path.read_text(errors="replace")):
                peer_t0 = time.time()
                log(f"{peer.name}: training started after {peer_t0 - theirs.started:.0f} s "
                    "of set-up")
            if peer_t0 is not None and time.time() - peer_t0 >= budget:
                theirs.interrupt()
                peer_t0 = float("inf")  # interrupted once; it saves and ends
        if any(job.overdue() for job in jobs.values()):
            raise RuntimeError("a training process did not end within 300 s of SIGINT; "
                               "killed (see its log in the work folder)")
        time.sleep(1.0)
    for job in jobs.values():
        if job.returncode:
            tail = job.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{job.name} training failed ({job.returncode}); the end of "
                               f"{job.log_path}:\n{tail}")


def train_both(cfg_path: Path, cfg: TrainConfig, work: Path, peer: Peer, python: Path,
               inputs: dict, *, budget: float, concurrent: bool, log=print) -> dict:
    """Train attnkit and the peer (its venv's ``python``) for ``budget`` s each; returns
    ``{tool: _Job}`` (ended)."""
    argv = {"attnkit": _attnkit_command(cfg_path, work / "attnkit", budget),
            peer.name: peer.train_command(python, cfg, inputs, work)}
    jobs: dict = {}
    for i, tool in enumerate(argv):
        core = i % (os.cpu_count() or 1) if concurrent else None
        log(f"{tool}: training for {budget:.0f} s" + (f" on core {core}" if concurrent else ""))
        jobs[tool] = _Job(tool, argv[tool], work / f"{tool}-train.log", core)
        if not concurrent:
            _train({tool: jobs[tool]}, budget, peer, log=log)
    _train(jobs, budget, peer, log=log)
    return jobs


def _attnkit_stats(job: _Job, ours: Run) -> dict:
    """Steps, time and target tokens from the progress of attnkit's latest checkpoint."""
    state = ours.train_state
    seconds = state["train_seconds"]
    return {"steps": state["step"], "train_s": seconds, "tokens": state["train_tokens"],
            "tok_s": state["train_tokens"] / seconds, "peak_rss_mb": job.peak_rss_mb}


def _peer_stats(job: _Job, peer: Peer, python: Path, work: Path) -> dict:
    """The peer's steps, time and target tokens (as it records them) and its peak RSS."""
    stats = peer.stats(python, work, job.log_path.read_text(errors="replace"))
    return {**stats, "peak_rss_mb": job.peak_rss_mb}


# ---------------------------------------------------------------- decoding
def decode(tool: str, work: Path, peer: Peer, python: Path, cfg: TrainConfig, inputs: dict,
           src_file: Path, beam: int) -> tuple[list[str], float]:
    """Translate ``src_file`` with the tool's own command (``python``: the peer's); returns
    (lines, wall seconds)."""
    out = work / f"{tool}-beam{beam}.txt"
    if tool == "attnkit":
        argv, to_stdout = [sys.executable, "-m", "attnkit.cli", "translate", "--checkpoint",
                           str(work / "attnkit"), "--input", str(src_file), "--beam-size",
                           str(beam), "--length-penalty", "0.6", "--threads", "1"], True
    else:
        argv, to_stdout = peer.decode_command(python, cfg, inputs, work, src_file, beam, out)
        out.unlink(missing_ok=True)  # no translations of an earlier run read back
    t0 = time.perf_counter()
    with src_file.open("rb") as stdin:
        done = subprocess.run(argv, stdin=stdin, capture_output=True, env=thread_env())
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{tool} translate failed:\n{done.stderr.decode()[-3000:]}")
    if to_stdout:
        out.write_bytes(done.stdout)
    elif not out.is_file():
        raise RuntimeError(f"{tool} translate ended without writing {out}:\n"
                           f"{done.stderr.decode()[-3000:]}")
    return out.read_text(encoding="utf-8").split("\n")[:-1], seconds


def score(tool: str, work: Path, peer: Peer, python: Path, cfg: TrainConfig, inputs: dict,
          refs: list[str]) -> dict:
    bleu, seconds = {}, {}
    for beam in BEAMS:
        hyps, seconds[beam] = decode(tool, work, peer, python, cfg, inputs, inputs["test"],
                                     beam)
        if len(hyps) != len(refs):
            raise RuntimeError(f"{tool} beam {beam}: {len(hyps)} output lines for "
                               f"{len(refs)} sources")
        bleu[beam] = {"cased": corpus_bleu(hyps, refs).score,
                      "lower": tokenized_lowercase_bleu(hyps, refs).score}
    return {"bleu": bleu, "decode_s": seconds}


# --------------------------------------------------------------------- run
def run(*, config: str = "configs/multi30k-de-en.toml", budget: float = 1800.0,
        work: str = "runs/peers", concurrent: bool = False, reuse: bool = False,
        split: str = "test_2016_flickr", limit: int | None = None, peer: str = "joeynmt",
        log=print) -> PeersResult:
    """Set up, train attnkit and the ``peer`` for ``budget`` s each, decode and score the
    test split.

    ``reuse`` skips the training of a tool whose finished run is in ``work``
    (its measurements are read back), to re-score without retraining; ``limit``
    scores only the first sentences of the split (a smoke run).
    """
    check_finite("--budget (seconds)", budget, above=0)
    theirs = PEERS[check_choice("--peer", peer, PEERS)]
    cfg_path, root = Path(config).resolve(), Path(work).resolve()
    root.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.from_file(cfg_path)
    python = theirs.ensure_venv(root / f"{theirs.name}-venv", log=log)
    inputs = shared_inputs(cfg, root)
    d = cfg.data
    srcs, refs = multi30k_test_split(cfg.to_dict()["data"], split,
                                     needed_by="the peers benchmark")
    if limit:
        srcs, refs = srcs[:limit], refs[:limit]
        split = f"{split}[:{limit}]"
    inputs["test"] = inputs["dir"] / f"{split}.{d.src_lang}"
    inputs["test"].write_text("".join(f"{s}\n" for s in srcs), encoding="utf-8")
    stats, ours = _trained(cfg_path, cfg, root, python, inputs, budget=budget,
                           concurrent=concurrent, reuse=reuse, log=log, peer=theirs)
    missing = [tool for tool in ("attnkit", theirs.name) if tool not in stats]
    if missing:
        raise ValueError(f"--reuse: {root / theirs.training_file} has no training "
                         f"measurements of {', '.join(missing)}; run without --reuse")
    rows = {}
    for tool in ("attnkit", theirs.name):
        log(f"{tool}: decoding {split} (greedy, beam 5)")
        rows[tool] = {**stats[tool], **score(tool, root, theirs, python, cfg, inputs, refs)}
    notes = [_same_tokenizer(ours, root, theirs)]
    return PeersResult(rows, budget, "side by side, one core each" if concurrent else
                       "one after the other", split, len(refs), _dt.date.today().isoformat(),
                       [n for n in notes if n], theirs.name, theirs.differences(cfg))


def _trained(cfg_path: Path, cfg: TrainConfig, root: Path, python: Path, inputs: dict, *,
             budget: float, concurrent: bool, reuse: bool, log,
             peer: Peer = PEERS["joeynmt"]) -> tuple[dict, Run | None]:
    """Each tool's training measurements, read back (``reuse``) or trained now, and
    attnkit's run opened once (its latest checkpoint verified once; ``None`` when a run
    read back has no checkpoint that verifies); the measurements are kept in the peer's
    :attr:`Peer.training_file`."""
    saved = root / peer.training_file
    if reuse and saved.exists():
        return json.loads(saved.read_text()), _opened(root / "attnkit")
    for tool in ("attnkit", peer.name):  # a benchmark run starts from nothing
        shutil.rmtree(root / tool, ignore_errors=True)
    jobs = train_both(cfg_path, cfg, root, peer, python, inputs, budget=budget,
                      concurrent=concurrent, log=log)
    ours = open_run(root / "attnkit")  # its latest checkpoint; none is an error here
    stats = {"attnkit": _attnkit_stats(jobs["attnkit"], ours),
             peer.name: _peer_stats(jobs[peer.name], peer, python, root)}
    saved.write_text(json.dumps(stats, indent=1))
    return stats, ours


def _opened(run_dir: Path) -> Run | None:
    """The run at ``run_dir`` opened, or ``None`` when it has no checkpoint that verifies."""
    try:
        return open_run(run_dir)
    except (FileNotFoundError, ValueError):
        return None


def _same_tokenizer(ours: Run | None, root: Path, peer: Peer = PEERS["joeynmt"]
                    ) -> str | None:
    """A note if attnkit's run (``ours``, opened) trained a different sentencepiece model
    than the peer read."""
    spm = None if ours is None else ours.tokenizer_dir / "spm.model"
    if spm is None or not spm.exists():
        return f"could not compare the sentencepiece models ({spm} missing)"
    if spm.read_bytes() != (root / "data" / "spm.model").read_bytes():
        return (f"WARNING: attnkit's sentencepiece model differs from the one "
                f"{peer.display} read")
    return None
