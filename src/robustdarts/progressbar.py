"""The progress bar of the long commands (search, train, derive --policy darts-pt): rich, with the elapsed time
and an ETA, drawn only on a terminal.

Off a terminal (a pipe, a log file, a test) rich would still print the bar's last frame when it stops, which is
noise in a log and breaks output that a program reads; so the bar is disabled there, as it is under ``--json`` and
``--no-progress`` (the callers pass ``enabled=False`` then).
"""

from __future__ import annotations


def progress_bar(console=None, enabled: bool = True, speed_estimate_period: float = 30.0):
    """A rich ``Progress`` with description, bar, done/total, elapsed and remaining time, on ``console`` (rich's
    global console when None). ``speed_estimate_period``: the seconds of history the ETA averages over; give a
    long one where single steps take minutes (rich shows no ETA until two updates fall inside the period)."""
    import rich
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = console if console is not None else rich.get_console()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
                    speed_estimate_period=speed_estimate_period, disable=not (enabled and console.is_terminal))


__all__ = ["progress_bar"]
