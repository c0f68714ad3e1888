"""The load test's data: a small events file whose cells come from its public key lists.

One Parquet file with a few thousand rows and columns ``device_id`` (the
privacy unit), ``a`` and ``b`` (categorical, ``ka`` and ``kb`` public keys, so
grouping on both gives ``ka × kb`` cells however few rows there are) and ``s``
(categorical, a few keys: the small queries). It is registered twice: as
``load_big`` (columns ``a``, ``b``) and ``load_small`` (column ``s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

FILE = "load_events.parquet"
BIG = "load_big"
SMALL = "load_small"
ROWS_PER_DEVICE = 4


@dataclass(frozen=True)
class LoadData:
    """The generated file and the public key lists of its categorical columns."""

    path: Path
    rows: int
    keys_a: list[str]
    keys_b: list[str]
    keys_s: list[str]

    @property
    def big_cells(self) -> int:
        return len(self.keys_a) * len(self.keys_b)

    @property
    def small_cells(self) -> int:
        return len(self.keys_s)

    def registrations(self) -> list[dict[str, Any]]:
        """The ``POST /v1/datasets`` bodies of ``load_big`` and ``load_small`` (no cap)."""
        common: dict[str, Any] = {
            "path": FILE,
            "privacy_unit": "device_id",
            "max_partitions_contributed": 1,
            "max_contributions_per_partition": 1,
            "max_rows": self.rows,
            "budget_cap": None,
        }
        return [
            {
                **common,
                "name": BIG,
                "columns": {
                    "a": {"type": "categorical", "keys": self.keys_a},
                    "b": {"type": "categorical", "keys": self.keys_b},
                },
            },
            {
                **common,
                "name": SMALL,
                "columns": {"s": {"type": "categorical", "keys": self.keys_s}},
            },
        ]


def big_query(epsilon: Decimal) -> dict[str, Any]:
    """A ``ka × kb``-cell query (visitors per (a, b)) at ``epsilon``."""
    return {
        "dataset": BIG,
        "statistic": "unit_count",
        "group_by": ["a", "b"],
        "privacy": {"epsilon": format(epsilon, "f")},
    }


def small_query(epsilon: Decimal) -> dict[str, Any]:
    """A few-cell query (visitors per s) at ``epsilon``."""
    return {
        "dataset": SMALL,
        "statistic": "unit_count",
        "group_by": ["s"],
        "privacy": {"epsilon": format(epsilon, "f")},
    }


def key_sizes(cells: int) -> tuple[int, int]:
    """(ka, kb) with ka × kb ≥ ``cells``, as square as possible (1M → 1000 × 1000)."""
    ka = max(1, math.isqrt(max(cells, 1) - 1) + 1)
    kb = max(1, -(-cells // ka))
    return ka, kb


def generate(
    directory: Path, *, cells: int, small_cells: int = 4, rows: int = 2000, seed: int = 7
) -> LoadData:
    """Write the events file into ``directory`` (created) and return its public metadata.

    The values are drawn uniformly from the key lists with a fixed seed; only
    the key lists, not the rows, determine the number of cells.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ka, kb = key_sizes(cells)
    keys_a = [f"a{i:05d}" for i in range(ka)]
    keys_b = [f"b{i:05d}" for i in range(kb)]
    keys_s = [f"s{i:02d}" for i in range(max(1, small_cells))]
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame(
        {
            "device_id": np.arange(rows, dtype=np.int64) // ROWS_PER_DEVICE,
            "a": [keys_a[i] for i in rng.integers(0, ka, rows)],
            "b": [keys_b[i] for i in rng.integers(0, kb, rows)],
            "s": [keys_s[i] for i in rng.integers(0, len(keys_s), rows)],
        }
    )
    path = directory / FILE
    frame.write_parquet(path)
    return LoadData(path=path, rows=rows, keys_a=keys_a, keys_b=keys_b, keys_s=keys_s)
