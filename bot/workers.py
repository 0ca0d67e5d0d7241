"""One child process of CPU-heavy work on untrusted input (a web page, a diagram).

The job is started, fed on stdin and reaped from a pool thread, never on the
event loop: fork/exec and waiting block. It is killed at its deadline or when
stopped (cancelled, shut down), and always reaped, so no zombie is left. The
child gets only the environment it needs to start Python: no secrets.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass, field

WORKER_ENV_KEYS = ("PATH", "PYTHONPATH", "LD_LIBRARY_PATH")


@dataclass(slots=True, eq=False)  # compared and hashed by identity, kept in a set
class WorkerJob:
    """A worker's command line and input, and the process once it exists."""

    command: list[str]
    stdin: bytes
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # cancelled or shut down: the worker is killed as soon as it exists
    timed_out: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, timeout: float) -> tuple[int, bytes, bytes]:
        """In a pool thread: start the worker, feed it, kill it at the deadline, reap it."""
        env = {k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}
        pipe = subprocess.PIPE
        proc = subprocess.Popen(self.command, stdin=pipe, stdout=pipe, stderr=pipe, env=env)
        with self._lock:
            self.proc = proc
            stopped = self.stopped
        if stopped:
            proc.kill()
        try:
            out, err = proc.communicate(self.stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            proc.kill()
            if proc.stdin is not None:  # the second communicate() leaves an unfinished stdin open
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            out, err = proc.communicate()  # reaps it: no zombie is left behind
        return proc.returncode, out, err

    def stop(self) -> None:
        """Kill the worker now, or as soon as it starts (a no-op once it has been reaped)."""
        with self._lock:
            self.stopped = True
            proc = self.proc
        if proc is not None:
            proc.kill()
