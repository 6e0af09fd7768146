"""`python -m core.devrun [Procfile.dev]`: start the development processes of `make run` and stop
every one of them, however the stop is asked for.

Each line of the Procfile (``name: command``, ``${VAR}`` taken from the environment) is started
without a shell, its output prefixed with the time (East Africa Time) and its name. Unlike
foreman-style runners that start each process in a session of its own, the processes stay in
this process group, so what a terminal or a service manager sends to the group reaches all of
them, and a SIGKILL of the group leaves nothing behind. Besides:

- Ctrl-C (SIGINT), SIGTERM or SIGHUP stops every process: a signal sent to the process group
  has reached them all, so each gets SIGNAL_GRACE seconds to stop on it before it is sent
  SIGTERM (a second signal can interrupt a clean exit); this process waits up to STOP_TIMEOUT
  seconds in all, then kills what is still running, grandchildren included. A second
  Ctrl-C kills at once. A requested stop exits 0. (Celery's warm shutdown takes about 6 s on
  the filesystem broker: its threads each finish a one-second nap.)
- On Linux the processes receive SIGTERM if this one dies without stopping them (SIGKILL, a
  crash), and this process adopts orphaned grandchildren, so a worker whose supervisor died is
  still stopped.
- When one process exits by itself, or cannot be started, the others are stopped (exit
  status 1), as with honcho.
- Output is printed line by line; a line over MAX_LINE_BYTES is printed in pieces as it
  arrives, so a process that writes without newlines cannot fill this one's memory.
"""

from __future__ import annotations

import os
import selectors
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.logging import log_time
from core.supervise import become_subreaper, die_with_parent

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_TIMEOUT = 20.0  # the worker needs about 6 s, more on a busy machine
SIGNAL_GRACE = 3.0
# A line longer than this (output with no newline: a progress bar, binary data) is printed in
# pieces of this size as it arrives, rather than held in memory until a newline that may
# never come.
MAX_LINE_BYTES = 64 * 1024


@dataclass
class Proc:
    name: str
    args: list[str]
    popen: subprocess.Popen[bytes] | None = None
    pending: bytes = field(default=b"")


def read_procfile(path: Path) -> list[Proc]:
    procs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise SystemExit(f"{path}:{number}: expected 'name: command', got {line!r}")
        args = [os.path.expandvars(arg) for arg in shlex.split(command)]
        unset = [arg for arg in args if "$" in arg]
        if unset:
            raise SystemExit(f"{path}:{number}: {name} uses {unset[0]!r}, which is not set")
        procs.append(Proc(name.strip(), args))
    if not procs:
        raise SystemExit(f"{path}: no processes")
    return procs


