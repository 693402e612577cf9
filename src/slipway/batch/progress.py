"""The progress bar of a batch run: rows done, rows per second, time left (on stderr)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RowsColumn(ProgressColumn):
    """``1,200,000/5,000,000 rows`` (or just the count when the total is unknown)."""

    def render(self, task: Task) -> Text:
        done = f"{int(task.completed):,}"
        if task.total is None:
            return Text(f"{done} rows")
        return Text(f"{done}/{int(task.total):,} rows")


class RateColumn(ProgressColumn):
    """Rows per second over the last half minute."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        return Text("- rows/s" if speed is None else f"{speed:,.0f} rows/s")


class ProgressBar:
    """A context manager whose value is the callback ``(rows_done, total_rows)``.

    The first call sets the starting point, so rows skipped by a resume do not count as speed.
    """

    def __init__(self, description: str = "scoring", console: Console | None = None) -> None:
        self.description = description
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            RowsColumn(),
            RateColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self.task: TaskID | None = None

    def __enter__(self) -> Any:
        self.progress.start()
        return self.update

    def update(self, done: int, total: int | None) -> None:
        """Show ``done`` of ``total`` rows."""
        if self.task is None:
            self.task = self.progress.add_task(self.description, total=total, completed=done)
        else:
            self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
