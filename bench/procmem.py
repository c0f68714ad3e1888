"""Resident memory of a process tree, read from ``/proc`` and sampled in a background thread."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive right now (Linux ``/proc``)."""
    found = [pid]
    index = 0
    while index < len(found):
        parent = found[index]
        index += 1
        try:
            tasks = os.listdir(PROC / str(parent) / "task")
        except OSError:
            continue
        for task in tasks:
            try:
                text = (PROC / str(parent) / "task" / task / "children").read_text()
            except OSError:
                continue
            found.extend(int(child) for child in text.split() if int(child) not in found)
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants (e.g. uvicorn's workers, which outlive their parent)."""
    for member in reversed(process_tree(pid)):
        with contextlib.suppress(OSError):
            os.kill(member, signal.SIGKILL)


def _status_kb(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(PROC / str(pid) / "status") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return values


def tree_memory(pid: int) -> tuple[int, int]:
    """(current RSS, sum of each process' peak RSS ``VmHWM``) of the tree of ``pid``, in bytes.

    The second is an upper bound of the tree's peak since each process started
    (each process' own peak, even between two samples).
    """
    rss = hwm = 0
    for member in process_tree(pid):
        values = _status_kb(member)
        rss += values.get("VmRSS", 0) * 1024
        hwm += values.get("VmHWM", 0) * 1024
    return rss, hwm


class RssSampler:
    """Samples the tree RSS of ``pid`` every ``interval`` seconds until :meth:`stop`.

    When the RSS reaches ``abort_bytes``, ``on_abort`` is called once (the load
    test kills the server then, so a run cannot exhaust a shared machine).
    """

    def __init__(
        self,
        pid: int,
        *,
        interval: float = 0.25,
        abort_bytes: int | None = None,
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self.pid = pid
        self.interval = interval
        self.abort_bytes = abort_bytes
        self.on_abort = on_abort
        self.aborted = False
        self.peak_rss = 0
        self.peak_hwm = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def sample(self) -> int:
        """Take one sample now; returns the tree RSS in bytes."""
        rss, hwm = tree_memory(self.pid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_hwm = max(self.peak_hwm, hwm)
        self.samples.append((round(time.monotonic() - self._started, 3), rss))
        if self.abort_bytes is not None and rss >= self.abort_bytes and not self.aborted:
            self.aborted = True
            if self.on_abort is not None:
                self.on_abort()
        return rss

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