def descendants(root: int) -> list[int]:
    """Every living process below ``root`` (Linux /proc; elsewhere none are found)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(b")", 1)[-1].split()
        if fields and fields[0] != b"Z":  # a zombie is already dead: only reaping is left
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


class Runner:
    def __init__(self, procs: list[Proc], stop_timeout: float) -> None:
        self.procs = procs
        self.stop_timeout = stop_timeout
        self.width = max(len(p.name) for p in procs)
        self.selector = selectors.DefaultSelector()
        self.stop_requested = 0  # how many stop signals arrived
        self.stop_deadline: float | None = None
        self.term_at: float | None = None
        self.failed = False

    def say(self, name: str, text: str) -> None:
        stamp = log_time(time.time())[11:19]  # HH:MM:SS, East Africa Time like every log
        sys.stdout.write(f"{stamp} {name:<{self.width}} | {text}\n")
        sys.stdout.flush()

    def start(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for proc in self.procs:
            try:
                proc.popen = subprocess.Popen(
                    proc.args,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=die_with_parent(signal.SIGTERM),
                )
            except OSError as exc:  # no such program, not executable
                self.say("devrun", f"cannot start {proc.name} ({proc.args[0]}): {exc}")
                self.failed = True
                self.begin_stop(f"{proc.name} did not start", grace=0)
                return
            assert proc.popen.stdout is not None
            os.set_blocking(proc.popen.stdout.fileno(), False)
            self.selector.register(proc.popen.stdout, selectors.EVENT_READ, proc)
            self.say("devrun", f"started {proc.name} (pid {proc.popen.pid})")

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            proc = key.data
            if proc is None:  # the signal wake-up pipe
                try:
                    os.read(key.fd, 4096)
                except BlockingIOError:
                    pass
                continue
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.selector.unregister(key.fileobj)
                if proc.pending:
                    self.say(proc.name, proc.pending.decode(errors="replace"))
                    proc.pending = b""
                continue
            *lines, proc.pending = (proc.pending + chunk).split(b"\n")
            for line in lines:
                self.say(proc.name, line.decode(errors="replace").rstrip("\r"))
            while len(proc.pending) >= MAX_LINE_BYTES:
                piece, proc.pending = proc.pending[:MAX_LINE_BYTES], proc.pending[MAX_LINE_BYTES:]
                self.say(proc.name, piece.decode(errors="replace"))

    def running(self) -> list[Proc]:
        return [p for p in self.procs if p.popen is not None and p.popen.poll() is None]

    def begin_stop(self, reason: str, grace: float) -> None:
        """Stop: SIGTERM after ``grace`` seconds to whatever has not stopped by itself."""
        if self.stop_deadline is not None:
            return
        self.say("devrun", f"{reason}: stopping (up to {self.stop_timeout:.0f}s)")
        self.stop_deadline = time.monotonic() + self.stop_timeout
        self.term_at = time.monotonic() + grace

    def terminate_when_due(self) -> None:
        if self.term_at is not None and time.monotonic() >= self.term_at:
            self.term_at = None
            for proc in self.running():
                assert proc.popen is not None
                proc.popen.send_signal(signal.SIGTERM)

    def kill_everything(self, reason: str) -> None:
        left = descendants(os.getpid())
        for proc in self.running():
            assert proc.popen is not None
            if proc.popen.pid not in left:
                left.append(proc.popen.pid)
        if left:
            self.say("devrun", f"{reason}: killing {len(left)} process(es) {sorted(left)}")
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def reap_orphans(self) -> None:
        """Reap adopted grandchildren that died (our own children are Popen's to reap): a peek
        with WNOWAIT, no /proc scan, so it is cheap enough for every turn of the loop."""
        if not hasattr(os, "waitid"):  # macOS: no subreaper either, orphans go to launchd
            return
        ours = {p.popen.pid for p in self.procs if p.popen is not None}
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None or info.si_pid in ours:
                return  # nothing to reap, or one of ours: Popen.poll() reaps it
            try:
                os.waitpid(info.si_pid, 0)
            except ChildProcessError:
                return

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

        def on_signal(signum: int, frame: object) -> None:
            self.stop_requested += 1

        for sig in STOP_SIGNALS:
            signal.signal(sig, on_signal)
        become_subreaper()
        self.start()
        handled = 0
        while True:
            self.pump(0.2)
            if self.stop_requested > handled:
                again = handled > 0 or self.stop_requested > 1
                handled = self.stop_requested
                # The signal most likely went to the whole process group (a terminal's Ctrl-C,
                # a service manager): give each process a moment to stop on it before sending
                # SIGTERM, which a process already stopping may take badly.
                self.begin_stop("stop requested", grace=SIGNAL_GRACE)
                if again:
                    self.kill_everything("asked again")
            for proc in self.procs:
                if proc.popen is None:  # not started (a program that could not be run)
                    continue
                code = proc.popen.poll()
                if code is not None and self.stop_deadline is None:
                    self.say("devrun", f"{proc.name} exited with {code}")
                    self.failed = True
                    self.begin_stop(f"{proc.name} stopped", grace=0)
            self.terminate_when_due()
            self.reap_orphans()
            if self.stop_deadline is not None:
                if not self.running() and not descendants(os.getpid()):
                    break
                if time.monotonic() > self.stop_deadline:
                    self.kill_everything(f"still running after {self.stop_timeout:.0f}s")
                    self.stop_deadline = time.monotonic() + 5
        self.pump(0)
        self.reap_orphans()
        self.say("devrun", "everything stopped")
        return 1 if self.failed else 0


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "Procfile.dev")
    return Runner(read_procfile(path), STOP_TIMEOUT).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
