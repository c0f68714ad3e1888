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

**Bounds per column** (``per``, the query's ``contribution_bounds_per``: some,
not all, of the grouping columns ``by``). Step 1 then ranks and keeps the ``k``
largest groups of ``u`` separately for each value ``v`` of the ``per`` columns
(among ``u``'s groups whose key has ``per``-part ``v``, same order and
tie-breaking); step 2 is unchanged. ``T`` is still a per-unit map (``T_u`` still
reads only ``u``'s rows: its group counts, its hashes, its keys), so as above
``T(D')`` = ``T(D)`` ⊎ ``T_v(D'_v)``. Now ``T_v(D'_v)`` has, under each value of
the ``per`` columns, rows in at most ``k`` groups and at most ``c`` rows in each;
and since only rows whose keys are public keys reach ``T`` (the mask), it has
rows under at most ``D`` values, ``D`` the number of public key combinations of
the ``per`` columns that the row filters on them let through (rows with other
values are masked out before ``T``). So the neighbouring distance is bounded by
``Bound(by=by, per_group=c, num_groups=k·D)`` and
``Bound(by=per, per_group=k·c, num_groups=D)`` (in total at most ``k·c·D``
rows); :func:`privacy.measurement.contribution_bounds` passes exactly these to
OpenDP. A unit keeps up to ``k`` groups on every day (say), instead of ``k``
groups over all days, at a sensitivity ``D`` times larger (L1; ``√D`` for L2).

**Timing.** The work must not grow with how many rows the ``where`` filters
match (the response time would reveal it, outside any budget). So the filters
are not applied by dropping rows: they arrive as a Boolean ``mask`` column and
the expensive steps of ``T`` run over all rows of the file — one group-by per
(unit, group) over all rows that counts the matching rows (groups with none
get 0, rank after every other group of their unit and are never kept) and,
when rows carry a value, picks each group's first ``c`` matching rows in the
hash order of step 2 (non-matching rows order after all matching ones). The
result is exactly the multiset ``T(F(D))`` (``F`` the filters), so the privacy
argument above is unchanged; only how it is computed differs. What is left
depends on the data only through the per-(unit, group) table (as many rows as
the file has (unit, group) pairs, whatever matches) and the truncated rows (at
most ``k·c`` per unit; ``k·c·D`` with ``per``, above), which the OpenDP
measurement then reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

_GROUP_SEED = 0x5275_6973  # "Ruis"; fixed so a unit's choice is a function of its rows
_ROW_SEED = 0x6E6F_6973  # "nois"
_SAMPLE_SEED = 0x6175_746F  # "auto"
_SAMPLE_HASH = "__ruis_sample_hash__"
_ROWS = "__ruis_rows__"
_GROUP_HASH = "__ruis_group_hash__"
_ROW_HASH = "__ruis_row_hash__"
_MATCH = "__ruis_match__"
_KEPT = "__ruis_kept_group__"


def truncate_contributions(
    frame: pl.LazyFrame,
    *,
    unit: str,
    by: Sequence[str],
    max_groups: int,
    max_rows_per_group: int,
    counts: pl.LazyFrame | None = None,
    mask: str | None = None,
    per: Sequence[str] = (),
) -> pl.LazyFrame:
    """Keep, per unit, its ``max_groups`` largest groups and ``max_rows_per_group`` rows in each.

    A per-unit function (see the module docstring for the privacy argument):
    after it, every unit has rows in at most ``max_groups`` groups of ``by``
    and at most ``max_rows_per_group`` rows per group. Without ``by`` the whole
    frame is one group. Lazy; the columns of ``frame`` but ``mask`` are kept
    (row order is not).

    ``mask``, if given, names a Boolean column of ``frame`` (never null): ``T``
    is then applied to the rows where it is true, exactly as if the others had
    been dropped first, but the expensive steps run over ALL rows of ``frame``
    (one group-by per (unit, group) that counts the matching rows and picks
    each one's first ``c`` matching rows by hash), so that work does not depend
    on how many rows the mask keeps (see "Timing" in the module docstring).
    Without ``mask`` every row counts, and rows with a null unit must be
    removed beforehand. ``counts``, if given, must be :func:`unit_group_counts`
    of this very ``frame`` with the same ``mask`` (computed once and shared with
    the choice of automatic bounds; only used when the rows hold nothing but
    the unit and group keys); the result is the same.

    ``per`` (a subset of ``by``, not all of it): the ``max_groups`` groups are
    kept per unit AND per value of these columns ("at most k municipalities per
    day"); see "Bounds per column" in the module docstring.
    """
    if max_groups < 1 or max_rows_per_group < 1:
        raise ValueError("contribution bounds must be at least 1")
    _check_per(by, per)
    if mask is None:
        mask = _MATCH
        frame = frame.with_columns(pl.lit(True).alias(_MATCH))
        if counts is not None:
            counts = counts.filter(pl.col(_ROWS) > 0)
    columns = [name for name in frame.collect_schema().names() if name != mask]
    group_key = [unit, *by]
    others = [name for name in columns if name not in group_key]
    if not others:
        if counts is None:
            counts = unit_group_counts(frame, unit=unit, by=by, mask=mask)
        return _truncate_keys_only(
            counts,
            group_key=group_key,
            unit=unit,
            max_groups=max_groups,
            max_rows_per_group=max_rows_per_group,
            per=per,
        )
    # One group-by over ALL rows: per (unit, group), the number of matching rows and
    # its c matching rows with the smallest hash of their content (then by the
    # content, so only identical — interchangeable — rows are ever tied). Rows that
    # do not match get no hash: they order after every matching row, and are dropped.
    hashed = frame.with_columns(
        pl.when(pl.col(mask)).then(pl.struct(columns).hash(_ROW_SEED)).alias(_ROW_HASH)
    )
    rows = pl.col(mask).sum().cast(pl.UInt32).alias(_ROWS)
    if max_rows_per_group == 1 and len(others) == 1:
        # The lexicographic minimum of (hash, value), without sorting every group.
        (other,) = others
        first = pl.col(other).filter(pl.col(_ROW_HASH) == pl.col(_ROW_HASH).min()).min()
        selected = hashed.group_by(group_key).agg(rows, first)
        exploded: list[str] = []
    else:
        chosen = (
            pl.col([*others, _ROW_HASH])
            .sort_by([_ROW_HASH, *others], nulls_last=True)
            .head(max_rows_per_group)
        )
        selected = hashed.group_by(group_key).agg(rows, chosen)
        exploded = [*others, _ROW_HASH]
    if by:
        selected = _rank_groups(
            selected, group_key=group_key, unit=unit, max_groups=max_groups, per=per
        ).filter(pl.col(_KEPT))
    else:
        selected = matching_counts(selected)
    if exploded:
        selected = selected.explode(exploded).filter(pl.col(_ROW_HASH).is_not_null())
    return selected.select(columns)


def unit_group_counts(
    frame: pl.LazyFrame, *, unit: str, by: Sequence[str], mask: str | None = None
) -> pl.LazyFrame:
    """The number of rows of each (unit, group) of ``frame``: columns ``unit, *by, _ROWS``.

    With ``mask`` (a Boolean column), the number of rows where it is true, for
    EVERY (unit, group) of the frame (0 where none is): one group-by over all
    rows, whatever the mask keeps.
    """
    if mask is None:
        return frame.group_by([unit, *by]).agg(pl.len().alias(_ROWS))
    return frame.group_by([unit, *by]).agg(pl.col(mask).sum().cast(pl.UInt32).alias(_ROWS))


def matching_counts(counts: pl.LazyFrame) -> pl.LazyFrame:
    """The (unit, group) rows of :func:`unit_group_counts` that have at least one matching row."""
    return counts.filter(pl.col(_ROWS) > 0)


def _check_per(by: Sequence[str], per: Sequence[str]) -> None:
    """``per`` must be distinct columns of ``by``, not all of them."""
    if len(set(per)) != len(per) or not set(per) <= set(by) or (per and len(per) >= len(by)):
        raise ValueError(f"per={list(per)} must be some, not all, of by={list(by)}")


def _rank_groups(
    counts: pl.LazyFrame,
    *,
    group_key: list[str],
    unit: str,
    max_groups: int,
    per: Sequence[str] = (),
) -> pl.LazyFrame:
    """``counts`` plus ``_KEPT``: the (unit, group) is among the unit's ``max_groups`` largest
    (with ``per``: among its ``max_groups`` largest with the same values of ``per``).

    The order is :func:`_top_groups`'s; groups with no matching row sort after
    every group with one and are never kept, so the kept groups are exactly
    those :func:`_top_groups` keeps on the counts of the matching rows alone.
    """
    by = group_key[1:]
    return (
        counts.with_columns(pl.struct(group_key).hash(_GROUP_SEED).alias(_GROUP_HASH))
        .sort(
            [_ROWS, _GROUP_HASH, *by],
            descending=[True, *([False] * (len(by) + 1))],
            maintain_order=True,
        )
        .with_columns(
            ((_position_within(unit, *per) < max_groups) & (pl.col(_ROWS) > 0)).alias(_KEPT)
        )
    )


def _top_groups(
    counts: pl.LazyFrame,
    *,
    group_key: list[str],
    unit: str,
    max_groups: int,
    per: Sequence[str] = (),
) -> pl.LazyFrame:
    """Per unit (and value of ``per``), its ``max_groups`` groups with most rows, with the
    row count ``_ROWS``.

    Groups with 0 rows (masked counts) are never kept.
    """
    return (
        _rank_groups(counts, group_key=group_key, unit=unit, max_groups=max_groups, per=per)
        .filter(pl.col(_KEPT))
        .select([*group_key, _ROWS])
    )


def _truncate_keys_only(
    counts: pl.LazyFrame,
    *,
    group_key: list[str],
    unit: str,
    max_groups: int,
    max_rows_per_group: int,
    per: Sequence[str] = (),
) -> pl.LazyFrame:
    """:func:`truncate_contributions` when rows hold only the unit and group keys.

    Then all rows of one (unit, group) are identical, so the result is fully
    described by the per-(unit, group) row ``counts``: each kept group
    contributes ``min(rows, c)`` copies of its key row. Computing it from the
    aggregated counts avoids re-reading, joining and ranking every row, and
    gives exactly the same multiset of rows as the general path. ``counts``
    may hold groups with 0 (matching) rows: they are never kept.
    """
    if len(group_key) > 1:
        counts = _top_groups(counts, group_key=group_key, unit=unit, max_groups=max_groups, per=per)
    else:
        counts = matching_counts(counts)
    if max_rows_per_group == 1:
        return counts.select(group_key)
    copies = pl.int_ranges(0, pl.min_horizontal(pl.col(_ROWS), max_rows_per_group), dtype=pl.UInt32)
    return counts.with_columns(copies.alias(_ROWS)).explode(_ROWS).select(group_key)


def unit_profile(
    counts: pl.LazyFrame,
    *,
    unit: str,
    by: Sequence[str],
    max_groups: int | None,
    group_limit: int,
    row_limit: int,
    groups_column: str | None,
    rows_column: str | None,
    per: Sequence[str] = (),
) -> pl.LazyFrame:
    """One row per unit describing its contributions: the input of the automatic-bounds choice.

    With ``per`` (see "Bounds per column" above): one row per unit and value of
    the ``per`` columns under which it has rows, describing its groups there, as
    the truncation bounds them there.

    ``counts`` is :func:`unit_group_counts` of the filtered frame. With
    ``max_groups``, only the unit's groups that :func:`truncate_contributions`
    keeps at that ``k`` are looked at. The row holds, in ``groups_column``, the
    unit's number of (kept) groups clipped to ``group_limit`` and, in
    ``rows_column``, the unit's number of rows in ONE of them — the group with
    the smallest fixed hash of (unit, group key), then the smallest key —
    clipped to ``row_limit`` (without ``by``: the unit's number of rows).
    Columns are Int64, each of them in 1..limit. (With ``per``, "the unit's"
    reads "the unit's under this value of ``per``" throughout.)

    **Privacy argument.** This is a per-unit map ``P`` like the truncation
    ``T`` above: ``P(D) = ⊎_u P_u(D_u)`` where ``P_u`` is exactly one row
    computed from unit ``u``'s own rows (its own group counts and hashes of its
    own unit id and keys). Adding or removing all rows of one unit adds or
    removes exactly one row of ``P(D)``, and leaves every other row unchanged.
    So an OpenDP measurement that is ε-DP (ρ-zCDP) when each unit contributes
    one row (``d_in = [Bound(by=[], per_group=1)]``), composed with ``P`` (and
    the row-wise filters before it), is ε-DP (ρ-zCDP) with respect to adding
    or removing one privacy unit.

    With ``per``, ``P_u`` is one row per value of the ``per`` columns under
    which ``u`` has (matching, hence public-key) rows, still computed from
    ``u``'s own rows only: adding or removing one unit adds or removes at most
    ``D`` rows (``D`` the number of public key combinations of ``per``), any of
    which may fall in the same bin. The histogram over it must be calibrated
    for ``d_in = [Bound(by=[], per_group=D)]``.
    """
    _check_per(by, per)
    group_key = [unit, *by]
    if by and max_groups is not None:
        counts = _top_groups(counts, group_key=group_key, unit=unit, max_groups=max_groups, per=per)
    aggregates: list[pl.Expr] = []
    if groups_column is not None:
        aggregates.append(pl.len().clip(1, group_limit).cast(pl.Int64).alias(groups_column))
    if rows_column is not None:
        sampled = (
            pl.col(_ROWS).sort_by([_SAMPLE_HASH, *by]).first() if by else pl.col(_ROWS).first()
        )
        aggregates.append(sampled.clip(1, row_limit).cast(pl.Int64).alias(rows_column))
    if not aggregates:
        raise ValueError("a unit profile needs at least one column")
    if by and rows_column is not None:
        counts = counts.with_columns(pl.struct(group_key).hash(_SAMPLE_SEED).alias(_SAMPLE_HASH))
    return counts.group_by([unit, *per]).agg(aggregates).drop([unit, *per])


def _position_within(*partition: str) -> pl.Expr:
    """0, 1, 2, ... in frame order within each partition."""
    return pl.int_range(pl.len(), dtype=pl.UInt32).over(list(partition))
