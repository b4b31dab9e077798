"""Code run in a fresh interpreter, so that no other test's imports count (what importing
a module loads, what a flag's help imports)."""

import subprocess
import sys


def run_fresh(code: str, *, timeout: float = 120) -> str:
    """Run ``code`` with ``python -c`` in a new process; its stdout, after checking it
    exited 0 (else the assertion shows its stderr)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout
