"""What the console's pages show, computed from the API's answers (pure functions: no
HTTP, no database), so charts and their tables are built from the same numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SYMBOLS = {"epsilon": "ε", "rho": "ρ"}
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
    period: str | None = None
    """With a budget per period: the period the debit was charged to (spent and remaining
    are then that period's)."""


@dataclass(frozen=True)
class BurnDown:
    """A budget's debits over time: cumulative spent against its total."""

    consumer: str
    dataset: str
    unit: str
    total: float
    spent: float
    points: list[BurnPoint] = field(default_factory=list)
    per_period: bool = False

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
            "series": [{"label": f"{self.symbol} remaining", "values": remaining}],
            "total": self.total,
            "unit": self.unit,
            "axis": f"{self.symbol} remaining",
        }

    @property
    def symbol(self) -> str:
        """The budget's unit as a symbol (ε, ρ)."""
        return SYMBOLS.get(self.unit, self.unit)

    @property
    def remaining(self) -> float:
        """What remains of the total."""
        return self.total - self.spent


def _period_of(entry: dict[str, Any]) -> str | None:
    period = (entry.get("details") or {}).get("period")
    if not isinstance(period, dict):
        return None
    return str(period.get("period") or period.get("start") or "") or None


def burn_down(budget: dict[str, Any], entries: list[dict[str, Any]]) -> BurnDown:
    """The burn-down of ``budget`` (an item of ``GET /v1/budgets``) from its ledger entries
    (``GET /v1/ledger?consumer=&dataset=``, oldest first). Remaining is measured against the
    budget's current total; a budget per period starts again at its total in each period."""
    unit = str(budget["unit"])
    total = float(budget["total"])
    per_period = bool(budget.get("period"))
    spent_in: dict[str | None, float] = {}
    points: list[BurnPoint] = []
    for entry in entries:
        cost = entry.get("cost") or {}
        if entry.get("kind") not in DEBIT_KINDS or unit not in cost:
            continue
        amount = float(cost[unit])
        period = _period_of(entry) if per_period else None
        spent = spent_in.get(period, 0.0) + amount
        spent_in[period] = spent
        point = BurnPoint(
            int(entry["seq"]), str(entry["time"]), amount, spent, total - spent, period
        )
        points.append(point)
    return BurnDown(
        consumer=str(budget["consumer"]),
        dataset=str(budget["dataset"]),
        unit=unit,
        total=total,
        spent=float(budget["spent"]),
        points=points,
        per_period=per_period,
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


def when(iso: str | None) -> str:
    """An ISO 8601 UTC time as ``2026-03-01 12:00:05 UTC`` (to the second)."""
    if not iso:
        return "—"
    text = str(iso).replace("T", " ")
    return text[:19] + " UTC" if len(text) >= 19 else text


AUTO = "auto"
BOUND_NAMES = ("max_partitions_contributed", "max_contributions_per_partition", "clamp")


def _share(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{100 * number:.1f}%"


def bounds_text(chosen: dict[str, Any] | None) -> str | None:
    """The bounds automatic bounds chose, in words (None without automatic bounds)."""
    if not chosen:
        return None
    parts = [
        f"k = {chosen.get('max_partitions_contributed')} groups per unit",
        f"c = {chosen.get('max_contributions_per_partition')} rows per unit and group",
    ]
    clamp = chosen.get("clamp")
    if isinstance(clamp, list) and len(clamp) == 2:
        parts.append(f"clamp [{clamp[0]:g}, {clamp[1]:g}]")
    return ", ".join(parts)


def truncation_text(truncation: dict[str, Any] | None) -> str | None:
    """What the bounds kept (a DP estimate, ± its error bound), in words."""
    if not truncation:
        return None
    text = (
        f"{_share(truncation.get('kept_share'))} ± "
        f"{_share(truncation.get('kept_share_error_bound'))} of the units' contributions "
        "kept by the bounds"
    )
    if truncation.get("clamped_share") is not None:
        text += (
            f"; {_share(truncation.get('clamped_share'))} ± "
            f"{_share(truncation.get('clamped_share_error_bound'))} of the kept values "
            "outside the clamp"
        )
    return text + f" (estimated with {cost_text(truncation.get('cost'))} of the cost)"


def accuracy_split_text(accuracy: dict[str, Any] | None) -> str | None:
    """An error bound that covers noise and bias, split into its two parts, in words."""
    accuracy = accuracy or {}
    noise = _number(accuracy.get("noise_error_bound"))
    bias = _number(accuracy.get("bias_bound"))
    if accuracy.get("covers") != "noise_and_bias" or noise is None or bias is None:
        return None
    return (
        f"± {noise:.4g} from the noise, plus up to {bias:.4g} from the bounds (bias: "
        "bounding only drops data, so it can only lower a cell; estimated from the data)"
    )


def auto_bounds(planned: dict[str, Any]) -> list[str]:
    """The bounds of a preview (or release) that are ``auto`` (chosen with DP)."""
    bounds = planned.get("bounds") or {}
    return [name for name in BOUND_NAMES if bounds.get(name) == AUTO]
