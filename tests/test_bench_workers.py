"""The benchmark's worker processes end with the bench process (a killed run must not go on computing cells)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")

PARENT = """
import concurrent.futures as cf, multiprocessing as mp, os, sys, time
from augvae.bench.runner import _exit_with
pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_exit_with, initargs=(os.getpid(), 0.1))
print(pool.submit(os.getpid).result(), flush=True)  # the worker's pid
pool.submit(time.sleep, 600)  # a long cell
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's reaping is left


def test_a_worker_ends_when_the_bench_process_is_killed() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)  # no cleanup in the parent at all: only the worker's own watch can end it
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived the killed bench process"
    finally:
        parent.kill()
