"""The study's one table writer (CSV for machines, GitHub Markdown for people).

Every table a notebook saves goes through ``save_table`` (``<name>.csv`` + ``<name>.md``), every per-image
result through ``write_csv``; both publish atomically (``fileio.atomic_write``), so an interrupted run leaves
the previous file, never half of one. Paths shown in them go through ``paths.relative_name``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from helpers import paths


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """``df`` as CSV (no index) at ``path``, replacing an older file; its folder is created."""
    from helpers.codec.fileio import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, df.to_csv(index=False).encode(), force=True)


def replace_rows(df: pd.DataFrame, path: str | Path, column: str = "codec") -> pd.DataFrame:
    """The CSV at ``path`` with its rows of every ``column`` value in ``df`` replaced by ``df``'s (rows of other
    values, measured earlier, stay); written back and returned."""
    old = pd.read_csv(path) if Path(path).exists() else df.iloc[:0]
    rows = pd.concat([old[~old[column].isin(df[column].unique())], df], ignore_index=True)
    write_csv(rows, path)
    return rows


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, float | np.floating):
        return format(value, floatfmt) if np.isfinite(value) else "–"
    return str(value)


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table; floats with ``floatfmt``, missing or infinite values as "–"."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):  # keeps each column's type (iterrows would turn ints into floats)
        lines.append("| " + " | ".join(_cell(v, floatfmt) for v in row) + " |")
    return "\n".join(lines) + "\n"


def save_table(
    df: pd.DataFrame, name: str, out_dir: str | Path | None = None, floatfmt: str = ".2f"
) -> list[Path]:
    """Write ``<out_dir>/<name>.csv`` and ``.md`` (default ``outputs/tables``); returns both paths."""
    from helpers.codec.fileio import atomic_write

    out_dir = Path(out_dir or paths.TABLES)
    csv_path = write_csv(df, out_dir / f"{name}.csv")
    md_path = atomic_write(out_dir / f"{name}.md", markdown_table(df, floatfmt).encode(), force=True)
    return [csv_path, md_path]
