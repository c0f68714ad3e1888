"""What the console's pages show, computed from the API's answers (pure functions: no
HTTP, no database), so charts and their tables are built from the same numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

DEBIT_KINDS = ("release",)
"""Ledger entries that spend a budget (their ``cost`` is debited)."""


@dataclass(frozen=True)
class BurnPoint:
    """One debit of a budget and where it left the budget."""

    seq: int
    time: str
    cost: float
    spent: float
    remaining: float


@dataclass(frozen=True)
class BurnDown:
    """A budget's debits over time: cumulative spent against its total."""

    consumer: str
    dataset: str
    unit: str
    total: float
    spent: float
    points: list[BurnPoint] = field(default_factory=list)

    @property
    def chart_id(self) -> str:
        """A DOM id for the chart's data block."""
        return "burn-" + "".join(
            c if c.isalnum() else "-" for c in f"{self.consumer}-{self.dataset}"
        )

    def chart(self) -> dict[str, Any]:
        """The chart's data: remaining budget after each debit, starting from the total."""
        labels = ["start", *(when(p.time) for p in self.points)]
        remaining = [self.total, *(p.remaining for p in self.points)]
        return {
            "kind": "burn-down",
            "labels": labels,
            "series": [{"label": f"remaining {self.unit}", "values": remaining}],
            "total": self.total,
            "unit": self.unit,
        }


def burn_down(budget: dict[str, Any], entries: list[dict[str, Any]]) -> BurnDown:
    """The burn-down of ``budget`` (an item of ``GET /v1/budgets``) from its ledger entries
    (``GET /v1/ledger?consumer=&dataset=``, oldest first). Remaining is measured against the
    budget's current total."""
    unit = str(budget["unit"])
    total = float(budget["total"])
    spent = 0.0
    points: list[BurnPoint] = []
    for entry in entries:
        cost = entry.get("cost") or {}
        if entry.get("kind") not in DEBIT_KINDS or unit not in cost:
            continue
        amount = float(cost[unit])
        spent += amount
        points.append(
            BurnPoint(int(entry["seq"]), str(entry["time"]), amount, spent, total - spent)
        )
    return BurnDown(
        consumer=str(budget["consumer"]),
        dataset=str(budget["dataset"]),
        unit=unit,
        total=total,
        spent=float(budget["spent"]),
        points=points,
    )


@dataclass(frozen=True)
class ReleaseRow:
    """One released cell: its group keys, DP value and interval at the accuracy's alpha."""

    groups: list[Any]
    value: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class ReleaseView:
    """A release's table and error-bar chart."""

    group_columns: list[str]
    rows: list[ReleaseRow]
    error_bound: float | None
    alpha: float | None

    def chart(self) -> dict[str, Any]:
        """The error-bar chart's data: one bar per cell with its lower and upper end."""
        return {
            "kind": "error-bars",
            "labels": [" / ".join(str(g) for g in row.groups) or "all" for row in self.rows],
            "values": [row.value for row in self.rows],
            "lower": [row.lower for row in self.rows],
            "upper": [row.upper for row in self.rows],
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


INTERVAL_COLUMNS = ("value", "lower", "upper")


def _interval(value: float | None, accuracy: dict[str, Any]) -> tuple[float | None, float | None]:
    """The interval the accuracy states around ``value`` (None when it states none in the
    value's units, as for a quantile's rank error)."""
    bound = _number(accuracy.get("error_bound"))
    if value is None or bound is None:
        return None, None
    noise = _number(accuracy.get("noise_error_bound"))
    bias = _number(accuracy.get("bias_bound"))
    if accuracy.get("covers") == "noise_and_bias" and noise is not None and bias is not None:
        return value - noise, value + noise + bias  # bounding only lowers a cell
    return value - bound, value + bound


def release_view(release: dict[str, Any]) -> ReleaseView:
    """The table of a release (``GET /v1/queries/{id}``): ``value`` is the released DP
    value; ``lower``/``upper`` the release's own per-cell interval where it has one (a
    mean), else the interval of the accuracy (``value`` ∓ ``error_bound``, or with
    ``covers: noise_and_bias`` [value − noise bound, value + noise bound + bias bound]),
    which holds the exact value with probability ≥ 1 − alpha."""
    columns = [str(c) for c in release.get("columns", [])]
    at = {name: columns.index(name) for name in INTERVAL_COLUMNS if name in columns}
    group_indexes = [i for i, c in enumerate(columns) if c not in INTERVAL_COLUMNS]
    accuracy = release.get("accuracy") or {}
    rows: list[ReleaseRow] = []
    for raw in release.get("rows", []):
        value = _number(raw[at["value"]]) if "value" in at else None
        if "lower" in at and "upper" in at:
            lower, upper = _number(raw[at["lower"]]), _number(raw[at["upper"]])
        else:
            lower, upper = _interval(value, accuracy)
        rows.append(ReleaseRow([raw[i] for i in group_indexes], value, lower, upper))
    return ReleaseView(
        [columns[i] for i in group_indexes],
        rows,
        _number(accuracy.get("error_bound")),
        _number(accuracy.get("alpha")),
    )


def cost_text(cost: dict[str, Any] | None) -> str:
    """A cost as ``ε = 0.5`` / ``ρ = 0.01`` (plus δ where there is one)."""
    if not cost:
        return "—"
    parts = []
    for key, symbol in (("epsilon", "ε"), ("rho", "ρ"), ("delta", "δ")):
        if cost.get(key) is not None:
            parts.append(
                f"{symbol} = {cost[key]:g}"
                if isinstance(cost[key], float | int)
                else f"{symbol} = {cost[key]}"
            )
    return ", ".join(parts) or json.dumps(cost)


def parse_group_by(text: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``."""
    return [part.strip() for part in text.split(",") if part.strip()]


def newest_first(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ledger entries newest first."""
    return sorted(entries, key=lambda entry: int(entry["seq"]), reverse=True)


def when(iso: str | None) -> str:
    """An ISO 8601 UTC time as ``2026-03-01 12:00:05 UTC`` (to the second)."""
    if not iso:
        return "—"
    text = str(iso).replace("T", " ")
    return text[:19] + " UTC" if len(text) >= 19 else text
