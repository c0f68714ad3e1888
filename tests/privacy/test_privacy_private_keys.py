"""Private keys: a categorical column declared ``"keys": "private"`` is grouped on under
zCDP, OpenDP selecting the released keys with its thresholded key release; the noise scale,
threshold and δ are OpenDP's; pure budgets and what cannot work are 422s."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import opendp.prelude as dp
import polars as pl
import pytest
from opendp.extras.polars import Bound, dp_len

from privacy import DatasetMetadata, QueryRequest, execute, plan_query
from privacy.errors import InvalidQuery
from privacy.execute import filtered_frame
from privacy.metadata import ColumnSpec
from privacy.query import resolve_query

BIG = [f"B{i}" for i in range(5)]
"""Five countries with thousands of devices each."""
SMALL = [f"S{j:03d}" for j in range(200)]
"""Two hundred countries with one device each."""
DEVICES_PER_BIG = 2000
RELEASES = 50


def _metadata(**overrides: Any) -> DatasetMetadata:
    body: dict[str, Any] = {
        "name": "roaming",
        "path": "roaming.parquet",
        "privacy_unit": "device",
        "columns": {
            "country": {"type": "categorical", "keys": "private"},
            "hour": {"type": "integer", "keys": [0, 1, 2]},
        },
        "max_partitions_contributed": 1,
        "max_contributions_per_partition": 1,
        "delta": 1e-9,
        "max_rows": 100_000,
        **overrides,
    }
    return DatasetMetadata.model_validate(body)


@pytest.fixture(scope="module")
def metadata() -> DatasetMetadata:
    return _metadata()


@pytest.fixture(scope="module")
def roaming() -> pl.DataFrame:
    """5 × 2000 devices in the large countries (each seen at one hour), and 200 devices
    alone in their country; plus a row with no country (never a released key)."""
    devices, countries, hours = [], [], []
    for country in BIG:
        for d in range(DEVICES_PER_BIG):
            devices.append(f"{country}-{d}")
            countries.append(country)
            hours.append(d % 3)
    for country in SMALL:
        devices.append(f"alone-{country}")
        countries.append(country)
        hours.append(0)
    devices.append("stateless")
    countries.append(None)
    hours.append(0)
    return pl.DataFrame(
        {"device": devices, "country": countries, "hour": hours},
        schema={"device": pl.String, "country": pl.String, "hour": pl.Int64},
    )


def _query(**overrides: Any) -> QueryRequest:
    body: dict[str, Any] = {
        "dataset": "roaming",
        "statistic": "unit_count",
        "group_by": ["country"],
        "privacy": {"rho": "0.1"},
        **overrides,
    }
    return QueryRequest.model_validate(body)


def _opendp_reference(
    by: list[str], num_groups: int, scale: float, threshold: int
) -> tuple[dp.Measurement, Any]:
    """The same release written directly against OpenDP: a unit count per group of ``by``
    with no public keys, at OpenDP's ``global_scale`` and ``threshold``; and its ``d_in``."""
    metric, d_in = dp.unit_of(contributions=[Bound(by=by, per_group=1, num_groups=num_groups)])
    columns = {"device": "String", "country": "String", "hour": "i64"}
    domain = dp.lazyframe_domain(
        [
            dp.series_domain(name, dp.option_domain(dp.atom_domain(T=kind)))
            for name, kind in columns.items()
            if name == "device" or name in by
        ]
    )
    schema = {n: pl.String if t == "String" else pl.Int64 for n, t in columns.items()}
    frame = pl.LazyFrame(schema={n: schema[n] for n in ["device", *by]})
    measurement = dp.m.make_private_lazyframe(
        input_domain=domain,
        input_metric=metric,
        output_measure=dp.approximate(dp.zero_concentrated_divergence()),
        lazyframe=frame.group_by(by).agg(dp_len(signed=True).alias("value")),
        global_scale=scale,
        threshold=threshold,
    )
    return measurement, d_in


