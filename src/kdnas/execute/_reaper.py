"""Leave no process behind: a watchdog that ends a local Ray's processes when its driver ends.

``ray.init()`` in a driver starts a GCS server, a raylet, agents and workers. When the driver
is killed (kill -9, the OOM killer), Ray's dashboard and runtime-env agents outlive it,
re-parented to init and deaf to SIGTERM (measured with Ray 2.60). ``ProcessReaper`` starts a
small watchdog process in its own session that holds the read end of a pipe from the driver:
end of file means the driver is gone or done, whatever ended it. Until then the watchdog
records, every ``poll_s`` seconds, the driver's Ray descendants (their pid and start time,
from ``/proc``); afterwards it ends those still alive (SIGTERM, then SIGKILL), a pid reused
by another process being told apart by its start time.

Linux only (``/proc``); elsewhere ``ProcessReaper.start`` returns None and nothing watches.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["ProcessReaper", "ray_descendants"]

_PROC = Path("/proc")
#: In the command line of every Ray process that is not titled ``ray::...``: Ray's package
#: (its GCS server and raylet binaries live there too).
_RAY_CODE = b"-packages/ray/"


def _stat_fields(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time in clock ticks, state) of ``pid``, or None if it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _is_ray_process(pid: int) -> bool:
    try:
        arguments = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(item.startswith(b"ray::") or _RAY_CODE in item for item in arguments)


def ray_descendants(driver: int) -> dict[int, int]:
    """The driver's Ray processes and everything below them: pid -> start time (ticks).

    A Ray process is a child of ``driver`` whose command line runs Ray's code (a path inside
    the installed ``ray`` package, or a ``ray::`` title); other children are left alone.
    """
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[2] == "Z":
            continue
        children.setdefault(fields[0], []).append(int(entry.name))
        started[int(entry.name)] = fields[1]
    found: dict[int, int] = {}
    stack = [pid for pid in children.get(driver, []) if _is_ray_process(pid)]
    while stack:
        pid = stack.pop()
        if pid in found or pid not in started:
            continue
        found[pid] = started[pid]
        stack.extend(children.get(pid, []))
    return found


def _alive(pid: int, start: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[1] == start and fields[2] != "Z"


def _end(processes: dict[int, int], grace_s: float) -> None:
    for signal_number, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        survivors = {pid: start for pid, start in processes.items() if _alive(pid, start)}
        for pid in survivors:
            with contextlib.suppress(OSError):  # ended meanwhile
                os.kill(pid, signal_number)
        deadline = time.monotonic() + wait_s
        while survivors and time.monotonic() < deadline:
            time.sleep(0.05)
            survivors = {pid: start for pid, start in survivors.items() if _alive(pid, start)}
        processes = survivors


def _watch(driver: int, poll_s: float, grace_s: float) -> None:
    """The watchdog's body: record until the pipe on stdin closes, then end the rest."""
    recorded: dict[int, int] = {}
    first = True
    while True:
        recorded.update(ray_descendants(driver))
        if first:  # the driver waits for this before it starts Ray
            os.write(sys.stdout.fileno(), b"ready\n")
            first = False
        ready, _, _ = select.select([sys.stdin], [], [], poll_s)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break
    # Processes started in the last instant, and children of the recorded ones.
    for pid, start in list(recorded.items()):
        if _alive(pid, start):
            recorded.update(ray_descendants(pid))
    _end(recorded, grace_s)


class ProcessReaper:
    """A watchdog that ends the driver's Ray processes when the driver ends or releases it.

    Create it with ``start()`` right before ``ray.init()``; call ``release()`` after
    ``ray.shutdown()`` to have stragglers ended at once. If the driver dies first, the
    operating system closes the pipe and the watchdog does the same.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    @classmethod
    def start(
        cls, poll_s: float = 0.5, grace_s: float = 2.0, ready_timeout_s: float = 60.0
    ) -> ProcessReaper | None:
        """Start the watchdog for this process and wait until it watches (at most
        ``ready_timeout_s`` seconds); None where ``/proc`` is unavailable."""
        if not sys.platform.startswith("linux") or not _PROC.is_dir():
            return None
        # This file is run by path, not imported as part of kdnas: importing the package
        # would import torch, seconds during which the watchdog records nothing.
        command = [
            sys.executable,
            "-c",
            f"import runpy; runpy.run_path({__file__!r})['_watch']"
            f"({os.getpid()}, {poll_s!r}, {grace_s!r})",
        ]
        # Its own session: a Ctrl-C or SIGTERM sent to the driver's process group, which
        # Ray's processes share, does not reach the watchdog before it has done its job.
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        # Ray starts only once the watchdog watches: a driver killed in between would
        # otherwise leave processes nobody recorded.
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], ready_timeout_s)
        if not ready or not process.stdout.readline():
            process.kill()
            process.wait()
            raise RuntimeError("the Ray process watchdog did not start")
        process.stdout.close()
        return cls(process)

    def release(self, timeout_s: float = 10.0) -> None:
        """Tell the watchdog the driver is done with Ray; wait for it to end the rest."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
