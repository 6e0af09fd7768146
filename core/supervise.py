"""Keep a process running: `python -m core.supervise -- celery -A mpesa_project worker ...`.

Celery's worker can exit on its own when the broker connection is lost at the wrong moment
(kombu raises an unrecoverable AttributeError while acknowledging on a dead connection). No
message is lost when that happens — the inbox is in the database and the re-drive sweeper
re-enqueues it — but the worker must come back. In production use your process manager's
restart policy (systemd ``Restart=always``); this is the same thing for `make run` and for
environments without one. SIGINT/SIGTERM are passed to the child and stop the loop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("usage: python -m core.supervise -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    delay = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(argv)
        code = child.wait()
        if stopping:
            return code
        # Restart with a short backoff; reset it after a healthy run.
        delay = 1.0 if time.monotonic() - started > 60 else min(delay * 2, 30.0)
        print(
            f"supervise: {argv[0]} exited with {code}; restarting in {delay:.0f}s", file=sys.stderr
        )
        time.sleep(delay)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
