"""The book's trained sections under the book's own ``d2l`` and under ``attnkit.d2l``.

For each trained section of "Dive into Deep Learning" (§10.7 RNN seq2seq,
§11.4 Bahdanau attention, §11.7 Transformer) the section's PyTorch program is
taken from the book's markdown (``tests/d2l/_book.py``) and run as a program
twice per round: once with the book's import (``from d2l import torch as
d2l``, in a Python that has PyPI's ``d2l`` installed) and once with ``from
attnkit import d2l``. Rounds alternate which package goes first; each pair
of runs in a round uses the same seed. What is compared:

- the wall time of ``trainer.fit`` (the same small wrapper around
  ``Trainer.fit`` is installed before either program starts), medians over
  the rounds and the ratio ours / book;
- the book's BLEU (k=2) of the four sentences the section translates, as the
  program itself prints it.

The book's package refetches ``fra-eng.zip`` unless the file's SHA-1 is the
published one; offline, its runs are served a zip of the same local
``fra.txt`` (``_book.BOOK_PACKAGE_OFFLINE``). Both runs read the same file.

Usage (from the repository root)::

    python benchmarks/d2l_book.py --book-python /work/venv-d2l-book/bin/python --rounds 3
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.d2l import _book  # noqa: E402

TRAINED = ("10.7", "11.4", "11.7")
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


def run_once(section: str, package: str, python: str, seed: int, threads: int | None) -> dict:
    """One run of ``section`` under ``package``: its fit time, BLEU per sentence, threads."""
    preamble = _TIMING.format(import_line=_IMPORTS[package])
    if package == "book":
        preamble = _book.BOOK_PACKAGE_OFFLINE + preamble
    d2l_import = _book.BOOK_IMPORT if package == "book" else _book.ATTNKIT_IMPORT
    with tempfile.TemporaryDirectory(prefix=f"d2l-book-{section}-") as tmp:
        env = {"OMP_NUM_THREADS": str(threads)} if threads else None
        proc = _book.run(section, Path(tmp), python=python, d2l_import=d2l_import,
                         preamble=preamble, checks=_REPORT, seed=seed, timeout=7200, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"§{section} under {package} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-4000:]}")
    report = json.loads(re.search(r"^BENCH (.*)$", proc.stdout, re.M).group(1))
    if len(report["fit_seconds"]) != 1:
        raise SystemExit(f"§{section} under {package}: expected one trainer.fit, "
                         f"timed {report['fit_seconds']}")
    return {"fit": report["fit_seconds"][0], "cpu": report["fit_cpu_seconds"][0],
            "threads": report["threads"], "load": os.getloadavg()[0],
            "bleu": _book.translations(proc.stdout)}


def machine_line(python: str, threads: int | None) -> str:
    """CPU model, torch's CPU capability, cores, torch and Python versions."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    probe = ("import torch, platform;"
             "print(torch.backends.cpu.get_cpu_capability(), torch.__version__,"
             " torch.get_num_threads())")
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    ours = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env).stdout
    book = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=env).stdout
    cap, version, threads = ours.split()
    return (f"{model}, ISA {cap}, {os.cpu_count()} cores, torch threads: {threads}; "
            f"torch {version} (book's venv: {' '.join(book.split()[1:2])}), "
            f"Python {platform.python_version()}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book-python", required=True,
                        help="a Python with PyPI's d2l (1.0.3) installed")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each package per section")
    parser.add_argument("--sections", nargs="+", default=list(TRAINED), choices=TRAINED)
    parser.add_argument("--paired", action="store_true",
                        help="start every run of a round at once (on a loaded machine: the book's "
                             "and attnkit's runs then share the same load)")
    parser.add_argument("--threads", type=int,
                        help="torch threads of every run (OMP_NUM_THREADS); default: torch's own "
                             "choice (one per core)")
    parser.add_argument("--json", type=Path, help="also write every run's figures here (JSON)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds: expected at least 1, got {args.rounds}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: expected at least 1, got {args.threads}")
    print("machine:", machine_line(args.book_python, args.threads), flush=True)
    load_before, started = os.getloadavg(), time.time()
    runs = {s: {p: [] for p in PACKAGES} for s in args.sections}
    for r in range(args.rounds):
        if args.paired:
            jobs = [(s, p) for s in args.sections for p in PACKAGES]
        else:
            # Who goes first alternates from round to round and from section to section.
            jobs = [(s, p) for i, s in enumerate(args.sections)
                    for p in (PACKAGES if (i + r) % 2 == 0 else PACKAGES[::-1])]
        with ThreadPoolExecutor(len(jobs) if args.paired else 1) as pool:
            futures = {job: pool.submit(run_once, *job, python_of(job[1], args), r, args.threads)
                       for job in jobs}
            for (section, package), future in futures.items():
                result = future.result()
                runs[section][package].append(result)
                print(f"§{section} round {r + 1} {package}: fit {result['fit']:.1f} s "
                      f"(CPU {result['cpu']:.1f} s, {result['threads']} threads), "
                      f"BLEU {list(result['bleu'].values())}, load {result['load']:.2f}",
                      flush=True)
        if args.json:  # after every round, so a cut-short run keeps what it measured
            args.json.write_text(json.dumps(runs, indent=1))
    load_after = os.getloadavg()
    print(f"\nload average (1, 5, 15 min): before {fmt_load(load_before)}, "
          f"after {fmt_load(load_after)}; {time.time() - started:.0f} s in all\n")
    print(table(runs))


def python_of(package: str, args) -> str:
    return args.book_python if package == "book" else sys.executable


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


if __name__ == "__main__":
    main()