def test_the_declaration_round_trips_and_means_no_public_keys() -> None:
    spec = ColumnSpec.model_validate({"type": "categorical", "keys": "private"})
    assert spec.private_keys and spec.keys is None and spec.typed_keys() == []
    assert spec.model_dump(mode="json")["keys"] == "private"
    assert ColumnSpec.model_validate(spec.model_dump()) == spec
    public = ColumnSpec.model_validate({"type": "categorical", "keys": ["a"]})
    assert not public.private_keys and "private_keys" not in public.model_dump()
    for bad in (
        {"type": "integer", "keys": "private"},
        {"type": "categorical", "keys": "secret"},
        {"type": "categorical", "private_keys": True},
    ):
        with pytest.raises(ValueError):
            ColumnSpec.model_validate(bad)


def test_a_column_without_any_keys_still_cannot_be_grouped(metadata: DatasetMetadata) -> None:
    plain = _metadata(columns={"country": {"type": "categorical"}})
    with pytest.raises(InvalidQuery, match="no public keys"):
        plan_query(_query(), plain, "zcdp")


def test_the_noise_scale_threshold_and_delta_are_opendps(metadata: DatasetMetadata) -> None:
    plan = plan_query(_query(), metadata, "zcdp")
    selection = plan.key_selection
    assert selection is not None and selection.columns == ("country",)
    assert plan.truncation is None  # no estimate of what the bounds drop (README)
    assert plan.cost == Decimal("0.1") and plan.opendp_loss <= 0.1
    # one unit, one group, one row: L2 sensitivity 1, ρ = 1/(2σ²)
    assert plan.noise_scale == pytest.approx(math.sqrt(1 / (2 * 0.1)), rel=1e-9)
    reference, d_in = _opendp_reference(["country"], 1, plan.noise_scale, selection.threshold)
    rho, delta = reference.map(d_in)
    assert rho == plan.opendp_loss
    assert delta == selection.delta <= metadata.delta
    summary = dp.summarize_polars_measurement(reference, 0.05)
    assert summary["scale"][0] == plan.noise_scale
    assert summary["threshold"][0] == selection.threshold
    assert plan.components[0].threshold == selection.threshold
    # the threshold is the smallest whose δ is within the dataset's delta
    below, _ = _opendp_reference(["country"], 1, plan.noise_scale, selection.threshold - 1)
    assert below.map(d_in)[1] > metadata.delta


def test_large_keys_are_always_released_and_single_device_keys_never(
    metadata: DatasetMetadata, roaming: pl.DataFrame
) -> None:
    """Over 50 releases each of the 5 large countries (2000 devices) is released, none of
    the 200 single-device countries is.

    Odds: a single-device key's noisy count reaches the threshold with probability at most
    OpenDP's δ (one unit's group, at its largest contribution), so the test fails on a
    correct implementation with probability ≤ 200 · 50 · δ ≈ 2·10⁻⁶ (δ ≈ 1.9·10⁻¹⁰). A large
    key is missed only when the noise (σ ≈ 2.2) is below −1985: never in practice."""
    plan = plan_query(_query(), metadata, "zcdp")
    assert plan.key_selection is not None
    assert plan.key_selection.delta * len(SMALL) * RELEASES < 1e-5
    data = roaming.lazy()
    for _ in range(RELEASES):
        result = execute(plan, data)
        keys = [row[0] for row in result.rows]
        assert keys == BIG, keys  # sorted by key, exactly the large ones
        assert result.keys_selected == len(BIG)
        assert result.opendp_loss <= 0.1
        for _, value in result.rows:
            assert abs(value - DEVICES_PER_BIG) <= 6 * plan.noise_scale


