"""What the ``kdnas`` command prints: user text shown as text, never as markup or control codes.

Every printer of the CLI goes through ``make_console`` (rich, markup on for kdnas's own
styling) and passes every value that came from outside (run ids, paths, dataset and class
names, architecture strings, messages that quote input) through ``shown`` first, so that a run
id like ``[/]`` or ``[bold red]`` prints as those characters and an escape sequence in a file
name cannot restyle or move the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

__all__ = ["MAX_SHOWN", "make_console", "one_line", "printable", "shown"]

#: Longest user value shown whole; longer ones show their start and their length.
MAX_SHOWN = 200


def printable(text: str) -> str:
    """``text`` with every non-printable character (escape, bell, other controls, stray
    surrogates) written as its Python escape, as ``repr`` would."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def one_line(value: object, limit: int | None = MAX_SHOWN) -> str:
    """``value`` as one line of plain text: whitespace runs folded, control characters written
    as escapes, values over ``limit`` characters shortened (None: never)."""
    text = " ".join(str(value).split())
    text = printable(text)
    if limit is not None and len(text) > limit:
        text = f"{text[: limit // 2]}...({len(text)} characters)"
    return text


def shown(value: object) -> str:
    """``value`` ready to be interpolated into rich markup: one line (``one_line``) with the
    markup characters escaped, so that it prints exactly as given."""
    return escape(one_line(value))


def make_console(**options: Any) -> Console:
    """The CLI's console: rich with kdnas's own markup, no emoji codes (``:smile:`` in a name
    stays text) and no automatic highlighting of numbers and paths in user text."""
    options.setdefault("log_path", False)
    return Console(emoji=False, highlight=False, **options)
