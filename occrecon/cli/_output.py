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
