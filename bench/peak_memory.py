"""Peak memory of another process and its children, sampled from outside by a thread.

A process cannot reliably sample itself: Qdrant Edge holds the GIL while it builds an index, and
the parse worker is a separate process. Used by memory.py and store_memory.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psutil

MIB = 1024 * 1024


class PeakMemory:
    """`with PeakMemory(pid) as peak:` samples every `interval` seconds until the block ends; then
    `peak.rss` and `peak.private` (rss minus file-backed shared pages) hold the largest sums seen
    over the process and its children, in bytes. `on_sample(peak)` runs after each sample."""

    def __init__(self, pid: int, interval: float = 0.2, on_sample: Callable[[PeakMemory], None] | None = None):
        self.pid, self.interval, self.on_sample = pid, interval, on_sample
        self.rss = self.private = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._done.is_set():
            try:
                infos = [process.memory_info()]
            except psutil.Error:  # the process has ended
                return
            for child in process.children(recursive=True):
                try:
                    infos.append(child.memory_info())
                except psutil.Error:
                    pass
            self.rss = max(self.rss, sum(i.rss for i in infos))
            self.private = max(self.private, sum(i.rss - i.shared for i in infos))
            if self.on_sample is not None:
                self.on_sample(self)
            self._done.wait(self.interval)
