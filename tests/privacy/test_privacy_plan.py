"""Planning never reads data; plans are cached; execution lays rows out on public keys only."""

from __future__ import annotations

import ast
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import privacy
from privacy import (
    DatasetMetadata,
    QueryRequest,
    ReleaseFailed,
    execute,
    frame_schema,
    load_frame,
    plan_query,
)
from privacy.plan_cache import plan_cache_size
from tests.factories import MOBILITY_MUNICIPALITIES as MUNICIPALITIES
from tests.factories import make_metadata

PRIVACY_DIR = Path(privacy.__file__).parent


def query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "unit_count",
        "group_by": ["municipality"],
        "privacy": {"epsilon": "0.5"},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


def test_preview_never_opens_the_file(no_data_reads: None) -> None:
    metadata = make_metadata(name="ghost", path="nowhere/ghost.csv", max_rows=1000)
    assert not Path(metadata.path).exists()

    cases: list[tuple[str, dict[str, Any]]] = [
        ("unit_count", {}),
        ("sum", {"column": "dwell_minutes"}),
        ("quantile", {"column": "hour", "q": 0.5}),
    ]
    for statistic, extra in cases:
        plan = plan_query(
            query(
                dataset="ghost",
                statistic=statistic,
                privacy={"max_error": 50} if statistic != "quantile" else {"epsilon": 1},
                **extra,
            ),
            metadata,
            "pure",
        )
        assert plan.cost > 0 and plan.noise_scale > 0


def test_plan_fields(metadata: DatasetMetadata) -> None:
    plan = plan_query(query(), metadata, "pure")
    assert plan.model == "pure"
    assert plan.columns == ["municipality", "value"]
    assert plan.epsilon_delta is None
    assert plan.bounds_used == {
        "max_partitions_contributed": 3,
        "max_contributions_per_partition": 1,
        "clamp": None,
        "max_rows": None,
    }
    assert plan.canonical["privacy"] == {"epsilon": "0.5"}
    zcdp = plan_query(query(privacy={"rho": "0.1"}), metadata, "zcdp")
    assert zcdp.epsilon_delta is not None and zcdp.epsilon_delta[1] == metadata.delta


def test_plans_are_cached_and_callers_cannot_corrupt_the_cache(metadata: DatasetMetadata) -> None:
    first = plan_query(query(privacy={"epsilon": "0.77"}), metadata, "pure")
    first.canonical["statistic"] = "tampered"
    first.bounds_used["clamp"] = "tampered"
    second = plan_query(query(privacy={"epsilon": "0.770"}), metadata, "pure")
    assert second.measurement is first.measurement  # compiled once
    assert second.canonical["statistic"] == "unit_count"
    assert second.bounds_used["clamp"] is None
    other = plan_query(query(privacy={"epsilon": "0.78"}), metadata, "pure")
    assert other.measurement is not first.measurement
    assert plan_cache_size() <= 256


def test_concurrent_planning_compiles_once(metadata: DatasetMetadata) -> None:
    q = query(privacy={"epsilon": "0.4321"}, group_by=["municipality", "day"])
    with ThreadPoolExecutor(max_workers=8) as pool:
        plans = list(pool.map(lambda _: plan_query(q, metadata, "pure"), range(16)))
    assert len({id(p.measurement) for p in plans}) == 1


def test_metadata_change_is_a_new_plan(metadata: DatasetMetadata) -> None:
    plan = plan_query(query(), metadata, "pure")
    changed = make_metadata(max_partitions_contributed=5)
    changed_plan = plan_query(query(max_partitions_contributed=None), changed, "pure")
    assert changed_plan.noise_scale == pytest.approx(10.0 / 0.95)  # the statistic's 95%
    assert plan.noise_scale == pytest.approx(6.0 / 0.95)


class _FakeRelease:
    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def collect(self) -> pl.DataFrame:
        return self.frame


