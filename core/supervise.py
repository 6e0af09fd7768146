"""Keep a process running: `python -m core.supervise -- celery -A mpesa_project worker ...`.

Celery's worker can exit on its own when the broker connection is lost at the wrong moment
(kombu raises an unrecoverable AttributeError while acknowledging on a dead connection). No
message is lost when that happens — the inbox is in the database and the re-drive sweeper
re-enqueues it — but the worker must come back. In production use your process manager's
restart policy (systemd ``Restart=always``); this is the same thing for `make run` and for
environments without one.

Stopping: SIGINT or SIGTERM stops the loop and asks the child to stop with SIGTERM (Celery's
warm shutdown; a Ctrl-C in a terminal has already given it SIGINT, and a second SIGINT would be
Celery's cold shutdown, so the child is never sent SIGINT). A stop that arrives during the
restart back-off starts nothing more. On Linux the child is also stopped with SIGTERM if this
process dies without passing the signal on (SIGKILL, a crash).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # no C library to call: children just do not follow this process's death
        _libc = None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing). Made before the fork, so the child only calls C.
    Use it from the thread that lives as long as the process: the kernel watches that thread."""
    parent = os.getpid()
    libc = _libc

    def preexec() -> None:
        if libc is None:
            return
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: act on it now
            os.kill(os.getpid(), sig)

    return preexec


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux's PR_SET_CHILD_SUBREAPER), so that a
    grandchild whose parent died is still ours to stop instead of init's."""
    return _libc is not None and _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m core.supervise -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    delay = 1.0
    while not stopping:
        started = time.monotonic()
        child = subprocess.Popen(argv, preexec_fn=die_with_parent(signal.SIGTERM))
        if stopping and child.poll() is None:
            # The stop arrived while the child was being started, before the handler saw it.
            child.send_signal(signal.SIGTERM)
        code = child.wait()
        if stopping:
            break
        # Restart with a short backoff; reset it after a healthy run.
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
        print(
            f"supervise: {argv[0]} exited with {code}; restarting in {delay:.0f}s", file=sys.stderr
        )
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)  # a signal's handler runs between these naps
        if stopping:
            return 0  # stopped between two runs: nothing is left running
    return 128 - code if code < 0 else code  # a child killed by signal N: 128+N, as a shell says


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
