"""How :mod:`attnkit.bench.d2l_book` measures: each section's program run under each
package, round after round, and the tables; :func:`run` returns a :class:`D2lBookResult`.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ...runtime import cpu_model
from ..report import section_markers
from . import TRAINED, book

__all__ = ["END", "START", "D2lBookResult", "run"]

START, END = section_markers("d2l_book")
PACKAGES = ("book", "attnkit")

_TIMING = '''
import json as _json
import time as _time

{import_line} as _timed_d2l

_fit_seconds, _fit_cpu_seconds = [], []
_plain_fit = _timed_d2l.Trainer.fit


def _timed_fit(self, *args, **kwargs):
    start, start_cpu = _time.perf_counter(), _time.process_time()
    try:
        return _plain_fit(self, *args, **kwargs)
    finally:
        _fit_seconds.append(_time.perf_counter() - start)
        _fit_cpu_seconds.append(_time.process_time() - start_cpu)


_timed_d2l.Trainer.fit = _timed_fit
'''

_REPORT = '''
print("BENCH " + _json.dumps({"fit_seconds": _fit_seconds, "fit_cpu_seconds": _fit_cpu_seconds,
                               "threads": torch.get_num_threads()}))
'''

_IMPORTS = {"book": "from d2l import torch", "attnkit": "from attnkit import d2l"}


@dataclass
class D2lBookResult:
    runs: dict  # section -> package -> one dict per round (fit, cpu, threads, load, bleu)
    machine: str
    load_before: tuple
    load_after: tuple
    seconds: float
    date: str
    markers: ClassVar[tuple[str, str]] = (START, END)

    def summary(self) -> list[str]:
        return [f"load average (1, 5, 15 min): before {fmt_load(self.load_before)}, "
                f"after {fmt_load(self.load_after)}; {self.seconds:.0f} s in all", "",
                table(self.runs)]

    def markdown(self, command: str) -> str:
        return ("## The book's trained sections: the book's d2l and attnkit.d2l\n\n"
                f"Command: `{command}` ({self.date}; {self.machine})\n\n"
                f"{table(self.runs)}\n")


def run_once(section: str, package: str, python: str, seed: int, threads: int | None) -> dict:
    """One run of ``section`` under ``package``: its fit time, BLEU per sentence, threads."""
    preamble = _TIMING.format(import_line=_IMPORTS[package])
    if package == "book":
        preamble = book.BOOK_PACKAGE_OFFLINE + preamble
    d2l_import = book.BOOK_IMPORT if package == "book" else book.ATTNKIT_IMPORT
    with tempfile.TemporaryDirectory(prefix=f"d2l-book-{section}-") as tmp:
        env = {"OMP_NUM_THREADS": str(threads)} if threads else None
        proc = book.run(section, Path(tmp), python=python, d2l_import=d2l_import,
                        preamble=preamble, checks=_REPORT, seed=seed, timeout=7200, env=env)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise ChildProcessError(f"§{section} under {package} failed (exit {proc.returncode}); "
                                "the end of what it wrote is above")
    report = json.loads(re.search(r"^BENCH (.*)$", proc.stdout, re.M).group(1))
    if len(report["fit_seconds"]) != 1:
        raise ChildProcessError(f"§{section} under {package}: expected one trainer.fit, "
                                f"timed {report['fit_seconds']}")
    return {"fit": report["fit_seconds"][0], "cpu": report["fit_cpu_seconds"][0],
            "threads": report["threads"], "load": os.getloadavg()[0],
            "bleu": book.translations(proc.stdout)}


def machine_line(python: str, threads: int | None) -> str:
    """CPU model, torch's CPU capability, cores, torch and Python versions."""
    probe = ("import torch, platform;"
             "print(torch.backends.cpu.get_cpu_capability(), torch.__version__,"
             " torch.get_num_threads())")
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    ours = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env).stdout
    theirs = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                            env=env).stdout
    cap, version, threads = ours.split()
    return (f"{cpu_model()}, ISA {cap}, {os.cpu_count()} cores, torch threads: {threads}; "
            f"torch {version} (book's venv: {' '.join(theirs.split()[1:2])}), "
            f"Python {platform.python_version()}")