def test_rows_come_from_public_keys_not_from_the_release(
    metadata: DatasetMetadata, events: pl.DataFrame
) -> None:
    plan = plan_query(query(), metadata, "pure")
    shuffled = pl.DataFrame(
        {
            "municipality": [*reversed(MUNICIPALITIES), None, "GM_XTRA"],
            "ruis.value": list(range(len(MUNICIPALITIES) + 2)),
        }
    )
    fake = dataclasses.replace(plan, measurement=lambda _: _FakeRelease(shuffled))  # type: ignore[arg-type]
    rows = execute(fake, events.lazy()).rows
    # extra rows (unknown or null keys) are ignored; order is the declared key order
    assert [r[0] for r in rows] == MUNICIPALITIES
    assert rows[0][1] == float(len(MUNICIPALITIES) - 1)
    lacking = dataclasses.replace(plan, measurement=lambda _: _FakeRelease(shuffled.slice(1)))  # type: ignore[arg-type]
    with pytest.raises(ReleaseFailed, match="lacks a public key combination"):
        execute(lacking, events.lazy())


def test_release_contains_no_exact_answer_path(
    metadata: DatasetMetadata, events: pl.DataFrame
) -> None:
    """The measurement is invoked exactly once per execute, on the truncated frame."""
    plan = plan_query(query(), metadata, "pure")
    calls: list[pl.LazyFrame] = []

    def spy(frame: pl.LazyFrame) -> Any:
        calls.append(frame)
        return plan.measurement(frame)

    execute(dataclasses.replace(plan, measurement=spy), events.lazy())  # type: ignore[arg-type]
    assert len(calls) == 1
    assert calls[0].collect_schema().names() == ["device_id", "municipality"]


# --- loading files -----------------------------------------------------------------------------


def test_load_parquet_casts_to_the_declared_schema(
    tmp_path: Path, metadata: DatasetMetadata, events: pl.DataFrame
) -> None:
    stored = events.with_columns(
        pl.col("device_id").str.slice(4).cast(pl.Int32),  # numeric device ids
        pl.col("municipality").cast(pl.Categorical),
        pl.col("hour").cast(pl.Int16),
        pl.col("dwell_minutes").cast(pl.Float32),
        pl.lit("secret").alias("undeclared"),
    )
    path = tmp_path / "events.parquet"
    stored.write_parquet(path)
    frame = load_frame(path, metadata)
    assert frame.collect_schema() == frame_schema(metadata)
    loaded = frame.collect()
    assert loaded.height == events.height and "undeclared" not in loaded.columns
    plan = plan_query(query(), metadata, "pure")
    assert len(execute(plan, frame).rows) == len(MUNICIPALITIES)


def test_load_csv_casts_and_nulls_bad_values(tmp_path: Path, metadata: DatasetMetadata) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "device_id,municipality,day,dwell_minutes,hour,operator,seen_at,extra\n"
        f"7,{MUNICIPALITIES[0]},2026-03-01,12.5,3,kpn,2026-03-01 03:10:00,x\n"
        f"8,{MUNICIPALITIES[1]},not-a-day,abc,seven,odido,2026-03-01T04:00:00,y\n"
    )
    loaded = load_frame(path, metadata).collect()
    assert loaded.schema == frame_schema(metadata)
    assert loaded.row(0)[:5] == ("7", MUNICIPALITIES[0], date(2026, 3, 1), 12.5, 3)
    assert loaded.row(1)[2:5] == (None, None, None)


# --- the package's surface ---------------------------------------------------------------------


def test_exported_names_are_pinned() -> None:
    assert sorted(privacy.__all__) == sorted(
        [
            "Accuracy",
            "AccuracyTarget",
            "DatasetMetadata",
            "EpsilonLoss",
            "Filter",
            "InvalidDataset",
            "InvalidQuery",
            "NoiseComponent",
            "Plan",
            "PrivacyError",
            "QueryRequest",
            "ReleaseFailed",
            "ReleaseResult",
            "RhoLoss",
            "canonical_query",
            "clear_plan_cache",
            "execute",
            "frame_schema",
            "load_frame",
            "plan_query",
            "prepare_frame",
        ]
    )
    for name in privacy.__all__:
        assert getattr(privacy, name) is not None


def test_privacy_is_pure() -> None:
    """No web framework, no database, no other layer of Ruis."""
    forbidden = {
        "fastapi",
        "starlette",
        "sqlalchemy",
        "sqlmodel",
        "alembic",
        "psycopg",
        "api",
        "db",
        "cli",
        "uvicorn",
        "httpx",
    }
    for path in PRIVACY_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{path.name} imports {roots & forbidden}"


def test_public_functions_have_docstrings() -> None:
    for name in privacy.__all__:
        assert (getattr(privacy, name).__doc__ or "").strip(), name
