"""Home location in the query: each unit once, at its most frequent value of a column.

``unit_location`` (``{"column": "neighbourhood", "rule": "most_frequent"}`` on a
``unit_count``) replaces the truncation of :mod:`privacy.truncation` by the map
``L``: for every unit ``u`` with at least one row of ``F(D)`` (the rows matching
``where``, with a unit and a public key of the column), ``L`` gives exactly one row
``(u, g(ℓ_u))`` where

* ``ℓ_u`` is the key of the column with the most rows of ``u`` in ``F(D)``, ties
  going to the smallest key (a total order on public keys, so ``ℓ_u`` is unique);
* ``g`` is the identity, or the public hierarchy map to the coarser column the query
  groups by (``metadata.rollup_map``): the parent of ``ℓ_u``, not its most frequent
  parent.

**Privacy argument.** ``L`` is a stable per-unit map: ``L(D) = ⊎_u L_u(D_u)`` where
``L_u`` reads only unit ``u``'s rows (its own counts per key, and public keys and
maps) and outputs at most one row, of unit ``u``. Adding or removing all rows of
one unit adds or removes at most one row of ``L(D)`` and changes no other row. So
``L(F(D))`` and ``L(F(D'))`` are neighbours at ``d_in = [Bound(by=[group], per_group=1,
num_groups=1)]`` under OpenDP's ``FrameDistance(SymmetricDistance)`` — exactly the
``d_in`` of a ``unit_count`` at ``k = c = 1``, which
:func:`privacy.measurement.contribution_bounds` gives — and OpenDP's measurement
composed with ``L`` and the row-wise ``F`` is ε-DP (ρ-zCDP) with respect to one
privacy unit. The noisy count per group then has sensitivity 1 (L1 and L2): OpenDP
reports a discrete Laplace of scale 1/ε (pure) or a discrete Gaussian of scale
1/√(2ρ) (zCDP). Nothing is dropped or clamped, so the noise bound covers the exact
count on the whole data.

**Timing.** Like the truncation, ``L`` starts from the per-(unit, key) counts of the
mask over ALL rows of the file (:func:`~privacy.truncation.unit_group_counts`: a
(unit, key) with no matching row counts 0), picks per unit the key with the largest
count over all of them, and only then drops the units whose largest count is 0. The
work depends on the data only through the number of (unit, key) pairs in the file,
never on how many rows the filters match.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from privacy.truncation import unit_group_counts

_ROWS = "__ruis_rows__"  # the count column of unit_group_counts


def unit_locations(
    frame: pl.LazyFrame,
    *,
    unit: str,
    column: str,
    mask: str,
    target: str,
    mapping: Mapping[str, str] | None = None,
    counts: pl.LazyFrame | None = None,
) -> pl.LazyFrame:
    """One row per unit with a matching row: ``[unit, target]``, at its most frequent key.

    ``frame`` holds ``unit``, ``column`` and the Boolean ``mask`` (true for the rows of
    ``F(D)``, see :func:`privacy.execute.masked_frame`). The unit's key is the one of
    ``column`` with the most matching rows, ties to the smallest key; with ``mapping``
    (every public key of ``column`` to its key of ``target``) the row holds that key's
    image, else the key itself (``target == column``). ``counts``, if given, is
    :func:`~privacy.truncation.unit_group_counts` of this frame by ``[column]`` with this
    mask. A per-unit map with one row per unit (privacy argument in the module
    docstring). Lazy.
    """
    if counts is None:
        counts = unit_group_counts(frame, unit=unit, by=[column], mask=mask)
    modal = counts.group_by(unit).agg(
        pl.col(column).sort_by([_ROWS, column], descending=[True, False]).first(),
        pl.col(_ROWS).max().alias(_ROWS),
    )
    located = modal.filter(pl.col(_ROWS) > 0)
    if mapping is None:
        if target != column:
            raise ValueError(f"a map from {column!r} to {target!r} is needed")
        return located.select(unit, column)
    return located.select(
        unit, pl.col(column).replace_strict(dict(mapping), return_dtype=pl.String).alias(target)
    )
