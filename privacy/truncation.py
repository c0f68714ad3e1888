"""Contribution bounding per privacy unit, done in Polars before OpenDP sees the data.

Why not OpenDP's own truncation: in OpenDP 0.16, ``truncate_num_groups(k,
keep="first")`` keeps k − 1 groups while the noise is calibrated for k, and it
ranks groups by key *value*, so units in high-coded groups lose most of their
contributions (a large municipality was reported at 4,374 instead of 28,377);
``keep="sample"`` fails with a Polars error. Redefining a column after OpenDP's
truncation also keeps stale bounds (opendp#2949). So we bound contributions
ourselves and tell OpenDP the bounds that then hold.

The truncation ``T``, for a privacy unit ``u`` with rows ``D_u`` (after the
row-wise ``where`` filters):

1. among the groups (key combinations) of ``D_u``, keep the ``k`` in which
   ``u`` has the most rows; ties are broken by a fixed hash of (unit, group
   key) and then by the key itself;
2. in each kept group keep at most ``c`` of ``u``'s rows, chosen by a fixed
   hash of the row's content (then by the content itself, so only identical —
   interchangeable — rows are ever tied).

**Privacy argument.** ``T`` is a per-unit map: ``T(D) = ⊎_u T_u(D_u)``, where
``T_u`` looks only at unit ``u``'s own rows (its group counts, hashes of its own
unit id, keys and row contents — never another unit's rows or the row order
of the file). Hence if ``D'`` = ``D`` plus (or minus) all rows of one unit
``v``, then ``T(D')`` = ``T(D)`` plus (or minus) ``T_v(D'_v)``, and
``T_v(D'_v)`` has rows in at most ``k`` groups and at most ``c`` rows in each.
So the truncated datasets are neighbours under OpenDP's
``FrameDistance(SymmetricDistance)`` with
``d_in = [Bound(by=group_by, per_group=c, num_groups=k)]`` (without grouping:
``[Bound(by=[], per_group=c)]``). An OpenDP measurement that is ε-DP (or ρ-zCDP)
at that ``d_in`` composed with ``T`` is therefore ε-DP (ρ-zCDP) with respect to
adding or removing one privacy unit. The same holds for the row-wise filters
applied before ``T`` (a row-wise map keeps each unit's rows its own). We do not
pass ``identifier=`` to ``dp.unit_of``: OpenDP would then require its own
truncation in the plan; without it, the Bounds describe exactly the row-level
distance that ``T`` guarantees, and OpenDP calibrates noise for ``k`` groups
× ``c`` rows (it also uses ``min(k, number of public key combinations)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

_GROUP_SEED = 0x5275_6973  # "Ruis"; fixed so a unit's choice is a function of its rows
_ROW_SEED = 0x6E6F_6973  # "nois"
_ROWS = "__ruis_rows__"
_GROUP_HASH = "__ruis_group_hash__"
_ROW_HASH = "__ruis_row_hash__"


def truncate_contributions(
    frame: pl.LazyFrame,
    *,
    unit: str,
    by: Sequence[str],
    max_groups: int,
    max_rows_per_group: int,
) -> pl.LazyFrame:
    """Keep, per unit, its ``max_groups`` largest groups and ``max_rows_per_group`` rows in each.

    A per-unit function (see the module docstring for the privacy argument):
    after it, every unit has rows in at most ``max_groups`` groups of ``by``
    and at most ``max_rows_per_group`` rows per group. Without ``by`` the whole
    frame is one group. Rows with a null unit must be removed beforehand.
    Lazy; the columns of ``frame`` are kept (row order is not).
    """
    if max_groups < 1 or max_rows_per_group < 1:
        raise ValueError("contribution bounds must be at least 1")
    columns = frame.collect_schema().names()
    group_key = [unit, *by]
    others = [name for name in columns if name not in group_key]
    if not others:
        return _truncate_keys_only(frame, group_key=group_key, unit=unit,
                                   max_groups=max_groups, max_rows_per_group=max_rows_per_group)
    if by:
        frame = frame.join(_kept_groups(frame, group_key=group_key, unit=unit,
                                        max_groups=max_groups),
                           on=group_key, how="semi", nulls_equal=True)
    # Rows of one (unit, group) differ: choose them by a hash of their content
    # (then by the content), so that only identical rows are ever tied.
    frame = (
        frame.with_columns(pl.struct(columns).hash(_ROW_SEED).alias(_ROW_HASH))
        .sort([_ROW_HASH, *others], maintain_order=True)
        .drop(_ROW_HASH)
    )
    return frame.filter(_position_within(*group_key) < max_rows_per_group)


def _kept_groups(frame: pl.LazyFrame, *, group_key: list[str], unit: str,
                 max_groups: int) -> pl.LazyFrame:
    """Per unit, its ``max_groups`` groups with most rows, with the row count ``_ROWS``."""
    by = group_key[1:]
    return (
        frame.group_by(group_key)
        .agg(pl.len().alias(_ROWS))
        .with_columns(pl.struct(group_key).hash(_GROUP_SEED).alias(_GROUP_HASH))
        .sort([_ROWS, _GROUP_HASH, *by], descending=[True, *([False] * (len(by) + 1))],
              maintain_order=True)
        .filter(_position_within(unit) < max_groups)
        .select([*group_key, _ROWS])
    )


def _truncate_keys_only(frame: pl.LazyFrame, *, group_key: list[str], unit: str,
                        max_groups: int, max_rows_per_group: int) -> pl.LazyFrame:
    """:func:`truncate_contributions` when rows hold only the unit and group keys.

    Then all rows of one (unit, group) are identical, so the result is fully
    described by the per-(unit, group) row counts: each kept group contributes
    ``min(rows, c)`` copies of its key row. Computing it from the aggregated
    counts avoids re-reading, joining and ranking every row, and gives exactly
    the same multiset of rows as the general path.
    """
    if len(group_key) > 1:
        counts = _kept_groups(frame, group_key=group_key, unit=unit, max_groups=max_groups)
    else:
        counts = frame.group_by(group_key).agg(pl.len().alias(_ROWS))
    if max_rows_per_group == 1:
        return counts.select(group_key)
    copies = pl.int_ranges(0, pl.min_horizontal(pl.col(_ROWS), max_rows_per_group),
                           dtype=pl.UInt32)
    return counts.with_columns(copies.alias(_ROWS)).explode(_ROWS).select(group_key)


def _position_within(*partition: str) -> pl.Expr:
    """0, 1, 2, ... in frame order within each partition."""
    return pl.int_range(pl.len(), dtype=pl.UInt32).over(list(partition))
