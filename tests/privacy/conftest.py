"""Fixtures shared by the privacy tests: generated data, metadata, exact answers."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from datetime import date
from itertools import product
from typing import Any

import polars as pl
import pytest

from privacy import DatasetMetadata, Plan
from privacy.execute import prepare_frame
from tests.factories import make_events, make_metadata


@pytest.fixture(scope="session")
def metadata() -> DatasetMetadata:
    return make_metadata()


@pytest.fixture(scope="session")
def events() -> pl.DataFrame:
    return make_events()


@pytest.fixture(scope="session")
def exact() -> Callable[[Plan, pl.DataFrame], dict[tuple[Any, ...], float]]:
    """Exact (non-private) answers per key on the SAME truncated data, in plain Polars."""

    def compute(plan: Plan, data: pl.DataFrame) -> dict[tuple[Any, ...], float]:
        assert plan.query is not None and plan.metadata is not None
        query = plan.query
        truncated = prepare_frame(plan, data.lazy()).collect()
        by = list(query.group_by)
        if query.statistic == "count":
            aggregate = pl.len()
        elif query.statistic == "unit_count":
            aggregate = pl.col(plan.metadata.privacy_unit).n_unique()
        else:
            assert query.bounds is not None
            clamped = pl.col("ruis.value").clip(query.bounds[0], query.bounds[1])
            if query.statistic == "sum":
                aggregate = clamped.sum()
            elif query.statistic == "mean":
                aggregate = clamped.mean()
            else:
                assert query.q is not None
                aggregate = clamped.quantile(query.q, interpolation="nearest")
        if not by:
            value = truncated.select(aggregate.alias("v")).item()
            return {(): float(value) if value is not None else 0.0}
        table = truncated.group_by(by).agg(aggregate.alias("v"))
        values = {
            tuple(row[:-1]): float(row[-1]) for row in table.iter_rows() if row[-1] is not None
        }
        keys = [plan.metadata.columns[name].typed_keys() for name in by]
        return {
            tuple(k.isoformat() if isinstance(k, date) else k for k in combo): values.get(
                combo, 0.0
            )
            for combo in product(*keys)
        }

    return compute


@pytest.fixture
def no_data_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything scans or reads a data file, or opens a path with "ghost"."""

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"planning tried to read data: {args!r}")

    for name in ("scan_parquet", "scan_csv", "read_parquet", "read_csv"):
        monkeypatch.setattr(pl, name, forbidden)
    real_open = builtins.open

    def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if "ghost" in str(file):
            raise AssertionError("planning opened the data file")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
