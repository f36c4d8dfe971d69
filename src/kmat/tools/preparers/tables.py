"""Reading metadata tables: the first sheet of an .xlsx (openpyxl) or a CSV (csv module)."""

from __future__ import annotations

import csv
from pathlib import Path

from kmat.tools.preparers.common import PrepareError


def read_rows(path: Path) -> list[list[object]]:
    """All rows of ``path`` (first sheet of an .xlsx/.xlsm, else CSV) as lists of cell values."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return read_xlsx(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [list(r) for r in csv.reader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise PrepareError(f"{path}: cannot read the CSV file ({err})") from err


def read_xlsx(path: Path) -> list[list[object]]:
    """Cell values of the first worksheet (``None`` for empty cells)."""
    try:
        import openpyxl
    except ImportError as err:  # pragma: no cover - openpyxl is a dependency
        raise PrepareError(f"reading {path} needs openpyxl (pip install openpyxl)") from err
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many types for a bad file
        raise PrepareError(f"{path}: cannot read the spreadsheet ({type(err).__name__}: {err})") from err
    try:
        ws = wb.worksheets[0]
        return [list(r) for r in ws.iter_rows(values_only=True)]
    finally:
        wb.close()
