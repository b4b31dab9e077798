"""A run folder's lock: taken over from a killed holder (named by its pid), and freed when
the lock object is dropped."""

import signal
import subprocess
import sys

import pytest

from attnkit.runs.lock import RunLock


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    code = ("import sys, time; from attnkit.runs.lock import RunLock; "
            f"lock = RunLock({str(tmp_path / 'run')!r}).acquire(); print('locked', flush=True); "
            "time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(OSError, match=f"pid {proc.pid}"):
        RunLock(tmp_path / "run").acquire()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = RunLock(tmp_path / "run").acquire()
    assert lock.stale_holder["pid"] == proc.pid
    lock.release()


def test_a_dropped_lock_frees_its_folder(tmp_path):
    import gc

    lock = RunLock(tmp_path / "run").acquire()
    del lock
    gc.collect()
    RunLock(tmp_path / "run").acquire().release()
