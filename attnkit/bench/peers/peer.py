"""What the peers benchmark asks of a peer toolkit (:class:`Peer`), and the parts the
peers share: their virtual environment, their YAML and the environment of their
processes. Each peer (:mod:`.joeynmt`, :mod:`.eole`) is one :class:`Peer`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class Peer:
    """A toolkit trained and decoded beside attnkit: its environment, its config written
    from attnkit's, its training and decoding commands and the statistics it leaves.

    ``work`` is the benchmark's folder; a peer keeps its run in ``work/NAME``.
    """

    name: str  # as given to --peer, the row of the table and its run's folder in ``work``
    display: str  # as written in prose: "JoeyNMT"
    title: str  # with its version: "JoeyNMT 2.3.0"
    section: str  # the recorded section of BENCHMARKS.md ("peers" for JoeyNMT, its first)
    training_file: str  # in ``work``: both trainings' measurements, read back by --reuse
    bleu_margin: float = 0.0  # attnkit's BLEU (beam 5) target: >= the peer's + this
    features: tuple = ()  # (what the peer's users rely on, where attnkit stands)
    version: str  # installed as ``NAME==version`` (the package is named as --peer)
    pins: tuple[str, ...] = ()  # installed beside it: what it needs and does not declare
    #: Python run in its venv to check it; prints ``NAME.__version__, torch.__version__``
    probe: str

    def ensure_venv(self, venv: Path, *, log=print) -> Path:
        """The Python of a virtual environment with the peer, :attr:`pins` and this torch,
        made once (:func:`make_venv`, checked by :attr:`probe`)."""
        return make_venv(venv, [f"{self.name}=={self.version}", torch_pin(), *self.pins],
                         self.probe, f"{self.version} {torch.__version__}", log=log)

    @staticmethod
    def written_config(python: Path, path: Path, config: dict) -> Path:
        """``config`` written as YAML at ``path`` and read back by the peer's own Python
        (:func:`check_read_back`): what its training command is given."""
        check_read_back(python, write_yaml(path, config), config)
        return path

    def differences(self, cfg) -> list[str]:
        """The settings of attnkit's ``cfg`` the peer could not be given, one line each."""
        raise NotImplementedError

    def train_command(self, python: Path, cfg, inputs: dict, work: Path) -> list[str]:
        """Write the peer's config for attnkit's ``cfg`` (checked as the peer reads it) and
        return the command that trains it until it is interrupted."""
        raise NotImplementedError

    def started(self, log_text: str) -> bool:
        """Whether the training log says the set-up is done and training began (the budget
        is counted from then)."""
        raise NotImplementedError

    def stats(self, python: Path, work: Path, log_text: str) -> dict:
        """``steps``, ``tokens`` (target tokens trained on), ``train_s`` and ``tok_s`` of
        the ended training (``log_text``: its log)."""
        raise NotImplementedError

    def decode_command(self, python: Path, cfg, inputs: dict, work: Path, src_file: Path,
                       beam: int, out_file: Path) -> tuple[list[str], bool]:
        """The command translating ``src_file`` with beam ``beam``, and whether it writes
        the translations to its stdout (else to ``out_file``)."""
        raise NotImplementedError


def make_venv(venv: Path, pins: list[str], probe: str, want: str, *, log=print) -> Path:
    """The Python of ``venv``, made with ``pins`` unless running ``probe`` in it already
    prints ``want``; raises with pip's message if the install fails or gives another
    ``want``."""
    python = venv / "bin" / "python"
    command = [str(python), "-c", probe]
    if python.exists():
        if subprocess.run(command, capture_output=True, text=True).stdout.strip() == want:
            return python
    log(f"making {venv} ({', '.join(pins)}): minutes")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *pins],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip install {' '.join(pins)} failed in {venv}:\n"
                           f"{done.stderr[-2000:]}")
    got = subprocess.run(command, capture_output=True, text=True).stdout.strip()
    if got != want:
        raise RuntimeError(f"{venv} has {got!r}; expected {want!r}")
    return python


def torch_pin() -> str:
    """This process's torch version as a pip requirement (the build label dropped: the
    local CPU build satisfies it)."""
    return f"torch=={torch.__version__.split('+')[0]}"


def yaml_text(config: dict) -> str:
    """``config`` as YAML that PyYAML (the peers' reader) loads back unchanged.

    JSON is YAML, except that PyYAML follows YAML 1.1, where a float needs a
    dot (``1e-09`` would load as a string): exponents get a ``.0`` mantissa.
    """
    text = json.dumps(config, indent=1)
    return re.sub(r'(?<![\w."])(-?\d+)(e[-+]\d+)', r"\1.0\2", text)


def check_read_back(python: Path, path: Path, config: dict) -> None:
    """Raise unless the peer's own YAML reader (PyYAML, in its venv) gives back
    ``config``."""
    probe = ("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], "
             "encoding='utf-8'))))")
    out = subprocess.run([str(python), "-c", probe, str(path)], capture_output=True,
                         text=True, check=True).stdout
    if json.loads(out) != json.loads(json.dumps(config)):
        raise RuntimeError(f"{path} does not read back as written (YAML 1.1 types)")


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml_text(config), encoding="utf-8")
    return path


def thread_env(threads: int = 1) -> dict:
    """This process's environment with ``threads`` threads for every math library and
    unbuffered Python output (a log read while it grows)."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in _THREAD_ENV})
    env["PYTHONUNBUFFERED"] = "1"
    return env
