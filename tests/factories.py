"""The one data factory of the tests: generated datasets and their metadata (fixed seeds).

Data generation only; DP noise always comes from OpenDP.

- :func:`write_events` / :func:`events_metadata`: a small mobility-like parquet
  file and its registration body (API, CLI and database tests), over
  :data:`MUNICIPALITIES` and :data:`DAYS`.
- :func:`make_events` / :func:`make_metadata`: the larger phone-event frame and
  its public metadata (privacy tests), over :data:`MOBILITY_MUNICIPALITIES` and
  :data:`MOBILITY_DAYS`. The metadata points at a file that does not exist:
  planning must never need it, and execution gets the data as a LazyFrame.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from privacy import DatasetMetadata

MUNICIPALITIES = [f"GM{code:04d}" for code in (14, 34, 363, 599, 772, 1680)]
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(4)]
MARCH_APRIL = [date(2026, 3, 1) + timedelta(days=i) for i in range(61)]
"""Every day of March and April 2026 (``days=`` of :func:`write_events` and
:func:`events_metadata`, for budgets per month)."""


def write_events(
    data_dir: Path,
    *,
    devices: int = 300,
    seed: int = 7,
    name: str = "events.parquet",
    days: list[date] = DAYS,
) -> Path:
    """A small mobility-like table: device_id, municipality, day, dwell_minutes, hour
    (``day`` among ``days``)."""
    rng = np.random.default_rng(seed)
    rows = devices * 6
    frame = pl.DataFrame(
        {
            "device_id": [f"d{i:05d}" for i in rng.integers(0, devices, rows)],
            "municipality": [MUNICIPALITIES[i] for i in rng.integers(0, len(MUNICIPALITIES), rows)],
            "day": [days[i] for i in rng.integers(0, len(days), rows)],
            "dwell_minutes": rng.uniform(0, 240, rows),
            "hour": rng.integers(0, 24, rows).astype(np.int64),
        }
    )
    path = data_dir / name
    frame.write_parquet(path)
    return path


def events_metadata(
    name: str = "events",
    path: str = "events.parquet",
    days: list[date] = DAYS,
    **overrides: Any,
) -> dict[str, Any]:
    """Registration body for :func:`write_events`' file (written with the same ``days``)."""
    body: dict[str, Any] = {
        "name": name,
        "path": path,
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": MUNICIPALITIES},
            "day": {"type": "date", "keys": [d.isoformat() for d in days]},
            "dwell_minutes": {"type": "float", "bounds": [0, 240]},
            "hour": {"type": "integer", "bounds": [0, 23]},
        },
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "max_rows": 100_000,
    }
    body.update(overrides)
    return body


DATA_SEED = 20260308
MOBILITY_MUNICIPALITIES = [
    f"GM{code:04d}"
    for code in sorted(np.random.default_rng(7).choice(10_000, size=40, replace=False))
]
MOBILITY_DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(7)]
OPERATORS = ["kpn", "odido", "vodafone"]


def make_metadata(**overrides: Any) -> DatasetMetadata:
    """The test dataset's public metadata (its path does not exist)."""
    declaration: dict[str, Any] = {
        "name": "mobility_events",
        "path": "does/not/exist/mobility_events.parquet",
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": MOBILITY_MUNICIPALITIES},
            "day": {"type": "date", "keys": [d.isoformat() for d in MOBILITY_DAYS]},
            "dwell_minutes": {"type": "float", "bounds": [0, 240]},
            "hour": {"type": "integer", "bounds": [0, 23], "keys": list(range(24))},
            "operator": {"type": "categorical"},
            "seen_at": {"type": "datetime"},
        },
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "max_rows": 100_000,
    }
    declaration.update(overrides)
    return DatasetMetadata.model_validate(declaration)


def make_events(seed: int = DATA_SEED, devices: int = 2_000) -> pl.DataFrame:
    """Phone events: each device in 1–6 municipalities (skewed popularity), 1–5 rows each."""
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(len(MOBILITY_MUNICIPALITIES), 0.7))
    device_ids: list[str] = []
    municipalities: list[str] = []
    for device in range(devices):
        visited = rng.choice(
            len(MOBILITY_MUNICIPALITIES), size=int(rng.integers(1, 7)), replace=False, p=popularity
        )
        for m in visited:
            rows = int(rng.integers(1, 6))
            device_ids += [f"dev-{device:05d}"] * rows
            municipalities += [MOBILITY_MUNICIPALITIES[int(m)]] * rows
    n = len(device_ids)
    day_index = rng.integers(0, len(MOBILITY_DAYS), n)
    hours = rng.integers(0, 24, n)
    return pl.DataFrame(
        {
            "device_id": device_ids,
            "municipality": municipalities,
            "day": [MOBILITY_DAYS[int(i)] for i in day_index],
            "dwell_minutes": rng.gamma(2.0, 40.0, n),  # some above the 240 bound: clamped
            "hour": hours,
            "operator": rng.choice(OPERATORS, n),
            "seen_at": (
                np.datetime64("2026-03-01T00:00", "m")
                + (day_index * 1440 + hours * 60).astype("timedelta64[m]")
            ).astype("datetime64[us]"),
        }
    ).with_columns(
        pl.col("hour").cast(pl.Int64),
        pl.col("seen_at").cast(pl.Datetime("us")),
    )