def test_a_private_column_mixes_with_a_public_one(
    metadata: DatasetMetadata, roaming: pl.DataFrame
) -> None:
    query = _query(statistic="count", group_by=["country", "hour"], max_partitions_contributed=2)
    plan = plan_query(query, metadata, "zcdp")
    assert plan.key_selection is not None
    assert plan.columns == ["country", "hour", "value"]
    # k = 2 groups of (country, hour), c = 1: L2 sensitivity √2
    assert plan.noise_scale == pytest.approx(math.sqrt(2 / (2 * 0.1)), rel=1e-9)
    reference, d_in = _opendp_reference(
        ["country", "hour"], 2, plan.noise_scale, plan.key_selection.threshold
    )
    assert reference.map(d_in) == (plan.opendp_loss, plan.key_selection.delta)
    result = execute(plan, roaming.lazy())
    assert [row[:2] for row in result.rows] == [[c, h] for c in BIG for h in (0, 1, 2)]
    assert result.keys_selected == 15
    exact = (
        filtered_frame(plan.query, metadata, roaming.lazy())  # type: ignore[arg-type]
        .group_by("country", "hour")
        .len()
        .collect()
    )
    counts = {(c, h): n for c, h, n in exact.iter_rows()}
    for country, hour, value in result.rows:
        assert abs(value - counts[(country, hour)]) <= 6 * plan.noise_scale
    # a filter on the private column: eq/in only (no key check is possible)
    only = plan_query(
        _query(where=[{"column": "country", "op": "in", "value": ["B1", "S001"]}]),
        metadata,
        "zcdp",
    )
    rows = execute(only, roaming.lazy()).rows
    assert [row[0] for row in rows] == ["B1"]


def test_a_release_may_select_no_key(metadata: DatasetMetadata, roaming: pl.DataFrame) -> None:
    """Only single-device countries match the filter: nothing reaches the threshold (fails
    with probability ≤ 2 · δ), and the release is an empty table, not an error."""
    query = _query(where=[{"column": "country", "op": "in", "value": ["S001", "S002"]}])
    result = execute(plan_query(query, metadata, "zcdp"), roaming.lazy())
    assert result.rows == [] and result.keys_selected == 0


def test_pure_budgets_get_a_422_that_says_why(metadata: DatasetMetadata) -> None:
    with pytest.raises(InvalidQuery, match=r"pure ε-DP \(δ = 0\) cannot allow.*zCDP budget"):
        plan_query(_query(privacy={"epsilon": 1}), metadata, "pure")


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"statistic": "sum", "column": "hour", "bounds": [0, 2]}, "count and unit_count only"),
        ({"privacy": {"max_error": 5}}, "explicit cost"),
        ({"max_partitions_contributed": "auto"}, "explicit contribution bounds"),
        (
            {"where": [{"column": "country", "op": "lt", "value": "M"}]},
            "only 'eq' and 'in'",
        ),
        (
            {
                "group_by": ["country", "hour"],
                "contribution_bounds_per": ["country"],
            },
            "private keys",
        ),
        (
            {"unit_location": {"column": "country"}},
            "public keys",
        ),
    ],
)
def test_what_cannot_work_is_refused(
    metadata: DatasetMetadata, overrides: dict[str, Any], detail: str
) -> None:
    with pytest.raises(InvalidQuery, match=detail):
        resolve_query(_query(**overrides), metadata)


def test_k_is_not_capped_by_public_keys(metadata: DatasetMetadata) -> None:
    """With private keys the number of groups is not public: k stays as asked (a public
    grouping caps it at its key combinations)."""
    resolved = resolve_query(_query(max_partitions_contributed=7), metadata)
    assert resolved.max_partitions_contributed == 7
    public = resolve_query(_query(group_by=["hour"], max_partitions_contributed=7), metadata)
    assert public.max_partitions_contributed == 3


def test_a_changed_delta_is_another_plan(metadata: DatasetMetadata) -> None:
    """The plan cache key holds the metadata digest, so a dataset's delta (the threshold's
    target) and its "keys": "private" declaration are part of it."""
    plan = plan_query(_query(), metadata, "zcdp")
    looser = plan_query(_query(), _metadata(delta=1e-5), "zcdp")
    assert plan.key_selection is not None and looser.key_selection is not None
    assert looser.key_selection.threshold < plan.key_selection.threshold
    assert looser.key_selection.delta <= 1e-5
    assert metadata.digest != _metadata(delta=1e-5).digest
