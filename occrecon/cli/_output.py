"""Consoles: results on stdout, progress, notes and errors on stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """One JSON object per line on stdout (jq- and pipe-friendly)."""
    stdout.out(json.dumps(data, default=str), highlight=False)


def error(message: str) -> None:
    stderr.print(f"[red]Error:[/red] {message}", markup=True, highlight=False)


def note(message: str, quiet: bool = False) -> None:
    if not quiet:
        stderr.print(f"[dim]{message}[/dim]", markup=True, highlight=False)


#: Seconds between plain progress lines where stderr is a log file, not a terminal.
LOG_INTERVAL_S = 60.0


def logs_plainly(quiet: bool) -> bool:
    """Whether progress should also go to stderr as plain lines: a live bar shows nothing in a log file until it ends."""
    return not quiet and not stderr.is_terminal


def clock(seconds: float) -> str:
    """``7m40s`` or ``10h05m``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
