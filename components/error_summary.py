"""One-line summaries of exceptions, for error messages that must fit on one line."""

from __future__ import annotations


def first_line(err: BaseException, limit: int = 300) -> str:
    """'Type: first line of the message', cut to limit characters (driver errors run to pages)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:limit]
