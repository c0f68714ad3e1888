"""The flat, spreadsheet-safe CSV form of a ledger entry (``GET /v1/ledger/export?format=csv``).

One row per entry, a fixed set of columns (:data:`COLUMNS`). Costs are plain numbers
(``epsilon``, ``rho``, ``delta``), the values recurring across kinds (``release_id``,
``mechanism``, ``reason``, ...) have a column of their own, and ``details`` holds the
compact JSON of the rest of the entry's details without the released rows (those are in
the JSONL export, which is the complete, verifiable form). No cell is longer than
:data:`MAX_CELL` characters (Excel's limit, in UTF-16 code units, so also in characters):
a longer ``details`` is cut and ``details_complete`` is ``false``. A text cell starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's
advice against CSV formula injection); numeric columns hold only numbers, never escaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_CELL = 32_767
"""Excel's limit on the characters of one cell."""
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""The first characters that make a spreadsheet read a cell as a formula (OWASP)."""
NUMERIC = frozenset({"seq", "epsilon", "rho", "delta", "noise_scale", "rows_released"})
"""Columns that hold a number or nothing (never escaped, never text)."""
COLUMNS = (
    "seq",
    "time",
    "kind",
    "actor",
    "key_id",
    "consumer",
    "dataset",
    "model",
    "epsilon",
    "rho",
    "delta",
    "request_id",
    "release_id",
    "statistic",
    "mechanism",
    "noise_scale",
    "status",
    "reason",
    "rows_released",
    "details",
    "details_complete",
    "prev_hash",
    "hash",
)
"""The header of the CSV export, in order."""
RELEASED_VALUES = ("rows",)
"""Details keys that hold released values: left out of the ``details`` cell."""


def _utf16_units(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def cut(text: str, limit: int = MAX_CELL) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` UTF-16 code units (so at most ``limit``
    characters too), never inside a character; and whether it was whole."""
    if len(text) <= limit // 2 or _utf16_units(text) <= limit:
        return text, True
    units = text.encode("utf-16-le")[: 2 * limit]
    if len(units) >= 2 and 0xD8 <= units[-1] <= 0xDB:  # half a surrogate pair: drop it
        units = units[:-2]
    return units.decode("utf-16-le"), False


def text_cell(value: object, limit: int = MAX_CELL) -> tuple[str, bool]:
    """The cell of a text value: empty for None, a leading ``'`` when it starts like a
    formula, cut to ``limit``; and whether it is whole."""
    if value is None:
        return "", True
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return cut(text, limit)


def number_cell(value: object) -> str:
    """The cell of a numeric column: the shortest text that reads back as the same
    number, or empty for anything that is not a number (None, text, booleans)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ""
    return repr(value)


def _get(mapping: object, *path: str) -> Any:
    for key in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _rows_released(details: Mapping[str, Any]) -> Any:
    rows = details.get("rows")
    if isinstance(rows, list):
        return len(rows)
    return details.get("rows_count")  # committed to by digest (db.releases.ledger_output)


def _delta(document: Mapping[str, Any]) -> Any:
    """The δ an entry spends: its cost's, or (a release with private keys) its key
    selection's."""
    delta = _get(document, "cost", "delta")
    if delta is None and document.get("kind") == "release":
        delta = _get(document, "details", "key_selection", "delta")
    return delta


def details_text(details: object) -> str:
    """The compact JSON of ``details`` without the released values."""
    if isinstance(details, Mapping):
        details = {k: v for k, v in details.items() if k not in RELEASED_VALUES}
    return json.dumps(details, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def row(document: Mapping[str, Any]) -> list[str]:
    """The CSV cells of one entry document (:func:`db.ledger.entry_document`), in the
    order of :data:`COLUMNS`: every cell at most :data:`MAX_CELL` characters, text cells
    protected against formula injection, numeric cells plain numbers or empty."""
    raw = document.get("details")
    details: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    values: dict[str, Any] = {
        "seq": document.get("seq"),
        "time": document.get("time"),
        "kind": document.get("kind"),
        "actor": document.get("actor"),
        "key_id": document.get("key_id"),
        "consumer": document.get("consumer"),
        "dataset": document.get("dataset"),
        "model": _get(document, "cost", "model"),
        "epsilon": _get(document, "cost", "epsilon"),
        "rho": _get(document, "cost", "rho"),
        "delta": _delta(document),
        "request_id": document.get("request_id"),
        "release_id": details.get("release_id"),
        "statistic": _get(details, "query", "statistic"),
        "mechanism": details.get("mechanism"),
        "noise_scale": details.get("noise_scale"),
        "status": details.get("status"),
        "reason": details.get("reason"),
        "rows_released": _rows_released(details),
        "prev_hash": document.get("prev_hash"),
        "hash": document.get("hash"),
    }
    details_cell, whole = text_cell(details_text(raw))
    cells: dict[str, str] = {"details": details_cell, "details_complete": str(whole).lower()}
    for column, value in values.items():
        cells[column] = number_cell(value) if column in NUMERIC else text_cell(value)[0]
    return [cells[column] for column in COLUMNS]
