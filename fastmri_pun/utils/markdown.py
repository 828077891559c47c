"""Markdown (GitHub) tables: the one helper every report of the package writes its tables with."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["markdown_table"]


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | Sequence[str] = "l"
) -> list[str]:
    """Lines of a Markdown table (no trailing blank line).

    Args:
        header: column titles.
        rows: one sequence of cells per row (formatted with ``str``; ``|`` is escaped).
        align: ``"l"`` or ``"r"`` per column (a string of such letters, e.g. ``"llrr"``, or a
            sequence); one letter applies to every column.

    Raises:
        ValueError: a row or ``align`` has another number of cells than ``header``.
    """
    n = len(header)
    letters = list(align) if len(align) != 1 else list(align) * n
    if len(letters) != n or not set(letters) <= {"l", "r"}:
        raise ValueError(f"align must give 'l' or 'r' for each of the {n} columns, got {align!r}")
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join("---:" if a == "r" else "---" for a in letters) + "|",
    ]
    for row in rows:
        row = list(row)
        if len(row) != n:
            raise ValueError(f"table row has {len(row)} cells for {n} columns: {row!r}")
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines
