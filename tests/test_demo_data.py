"""Tests for the synthetic demo data generator (cli/demo_data.py) and the demo banner's queries."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from cli.demo import (
    ADMIN,
    ANALYST,
    AUDITOR,
    banner,
    crowd_queries,
    example_query,
    python_example,
)
from cli.demo_data import (
    DemoFiles,
    events_registration,
    generate,
    main,
    residents_registration,
)
from privacy import execute, plan_query
from privacy.data import load_frame
from privacy.metadata import DatasetMetadata
from privacy.query import QueryRequest, resolve_query

DEVICES = 2_000
DAYS = 7
KEYS = {ADMIN: "admin-key", ANALYST: "analyst-key", AUDITOR: "auditor-key"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), devices=DEVICES, days=DAYS, seed=7)


@pytest.fixture(scope="module")
def events(demo: DemoFiles) -> pl.DataFrame:
    return pl.read_parquet(demo.events_path)


@pytest.fixture(scope="module")
def residents(demo: DemoFiles) -> pl.DataFrame:
    return pl.read_parquet(demo.residents_path)


def test_same_seed_is_byte_identical(tmp_path: Path, demo: DemoFiles, events: pl.DataFrame) -> None:
    again = generate(tmp_path, devices=DEVICES, days=DAYS, seed=7)
    assert again.events_path.read_bytes() == demo.events_path.read_bytes()
    assert again.residents_path.read_bytes() == demo.residents_path.read_bytes()
    assert pl.read_parquet(again.events_path).equals(events)
    assert again == DemoFiles(
        events_path=tmp_path / demo.events_path.name,
        residents_path=tmp_path / demo.residents_path.name,
        n_events=demo.n_events,
        n_devices=demo.n_devices,
        municipality_codes=demo.municipality_codes,
        neighbourhood_codes=demo.neighbourhood_codes,
        days=demo.days,
        max_events_per_day=demo.max_events_per_day,
        neighbourhood_municipality=demo.neighbourhood_municipality,
    )


def test_different_seed_differs(tmp_path: Path, demo: DemoFiles, events: pl.DataFrame) -> None:
    other = generate(tmp_path, devices=DEVICES, days=DAYS, seed=8)
    assert not pl.read_parquet(other.events_path).equals(events)
    assert other.municipality_codes != demo.municipality_codes


def test_public_code_lists_depend_on_seed_not_size(tmp_path: Path, demo: DemoFiles) -> None:
    small = generate(tmp_path, devices=50, days=2, seed=7, events_per_day=1.0)
    assert small.municipality_codes == demo.municipality_codes
    assert small.neighbourhood_codes == demo.neighbourhood_codes
    # With 50 devices most codes do not occur, yet they are all published.
    assert pl.read_parquet(small.events_path)["municipality"].n_unique() < len(
        small.municipality_codes
    )


def test_schema_and_shapes(demo: DemoFiles, events: pl.DataFrame, residents: pl.DataFrame) -> None:
    assert events.schema == pl.Schema(
        {
            "device_id": pl.String(),
            "day": pl.Date(),
            "ts": pl.Datetime("us"),
            "municipality": pl.String(),
            "neighbourhood": pl.String(),
            "dwell_minutes": pl.Float64(),
        }
    )
    assert residents.schema == pl.Schema(
        {
            "device_id": pl.String,
            "home_municipality": pl.String,
            "home_neighbourhood": pl.String,
        }
    )
    assert events.height == demo.n_events
    # Poisson(7) per device-day: total close to devices * days * 7.
    assert 0.95 * DEVICES * DAYS * 7 < demo.n_events < 1.05 * DEVICES * DAYS * 7
    assert demo.n_events <= demo.max_rows
    assert demo.n_devices == DEVICES
    assert events["device_id"].n_unique() == DEVICES
    assert events["device_id"].str.contains(r"^d\d{7}$").all()
    assert events.null_count().sum_horizontal().item() == 0
    assert demo.events_path.name == "mobility_events.parquet"
    assert demo.residents_path.name == "residents.parquet"


def test_municipality_codes(demo: DemoFiles) -> None:
    codes = demo.municipality_codes
    assert 300 <= len(codes) <= 380
    assert codes == sorted(set(codes))
    assert all(re.fullmatch(r"GM\d{4}", c) for c in codes)
    numbers = [int(c[2:]) for c in codes]
    assert min(numbers) >= 1 and max(numbers) <= 1999
    assert max(numbers) - min(numbers) + 1 > len(codes)  # not a contiguous range


def test_neighbourhood_codes(demo: DemoFiles) -> None:
    codes = demo.neighbourhood_codes
    assert codes == sorted(set(codes))
    assert all(re.fullmatch(r"WK\d{6}", c) for c in codes)
    per_mun = Counter(c[2:6] for c in codes)
    assert set(per_mun) == {m[2:] for m in demo.municipality_codes}
    assert 8 <= len(codes) / len(demo.municipality_codes) <= 12


def test_days(demo: DemoFiles, events: pl.DataFrame) -> None:
    assert demo.days == [date(2026, 3, 1) + timedelta(days=d) for d in range(DAYS)]
    assert sorted(events["day"].unique().to_list()) == demo.days


def test_event_values_in_public_keys(demo: DemoFiles, events: pl.DataFrame) -> None:
    assert events["municipality"].is_in(demo.municipality_codes).all()
    assert events["neighbourhood"].is_in(demo.neighbourhood_codes).all()
    assert events["day"].is_in(demo.days).all()
    # Every neighbourhood lies in the event's municipality.
    assert (events["neighbourhood"].str.slice(2, 4) == events["municipality"].str.slice(2)).all()


def test_value_ranges(events: pl.DataFrame) -> None:
    dwell = events["dwell_minutes"]
    assert dwell.min() >= 0.0  # type: ignore[operator]
    assert dwell.max() <= 240.0  # type: ignore[operator]
    assert dwell.n_unique() > 100
    hours = events["ts"].dt.hour()
    assert hours.min() == 0
    assert hours.max() == 23
    assert events["ts"].dt.microsecond().max() == 0  # whole seconds
    assert events["ts"].dt.second().n_unique() == 60


def test_ts_within_its_day(events: pl.DataFrame) -> None:
    assert (events["ts"].dt.date() == events["day"]).all()
    # by day, then device, then time
    assert events.sort("day", "device_id", "ts", maintain_order=True).equals(events)


def _loaded(demo: DemoFiles) -> pl.DataFrame:
    """The events as Ruis reads them under the demo's registration (derived columns too)."""
    metadata = DatasetMetadata.model_validate(events_registration(demo))
    return load_frame(demo.events_path, metadata).collect()


def test_derived_columns_match_the_stored_ones(demo: DemoFiles, events: pl.DataFrame) -> None:
    loaded = _loaded(demo)
    assert loaded.height == events.height
    assert (loaded["hour"] == events["ts"].dt.hour().cast(pl.Int64)).all()
    assert (loaded["weekday"] == loaded["day"].dt.weekday().cast(pl.Int64)).all()
    assert set(loaded["weekday"].unique().to_list()) == set(range(1, 8))
    assert loaded["hour"].min() == 0 and loaded["hour"].max() == 23


def _per_hour(events: pl.DataFrame, weekend: bool) -> list[float]:
    """Mean events per day in each hour 0..23, over the weekdays or the weekend days."""
    days = events.filter((pl.col("day").dt.weekday() >= 6) == weekend)
    counts = days.group_by(pl.col("ts").dt.hour().alias("h")).len()
    by_hour = dict(zip(counts["h"].to_list(), counts["len"].to_list(), strict=True))
    n_days = days["day"].n_unique()
    return [by_hour.get(h, 0) / n_days for h in range(24)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_daily_rhythm(events: pl.DataFrame) -> None:
    # 2026-03-01 (Sunday) + 7 days: 2 weekend days, 5 weekdays, ~14,000 events a day.
    for is_weekend in (False, True):
        hours = _per_hour(events, is_weekend)
        night, day = _mean(hours[1:5]), _mean(hours[8:19])
        assert night < 0.15 * day, (is_weekend, night, day)
    weekday = _per_hour(events, weekend=False)
    midday = _mean(weekday[10:15])
    # commuting peaks (generated about 1.9x and 1.9x the midday rate)
    assert max(weekday[7:9]) > 1.4 * midday
    assert max(weekday[16:19]) > 1.4 * midday
    weekend = _per_hour(events, weekend=True)
    # weekends start later (share of the day's events before 9 h) and are flatter
    assert sum(weekend[:9]) / sum(weekend) < 0.6 * sum(weekday[:9]) / sum(weekday)
    assert max(weekend[7:19]) / _mean(weekend[10:15]) < max(weekday[7:19]) / midday


def test_night_events_are_mostly_at_home(events: pl.DataFrame, residents: pl.DataFrame) -> None:
    night = events.filter(pl.col("ts").dt.hour().is_in([0, 1, 2, 3, 4, 5, 6, 22, 23]))
    joined = night.join(residents, on="device_id")
    at_home = (joined["municipality"] == joined["home_municipality"]).mean()
    assert at_home is not None and at_home > 0.85  # type: ignore[operator]


def test_population_is_zipf_like(residents: pl.DataFrame, demo: DemoFiles) -> None:
    counts = Counter(residents["home_municipality"].to_list())
    population = sorted(counts.get(code, 0) for code in demo.municipality_codes)
    median = population[len(population) // 2]
    assert population[-1] >= 10 * max(median, 1)
    assert sum(population[-10:]) >= 0.3 * DEVICES  # a few big municipalities


def test_distinct_municipalities_per_device(events: pl.DataFrame) -> None:
    k = events.group_by("device_id").agg(pl.col("municipality").n_unique())["municipality"]
    assert k.min() == 1
    assert (k <= 4).mean() >= 0.8  # type: ignore[operator]
    assert (k > 4).sum() >= DEVICES // 100
    assert k.max() <= 8  # type: ignore[operator]


def test_residents_derived_from_events(events: pl.DataFrame, residents: pl.DataFrame) -> None:
    assert residents.height == DEVICES
    assert residents["device_id"].is_unique().all()
    assert residents["device_id"].to_list() == sorted(residents["device_id"].to_list())

    mun_counts: dict[str, Counter[str]] = {}
    nb_counts: dict[str, Counter[str]] = {}
    for dev, mun, nb in events.select("device_id", "municipality", "neighbourhood").iter_rows():
        mun_counts.setdefault(dev, Counter())[mun] += 1
        nb_counts.setdefault(dev, Counter())[nb] += 1

    for dev, home_mun, home_nb in residents.iter_rows():
        counts = mun_counts[dev]
        top = max(counts.values())
        assert home_mun == min(m for m, c in counts.items() if c == top)
        in_home = {nb: c for nb, c in nb_counts[dev].items() if nb[2:6] == home_mun[2:]}
        top_nb = max(in_home.values())
        assert home_nb == min(nb for nb, c in in_home.items() if c == top_nb)


def test_every_device_has_events_even_when_sparse(tmp_path: Path) -> None:
    files = generate(tmp_path, devices=300, days=1, seed=3, events_per_day=0.05)
    assert pl.read_parquet(files.events_path)["device_id"].n_unique() == 300
    assert pl.read_parquet(files.residents_path).height == 300


def test_events_registration(demo: DemoFiles) -> None:
    body = events_registration(demo)
    json.dumps(body)
    assert body == {
        "name": "mobility_events",
        "path": "mobility_events.parquet",
        "privacy_unit": "device_id",
        "columns": {
            "municipality": {"type": "categorical", "keys": demo.municipality_codes},
            "neighbourhood": {"type": "categorical", "keys": demo.neighbourhood_codes},
            "day": {"type": "date", "keys": [d.isoformat() for d in demo.days]},
            "ts": {"type": "datetime"},
            "dwell_minutes": {"type": "float", "bounds": [0, 240]},
            "hour": {"type": "derived", "from": "ts", "part": "hour"},
            "weekday": {"type": "derived", "from": "ts", "part": "weekday"},
        },
        "hierarchy": {
            "neighbourhood": {"parent": "municipality", "map": demo.neighbourhood_municipality}
        },
        "max_partitions_contributed": "auto",
        "max_contributions_per_partition": "auto",
        "auto_limits": {"max_partitions_contributed": 100, "max_contributions_per_partition": 100},
        "max_rows": DEVICES * DAYS * demo.max_events_per_day,
        "budget_cap": {"model": "pure", "epsilon": 50},
    }
    assert body["columns"]["day"]["keys"][0] == "2026-03-01"
    assert body["max_rows"] >= demo.n_events
    metadata = DatasetMetadata.model_validate(body)  # the hierarchy is complete
    assert metadata.ancestors("neighbourhood") == ["municipality"]
    assert metadata.columns["hour"].typed_keys() == list(range(24))


def test_hierarchy_map(demo: DemoFiles, events: pl.DataFrame) -> None:
    mapping = demo.neighbourhood_municipality
    assert list(mapping) == demo.neighbourhood_codes
    assert set(mapping.values()) == set(demo.municipality_codes)
    assert all(nb[2:6] == mun[2:] for nb, mun in mapping.items())
    pairs = events.select("neighbourhood", "municipality").unique()
    assert all(mapping[nb] == mun for nb, mun in pairs.iter_rows())


def test_residents_registration(demo: DemoFiles) -> None:
    body = residents_registration(demo)
    json.dumps(body)
    assert body == {
        "name": "residents",
        "path": "residents.parquet",
        "privacy_unit": "device_id",
        "columns": {
            "home_municipality": {"type": "categorical", "keys": demo.municipality_codes},
            "home_neighbourhood": {"type": "categorical", "keys": demo.neighbourhood_codes},
        },
        "max_partitions_contributed": 1,
        "max_contributions_per_partition": 1,
        "max_rows": DEVICES,
        "budget_cap": {"model": "pure", "epsilon": 50},
    }


def test_rejects_bad_parameters(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, devices=0)
    with pytest.raises(ValueError):
        generate(tmp_path, days=0)
    with pytest.raises(ValueError):
        generate(tmp_path, events_per_day=0.0)


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = [str(out), "--devices", "100", "--days", "2", "--seed", "5", "--events-per-day", "3"]
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert "100 devices" in line
    assert (out / "mobility_events.parquet").exists()
    assert pl.read_parquet(out / "residents.parquet").height == 100


def test_demo_banner_queries_resolve(demo: DemoFiles) -> None:
    metadata = DatasetMetadata.model_validate(events_registration(demo))
    queries = {"example": example_query(demo), **crowd_queries(demo)}
    resolved = {
        title: resolve_query(QueryRequest.model_validate(body), metadata)
        for title, body in queries.items()
    }
    residents, per_weekday = list(crowd_queries(demo))
    assert resolved[residents].location == "neighbourhood"
    assert resolved[residents].group_by == ("neighbourhood",)
    assert resolved[per_weekday].group_by == ("municipality", "weekday")
    text = banner("http://127.0.0.1:8000", KEYS, example_query(demo), Path("k.json"), queries)
    for body in queries.values():
        assert json.dumps(body) in text
    assert "Console:  http://127.0.0.1:8000/ui" in text
    # the Python example is the client's (it runs in tests/test_readme.py)
    example = python_example("http://127.0.0.1:8000", KEYS[ANALYST], example_query(demo))
    assert example in text
    assert example.startswith("from ruis_client import Ruis\n")
    assert "httpx" not in example
    compile(example, "banner", "exec")


def test_demo_weekday_query_runs(demo: DemoFiles) -> None:
    # the unit_location query runs once its execution is merged; this one runs now
    metadata = DatasetMetadata.model_validate(events_registration(demo))
    body = list(crowd_queries(demo).values())[1]
    plan = plan_query(QueryRequest.model_validate(body), metadata, "pure")
    result = execute(plan, load_frame(demo.events_path, metadata))
    assert len(result.rows) == len(demo.municipality_codes) * 7
    assert {row[1] for row in result.rows} == set(range(1, 8))
