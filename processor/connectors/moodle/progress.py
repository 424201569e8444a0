"""Progress of long runs: bars with rate and ETA on a terminal (rich), JSON lines otherwise.

JSON lines go to stderr (stdout carries the final report): ``{"progress": "users", "done": 1200,
"total": 5000, "rate_per_s": 410.2, "eta_s": 9.3}``, at most one per task every 2 s and a last
one when the task ends.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any


@dataclass
class _Task:
    name: str
    total: float | None
    done: float = 0
    started: float = field(default_factory=time.monotonic)
    last_line: float = 0.0
    rich_id: Any = None


class Progress:
    def __init__(self, tty: bool | None = None, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._tasks: dict[str, _Task] = {}
        self._rich: Any = None

    def __enter__(self) -> "Progress":
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                                      TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                      console=Console(file=self.stream))
            self._rich.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for t in self._tasks.values():
            self._line(t, force=True)
        if self._rich is not None:
            self._rich.__exit__(*exc)

    def task(self, name: str, total: float | None = None) -> None:
        t = self._tasks[name] = _Task(name, total)
        if self._rich is not None:
            t.rich_id = self._rich.add_task(name, total=total, rate="")

    def set_total(self, name: str, total: float | None) -> None:
        t = self._tasks[name]
        t.total = total
        if self._rich is not None:
            self._rich.update(t.rich_id, total=total)

    def advance(self, name: str, n: float = 1) -> None:
        t = self._tasks[name]
        t.done += n
        if self._rich is not None:
            self._rich.update(t.rich_id, completed=t.done, rate=f"{self._rate(t):,.0f}/s")
        self._line(t)

    def finish(self, name: str) -> None:
        t = self._tasks[name]
        if t.total is None or t.total < t.done:
            self.set_total(name, t.done)
        if self._rich is not None:
            self._rich.update(t.rich_id, completed=t.done)
        self._line(t, force=True)
        t.last_line = float("inf")

    @staticmethod
    def _rate(t: _Task) -> float:
        elapsed = time.monotonic() - t.started
        return t.done / elapsed if elapsed > 0 else 0.0

    def _line(self, t: _Task, force: bool = False) -> None:
        if self._rich is not None or t.last_line == float("inf"):
            return
        now = time.monotonic()
        if not force and now - t.last_line < 2.0:
            return
        t.last_line = now
        rate = self._rate(t)
        eta = (max(0.0, t.total - t.done) / rate) if t.total is not None and rate > 0 else None
        self.stream.write(json.dumps({"progress": t.name, "done": t.done, "total": t.total,
                                      "rate_per_s": round(rate, 1), "eta_s": None if eta is None else round(eta, 1)})
                          + "\n")
        self.stream.flush()
