"""The plan cache is bounded in estimated bytes, estimated from public sizes only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from privacy import DatasetMetadata, QueryRequest, plan_query
from privacy.plan_cache import (
    PLAN_CACHE_BYTES,
    clear_plan_cache,
    plan_bytes,
    plan_cache_bytes,
    plan_cache_size,
    set_plan_cache_bytes,
)
from tests.factories import make_metadata


def query(**fields: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "mobility_events",
        "statistic": "count",
        "group_by": ["municipality", "day", "hour"],
        "privacy": {"epsilon": "0.5"},
    }
    body.update(fields)
    return QueryRequest.model_validate(body)


@pytest.fixture
def small_cache() -> Iterator[int]:
    clear_plan_cache()
    bound = 5 * 2**20
    set_plan_cache_bytes(bound)
    yield bound
    set_plan_cache_bytes(PLAN_CACHE_BYTES)
    clear_plan_cache()


def test_estimate_grows_with_the_public_key_product(metadata: DatasetMetadata) -> None:
    one = plan_bytes(plan_query(query(group_by=["municipality"]), metadata, "pure"))
    three = plan_bytes(plan_query(query(), metadata, "pure"))  # 40 × 7 × 24 cells
    assert three > 10 * one and three >= 40 * 7 * 24 * 4 * 64


def test_cache_never_holds_more_than_its_byte_bound(
    small_cache: int, metadata: DatasetMetadata
) -> None:
    sizes = []
    for i in range(40):  # distinct costs: distinct plans, ~2.2 MB each by the estimate
        plan = plan_query(query(privacy={"epsilon": f"0.{10 + i}"}), metadata, "pure")
        sizes.append(plan_bytes(plan))
        assert plan_cache_bytes() <= small_cache
    assert plan_cache_size() == small_cache // sizes[0]  # the oldest were evicted
    assert plan_cache_bytes() == plan_cache_size() * sizes[0]


def test_a_plan_larger_than_the_bound_is_returned_but_not_kept(small_cache: int) -> None:
    keys = [f"K{i:05d}" for i in range(30_000)]
    wide = make_metadata(
        columns={
            **make_metadata().model_dump(mode="json")["columns"],
            "municipality": {"type": "categorical", "keys": keys},
        }
    )
    plan = plan_query(query(group_by=["municipality", "day"]), wide, "pure")
    assert plan_bytes(plan) > small_cache and plan.cost == 0.5
    assert plan_cache_size() == 0 and plan_cache_bytes() == 0
