"""Benchmark data: synthetic demo data at fixed sizes, generated once and cached by parameters.

Each data set lives in ``bench/data/<key>/`` where ``key`` spells out the
:func:`cli.demo_data.generate` parameters and the files' format version
(:data:`cli.demo_data.DATA_FORMAT`, so data of an older generator is never reused);
``params.json`` is written last, so a directory without it (an interrupted
generation) is regenerated.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cli import demo_data

DATA_ROOT = Path(__file__).resolve().parent / "data"
STAMP = "params.json"


@dataclass(frozen=True)
class DataSpec:
    """The parameters of one generated data set (the cache key)."""

    label: str
    devices: int
    days: int
    events_per_day: float = 7.0
    seed: int = 42
    data_format: int = demo_data.DATA_FORMAT

    @property
    def key(self) -> str:
        epd = f"{self.events_per_day:g}".replace(".", "p")
        return f"v{self.data_format}_devices{self.devices}_days{self.days}_epd{epd}_seed{self.seed}"

    @property
    def directory(self) -> Path:
        return DATA_ROOT / self.key


SIZES: dict[str, DataSpec] = {
    "1M": DataSpec("1M", devices=20_000, days=7),
    "10M": DataSpec("10M", devices=100_000, days=10, events_per_day=10.0),
    "100M": DataSpec("100M", devices=1_000_000, days=10, events_per_day=10.0),
}
TINY = DataSpec("tiny", devices=150, days=1)
"""About 1,000 events: the ledger throughput data set (its reads are negligible)."""


@dataclass(frozen=True)
class BenchData:
    """A generated data set: its files, public registrations and sizes."""

    spec: DataSpec
    files: demo_data.DemoFiles
    n_events: int
    n_residents: int
    events_bytes: int
    """``DataFrame.estimated_size()`` of the whole events table in memory."""
    residents_bytes: int
    generated_seconds: float | None
    """Seconds spent generating, None when read from the cache."""

    def registration(self, dataset: str) -> dict[str, Any]:
        """The ``POST /v1/datasets`` body, without a dataset cap (the bench spends a lot)."""
        body = (
            demo_data.events_registration(self.files)
            if dataset == "mobility_events"
            else demo_data.residents_registration(self.files)
        )
        body["budget_cap"] = None
        return body


def _describe(spec: DataSpec) -> demo_data.DemoFiles:
    return demo_data.describe(
        spec.directory,
        devices=spec.devices,
        days=spec.days,
        seed=spec.seed,
        events_per_day=spec.events_per_day,
    )


def estimated_size(path: Path) -> tuple[int, int]:
    """(rows, ``DataFrame.estimated_size()`` of the whole table in memory) of a Parquet file.

    Read one column at a time: a frame's estimated size is the sum of its columns', so
    this is the whole table's figure without holding it all in memory at once (the
    100M events are several GB).
    """
    import polars as pl

    columns = pl.scan_parquet(path).collect_schema().names()
    rows = int(pl.scan_parquet(path).select(pl.len()).collect().item())
    size = 0
    for column in columns:
        size += int(pl.read_parquet(path, columns=[column]).estimated_size())
    return rows, size


def _sizes(files: demo_data.DemoFiles) -> dict[str, int]:
    n_events, events_bytes = estimated_size(files.events_path)
    n_residents, residents_bytes = estimated_size(files.residents_path)
    return {
        "n_events": n_events,
        "n_residents": n_residents,
        "events_bytes": events_bytes,
        "residents_bytes": residents_bytes,
    }


def ensure(spec: DataSpec) -> BenchData:
    """The data set of ``spec``, generated into ``bench/data/`` unless already cached."""
    stamp = spec.directory / STAMP
    wanted = asdict(spec)
    del wanted["label"]
    if stamp.exists():
        stored = json.loads(stamp.read_text())
        if stored.get("params") == wanted:
            files = _describe(spec)
            if files.events_path.exists() and files.residents_path.exists():
                return _bench_data(spec, files, stored["sizes"], None)
    t0 = time.perf_counter()
    files = demo_data.generate(
        spec.directory,
        devices=spec.devices,
        days=spec.days,
        seed=spec.seed,
        events_per_day=spec.events_per_day,
    )
    elapsed = time.perf_counter() - t0
    sizes = _sizes(files)
    stamp.write_text(json.dumps({"params": wanted, "sizes": sizes}, indent=2))
    return _bench_data(spec, files, sizes, elapsed)


def _bench_data(
    spec: DataSpec, files: demo_data.DemoFiles, sizes: dict[str, int], elapsed: float | None
) -> BenchData:
    return BenchData(
        spec=spec,
        files=files,
        n_events=sizes["n_events"],
        n_residents=sizes["n_residents"],
        events_bytes=sizes["events_bytes"],
        residents_bytes=sizes["residents_bytes"],
        generated_seconds=elapsed,
    )