def _round(r: int, args: dict) -> list[tuple[tuple[str, str], dict]]:
    """Round ``r``: every (section, package) run once; who goes first alternates from round
    to round and from section to section (``paired``: all of them start at once)."""
    sections, paired = args["sections"], args["paired"]
    if paired:
        jobs = [(s, p) for s in sections for p in PACKAGES]
    else:
        jobs = [(s, p) for i, s in enumerate(sections)
                for p in (PACKAGES if (i + r) % 2 == 0 else PACKAGES[::-1])]
    with ThreadPoolExecutor(len(jobs) if paired else 1) as pool:
        futures = {job: pool.submit(run_once, *job, args["pythons"][job[1]], r,
                                    args["threads"]) for job in jobs}
        return [(job, future.result()) for job, future in futures.items()]


def run(*, book_python: str, rounds: int = 3, sections: list[str] = TRAINED,
        paired: bool = False, threads: int | None = None,
        json_path: str | Path | None = None) -> D2lBookResult:
    """Run every section ``rounds`` times under each package; print each run as it ends."""
    if rounds < 1:
        raise ValueError(f"--rounds: expected at least 1, got {rounds}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads: expected at least 1, got {threads}")
    _check_book_python(book_python)
    machine = machine_line(book_python, threads)
    print("machine:", machine, flush=True)
    load_before, started = os.getloadavg(), time.time()
    runs = {s: {p: [] for p in PACKAGES} for s in sections}
    args = {"sections": list(sections), "paired": paired, "threads": threads,
            "pythons": {"book": book_python, "attnkit": sys.executable}}
    for r in range(rounds):
        for (section, package), result in _round(r, args):
            runs[section][package].append(result)
            print(f"§{section} round {r + 1} {package}: fit {result['fit']:.1f} s "
                  f"(CPU {result['cpu']:.1f} s, {result['threads']} threads), "
                  f"BLEU {list(result['bleu'].values())}, load {result['load']:.2f}",
                  flush=True)
        if json_path:  # after every round, so a cut-short run keeps what it measured
            Path(json_path).write_text(json.dumps(runs, indent=1))
    return D2lBookResult(runs, machine, load_before, os.getloadavg(), time.time() - started,
                         _dt.date.today().isoformat())


def _check_book_python(python: str) -> None:
    """Refuse, before anything runs, a ``--book-python`` that does not run or has no d2l."""
    try:
        done = subprocess.run([python, "-c", "import d2l"], capture_output=True, timeout=120)
    except OSError as e:
        raise ValueError(f"--book-python: {python} does not run ({e.strerror or e})") from None
    if done.returncode != 0:
        raise ValueError(f"--book-python: {python} cannot import d2l; expected a Python with "
                         "PyPI's d2l (1.0.3) installed")


def fmt_load(load) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


def table(runs: dict) -> str:
    """Markdown: fit-time medians and ratio per section, then BLEU per sentence and run."""
    lines = ["| section | book `trainer.fit` s (median) | attnkit s (median) | ours / book "
             "| CPU s book / attnkit (median) | CPU ours / book | book runs s | attnkit runs s |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for section, by_pkg in runs.items():
        med = {(p, k): statistics.median(r[k] for r in by_pkg[p])
               for p in PACKAGES for k in ("fit", "cpu")}
        each = {p: ", ".join(f"{r['fit']:.1f}" for r in by_pkg[p]) for p in PACKAGES}
        lines.append(
            f"| §{section} | {med['book', 'fit']:.1f} | {med['attnkit', 'fit']:.1f} | "
            f"{med['attnkit', 'fit'] / med['book', 'fit']:.2f} | "
            f"{med['book', 'cpu']:.1f} / {med['attnkit', 'cpu']:.1f} | "
            f"{med['attnkit', 'cpu'] / med['book', 'cpu']:.2f} | "
            f"{each['book']} | {each['attnkit']} |")
    lines += ["", "| section | sentence | book BLEU per run | attnkit BLEU per run |",
              "|---|---|---|---|"]
    for section, by_pkg in runs.items():
        for sentence in by_pkg["book"][0]["bleu"]:
            cells = {p: ", ".join(f"{r['bleu'].get(sentence, float('nan')):.3f}"
                                  for r in by_pkg[p]) for p in PACKAGES}
            lines.append(f"| §{section} | {sentence} | {cells['book']} | {cells['attnkit']} |")
    return "\n".join(lines)
