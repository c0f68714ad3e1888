"""The parent level of a ``rollup`` release: its column, its contribution bounds.

A rollup query (``group_by`` holding ``child``, ``rollup: [parent]``) releases the
child-level cells and the parent-level cells of the same truncated frame
(:mod:`privacy.truncation`, at the child grouping's bounds k, c). The parent
column is added row-wise from the public map (:func:`with_parent`), so each unit
keeps exactly its rows and the per-unit bounds below hold.

**Privacy unit and sensitivity.** After truncation a unit has rows in at most
``k·D`` child groups (``D`` = ``bounds_per_cells``), at most ``c`` rows in each,
at most ``k`` child groups per value of the ``contribution_bounds_per`` columns
and at most ``k·c·D`` rows in all. A parent group ``(parent, other keys)`` fixes
the other keys (so the ``bounds_per`` value) and holds at most ``min(k, F)`` of the
unit's child groups (``F`` = the largest family: a parent has no more children),
hence at most ``c·min(k, F)`` of its rows; the unit touches at most ``k·D`` parent
groups. :func:`rollup_contribution_bounds` states exactly these facts to OpenDP,
which derives both levels' sensitivities from them: with the ``Bound(by=[])``
on the total OpenDP's parent ℓ1 is ``min(l0·l∞, k·c·D)`` = ``k·c·D`` for a
count (without it ``l0·l∞`` = ``k·D·c·min(k, F)``), its ℓ2² ``min(l0·l∞², l1·l∞)``.
The child grouping's bounds (``per_group = c``, ``num_groups = k·D``) are those of
:func:`~privacy.measurement.contribution_bounds` unchanged: the extra Bounds'
``by`` are not subsets of the child grouping, except ``[]`` whose ``per_group``
``k·c·D`` is never below ``c``.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from opendp.extras.polars import Bound

from privacy.metadata import DatasetMetadata
from privacy.query import ResolvedQuery, Rollup


def rollup_contribution_bounds(
    query: ResolvedQuery, rollup: Rollup, child_bounds: list[Bound], k: int, c: int
) -> list[Bound]:
    """``child_bounds`` plus the parent grouping's and the total's Bounds (module docstring)."""
    groups = query.unit_groups(k)
    return [
        *child_bounds,
        Bound(
            by=list(rollup.parent_group_by(query.group_by)),
            per_group=c * min(k, rollup.largest_family()),
            num_groups=groups,
        ),
        Bound(by=[], per_group=query.unit_rows(k, c)),
    ]


def parent_expression(rollup: Rollup, dtype: pl.DataType) -> pl.Expr:
    """The parent key (as ``dtype``) of each row from its child key by the public map
    (row-wise; the map is keyed by the keys' text)."""
    mapping = dict(rollup.mapping)
    return (
        pl.col(rollup.child)
        .cast(pl.String)
        .replace_strict(list(mapping), list(mapping.values()), return_dtype=pl.String)
        .cast(dtype)
        .alias(rollup.parent)
    )


def typed_parents(rollup: Rollup, metadata: DatasetMetadata) -> dict[Any, Any]:
    """Each typed child key to its typed parent key (as the columns hold them)."""
    parents = {str(key): key for key in metadata.columns[rollup.parent].typed_keys()}
    mapping = dict(rollup.mapping)
    return {key: parents[mapping[str(key)]] for key in metadata.columns[rollup.child].typed_keys()}
