"""The supervisor reaps only exited children that no one else waits for (streaming_service/workers.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from streaming_service.workers import child_pids, process_state, reap_orphans


def _exited(pid: int) -> None:
    deadline = time.monotonic() + 10
    while process_state(pid) != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_live_child_and_an_own_child_are_left_to_their_parent_and_an_orphan_is_reaped() -> None:
    others = child_pids()  # earlier tests' children in this test process: theirs to wait for
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    own = subprocess.Popen([sys.executable, "-c", "pass"])
    # As an orphan would be: a child that no code in this process waits for.
    orphan_pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ)
    try:
        _exited(own.pid)
        _exited(orphan_pid)
        assert reap_orphans({own.pid} | others) == [orphan_pid]  # only the exited one nobody claims
        assert own.wait(timeout=5) == 0  # its owner still gets its exit status
        assert live.poll() is None  # running: untouched
    finally:
        live.kill()
        live.wait()
