"""How the `cinema` command shows things: Rich tables for people, JSON (as the API said it) for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

# Piped output is not cut at 80 columns (ids are copied from it); a terminal uses its own width.
_PIPED_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
out = Console(highlight=False, width=_PIPED_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def money(price: dict[str, Any] | None) -> str:
    if not price:
        return ""
    minor = int(price.get("minorUnits", 0) or 0)  # int64 arrives as a string
    return f"{minor / 100:.2f} {price.get('currencyCode', '')}".strip()


def when(timestamp: str | None) -> str:
    """An RFC 3339 time in the local time zone, e.g. `Thu 26 Nov 18:00`."""
    if not timestamp:
        return ""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone()
    return moment.strftime("%a %d %b %H:%M")


def state(value: str | None, prefix: str) -> str:
    return (value or "").removeprefix(prefix).lower()


def rating(movie: dict[str, Any]) -> str:
    count = int(movie.get("reviewCount", 0) or 0)
    return f"{float(movie.get('averageRating', 0) or 0):.1f}" if count else "-"


# Columns of free text, which may wrap when the terminal is narrow; the others never do.
_WRAPPING = frozenset({"Title", "Movie", "Genres"})


def say(text: str) -> None:
    """A sentence for people (not cut to the terminal's width: it may hold an id to copy)."""
    out.print(text, soft_wrap=True)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]], *, ids: int = 0) -> None:
    """A table; the first `ids` columns hold ids, which are never wrapped or cut (they are copied)."""
    shown = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for index, name in enumerate(columns):
        if index < ids:
            shown.add_column(name, no_wrap=True, min_width=36, style="cyan")
        else:
            shown.add_column(name, no_wrap=name not in _WRAPPING)
    count = 0
    for row in rows:
        shown.add_row(*row)
        count += 1
    if count == 0:
        say(f"{title or 'Nothing'}: none.")
        return
    out.print(shown)
