"""Seeds of test inputs that are the same in every process.

Python's ``hash`` of a string is salted per process (``PYTHONHASHSEED``), so seeding
from it draws different inputs on every run. This module imports nothing heavy, so
a test can load it in fresh interpreters cheaply.
"""

import zlib


def case_seed(case: str) -> int:
    """Seed of a named case's inputs: the CRC-32 of its ``repr``, below ``2**31``."""
    return zlib.crc32(repr(case).encode()) % 2**31
