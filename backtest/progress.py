"""One progress display for every command (simulation runs, sweeps, the report, downloads).

:class:`Progress` shows rich bars on stderr when stderr is a terminal (and ``BACKTEST_NO_PROGRESS``
is not set), calls a callback ``(description, done, total)`` for notebooks and tests, or does
nothing. ``progress`` arguments everywhere take: None = auto (a terminal only), False = off,
True = on, or such a callable. Progress never goes to stdout, so piped output stays clean.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

#: a progress callback: (what is being done, units done, units in all)
Callback = Callable[[str, float, float], None]


class Progress:
    """Tasks with a description and a total; each change is drawn (rich) and/or reported to the
    callback. Use as a context manager, or call :meth:`close`. ``percent``: draw the share done
    instead of "done/total" (for totals that are not counts, e.g. milliseconds of a range)."""

    def __init__(self, label: str = "", progress: Any = None, *, percent: bool = False):
        self.callback: Callback | None = progress if callable(progress) else None
        if progress is None:
            on = sys.stderr.isatty() and not os.environ.get("BACKTEST_NO_PROGRESS")
        else:
            on = bool(progress) and not callable(progress)
        self._tasks: dict[int, list] = {}  # task -> [description, done, total]
        self._p = None
        if on:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            head = f"[bold]{label}[/bold] " if label else ""
            done = TextColumn("{task.percentage:>3.0f}%") if percent else MofNCompleteColumn()
            self._p = RichProgress(
                TextColumn(head + "{task.description}"), BarColumn(), done, TimeElapsedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False, redirect_stdout=False, redirect_stderr=False,
            )
            self._p.start()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, description: str, total: float) -> int:
        """A new task; returns its id."""
        task = self._p.add_task(description, total=total) if self._p is not None else len(self._tasks)
        self._tasks[task] = [description, 0.0, total]
        return task

    def update(self, task: int, *, description: str | None = None, advance: float = 0.0, completed: float | None = None,
               total: float | None = None) -> None:
        """Change a task's description, progress or total; reports the new state."""
        t = self._tasks[task]
        if description is not None:
            t[0] = description
        if total is not None:
            t[2] = total
        t[1] = completed if completed is not None else t[1] + advance
        if self._p is not None:
            self._p.update(task, description=t[0], completed=t[1], total=t[2])
        if self.callback is not None:
            self.callback(t[0], t[1], t[2])

    def advance(self, task: int, amount: float = 1.0) -> None:
        self.update(task, advance=amount)

    def done(self, task: int) -> None:
        """Mark a task complete."""
        self.update(task, completed=self._tasks[task][2])

    def reporter(self, task: int) -> Callback:
        """A callback ``(description, done, total)`` that drives ``task`` (for APIs that report progress)."""

        def report(description: str, done: float, total: float) -> None:
            self.update(task, description=description, completed=done, total=total)

        return report

    def log(self, message: str) -> None:
        """A line above the bars (only while they are drawn)."""
        if self._p is not None:
            self._p.console.print(message, highlight=False)

    @property
    def drawn(self) -> bool:
        """True when the bars are drawn on a terminal."""
        return self._p is not None

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
